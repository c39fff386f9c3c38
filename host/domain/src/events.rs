//! Loyalty events: what a player did that other parts of Engage react to
//! (campaigns today). An event is written in the transaction that made it
//! happen and handed on through the durable queue, so the code that records
//! an action or a redemption does not call the code that reacts to it, and
//! a reaction is neither lost nor doubled when a process dies between the
//! two.
//!
//! Only events someone listens to are written: a listener registers the
//! (tenant, event name) it wants in the same write that makes it want it
//! (a campaign's trigger), so a tenant without campaigns writes nothing
//! more per action.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use engage_store::queue::Queue;
use engage_store::{Reader, StoreError, Table, Tx, key, last_part, prefix};

/// Events waiting for their reactions.
pub const EVENTS: Queue = Queue::new("loyalty_events");

/// (tenant, event name, listener) → nothing. Its stored name is the one its
/// first listener, campaigns, gave it.
const LISTENERS: Table = Table::new("campaign_triggers");

/// The most listeners one event name has (a tenant's campaigns are capped
/// below it).
pub const MAX_LISTENERS: usize = 1000;

/// Something a player did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoyaltyEvent {
    pub tenant: String,
    pub player: String,
    /// The action's name, or `redeemed`.
    pub name: String,
    pub params: BTreeMap<String, String>,
    /// The event's own id (an action id, a redemption's ref id).
    pub id: String,
    /// The player's balances right after the event: what balance
    /// thresholds compare, as they stood then (not when the reaction runs).
    pub balances: BTreeMap<String, i64>,
    pub at_ms: i64,
}

/// `listener` wants to hear of `name` events of `tenant`.
pub fn listen(tx: &mut Tx, tenant: &str, name: &str, listener: &str) -> Result<(), StoreError> {
    tx.put_raw(LISTENERS, &key(&[tenant, name, listener]), b"")
}

/// `listener` no longer does.
pub fn unlisten(tx: &mut Tx, tenant: &str, name: &str, listener: &str) -> Result<(), StoreError> {
    tx.remove(LISTENERS, &key(&[tenant, name, listener]))
        .map(|_| ())
}

/// Who listens to `name` events of `tenant`.
pub fn listeners(src: &impl Reader, tenant: &str, name: &str) -> Result<Vec<String>, StoreError> {
    Ok(src
        .scan_raw(
            LISTENERS,
            &prefix(&[tenant, name]),
            None,
            MAX_LISTENERS,
            false,
        )?
        .into_iter()
        .map(|(k, _)| last_part(&k).to_owned())
        .collect())
}

/// Record an event inside the transaction that made it happen, when
/// someone listens to it.
pub fn record(
    tx: &mut Tx,
    tenant: &str,
    player: &str,
    name: &str,
    params: &BTreeMap<String, String>,
    id: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    if tx
        .scan_raw(LISTENERS, &prefix(&[tenant, name]), None, 1, false)?
        .is_empty()
    {
        return Ok(());
    }
    let event = LoyaltyEvent {
        tenant: tenant.to_owned(),
        player: player.to_owned(),
        name: name.to_owned(),
        params: params.clone(),
        id: id.to_owned(),
        balances: engage_ledger::balances(tx, tenant, player)?
            .into_iter()
            .collect(),
        at_ms: now_ms,
    };
    EVENTS.push(tx, now_ms, &event)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records one `buy` of `t`; how many events wait then.
    async fn record_one(store: &engage_store::Store) -> Result<usize, StoreError> {
        store
            .write(|tx| {
                record(tx, "t", "p", "buy", &BTreeMap::new(), "a1", 1_000)?;
                EVENTS.len(tx, 10)
            })
            .await
    }

    /// An event nobody listens to is not written; one somebody listens to
    /// is, with the balances as they stood; unlistening stops them again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_events_someone_listens_to_are_written() {
        let path = std::env::temp_dir().join(format!(
            "engage-events-{}",
            engage_store::ids::random_hex(6)
        ));
        let dir = engage_store::files::open_data_dir(&path).expect("dir");
        let store = engage_store::Store::open(&dir).expect("store");
        assert_eq!(record_one(&store).await.expect("record"), 0);
        store
            .write(|tx| listen(tx, "t", "buy", "c1"))
            .await
            .expect("listen");
        assert_eq!(record_one(&store).await.expect("record"), 1);
        let snap = store.read().expect("read");
        assert_eq!(listeners(&snap, "t", "buy").expect("listeners"), ["c1"]);
        assert!(
            listeners(&snap, "other", "buy")
                .expect("listeners")
                .is_empty()
        );
        store
            .write(|tx| unlisten(tx, "t", "buy", "c1"))
            .await
            .expect("unlisten");
        assert_eq!(
            record_one(&store).await.expect("record"),
            1,
            "no second event"
        );
        drop((snap, store));
        let _ = std::fs::remove_dir_all(path);
    }
}
