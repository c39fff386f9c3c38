//! Engage: an engagement back end (players, points, rewards, gifts,
//! messaging) in which every decision a tenant wants to own runs as a
//! WebAssembly component the tenant uploads.
//!
//! The crate is organised by concern, each module owning its tables and
//! invariants: [`store`] (the embedded backend and the group-commit writer;
//! the only module that names its database), [`tenants`],
//! [`plugins`] (the wasmtime runtime and per-tenant registry), and [`api`]
//! (thin axum routers). [`server`] wires them together.

#![deny(unsafe_code)]

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

pub mod api;
pub mod config;
pub mod cors;
pub mod listener;
pub mod server;
pub mod throttle;
