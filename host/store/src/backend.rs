//! The storage boundary: what a backend must provide so that every crate
//! above runs on it unchanged.
//!
//! A backend keeps named tables of string keys (sorted bytewise) and byte
//! values. It offers consistent snapshots for reading and runs a body in a
//! durable write transaction. Everything else — JSON records, counters,
//! sequences, the key codec, group commit and the re-run of a poisoned
//! batch — is built on these few calls in this crate, once.
//!
//! The embedded backend ([`crate::embedded`], redb) is the default; the
//! PostgreSQL backend (crate `engage-store-postgres`) maps `transaction`
//! onto a SERIALIZABLE transaction run again on a serialization failure,
//! which the writer contract allows: a job fails before it writes and can
//! be run again.

use crate::{StoreError, Table};

/// Reading from one consistent point in time.
pub trait ReadView {
    /// The bytes at `key`, if any.
    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// How many keys start with `prefix` and sort at or after `from`.
    fn count_from(&self, table: Table, prefix: &str, from: &str) -> Result<u64, StoreError>;

    /// The entries `scan` selects.
    fn scan(&self, table: Table, scan: Scan<'_>) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
}

/// Which entries a scan reads: up to `limit` whose key starts with
/// `prefix`, in key order (or reverse order), strictly after (or, reversed,
/// before) `after`.
#[derive(Debug, Clone, Copy)]
pub struct Scan<'a> {
    pub prefix: &'a str,
    pub after: Option<&'a str>,
    pub limit: usize,
    pub reverse: bool,
}

/// Reading and writing inside a write transaction: reads see the
/// transaction's own writes.
pub trait WriteView: ReadView {
    fn put(&mut self, table: Table, key: &str, value: &[u8]) -> Result<(), StoreError>;

    /// Removes `key`; true if it was there.
    fn remove(&mut self, table: Table, key: &str) -> Result<bool, StoreError>;
}

/// What [`Backend::when_durable`] runs once a commit is durable, or with
/// the error that stopped it.
pub type WhenDurable = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// A storage backend.
pub trait Backend: Send + Sync + 'static {
    /// A consistent snapshot; never waits for writers.
    fn snapshot(&self) -> Result<Box<dyn ReadView + Send + Sync>, StoreError>;

    /// Runs `body` in one write transaction and commits it when `body`
    /// returns true; discards it when `body` returns false. Ok(true) once
    /// committed, Ok(false) once discarded. The commit may not be durable
    /// yet: [`Backend::when_durable`] says when it is.
    fn transaction(
        &self,
        body: &mut dyn FnMut(&mut dyn WriteView) -> bool,
    ) -> Result<bool, StoreError>;

    /// Run `then` once every transaction committed so far is durable (or
    /// with the error that stopped it). Nobody may be told of a commit
    /// before then, and no snapshot shows it before then. By default a
    /// commit is durable when [`Backend::transaction`] returns.
    fn when_durable(&self, then: WhenDurable) {
        then(Ok(()));
    }

    /// The names of the tables that hold (or held) entries, for copying a
    /// whole store from one backend to another.
    fn table_names(&self) -> Result<Vec<String>, StoreError>;

    /// Whether other processes may work on the same data at the same time
    /// (many hosts on one database). What a process keeps in memory about
    /// stored state must then be refreshed from storage.
    fn shared(&self) -> bool {
        false
    }
}
