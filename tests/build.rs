//! Builds the test components so every test run loads current `.wasm`.

fn main() {
    if let Err(e) = engage_build::build(&[
        "hostile",
        "no-world",
        "gift-probe",
        "engage-example-rust-rules",
    ]) {
        panic!("{e}");
    }
}
