//! Write transactions: SERIALIZABLE, run again whole on a serialization
//! failure.
//!
//! Round trips are what a SQL backend pays for, so the view keeps what the
//! transaction read and wrote in memory: a key read twice is fetched once,
//! puts are sent together in one statement at commit (or before a scan or
//! a count of their table, which must see them), and only a removal, which
//! answers whether the key was there, goes to the database at once.

use std::collections::HashMap;
use std::sync::Arc;

use engage_store::backend::{ReadView, Scan, WriteView};
use engage_store::{StoreError, Table};

use crate::pool::Lease;
use crate::{Inner, PgError, query};

struct Cached {
    value: Option<Vec<u8>>,
    /// Written here and not yet sent.
    dirty: bool,
}

struct View<'a> {
    inner: &'a Arc<Inner>,
    lease: Lease,
    cache: std::cell::RefCell<HashMap<(&'static str, String), Cached>>,
    /// The first statement that failed: the transaction is dead after it.
    failed: std::cell::RefCell<Option<PgError>>,
}

impl View<'_> {
    fn run<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = Result<T, PgError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        if let Some(e) = self.failed.borrow().as_ref() {
            return Err(StoreError::Unavailable(format!(
                "the transaction already failed: {e}"
            )));
        }
        match self.inner.block(fut).and_then(|r| r) {
            Ok(v) => Ok(v),
            Err(e) => {
                let answer = StoreError::Unavailable(e.to_string());
                *self.failed.borrow_mut() = Some(e);
                Err(answer)
            }
        }
    }

    /// Send the pending puts (of `table`, or all).
    fn flush(&self, table: Option<&'static str>) -> Result<(), StoreError> {
        let (mut tbls, mut keys, mut values) = (Vec::new(), Vec::new(), Vec::new());
        for ((t, k), c) in self.cache.borrow_mut().iter_mut() {
            if !c.dirty || table.is_some_and(|only| only != *t) {
                continue;
            }
            if let Some(v) = &c.value {
                tbls.push(t.to_string());
                keys.push(k.as_bytes().to_vec());
                values.push(v.clone());
            }
            c.dirty = false;
        }
        if tbls.is_empty() {
            return Ok(());
        }
        let conn = self.lease.conn().clone();
        self.run(async move {
            conn.client
                .execute(&conn.st.upsert, &[&tbls, &keys, &values])
                .await?;
            Ok(())
        })
    }
}

impl ReadView for View<'_> {
    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(c) = self.cache.borrow().get(&(table.name(), key.to_owned())) {
            return Ok(c.value.clone());
        }
        let value = self.run(query::get(&self.lease, table, key))?;
        let mut cache = self.cache.borrow_mut();
        // Writes are always kept; reads while the cache is within bounds.
        if cache.len() < crate::CACHE_ENTRIES
            && value
                .as_ref()
                .is_none_or(|v| v.len() <= crate::CACHE_VALUE_BYTES)
        {
            cache.insert(
                (table.name(), key.to_owned()),
                Cached {
                    value: value.clone(),
                    dirty: false,
                },
            );
        }
        Ok(value)
    }

    fn count_from(&self, table: Table, prefix: &str, from: &str) -> Result<u64, StoreError> {
        self.flush(Some(table.name()))?;
        self.run(query::count_from(&self.lease, table, prefix, from))
    }

    fn scan(&self, table: Table, scan: Scan<'_>) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.flush(Some(table.name()))?;
        self.run(query::scan(&self.lease, table, scan))
    }
}

impl WriteView for View<'_> {
    fn put(&mut self, table: Table, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.cache.borrow_mut().insert(
            (table.name(), key.to_owned()),
            Cached {
                value: Some(value.to_vec()),
                dirty: true,
            },
        );
        Ok(())
    }

    fn remove(&mut self, table: Table, key: &str) -> Result<bool, StoreError> {
        let k = (table.name(), key.to_owned());
        let known = self
            .cache
            .borrow()
            .get(&k)
            .map(|c| (c.value.is_some(), c.dirty));
        let was = match known {
            // Known absent: nothing to do.
            Some((false, _)) => false,
            // Read (or written) here: delete whatever the database has.
            Some((true, _)) | None => {
                let conn = self.lease.conn().clone();
                let (t, key_bytes) = (table.name(), key.as_bytes().to_vec());
                let deleted = self.run(async move {
                    Ok(conn
                        .client
                        .execute(&conn.st.delete, &[&t, &key_bytes])
                        .await?
                        > 0)
                })?;
                known.is_some() || deleted
            }
        };
        self.cache.borrow_mut().insert(
            k,
            Cached {
                value: None,
                dirty: false,
            },
        );
        Ok(was)
    }
}

/// Run `body` in a SERIALIZABLE transaction; see [`engage_store::Backend::transaction`].
pub(crate) fn transaction(
    inner: &Arc<Inner>,
    body: &mut dyn FnMut(&mut dyn WriteView) -> bool,
) -> Result<bool, StoreError> {
    let mut attempt = 0;
    let started = std::time::Instant::now();
    loop {
        crate::Stats::bump(&inner.stats.transactions);
        let lease = inner.lease("BEGIN ISOLATION LEVEL SERIALIZABLE")?;
        let mut view = View {
            inner,
            lease,
            cache: Default::default(),
            failed: Default::default(),
        };
        let commit = body(&mut view);
        let failed = view.failed.borrow_mut().take();
        let outcome = match failed {
            Some(e) => Err(e),
            None if !commit => Ok(false),
            None => view
                .flush(None)
                .map_err(|_| {
                    let failed = view.failed.borrow_mut().take();
                    failed.unwrap_or_else(|| PgError::Unavailable("the commit failed".into()))
                })
                .and_then(|()| {
                    let conn = view.lease.conn().clone();
                    inner
                        .block(async move { conn.client.batch_execute("COMMIT").await })?
                        .map_err(PgError::from)?;
                    Ok(true)
                }),
        };
        let mut lease = view.lease;
        match outcome {
            Ok(true) => {
                lease.ended();
                return Ok(true);
            }
            // Discarded: the lease rolls back as it goes.
            Ok(false) => return Ok(false),
            Err(PgError::Retry(e)) if started.elapsed() < inner.retry_budget => {
                drop(lease);
                crate::Stats::bump(&inner.stats.retries);
                attempt += 1;
                tracing::debug!(attempt, error = %e, "write transaction conflicted; running it again");
                std::thread::sleep(crate::backoff(attempt));
            }
            Err(e) => return Err(e.into()),
        }
    }
}
