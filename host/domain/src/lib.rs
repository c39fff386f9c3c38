//! The engagement domain: tenants, players and their friends, actions and
//! the rules plugins judge them by, goods and coupons, gifts with their
//! hooks, notifications, audiences (sign-up sources, subscriptions,
//! segments), campaigns, and the web origins a tenant allows (`cors`).
//!
//! Every rule lives here and is checked inside the write job that applies
//! it; the API crate only translates wire formats to these functions and
//! their answers back.

#![deny(unsafe_code)]

pub mod actions;
pub mod activity;
pub mod audiences;
pub mod campaigns;
pub mod cors;
pub mod events;
pub mod gifts;
pub mod goods;
pub mod notifications;
pub mod players;
pub mod social;
pub mod tenants;
