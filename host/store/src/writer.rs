//! The single writer thread and its group commit.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use super::{Backend, StoreError, Tx};

/// The most jobs one commit carries, by default. Large enough that a burst of requests
/// shares one fsync, small enough that the first caller is not kept waiting
/// behind an unbounded batch.
pub const MAX_BATCH: usize = 1024;

/// A type-erased job.
pub(super) type Boxed = Box<dyn Job>;

pub(super) trait Job: Send {
    /// Run against `tx`; true if the job wants its effects committed.
    fn run(&mut self, tx: &mut Tx<'_>) -> bool;
    /// Answer the caller once the transaction's fate is known.
    fn finish(self: Box<Self>, committed: Result<(), StoreError>);
    /// The span the job was submitted in (a request's, usually): the job
    /// runs in it, so its log lines carry the request's id.
    fn span(&self) -> &tracing::Span;
}

struct Typed<T, E, F> {
    f: F,
    span: tracing::Span,
    result: Option<Result<T, E>>,
    reply: oneshot::Sender<Result<T, E>>,
}

pub(super) fn typed<T, E, F>(f: F, reply: oneshot::Sender<Result<T, E>>) -> Boxed
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: FnMut(&mut Tx) -> Result<T, E> + Send + 'static,
{
    Box::new(Typed {
        f,
        span: tracing::Span::current(),
        result: None,
        reply,
    })
}

impl<T, E, F> Job for Typed<T, E, F>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: FnMut(&mut Tx) -> Result<T, E> + Send + 'static,
{
    fn span(&self) -> &tracing::Span {
        &self.span
    }

    fn run(&mut self, tx: &mut Tx<'_>) -> bool {
        let _in = self.span.clone().entered();
        let result = match catch_unwind(AssertUnwindSafe(|| (self.f)(tx))) {
            Ok(r) => r,
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tx.dirty = true; // cannot know what it wrote
                Err(E::from(StoreError::JobPanicked(msg)))
            }
        };
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, committed: Result<(), StoreError>) {
        let answer = match (self.result, committed) {
            (Some(Ok(_)), Err(e)) => Err(E::from(e)),
            (Some(r), _) => r,
            (None, Err(e)) => Err(E::from(e)),
            (None, Ok(())) => Err(E::from(StoreError::WriterGone)),
        };
        // The caller may have gone away (client disconnected): nothing to do.
        let _ = self.reply.send(answer);
    }
}

/// Start the writer thread. It ends once every sender is dropped, drops
/// its handle on the database, and then flips `closed` to true.
pub(super) fn spawn(
    db: Arc<dyn Backend>,
    max_batch: usize,
    closed: watch::Sender<bool>,
) -> mpsc::Sender<Boxed> {
    let max_batch = max_batch.max(1);
    let (tx, mut rx) = mpsc::channel::<Boxed>(max_batch.max(MAX_BATCH) * 4);
    let spawned = std::thread::Builder::new()
        .name("engage-writer".into())
        .spawn(move || {
            let mut batch = Vec::with_capacity(max_batch);
            while let Some(first) = rx.blocking_recv() {
                batch.push(first);
                while batch.len() < max_batch {
                    match rx.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                engage_telemetry::store_queue(rx.len());
                run_batch(&db, std::mem::take(&mut batch));
            }
            drop(db);
            closed.send_replace(true);
            tracing::debug!("storage writer stopped");
        });
    if let Err(e) = spawned {
        // Without a writer every write answers WriterGone; say why once.
        tracing::error!(error = %e, "could not start the storage writer thread");
    }
    tx
}

fn run_batch(db: &Arc<dyn Backend>, mut jobs: Vec<Boxed>) {
    let started = std::time::Instant::now();
    // One span per group commit, following from each job's request: a
    // trace shows which requests shared a commit and how long it took.
    let commit = tracing::debug_span!("commit", jobs = jobs.len());
    for job in &jobs {
        commit.follows_from(job.span());
    }
    let _commit = commit.entered();
    let mut poisoned = false;
    let committed = db.transaction(&mut |view| {
        let mut tx = Tx::new(view);
        for job in jobs.iter_mut() {
            tx.dirty = false;
            if !job.run(&mut tx) && tx.dirty {
                poisoned = true;
                return false;
            }
        }
        true
    });
    engage_telemetry::store_commit(jobs.len(), matches!(committed, Ok(true)), started.elapsed());
    match committed {
        Ok(true) => {
            tracing::debug!(
                jobs = jobs.len(),
                us = started.elapsed().as_micros() as u64,
                "group commit"
            );
            // Answered once durable; the next batch may run meanwhile.
            db.when_durable(Box::new(move |durable| match durable {
                Ok(()) => jobs.into_iter().for_each(|j| j.finish(Ok(()))),
                Err(e) => fail_all(jobs, &e),
            }));
        }
        Ok(false) => {
            debug_assert!(poisoned, "a batch is discarded only when poisoned");
            tracing::warn!(
                jobs = jobs.len(),
                "a write job failed after writing; re-running the batch one job at a time"
            );
            for job in jobs {
                run_alone(db, job);
            }
        }
        Err(StoreError::Conflict(e)) if jobs.len() > 1 => {
            // Other hosts' writes kept winning over this batch: its jobs,
            // alone, each touch less and each get their own retries.
            tracing::warn!(jobs = jobs.len(), error = %e, "a batch kept conflicting; running its jobs one at a time");
            for job in jobs {
                run_alone(db, job);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "group commit failed");
            fail_all(jobs, &e);
        }
    }
}

fn run_alone(db: &Arc<dyn Backend>, mut job: Boxed) {
    // A job that fails is discarded with its writes; its own error is its
    // answer.
    match db.transaction(&mut |view| job.run(&mut Tx::new(view))) {
        Ok(true) => db.when_durable(Box::new(move |durable| job.finish(durable))),
        Ok(false) => job.finish(Ok(())),
        Err(e) => job.finish(Err(e)),
    }
}

fn fail_all(jobs: Vec<Boxed>, e: &StoreError) {
    for job in jobs {
        job.finish(Err(match e {
            StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
            StoreError::Conflict(m) => StoreError::Conflict(m.clone()),
            e => StoreError::CommitFailed(e.to_string()),
        }));
    }
}
