//! E-mail, the third channel beside SMS and Viber, on the same engine: an
//! e-mail is a [`crate::Message`] with a subject (and optionally HTML), in
//! the same outbox, rendered by the same `template` binding, planned by the
//! same `route` binding, paid from the same credit, and sent through an
//! `smtp` provider ([`smtp`]).
//!
//! What differs from SMS is what comes back. An SMTP server answers only
//! "taken" or "refused"; there is no delivery report. So an e-mail attempt
//! is `sent` when the server takes it, becomes `undeliverable` (and fails
//! over) when a bounce reports it ([`bounces`], through the provider's
//! bounce webhook), and `delivered` when no bounce came within its report
//! timeout. Addresses that keep bouncing are suppressed ([`suppression`]);
//! marketing e-mail carries a signed one-click unsubscribe link
//! ([`unsubscribe`]) that puts the address on the opt-out list, which every
//! marketing send and the subscription APIs' eligibility read.

pub mod bounces;
pub mod mime;
pub mod smtp;
pub mod suppression;
pub mod unsubscribe;

/// The longest subject, in characters.
pub const MAX_SUBJECT: usize = 500;
/// The largest text or HTML body, in bytes.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// The most text and HTML one request may store over all its recipients
/// (each recipient's message keeps a copy).
pub const MAX_REQUEST_BYTES: usize = 2 * 1024 * 1024;
