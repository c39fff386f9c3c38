//! Build WebAssembly plugin components from a Cargo build script.
//!
//! The host embeds its first-party plugins and the tests load their test
//! components; both must never see a stale or missing `.wasm`. A build script
//! calls [`build`] with the guest packages it needs: it makes sure the
//! `wasm32-wasip2` target is installed, runs `cargo build` for the guests in a
//! target directory of their own (so it never waits on the outer build's
//! lock), copies each component to `OUT_DIR` and tells Cargo which sources to
//! watch.
//!
//! ```no_run
//! // build.rs
//! engage_build::build(&["engage-template"]).expect("guest build failed");
//! // main.rs: include_bytes!(concat!(env!("OUT_DIR"), "/engage_template.wasm"))
//! ```

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target every guest is compiled for.
pub const TARGET: &str = "wasm32-wasip2";

/// Errors are plain strings: a build script can only print them and stop.
pub type Error = String;

/// Build `packages` (Cargo package names in this workspace) for
/// [`TARGET`] with the workspace's `guest` profile and copy each
/// `<package with _>.wasm` into `OUT_DIR`.
pub fn build(packages: &[&str]) -> Result<(), Error> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let root = workspace_root(&manifest_dir)?;
    let out_dir = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);
    ensure_target()?;

    for watched in [
        "wit",
        "sdk/rust/src",
        "sdk/rust/Cargo.toml",
        "Cargo.toml",
        ".cargo/config.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    let target_dir = root.join("target").join("guests");
    let mut cmd = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&root)
        .args([
            "build",
            "--profile",
            "guest",
            "--target",
            TARGET,
            "--target-dir",
        ])
        .arg(&target_dir);
    for p in packages {
        cmd.args(["-p", p]);
        if let Some(dir) = package_dir(&root, p) {
            println!("cargo:rerun-if-changed={}", dir.join("src").display());
            println!(
                "cargo:rerun-if-changed={}",
                dir.join("Cargo.toml").display()
            );
        }
    }
    // The outer build's settings are for the host, not for the guests.
    for var in [
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_MAKEFLAGS",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .map_err(|e| format!("could not run cargo for the guests: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building the guest components {packages:?} failed ({status}); see the output above"
        ));
    }
    for p in packages {
        let file = format!("{}.wasm", p.replace('-', "_"));
        let built = target_dir.join(TARGET).join("guest").join(&file);
        std::fs::copy(&built, out_dir.join(&file))
            .map_err(|e| format!("copying {} to OUT_DIR: {e}", built.display()))?;
    }
    Ok(())
}

fn workspace_root(start: &Path) -> Result<PathBuf, Error> {
    let mut dir = Some(start);
    while let Some(d) = dir {
        let manifest = d.join("Cargo.toml");
        if std::fs::read_to_string(&manifest).is_ok_and(|s| s.contains("[workspace]")) {
            return Ok(d.to_path_buf());
        }
        dir = d.parent();
    }
    Err(format!("no workspace Cargo.toml above {}", start.display()))
}

/// Where the package lives, for change tracking: plugins/, examples/ and
/// tests/test-components/ by the package's directory name.
fn package_dir(root: &Path, package: &str) -> Option<PathBuf> {
    let names = [
        package.strip_prefix("engage-example-"),
        package.strip_prefix("engage-"),
        Some(package),
    ];
    ["plugins", "examples", "tests/test-components"]
        .iter()
        .flat_map(|base| names.iter().flatten().map(move |n| root.join(base).join(n)))
        .find(|d| d.join("Cargo.toml").exists())
}

/// Install the wasm32-wasip2 standard library with rustup when it is missing,
/// so a fresh machine needs no manual step.
fn ensure_target() -> Result<(), Error> {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("running {rustc} --print sysroot: {e}"))?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if sysroot.join("lib/rustlib").join(TARGET).exists() {
        return Ok(());
    }
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .map_err(|e| format!("the {TARGET} target is missing and rustup could not be run: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`rustup target add {TARGET}` failed ({status})"))
    }
}
