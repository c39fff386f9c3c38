//! Versioned migrations of the SQL schema, recorded in `engage_migrations`.
//! Each step runs once, in its own transaction, whichever host gets there
//! first; hosts starting together wait for each other through the
//! database, not through a lock of their own.

use tokio_postgres::error::SqlState;

use crate::PgError;
use crate::pool::Pool;

/// The steps, in order. Never edit a released step; add one.
const STEPS: &[(i64, &str)] = &[(
    1,
    // Every store table in one: `tbl` names it, keys are the store's keys
    // as bytes (bytewise order, whatever the collation), values are
    // JSON or little-endian counters.
    "CREATE TABLE engage_kv (
        tbl TEXT NOT NULL,
        key BYTEA NOT NULL,
        value BYTEA NOT NULL,
        PRIMARY KEY (tbl, key)
    )",
)];

/// The newest migration this build knows.
pub const LATEST: i64 = 1;

/// Whether `e` is what a concurrent host's identical step causes.
fn raced(e: &tokio_postgres::Error) -> bool {
    matches!(e.code(), Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
        || *c == SqlState::UNIQUE_VIOLATION
        || *c == SqlState::DUPLICATE_TABLE
        || *c == SqlState::DUPLICATE_OBJECT
        || *c == SqlState::T_R_DEADLOCK_DETECTED)
}

/// Apply what is missing; the versions applied by this call.
pub(crate) async fn run(pool: &Pool) -> Result<Vec<i64>, PgError> {
    let client = pool.connect_bare().await?;
    let mut attempt = 0;
    loop {
        match client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS engage_migrations (
                    version BIGINT PRIMARY KEY,
                    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
                )",
            )
            .await
        {
            Ok(()) => break,
            Err(e) if raced(&e) && attempt < 20 => {
                attempt += 1;
                tokio::time::sleep(crate::backoff(attempt)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let newest: Option<i64> = client
        .query_one("SELECT max(version) FROM engage_migrations", &[])
        .await?
        .get(0);
    if let Some(v) = newest
        && v > LATEST
    {
        return Err(PgError::Unavailable(format!(
            "the database has schema migration {v}, this build knows up to {LATEST}; upgrade Engage"
        )));
    }
    let mut done = Vec::new();
    for (version, sql) in STEPS {
        let mut attempt = 0;
        loop {
            let step = async {
                client
                    .batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
                    .await?;
                let there = client
                    .query_opt(
                        "SELECT 1 FROM engage_migrations WHERE version = $1",
                        &[version],
                    )
                    .await?
                    .is_some();
                if !there {
                    client.batch_execute(sql).await?;
                    client
                        .execute(
                            "INSERT INTO engage_migrations (version) VALUES ($1)",
                            &[version],
                        )
                        .await?;
                }
                client.batch_execute("COMMIT").await?;
                Ok::<bool, tokio_postgres::Error>(!there)
            };
            match step.await {
                Ok(applied) => {
                    if applied {
                        tracing::info!(version, "applied database migration");
                        done.push(*version);
                    }
                    break;
                }
                Err(e) => {
                    let _ = client.batch_execute("ROLLBACK").await;
                    if raced(&e) && attempt < 20 {
                        attempt += 1;
                        tokio::time::sleep(crate::backoff(attempt)).await;
                        continue;
                    }
                    return Err(e.into());
                }
            }
        }
    }
    Ok(done)
}

/// The versions applied, oldest first (empty on a fresh database).
pub(crate) async fn applied(pool: &Pool) -> Result<Vec<i64>, PgError> {
    let client = pool.connect_bare().await?;
    let exists: bool = client
        .query_one("SELECT to_regclass('engage_migrations') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    Ok(client
        .query(
            "SELECT version FROM engage_migrations ORDER BY version",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}
