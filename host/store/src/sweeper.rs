//! Nothing grows without bound: a background loop that deletes what has
//! expired — access tokens, plugin key-value entries past their ttl,
//! idempotency records past retention, delivery reports that never matched
//! a send, done-markers of deleted campaigns, frequency-cap windows that
//! closed.
//!
//! Each kind of record says itself when it is dead (a [`Sweep`], declared
//! by the module that owns the table); the sweeper walks each table a page
//! at a time with a cursor, one short write job per page, so it never holds
//! the writer long and a large backlog is worked off over several passes.

use std::time::Duration;

use serde::Deserialize;

use crate::ids::now_ms;
use crate::shutdown::Shutdown;
use crate::{Reader, Store, StoreError, Table, Tx};

/// How long things are kept; see the README's "Retention".
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Idempotency records are deleted this long after their call (a key
    /// replays its answer for 24 hours; a longer retention keeps the record
    /// for audits, never a shorter replay window).
    pub idempotency_hours: u64,
    /// A delivery report for a message id never seen is dropped after this.
    pub early_report_hours: u64,
    /// How often the sweeper looks, in ms.
    pub sweep_interval_ms: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            idempotency_hours: 24,
            early_report_hours: 24,
            sweep_interval_ms: 10_000,
        }
    }
}

impl RetentionConfig {
    pub fn idempotency_ms(&self) -> i64 {
        (self.idempotency_hours.max(24) as i64).saturating_mul(3_600_000)
    }

    pub fn early_report_ms(&self) -> i64 {
        (self.early_report_hours.max(1) as i64).saturating_mul(3_600_000)
    }
}

/// What a sweep is told about the record it looks at.
pub struct Look<'a> {
    pub key: &'a str,
    pub raw: &'a [u8],
    pub now_ms: i64,
    pub retention: &'a RetentionConfig,
}

/// Runs before a dead record is deleted, in the same write.
pub type Forget = fn(&mut Tx, &Look<'_>) -> Result<(), StoreError>;

/// One kind of record that expires.
pub struct Sweep {
    pub name: &'static str,
    pub table: Table,
    /// Whether the record is dead; may read other tables.
    pub dead: fn(&Tx, &Look<'_>) -> Result<bool, StoreError>,
    /// Runs in the same write just before the record is deleted (to keep
    /// counters such as the key-value usage in step).
    pub forget: Option<Forget>,
}

/// Records examined per write job.
const PAGE: usize = 500;

/// The sweeper: cursors over each table.
pub struct Sweeper {
    store: Store,
    retention: RetentionConfig,
    sweeps: Vec<Sweep>,
    cursors: Vec<Option<String>>,
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub examined: usize,
    pub removed: usize,
    /// Some table has more to look at right away.
    pub more: bool,
}

impl Sweeper {
    /// A sweeper over `sweeps`: every kind of record that expires, each
    /// declared by the crate that owns its table (the server lists them).
    pub fn new(store: Store, retention: RetentionConfig, sweeps: Vec<Sweep>) -> Sweeper {
        let cursors = vec![None; sweeps.len()];
        Sweeper {
            store,
            retention,
            sweeps,
            cursors,
        }
    }

    /// One page of every table, judged at `now_ms`.
    pub async fn pass(&mut self, now_ms: i64) -> Result<Pass, StoreError> {
        let mut total = Pass::default();
        for i in 0..self.sweeps.len() {
            let (table, dead, forget) = {
                let s = &self.sweeps[i];
                (s.table, s.dead, s.forget)
            };
            let after = self.cursors[i].clone();
            let retention = self.retention.clone();
            let (examined, removed, last) = self
                .store
                .write(move |tx| {
                    let page = tx.scan_raw(table, "", after.as_deref(), PAGE, false)?;
                    let mut removed = 0;
                    for (key, raw) in &page {
                        let look = Look {
                            key,
                            raw,
                            now_ms,
                            retention: &retention,
                        };
                        if dead(tx, &look)? {
                            if let Some(f) = forget {
                                f(tx, &look)?;
                            }
                            tx.remove(table, key)?;
                            removed += 1;
                        }
                    }
                    let last = (page.len() == PAGE).then(|| page.last().map(|(k, _)| k.clone()));
                    Ok::<_, StoreError>((page.len(), removed, last.flatten()))
                })
                .await?;
            total.more |= last.is_some();
            self.cursors[i] = last;
            total.examined += examined;
            total.removed += removed;
            if removed > 0 {
                tracing::debug!(what = self.sweeps[i].name, removed, "swept");
            }
        }
        Ok(total)
    }

    /// Sweep until every table was walked to its end once, at `now_ms`.
    pub async fn sweep_all(&mut self, now_ms: i64) -> Result<usize, StoreError> {
        let mut removed = 0;
        loop {
            let p = self.pass(now_ms).await?;
            removed += p.removed;
            if !p.more {
                return Ok(removed);
            }
        }
    }

    /// How many records each swept table holds (for tests and operators).
    pub fn census(&self) -> Result<Vec<(&'static str, u64)>, StoreError> {
        let snap = self.store.read()?;
        self.sweeps
            .iter()
            .map(|s| Ok((s.name, snap.count_from(s.table, "", "")?)))
            .collect()
    }

    /// Run until shutdown: a pass, then the interval (or at once while a
    /// table has a backlog).
    pub async fn run_loop(mut self, mut stop: Shutdown) {
        let interval = Duration::from_millis(self.retention.sweep_interval_ms.max(10));
        while !stop.is_requested() {
            let wait = match self.pass(now_ms()).await {
                Ok(p) if p.more => Duration::from_millis(10),
                Ok(_) => interval,
                Err(e) => {
                    tracing::warn!(error = %e, "sweeping failed; trying again later");
                    interval
                }
            };
            stop.sleep(wait).await;
        }
    }
}
