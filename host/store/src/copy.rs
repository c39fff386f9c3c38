//! Copying a whole store from one backend to another (`engage store
//! copy`): every table, from one snapshot of the source, into a target
//! that holds nothing yet, then verified table by table.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{Reader, Store, StoreError, Table};

/// Entries written per commit.
const PAGE: usize = 512;

/// The store's own bookkeeping, which every opened store already has.
const META: &str = "meta";

/// What was copied, per table, as verified on both sides.
#[derive(Debug, Serialize)]
pub struct CopyReport {
    pub tables: Vec<TableReport>,
    pub entries: u64,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct TableReport {
    pub table: String,
    pub entries: u64,
    /// SHA-256 over every key and value in key order, the same on both sides.
    pub sha256: String,
}

/// Why a copy did not happen or did not verify.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("the target already holds data (table {0}); copy into an empty store")]
    TargetNotEmpty(String),
    #[error(
        "table {table}: the copy differs from the source ({detail}); the target is incomplete, empty it before trying again"
    )]
    Mismatch { table: String, detail: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Table names come from the backend at run time; a [`Table`] names a
/// `'static` one. A copy touches each of the few dozen names once.
pub(crate) fn table(name: &str) -> Table {
    Table::new(Box::leak(name.to_owned().into_boxed_str()))
}

/// Every entry of `t` in `src`, a page at a time, fed to `f`: a large
/// table is never held whole.
pub(crate) fn each_page<E: From<StoreError>>(
    src: &impl Reader,
    t: Table,
    mut f: impl FnMut(Vec<(String, Vec<u8>)>) -> Result<(), E>,
) -> Result<(), E> {
    let mut after: Option<String> = None;
    loop {
        let page = src.scan_raw(t, "", after.as_deref(), PAGE, false)?;
        let Some((last, _)) = page.last() else {
            return Ok(());
        };
        after = Some(last.clone());
        let done = page.len() < PAGE;
        f(page)?;
        if done {
            return Ok(());
        }
    }
}

/// A table's entry count and SHA-256 over every key and value in key
/// order: what a copy and a backup check on both sides.
#[derive(Default)]
pub(crate) struct Summary {
    n: u64,
    h: Sha256,
}

impl Summary {
    pub(crate) fn add(&mut self, k: &str, v: &[u8]) {
        self.n += 1;
        self.h.update((k.len() as u64).to_le_bytes());
        self.h.update(k.as_bytes());
        self.h.update((v.len() as u64).to_le_bytes());
        self.h.update(v);
    }

    pub(crate) fn finish(self) -> (u64, [u8; 32]) {
        (self.n, self.h.finalize().into())
    }
}

/// The count and digest of `t` in `src`.
pub(crate) fn summary(src: &impl Reader, t: Table) -> Result<(u64, [u8; 32]), StoreError> {
    let mut sum = Summary::default();
    each_page(src, t, |page| {
        for (k, v) in page {
            sum.add(&k, &v);
        }
        Ok::<_, StoreError>(())
    })?;
    Ok(sum.finish())
}

/// Copy everything in `from` into `to`, which must hold nothing yet.
pub async fn copy(from: &Store, to: &Store) -> Result<CopyReport, CopyError> {
    for name in to.backend().table_names()? {
        if name != META
            && !to
                .read()?
                .scan_raw(table(&name), "", None, 1, false)?
                .is_empty()
        {
            return Err(CopyError::TargetNotEmpty(name));
        }
    }
    // One snapshot: a consistent copy even of a store in use.
    let snap = from.read()?;
    let mut names = from.backend().table_names()?;
    names.sort();
    let (mut entries, mut bytes) = (0u64, 0u64);
    let mut tables = Vec::new();
    for name in names {
        let t = table(&name);
        // A page read, a page written: a large table is never held whole.
        let mut after: Option<String> = None;
        loop {
            let page = snap.scan_raw(t, "", after.as_deref(), PAGE, false)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            let done = page.len() < PAGE;
            entries += page.len() as u64;
            bytes += page
                .iter()
                .map(|(k, v)| (k.len() + v.len()) as u64)
                .sum::<u64>();
            to.write(move |tx| {
                for (k, v) in &page {
                    tx.put_raw(t, k, v)?;
                }
                Ok::<_, StoreError>(())
            })
            .await?;
            if done {
                break;
            }
        }
        let (n, sha256) = summary(&snap, t)?;
        let (m, theirs) = summary(&to.read()?, t)?;
        if (n, &sha256) != (m, &theirs) {
            return Err(CopyError::Mismatch {
                table: name,
                detail: format!("{n} entries there, {m} here"),
            });
        }
        tables.push(TableReport {
            table: name,
            entries: n,
            sha256: crate::ids::hex(&sha256),
        });
    }
    Ok(CopyReport {
        tables,
        entries,
        bytes,
    })
}
