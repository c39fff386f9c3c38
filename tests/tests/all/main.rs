//! The end-to-end tests, one binary (as wasmtime's `tests/all`): each
//! module drives a real server over HTTP the way one API's clients do.
//! Linking wasmtime, axum and reqwest once instead of once per file is most
//! of a test build's time.
//!
//! The load tests (`tests/sharing.rs`) stay a binary of their own: they
//! measure how one tenant's load affects another's latency, so they must
//! not share the machine with these.

mod attentive;
mod audiences;
mod bsg;
mod canary;
mod console_api;
mod core;
mod email;
mod gifts;
mod guests;
mod kit;
mod messaging;
mod operations;
mod platform;
mod playbasis;
mod playsms;
mod time_zones;
mod wit_versions;
