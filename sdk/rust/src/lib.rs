//! Write Engage plugins in Rust.
//!
//! An Engage plugin is a WebAssembly component that implements one of the
//! worlds of the `engage:plugin` WIT package (in `wit/since_v0.2.0/` at the top of the
//! repository). This crate generates the bindings once, so a plugin is a
//! trait implementation plus one macro:
//!
//! ```no_run
//! use engage_plugin_sdk::rules::{Action, Guest, Outcome};
//! use engage_plugin_sdk::PluginError;
//!
//! struct Hello;
//!
//! impl Guest for Hello {
//!     fn evaluate(action: Action) -> Result<Outcome, PluginError> {
//!         engage_plugin_sdk::host::info(&format!("{} did {}", action.player, action.name));
//!         Ok(Outcome::default())
//!     }
//! }
//!
//! engage_plugin_sdk::export_rules!(Hello);
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2` and upload the `.wasm`
//! with `PUT /v1/plugins/{name}`. The export macros also install a panic
//! hook that sends the panic message to the host's log before the guest
//! traps, so a panicking plugin explains itself in the tenant's statistics.

extern crate self as engage_plugin_sdk;

pub mod host;
pub mod time;

#[doc(hidden)]
pub use wit_bindgen::rt as __rt;

/// Bindings of the `rules` world.
pub mod rules {
    #[doc(hidden)]
    pub mod bindings {
        wit_bindgen::generate!({
            world: "rules",
            path: "../../wit/since_v0.2.0",
            pub_export_macro: true,
            export_macro_name: "__export_rules",
            default_bindings_module: "engage_plugin_sdk::rules::bindings",
            runtime_path: "engage_plugin_sdk::__rt",
            additional_derives: [PartialEq, Clone],
        });
    }
    pub use bindings::exports::engage::plugin::rule_engine::{
        Action, CustomEvent, Grant, Guest, Message, Outcome, TraceEntry,
    };

    // Generated type: deriving Default world-wide would also hit the `level` enum.
    #[allow(clippy::derivable_impls)]
    impl Default for Outcome {
        fn default() -> Self {
            Outcome {
                grants: Vec::new(),
                badges: Vec::new(),
                messages: Vec::new(),
                events: Vec::new(),
                trace: Vec::new(),
            }
        }
    }

    impl Action {
        /// The value of parameter `name`, if the client sent it.
        pub fn param(&self, name: &str) -> Option<&str> {
            crate::param(&self.params, name)
        }
    }
}

/// Bindings of the `gift-hooks` world.
pub mod gift {
    #[doc(hidden)]
    pub mod bindings {
        wit_bindgen::generate!({
            world: "gift-hooks",
            path: "../../wit/since_v0.2.0",
            pub_export_macro: true,
            export_macro_name: "__export_gift_hooks",
            default_bindings_module: "engage_plugin_sdk::gift::bindings",
            runtime_path: "engage_plugin_sdk::__rt",
            additional_derives: [PartialEq, Clone],
            with: {
                "engage:plugin/types@0.2.0": crate::types,
                "engage:plugin/host@0.2.0": crate::host::raw,
            },
        });
    }
    pub use bindings::exports::engage::plugin::gift_hook::{
        GiftReply, GiftRequest, Guest, Rejection, Verdict,
    };
}

/// Bindings of the `templating` world.
pub mod templating {
    #[doc(hidden)]
    pub mod bindings {
        wit_bindgen::generate!({
            world: "templating",
            path: "../../wit/since_v0.2.0",
            pub_export_macro: true,
            export_macro_name: "__export_templating",
            default_bindings_module: "engage_plugin_sdk::templating::bindings",
            runtime_path: "engage_plugin_sdk::__rt",
            with: {
                "engage:plugin/types@0.2.0": crate::types,
                "engage:plugin/host@0.2.0": crate::host::raw,
            },
        });
    }
    pub use bindings::exports::engage::plugin::template::Guest;
}

/// Bindings of the `routing` world.
pub mod routing {
    #[doc(hidden)]
    pub mod bindings {
        wit_bindgen::generate!({
            world: "routing",
            path: "../../wit/since_v0.2.0",
            pub_export_macro: true,
            export_macro_name: "__export_routing",
            default_bindings_module: "engage_plugin_sdk::routing::bindings",
            runtime_path: "engage_plugin_sdk::__rt",
            additional_derives: [PartialEq, Clone],
            with: {
                "engage:plugin/types@0.2.0": crate::types,
                "engage:plugin/host@0.2.0": crate::host::raw,
            },
        });
    }
    pub use bindings::exports::engage::plugin::router::{Attempt, Guest, MessageKind, Outgoing};
}

/// Types shared by every world.
pub mod types {
    pub use crate::rules::bindings::engage::plugin::types::*;
}

pub use types::{Param, PluginError};

impl PluginError {
    /// A plugin error with a code and a message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        PluginError {
            code: code.into(),
            message: message.into(),
        }
    }
}

impl Param {
    /// A parameter from a name and a value.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Param {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// The value of the first parameter called `name`.
pub fn param<'a>(params: &'a [Param], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|p| p.name == name)
        .map(|p| p.value.as_str())
}

/// Send panic messages to the host's log. Called by the export macros on
/// every entry; each call is a fresh sandbox, so this runs once per call.
#[doc(hidden)]
pub fn install_panic_hook() {
    #[cfg(target_arch = "wasm32")]
    std::panic::set_hook(Box::new(|info| {
        host::log(host::Level::Error, &format!("panic: {info}"), &[]);
    }));
}

/// A config check that accepts every config (what `export_*!(Plugin)` uses).
pub fn accept_any_config(_config: &str) -> Result<(), PluginError> {
    Ok(())
}

/// A config check that accepts a config when it parses as `T` (what
/// `export_*!(Plugin, config = T)` uses): with `#[serde(deny_unknown_fields)]`
/// on `T`, a misspelt or foreign field is refused at bind time, with serde's
/// message naming the field and the ones expected.
pub fn parses_as<T: serde::de::DeserializeOwned>(config: &str) -> Result<(), PluginError> {
    host::parse_config::<T>(config).map(|_| ())
}

#[doc(hidden)]
#[macro_export]
macro_rules! __config_check {
    ($world:ident, $export:ident, $check:path) => {
        impl $crate::$world::bindings::Guest for $export {
            fn validate_config(
                config: ::std::string::String,
            ) -> ::core::result::Result<(), $crate::PluginError> {
                $crate::install_panic_hook();
                let check: fn(&str) -> ::core::result::Result<(), $crate::PluginError> = $check;
                check(&config)
            }
        }
    };
}

/// Export a [`rules::Guest`] implementation as the plugin's `rules` world.
///
/// Every world also exports a config check, which the host runs when a
/// tenant binds the plugin (a config it refuses is never bound):
///
/// - `export_rules!(Plugin)` accepts every config;
/// - `export_rules!(Plugin, config = Config)` accepts a config that parses
///   as `Config` (a `serde::Deserialize` type);
/// - `export_rules!(Plugin, check = my_check)` calls
///   `fn my_check(config: &str) -> Result<(), PluginError>`.
///
/// The other `export_*!` macros take the same forms.
#[macro_export]
macro_rules! export_rules {
    ($plugin:ty) => {
        $crate::export_rules!($plugin, check = $crate::accept_any_config);
    };
    ($plugin:ty, config = $config:ty) => {
        $crate::export_rules!($plugin, check = $crate::parses_as::<$config>);
    };
    ($plugin:ty, check = $check:path) => {
            $crate::__config_check!(rules, EngageRulesExport, $check);
            /// The plugin's component export (generated by the SDK).
            #[doc(hidden)]
            pub struct EngageRulesExport;
            impl $crate::rules::Guest for EngageRulesExport {
                fn evaluate(
                    action: $crate::rules::Action,
                ) -> ::core::result::Result<$crate::rules::Outcome, $crate::PluginError> {
                    $crate::install_panic_hook();
                    <$plugin as $crate::rules::Guest>::evaluate(action)
                }
            }
            // Native builds (unit tests) skip the export: component symbol
            // names do not link as a native shared library.
            #[cfg(target_arch = "wasm32")]
            $crate::rules::bindings::__export_rules!(EngageRulesExport with_types_in $crate::rules::bindings);
    };
}

/// Export a [`gift::Guest`] implementation as the plugin's `gift-hooks` world.
#[macro_export]
macro_rules! export_gift_hooks {
    ($plugin:ty) => {
        $crate::export_gift_hooks!($plugin, check = $crate::accept_any_config);
    };
    ($plugin:ty, config = $config:ty) => {
        $crate::export_gift_hooks!($plugin, check = $crate::parses_as::<$config>);
    };
    ($plugin:ty, check = $check:path) => {
            $crate::__config_check!(gift, EngageGiftExport, $check);
            /// The plugin's component export (generated by the SDK).
            #[doc(hidden)]
            pub struct EngageGiftExport;
            impl $crate::gift::Guest for EngageGiftExport {
                fn pre_request(
                    r: $crate::gift::GiftRequest,
                ) -> ::core::result::Result<$crate::gift::Verdict, $crate::PluginError> {
                    $crate::install_panic_hook();
                    <$plugin as $crate::gift::Guest>::pre_request(r)
                }
                fn post_request(
                    r: $crate::gift::GiftRequest,
                ) -> ::core::result::Result<(), $crate::PluginError> {
                    $crate::install_panic_hook();
                    <$plugin as $crate::gift::Guest>::post_request(r)
                }
                fn pre_reply(
                    r: $crate::gift::GiftReply,
                ) -> ::core::result::Result<$crate::gift::Verdict, $crate::PluginError> {
                    $crate::install_panic_hook();
                    <$plugin as $crate::gift::Guest>::pre_reply(r)
                }
                fn post_reply(
                    r: $crate::gift::GiftReply,
                ) -> ::core::result::Result<(), $crate::PluginError> {
                    $crate::install_panic_hook();
                    <$plugin as $crate::gift::Guest>::post_reply(r)
                }
            }
            // Native builds (unit tests) skip the export: component symbol
            // names do not link as a native shared library.
            #[cfg(target_arch = "wasm32")]
            $crate::gift::bindings::__export_gift_hooks!(EngageGiftExport with_types_in $crate::gift::bindings);
    };
}

/// Export a [`templating::Guest`] implementation as the plugin's `templating` world.
#[macro_export]
macro_rules! export_templating {
    ($plugin:ty) => {
        $crate::export_templating!($plugin, check = $crate::accept_any_config);
    };
    ($plugin:ty, config = $config:ty) => {
        $crate::export_templating!($plugin, check = $crate::parses_as::<$config>);
    };
    ($plugin:ty, check = $check:path) => {
            $crate::__config_check!(templating, EngageTemplatingExport, $check);
            /// The plugin's component export (generated by the SDK).
            #[doc(hidden)]
            pub struct EngageTemplatingExport;
            impl $crate::templating::Guest for EngageTemplatingExport {
                fn render(
                    template: ::std::string::String,
                    vars: ::std::vec::Vec<$crate::Param>,
                ) -> ::core::result::Result<::std::string::String, $crate::PluginError> {
                    $crate::install_panic_hook();
                    <$plugin as $crate::templating::Guest>::render(template, vars)
                }
            }
            // Native builds (unit tests) skip the export: component symbol
            // names do not link as a native shared library.
            #[cfg(target_arch = "wasm32")]
            $crate::templating::bindings::__export_templating!(EngageTemplatingExport with_types_in $crate::templating::bindings);
    };
}

/// Export a [`routing::Guest`] implementation as the plugin's `routing` world.
#[macro_export]
macro_rules! export_routing {
    ($plugin:ty) => {
        $crate::export_routing!($plugin, check = $crate::accept_any_config);
    };
    ($plugin:ty, config = $config:ty) => {
        $crate::export_routing!($plugin, check = $crate::parses_as::<$config>);
    };
    ($plugin:ty, check = $check:path) => {
            $crate::__config_check!(routing, EngageRoutingExport, $check);
            /// The plugin's component export (generated by the SDK).
            #[doc(hidden)]
            pub struct EngageRoutingExport;
            impl $crate::routing::Guest for EngageRoutingExport {
                fn route(
                    message: $crate::routing::Outgoing,
                ) -> ::core::result::Result<::std::vec::Vec<$crate::routing::Attempt>, $crate::PluginError> {
                    $crate::install_panic_hook();
                    <$plugin as $crate::routing::Guest>::route(message)
                }
            }
            // Native builds (unit tests) skip the export: component symbol
            // names do not link as a native shared library.
            #[cfg(target_arch = "wasm32")]
            $crate::routing::bindings::__export_routing!(EngageRoutingExport with_types_in $crate::routing::bindings);
    };
}
