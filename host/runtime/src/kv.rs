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

use serde::{Deserialize, Serialize};

use engage_ledger::views;
use engage_store::{Reader, StoreError, Table, Tx, key};

/// (tenant, plugin name, key) → expiry (i64 LE, ms; `i64::MAX` for none) ++ value.
pub(crate) const KV: Table = Table::new("plugin_kv");

/// The longest key a plugin may use.
pub const MAX_KEY_BYTES: usize = 512;
/// The largest value a plugin may store.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// The most distinct keys one call may write.
pub const MAX_WRITES: usize = 1000;
/// The most reads one call may record.
pub const MAX_READS: usize = 10_000;

/// tenant → [`Usage`]: what a tenant's plugins hold in the store, kept in
/// step by every write so the quota is checked without a scan.
const USAGE: Table = Table::new("plugin_kv_usage");

/// What all of a tenant's plugins may keep in the key-value store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Quota {
    pub max_keys: u64,
    /// Keys and values, in bytes.
    pub max_bytes: u64,
}

impl Default for Quota {
    fn default() -> Self {
        Quota {
            max_keys: 100_000,
            max_bytes: 64 << 20,
        }
    }
}

/// What a tenant's plugins hold: keys, and bytes of keys and values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Usage {
    pub keys: u64,
    pub bytes: u64,
}

/// The writes would take the tenant past its quota; nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the plugins' key-value store would hold {keys} keys and {bytes} bytes; this tenant's quota is {max_keys} keys and {max_bytes} bytes (delete keys, or give them a ttl)"
)]
pub struct QuotaExceeded {
    pub keys: u64,
    pub bytes: u64,
    pub max_keys: u64,
    pub max_bytes: u64,
}

/// What `tenant`'s plugins hold. A tenant with data from before usage was
/// tracked is counted once (a scan of its keys) and then kept in step.
pub fn usage(src: &impl Reader, tenant: &str) -> Result<Usage, StoreError> {
    if let Some(u) = src.get::<Usage>(USAGE, tenant)? {
        return Ok(u);
    }
    let mut u = Usage::default();
    let p = engage_store::prefix(&[tenant]);
    let mut after: Option<String> = None;
    loop {
        let page = src.scan_raw(KV, &p, after.as_deref(), 1000, false)?;
        let done = page.len() < 1000;
        for (k, v) in &page {
            u.keys += 1;
            u.bytes += entry_bytes(k, v.len());
        }
        after = page.last().map(|(k, _)| k.clone());
        if done {
            return Ok(u);
        }
    }
}

/// Entries past their ttl are deleted, and no longer count against the
/// tenant's quota.
pub const SWEEP: engage_store::sweeper::Sweep = engage_store::sweeper::Sweep {
    name: "plugin key-value entries",
    table: KV,
    dead: |_, look| Ok(decode(look.raw).is_none_or(|(exp, _)| exp <= look.now_ms)),
    forget: Some(|tx, look| {
        let tenant = engage_store::parts(look.key).next().unwrap_or_default();
        forget(tx, tenant, look.key, look.raw.len())
    }),
};

/// What one stored entry counts against the quota.
fn entry_bytes(stored_key: &str, raw_len: usize) -> u64 {
    (stored_key.len() + raw_len) as u64
}

/// Record that an entry of `stored_key` (raw length `raw_len`) was removed
/// outside a plugin call (the sweeper).
pub fn forget(
    tx: &mut Tx,
    tenant: &str,
    stored_key: &str,
    raw_len: usize,
) -> Result<(), StoreError> {
    let mut u = usage(tx, tenant)?;
    u.keys = u.keys.saturating_sub(1);
    u.bytes = u.bytes.saturating_sub(entry_bytes(stored_key, raw_len));
    tx.put(USAGE, tenant, &u)
}

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// The tenant's quota, checked when the writes apply.
    #[serde(skip)]
    pub quota: Quota,
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

    /// Apply the buffered writes, keeping the tenant's usage in step. Call
    /// after [`Effects::validate`] passed. When the writes would take the
    /// tenant past its quota, nothing is written and the job must fail (so
    /// the operation the plugin guarded fails with it).
    pub fn apply(&self, tx: &mut Tx) -> Result<Result<(), QuotaExceeded>, StoreError> {
        if self.writes.is_empty() {
            return Ok(Ok(()));
        }
        let before = usage(tx, &self.tenant)?;
        let (mut keys, mut bytes) = (before.keys as i128, before.bytes as i128);
        let mut planned = Vec::with_capacity(self.writes.len());
        for (k, w) in &self.writes {
            let stored = kv_key(&self.tenant, &self.plugin, k);
            if let Some(old) = tx.get_raw(KV, &stored)? {
                keys -= 1;
                bytes -= entry_bytes(&stored, old.len()) as i128;
            }
            let raw = match w {
                Write::Set {
                    value,
                    expires_at_ms,
                } => {
                    let raw = encode(*expires_at_ms, value);
                    keys += 1;
                    bytes += entry_bytes(&stored, raw.len()) as i128;
                    Some(raw)
                }
                Write::Delete => None,
            };
            planned.push((stored, raw));
        }
        let after = Usage {
            keys: keys.max(0) as u64,
            bytes: bytes.max(0) as u64,
        };
        let grows = after.keys > before.keys || after.bytes > before.bytes;
        if grows && (after.keys > self.quota.max_keys || after.bytes > self.quota.max_bytes) {
            return Ok(Err(QuotaExceeded {
                keys: after.keys,
                bytes: after.bytes,
                max_keys: self.quota.max_keys,
                max_bytes: self.quota.max_bytes,
            }));
        }
        for (stored, raw) in planned {
            match raw {
                Some(raw) => tx.put_raw(KV, &stored, &raw)?,
                None => {
                    tx.remove(KV, &stored)?;
                }
            }
        }
        tx.put(USAGE, &self.tenant, &after)?;
        Ok(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the tenant's keys really hold, by a scan.
    fn counted(src: &impl Reader, tenant: &str) -> Usage {
        let mut u = Usage::default();
        for (k, v) in src
            .scan_raw(KV, &engage_store::prefix(&[tenant]), None, 100_000, false)
            .expect("scan")
        {
            u.keys += 1;
            u.bytes += entry_bytes(&k, v.len());
        }
        u
    }

    /// Many generated calls (sets, deletes, ttls, stale reads) from two
    /// plugins of two tenants, seeded so a failure replays: the usage kept
    /// in step always equals what a scan counts, no write that grows a
    /// tenant past its quota lands (and a refused one writes nothing), and
    /// a call whose read went stale conflicts and writes nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn usage_stays_exact_and_the_quota_holds() {
        let path =
            std::env::temp_dir().join(format!("engage-kv-{}", engage_store::ids::random_hex(6)));
        let dir = engage_store::files::open_data_dir(&path).expect("dir");
        let store = engage_store::Store::open(&dir).expect("store");
        let quota = Quota {
            max_keys: 12,
            max_bytes: 2_000,
        };
        let mut seeded = engage_store::ids::Seeded::new(0x9E37_79B9_7F4A_7C15u64);
        let mut next = |n: u64| seeded.below(n);
        let (mut refused, mut conflicts, mut applied) = (0, 0, 0);
        for _ in 0..400 {
            let tenant = ["a", "b"][next(2) as usize].to_owned();
            let plugin = ["p", "q"][next(2) as usize].to_owned();
            let mut effects = Effects {
                tenant: tenant.clone(),
                plugin: plugin.clone(),
                quota,
                ..Effects::default()
            };
            for _ in 0..1 + next(4) {
                let k = format!("k{}", next(10));
                let w = if next(4) == 0 {
                    Write::Delete
                } else {
                    Write::Set {
                        value: vec![7; next(300) as usize],
                        expires_at_ms: (next(3) == 0).then_some(5_000),
                    }
                };
                effects.writes.insert(k, w);
            }
            // Sometimes the call read a key and saw a value that is no
            // longer there.
            let stale = next(5) == 0;
            if stale {
                effects.reads.push(Read::Key {
                    key: "k0".into(),
                    raw: Some(b"never stored".to_vec()),
                });
            }
            let outcome = store
                .write(move |tx| {
                    if effects.validate(tx)?.is_err() {
                        return Ok::<_, StoreError>("conflict");
                    }
                    Ok(match effects.apply(tx)? {
                        Ok(()) => "applied",
                        Err(_) => "refused",
                    })
                })
                .await
                .expect("write");
            match outcome {
                "conflict" => {
                    assert!(stale);
                    conflicts += 1;
                }
                "refused" => refused += 1,
                _ => applied += 1,
            }
            let snap = store.read().expect("read");
            for t in ["a", "b"] {
                let kept = usage(&snap, t).expect("usage");
                assert_eq!(kept, counted(&snap, t), "tenant {t}");
                assert!(kept.keys <= quota.max_keys && kept.bytes <= quota.max_bytes);
            }
        }
        assert!(
            applied > 100 && refused > 0 && conflicts > 0,
            "{applied} {refused} {conflicts}"
        );
        drop(store);
        let _ = std::fs::remove_dir_all(path);
    }
}
