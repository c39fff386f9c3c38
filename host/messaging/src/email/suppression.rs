//! The suppression list: e-mail addresses nothing is sent to any more,
//! because mail to them bounces.
//!
//! Sending on to an address that bounces is what gets a sender's mail
//! refused everywhere (mailbox providers rate senders by their bounce
//! rate), so a bounce is remembered per address and, past a point, the
//! address is suppressed: every later e-mail to it, transactional or
//! marketing, is rejected before it is sent. The rule, as the large
//! senders apply it:
//!
//! - a bounce that says the address does not exist (an enhanced status of
//!   5.1.x: no such user, no such domain, bad syntax, no mail accepted)
//!   suppresses it at once — trying again cannot succeed;
//! - any other hard bounce (5.2.x mailbox full or disabled, 5.7.x policy,
//!   5.x.x without detail) is counted, and [`STRIKES`] of them without a
//!   delivery in between suppress it;
//! - a delivery (no bounce within the bounce window) clears the count.
//!
//! A complaint (the recipient pressed "spam") is not a bounce: it opts the
//! address out of marketing ([`crate::optouts`]) and leaves transactional
//! mail alone.

use serde::{Deserialize, Serialize};

use engage_store::{Reader, StoreError, Table, Tx, key, prefix};

/// (tenant, lower-case address) → [`Suppression`].
const SUPPRESSED: Table = Table::new("email_suppressions");
/// (tenant, lower-case address) → [`Strikes`]: hard bounces not yet enough
/// to suppress.
const STRIKES_TABLE: Table = Table::new("email_bounce_strikes");

/// Hard bounces (other than "no such address") that suppress an address.
pub const STRIKES: u32 = 3;

/// The error recorded on an e-mail to a suppressed address.
pub const SUPPRESSED_ERROR: &str = "the address is suppressed: mail to it bounced";

/// One suppressed address.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Suppression {
    pub address: String,
    /// The bounce that suppressed it, e.g. `5.1.1 user unknown`.
    pub reason: String,
    /// Hard bounces counted, the last included.
    pub bounces: u32,
    pub at_ms: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Strikes {
    count: u32,
    last_ms: i64,
}

/// A hard bounce of one address.
#[derive(Debug, Clone, PartialEq)]
pub struct HardBounce<'a> {
    /// Lower-case.
    pub address: &'a str,
    /// The enhanced status code, e.g. `5.1.1`, when the bounce gave one.
    pub status: Option<&'a str>,
    /// What the receiving server said.
    pub diagnostic: &'a str,
}

impl HardBounce<'_> {
    /// The address itself is bad: an enhanced status of 5.1.x.
    pub fn address_invalid(&self) -> bool {
        self.status.is_some_and(|s| s.starts_with("5.1."))
    }
}

/// Whether e-mail to `address` (lower-case) is suppressed.
pub fn contains(src: &impl Reader, tenant: &str, address: &str) -> Result<bool, StoreError> {
    Ok(src.get_raw(SUPPRESSED, &key(&[tenant, address]))?.is_some())
}

/// Count a hard bounce; true if it (now or before) suppresses the address.
pub fn record(tx: &mut Tx, tenant: &str, b: &HardBounce<'_>, now: i64) -> Result<bool, StoreError> {
    let k = key(&[tenant, b.address]);
    if tx.get_raw(SUPPRESSED, &k)?.is_some() {
        return Ok(true);
    }
    let mut strikes: Strikes = tx.get(STRIKES_TABLE, &k)?.unwrap_or_default();
    strikes.count = strikes.count.saturating_add(1);
    strikes.last_ms = now;
    if b.address_invalid() || strikes.count >= STRIKES {
        let reason = match b.status {
            Some(s) => format!("{s} {}", b.diagnostic),
            None => b.diagnostic.to_owned(),
        };
        let s = Suppression {
            address: b.address.to_owned(),
            reason: reason.chars().take(500).collect(),
            bounces: strikes.count,
            at_ms: now,
        };
        tx.put(SUPPRESSED, &k, &s)?;
        tx.remove(STRIKES_TABLE, &k)?;
        return Ok(true);
    }
    tx.put(STRIKES_TABLE, &k, &strikes)?;
    Ok(false)
}

/// Suppress `address` by hand (a client's own black list); true if it was
/// not suppressed before.
pub fn add(
    tx: &mut Tx,
    tenant: &str,
    address: &str,
    reason: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let k = key(&[tenant, address]);
    if tx.get_raw(SUPPRESSED, &k)?.is_some() {
        return Ok(false);
    }
    let s = Suppression {
        address: address.to_owned(),
        reason: reason.to_owned(),
        bounces: 0,
        at_ms: now,
    };
    tx.put(SUPPRESSED, &k, &s)?;
    Ok(true)
}

/// A delivery to `address`: its strikes are forgotten.
pub fn delivered(tx: &mut Tx, tenant: &str, address: &str) -> Result<(), StoreError> {
    tx.remove(STRIKES_TABLE, &key(&[tenant, address]))?;
    Ok(())
}

/// Lift the suppression of `address` (it was fixed); true if it was
/// suppressed.
pub fn remove(tx: &mut Tx, tenant: &str, address: &str) -> Result<bool, StoreError> {
    let k = key(&[tenant, address]);
    tx.remove(STRIKES_TABLE, &k)?;
    tx.remove(SUPPRESSED, &k)
}

/// One suppressed address, if it is.
pub fn get(
    src: &impl Reader,
    tenant: &str,
    address: &str,
) -> Result<Option<Suppression>, StoreError> {
    src.get(SUPPRESSED, &key(&[tenant, address]))
}

/// A page of the tenant's suppressed addresses in address order.
pub fn list(
    src: &impl Reader,
    tenant: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<Suppression>, StoreError> {
    let after = after.map(|a| key(&[tenant, a]));
    Ok(src
        .scan_page::<Suppression>(
            SUPPRESSED,
            &prefix(&[tenant]),
            after.as_deref(),
            limit,
            false,
        )?
        .into_iter()
        .map(|(_, s)| s)
        .collect())
}
