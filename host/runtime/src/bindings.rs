//! Host-side bindings of every published `engage:plugin` version, side by
//! side (`wit/since_vX.Y.Z/`), as Zed's extension host keeps them.
//!
//! One `bindgen!` per world and version; each version's shared `types` and
//! `host` interfaces are generated once (with its `rules` world) and reused
//! by its other worlds. Every version stays linked, so a component built
//! against an older SDK keeps loading and running unchanged; each version's
//! generated types are converted to the host's own (`crate::io`) in its
//! boundary module (`since_v0_1_0`, `since_v0_2_0`) and nowhere else.

/// The four worlds of one version, generated from `wit/since_v{version}`.
macro_rules! worlds {
    ($dir:literal) => {
        pub mod rules {
            wasmtime::component::bindgen!({
                world: "rules",
                path: $dir,
                imports: { default: trappable },
            });
        }

        pub mod gift {
            wasmtime::component::bindgen!({
                world: "gift-hooks",
                path: $dir,
                imports: { default: trappable },
                with: {
                    "engage:plugin/types": super::rules::engage::plugin::types,
                    "engage:plugin/host": super::rules::engage::plugin::host,
                },
            });
        }

        pub mod templating {
            wasmtime::component::bindgen!({
                world: "templating",
                path: $dir,
                imports: { default: trappable },
                with: {
                    "engage:plugin/types": super::rules::engage::plugin::types,
                    "engage:plugin/host": super::rules::engage::plugin::host,
                },
            });
        }

        pub mod routing {
            wasmtime::component::bindgen!({
                world: "routing",
                path: $dir,
                imports: { default: trappable },
                with: {
                    "engage:plugin/types": super::rules::engage::plugin::types,
                    "engage:plugin/host": super::rules::engage::plugin::host,
                },
            });
        }

        pub use rules::engage::plugin::{host, types};
    };
}

pub mod v0_1_0 {
    worlds!("../../wit/since_v0.1.0");
}

pub mod v0_2_0 {
    worlds!("../../wit/since_v0.2.0");
}

/// The host's log level: 0.1.0's (every version's `level` enum is the same).
pub use v0_1_0::host::Level;

/// A version of the `engage:plugin` package the host speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WitVersion {
    V0_1_0,
    V0_2_0,
}

impl WitVersion {
    pub const ALL: [WitVersion; 2] = [WitVersion::V0_1_0, WitVersion::V0_2_0];
    /// The newest: what the SDKs and `engage plugin new` build against.
    pub const NEWEST: WitVersion = WitVersion::V0_2_0;

    pub fn as_str(self) -> &'static str {
        match self {
            WitVersion::V0_1_0 => "0.1.0",
            WitVersion::V0_2_0 => "0.2.0",
        }
    }

    /// Whether components of this version export `config-check`.
    pub fn checks_config(self) -> bool {
        self >= WitVersion::V0_2_0
    }
}
