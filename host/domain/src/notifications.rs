//! In-app notifications: a per-player inbox, and a live feed for connected
//! apps (server-sent events).
//!
//! A notification is written in the transaction of whatever caused it, and
//! published to the live feed only after that transaction committed, so a
//! connected app never sees something that did not happen.

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use engage_store::{Reader, StoreError, Table, Tx, key, prefix, seq_part};

/// (tenant, player, sequence) → [`Notification`].
const NOTIFICATIONS: Table = Table::new("notifications");

/// One notification.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Notification {
    pub id: String,
    pub player: String,
    /// What it is about, e.g. `gift_request`.
    pub kind: String,
    pub data: serde_json::Value,
    pub created_at_ms: i64,
    pub read: bool,
}

/// A notification on the live feed, with its tenant.
#[derive(Debug, Clone)]
pub struct Published {
    pub tenant: String,
    pub notification: Notification,
}

/// The live feed every connected app listens to (filtered per player).
#[derive(Clone)]
pub struct Live(broadcast::Sender<Published>);

impl Default for Live {
    fn default() -> Self {
        Live(broadcast::channel(4096).0)
    }
}

impl Live {
    /// Publish committed notifications.
    pub fn publish(&self, tenant: &str, list: Vec<Notification>) {
        for n in list {
            // No listener is fine: the inbox has it.
            let _ = self.0.send(Published {
                tenant: tenant.to_owned(),
                notification: n,
            });
        }
    }

    /// A receiver of everything published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Published> {
        self.0.subscribe()
    }
}

/// Write a notification (inside the write job of its cause).
pub fn push(
    tx: &mut Tx,
    tenant: &str,
    player: &str,
    kind: &str,
    data: serde_json::Value,
    now_ms: i64,
) -> Result<Notification, StoreError> {
    let seq = tx.next_seq(tenant, "notification")?;
    let n = Notification {
        id: seq.to_string(),
        player: player.to_owned(),
        kind: kind.to_owned(),
        data,
        created_at_ms: now_ms,
        read: false,
    };
    tx.put(NOTIFICATIONS, &key(&[tenant, player, &seq_part(seq)]), &n)?;
    Ok(n)
}

/// A player's notifications, newest first, before the cursor (an id).
pub fn list(
    src: &impl Reader,
    tenant: &str,
    player: &str,
    unread_only: bool,
    before: Option<&str>,
    limit: usize,
) -> Result<Vec<Notification>, StoreError> {
    let before = before
        .and_then(|b| b.parse::<u64>().ok())
        .map(|s| key(&[tenant, player, &seq_part(s)]));
    src.newest_matching(
        NOTIFICATIONS,
        &prefix(&[tenant, player]),
        before,
        limit,
        |n: &Notification| !unread_only || !n.read,
    )
}

/// Mark a notification read; false if there is no such notification.
pub fn mark_read(tx: &mut Tx, tenant: &str, player: &str, id: &str) -> Result<bool, StoreError> {
    let Ok(seq) = id.parse::<u64>() else {
        return Ok(false);
    };
    let k = key(&[tenant, player, &seq_part(seq)]);
    let Some(mut n) = tx.get::<Notification>(NOTIFICATIONS, &k)? else {
        return Ok(false);
    };
    if !n.read {
        n.read = true;
        tx.put(NOTIFICATIONS, &k, &n)?;
    }
    Ok(true)
}
