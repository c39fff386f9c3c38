//! Host-side bindings of the `engage:plugin@0.1.0` worlds.
//!
//! One `bindgen!` per world; the shared `types` and `host` interfaces are
//! generated once (with the `rules` world) and reused by the others, so the
//! sandbox implements the host interface once for every world.
//!
//! When the WIT package grows a version, the new version's worlds get
//! bindings of their own beside these (and a `since_v0_2_0` boundary beside
//! `since_v0_1_0`) and both stay linked, so components built against an
//! older SDK keep working, as Zed's extension host does.

pub mod rules {
    wasmtime::component::bindgen!({
        world: "rules",
        path: "../../wit",
        imports: { default: trappable },
    });
}

pub mod gift {
    wasmtime::component::bindgen!({
        world: "gift-hooks",
        path: "../../wit",
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
        path: "../../wit",
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
        path: "../../wit",
        imports: { default: trappable },
        with: {
            "engage:plugin/types": super::rules::engage::plugin::types,
            "engage:plugin/host": super::rules::engage::plugin::host,
        },
    });
}

pub use rules::engage::plugin::host::Level;

// The records of the worlds' exports are converted to `crate::io` in
// `since_v0_1_0`; nothing else uses them.
