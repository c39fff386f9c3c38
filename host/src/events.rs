//! Loyalty events: what a player did that other parts of Engage react to
//! (campaigns today). An event is written in the transaction that made it
//! happen and handed on through a durable queue, so the code that records
//! an action or a redemption does not call the code that reacts to it, and
//! a reaction is neither lost nor doubled when a process dies between the
//! two.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ledger;
use crate::store::queue::Queue;
use crate::store::{StoreError, Tx};

/// Events waiting for their reactions.
pub const EVENTS: Queue = Queue::new("loyalty_events");

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

/// Record an event inside the transaction that made it happen.
pub fn record(
    tx: &mut Tx,
    tenant: &str,
    player: &str,
    name: &str,
    params: &BTreeMap<String, String>,
    id: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    let event = LoyaltyEvent {
        tenant: tenant.to_owned(),
        player: player.to_owned(),
        name: name.to_owned(),
        params: params.clone(),
        id: id.to_owned(),
        balances: ledger::balances(tx, tenant, player)?.into_iter().collect(),
        at_ms: now_ms,
    };
    EVENTS.push(tx, now_ms, &event)
}
