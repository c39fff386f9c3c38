//! A fake Twilio as a process of its own, for `scripts/bench-messages`: it
//! takes every message (201) and posts a signed `delivered` status callback
//! for each, as Twilio does. It prints its base URL on the first line of
//! standard output; `GET /counts` tells what it has done.
//!
//!     fake-twilio AUTH_TOKEN [LISTEN]     # LISTEN defaults to 127.0.0.1:0
//!
//! It runs on one thread, so that on a small machine it takes at most one
//! core from the server it measures.

use std::io::Write as _;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(auth_token) = args.next() else {
        eprintln!("usage: fake-twilio AUTH_TOKEN [LISTEN]");
        std::process::exit(2);
    };
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let fake = engage_tests::twilio::FakeTwilio::reporting(listener, &auth_token, false);
    let mut out = std::io::stdout();
    writeln!(out, "{}", fake.url)?;
    out.flush()?;
    std::future::pending::<()>().await;
    Ok(())
}
