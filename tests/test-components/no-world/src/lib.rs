//! A component exporting an interface Engage does not know.

wit_bindgen::generate!({
    inline: "package test:other; world other { export shout: func(s: string) -> string; }",
});

#[allow(dead_code)] // only constructed by the wasm export
struct Other;

impl Guest for Other {
    fn shout(s: String) -> String {
        s.to_uppercase()
    }
}

#[cfg(target_arch = "wasm32")]
export!(Other);
