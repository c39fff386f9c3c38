//! Storage: one redb file under the data directory, read through snapshots
//! and written by a single writer thread that groups concurrent writes into
//! one durable commit.
//!
//! Domain crates own their tables (a [`Table`] constant beside the code that
//! keeps its invariants) and reach storage only through [`Reader`],
//! [`Snapshot`] and [`Tx`]: the boundary a second backend would implement.
//! A [`Table`] is only a name; no crate but this one names redb
//! (`grep -rln redb host --include=*.rs | grep -v host/store` finds nothing).
//!
//! Beside the tables live the mechanisms every crate above shares and that
//! know nothing of the domain: the durable [`queue`], [`idempotency`]
//! records, the retention [`sweeper`], sealed [`secrets`], [`ids`] and
//! clocks, the data directory's [`files`] and graceful [`shutdown`].
//!
//! # Group commit
//!
//! [`Store::write`] sends a job to the writer. The writer takes every job
//! waiting at that moment (up to [`MAX_BATCH`]), runs them one after another
//! in one write transaction, commits once with fsync, and only then answers
//! each caller. A job that fails must fail *before* it writes (read and
//! validate, then write): its error is answered and the batch commits
//! without it. A job that fails after writing poisons the batch; the writer
//! then aborts and re-runs every job of the batch in a transaction of its
//! own, which is why a job is `FnMut`.

pub mod backend;
pub mod backup;
pub mod copy;
pub mod embedded;
pub mod files;
pub mod hosts;
pub mod idempotency;
pub mod ids;
pub mod queue;
pub mod secrets;
pub mod shutdown;
pub mod sweeper;
mod writer;

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot, watch};

pub use backend::{Backend, ReadView, Scan, WriteView};
pub use embedded::Embedded;
pub use writer::MAX_BATCH;

/// A table: string keys (composed with [`key`]) and JSON or raw values.
/// Only its name leaves the store; how a backend keeps it is the store's
/// business (redb tables today).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table(&'static str);

impl Table {
    pub const fn new(name: &'static str) -> Table {
        Table(name)
    }

    pub const fn name(&self) -> &'static str {
        self.0
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// The schema this build writes. Bump it and add a migration step to each
/// backend whenever a table's layout changes.
pub const SCHEMA_VERSION: u64 = 1;

const SEQUENCES: Table = Table::new("sequences");
/// The schema version (`schema_version`, little-endian u64), in every backend.
pub(crate) const META: Table = Table::new("meta");
/// Where readiness checks write.
const READY_PROBE: Table = Table::new("ready_probe");

/// The most records one filtered read ([`Reader::matching`]) examines.
pub const MAX_EXAMINED: usize = 20_000;

/// A sequence number as a key part: zero-padded so keys sort numerically.
pub fn seq_part(n: u64) -> String {
    format!("{n:020}")
}

/// What can go wrong in storage. Callers turn it into a 500: none of these
/// is the client's fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database is already open in another process")]
    AlreadyOpen,
    /// The backend failed (a disk, a connection): what it said.
    #[error("database: {0}")]
    Db(Box<dyn std::error::Error + Send + Sync>),
    #[error("a stored record is corrupt ({table}): {source}")]
    Corrupt {
        table: String,
        source: serde_json::Error,
    },
    #[error(
        "the data directory was written by a newer Engage (schema {found}, this build knows {SCHEMA_VERSION}); upgrade Engage"
    )]
    NewerSchema { found: u64 },
    /// The database cannot be reached now, or kept conflicting: a client
    /// may try again (answered 503).
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
    /// A write kept losing conflicts with other hosts' writes (answered
    /// 503: trying again later may succeed).
    #[error("storage is busy: {0}")]
    Conflict(String),
    #[error("the storage writer has stopped")]
    WriterGone,
    #[error("a write job panicked: {0}")]
    JobPanicked(String),
    #[error("the commit failed: {0}")]
    CommitFailed(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Sealed(#[from] crate::secrets::OpenError),
}

/// The database and its writer. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    jobs: mpsc::Sender<writer::Boxed>,
    closed: watch::Receiver<bool>,
}

impl StoreError {
    /// Whether trying again later may succeed: the database is away or
    /// busy, not broken (the API answers 503 with `Retry-After`).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::Conflict(_) | StoreError::WriterGone
        )
    }
}

/// Waits for a [`Store`] to close; holds no handle on it.
pub struct Closing(watch::Receiver<bool>);

impl Closing {
    /// Wait until every clone of the store is dropped and the database file
    /// is released, at most `limit`; false if it is still open then (some
    /// task still holds the store).
    pub async fn wait(mut self, limit: std::time::Duration) -> bool {
        matches!(
            tokio::time::timeout(limit, self.0.wait_for(|closed| *closed)).await,
            Ok(Ok(_))
        )
    }
}

impl Store {
    /// Open (or create) `engage.redb` in `dir`, migrate it to
    /// [`SCHEMA_VERSION`] and start the writer thread.
    pub fn open(dir: &cap_std::fs::Dir) -> Result<Store, StoreError> {
        Store::open_with(dir, MAX_BATCH)
    }

    /// [`Store::open`] with at most `max_batch` jobs per commit (1: one
    /// commit per write, to measure what group commit buys).
    pub fn open_with(dir: &cap_std::fs::Dir, max_batch: usize) -> Result<Store, StoreError> {
        Ok(Store::on(Arc::new(Embedded::open(dir)?), max_batch))
    }

    /// A store on `backend`, with at most `max_batch` jobs per commit.
    pub fn on(backend: Arc<dyn Backend>, max_batch: usize) -> Store {
        let (closed_tx, closed) = watch::channel(false);
        let jobs = writer::spawn(backend.clone(), max_batch, closed_tx);
        Store {
            backend,
            jobs,
            closed,
        }
    }

    /// Whether other hosts may share this store (see [`Backend::shared`]).
    pub fn is_shared(&self) -> bool {
        self.backend.shared()
    }

    /// The backend itself, for copying a whole store.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Whether the embedded database in `path` is held by a running server.
    pub fn is_locked(path: &Path) -> bool {
        Embedded::is_locked(path)
    }

    /// A handle that tells when the database is closed, for an orderly
    /// shutdown: drop every clone of the store, then wait on it.
    pub fn closing(&self) -> Closing {
        Closing(self.closed.clone())
    }

    /// A consistent snapshot for reading; never waits for writers.
    pub fn read(&self) -> Result<Snapshot, StoreError> {
        Ok(Snapshot(self.backend.snapshot()?))
    }

    /// What a readiness check asks of storage: is the schema the one this
    /// build writes (another host may have migrated a shared store past
    /// it), and does a write go through the writer and become durable?
    /// Writes one small record, overwritten each time.
    pub async fn check_ready(&self) -> Result<(), StoreError> {
        let found = self
            .read()?
            .get_raw(META, "schema_version")?
            .and_then(|v| v.try_into().ok().map(u64::from_le_bytes));
        match found {
            Some(v) if v > SCHEMA_VERSION => return Err(StoreError::NewerSchema { found: v }),
            Some(v) if v == SCHEMA_VERSION => {}
            _ => {
                return Err(StoreError::Unavailable(
                    "the storage schema is not migrated".into(),
                ));
            }
        }
        let now = ids::now_ms();
        self.write(move |tx| tx.put_raw(READY_PROBE, "last", &now.to_le_bytes()))
            .await
    }

    /// Run `job` in the next group commit and return its answer once the
    /// commit is durable. See the module documentation for the rules a job
    /// follows.
    pub async fn write<T, E, F>(&self, job: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnMut(&mut Tx) -> Result<T, E> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = writer::typed(job, reply);
        self.jobs
            .send(job)
            .await
            .map_err(|_| E::from(StoreError::WriterGone))?;
        answer.await.map_err(|_| E::from(StoreError::WriterGone))?
    }
}

/// Compose a key from parts. Parts are joined by a 0x1F separator, which
/// clients cannot smuggle in: ids containing control characters are
/// rejected at the API.
pub fn key(parts: &[&str]) -> String {
    parts.join(&SEPARATOR.to_string())
}

/// The parts of a key made by [`key`] (or [`prefix`]), in order.
pub fn parts(key: &str) -> std::str::Split<'_, char> {
    key.split(SEPARATOR)
}

/// The last part of a key (the whole key when it has one part).
pub fn last_part(key: &str) -> &str {
    key.rsplit(SEPARATOR).next().unwrap_or(key)
}

/// The first part of a key, and the rest after its separator.
pub fn split_first(key: &str) -> Option<(&str, &str)> {
    key.split_once(SEPARATOR)
}

/// What joins the parts of a key: a control character, which ids never
/// contain (the API refuses them), so parts cannot run into each other.
const SEPARATOR: char = '\u{1f}';

/// The prefix of every key that starts with `parts`.
pub fn prefix(parts: &[&str]) -> String {
    let mut k = key(parts);
    k.push(SEPARATOR);
    k
}

fn decode<T: DeserializeOwned>(table: &Table, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        table: table.to_string(),
        source,
    })
}

/// Reading, the same way from a snapshot or inside a write transaction, so
/// a check made during a call can be made again at commit.
pub trait Reader {
    /// The backend's view this reads through.
    fn view(&self) -> &dyn ReadView;

    /// The raw bytes at `key`, if any.
    fn get_raw(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.view().get(table, key)
    }

    /// How many keys start with `prefix` and sort at or after `from`.
    fn count_from(&self, table: Table, prefix: &str, from: &str) -> Result<u64, StoreError> {
        self.view().count_from(table, prefix, from)
    }

    /// Up to `limit` entries whose key starts with `prefix`, in key order
    /// (or reverse order), starting strictly after `after` when given.
    fn scan_raw(
        &self,
        table: Table,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let scan = Scan {
            prefix,
            after,
            limit,
            reverse,
        };
        self.view().scan(table, scan)
    }

    /// The JSON records of [`Reader::scan_raw`].
    fn scan_page<T: DeserializeOwned>(
        &self,
        table: Table,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<(String, T)>, StoreError>
    where
        Self: Sized,
    {
        self.scan_raw(table, prefix, after, limit, reverse)?
            .into_iter()
            .map(|(k, v)| Ok((k, decode(&table, &v)?)))
            .collect()
    }

    /// Up to `limit` JSON records with `prefix` that `keep` accepts, newest
    /// (highest key) first, strictly before the key `before`. Scans on past
    /// rejected records, a page at a time.
    fn newest_matching<T: DeserializeOwned>(
        &self,
        table: Table,
        prefix: &str,
        before: Option<String>,
        limit: usize,
        keep: impl Fn(&T) -> bool,
    ) -> Result<Vec<T>, StoreError>
    where
        Self: Sized,
    {
        self.matching(table, prefix, before, limit, true, keep)
    }

    /// Up to `limit` JSON records with `prefix` that `keep` accepts, in key
    /// order (or `reverse`), strictly past the key `after`. Scans on past
    /// rejected records, a page at a time, examining at most
    /// [`MAX_EXAMINED`] records: a filter that matches nothing costs a
    /// bounded read, not the table.
    fn matching<T: DeserializeOwned>(
        &self,
        table: Table,
        prefix: &str,
        after: Option<String>,
        limit: usize,
        reverse: bool,
        keep: impl Fn(&T) -> bool,
    ) -> Result<Vec<T>, StoreError>
    where
        Self: Sized,
    {
        const PAGE: usize = 200;
        let mut cursor = after;
        let mut out = Vec::new();
        let mut examined = 0;
        loop {
            let page = self.scan_page::<T>(table, prefix, cursor.as_deref(), PAGE, reverse)?;
            examined += page.len();
            let exhausted = page.len() < PAGE || examined >= MAX_EXAMINED;
            for (k, v) in page {
                cursor = Some(k);
                if keep(&v) {
                    out.push(v);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            if exhausted {
                return Ok(out);
            }
        }
    }

    /// The times `time` reads from the records with `prefix`, newest (highest
    /// key) first, down to `since_ms`: for tables whose keys sort in time
    /// order. At most `cap` of them; also whether the cap stopped the walk.
    fn times_since<T: DeserializeOwned>(
        &self,
        table: Table,
        prefix: &str,
        since_ms: i64,
        cap: usize,
        time: impl Fn(&T) -> i64,
    ) -> Result<(Vec<i64>, bool), StoreError>
    where
        Self: Sized,
    {
        const PAGE: usize = 256;
        let mut cursor: Option<String> = None;
        let mut out = Vec::new();
        loop {
            let page = self.scan_page::<T>(table, prefix, cursor.as_deref(), PAGE, true)?;
            let end = page.len() < PAGE;
            for (k, v) in page {
                cursor = Some(k);
                let t = time(&v);
                if t < since_ms {
                    return Ok((out, false));
                }
                if out.len() >= cap {
                    return Ok((out, true));
                }
                out.push(t);
            }
            if end {
                return Ok((out, false));
            }
        }
    }

    /// A `u64` stored little-endian at `key`; 0 when absent.
    fn get_u64(&self, table: Table, key: &str) -> Result<u64, StoreError>
    where
        Self: Sized,
    {
        Ok(self
            .get_raw(table, key)?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0))
    }

    /// The JSON record at `key`, if any.
    fn get<T: DeserializeOwned>(&self, table: Table, key: &str) -> Result<Option<T>, StoreError>
    where
        Self: Sized,
    {
        self.get_raw(table, key)?
            .map(|b| decode(&table, &b))
            .transpose()
    }
}

/// Whether fewer than `cap` keys start with `prefix`: what a tenant may
/// keep of one kind of record is capped, so every list of them is one
/// bounded read. Counts keys without reading their values; creations past
/// the cap are refused, so there are at most `cap` to count.
pub fn below_cap(
    src: &impl Reader,
    table: Table,
    prefix: &str,
    cap: usize,
) -> Result<bool, StoreError> {
    Ok(src.count_from(table, prefix, prefix)? < cap as u64)
}

/// A read snapshot.
pub struct Snapshot(Box<dyn ReadView + Send + Sync>);

impl Reader for Snapshot {
    fn view(&self) -> &dyn ReadView {
        &*self.0
    }
}

/// A write transaction inside a group commit: one job's view of it.
pub struct Tx<'t> {
    view: &'t mut dyn WriteView,
    /// Whether this job has written: a job that fails after writing
    /// poisons its batch.
    dirty: bool,
}

impl<'t> Tx<'t> {
    fn new(view: &'t mut dyn WriteView) -> Tx<'t> {
        Tx { view, dirty: false }
    }
}

/// Inside a write transaction, reads see the transaction's own writes.
impl Reader for Tx<'_> {
    fn view(&self) -> &dyn ReadView {
        self.view
    }
}

impl Tx<'_> {
    /// Write raw bytes. From here on, a failure of this job poisons the batch.
    pub fn put_raw(&mut self, table: Table, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.dirty = true;
        self.view.put(table, key, value)
    }

    /// Write a JSON record.
    pub fn put<T: Serialize>(
        &mut self,
        table: Table,
        key: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|source| StoreError::Corrupt {
            table: table.to_string(),
            source,
        })?;
        self.put_raw(table, key, &bytes)
    }

    /// Write a `u64` little-endian.
    pub fn put_u64(&mut self, table: Table, key: &str, value: u64) -> Result<(), StoreError> {
        self.put_raw(table, key, &value.to_le_bytes())
    }

    /// The next value of the per-tenant sequence `name` (1, 2, ...).
    pub fn next_seq(&mut self, tenant: &str, name: &str) -> Result<u64, StoreError> {
        let k = key(&[tenant, name]);
        let next = self.get_u64(SEQUENCES, &k)? + 1;
        self.put_u64(SEQUENCES, &k, next)?;
        Ok(next)
    }

    /// Remove a key; true if it was there.
    pub fn remove(&mut self, table: Table, key: &str) -> Result<bool, StoreError> {
        self.dirty = true;
        self.view.remove(table, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys made of parts come apart into the same parts, and a prefix of
    /// parts sorts before every key that extends it, for many generated
    /// part lists (seeded: a failure replays).
    #[test]
    fn keys_round_trip_and_prefixes_bound_their_keys() {
        let alphabet: Vec<char> = "ab0_-.:~ é".chars().collect();
        let mut seeded = crate::ids::Seeded::new(0x2545_F491_4F6C_DD1Du64);
        let mut next = |n: usize| seeded.below(n as u64) as usize;
        for _ in 0..2000 {
            let count = 1 + next(4);
            let parts: Vec<String> = (0..count)
                .map(|_| {
                    (0..next(6))
                        .map(|_| alphabet[next(alphabet.len())])
                        .collect()
                })
                .collect();
            let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
            let k = key(&refs);
            assert_eq!(super::parts(&k).collect::<Vec<_>>(), refs);
            assert_eq!(last_part(&k), *refs.last().unwrap_or(&""));
            let head = prefix(&refs[..1]);
            if count > 1 {
                assert!(k.starts_with(&head), "{k:?} extends {head:?}");
                assert_eq!(split_first(&k).map(|(a, _)| a), Some(refs[0]));
            }
            // A sibling whose first part merely starts like ours is not under our prefix.
            let sibling = key(&[&format!("{}x", refs[0]), "z"]);
            assert!(!sibling.starts_with(&head));
        }
    }

    const T: Table = Table::new("test");

    fn store() -> (Store, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!("engage-w-{}", crate::ids::random_hex(6)));
        let dir = crate::files::open_data_dir(&path).expect("dir");
        (Store::open(&dir).expect("store"), path)
    }

    /// The writer contract every backend keeps: jobs sent together commit
    /// together; a job that fails before writing is answered its error and
    /// the rest commit; a job that fails after writing is discarded with
    /// its writes while every other job of its batch still commits (re-run
    /// alone), so a job runs more than once and must start from scratch.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_job_changes_nothing_and_spares_its_batch() {
        let (store, path) = store();
        let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let mut jobs = Vec::new();
        for i in 0..60u64 {
            let (store, runs) = (store.clone(), runs.clone());
            jobs.push(tokio::spawn(async move {
                store
                    .write(move |tx| {
                        runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        match i % 3 {
                            // Fails before writing.
                            1 => Err(StoreError::CommitFailed(format!("refused {i}"))),
                            // Fails after writing: poisons its batch.
                            2 => {
                                tx.put_u64(T, &key(&["poison", &i.to_string()]), i)?;
                                Err(StoreError::CommitFailed(format!("late {i}")))
                            }
                            _ => {
                                tx.put_u64(T, &key(&["ok", &i.to_string()]), i)?;
                                Ok(tx.next_seq("t", "n")?)
                            }
                        }
                    })
                    .await
            }));
        }
        let mut seqs = Vec::new();
        for (i, job) in jobs.into_iter().enumerate() {
            match (i % 3, job.await.expect("task")) {
                (0, Ok(seq)) => seqs.push(seq),
                (1 | 2, Err(StoreError::CommitFailed(m))) => assert!(m.ends_with(&i.to_string())),
                (_, other) => panic!("job {i}: {other:?}"),
            }
        }
        seqs.sort_unstable();
        assert_eq!(
            seqs,
            (1..=20).collect::<Vec<u64>>(),
            "each success once, in order"
        );
        let snap = store.read().expect("read");
        assert_eq!(snap.count_from(T, &prefix(&["ok"]), "").expect("count"), 20);
        assert_eq!(
            snap.count_from(T, &prefix(&["poison"]), "").expect("count"),
            0
        );
        assert!(runs.load(std::sync::atomic::Ordering::Relaxed) >= 60);

        // Scans are bounded and resume strictly after their cursor, both ways.
        let p = prefix(&["ok"]);
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = snap
                .scan_raw(T, &p, after.as_deref(), 7, false)
                .expect("scan");
            assert!(page.len() <= 7);
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            seen.extend(page.into_iter().map(|(k, _)| k));
        }
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            (seen.len(), &seen),
            (20, &sorted),
            "every key once, in key order"
        );
        let newest = snap.scan_raw(T, &p, None, 3, true).expect("scan");
        let newest: Vec<&String> = newest.iter().map(|(k, _)| k).collect();
        assert_eq!(newest, seen.iter().rev().take(3).collect::<Vec<_>>());
        drop((snap, store));
        let _ = std::fs::remove_dir_all(path);
    }
}
