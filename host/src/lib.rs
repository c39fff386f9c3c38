//! Engage: an engagement back end (players, points, rewards, gifts,
//! messaging) in which every decision a tenant wants to own runs as a
//! WebAssembly component the tenant uploads.
//!
//! This crate is the `engage` binary and what it alone knows: the
//! configuration ([`config`]) and how the parts are opened, wired and
//! stopped ([`server`]). The parts are crates of their own, one per concern,
//! each depending only on those below it:
//!
//! | crate | folder | what it keeps |
//! |---|---|---|
//! | `engage-store` | `host/store` | tables, key codec, the backend traits and the embedded (redb) backend, group-commit writer, durable queue, idempotency records, sweeper, sealed secrets (the only crate that names redb) |
//! | `engage-store-postgres` | `host/store-postgres` | the PostgreSQL backend of the store's traits: many hosts on one database |
//! | `engage-ledger` | `host/ledger` | points: entries, balances, totals; the read views plugins see |
//! | `engage-runtime` | `host/runtime` | wasmtime engine, sandbox, per-tenant registry, plugin key-value state, the judged commit |
//! | `engage-messaging` | `host/messaging` | outbox, dispatcher, providers, pricing, opt-outs, the SMS gateway |
//! | `engage-domain` | `host/domain` | tenants, players, social, actions, goods, gifts, notifications, audiences, campaigns |
//! | `engage-api` | `host/api` | the native `/v1` API, the vendor APIs under `compat/`, the listener and throttle |
//!
//! They are re-exported here under their module names, so the tests and
//! benchmarks reach every part through `engage::…`.

#![deny(unsafe_code)]

pub use engage_api as api;
pub use engage_api::{listener, throttle};
pub use engage_domain::cors;
pub use engage_domain::{
    actions, audiences, campaigns, gifts, goods, notifications, players, social, tenants,
};
pub use engage_ledger as ledger;
pub use engage_ledger::views;
pub use engage_messaging as messaging;
pub use engage_messaging::gateway;
pub use engage_runtime as plugins;
pub use engage_store as store;
pub use engage_store::{idempotency, ids, secrets, shutdown, sweeper};
pub use engage_store_postgres as store_postgres;
pub use engage_time as time;

pub mod config;
pub mod kit;
pub mod server;
