//! The first-party plugins, compiled from `plugins/` by the build script and
//! embedded in the binary: every tenant starts with them bound.

use std::sync::OnceLock;

use super::Point;
use engage_store::ids::sha256_hex;

/// An embedded first-party plugin.
pub struct Builtin {
    /// The plugin's name in every tenant's registry.
    pub name: &'static str,
    pub point: Point,
    pub bytes: &'static [u8],
    /// The config a new tenant's binding starts with.
    pub default_config: &'static str,
}

/// One first-party plugin per extension point.
pub const BUILTINS: [Builtin; 4] = [
    Builtin {
        name: "rules-table",
        point: Point::Rules,
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/engage_rules_table.wasm")),
        default_config: r#"{"rules":[]}"#,
    },
    Builtin {
        name: "gift-quota",
        point: Point::Gift,
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/engage_gift_quota.wasm")),
        default_config: r#"{"requests_per_day":10}"#,
    },
    Builtin {
        name: "template",
        point: Point::Template,
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/engage_template.wasm")),
        default_config: "{}",
    },
    Builtin {
        name: "router",
        point: Point::Route,
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/engage_router.wasm")),
        default_config: "{}",
    },
];

/// The first-party plugin for `point`.
pub fn for_point(point: Point) -> &'static Builtin {
    match point {
        Point::Rules => &BUILTINS[0],
        Point::Gift => &BUILTINS[1],
        Point::Template => &BUILTINS[2],
        Point::Route => &BUILTINS[3],
    }
}

/// Whether `name` is a first-party plugin's name (tenants cannot upload under it).
pub fn is_builtin_name(name: &str) -> bool {
    BUILTINS.iter().any(|b| b.name == name)
}

impl Builtin {
    /// The SHA-256 of the embedded component, computed once per process
    /// (the fallback path needs it on every call).
    pub fn sha256(&'static self) -> &'static str {
        static HASHES: OnceLock<Vec<String>> = OnceLock::new();
        let hashes = HASHES.get_or_init(|| BUILTINS.iter().map(|b| sha256_hex(b.bytes)).collect());
        let index = BUILTINS
            .iter()
            .position(|b| b.name == self.name)
            .unwrap_or_default();
        &hashes[index]
    }
}
