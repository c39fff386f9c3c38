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
