//! What one plugin call owns: its limits, its view of the data, its buffered
//! writes and its log. A fresh [`CallState`] lives in a fresh `Store` for
//! every call, so nothing leaks between calls or tenants.

use std::sync::Arc;

use serde::Serialize;
use wasmtime::ResourceLimiter;

use super::bindings::Level;
use super::bindings::rules::engage::plugin::{host, types};
use super::kv::{self, Effects, Read, Write};
use crate::store::{Reader, Snapshot};
use crate::views;

/// The most log lines one call keeps; later ones are counted and dropped.
pub const MAX_LOG_LINES: usize = 64;
/// The longest log line kept, in bytes; longer ones are cut.
pub const MAX_LOG_LINE_BYTES: usize = 2048;

/// A log line a plugin wrote.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    pub level: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<(String, String)>,
}

/// Everything the host knows about the call in progress.
pub struct CallState {
    pub limiter: Limiter,
    pub tenant: Arc<str>,
    pub config: Arc<str>,
    pub now_ms: i64,
    pub request_id: Arc<str>,
    pub snapshot: Option<Arc<Snapshot>>,
    pub effects: Effects,
    pub logs: Vec<LogLine>,
    pub logs_dropped: u32,
    /// A host-side failure (storage) that ended the call with a trap.
    pub host_failure: Option<String>,
}

/// The per-call memory cap. Growth beyond it traps, and the flag tells the
/// host the trap was the memory limit.
pub struct Limiter {
    pub max_memory: usize,
    pub memory_exceeded: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.memory_exceeded = true;
            wasmtime::bail!(
                "memory limit of {} bytes exceeded (wanted {desired})",
                self.max_memory
            );
        }
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
    pub fn new(
        tenant: Arc<str>,
        plugin: &str,
        config: Arc<str>,
        now_ms: i64,
        request_id: Arc<str>,
        snapshot: Option<Arc<Snapshot>>,
        max_memory: usize,
    ) -> Self {
        CallState {
            limiter: Limiter {
                max_memory,
                memory_exceeded: false,
            },
            effects: Effects {
                tenant: tenant.to_string(),
                plugin: plugin.to_owned(),
                ..Effects::default()
            },
            tenant,
            config,
            now_ms,
            request_id,
            snapshot,
            logs: Vec::new(),
            logs_dropped: 0,
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
        let raw = match &self.snapshot {
            Some(snap) => {
                let stored = kv::kv_key(&self.tenant, &self.effects.plugin, key);
                match snap.get_raw(kv::KV, &stored) {
                    Ok(raw) => raw,
                    Err(e) => return Err(self.fail(format!("storage: {e}"))),
                }
            }
            None => None,
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
        if self.logs.len() >= MAX_LOG_LINES {
            self.logs_dropped = self.logs_dropped.saturating_add(1);
            return Ok(());
        }
        if message.len() > MAX_LOG_LINE_BYTES {
            let mut cut = MAX_LOG_LINE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let fields: Vec<_> = fields.into_iter().take(16).collect();
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
        let value = match &self.snapshot {
            Some(snap) => match views::balance(snap.as_ref(), &self.tenant, &player, &currency) {
                Ok(v) => v,
                Err(e) => return Err(self.fail(format!("storage: {e}"))),
            },
            None => 0,
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
        let value = match &self.snapshot {
            Some(snap) => {
                match views::action_count(snap.as_ref(), &self.tenant, &player, &action, since_ms) {
                    Ok(v) => v,
                    Err(e) => return Err(self.fail(format!("storage: {e}"))),
                }
            }
            None => 0,
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
