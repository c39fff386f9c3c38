//! The opt-out list: numbers and e-mail addresses that asked (by replying
//! STOP, following an e-mail's unsubscribe link, or through the API) to
//! receive no more marketing messages from a tenant.
//!
//! The messaging engine checks it twice for every marketing message: when
//! the message is accepted (an opted-out recipient's message is recorded
//! as rejected and never queued) and again just before each send, so a
//! scheduled campaign cannot reach someone who said STOP in the meantime.
//! Transactional messages are not affected.

use serde::{Deserialize, Serialize};

use engage_store::{Reader, StoreError, Table, Tx, key, prefix};

/// (tenant, E.164 number or lower-case e-mail address) → [`OptOut`].
const OPT_OUTS: Table = Table::new("message_opt_outs");

/// The error recorded on a marketing message to an opted-out number.
pub const OPTED_OUT: &str = "the recipient opted out of marketing messages";

/// One opted-out number.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct OptOut {
    pub number: String,
    /// How it happened, e.g. `sms:STOP` or `api`.
    pub source: String,
    pub at_ms: i64,
}

/// Whether `number` (E.164) opted out of the tenant's marketing messages.
pub fn contains(src: &impl Reader, tenant: &str, number: &str) -> Result<bool, StoreError> {
    Ok(src.get_raw(OPT_OUTS, &key(&[tenant, number]))?.is_some())
}

/// Opt `number` out; keeps the first record if it already was. True if it
/// is new.
pub fn add(
    tx: &mut Tx,
    tenant: &str,
    number: &str,
    source: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let k = key(&[tenant, number]);
    if tx.get_raw(OPT_OUTS, &k)?.is_some() {
        return Ok(false);
    }
    let record = OptOut {
        number: number.to_owned(),
        source: source.to_owned(),
        at_ms: now_ms,
    };
    tx.put(OPT_OUTS, &k, &record)?;
    Ok(true)
}

/// Opt `number` back in; true if it was opted out.
pub fn remove(tx: &mut Tx, tenant: &str, number: &str) -> Result<bool, StoreError> {
    tx.remove(OPT_OUTS, &key(&[tenant, number]))
}

/// A page of the tenant's opted-out numbers in number order, after `after`.
pub fn list(
    src: &impl Reader,
    tenant: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<OptOut>, StoreError> {
    let after = after.map(|a| key(&[tenant, a]));
    Ok(src
        .scan_page::<OptOut>(OPT_OUTS, &prefix(&[tenant]), after.as_deref(), limit, false)?
        .into_iter()
        .map(|(_, o)| o)
        .collect())
}
