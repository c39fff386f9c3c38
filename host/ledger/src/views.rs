//! Read-only views plugins may consult: a player's balance and how often a
//! player did an action since a time.
//!
//! The ledger writes balances; actions record into the action log through
//! [`record_action`]. Everyone else only reads, through any [`Reader`]: the
//! snapshot a plugin call runs on, or the transaction that validates the
//! call.

use engage_store::{Reader, StoreError, Table, Tx, key, prefix, seq_part};

/// Balance per (tenant, player, currency): an `i64`, little-endian.
pub(crate) const BALANCES: Table = Table::new("ledger_balances");

/// One key per action done: (tenant, player, action, time, sequence).
const ACTION_LOG: Table = Table::new("action_log");

/// The key of a balance.
pub fn balance_key(tenant: &str, player: &str, currency: &str) -> String {
    key(&[tenant, player, currency])
}

fn decode_balance(bytes: Option<Vec<u8>>) -> i64 {
    bytes
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map(i64::from_le_bytes)
        .unwrap_or(0)
}

/// The zero-padded time component of an action-log key: keys sort by time.
pub fn time_part(time_ms: i64) -> String {
    format!("{:020}", time_ms.max(0))
}

/// The time in the rest of an action-log key after its (tenant, player,
/// action) prefix: the inverse of [`time_part`].
pub fn log_time(rest: &str) -> i64 {
    rest.get(..20).and_then(|t| t.parse().ok()).unwrap_or(0)
}

/// A player's balance in a currency; 0 when there is none.
pub fn balance(
    src: &impl Reader,
    tenant: &str,
    player: &str,
    currency: &str,
) -> Result<i64, StoreError> {
    Ok(decode_balance(src.get_raw(
        BALANCES,
        &balance_key(tenant, player, currency),
    )?))
}

/// How many times `player` did `action` at or after `since_ms`.
pub fn action_count(
    src: &impl Reader,
    tenant: &str,
    player: &str,
    action: &str,
    since_ms: i64,
) -> Result<u64, StoreError> {
    let p = prefix(&[tenant, player, action]);
    let from = format!("{p}{}", time_part(since_ms));
    src.count_from(ACTION_LOG, &p, &from)
}

/// Records that `player` did `action` at `time_ms` (the action's sequence
/// number `seq` keeps two actions in the same millisecond apart).
pub fn record_action(
    tx: &mut Tx,
    tenant: &str,
    player: &str,
    action: &str,
    time_ms: i64,
    seq: u64,
) -> Result<(), StoreError> {
    tx.put_raw(
        ACTION_LOG,
        &key(&[tenant, player, action, &time_part(time_ms), &seq_part(seq)]),
        &[],
    )
}

/// When `player` last did `action`; `None` if never.
pub fn last_action_time(
    src: &impl Reader,
    tenant: &str,
    player: &str,
    action: &str,
) -> Result<Option<i64>, StoreError> {
    let p = prefix(&[tenant, player, action]);
    let newest = src.scan_raw(ACTION_LOG, &p, None, 1, true)?;
    Ok(newest
        .into_iter()
        .next()
        .map(|(k, _)| log_time(&k[p.len()..])))
}
