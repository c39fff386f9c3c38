//! Compiles the first-party plugins to components and embeds them: a fresh
//! checkout's `cargo run` never uses a stale or missing `.wasm`.

fn main() {
    if let Err(e) = engage_build::build(&[
        "engage-rules-table",
        "engage-gift-quota",
        "engage-template",
        "engage-router",
    ]) {
        panic!("{e}");
    }
}
