//! Making commits durable off the writer thread.
//!
//! A redb commit with [`redb::Durability::Immediate`] writes the new pages
//! and the header, then calls `sync_data` on its storage and returns. The
//! fsync is most of a small batch's time, and while the writer thread waits
//! for it nothing else can execute: every request is waiting for the writer.
//!
//! [`SyncedFile`] lets the fsync run on a thread of its own ("engage-fsync")
//! while the writer executes the next batch, without weakening what a
//! commit promises:
//!
//! - **The file sees batches in order.** `sync_data` only records that a
//!   sync is owed. Before any later write or resize reaches the file, the
//!   owed sync is done (by the syncer, or inline if it was not handed over).
//!   So no byte of commit N+1 lands before commit N is durable, which is
//!   the order redb's crash recovery relies on (its two header slots and
//!   its page reuse).
//! - **Nobody sees a commit before it is durable.** Callers are answered
//!   ([`Syncer::when_durable`]) and readers get a snapshot of a commit
//!   ([`Syncer::snapshot`]) only after its fsync returned. A reader may
//!   see a state one batch old; never one a crash can take back.
//! - **A failed fsync fails everything after it.** The commit's callers get
//!   the error, and so does every later write: redb's in-memory state is
//!   then ahead of the file, and only a restart (with redb's recovery) can
//!   say what is on disk.

use std::ops::Bound;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use redb::{BackendError, StorageBackend};

use crate::StoreError;

use crate::backend::WhenDurable as Then;

#[derive(Default)]
struct State {
    /// redb asked for a sync that has not been done or handed over.
    owed: bool,
    /// The syncer is making a commit durable now.
    in_flight: bool,
    /// Commits handed over (or made durable inline), counted from open,
    /// and how many of them are durable.
    committed: u64,
    durable: u64,
    /// Why the file can no longer be trusted, once an fsync failed.
    failed: Option<String>,
    /// Callbacks waiting for commit number `.0` to be durable.
    waiting: Vec<(u64, Then)>,
    /// The newest durable commit, as readers see it.
    published: Option<Arc<redb::ReadTransaction>>,
}

/// The state the storage wrapper, the backend and the syncer thread share.
pub(super) struct Shared {
    file: Box<dyn StorageBackend>,
    state: Mutex<State>,
    changed: Condvar,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncedFile").finish_non_exhaustive()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wait for the syncer; then do any sync still owed, here. Called
    /// before anything that changes the file.
    fn settle(&self) -> std::io::Result<MutexGuard<'_, State>> {
        let mut s = self.lock();
        while s.in_flight {
            s = self.changed.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
        if let Some(why) = &s.failed {
            return Err(std::io::Error::other(why.clone()));
        }
        if s.owed {
            if let Err(e) = self.file.sync_data() {
                s.failed = Some(format!("fsync failed: {e}"));
                return Err(e);
            }
            s.owed = false;
        }
        Ok(s)
    }
}

/// redb's storage: the data file, with `sync_data` deferred as the module
/// says.
#[derive(Debug)]
pub(super) struct SyncedFile(pub(super) Arc<Shared>);

impl StorageBackend for SyncedFile {
    fn len(&self) -> std::io::Result<u64> {
        self.0.file.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.0.file.read(offset, out)
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        let _settled = self.0.settle()?;
        self.0.file.set_len(len)
    }

    fn sync_data(&self) -> std::io::Result<()> {
        let mut s = self.0.settle()?;
        s.owed = true;
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let _settled = self.0.settle()?;
        self.0.file.write(offset, data)
    }

    fn close(&self) -> std::io::Result<()> {
        drop(self.0.settle()?);
        self.0.file.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.0.file.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.0.file.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.file.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.file.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.file.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.0.file.query_lock_range(start, end)
    }
}

/// The syncer thread and what the backend asks of it.
pub(super) struct Syncer {
    shared: Arc<Shared>,
    jobs: Option<std::sync::mpsc::Sender<(u64, Arc<redb::ReadTransaction>)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syncer {
    /// The storage for redb, and the syncer that goes with it.
    pub(super) fn new(file: Box<dyn StorageBackend>) -> Result<(SyncedFile, Syncer), StoreError> {
        let shared = Arc::new(Shared {
            file,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let (jobs, rx) = std::sync::mpsc::channel::<(u64, Arc<redb::ReadTransaction>)>();
        let on_thread = shared.clone();
        let thread = std::thread::Builder::new()
            .name("engage-fsync".into())
            .spawn(move || {
                while let Ok((n, snapshot)) = rx.recv() {
                    on_thread.sync(n, snapshot);
                }
            })?;
        Ok((
            SyncedFile(shared.clone()),
            Syncer {
                shared,
                jobs: Some(jobs),
                thread: Some(thread),
            },
        ))
    }

    /// After redb returned from a commit, `snapshot` being that commit:
    /// hand its owed fsync to the syncer (or, if it was already done
    /// inline, publish the commit at once).
    pub(super) fn committed(&self, snapshot: redb::ReadTransaction) -> Result<(), StoreError> {
        let snapshot = Arc::new(snapshot);
        let mut s = self.shared.lock();
        if let Some(why) = &s.failed {
            return Err(StoreError::CommitFailed(why.clone()));
        }
        debug_assert!(!s.in_flight, "the commit's writes waited for the syncer");
        s.committed += 1;
        let n = s.committed;
        if !s.owed {
            s.durable = n;
            s.published = Some(snapshot);
            return Ok(());
        }
        s.owed = false;
        s.in_flight = true;
        drop(s);
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|j| j.send((n, snapshot.clone())).is_ok());
        if !sent {
            // No syncer (it could not be kept running): sync here.
            self.shared.sync(n, snapshot);
        }
        Ok(())
    }

    /// Publish the state of an open that committed outside the writer
    /// (the schema's migration): it is synced here, before any write.
    pub(super) fn opened(&self, snapshot: redb::ReadTransaction) -> Result<(), StoreError> {
        let mut s = self.shared.settle()?;
        s.published = Some(Arc::new(snapshot));
        Ok(())
    }

    /// Run `then` once every commit so far is durable.
    pub(super) fn when_durable(&self, then: Then) {
        let mut s = self.shared.lock();
        if let Some(why) = &s.failed {
            let why = why.clone();
            drop(s);
            then(Err(StoreError::CommitFailed(why)));
        } else if s.durable >= s.committed {
            drop(s);
            then(Ok(()));
        } else {
            let n = s.committed;
            s.waiting.push((n, then));
        }
    }

    /// The newest durable commit.
    pub(super) fn snapshot(&self) -> Option<Arc<redb::ReadTransaction>> {
        self.shared.lock().published.clone()
    }

    /// Let go of the published snapshot, before the database closes.
    pub(super) fn release(&self) {
        self.shared.lock().published = None;
    }
}

impl Shared {
    /// Make commit `n` durable; then publish it and answer its callers.
    fn sync(&self, n: u64, snapshot: Arc<redb::ReadTransaction>) {
        let started = std::time::Instant::now();
        let synced = self.file.sync_data();
        engage_telemetry::store_fsync(started.elapsed());
        let mut s = self.lock();
        s.in_flight = false;
        let ready: Vec<(u64, Then)>;
        let answer = match synced {
            Ok(()) => {
                debug_assert!(n > s.durable, "commits become durable in order");
                s.durable = n;
                s.published = Some(snapshot);
                let (now, later) = std::mem::take(&mut s.waiting)
                    .into_iter()
                    .partition(|(w, _)| *w <= n);
                s.waiting = later;
                ready = now;
                Ok(())
            }
            Err(e) => {
                let why = format!("fsync failed: {e}");
                tracing::error!(error = %e, "the data file could not be synced; no write is accepted until a restart");
                s.failed = Some(why.clone());
                ready = std::mem::take(&mut s.waiting);
                Err(why)
            }
        };
        drop(s);
        self.changed.notify_all();
        for (_, then) in ready {
            then(answer.clone().map_err(StoreError::CommitFailed));
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        // The last commit's callers are answered before the store closes.
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::{Reader as _, Store, Table};

    const T: Table = Table::new("test");

    /// What the stand-in file does with the next `sync_data`.
    #[derive(Clone, Copy, PartialEq, Debug)]
    enum Gate {
        Pass,
        Hold,
        Fail,
    }

    /// The data file, with fsyncs that wait for the test or fail.
    #[derive(Debug)]
    struct Gated {
        file: redb::backends::FileBackend,
        gate: Arc<(Mutex<(Gate, u32)>, Condvar)>,
    }

    impl StorageBackend for Gated {
        fn len(&self) -> std::io::Result<u64> {
            self.file.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
            self.file.read(offset, out)
        }
        fn set_len(&self, len: u64) -> std::io::Result<()> {
            self.file.set_len(len)
        }
        fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
            self.file.write(offset, data)
        }
        fn sync_data(&self) -> std::io::Result<()> {
            let (lock, changed) = &*self.gate;
            let mut g = lock.lock().unwrap_or_else(PoisonError::into_inner);
            g.1 += 1; // one more sync waiting
            while g.0 == Gate::Hold {
                g = changed.wait(g).unwrap_or_else(PoisonError::into_inner);
            }
            g.1 -= 1;
            match g.0 {
                Gate::Fail => Err(std::io::Error::other("the disk is gone")),
                _ => self.file.sync_data(),
            }
        }
    }

    fn set(gate: &Arc<(Mutex<(Gate, u32)>, Condvar)>, to: Gate) {
        gate.0.lock().unwrap_or_else(PoisonError::into_inner).0 = to;
        gate.1.notify_all();
    }

    async fn until(what: &str, done: impl Fn() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting: {what}");
    }

    fn has(store: &Store, k: &str) -> bool {
        store
            .read()
            .and_then(|s| s.get_raw(T, k))
            .expect("read")
            .is_some()
    }

    /// The invariants of the module doc, driven step by step with an fsync
    /// the test holds: the next batch executes while a commit's fsync
    /// runs; nobody is answered and no reader sees a commit before its
    /// fsync returned; a failed fsync fails its commit and every later one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_is_seen_and_answered_only_once_durable() {
        let path = std::env::temp_dir().join(format!("engage-sync-{}", crate::ids::random_hex(6)));
        std::fs::create_dir_all(&path).expect("dir");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path.join("engage.redb"))
            .expect("file");
        let gate = Arc::new((Mutex::new((Gate::Pass, 0)), Condvar::new()));
        let gated = Gated {
            file: redb::backends::FileBackend::new(file).expect("backend"),
            gate: gate.clone(),
        };
        let db = super::super::Embedded::on(Box::new(gated)).expect("open");
        let store = Store::on(Arc::new(db), crate::MAX_BATCH);

        set(&gate, Gate::Hold);
        let s = store.clone();
        let a = tokio::spawn(async move { s.write(|tx| tx.put_u64(T, "a", 1)).await });
        let syncing = || gate.0.lock().unwrap_or_else(PoisonError::into_inner).1 == 1;
        until("a's fsync starts", syncing).await;
        assert!(!a.is_finished(), "a is not answered before its fsync");
        assert!(!has(&store, "a"), "nor seen");

        let ran = Arc::new(AtomicBool::new(false));
        let (s, r) = (store.clone(), ran.clone());
        let b = tokio::spawn(async move {
            s.write(move |tx| {
                r.store(true, Ordering::SeqCst);
                // b reads a: commits are ordered even before they are durable.
                let seen_a = tx.get_raw(T, "a")?.is_some();
                tx.put_u64(T, "b", 2)?;
                Ok::<_, StoreError>(seen_a)
            })
            .await
        });
        until("b executes during a's fsync", || ran.load(Ordering::SeqCst)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!a.is_finished() && !b.is_finished());
        assert!(!has(&store, "a") && !has(&store, "b"));

        set(&gate, Gate::Pass);
        a.await.expect("task").expect("a commits");
        assert!(b.await.expect("task").expect("b commits"), "b saw a");
        assert!(has(&store, "a") && has(&store, "b"));

        set(&gate, Gate::Fail);
        let c = store.write(|tx| tx.put_u64(T, "c", 3)).await;
        assert!(matches!(c, Err(StoreError::CommitFailed(_))), "{c:?}");
        assert!(
            !has(&store, "c"),
            "a commit whose fsync failed is never seen"
        );
        set(&gate, Gate::Pass);
        let d = store.write(|tx| tx.put_u64(T, "d", 4)).await;
        assert!(d.is_err(), "nothing is written after a failed fsync: {d:?}");
        assert!(has(&store, "a"), "what was durable stays readable");
        drop(store);
        let _ = std::fs::remove_dir_all(&path);
    }
}
