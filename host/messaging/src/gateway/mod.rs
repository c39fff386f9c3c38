//! The SMS gateway service: accounts that send through the messaging
//! engine and pay from their own credit, their phonebooks, and inbound SMS
//! (keywords, inboxes, and the STOP / START / HELP words that keep the
//! opt-out list).
//!
//! This is the domain the playSMS-compatible webservices API
//! (the API crate's `compat::playsms` module) translates to; `/v1/gateway` manages
//! the same records natively.

pub mod accounts;
pub mod inbound;
pub mod numbers;
pub mod outgoing;
pub mod phonebook;
pub mod send;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::pricing::PricingError;
use crate::{MessageError, Messaging};
use engage_store::{Reader, Store, StoreError, Table, Tx, key};

/// tenant → [`Settings`].
const SETTINGS: Table = Table::new("gateway_settings");

/// What can go wrong in the gateway service.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    Invalid(String),
    #[error("no account `{0}`")]
    NoAccount(String),
    #[error("an account `{0}` already exists")]
    AccountExists(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Exists(String),
    /// A keyword the tenant's STOP / START / HELP words already take.
    #[error("{0}")]
    Reserved(String),
    #[error("this Idempotency-Key was used for a different request; use a new key")]
    KeyReused,
    #[error(transparent)]
    Pricing(#[from] PricingError),
    #[error(transparent)]
    Message(#[from] MessageError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<engage_ledger::LedgerError> for GatewayError {
    fn from(e: engage_ledger::LedgerError) -> Self {
        GatewayError::Pricing(e.into())
    }
}

/// A tenant's gateway settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
#[schema(as = GatewaySettings)]
pub struct Settings {
    /// Digits that replace a leading 0 of a local number for accounts that
    /// set no `replace_zero` of their own, e.g. `62`.
    #[schema(pattern = "^[0-9]{0,4}$")]
    pub default_replace_zero: String,
    /// First words of an inbound SMS that opt its sender out of marketing.
    /// A word (1 to 32 letters, digits, `-` or `_`, compared in upper
    /// case) is in only one of the three lists.
    #[schema(inline, value_type = Vec<KeywordText>)]
    pub stop_words: Vec<String>,
    /// First words that opt the sender back in.
    #[schema(inline, value_type = Vec<KeywordText>)]
    pub start_words: Vec<String>,
    /// First words that ask for help.
    #[schema(inline, value_type = Vec<KeywordText>)]
    pub help_words: Vec<String>,
    /// Answers sent back (transactional) to those words; none: no answer.
    pub stop_reply: Option<String>,
    pub start_reply: Option<String>,
    pub help_reply: Option<String>,
}

/// A keyword as a client writes one ([`inbound::normalize_keyword`]).
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, pattern = "^\\s*[\\w-]{1,32}\\s*$")]
#[allow(dead_code)]
struct KeywordText(String);

impl Default for Settings {
    fn default() -> Self {
        let words = |w: &[&str]| w.iter().map(|s| (*s).to_owned()).collect();
        Settings {
            default_replace_zero: String::new(),
            stop_words: words(&["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"]),
            start_words: words(&["START", "UNSTOP"]),
            help_words: words(&["HELP", "INFO"]),
            stop_reply: None,
            start_reply: None,
            help_reply: None,
        }
    }
}

impl Settings {
    /// Check settings a client sent, and upper-case the words.
    pub fn validate(mut self) -> Result<Settings, GatewayError> {
        if !self
            .default_replace_zero
            .bytes()
            .all(|b| b.is_ascii_digit())
            || self.default_replace_zero.len() > 4
        {
            return Err(GatewayError::Invalid(
                "default_replace_zero is up to 4 digits, e.g. 62".into(),
            ));
        }
        for list in [
            &mut self.stop_words,
            &mut self.start_words,
            &mut self.help_words,
        ] {
            for w in list.iter_mut() {
                *w = inbound::normalize_keyword(w).ok_or_else(|| {
                    GatewayError::Invalid(format!(
                        "`{w}` is not a keyword: 1 to 32 letters, digits, - or _"
                    ))
                })?;
            }
        }
        let mut all: Vec<&String> = self
            .stop_words
            .iter()
            .chain(&self.start_words)
            .chain(&self.help_words)
            .collect();
        all.sort();
        if all.windows(2).any(|w| w[0] == w[1]) {
            return Err(GatewayError::Invalid(
                "a word can be in only one of stop_words, start_words and help_words".into(),
            ));
        }
        Ok(self)
    }
}

/// The tenant's settings (the defaults until it sets some).
pub fn settings(src: &impl Reader, tenant: &str) -> Result<Settings, StoreError> {
    Ok(src.get(SETTINGS, &key(&[tenant]))?.unwrap_or_default())
}

/// Replace the tenant's settings.
pub fn set_settings(tx: &mut Tx, tenant: &str, s: &Settings) -> Result<(), StoreError> {
    tx.put(SETTINGS, &key(&[tenant]), s)
}

/// The gateway service: what inbound processing needs to answer and
/// forward messages.
pub struct Gateway {
    pub store: Store,
    pub messaging: Arc<Messaging>,
}
