//! Gifts between friends: requests to every playing friend, replies, and
//! the tenant's `gift` hooks around both.
//!
//! # How the hooks' transactions work
//!
//! A pre hook runs on a snapshot, with the host's key-value store and
//! read-only views. Its verdict (allow, amend, reject) and its key-value
//! writes are then committed in one write job together with the request (or
//! reply) it guarded, its recipients' inbox entries and notifications, and a
//! post-hook entry in a durable outbox — after checking that everything the
//! hook read is unchanged. If anything changed (another request of the same
//! player committed first), the hook runs again on fresh data. A quota of N
//! therefore holds exactly however many requests race. A rejection saves
//! nothing and discards the hook's writes.
//!
//! Post hooks run from the outbox after the commit, in outbox order (so in
//! order per request), at least once: an entry is removed only after its
//! hook ran, so a crash in between runs it again at the next start. Their
//! failures are logged and counted in the plugin's statistics, never shown
//! to the client.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::notifications::{self, Live, Notification};
use crate::{players, social};
use engage_ledger::views::time_part;
use engage_runtime::io::{GiftReply, GiftRequest, Verdict};
use engage_runtime::judged::{Judgement, judged_commit};
use engage_runtime::{Input, Output, Plugins, PluginsError, params};
use engage_store::idempotency::{self, Call, Guarded};
use engage_store::ids::{random_hex, valid_id};
use engage_store::queue::{Claimed, Queue};
use engage_store::shutdown::Shutdown;
use engage_store::{Reader, Store, StoreError, Table, Tx, key, prefix};

/// (tenant, request id) → [`GiftRecord`].
const REQUESTS: Table = Table::new("gift_requests");
/// (tenant, recipient, expiry time, request id) → nothing: received requests
/// in expiry order.
const RECEIVED: Table = Table::new("gift_received");
/// (sequence) → [`PostHook`]: post hooks still to run.
/// Post hooks to run, in the order their requests and replies committed.
const POST_HOOKS: Queue = Queue::new("gift_post_hook_queue");
/// How long a claimed post hook is the claimer's: past it (the claimer
/// died) it is run again. Far beyond any plugin call's deadline.
const POST_HOOK_LEASE_MS: i64 = 60_000;

/// The default expiry of a request: 24 hours.
pub const DEFAULT_EXPIRY_S: i64 = 24 * 3600;
/// The longest expiry accepted: 30 days.
pub const MAX_EXPIRY_S: i64 = 30 * 24 * 3600;
/// The most custom attributes on a request or reply.
pub const MAX_ATTRIBUTES: usize = 64;

/// What can go wrong with gifts.
#[derive(Debug, thiserror::Error)]
pub enum GiftError {
    #[error("no profile for this user")]
    NoProfile,
    #[error("{0}")]
    Invalid(String),
    #[error("Request ID not passed")]
    RequestIdMissing,
    #[error("Request with id='{0}' not found")]
    NotFound(String),
    #[error("Request with id='{0}' has expired")]
    Expired(String),
    #[error("Request with id='{0}' was already answered by this user")]
    AlreadyReplied(String),
    /// The pre hook refused, with its own code.
    #[error("{message}")]
    Rejected {
        code: i32,
        code_str: String,
        message: String,
    },
    #[error("the data kept changing under this request; try again")]
    Contention,
    #[error(transparent)]
    Plugin(#[from] PluginsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("conflict")]
    Retry,
}

/// A reply as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ReplyRecord {
    pub accept: bool,
    pub attributes: BTreeMap<String, String>,
    pub at_ms: i64,
}

/// A gift request as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[schema(as = GiftRequest)]
pub struct GiftRecord {
    pub id: String,
    pub sender: String,
    pub recipients: Vec<String>,
    /// The `custom:*` attributes without the prefix, as the hook left them.
    pub attributes: BTreeMap<String, String>,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    /// By replying player.
    pub replies: BTreeMap<String, ReplyRecord>,
}

/// A post hook waiting in the outbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PostHook {
    tenant: String,
    input: Input,
}

/// Custom attributes in an API document, exactly as [`check_attributes`]
/// reads them.
pub fn attributes_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .max_properties(Some(MAX_ATTRIBUTES))
        .property_names(Some(engage_store::ids::ClientId::object()))
        .additional_properties(Some(AdditionalProperties::RefOr(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(MAX_ATTRIBUTE_LEN))
                .into(),
        )))
        .build()
}

/// The longest custom attribute value, in characters.
const MAX_ATTRIBUTE_LEN: usize = 4096;

fn check_attributes(attrs: &BTreeMap<String, String>) -> Result<(), GiftError> {
    if attrs.len() > MAX_ATTRIBUTES
        || attrs
            .iter()
            .any(|(k, v)| !valid_id(k) || v.chars().count() > MAX_ATTRIBUTE_LEN)
    {
        return Err(GiftError::Invalid(format!(
            "at most {MAX_ATTRIBUTES} custom attributes, names 1 to 128 characters, values at most 4096"
        )));
    }
    Ok(())
}

/// The gift service: requests, replies and the post-hook outbox.
pub struct Gifts {
    store: Store,
    plugins: Arc<Plugins>,
    live: Live,
    wake: Notify,
}

/// The verdict of a pre hook, with what to commit.
struct Judged {
    attributes: BTreeMap<String, String>,
    effects: engage_runtime::kv::Effects,
}

impl Gifts {
    pub fn new(store: Store, plugins: Arc<Plugins>, live: Live) -> Arc<Gifts> {
        Arc::new(Gifts {
            store,
            plugins,
            live,
            wake: Notify::new(),
        })
    }

    fn judge(
        &self,
        tenant: &str,
        input: &Input,
        snapshot: Arc<engage_store::Snapshot>,
        fallback: &BTreeMap<String, String>,
        now_ms: i64,
        request_id: &str,
    ) -> Result<Judged, GiftError> {
        let called = self
            .plugins
            .call(tenant, input, Some(snapshot), now_ms, request_id)?;
        let Output::Verdict(verdict) = called.output else {
            return Err(GiftError::Invalid(
                "the gift hook did not answer a verdict".into(),
            ));
        };
        let attributes = match verdict {
            Verdict::Allow => fallback.clone(),
            Verdict::Amend(p) => p.into_iter().map(|p| (p.name, p.value)).collect(),
            Verdict::Reject(r) => {
                return Err(GiftError::Rejected {
                    code: r.code,
                    code_str: r.code_str,
                    message: r.message,
                });
            }
        };
        Ok(Judged {
            attributes,
            effects: called.effects,
        })
    }

    /// Request a gift from every playing friend of `sender`.
    /// `idem` makes a retried request the first one again.
    #[allow(clippy::too_many_arguments)]
    pub async fn request(
        &self,
        tenant: &str,
        sender: &str,
        expiry_s: Option<i64>,
        attributes: BTreeMap<String, String>,
        idem: Option<Call>,
        now_ms: i64,
        request_id: &str,
    ) -> Result<Guarded<GiftRecord>, GiftError> {
        let expiry_s = expiry_s.unwrap_or(DEFAULT_EXPIRY_S);
        if !(1..=MAX_EXPIRY_S).contains(&expiry_s) {
            return Err(GiftError::Invalid(format!(
                "expiry is 1 to {MAX_EXPIRY_S} seconds"
            )));
        }
        check_attributes(&attributes)?;
        let snap = self.store.read()?;
        if !players::exists(&snap, tenant, sender)? {
            return Err(GiftError::NoProfile);
        }
        let recipients = social::playing_friends(&snap, tenant, sender)?;
        drop(snap);
        let id = random_hex(16);
        let expires_at_ms = now_ms + expiry_s * 1000;
        let mut request = GiftRequest {
            id: id.clone(),
            sender: sender.to_owned(),
            recipients: recipients.clone(),
            expires_at_ms,
            attributes: params(&attributes),
        };
        let judge = |snapshot: Arc<engage_store::Snapshot>, _attempt: u32| {
            let judged = self.judge(
                tenant,
                &Input::PreRequest {
                    request: request.clone(),
                },
                snapshot,
                &attributes,
                now_ms,
                request_id,
            )?;
            check_attributes(&judged.attributes)?;
            let record = GiftRecord {
                id: id.clone(),
                sender: sender.to_owned(),
                recipients: recipients.clone(),
                attributes: judged.attributes.clone(),
                created_at_ms: now_ms,
                expires_at_ms,
                replies: BTreeMap::new(),
            };
            request.attributes = params(&record.attributes);
            let post = PostHook {
                tenant: tenant.to_owned(),
                input: Input::PostRequest {
                    request: request.clone(),
                },
            };
            Ok(Judgement::Commit {
                effects: judged.effects,
                payload: (record, post),
            })
        };
        let t = tenant.to_owned();
        let job = move |tx: &mut Tx, (record, post): &(GiftRecord, PostHook), _attempt: u32| {
            if !players::exists(tx, &t, &record.sender)? {
                return Err(GiftError::NoProfile);
            }
            let notes = save_request(tx, &t, record)?;
            POST_HOOKS.push(tx, now_ms, post)?;
            Ok::<_, GiftError>((record.clone(), notes))
        };
        let g = judged_commit(&self.store, tenant, idem, (now_ms, 201), judge, job)
            .await?
            .ok_or(GiftError::Contention)?;
        Ok(match g {
            Guarded::Fresh((record, notes)) => {
                self.live.publish(tenant, notes);
                self.wake.notify_one();
                Guarded::Fresh(record)
            }
            // What was kept is (record, notifications): answer the record.
            Guarded::Replay(mut r) => {
                r.body = r
                    .body
                    .get_mut(0)
                    .map(serde_json::Value::take)
                    .unwrap_or_default();
                Guarded::Replay(r)
            }
            Guarded::Conflict => Guarded::Conflict,
        })
    }

    /// Reply to a gift request as `player` (a recipient).
    #[allow(clippy::too_many_arguments)]
    pub async fn reply(
        &self,
        tenant: &str,
        player: &str,
        request: Option<&str>,
        accept: bool,
        attributes: BTreeMap<String, String>,
        idem: Option<Call>,
        now_ms: i64,
        request_id: &str,
    ) -> Result<Guarded<()>, GiftError> {
        let Some(gift_id) = request.filter(|r| !r.is_empty()) else {
            return Err(GiftError::RequestIdMissing);
        };
        if let Some(call) = &idem
            && let Some(early) = idempotency::precheck(&self.store.read()?, tenant, call, now_ms)?
        {
            return Ok(early);
        }
        check_attributes(&attributes)?;
        let snap = self.store.read()?;
        if !players::exists(&snap, tenant, player)? {
            return Err(GiftError::NoProfile);
        }
        let record = replyable(&snap, tenant, gift_id, player, now_ms)?;
        drop(snap);
        let mut reply = GiftReply {
            request_id: gift_id.to_owned(),
            player: player.to_owned(),
            requester: record.sender.clone(),
            accept,
            attributes: params(&attributes),
        };
        let judge = |snapshot: Arc<engage_store::Snapshot>, _attempt: u32| {
            let judged = self.judge(
                tenant,
                &Input::PreReply {
                    reply: reply.clone(),
                },
                snapshot,
                &attributes,
                now_ms,
                request_id,
            )?;
            check_attributes(&judged.attributes)?;
            reply.attributes = params(&judged.attributes);
            let post = PostHook {
                tenant: tenant.to_owned(),
                input: Input::PostReply {
                    reply: reply.clone(),
                },
            };
            Ok(Judgement::Commit {
                effects: judged.effects,
                payload: (judged.attributes, post),
            })
        };
        let (t, p, g) = (tenant.to_owned(), player.to_owned(), gift_id.to_owned());
        let job = move |tx: &mut Tx,
                        (attrs, post): &(BTreeMap<String, String>, PostHook),
                        _attempt: u32| {
            // Checked again in the transaction: two replies may race.
            let mut record = replyable(tx, &t, &g, &p, now_ms)?;
            record.replies.insert(
                p.clone(),
                ReplyRecord {
                    accept,
                    attributes: attrs.clone(),
                    at_ms: now_ms,
                },
            );
            tx.put(REQUESTS, &key(&[&t, &g]), &record)?;
            let note = notifications::push(
                tx,
                &t,
                &record.sender,
                "gift_reply",
                serde_json::json!({ "request_id": g, "from": p, "accept": accept, "extra": attrs }),
                now_ms,
            )?;
            POST_HOOKS.push(tx, now_ms, post)?;
            Ok::<_, GiftError>(vec![note])
        };
        let done = judged_commit(&self.store, tenant, idem, (now_ms, 200), judge, job)
            .await?
            .ok_or(GiftError::Contention)?;
        Ok(match done {
            Guarded::Fresh(notes) => {
                self.live.publish(tenant, notes);
                self.wake.notify_one();
                Guarded::Fresh(())
            }
            Guarded::Replay(r) => Guarded::Replay(r),
            Guarded::Conflict => Guarded::Conflict,
        })
    }

    /// Run queued post hooks until the process ends. `paused` leaves them
    /// queued (an operator's switch while a broken hook is being fixed).
    /// Run queued post hooks until shutdown; a hook in progress finishes
    /// first, the rest stay queued for the next start.
    pub async fn post_hook_loop(self: Arc<Self>, mut shutdown: Shutdown) {
        // Hooks the previous process claimed and did not finish: run again.
        match POST_HOOKS
            .release_claims(&self.store, engage_store::ids::now_ms())
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(hooks = n, "gift post hooks given back after a restart"),
            Err(e) => tracing::error!(error = %e, "gift post hooks: giving back claims"),
        }
        while !shutdown.is_requested() {
            match self.run_post_hooks(&shutdown).await {
                Ok(0) => {
                    tokio::select! {
                        _ = shutdown.requested() => {}
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "post-hook outbox");
                    shutdown.sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Run the queued post hooks in order; how many ran. What is claimed
    /// and not run when shutdown comes is given back for the next start.
    async fn run_post_hooks(&self, shutdown: &Shutdown) -> Result<usize, StoreError> {
        let now = engage_store::ids::now_ms();
        let batch: Vec<Claimed<PostHook>> = POST_HOOKS
            .claim(&self.store, now, POST_HOOK_LEASE_MS, 64)
            .await?;
        let mut n = 0;
        let mut batch = batch.into_iter();
        for c in batch.by_ref() {
            if shutdown.is_requested() {
                let k = c.key;
                self.store
                    .write(move |tx| POST_HOOKS.release(tx, &k, now).map(|_| ()))
                    .await?;
                break;
            }
            n += 1;
            let hook = &c.item;
            if c.attempts > 1 {
                tracing::info!(tenant = %hook.tenant, attempts = c.attempts, "a gift post hook runs again (its earlier run did not finish)");
            }
            if let Err(e) = self
                .plugins
                .call_and_commit(
                    &hook.tenant,
                    &hook.input,
                    engage_store::ids::now_ms(),
                    "post-hook",
                    false,
                )
                .await
            {
                // Counted in the plugin's statistics by the call itself.
                tracing::warn!(tenant = %hook.tenant, error = %e, "gift post hook failed");
            }
            let k = c.key;
            self.store
                .write(move |tx| POST_HOOKS.done(tx, &k).map(|_| ()))
                .await?;
        }
        for c in batch {
            let k = c.key;
            self.store
                .write(move |tx| POST_HOOKS.release(tx, &k, now).map(|_| ()))
                .await?;
        }
        Ok(n)
    }
}

fn save_request(tx: &mut Tx, tenant: &str, r: &GiftRecord) -> Result<Vec<Notification>, GiftError> {
    tx.put(REQUESTS, &key(&[tenant, &r.id]), r)?;
    let mut notes = Vec::with_capacity(r.recipients.len());
    for to in &r.recipients {
        tx.put_raw(
            RECEIVED,
            &key(&[tenant, to, &time_part(r.expires_at_ms), &r.id]),
            b"",
        )?;
        notes.push(notifications::push(
            tx,
            tenant,
            to,
            "gift_request",
            serde_json::json!({ "request_id": r.id, "from": r.sender, "expires_at_ms": r.expires_at_ms, "extra": r.attributes }),
            r.created_at_ms,
        )?);
    }
    Ok(notes)
}

/// The request `id` if `player` may reply to it now.
fn replyable(
    src: &impl Reader,
    tenant: &str,
    id: &str,
    player: &str,
    now_ms: i64,
) -> Result<GiftRecord, GiftError> {
    let record: GiftRecord = src
        .get(REQUESTS, &key(&[tenant, id]))?
        .filter(|r: &GiftRecord| r.recipients.iter().any(|p| p == player))
        .ok_or_else(|| GiftError::NotFound(id.to_owned()))?;
    if now_ms >= record.expires_at_ms {
        return Err(GiftError::Expired(id.to_owned()));
    }
    if record.replies.contains_key(player) {
        return Err(GiftError::AlreadyReplied(id.to_owned()));
    }
    Ok(record)
}

/// A gift request by id.
pub fn get(src: &impl Reader, tenant: &str, id: &str) -> Result<Option<GiftRecord>, StoreError> {
    src.get(REQUESTS, &key(&[tenant, id]))
}

/// The requests `player` received, by expiry (`desc`: latest first),
/// expired ones included; `start` entries skipped.
pub fn received(
    src: &impl Reader,
    tenant: &str,
    player: &str,
    start: usize,
    limit: usize,
    desc: bool,
) -> Result<Vec<GiftRecord>, StoreError> {
    let p = prefix(&[tenant, player]);
    let keys = src.scan_raw(RECEIVED, &p, None, start.saturating_add(limit), desc)?;
    let mut out = Vec::new();
    for (k, _) in keys.into_iter().skip(start) {
        let id = engage_store::last_part(&k);
        if let Some(r) = get(src, tenant, id)? {
            out.push(r);
        }
    }
    Ok(out)
}

/// How many requests `player` received.
pub fn received_count(src: &impl Reader, tenant: &str, player: &str) -> Result<u64, StoreError> {
    let p = prefix(&[tenant, player]);
    src.count_from(RECEIVED, &p, &p)
}
