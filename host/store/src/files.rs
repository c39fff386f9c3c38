//! The data directory: opened once as a capability (`cap_std`), so nothing
//! below it can reach outside it, and private files written with mode 0600.

use std::io::Write;
use std::path::Path;

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt};

/// The data directory at `path`, created when missing.
pub fn open_data_dir(path: &Path) -> std::io::Result<Dir> {
    let context = |e: std::io::Error| {
        std::io::Error::new(
            e.kind(),
            format!("the data directory {}: {e}", path.display()),
        )
    };
    std::fs::create_dir_all(path).map_err(context)?;
    Dir::open_ambient_dir(path, ambient_authority()).map_err(context)
}

/// Writes `text` to `name` in `dir`, readable by the owner only, and syncs
/// it to disk before returning.
pub fn write_private(dir: &Dir, name: &str, text: &str) -> std::io::Result<()> {
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true).mode(0o600);
    let mut f = dir.open_with(name, &opts)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}
