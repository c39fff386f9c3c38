//! The judged commit: how every plugin-guarded write is made.
//!
//! A plugin decides on a snapshot (its key-value reads and balance reads
//! are recorded in its [`Effects`]); the decision is committed by a write
//! that first checks every one of those reads against the transaction. If
//! one changed (a concurrent write got there first), nothing is written and
//! the plugin decides again on a fresh snapshot. So a daily quota read as
//! "4 of 5 used" cannot let two concurrent requests both through: the
//! second one's commit sees 5 and is judged again.
//!
//! Actions, gift requests and replies, and plain plugin calls (post hooks)
//! all go through [`judged_commit`]; the request's idempotency key guards
//! the commit, in the same transaction.

use std::sync::Arc;

use serde::Serialize;

use super::PluginsError;
use super::kv::Effects;
use engage_store::idempotency::{self, Call, Guarded};
use engage_store::{Snapshot, Store, StoreError, Tx};

/// How many times a judgement is made again when its reads keep changing.
pub const MAX_ATTEMPTS: u32 = 64;

/// What a judgement decided.
pub enum Judgement<P, T> {
    /// Nothing to commit; the answer as it is (a dry run, say).
    Answer(T),
    /// Commit `payload` with the plugin's `effects`.
    Commit { effects: Effects, payload: P },
}

/// Judge on a fresh snapshot with `judge` (given the attempt number, from
/// 1), then commit with `job` in a write that first re-checks the
/// judgement's reads; judge again when one changed. `job` runs inside the
/// call `idem` guards (a replayed key answers the first result, and
/// nothing is judged). `Ok(None)`: the reads kept changing for
/// [`MAX_ATTEMPTS`] judgements (contention).
pub async fn judged_commit<P, T, E, J, W>(
    store: &Store,
    tenant: &str,
    idem: Option<Call>,
    (now_ms, status): (i64, u16),
    mut judge: J,
    job: W,
) -> Result<Option<Guarded<T>>, E>
where
    J: FnMut(Arc<Snapshot>, u32) -> Result<Judgement<P, T>, E>,
    W: Fn(&mut Tx, &P, u32) -> Result<T, E> + Clone + Send + Sync + 'static,
    P: Send + 'static,
    T: Serialize + Send + 'static,
    E: From<StoreError> + From<PluginsError> + Send + 'static,
{
    if let Some(call) = &idem
        && let Some(early) = idempotency::precheck(&store.read()?, tenant, call, now_ms)?
    {
        return Ok(Some(early));
    }
    for attempt in 1..=MAX_ATTEMPTS {
        let snapshot = Arc::new(store.read()?);
        let (effects, payload) = match judge(snapshot, attempt)? {
            Judgement::Answer(t) => return Ok(Some(Guarded::Fresh(t))),
            Judgement::Commit { effects, payload } => (effects, payload),
        };
        let (t, idem, job) = (tenant.to_owned(), idem.clone(), job.clone());
        let committed = store
            .write(move |tx| {
                // Every read first, before any write: a stale judgement
                // writes nothing and is made again.
                if effects.validate(tx)?.is_err() {
                    return Ok(None);
                }
                let g = idempotency::guarded(tx, &t, idem.as_ref(), now_ms, status, |tx| {
                    let out = job(tx, &payload, attempt)?;
                    effects.apply(tx)?.map_err(PluginsError::from)?;
                    Ok::<_, E>(out)
                })?;
                Ok::<_, E>(Some(g))
            })
            .await?;
        if let Some(g) = committed {
            return Ok(Some(g));
        }
    }
    Ok(None)
}
