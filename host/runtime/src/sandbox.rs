//! What one plugin call owns: its limits, its view of the data, its buffered
//! writes and its log. A fresh [`CallState`] lives in a fresh `Store` for
//! every call, so nothing leaks between calls or tenants.

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};
use wasmtime::ResourceLimiter;

use super::bindings::Level;
use super::bindings::v0_1_0::{host, types};
use super::bindings::v0_2_0 as v2;
use super::clip;
use super::fixture::Fixture;
use super::kv::{self, Effects, Read, Write};
use engage_ledger::views;
use engage_store::{Reader, Snapshot};

/// The most log lines one call keeps; later ones are counted and dropped.
pub const MAX_LOG_LINES: usize = 64;
/// The longest log line kept, in bytes; longer ones are cut.
pub const MAX_LOG_LINE_BYTES: usize = 2048;
/// The most fields a log line keeps, and the longest field name and value.
pub const MAX_LOG_FIELDS: usize = 16;
pub const MAX_LOG_FIELD_NAME_BYTES: usize = 64;
pub const MAX_LOG_FIELD_VALUE_BYTES: usize = 256;
/// The most log bytes (messages and fields) one call keeps in all; later
/// lines are counted and dropped. Bounds what a call's logs add to an answer.
pub const MAX_LOG_BYTES: usize = 64 * 1024;

/// A log line a plugin wrote.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LogLine {
    pub level: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Vec<String>>)]
    pub fields: Vec<(String, String)>,
}

/// What a call's reads see.
#[derive(Clone, Default)]
pub enum Data {
    /// Nothing: every key and view reads as empty (a config check).
    #[default]
    None,
    /// The store, as of the snapshot the call runs on (the server).
    Snapshot(Arc<Snapshot>),
    /// Given data (`engage plugin run`, a replay).
    Fixture(Arc<Fixture>),
}

impl From<Option<Arc<Snapshot>>> for Data {
    fn from(s: Option<Arc<Snapshot>>) -> Data {
        s.map(Data::Snapshot).unwrap_or_default()
    }
}

/// Everything the host knows about the call in progress.
pub struct CallState {
    pub limiter: Limiter,
    pub tenant: Arc<str>,
    pub config: Arc<str>,
    pub now_ms: i64,
    pub request_id: Arc<str>,
    pub data: Data,
    pub effects: Effects,
    pub logs: Vec<LogLine>,
    pub logs_dropped: u32,
    /// Bytes kept in `logs` so far.
    log_bytes: usize,
    /// A host-side failure (storage) that ended the call with a trap.
    pub host_failure: Option<String>,
}

/// The per-call memory cap, over *all* linear memories of the call's
/// store together (a component may have several; a cap per memory let one
/// call take several times its limit). Growth beyond it traps, and the
/// flag tells the host the trap was the memory limit.
pub struct Limiter {
    pub max_memory: usize,
    /// Bytes of all memories of the store so far.
    pub total: usize,
    pub memory_exceeded: bool,
}

impl Limiter {
    pub fn new(max_memory: usize) -> Limiter {
        Limiter {
            max_memory,
            total: 0,
            memory_exceeded: false,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.total.saturating_sub(current).saturating_add(desired);
        if total > self.max_memory {
            self.memory_exceeded = true;
            wasmtime::bail!(
                "memory limit of {} bytes exceeded (the call's memories would hold {total})",
                self.max_memory
            );
        }
        self.total = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

impl CallState {
    pub fn new(ctx: &super::Context) -> Self {
        CallState {
            limiter: Limiter::new(ctx.limits.memory_bytes),
            effects: Effects {
                tenant: ctx.tenant.to_string(),
                plugin: ctx.plugin.to_string(),
                quota: ctx.kv_quota,
                ..Effects::default()
            },
            tenant: ctx.tenant.clone(),
            config: ctx.config.clone(),
            now_ms: ctx.now_ms,
            request_id: ctx.request_id.clone(),
            data: ctx.data.clone(),
            logs: Vec::new(),
            logs_dropped: 0,
            log_bytes: 0,
            host_failure: None,
        }
    }

    fn fail(&mut self, why: String) -> wasmtime::Error {
        self.host_failure = Some(why.clone());
        wasmtime::Error::msg(why)
    }

    fn record(&mut self, read: Read) -> wasmtime::Result<()> {
        if self.effects.reads.len() >= kv::MAX_READS {
            return Err(self.fail(format!(
                "a call may read at most {} keys and views",
                kv::MAX_READS
            )));
        }
        if !self.effects.reads.contains(&read) {
            self.effects.reads.push(read);
        }
        Ok(())
    }

    fn check_key(&mut self, key: &str) -> wasmtime::Result<()> {
        if key.len() > kv::MAX_KEY_BYTES {
            return Err(self.fail(format!("a key is at most {} bytes", kv::MAX_KEY_BYTES)));
        }
        Ok(())
    }

    fn buffer(&mut self, key: String, write: Write) -> wasmtime::Result<()> {
        if !self.effects.writes.contains_key(&key) && self.effects.writes.len() >= kv::MAX_WRITES {
            return Err(self.fail(format!("a call may write at most {} keys", kv::MAX_WRITES)));
        }
        self.effects.writes.insert(key, write);
        Ok(())
    }

    /// The live value and expiry of `key` as this call sees it: its own
    /// buffered write, else the snapshot (recording the read).
    fn current(&mut self, key: &str) -> wasmtime::Result<Option<(i64, Vec<u8>)>> {
        match self.effects.writes.get(key) {
            Some(Write::Set {
                value,
                expires_at_ms,
            }) => {
                let exp = expires_at_ms.unwrap_or(i64::MAX);
                return Ok((exp > self.now_ms).then(|| (exp, value.clone())));
            }
            Some(Write::Delete) => return Ok(None),
            None => {}
        }
        let raw = match &self.data {
            Data::Snapshot(snap) => {
                let stored = kv::kv_key(&self.tenant, &self.effects.plugin, key);
                match snap.get_raw(kv::KV, &stored) {
                    Ok(raw) => raw,
                    Err(e) => return Err(self.fail(format!("storage: {e}"))),
                }
            }
            Data::Fixture(f) => f.kv_raw(key),
            Data::None => None,
        };
        let live = kv::live(raw.as_deref(), self.now_ms);
        self.record(Read::Key {
            key: key.to_owned(),
            raw,
        })?;
        Ok(live)
    }
}

impl types::Host for CallState {}

/// A recorded line (its level one of [`level_name`]'s names).
impl<'de> Deserialize<'de> for LogLine {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<LogLine, D::Error> {
        #[derive(Deserialize)]
        struct Recorded {
            level: String,
            message: String,
            #[serde(default)]
            fields: Vec<(String, String)>,
        }
        let r = Recorded::deserialize(d)?;
        let level = [
            Level::Trace,
            Level::Debug,
            Level::Info,
            Level::Warn,
            Level::Error,
        ]
        .into_iter()
        .map(level_name)
        .find(|n| *n == r.level)
        .ok_or_else(|| serde::de::Error::custom(format!("unknown log level `{}`", r.level)))?;
        Ok(LogLine {
            level,
            message: r.message,
            fields: r.fields,
        })
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

impl host::Host for CallState {
    fn log(
        &mut self,
        level: Level,
        mut message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        if self.logs.len() >= MAX_LOG_LINES || self.log_bytes >= MAX_LOG_BYTES {
            self.logs_dropped = self.logs_dropped.saturating_add(1);
            return Ok(());
        }
        message = clip(message, MAX_LOG_LINE_BYTES);
        let fields: Vec<_> = fields
            .into_iter()
            .take(MAX_LOG_FIELDS)
            .map(|(k, v)| {
                (
                    clip(k, MAX_LOG_FIELD_NAME_BYTES),
                    clip(v, MAX_LOG_FIELD_VALUE_BYTES),
                )
            })
            .collect();
        self.log_bytes +=
            message.len() + fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        let level = level_name(level);
        tracing::debug!(target: "engage::plugin", tenant = %self.tenant, plugin = %self.effects.plugin, request_id = %self.request_id, level, "{message}");
        self.logs.push(LogLine {
            level,
            message,
            fields,
        });
        Ok(())
    }

    fn now_ms(&mut self) -> wasmtime::Result<i64> {
        Ok(self.now_ms)
    }

    fn config(&mut self) -> wasmtime::Result<String> {
        Ok(self.config.to_string())
    }

    fn tenant(&mut self) -> wasmtime::Result<String> {
        Ok(self.tenant.to_string())
    }

    fn kv_get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        self.check_key(&key)?;
        Ok(self.current(&key)?.map(|(_, v)| v))
    }

    fn kv_set(&mut self, key: String, value: Vec<u8>, ttl_ms: Option<u64>) -> wasmtime::Result<()> {
        self.check_key(&key)?;
        if value.len() > kv::MAX_VALUE_BYTES {
            return Err(self.fail(format!("a value is at most {} bytes", kv::MAX_VALUE_BYTES)));
        }
        let expires_at_ms =
            ttl_ms.map(|t| self.now_ms.saturating_add(t.min(i64::MAX as u64) as i64));
        self.buffer(
            key,
            Write::Set {
                value,
                expires_at_ms,
            },
        )
    }

    fn kv_delete(&mut self, key: String) -> wasmtime::Result<()> {
        self.check_key(&key)?;
        self.buffer(key, Write::Delete)
    }

    fn kv_increment(
        &mut self,
        key: String,
        delta: i64,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<i64> {
        self.check_key(&key)?;
        let current = self.current(&key)?;
        let (old, old_exp) = match &current {
            Some((exp, bytes)) => match <[u8; 8]>::try_from(bytes.as_slice()) {
                Ok(b) => (i64::from_le_bytes(b), Some(*exp)),
                Err(_) => {
                    return Err(self.fail(format!(
                        "key `{key}` does not hold a counter (8-byte integer)"
                    )));
                }
            },
            None => (0, None),
        };
        let Some(new) = old.checked_add(delta) else {
            return Err(self.fail(format!("incrementing `{key}` by {delta} overflows")));
        };
        let expires_at_ms = match ttl_ms {
            Some(t) => Some(self.now_ms.saturating_add(t.min(i64::MAX as u64) as i64)),
            None => old_exp.filter(|e| *e != i64::MAX),
        };
        self.buffer(
            key,
            Write::Set {
                value: new.to_le_bytes().to_vec(),
                expires_at_ms,
            },
        )?;
        Ok(new)
    }

    fn balance(&mut self, player: String, currency: String) -> wasmtime::Result<i64> {
        let value = match &self.data {
            Data::Snapshot(snap) => {
                match views::balance(snap.as_ref(), &self.tenant, &player, &currency) {
                    Ok(v) => v,
                    Err(e) => return Err(self.fail(format!("storage: {e}"))),
                }
            }
            Data::Fixture(f) => f.balance(&player, &currency),
            Data::None => 0,
        };
        self.record(Read::Balance {
            player,
            currency,
            value,
        })?;
        Ok(value)
    }

    fn action_count(
        &mut self,
        player: String,
        action: String,
        since_ms: i64,
    ) -> wasmtime::Result<u64> {
        let value = match &self.data {
            Data::Snapshot(snap) => {
                match views::action_count(snap.as_ref(), &self.tenant, &player, &action, since_ms) {
                    Ok(v) => v,
                    Err(e) => return Err(self.fail(format!("storage: {e}"))),
                }
            }
            Data::Fixture(f) => f.action_count(&player, &action, since_ms),
            Data::None => 0,
        };
        self.record(Read::ActionCount {
            player,
            action,
            since_ms,
            value,
        })?;
        Ok(value)
    }
}

impl v2::types::Host for CallState {}

/// 0.2.0's host interface is 0.1.0's, function for function: delegated.
impl v2::host::Host for CallState {
    fn log(
        &mut self,
        level: v2::host::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        let level = match level {
            v2::host::Level::Trace => Level::Trace,
            v2::host::Level::Debug => Level::Debug,
            v2::host::Level::Info => Level::Info,
            v2::host::Level::Warn => Level::Warn,
            v2::host::Level::Error => Level::Error,
        };
        host::Host::log(self, level, message, fields)
    }

    fn now_ms(&mut self) -> wasmtime::Result<i64> {
        host::Host::now_ms(self)
    }

    fn config(&mut self) -> wasmtime::Result<String> {
        host::Host::config(self)
    }

    fn tenant(&mut self) -> wasmtime::Result<String> {
        host::Host::tenant(self)
    }

    fn kv_get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        host::Host::kv_get(self, key)
    }

    fn kv_set(&mut self, key: String, value: Vec<u8>, ttl_ms: Option<u64>) -> wasmtime::Result<()> {
        host::Host::kv_set(self, key, value, ttl_ms)
    }

    fn kv_delete(&mut self, key: String) -> wasmtime::Result<()> {
        host::Host::kv_delete(self, key)
    }

    fn kv_increment(
        &mut self,
        key: String,
        delta: i64,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<i64> {
        host::Host::kv_increment(self, key, delta, ttl_ms)
    }

    fn balance(&mut self, player: String, currency: String) -> wasmtime::Result<i64> {
        host::Host::balance(self, player, currency)
    }

    fn action_count(
        &mut self,
        player: String,
        action: String,
        since_ms: i64,
    ) -> wasmtime::Result<u64> {
        host::Host::action_count(self, player, action, since_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_cap_covers_all_memories_of_a_call_together() {
        const MIB: usize = 1 << 20;
        let mut l = Limiter::new(64 * MIB);
        // Two memories of 30 MiB each fit in 64 MiB…
        assert!(l.memory_growing(0, 30 * MIB, None).is_ok());
        assert!(l.memory_growing(0, 30 * MIB, None).is_ok());
        // …a third does not, although it alone is under the cap.
        assert!(l.memory_growing(0, 30 * MIB, None).is_err());
        assert!(l.memory_exceeded);
        // Growing one of them counts only the growth.
        let mut l = Limiter::new(64 * MIB);
        assert!(l.memory_growing(0, 30 * MIB, None).is_ok());
        assert!(l.memory_growing(30 * MIB, 60 * MIB, None).is_ok());
        assert_eq!(l.total, 60 * MIB);
        assert!(l.memory_growing(0, 8 * MIB, None).is_err());
    }
}
