//! Idempotency keys: a mutating call sent again with the same key replays
//! the first answer instead of acting twice.
//!
//! The record is written in the same transaction as the call's effects, so
//! "done" and "remembered" cannot come apart, even across a crash. Only
//! successful answers are remembered: a refused call changed nothing and may
//! be retried with the same key. A key is tied to a fingerprint of the call
//! (method, path, body); the same key with a different call is a conflict.

use serde::{Deserialize, Serialize};

use crate::{Reader, StoreError, Table, Tx, key};

/// (tenant, key) → [`Remembered`].
const IDEMPOTENCY: Table = Table::new("idempotency");

/// How long a key is remembered.
pub const RETENTION_MS: i64 = 24 * 3600 * 1000;

/// Records are deleted after the configured retention (at least the replay
/// window).
pub const SWEEP: crate::sweeper::Sweep = crate::sweeper::Sweep {
    name: "idempotency records",
    table: IDEMPOTENCY,
    dead: |_, look| {
        Ok(serde_json::from_slice::<Remembered>(look.raw)
            .map(|r| r.at_ms.saturating_add(look.retention.idempotency_ms()) < look.now_ms)
            .unwrap_or(true))
    },
    forget: None,
};

/// The first answer to a call, kept under its key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Remembered {
    pub fingerprint: String,
    pub status: u16,
    pub body: serde_json::Value,
    pub at_ms: i64,
}

/// What a key says about a call.
#[derive(Debug, PartialEq)]
pub enum Seen {
    /// Never seen (or forgotten): go ahead.
    New,
    /// Seen with this very call: answer this.
    Replay(Remembered),
    /// Seen with a different call.
    Conflict,
}

/// Whether `k` can be an idempotency key.
pub fn valid_key(k: &str) -> bool {
    !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic())
}

/// Look `k` up for the call with `fingerprint`.
pub fn seen(
    src: &impl Reader,
    tenant: &str,
    k: &str,
    fingerprint: &str,
    now_ms: i64,
) -> Result<Seen, StoreError> {
    let Some(r) = src.get::<Remembered>(IDEMPOTENCY, &key(&[tenant, k]))? else {
        return Ok(Seen::New);
    };
    Ok(if now_ms - r.at_ms > RETENTION_MS {
        Seen::New
    } else if r.fingerprint == fingerprint {
        Seen::Replay(r)
    } else {
        Seen::Conflict
    })
}

/// Remember the answer to a call (inside the call's own write job).
pub fn remember(tx: &mut Tx, tenant: &str, k: &str, answer: &Remembered) -> Result<(), StoreError> {
    tx.put(IDEMPOTENCY, &key(&[tenant, k]), answer)
}

/// A mutating call that carries an idempotency key.
#[derive(Debug, Clone)]
pub struct Call {
    pub key: String,
    /// A digest of what the call asks (method, path, body).
    pub fingerprint: String,
}

/// The answer to a guarded call.
#[derive(Debug)]
pub enum Guarded<T> {
    /// The call ran now.
    Fresh(T),
    /// The call ran before; this was its answer.
    Replay(Remembered),
    /// The key was used for a different call.
    Conflict,
}

/// Before doing any work: the answer to give at once, if the key was seen.
pub fn precheck<T>(
    src: &impl Reader,
    tenant: &str,
    call: &Call,
    now_ms: i64,
) -> Result<Option<Guarded<T>>, StoreError> {
    Ok(
        match seen(src, tenant, &call.key, &call.fingerprint, now_ms)? {
            Seen::New => None,
            Seen::Replay(r) => Some(Guarded::Replay(r)),
            Seen::Conflict => Some(Guarded::Conflict),
        },
    )
}

/// Inside a write job: run `f` unless the key was seen, and remember its
/// answer (`status` and `f`'s result as JSON) with its effects.
pub fn guarded<T, E>(
    tx: &mut Tx,
    tenant: &str,
    call: Option<&Call>,
    now_ms: i64,
    status: u16,
    f: impl FnOnce(&mut Tx) -> Result<T, E>,
) -> Result<Guarded<T>, E>
where
    T: Serialize,
    E: From<StoreError>,
{
    let Some(call) = call else {
        return f(tx).map(Guarded::Fresh);
    };
    if let Some(early) = precheck(tx, tenant, call, now_ms)? {
        return Ok(early);
    }
    let value = f(tx)?;
    let body = serde_json::to_value(&value).map_err(|source| StoreError::Corrupt {
        table: "idempotency".into(),
        source,
    })?;
    remember(
        tx,
        tenant,
        &call.key,
        &Remembered {
            fingerprint: call.fingerprint.clone(),
            status,
            body,
            at_ms: now_ms,
        },
    )?;
    Ok(Guarded::Fresh(value))
}

/// One write job that runs `job` guarded by `call` (see [`guarded`]): what
/// every mutating endpoint, native or vendor, goes through. `status` is the
/// answer's HTTP status, kept with the answer for a replay.
pub async fn write<T, E, F>(
    store: &crate::Store,
    tenant: &str,
    call: Option<Call>,
    status: u16,
    now_ms: i64,
    mut job: F,
) -> Result<Guarded<T>, E>
where
    T: Serialize + Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: FnMut(&mut Tx) -> Result<T, E> + Send + 'static,
{
    let tenant = tenant.to_owned();
    store
        .write(move |tx| guarded(tx, &tenant, call.as_ref(), now_ms, status, &mut job))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    const COUNTER: Table = Table::new("test_counter");

    fn call(key: &str, body: &str) -> Option<Call> {
        Some(Call {
            key: key.into(),
            fingerprint: crate::ids::sha256_hex(body.as_bytes()),
        })
    }

    /// One increment of the counter under `idem`: its answer is the value
    /// after it.
    async fn bump(
        store: &crate::Store,
        tenant: &str,
        idem: Option<Call>,
        now: i64,
        runs: Arc<AtomicU64>,
    ) -> Result<Guarded<u64>, StoreError> {
        let t = tenant.to_owned();
        write(store, tenant, idem, 201, now, move |tx| {
            runs.fetch_add(1, Ordering::Relaxed);
            let n = tx.get_u64(COUNTER, &t)? + 1;
            tx.put_u64(COUNTER, &t, n)?;
            Ok(n)
        })
        .await
    }

    /// A key replays its first answer (with its status) and acts once, even
    /// sent 20 times at once; the key with another call is a conflict and
    /// changes nothing; keys are per tenant; a refused call is not
    /// remembered, so its key may be retried; past the replay window the
    /// key is new again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_key_acts_once_and_replays_its_answer() {
        let path = std::env::temp_dir().join(format!("engage-idem-{}", crate::ids::random_hex(6)));
        let dir = crate::files::open_data_dir(&path).expect("dir");
        let store = crate::Store::open(&dir).expect("store");
        let runs = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (store, runs) = (store.clone(), runs.clone());
            tasks.push(tokio::spawn(async move {
                bump(&store, "t", call("k", "a"), 1_000, runs).await
            }));
        }
        let (mut fresh, mut replays) = (0, 0);
        for t in tasks {
            match t.await.expect("task").expect("write") {
                Guarded::Fresh(1) => fresh += 1,
                Guarded::Replay(r) => {
                    assert_eq!((r.status, r.body.as_u64()), (201, Some(1)));
                    replays += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!((fresh, replays), (1, 19));
        let snap = store.read().expect("read");
        assert_eq!(snap.get_u64(COUNTER, "t").expect("get"), 1, "acted once");
        drop(snap);

        let other = bump(&store, "t", call("k", "b"), 1_000, runs.clone()).await;
        assert!(matches!(other, Ok(Guarded::Conflict)));
        let elsewhere = bump(&store, "u", call("k", "b"), 1_000, runs.clone()).await;
        assert!(
            matches!(elsewhere, Ok(Guarded::Fresh(1))),
            "keys are per tenant"
        );

        let refused = write(&store, "t", call("r", "x"), 200, 1_000, |_| {
            Err::<u64, _>(StoreError::CommitFailed("refused".into()))
        })
        .await;
        assert!(refused.is_err());
        let retried = bump(&store, "t", call("r", "x"), 1_000, runs.clone()).await;
        assert!(
            matches!(retried, Ok(Guarded::Fresh(2))),
            "a refusal is not kept"
        );

        let later = 1_000 + RETENTION_MS + 1;
        let again = bump(&store, "t", call("k", "a"), later, runs).await;
        assert!(
            matches!(again, Ok(Guarded::Fresh(3))),
            "past the window: {again:?}"
        );
        drop(store);
        let _ = std::fs::remove_dir_all(path);
    }
}
