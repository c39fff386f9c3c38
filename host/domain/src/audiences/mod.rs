//! Audiences: who may be sent what. Sign-up sources and per-channel
//! subscriptions (MARKETING / TRANSACTIONAL on TEXT / EMAIL).
//!
//! TEXT MARKETING consent and the messaging engine's opt-out list are one
//! fact seen from two sides: unsubscribing a phone from TEXT MARKETING puts
//! it on the opt-out list (so no API can send it marketing), subscribing
//! it again (fresh consent) takes it off, and a STOP reply lands on the
//! same list. A phone is eligible for TEXT MARKETING when it is subscribed
//! and not opted out.

pub mod segments;
pub mod subscriptions;

pub use subscriptions::{Channel, SubType};
