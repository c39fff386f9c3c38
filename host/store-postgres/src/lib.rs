//! The PostgreSQL backend of the store: every [`engage_store::Table`] in
//! one SQL table, `engage_kv (tbl, key, value)`, keys as bytes so they sort
//! bytewise as in the embedded backend whatever the database's collation.
//!
//! Any number of Engage hosts share one database. Each write transaction of
//! the store (one group-commit batch of a host) runs as a SERIALIZABLE
//! transaction; when the database reports a serialization failure
//! (SQLSTATE 40001) or a deadlock (40P01) the whole batch runs again, after
//! a short jittered pause, which the writer contract allows (a job reads,
//! validates, then writes, and starts from scratch when run again). Reads
//! run in REPEATABLE READ READ ONLY transactions: a snapshot.
//!
//! It uses nothing that CockroachDB or YugabyteDB lack: no advisory locks,
//! no `LISTEN/NOTIFY`, no sequences; only tables, `ON CONFLICT`, `UNNEST`
//! and SERIALIZABLE transactions.
//!
//! The store's traits are synchronous (the embedded backend answers from
//! memory-mapped pages). This backend runs its connections on a runtime of
//! its own and blocks the calling thread while a statement runs; on a
//! tokio worker it does so inside `block_in_place`, so the worker's other
//! tasks move to another thread meanwhile. See `docs/storage.md`.

mod migrations;
mod pool;
pub mod tls;
mod write;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use engage_store::backend::{Backend, ReadView, Scan, WriteView};
use engage_store::{StoreError, Table};
use tokio_postgres::error::SqlState;

pub use migrations::LATEST as LATEST_MIGRATION;
use pool::{Lease, Pool};

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// `postgres://user:password@host:port/database` (or the key=value form).
    pub url: String,
    /// The most connections this host opens.
    pub pool_size: usize,
    /// How long a statement may wait for a free connection, or a new
    /// connection may take, before the call fails as unavailable.
    pub acquire_timeout: Duration,
    /// How long a write transaction keeps running again after
    /// serialization failures before it fails as busy (503). Under SSI a
    /// transaction that runs again does not lose to the one that beat it,
    /// so a hot row's writers all get through, one after another, within
    /// this.
    pub retry_budget: Duration,
}

impl PgConfig {
    pub fn new(url: impl Into<String>) -> PgConfig {
        PgConfig {
            url: url.into(),
            pool_size: 16,
            acquire_timeout: Duration::from_secs(5),
            retry_budget: Duration::from_secs(2),
        }
    }
}

/// What the database said, sorted by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PgError {
    /// The transaction lost a conflict with another one: run it again.
    #[error("serialization failure: {0}")]
    Retry(tokio_postgres::Error),
    /// The database cannot be reached (or took too long).
    #[error("{0}")]
    Unavailable(String),
    /// Anything else: a bug or a broken schema.
    #[error("{0}")]
    Other(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for PgError {
    fn from(e: tokio_postgres::Error) -> PgError {
        match e.code() {
            Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE => PgError::Retry(e),
            Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED => PgError::Retry(e),
            // CockroachDB's "restart transaction" errors carry 40001 too;
            // 57P01-57P03 are the server shutting down or starting.
            Some(c)
                if *c == SqlState::ADMIN_SHUTDOWN
                    || *c == SqlState::CRASH_SHUTDOWN
                    || *c == SqlState::CANNOT_CONNECT_NOW
                    || *c == SqlState::TOO_MANY_CONNECTIONS =>
            {
                PgError::Unavailable(e.to_string())
            }
            Some(_) => PgError::Other(e),
            None => PgError::Unavailable(with_causes(&e)),
        }
    }
}

/// An error and what caused it, `: `-separated: the client's own words
/// ("error performing TLS handshake") do not say which certificate check
/// failed; its causes do.
pub(crate) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !out.ends_with(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cause = c.source();
    }
    out
}

impl From<PgError> for StoreError {
    fn from(e: PgError) -> StoreError {
        match e {
            PgError::Retry(e) => StoreError::Conflict(format!(
                "the database kept reporting conflicts with other writes ({e}); try again"
            )),
            PgError::Unavailable(m) => StoreError::Unavailable(m),
            PgError::Other(e) => StoreError::Db(Box::new(e)),
        }
    }
}

/// The PostgreSQL backend.
pub struct Postgres {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// The runtime the connections run on. Taken (and shut down in the
    /// background) on drop, which may happen on a runtime thread.
    rt: Option<tokio::runtime::Runtime>,
    pool: Arc<Pool>,
    retry_budget: Duration,
    pub(crate) stats: Stats,
}

/// What this host asked of the database, for `docs/benchmarks.md`: logged
/// when the backend closes.
#[derive(Default)]
pub(crate) struct Stats {
    /// Statements sent (each a round trip).
    pub statements: std::sync::atomic::AtomicU64,
    pub snapshots: std::sync::atomic::AtomicU64,
    pub transactions: std::sync::atomic::AtomicU64,
    /// Write transactions run again after a serialization failure.
    pub retries: std::sync::atomic::AtomicU64,
}

impl Stats {
    pub(crate) fn bump(n: &std::sync::atomic::AtomicU64) {
        n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let get = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
        tracing::info!(
            statements = get(&self.stats.statements),
            snapshots = get(&self.stats.snapshots),
            transactions = get(&self.stats.transactions),
            retries = get(&self.stats.retries),
            "postgres storage closed"
        );
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Inner {
    fn handle(&self) -> &tokio::runtime::Handle {
        match &self.rt {
            Some(rt) => rt.handle(),
            None => unreachable!("the runtime lives as long as the backend"),
        }
    }

    /// Run `fut` here, on the calling thread, with the backend's runtime
    /// driving the connections, and wait for it: inside `block_in_place` on
    /// a tokio worker (its other tasks move on meanwhile); directly on any
    /// other thread (the writer's). A current-thread runtime cannot give
    /// its thread away, so there the future runs on a thread of its own.
    pub(crate) fn block<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, PgError> {
        use tokio::runtime::{Handle, RuntimeFlavor};
        Stats::bump(&self.stats.statements);
        let rt = self.handle();
        match Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(RuntimeFlavor::MultiThread) => Ok(tokio::task::block_in_place(|| rt.block_on(fut))),
            Err(_) => Ok(rt.block_on(fut)),
            Ok(_) => std::thread::scope(|s| s.spawn(|| rt.block_on(fut)).join())
                .map_err(|_| PgError::Unavailable("a storage call panicked".into())),
        }
    }

    fn lease(&self, begin: &'static str) -> Result<Lease, PgError> {
        let pool = self.pool.clone();
        self.block(async move {
            let lease = pool.get().await?;
            lease.conn().client.batch_execute(begin).await?;
            Ok::<_, PgError>(lease.in_transaction())
        })?
    }
}

impl Postgres {
    /// Connect, apply the migrations this build knows and check the
    /// store's schema version.
    pub fn open(config: &PgConfig) -> Result<Postgres, StoreError> {
        let pg = Postgres::connect(config)?;
        pg.migrate()?;
        Ok(pg)
    }

    /// Connect without migrating (`engage migrate` reports first).
    pub fn connect(config: &PgConfig) -> Result<Postgres, StoreError> {
        let (pg_config, tls) = parse_url(&config.url)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("engage-postgres")
            .enable_all()
            .build()?;
        let pool = Arc::new(Pool::new(
            pg_config,
            tls,
            config.pool_size.max(2),
            config.acquire_timeout,
            rt.handle().clone(),
        ));
        let inner = Arc::new(Inner {
            rt: Some(rt),
            pool,
            retry_budget: config.retry_budget,
            stats: Stats::default(),
        });
        // Fail at start, with the database's own words, not at the first request.
        let pool = inner.pool.clone();
        inner.block(async move { pool.connect_bare().await.map(drop) })??;
        Ok(Postgres { inner })
    }

    /// Apply every migration not yet applied; the versions applied now.
    pub fn migrate(&self) -> Result<Vec<i64>, StoreError> {
        let pool = self.inner.pool.clone();
        let applied = self
            .inner
            .block(async move { migrations::run(&pool).await })??;
        check_schema(self)?;
        Ok(applied)
    }

    /// The migrations applied to the database, in order.
    pub fn applied(&self) -> Result<Vec<i64>, StoreError> {
        let pool = self.inner.pool.clone();
        Ok(self
            .inner
            .block(async move { migrations::applied(&pool).await })??)
    }
}

/// The store's schema version lives in its `meta` table as in the embedded
/// backend, so `store copy` carries it and either backend checks it.
fn check_schema(pg: &Postgres) -> Result<(), StoreError> {
    use engage_store::SCHEMA_VERSION;
    const META: Table = Table::new("meta");
    pg.transaction(&mut |w| {
        let found = w
            .get(META, "schema_version")
            .ok()
            .flatten()
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map(u64::from_le_bytes);
        match found {
            Some(_) => false,
            None => w
                .put(META, "schema_version", &SCHEMA_VERSION.to_le_bytes())
                .is_ok(),
        }
    })?;
    let snap = pg.snapshot()?;
    let found = snap
        .get(META, "schema_version")?
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map(u64::from_le_bytes);
    match found {
        Some(v) if v > SCHEMA_VERSION => Err(StoreError::NewerSchema { found: v }),
        _ => Ok(()),
    }
}

impl Backend for Postgres {
    fn snapshot(&self) -> Result<Box<dyn ReadView + Send + Sync>, StoreError> {
        Stats::bump(&self.inner.stats.snapshots);
        let pool = self.inner.pool.clone();
        // The transaction begins with the first read, in the same round
        // trip; a snapshot never read costs none.
        let lease = self.inner.block(async move { pool.get().await })??;
        Ok(Box::new(Snap {
            inner: self.inner.clone(),
            lease: std::sync::Mutex::new(lease),
            cache: Default::default(),
        }))
    }

    fn transaction(
        &self,
        body: &mut dyn FnMut(&mut dyn WriteView) -> bool,
    ) -> Result<bool, StoreError> {
        write::transaction(&self.inner, body)
    }

    fn shared(&self) -> bool {
        true
    }

    fn table_names(&self) -> Result<Vec<String>, StoreError> {
        let pool = self.inner.pool.clone();
        Ok(self.inner.block(async move {
            let lease = pool.get().await?;
            let rows = lease
                .conn()
                .client
                .query("SELECT DISTINCT tbl FROM engage_kv ORDER BY tbl", &[])
                .await?;
            Ok::<_, PgError>(rows.iter().map(|r| r.get::<_, String>(0)).collect())
        })??)
    }
}

/// A read snapshot: a REPEATABLE READ READ ONLY transaction on a leased
/// connection, begun with its first read and rolled back (the connection
/// returned) on drop. What it read once it answers again from memory: it
/// is one point in time.
struct Snap {
    inner: Arc<Inner>,
    lease: std::sync::Mutex<Lease>,
    cache: std::sync::Mutex<ReadCache>,
}

/// The most reads a snapshot or a write transaction remembers, and the
/// largest value it remembers: past them it reads again (what a plugin
/// reads in one call is bounded by its fuel, not by this).
pub(crate) const CACHE_ENTRIES: usize = 4096;
pub(crate) const CACHE_VALUE_BYTES: usize = 64 << 10;

/// What a snapshot read, by (table, key).
type ReadCache = std::collections::HashMap<(&'static str, String), Option<Vec<u8>>>;

const SNAPSHOT_BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

impl Snap {
    /// Run `read` on the snapshot's connection, beginning the transaction
    /// in the same round trip the first time.
    fn run<T: Send + 'static, F>(&self, read: impl FnOnce(&Lease) -> F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, PgError>> + Send + 'static,
    {
        let mut lease = self.lease.lock().unwrap_or_else(|p| p.into_inner());
        let fut = read(&lease);
        if lease.is_in_transaction() {
            return Ok(self.inner.block(fut)??);
        }
        let conn = lease.conn().clone();
        let got = self.inner.block(async move {
            // Both requests go out before either answer is awaited: the
            // client pipelines them on the connection, in this order.
            let (begun, read) = tokio::join!(conn.client.batch_execute(SNAPSHOT_BEGIN), fut);
            begun?;
            read
        })??;
        lease.mark_in_transaction();
        Ok(got)
    }
}

impl ReadView for Snap {
    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let k = (table.name(), key.to_owned());
        if let Some(v) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&k) {
            return Ok(v.clone());
        }
        let v = self.run(|l| query::get(l, table, key))?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: a plugin may read many keys in one call.
        if cache.len() < CACHE_ENTRIES && v.as_ref().is_none_or(|v| v.len() <= CACHE_VALUE_BYTES) {
            cache.insert(k, v.clone());
        }
        Ok(v)
    }

    fn count_from(&self, table: Table, prefix: &str, from: &str) -> Result<u64, StoreError> {
        self.run(|l| query::count_from(l, table, prefix, from))
    }

    fn scan(&self, table: Table, scan: Scan<'_>) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.run(|l| query::scan(l, table, scan))
    }
}

/// The statements both views run, as owned futures.
pub(crate) mod query {
    use super::*;

    /// Every key with `prefix` sorts below `prefix` + 0xFF: no UTF-8
    /// string contains that byte.
    pub(crate) fn upper(prefix: &str) -> Vec<u8> {
        let mut v = prefix.as_bytes().to_vec();
        v.push(0xff);
        v
    }

    pub(crate) fn get(
        lease: &Lease,
        table: Table,
        key: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, PgError>> + Send + use<> {
        let conn = lease.conn().clone();
        let key = key.as_bytes().to_vec();
        async move {
            let row = conn
                .client
                .query_opt(&conn.st.get, &[&table.name(), &key])
                .await?;
            Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
        }
    }

    pub(crate) fn count_from(
        lease: &Lease,
        table: Table,
        prefix: &str,
        from: &str,
    ) -> impl Future<Output = Result<u64, PgError>> + Send + use<> {
        let conn = lease.conn().clone();
        let low = from.max(prefix).as_bytes().to_vec();
        let high = upper(prefix);
        async move {
            let row = conn
                .client
                .query_one(&conn.st.count, &[&table.name(), &low, &high])
                .await?;
            Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
        }
    }

    pub(crate) fn scan(
        lease: &Lease,
        table: Table,
        scan: Scan<'_>,
    ) -> impl Future<Output = Result<Vec<(String, Vec<u8>)>, PgError>> + Send + use<> {
        let conn = lease.conn().clone();
        let Scan {
            prefix,
            after,
            limit,
            reverse,
        } = scan;
        let low = prefix.as_bytes().to_vec();
        let high = upper(prefix);
        let after = after.map(|a| a.as_bytes().to_vec());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        async move {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let t = table.name();
            let rows = match (reverse, after) {
                (false, None) => {
                    conn.client
                        .query(&conn.st.scan_from, &[&t, &low, &high, &limit])
                        .await?
                }
                (false, Some(a)) => {
                    let low = if a.as_slice() >= low.as_slice() {
                        a
                    } else {
                        // Past a key below the prefix: from the prefix on.
                        return Ok(conn
                            .client
                            .query(&conn.st.scan_from, &[&t, &low, &high, &limit])
                            .await?
                            .into_iter()
                            .filter_map(row)
                            .collect());
                    };
                    conn.client
                        .query(&conn.st.scan_after, &[&t, &low, &high, &limit])
                        .await?
                }
                (true, None) => {
                    conn.client
                        .query(&conn.st.scan_back, &[&t, &low, &high, &limit])
                        .await?
                }
                (true, Some(a)) => {
                    let high = if a.as_slice() < high.as_slice() {
                        a
                    } else {
                        high
                    };
                    conn.client
                        .query(&conn.st.scan_back, &[&t, &low, &high, &limit])
                        .await?
                }
            };
            Ok(rows.into_iter().filter_map(row).collect())
        }
    }

    /// A key and its value; keys were written from `&str`, so a key that
    /// is not UTF-8 was not written by Engage and is skipped.
    fn row(r: tokio_postgres::Row) -> Option<(String, Vec<u8>)> {
        let k: Vec<u8> = r.get(0);
        Some((String::from_utf8(k).ok()?, r.get(1)))
    }
}

/// A pause before running a conflicted transaction again: exponential from
/// 1 ms, capped at 50 ms, with full jitter so conflicting hosts spread out.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let cap_us = (1000u64 << attempt.min(6)).min(50_000);
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    Duration::from_micros(u64::from_le_bytes(b) % cap_us.max(1))
}

/// The connection settings and the TLS connector of a storage url (see
/// [`tls`] for `sslmode` and `sslrootcert`).
fn parse_url(url: &str) -> Result<(tokio_postgres::Config, Option<tls::Connector>), StoreError> {
    let bad = |e: String| StoreError::Unavailable(format!("the storage url: {e}"));
    let settings = tls::settings(url).map_err(bad)?;
    let config = settings
        .url
        .parse()
        .map_err(|e| bad(format!("not a PostgreSQL url: {e}")))?;
    Ok((config, tls::connector(&settings).map_err(bad)?))
}

/// Create the database `name` on the server `base_url` points at (which
/// must allow it) and return a url for it: for tests, benchmarks and a
/// `store copy` into a fresh database. `name` is letters, digits and `_`.
pub fn create_database(base_url: &str, name: &str) -> Result<String, StoreError> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(StoreError::Unavailable(format!(
            "{name:?} is not a plain database name"
        )));
    }
    let (config, tls) = parse_url(base_url)?;
    let sql = format!("CREATE DATABASE {name}");
    let run = async move {
        let client = pool::open_client(&config, tls.as_ref()).await?;
        client.batch_execute(&sql).await?;
        Ok::<(), tokio_postgres::Error>(())
    };
    // A thread of its own: the runtime may neither start nor stop inside
    // the caller's.
    let created = std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|rt| rt.block_on(run))
        })
        .join()
    });
    match created {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => return Err(PgError::from(e).into()),
        Ok(Err(e)) => return Err(e.into()),
        Err(_) => {
            return Err(StoreError::Unavailable(
                "creating the database panicked".into(),
            ));
        }
    }
    with_dbname(base_url, name)
        .ok_or_else(|| StoreError::Unavailable("give the server as a postgres://… url".into()))
}

/// `url` with its database swapped for `name`.
pub fn with_dbname(url: &str, name: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let authority = rest.split('/').next()?;
    let mut out = format!("{scheme}://{authority}/{name}");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Some(out)
}

#[cfg(test)]
mod tests;
