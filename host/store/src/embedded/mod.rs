//! The embedded backend: one redb file, `engage.redb`, in the data
//! directory. Nothing to install; one process at a time (redb locks the
//! file). Each commit's fsync runs beside the next batch's execution
//! ([`sync`]).

mod sync;

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};

use crate::backend::{Backend, ReadView, Scan, WhenDurable, WriteView};
use crate::{META, SCHEMA_VERSION, StoreError, Table};

/// The file in the data directory.
const FILE: &str = "engage.redb";

/// The redb table behind a [`Table`].
type Def = TableDefinition<'static, &'static str, &'static [u8]>;

fn def(t: Table) -> Def {
    TableDefinition::new(t.name())
}

// What redb says goes up as the store's `Db` error.
macro_rules! redb_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(Box::new(redb::Error::from(e)))
            }
        }
    )*};
}
redb_errors!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::DatabaseError,
    redb::SetDurabilityError
);

/// The redb database.
pub struct Embedded {
    db: Database,
    /// Declared after `db`: the database closes first, and the syncer then
    /// answers the last commit's callers.
    syncer: sync::Syncer,
}

impl Embedded {
    /// Open (or create) `engage.redb` in `dir` and migrate it to
    /// [`SCHEMA_VERSION`].
    pub fn open(dir: &cap_std::fs::Dir) -> Result<Embedded, StoreError> {
        let file = dir
            .open_with(
                FILE,
                cap_std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true),
            )?
            .into_std();
        Embedded::on(Box::new(redb::backends::FileBackend::new(file)?))
    }

    /// The database on `file` (the data file, or a test's stand-in).
    fn on(file: Box<dyn redb::StorageBackend>) -> Result<Embedded, StoreError> {
        let (file, syncer) = sync::Syncer::new(file)?;
        let db = redb::Builder::new()
            .set_cache_size(64 << 20)
            .create_with_backend(file)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::AlreadyOpen,
                e => e.into(),
            })?;
        migrate(&db)?;
        syncer.opened(db.begin_read()?)?;
        Ok(Embedded { db, syncer })
    }

    /// Whether `engage.redb` in `path` is held by a running server.
    pub fn is_locked(path: &Path) -> bool {
        matches!(
            Database::open(path.join(FILE)),
            Err(redb::DatabaseError::DatabaseAlreadyOpen)
        )
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        // The store's own read transaction ends before the database does.
        self.syncer.release();
    }
}

impl Backend for Embedded {
    /// The newest durable commit (shared by every reader until the next
    /// one is durable).
    fn snapshot(&self) -> Result<Box<dyn ReadView + Send + Sync>, StoreError> {
        let snap = match self.syncer.snapshot() {
            Some(s) => s,
            None => Arc::new(self.db.begin_read()?),
        };
        Ok(Box::new(Snap(snap)))
    }

    fn transaction(
        &self,
        body: &mut dyn FnMut(&mut dyn WriteView) -> bool,
    ) -> Result<bool, StoreError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        let commit = {
            let mut w = Write {
                txn: &txn,
                tables: RefCell::new(Vec::new()),
            };
            body(&mut w)
        }; // every table closes here, before the transaction ends
        if commit {
            txn.commit()?;
            // The commit's fsync is owed; the syncer does it while the
            // writer goes on (see `sync`).
            self.syncer.committed(self.db.begin_read()?)?;
        } else {
            txn.abort()?;
        }
        Ok(commit)
    }

    fn when_durable(&self, then: WhenDurable) {
        self.syncer.when_durable(then);
    }

    fn table_names(&self) -> Result<Vec<String>, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn.list_tables()?.map(|t| t.name().to_owned()).collect())
    }
}

fn migrate(db: &Database) -> Result<(), StoreError> {
    let txn = db.begin_write()?;
    let found = {
        let meta = txn.open_table(def(META))?;
        meta.get("schema_version")?.map(|v| {
            let bytes: [u8; 8] = v.value().try_into().unwrap_or_default();
            u64::from_le_bytes(bytes)
        })
    };
    match found {
        Some(v) if v > SCHEMA_VERSION => return Err(StoreError::NewerSchema { found: v }),
        Some(v) if v == SCHEMA_VERSION => {
            txn.abort()?;
            return Ok(());
        }
        // Future migrations go here, one step per version: `Some(1) => ...`.
        _ => {}
    }
    txn.open_table(def(META))?
        .insert("schema_version", SCHEMA_VERSION.to_le_bytes().as_slice())?;
    txn.commit()?;
    tracing::info!(schema = SCHEMA_VERSION, "storage schema ready");
    Ok(())
}

/// A read snapshot.
struct Snap(Arc<redb::ReadTransaction>);

impl Snap {
    /// `f` on `table`; `none` when the table was never written.
    fn read<R>(
        &self,
        table: Table,
        none: R,
        f: impl FnOnce(&redb::ReadOnlyTable<&'static str, &'static [u8]>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        match self.0.open_table(def(table)) {
            Ok(t) => f(&t),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(none),
            Err(e) => Err(e.into()),
        }
    }
}

impl ReadView for Snap {
    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(table, None, |t| get_value(t, key))
    }

    fn count_from(&self, table: Table, prefix: &str, from: &str) -> Result<u64, StoreError> {
        self.read(table, 0, |t| count_keys(t, prefix, from))
    }

    fn scan(&self, table: Table, scan: Scan<'_>) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.read(table, Vec::new(), |t| scan_keys(t, scan))
    }
}

fn get_value(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(t.get(key)?.map(|v| v.value().to_vec()))
}

/// A table opened in a write transaction.
type OpenTable<'t> = redb::Table<'t, &'static str, &'static [u8]>;

/// A write transaction. Tables are opened once per transaction and kept
/// open until it ends: a batch of jobs touches the same dozen tables
/// thousands of times.
struct Write<'t> {
    txn: &'t redb::WriteTransaction,
    tables: RefCell<Vec<(&'static str, OpenTable<'t>)>>,
}

impl<'t> Write<'t> {
    fn with<R>(
        &self,
        table: Table,
        f: impl FnOnce(&mut OpenTable<'t>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut tables = self.tables.borrow_mut();
        let i = match tables.iter().position(|(n, _)| *n == table.name()) {
            Some(i) => i,
            None => {
                tables.push((table.name(), self.txn.open_table(def(table))?));
                tables.len() - 1
            }
        };
        f(&mut tables[i].1)
    }
}

impl ReadView for Write<'_> {
    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.with(table, |t| get_value(t, key))
    }

    fn count_from(&self, table: Table, prefix: &str, from: &str) -> Result<u64, StoreError> {
        self.with(table, |t| count_keys(t, prefix, from))
    }

    fn scan(&self, table: Table, scan: Scan<'_>) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.with(table, |t| scan_keys(t, scan))
    }
}

impl WriteView for Write<'_> {
    fn put(&mut self, table: Table, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.with(table, |t| {
            t.insert(key, value)?;
            Ok(())
        })
    }

    fn remove(&mut self, table: Table, key: &str) -> Result<bool, StoreError> {
        self.with(table, |t| Ok(t.remove(key)?.is_some()))
    }
}

fn count_keys(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    prefix: &str,
    from: &str,
) -> Result<u64, StoreError> {
    let mut n = 0;
    for entry in t.range(from..)? {
        let (k, _) = entry?;
        if !k.value().starts_with(prefix) {
            break;
        }
        n += 1;
    }
    Ok(n)
}

fn scan_keys(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    scan: Scan<'_>,
) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let Scan {
        prefix,
        after,
        limit,
        reverse,
    } = scan;
    // Every key with `prefix` sorts below `prefix` + U+10FFFF.
    let end = format!("{prefix}\u{10ffff}");
    let mut out = Vec::new();
    let mut keep = |entry: Result<
        (
            redb::AccessGuard<'_, &'static str>,
            redb::AccessGuard<'_, &'static [u8]>,
        ),
        redb::StorageError,
    >|
     -> Result<bool, StoreError> {
        let (k, v) = entry?;
        if !k.value().starts_with(prefix) {
            return Ok(false);
        }
        out.push((k.value().to_owned(), v.value().to_vec()));
        Ok(out.len() < limit)
    };
    if limit == 0 {
        return Ok(out);
    }
    match (reverse, after) {
        (false, None) => {
            for e in t.range::<&str>(prefix..end.as_str())? {
                if !keep(e)? {
                    break;
                }
            }
        }
        (false, Some(a)) => {
            let from = a.max(prefix);
            for e in t.range::<&str>(from..end.as_str())? {
                if e.as_ref().map(|(k, _)| k.value() == a).unwrap_or(false) {
                    continue;
                }
                if !keep(e)? {
                    break;
                }
            }
        }
        (true, None) => {
            for e in t.range::<&str>(prefix..end.as_str())?.rev() {
                if !keep(e)? {
                    break;
                }
            }
        }
        (true, Some(a)) => {
            if a > prefix {
                for e in t.range::<&str>(prefix..a)?.rev() {
                    if !keep(e)? {
                        break;
                    }
                }
            }
        }
    }
    Ok(out)
}
