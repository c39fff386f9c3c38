//! The plugins' key-value store, and how a call's reads and writes commit.
//!
//! A plugin runs on a snapshot. Everything it reads (keys, balances, action
//! counts) is recorded with the value it saw; everything it writes is
//! buffered. The operation the plugin guarded then commits in a write job
//! that first checks every recorded read against the current data: if any
//! changed, the job answers [`Conflict`] without writing and the caller runs
//! the plugin again on a fresh snapshot. Reads that still hold make the
//! plugin's decision serializable, so a quota or a cap read-then-incremented
//! by a plugin holds exactly under concurrency.

use std::collections::BTreeMap;

use redb::TableDefinition;
use serde::Serialize;

use crate::store::{Reader, StoreError, Table, Tx, key};
use crate::views;

/// (tenant, plugin name, key) → expiry (i64 LE, ms; `i64::MAX` for none) ++ value.
pub const KV: Table = TableDefinition::new("plugin_kv");

/// The longest key a plugin may use.
pub const MAX_KEY_BYTES: usize = 512;
/// The largest value a plugin may store.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// The most distinct keys one call may write.
pub const MAX_WRITES: usize = 1000;
/// The most reads one call may record.
pub const MAX_READS: usize = 10_000;

/// The stored key of a plugin's key.
pub fn kv_key(tenant: &str, plugin: &str, k: &str) -> String {
    key(&[tenant, plugin, k])
}

/// Split a stored entry into expiry and value.
pub fn decode(raw: &[u8]) -> Option<(i64, &[u8])> {
    let (exp, value) = raw.split_at_checked(8)?;
    Some((i64::from_le_bytes(exp.try_into().ok()?), value))
}

/// Encode an entry.
pub fn encode(expires_at_ms: Option<i64>, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&expires_at_ms.unwrap_or(i64::MAX).to_le_bytes());
    out.extend_from_slice(value);
    out
}

/// The live value of a stored entry at `now_ms`.
pub fn live(raw: Option<&[u8]>, now_ms: i64) -> Option<(i64, Vec<u8>)> {
    let (exp, value) = decode(raw?)?;
    (exp > now_ms).then(|| (exp, value.to_vec()))
}

/// One thing a call read, with what it saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Read {
    /// A key, with its raw stored entry (expiry included).
    Key { key: String, raw: Option<Vec<u8>> },
    Balance {
        player: String,
        currency: String,
        value: i64,
    },
    ActionCount {
        player: String,
        action: String,
        since_ms: i64,
        value: u64,
    },
}

/// A buffered write.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Write {
    Set {
        value: Vec<u8>,
        expires_at_ms: Option<i64>,
    },
    Delete,
}

/// What a call read and wants to write, scoped to one tenant and plugin.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Effects {
    pub tenant: String,
    pub plugin: String,
    pub reads: Vec<Read>,
    /// Keyed by the plugin's own key (not the stored key).
    pub writes: BTreeMap<String, Write>,
}

/// The data changed since the plugin read it: run it again.
#[derive(Debug, thiserror::Error)]
#[error("the data a plugin read changed before its writes could commit")]
pub struct Conflict;

impl Effects {
    /// Whether the call wrote nothing.
    pub fn is_read_only(&self) -> bool {
        self.writes.is_empty()
    }

    /// Check every read against `tx`. Call first in a write job, before any write.
    pub fn validate(&self, tx: &Tx) -> Result<Result<(), Conflict>, StoreError> {
        for read in &self.reads {
            let same = match read {
                Read::Key { key, raw } => {
                    tx.get_raw(KV, &kv_key(&self.tenant, &self.plugin, key))? == *raw
                }
                Read::Balance {
                    player,
                    currency,
                    value,
                } => views::balance(tx, &self.tenant, player, currency)? == *value,
                Read::ActionCount {
                    player,
                    action,
                    since_ms,
                    value,
                } => views::action_count(tx, &self.tenant, player, action, *since_ms)? == *value,
            };
            if !same {
                return Ok(Err(Conflict));
            }
        }
        Ok(Ok(()))
    }

    /// Apply the buffered writes. Call after [`Effects::validate`] passed.
    pub fn apply(&self, tx: &mut Tx) -> Result<(), StoreError> {
        for (k, w) in &self.writes {
            let stored = kv_key(&self.tenant, &self.plugin, k);
            match w {
                Write::Set {
                    value,
                    expires_at_ms,
                } => tx.put_raw(KV, &stored, &encode(*expires_at_ms, value))?,
                Write::Delete => {
                    tx.remove(KV, &stored)?;
                }
            }
        }
        Ok(())
    }
}
