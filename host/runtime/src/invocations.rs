//! The last invocations of each binding, kept so a plugin author can see
//! what a plugin did in production (`GET /v1/plugins/{name}/invocations`)
//! and run one again on a new build (`engage plugin replay`).
//!
//! A record holds everything a call depended on — input, config, clock,
//! limits, and every key and view it read with the value it saw — so that
//! running the same deterministic component on it gives the same output.
//!
//! Recording must never slow or fail a request: a call offers its record
//! to a bounded queue (dropped, and counted, when full), a background task
//! writes what is queued in one commit every [`FLUSH_EVERY`], and each
//! binding records at most one call per [`MIN_INTERVAL`] (and one failure
//! per interval beside it), so a busy binding costs a few writes a second.
//! Records live in [`KEEP_PER_BINDING`] slots per tenant and extension
//! point, written round-robin: a tenant keeps at most
//! `4 × KEEP_PER_BINDING` records of at most [`MAX_RECORD_BYTES`] each.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::kv::Read;
use crate::runtime::{Input, Limits, Output};
use crate::sandbox::LogLine;
use crate::{CallError, Point};
use engage_store::{Reader, Store, StoreError, Table, key, prefix};

const INVOCATIONS: Table = Table::new("plugin_invocations");
/// How many invocations each binding keeps.
pub const KEEP_PER_BINDING: u64 = 32;
/// The largest record kept whole; a larger one is kept without its reads
/// and output (and cannot be replayed exactly).
pub const MAX_RECORD_BYTES: usize = 64 * 1024;
/// A binding records at most one call (and one failed call) this often.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// How often the queue is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);
const QUEUE: usize = 1024;

/// One recorded call.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Invocation {
    /// `{point}-{n}`: unique within the tenant.
    #[serde(default)]
    pub id: String,
    pub at_ms: i64,
    pub request_id: String,
    pub tenant: String,
    pub point: Point,
    pub plugin: String,
    pub version: u32,
    /// The binding's config as the plugin saw it.
    pub config: String,
    pub now_ms: i64,
    pub limits: Limits,
    pub input: Input,
    /// Every key and view the call read, with what it saw.
    #[schema(value_type = Vec<Value>)]
    pub reads: Vec<Read>,
    #[schema(value_type = Option<Value>)]
    pub output: Option<Output>,
    pub error: Option<CallError>,
    pub logs: Vec<LogLine>,
    pub logs_dropped: u32,
    pub fuel_used: u64,
    pub memory_bytes: usize,
    pub elapsed_us: u64,
    /// Cut to fit [`MAX_RECORD_BYTES`]: reads and output are missing.
    #[serde(default)]
    pub truncated: bool,
}

impl Invocation {
    /// Whether running it again can reproduce it exactly.
    pub fn replayable(&self) -> bool {
        !self.truncated
    }
}

#[derive(Default)]
struct Last {
    any: Option<Instant>,
    failed: Option<Instant>,
}

/// Takes records from calls and writes them in the background.
pub struct Recorder {
    queue: tokio::sync::mpsc::Sender<Invocation>,
    taken: Mutex<Option<tokio::sync::mpsc::Receiver<Invocation>>>,
    last: Mutex<HashMap<(String, Point), Last>>,
    /// Records dropped because the queue was full.
    pub dropped: AtomicU64,
}

impl Default for Recorder {
    fn default() -> Self {
        let (queue, rx) = tokio::sync::mpsc::channel(QUEUE);
        Recorder {
            queue,
            taken: Mutex::new(Some(rx)),
            last: Mutex::new(HashMap::new()),
            dropped: AtomicU64::new(0),
        }
    }
}

impl Recorder {
    /// Whether a call of `tenant`'s `point` binding that `failed` (or not)
    /// is due to be recorded; if so, the caller builds the record and
    /// [`Recorder::offer`]s it.
    pub fn due(&self, tenant: &str, point: Point, failed: bool) -> bool {
        let now = Instant::now();
        let Ok(mut last) = self.last.lock() else {
            return false;
        };
        let entry = last.entry((tenant.to_owned(), point)).or_default();
        let slot = if failed {
            &mut entry.failed
        } else {
            &mut entry.any
        };
        if slot.is_some_and(|t| now.duration_since(t) < MIN_INTERVAL) {
            return false;
        }
        *slot = Some(now);
        true
    }

    /// Queue a record; dropped (and counted) when the queue is full.
    pub fn offer(&self, mut record: Invocation) {
        fit(&mut record);
        if self.queue.try_send(record).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Write queued records until `stop`, then what is left.
    pub async fn flush_loop(&self, store: Store, mut stop: engage_store::shutdown::Shutdown) {
        let Some(mut rx) = self.taken.lock().ok().and_then(|mut t| t.take()) else {
            return;
        };
        loop {
            stop.sleep(FLUSH_EVERY).await;
            let stopping = stop.is_requested();
            let mut batch = Vec::new();
            while batch.len() < 256
                && let Ok(r) = rx.try_recv()
            {
                batch.push(r);
            }
            if !batch.is_empty()
                && let Err(e) = write(&store, batch).await
            {
                tracing::warn!(error = %e, "plugin invocations not recorded");
            }
            if stopping {
                return;
            }
        }
    }
}

/// Cut a record to [`MAX_RECORD_BYTES`]: first its reads, then its output
/// and logs.
fn fit(r: &mut Invocation) {
    let size = |r: &Invocation| serde_json::to_vec(r).map(|v| v.len()).unwrap_or(usize::MAX);
    if size(r) <= MAX_RECORD_BYTES {
        return;
    }
    r.truncated = true;
    r.reads.clear();
    if size(r) > MAX_RECORD_BYTES {
        r.output = None;
        r.logs.clear();
    }
}

async fn write(store: &Store, batch: Vec<Invocation>) -> Result<(), StoreError> {
    store
        .write(move |tx| {
            for r in &batch {
                let mut r = r.clone();
                let point = r.point.as_str();
                let n = tx.next_seq(&r.tenant, &format!("invocations/{point}"))?;
                r.id = format!("{point}-{n}");
                let slot = format!("{:04}", n % KEEP_PER_BINDING);
                tx.put(INVOCATIONS, &key(&[&r.tenant, point, &slot]), &r)?;
            }
            Ok::<_, StoreError>(())
        })
        .await
}

/// The kept invocations of `tenant`'s plugin `plugin`, newest first.
pub fn list(src: &impl Reader, tenant: &str, plugin: &str) -> Result<Vec<Invocation>, StoreError> {
    let mut all: Vec<Invocation> = src
        .scan_page::<Invocation>(
            INVOCATIONS,
            &prefix(&[tenant]),
            None,
            (KEEP_PER_BINDING as usize) * Point::ALL.len(),
            false,
        )?
        .into_iter()
        .map(|(_, r)| r)
        .filter(|r| r.plugin == plugin)
        .collect();
    all.sort_by_key(|r| std::cmp::Reverse((r.at_ms, seq(&r.id))));
    Ok(all)
}

fn seq(id: &str) -> u64 {
    id.rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// One kept invocation by id (`{point}-{n}`), if still kept.
pub fn get(src: &impl Reader, tenant: &str, id: &str) -> Result<Option<Invocation>, StoreError> {
    let Some((point, n)) = id.rsplit_once('-') else {
        return Ok(None);
    };
    let (Some(point), Ok(n)) = (Point::parse(point), n.parse::<u64>()) else {
        return Ok(None);
    };
    let slot = format!("{:04}", n % KEEP_PER_BINDING);
    let found: Option<Invocation> = src.get(INVOCATIONS, &key(&[tenant, point.as_str(), &slot]))?;
    Ok(found.filter(|r| r.id == id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binding_records_at_most_one_call_and_one_failure_per_interval() {
        let r = Recorder::default();
        assert!(r.due("t", Point::Rules, false));
        assert!(!r.due("t", Point::Rules, false));
        assert!(
            r.due("t", Point::Rules, true),
            "a failure has a slot of its own"
        );
        assert!(!r.due("t", Point::Rules, true));
        assert!(r.due("t", Point::Gift, false), "per binding");
        assert!(r.due("u", Point::Rules, false), "per tenant");
        std::thread::sleep(MIN_INTERVAL);
        assert!(r.due("t", Point::Rules, false));
    }
}
