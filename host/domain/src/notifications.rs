//! In-app notifications: a per-player inbox, and a live feed for connected
//! apps (server-sent events).
//!
//! A notification is written in the transaction of whatever caused it, and
//! published to the live feed only after that transaction committed, so a
//! connected app never sees something that did not happen.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use engage_store::shutdown::Shutdown;
use engage_store::{Reader, Store, StoreError, Table, Tx, key, prefix, seq_part};

/// (tenant, player, sequence) → [`Notification`].
const NOTIFICATIONS: Table = Table::new("notifications");

/// One notification.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
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
///
/// Alone on its store, a host publishes what it commits. Hosts sharing a
/// store ([`Live::relayed`]) publish only what they read back from the
/// store's per-tenant feed, for the tenants someone watches on this host,
/// every [`RELAY_EVERY`]: a notification committed through any host
/// reaches an app connected to any other, once.
#[derive(Clone)]
pub struct Live {
    tx: broadcast::Sender<Published>,
    relay: Option<Arc<Relay>>,
}

/// How often a relaying host reads the watched tenants' feeds.
pub const RELAY_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// The most entries a tenant's feed keeps: a relay further behind skips
/// to the newest (the inbox still has everything).
const FEED_KEEP: u64 = 1_000;

/// (tenant, sequence) → player: every notification in commit order, for
/// hosts relaying to their connected apps.
const FEED: Table = Table::new("notification_feed");

#[derive(Default)]
struct Relay {
    /// tenant → (watchers on this host, last feed sequence published).
    watched: Mutex<HashMap<String, (usize, u64)>>,
}

impl Default for Live {
    fn default() -> Self {
        Live::new(false)
    }
}

/// While held, the tenant's feed is relayed to this host.
pub struct Watch {
    relay: Option<(Arc<Relay>, String)>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some((relay, tenant)) = self.relay.take() {
            let mut w = relay.watched.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(e) = w.get_mut(&tenant) {
                e.0 -= 1;
                if e.0 == 0 {
                    w.remove(&tenant);
                }
            }
        }
    }
}

impl Live {
    /// A live feed; `relayed` when other hosts share the store.
    pub fn new(relayed: bool) -> Live {
        Live {
            tx: broadcast::channel(4096).0,
            relay: relayed.then(Default::default),
        }
    }

    /// Publish committed notifications (a relaying host publishes what it
    /// reads back instead).
    pub fn publish(&self, tenant: &str, list: Vec<Notification>) {
        if self.relay.is_some() {
            return;
        }
        for n in list {
            // No listener is fine: the inbox has it.
            let _ = self.tx.send(Published {
                tenant: tenant.to_owned(),
                notification: n,
            });
        }
    }

    /// A receiver of everything published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Published> {
        self.tx.subscribe()
    }

    /// Have `tenant`'s notifications relayed here from now on, while the
    /// answer is held.
    pub fn watch(&self, src: &impl Reader, tenant: &str) -> Result<Watch, StoreError> {
        let Some(relay) = &self.relay else {
            return Ok(Watch { relay: None });
        };
        let newest = latest_in_feed(src, tenant)?;
        let mut w = relay.watched.lock().unwrap_or_else(|p| p.into_inner());
        w.entry(tenant.to_owned()).or_insert((0, newest)).0 += 1;
        Ok(Watch {
            relay: Some((relay.clone(), tenant.to_owned())),
        })
    }

    /// Relay the watched tenants' feeds until shutdown (a no-op unless
    /// relayed).
    pub async fn relay_loop(self, store: Store, mut stop: Shutdown) {
        let Some(relay) = self.relay.clone() else {
            return;
        };
        while !stop.is_requested() {
            let watched: Vec<(String, u64)> = relay
                .watched
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(t, (_, seen))| (t.clone(), *seen))
                .collect();
            for (tenant, seen) in watched {
                match self.relay_once(&store, &tenant, seen) {
                    Ok(newest) => {
                        if let Some(e) = relay
                            .watched
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_mut(&tenant)
                        {
                            e.1 = e.1.max(newest);
                        }
                    }
                    Err(e) => tracing::warn!(tenant, error = %e, "relaying notifications"),
                }
            }
            stop.sleep(RELAY_EVERY).await;
        }
    }

    /// Publish `tenant`'s feed past `seen`; the newest sequence published.
    fn relay_once(&self, store: &Store, tenant: &str, seen: u64) -> Result<u64, StoreError> {
        let snap = store.read()?;
        let newest = latest_in_feed(&snap, tenant)?;
        if newest <= seen {
            return Ok(seen);
        }
        let from = seen.max(newest.saturating_sub(FEED_KEEP));
        let page = snap.scan_raw(
            FEED,
            &prefix(&[tenant]),
            Some(&key(&[tenant, &seq_part(from)])),
            FEED_KEEP as usize,
            false,
        )?;
        let mut last = seen;
        for (k, player) in page {
            let Ok(seq) = engage_store::last_part(&k).parse::<u64>() else {
                continue;
            };
            let player = String::from_utf8_lossy(&player).into_owned();
            if let Some(n) =
                snap.get::<Notification>(NOTIFICATIONS, &key(&[tenant, &player, &seq_part(seq)]))?
            {
                let _ = self.tx.send(Published {
                    tenant: tenant.to_owned(),
                    notification: n,
                });
            }
            last = seq;
        }
        Ok(last)
    }
}

/// The newest sequence in `tenant`'s feed (0: none).
fn latest_in_feed(src: &impl Reader, tenant: &str) -> Result<u64, StoreError> {
    Ok(src
        .scan_raw(FEED, &prefix(&[tenant]), None, 1, true)?
        .first()
        .and_then(|(k, _)| engage_store::last_part(k).parse().ok())
        .unwrap_or(0))
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
    tx.put_raw(FEED, &key(&[tenant, &seq_part(seq)]), player.as_bytes())?;
    if seq > FEED_KEEP {
        tx.remove(FEED, &key(&[tenant, &seq_part(seq - FEED_KEEP)]))?;
    }
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
