//! The gateway's log of outgoing SMS: a numeric log id per recipient and a
//! queue code per send, over the messaging engine's messages (which hold
//! the delivery status). Written in the same transaction as the messages.

use serde::{Deserialize, Serialize};

use crate::{self as messaging, Message, Status};
use engage_store::{Reader, StoreError, Table, Tx, key, prefix, seq_part};

/// (tenant, username, log id) → [`OutLog`].
const OUTGOING: Table = Table::new("gateway_outgoing");
/// (tenant, queue code) → log ids (JSON list).
const QUEUES: Table = Table::new("gateway_queues");

/// One recipient of one send.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutLog {
    pub id: u64,
    pub message_id: String,
    pub queue: String,
    pub src: String,
    /// The destination as the client gave it (or the group member's number).
    pub dst: String,
    pub msg: String,
    pub at_ms: i64,
}

/// The gateway's delivery status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Still in the queue: not handed to a provider yet.
    Queued,
    Pending,
    Sent,
    Failed,
    Delivered,
}

impl Delivery {
    /// playSMS's `p_status`: 0 pending, 1 sent, 2 failed, 3 delivered.
    pub fn code(self) -> u8 {
        match self {
            Delivery::Queued | Delivery::Pending => 0,
            Delivery::Sent => 1,
            Delivery::Failed => 2,
            Delivery::Delivered => 3,
        }
    }

    pub fn of(m: &Message) -> Delivery {
        match m.status {
            Status::Delivered | Status::Read => Delivery::Delivered,
            Status::Expired | Status::Undeliverable | Status::Rejected => Delivery::Failed,
            Status::Sent | Status::Unknown => Delivery::Sent,
            Status::Scheduled | Status::Queued if m.attempts.is_empty() => Delivery::Queued,
            Status::Scheduled | Status::Queued => Delivery::Pending,
        }
    }
}

/// Log the messages of one send for `user` under `queue`; their log ids in
/// order.
pub fn record(
    tx: &mut Tx,
    tenant: &str,
    user: &str,
    queue: &str,
    messages: &[(Message, String)],
    now: i64,
) -> Result<Vec<u64>, StoreError> {
    let mut ids = Vec::with_capacity(messages.len());
    for (m, dst) in messages {
        let id = tx.next_seq(tenant, "gateway_smslog")?;
        let log = OutLog {
            id,
            message_id: m.id.clone(),
            queue: queue.to_owned(),
            src: m.sender.clone().unwrap_or_default(),
            dst: dst.clone(),
            msg: m.body.clone(),
            at_ms: now,
        };
        tx.put(OUTGOING, &key(&[tenant, user, &seq_part(id)]), &log)?;
        ids.push(id);
    }
    let qk = key(&[tenant, queue]);
    let mut all: Vec<u64> = tx.get(QUEUES, &qk)?.unwrap_or_default();
    all.extend(&ids);
    tx.put(QUEUES, &qk, &all)?;
    Ok(ids)
}

/// Log entry `id` of `user`, with its message.
pub fn get(
    src: &impl Reader,
    tenant: &str,
    user: &str,
    id: u64,
) -> Result<Option<(OutLog, Option<Message>)>, StoreError> {
    let Some(log) = src.get::<OutLog>(OUTGOING, &key(&[tenant, user, &seq_part(id)]))? else {
        return Ok(None);
    };
    let m = messaging::get(src, tenant, &log.message_id)?;
    Ok(Some((log, m)))
}

/// The log entries of `user` under `queue`, oldest first.
pub fn by_queue(
    src: &impl Reader,
    tenant: &str,
    user: &str,
    queue: &str,
) -> Result<Vec<(OutLog, Option<Message>)>, StoreError> {
    let ids: Vec<u64> = src.get(QUEUES, &key(&[tenant, queue]))?.unwrap_or_default();
    let mut out = Vec::new();
    for id in ids {
        if let Some(e) = get(src, tenant, user, id)? {
            out.push(e);
        }
    }
    Ok(out)
}

/// Up to `limit` of `user`'s log entries that `keep` accepts, newest first.
pub fn newest(
    src: &impl Reader,
    tenant: &str,
    user: &str,
    limit: usize,
    keep: impl Fn(&OutLog) -> bool,
) -> Result<Vec<OutLog>, StoreError> {
    src.newest_matching(OUTGOING, &prefix(&[tenant, user]), None, limit, keep)
}

/// The newest log id of `user` (0: none).
pub fn last_id(src: &impl Reader, tenant: &str, user: &str) -> Result<u64, StoreError> {
    Ok(newest(src, tenant, user, 1, |_| true)?
        .first()
        .map(|l| l.id)
        .unwrap_or(0))
}
