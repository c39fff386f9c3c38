//! Backups: a whole store, from one snapshot, as one self-checking file
//! (`engage backup`), and that file back into an empty store (`engage
//! restore`).
//!
//! **Consistency.** A backup is written from a single read snapshot, so it
//! holds exactly the writes committed before the snapshot was taken and
//! none after: no torn state (a balance without its ledger entry, a
//! redemption without its code) whatever the server does meanwhile. Writes
//! go on while it streams; the snapshot never waits for them nor they for
//! it. The **recovery point** is the moment the snapshot was taken
//! (`created_at_ms` in the header): everything acknowledged before it is in
//! the file.
//!
//! **Format** (version 1), all integers little-endian:
//!
//! ```text
//! "ENGAGE-BACKUP\n"                    magic
//! u32 length, JSON header              {"format":1,"schema":…,"created_at_ms":…}
//! per table, in name order:
//!   b'T' u32 length, table name
//!   b'E' u32 key length, key, u32 value length, value    (each entry, key order)
//!   b'S' u64 entries, 32-byte SHA-256 of the table       (as `store copy` digests it)
//! b'Z' u64 tables, u64 entries, 32-byte SHA-256 of every byte before this record
//! ```
//!
//! A restore checks every table's count and digest and the trailer before
//! it reports success; a truncated or altered file is refused with what is
//! wrong, and the target must then be emptied before another try.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::copy::TableReport;
use crate::copy::{Summary, table};
use crate::{Reader, SCHEMA_VERSION, Snapshot, Store, StoreError, Table};

const MAGIC: &[u8] = b"ENGAGE-BACKUP\n";
const FORMAT: u32 = 1;
/// Entries read per page from the snapshot, and written per restore commit.
const PAGE: usize = 512;
/// The largest key or value a backup may hold (a component is the largest
/// value the store keeps; its upload limit is far below this).
const MAX_ITEM: u32 = 256 << 20;

/// What a backup's header says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    pub format: u32,
    /// The store's schema version when the backup was taken.
    pub schema: u64,
    /// When the snapshot was taken: the recovery point.
    pub created_at_ms: i64,
}

/// What a backup or a restore holds, per table.
#[derive(Debug, Serialize)]
pub struct Report {
    pub created_at_ms: i64,
    pub tables: Vec<TableReport>,
    pub entries: u64,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("not an Engage backup (the file does not start with its magic bytes)")]
    NotABackup,
    #[error(
        "backup format {0} is newer than this build reads ({FORMAT}); restore with a newer Engage"
    )]
    NewerFormat(u32),
    #[error(
        "the backup is of schema {found}, this build knows {SCHEMA_VERSION}; restore with the Engage that took it, or a newer one"
    )]
    NewerSchema { found: u64 },
    #[error("the backup is damaged: {0}; the target is incomplete, empty it before trying again")]
    Damaged(String),
    #[error("the target already holds data (table {0}); restore into an empty store")]
    TargetNotEmpty(String),
    #[error("writing the backup: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Writes what it is given to `out` and digests it on the way.
struct Digesting<W> {
    out: W,
    digest: Sha256,
    bytes: u64,
}

impl<W: Write> Digesting<W> {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.digest.update(b);
        self.bytes += b.len() as u64;
        self.out.write_all(b)
    }

    fn put_len(&mut self, n: usize) -> std::io::Result<()> {
        let n = u32::try_from(n)
            .ok()
            .filter(|n| *n <= MAX_ITEM)
            .ok_or_else(|| std::io::Error::other("an item is larger than a backup holds"))?;
        self.put(&n.to_le_bytes())
    }
}

/// Write a backup of `snap` (which `store` gave) to `out`. Reads a page at
/// a time: a large table is never held whole.
pub fn write(store: &Store, snap: &Snapshot, out: impl Write) -> Result<Report, BackupError> {
    let created_at_ms = crate::ids::now_ms();
    let schema = snap
        .get_raw(crate::META, "schema_version")?
        .and_then(|v| v.try_into().ok().map(u64::from_le_bytes))
        .unwrap_or(SCHEMA_VERSION);
    let header = serde_json::to_vec(&Header {
        format: FORMAT,
        schema,
        created_at_ms,
    })
    .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut w = Digesting {
        out,
        digest: Sha256::new(),
        bytes: 0,
    };
    w.put(MAGIC)?;
    w.put_len(header.len())?;
    w.put(&header)?;
    let mut names = store.backend().table_names()?;
    names.sort();
    let (mut tables, mut entries) = (Vec::new(), 0u64);
    for name in names {
        let t = table(&name);
        w.put(b"T")?;
        w.put_len(name.len())?;
        w.put(name.as_bytes())?;
        let mut sum = Summary::default();
        crate::copy::each_page(snap, t, |page| {
            for (k, v) in &page {
                sum.add(k, v);
                w.put(b"E")?;
                w.put_len(k.len())?;
                w.put(k.as_bytes())?;
                w.put_len(v.len())?;
                w.put(v)?;
            }
            Ok::<_, BackupError>(())
        })?;
        let (n, digest) = sum.finish();
        w.put(b"S")?;
        w.put(&n.to_le_bytes())?;
        w.put(&digest)?;
        entries += n;
        tables.push(TableReport {
            table: name,
            entries: n,
            sha256: crate::ids::hex(&digest),
        });
    }
    let whole = w.digest.clone().finalize();
    w.out.write_all(b"Z")?;
    w.out.write_all(&(tables.len() as u64).to_le_bytes())?;
    w.out.write_all(&entries.to_le_bytes())?;
    w.out.write_all(&whole)?;
    w.out.flush()?;
    Ok(Report {
        created_at_ms,
        tables,
        entries,
        bytes: w.bytes + 1 + 8 + 8 + 32,
    })
}

/// Reads and digests.
struct Reading<R> {
    input: R,
    digest: Sha256,
    bytes: u64,
}

impl<R: Read> Reading<R> {
    fn take(&mut self, n: usize) -> Result<Vec<u8>, BackupError> {
        let mut buf = vec![0; n];
        self.input
            .read_exact(&mut buf)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => {
                    BackupError::Damaged(format!("it ends early, after {} bytes", self.bytes))
                }
                _ => BackupError::Io(e),
            })?;
        self.bytes += n as u64;
        Ok(buf)
    }

    fn get(&mut self, n: usize) -> Result<Vec<u8>, BackupError> {
        let b = self.take(n)?;
        self.digest.update(&b);
        Ok(b)
    }

    fn u32(&mut self) -> Result<u32, BackupError> {
        let b = self.get(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn item(&mut self) -> Result<Vec<u8>, BackupError> {
        let n = self.u32()?;
        if n > MAX_ITEM {
            return Err(BackupError::Damaged(format!(
                "an item of {n} bytes at byte {}",
                self.bytes
            )));
        }
        self.get(n as usize)
    }

    fn string(&mut self) -> Result<String, BackupError> {
        String::from_utf8(self.item()?).map_err(|_| {
            BackupError::Damaged(format!("a key that is not UTF-8 at byte {}", self.bytes))
        })
    }
}

fn u64_of(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Restore the backup read from `input` into `to`, which must hold
/// nothing yet; every table's count and digest, and the whole file's, are
/// checked (on what was read, then on what `to` holds) before it answers.
pub async fn restore(to: &Store, input: impl Read) -> Result<Report, BackupError> {
    for name in to.backend().table_names()? {
        if name != "meta"
            && !to
                .read()?
                .scan_raw(table(&name), "", None, 1, false)?
                .is_empty()
        {
            return Err(BackupError::TargetNotEmpty(name));
        }
    }
    apply(Some(to), input).await
}

/// Read a whole backup and check every table's count and digest and the
/// trailer, writing nothing: what `engage backup` does to the file it
/// wrote before it calls it done.
pub async fn verify(input: impl Read) -> Result<Report, BackupError> {
    apply(None, input).await
}

async fn apply(to: Option<&Store>, input: impl Read) -> Result<Report, BackupError> {
    let mut r = Reading {
        input,
        digest: Sha256::new(),
        bytes: 0,
    };
    if r.get(MAGIC.len()).ok().as_deref() != Some(MAGIC) {
        return Err(BackupError::NotABackup);
    }
    let header: Header = serde_json::from_slice(&r.item()?)
        .map_err(|e| BackupError::Damaged(format!("its header: {e}")))?;
    if header.format > FORMAT {
        return Err(BackupError::NewerFormat(header.format));
    }
    if header.schema > SCHEMA_VERSION {
        return Err(BackupError::NewerSchema {
            found: header.schema,
        });
    }
    let (mut tables, mut entries) = (Vec::new(), 0u64);
    let mut current: Option<(Table, String, Summary)> = None;
    let mut page: Vec<(String, Vec<u8>)> = Vec::with_capacity(PAGE);
    loop {
        let tag = r.take(1)?;
        if tag[0] != b'Z' {
            r.digest.update(&tag);
        }
        match tag[0] {
            b'T' => {
                if current.is_some() {
                    return Err(BackupError::Damaged("a table without its summary".into()));
                }
                let name = r.string()?;
                current = Some((table(&name), name, Summary::default()));
            }
            b'E' => {
                let Some((t, _, sum)) = current.as_mut() else {
                    return Err(BackupError::Damaged("an entry outside a table".into()));
                };
                let (k, v) = (r.string()?, r.item()?);
                sum.add(&k, &v);
                page.push((k, v));
                if page.len() >= PAGE {
                    match to {
                        Some(to) => flush(to, *t, &mut page).await?,
                        None => page.clear(),
                    }
                }
            }
            b'S' => {
                let Some((t, name, sum)) = current.take() else {
                    return Err(BackupError::Damaged("a summary outside a table".into()));
                };
                if let Some(to) = to {
                    flush(to, t, &mut page).await?;
                }
                page.clear();
                let b = r.get(8 + 32)?;
                let (n, digest) = sum.finish();
                if u64_of(&b) != n || b[8..] != digest[..] {
                    return Err(BackupError::Damaged(format!(
                        "table {name}: {n} entries read, {} recorded, or their digest differs",
                        u64_of(&b)
                    )));
                }
                // What the target now holds is what was read.
                if let Some(to) = to {
                    let (m, theirs) = crate::copy::summary(&to.read()?, t)?;
                    if (m, theirs.as_slice()) != (n, &digest[..]) {
                        return Err(BackupError::Damaged(format!(
                            "table {name}: {m} entries restored of {n}"
                        )));
                    }
                }
                entries += n;
                tables.push(TableReport {
                    table: name,
                    entries: n,
                    sha256: crate::ids::hex(&digest),
                });
            }
            b'Z' => {
                let whole = r.digest.clone().finalize();
                let b = r.take(8 + 8 + 32)?;
                if current.is_some()
                    || u64_of(&b) != tables.len() as u64
                    || u64_of(&b[8..]) != entries
                    || b[16..] != whole[..]
                {
                    return Err(BackupError::Damaged(
                        "its trailer does not match what it holds".into(),
                    ));
                }
                return Ok(Report {
                    created_at_ms: header.created_at_ms,
                    tables,
                    entries,
                    bytes: r.bytes,
                });
            }
            other => {
                return Err(BackupError::Damaged(format!(
                    "an unknown record {other:#04x} at byte {}",
                    r.bytes
                )));
            }
        }
    }
}

async fn flush(to: &Store, t: Table, page: &mut Vec<(String, Vec<u8>)>) -> Result<(), StoreError> {
    if page.is_empty() {
        return Ok(());
    }
    let batch = std::mem::take(page);
    to.write(move |tx| {
        for (k, v) in &batch {
            tx.put_raw(t, k, v)?;
        }
        Ok::<_, StoreError>(())
    })
    .await
}
