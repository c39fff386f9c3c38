//! Prices and credit.
//!
//! A tenant may set a price list (per channel and destination prefix, the
//! longest prefix wins). Without one, messages are free and no credit is
//! needed. With one, every message is paid from a sending account's credit
//! in the ledger: the most expensive planned attempt is reserved when the
//! message is accepted (not enough credit: rejected, nothing queued), and
//! on its final status the attempts that went out are charged and the rest
//! of the reservation is released. Amounts are whole micro-units of the
//! price list's currency, so no rounding ever creates or loses credit.

use serde::{Deserialize, Serialize};

use engage_ledger::views;
use engage_ledger::{self as ledger, LedgerError, Posting};
use engage_store::{Reader, StoreError, Table, Tx, key};

/// tenant → [`PriceList`].
const PRICES: Table = Table::new("message_prices");

/// The ledger currency of available credit.
pub const CREDIT: &str = "credit";
/// The ledger currency of credit held for messages not yet final.
pub const RESERVED: &str = "credit_reserved";
/// The sending account used when a request names none.
pub const DEFAULT_ACCOUNT: &str = "default";
/// Micro-units per currency unit.
pub const MICROS: i64 = 1_000_000;

/// A tenant's prices.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceList {
    /// ISO 4217 code shown with prices, e.g. `EUR`.
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: String,
    pub prices: Vec<Price>,
}

/// The price of one message segment on `channel` to numbers starting with
/// `prefix` (empty: any number).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Price {
    #[schema(schema_with = crate::channel_schema)]
    pub channel: String,
    /// `+` and digits (empty: any number).
    #[serde(default)]
    #[schema(pattern = "^(\\+[0-9]*)?$")]
    pub prefix: String,
    /// In currency units per segment (a Viber message counts as one).
    #[schema(minimum = 0, maximum = 1000)]
    pub price: f64,
}

/// What can go wrong with prices and credit.
#[derive(Debug, thiserror::Error)]
pub enum PricingError {
    #[error("{0}")]
    Invalid(String),
    #[error("no price for {channel} messages to {to}")]
    NoPrice { channel: String, to: String },
    #[error("not enough credit in account `{account}`: {available} available, {needed} needed")]
    InsufficientCredit {
        account: String,
        available: String,
        needed: String,
    },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PriceList {
    /// Check the list a client sent.
    pub fn validate(&self) -> Result<(), PricingError> {
        let code_ok =
            self.currency.len() == 3 && self.currency.bytes().all(|b| b.is_ascii_uppercase());
        if !code_ok {
            return Err(PricingError::Invalid(
                "`currency` is a three-letter ISO 4217 code such as EUR".into(),
            ));
        }
        for p in &self.prices {
            crate::known_channel(&p.channel).map_err(PricingError::Invalid)?;
            if p.channel == "email" && !p.prefix.is_empty() {
                return Err(PricingError::Invalid(
                    "an e-mail price has no prefix: it is the price of one e-mail".into(),
                ));
            }
            if !(p.prefix.is_empty()
                || (p.prefix.starts_with('+') && p.prefix[1..].bytes().all(|b| b.is_ascii_digit())))
            {
                return Err(PricingError::Invalid(format!(
                    "prefix `{}` is `+` and digits, e.g. +380",
                    p.prefix
                )));
            }
            if !(p.price.is_finite() && (0.0..=1000.0).contains(&p.price)) {
                return Err(PricingError::Invalid(
                    "a price is 0 to 1000 per segment".into(),
                ));
            }
        }
        Ok(())
    }

    /// The price of one segment on `channel` to `to`, in micro-units.
    pub fn unit_price(&self, channel: &str, to: &str) -> Option<i64> {
        self.prices
            .iter()
            .filter(|p| p.channel == channel && to.starts_with(&p.prefix))
            .max_by_key(|p| p.prefix.len())
            .map(|p| to_micros(p.price))
    }
}

/// Currency units as micro-units.
pub fn to_micros(units: f64) -> i64 {
    (units * MICROS as f64).round() as i64
}

/// Micro-units as currency units, for display.
pub fn to_units(micros: i64) -> f64 {
    micros as f64 / MICROS as f64
}

/// The tenant's price list, if it set one.
pub fn price_list(src: &impl Reader, tenant: &str) -> Result<Option<PriceList>, StoreError> {
    src.get(PRICES, &key(&[tenant]))
}

/// Set the tenant's price list.
pub fn set_price_list(tx: &mut Tx, tenant: &str, list: &PriceList) -> Result<(), StoreError> {
    tx.put(PRICES, &key(&[tenant]), list)
}

/// The price of a message of `segments` on `channel` to `to`; 0 without a
/// price list. Viber messages are one unit whatever their length.
pub fn price(
    list: Option<&PriceList>,
    channel: &str,
    to: &str,
    segments: usize,
) -> Result<i64, PricingError> {
    let Some(list) = list else { return Ok(0) };
    let unit = list
        .unit_price(channel, to)
        .ok_or_else(|| PricingError::NoPrice {
            channel: channel.to_owned(),
            to: to.to_owned(),
        })?;
    let units = if channel == "sms" { segments.max(1) } else { 1 };
    Ok(unit.saturating_mul(units as i64))
}

/// The ledger owner of a sending account's credit.
pub fn owner(account: &str) -> String {
    format!("~messaging:{account}")
}

/// Whether `name` can name a sending account.
pub fn valid_account(name: &str) -> bool {
    engage_store::ids::valid_id(name)
}

/// Available and reserved credit of an account, in micro-units.
pub fn credit(src: &impl Reader, tenant: &str, account: &str) -> Result<(i64, i64), StoreError> {
    let o = owner(account);
    Ok((
        views::balance(src, tenant, &o, CREDIT)?,
        views::balance(src, tenant, &o, RESERVED)?,
    ))
}

/// One ledger movement on a sending account.
struct Movement<'a> {
    currency: &'a str,
    amount: i64,
    reason: &'a str,
    reference: Option<&'a str>,
}

fn post(
    tx: &mut Tx,
    tenant: &str,
    account: &str,
    m: Movement,
    now_ms: i64,
) -> Result<(), LedgerError> {
    let o = owner(account);
    ledger::post(
        tx,
        tenant,
        &Posting {
            player: &o,
            currency: m.currency,
            amount: m.amount,
            reason: m.reason,
            reference: m.reference,
        },
        now_ms,
    )
    .map(|_| ())
}

/// Add (or, negative, take back) available credit.
pub fn top_up(
    tx: &mut Tx,
    tenant: &str,
    account: &str,
    micros: i64,
    reference: Option<&str>,
    now_ms: i64,
) -> Result<(i64, i64), PricingError> {
    let reason = if micros > 0 {
        "credit top-up"
    } else {
        "credit withdrawn"
    };
    let m = Movement {
        currency: CREDIT,
        amount: micros,
        reason,
        reference,
    };
    post(tx, tenant, account, m, now_ms)?;
    Ok(credit(tx, tenant, account)?)
}

/// Hold `micros` of the account's credit for message `id`.
pub fn reserve(
    tx: &mut Tx,
    tenant: &str,
    account: &str,
    micros: i64,
    id: &str,
    now_ms: i64,
) -> Result<(), PricingError> {
    if micros == 0 {
        return Ok(());
    }
    let reason = "message reserved";
    let taken = Movement {
        currency: CREDIT,
        amount: -micros,
        reason,
        reference: Some(id),
    };
    post(tx, tenant, account, taken, now_ms).map_err(|e| short_of(e, account, micros))?;
    let held = Movement {
        currency: RESERVED,
        amount: micros,
        reason,
        reference: Some(id),
    };
    post(tx, tenant, account, held, now_ms)?;
    Ok(())
}

/// Whether `micros` can be reserved from `account` (both of
/// [`reserve`]'s movements would be accepted), without writing.
pub fn can_reserve(
    src: &impl Reader,
    tenant: &str,
    account: &str,
    micros: i64,
) -> Result<(), PricingError> {
    if micros == 0 {
        return Ok(());
    }
    let o = owner(account);
    let posting = |currency, amount| Posting {
        player: &o,
        currency,
        amount,
        reason: "check",
        reference: None,
    };
    ledger::check(src, tenant, &posting(CREDIT, -micros))
        .map_err(|e| short_of(e, account, micros))?;
    ledger::check(src, tenant, &posting(RESERVED, micros))?;
    Ok(())
}

/// A ledger refusal to take `micros` from `account` as pricing says it.
fn short_of(e: LedgerError, account: &str, micros: i64) -> PricingError {
    match e {
        LedgerError::InsufficientBalance { balance, .. } => PricingError::InsufficientCredit {
            account: account.to_owned(),
            available: format!("{:.6}", to_units(balance)),
            needed: format!("{:.6}", to_units(micros)),
        },
        e => e.into(),
    }
}

/// Settle message `id`'s reservation: `charged` is spent, the rest returns
/// to the available credit. `charged` never exceeds what was reserved.
pub fn settle(
    tx: &mut Tx,
    tenant: &str,
    account: &str,
    reserved: i64,
    charged: i64,
    id: &str,
    now_ms: i64,
) -> Result<(), PricingError> {
    if reserved == 0 {
        return Ok(());
    }
    let reference = Some(id);
    let held = Movement {
        currency: RESERVED,
        amount: -reserved,
        reason: "message settled",
        reference,
    };
    post(tx, tenant, account, held, now_ms)?;
    let back = reserved - charged.clamp(0, reserved);
    if back > 0 {
        let released = Movement {
            currency: CREDIT,
            amount: back,
            reason: "message released",
            reference,
        };
        post(tx, tenant, account, released, now_ms)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> PriceList {
        PriceList {
            currency: "EUR".into(),
            prices: vec![
                Price {
                    channel: "sms".into(),
                    prefix: String::new(),
                    price: 0.05,
                },
                Price {
                    channel: "sms".into(),
                    prefix: "+380".into(),
                    price: 0.023,
                },
                Price {
                    channel: "viber".into(),
                    prefix: "+380".into(),
                    price: 0.23,
                },
            ],
        }
    }

    #[test]
    fn the_longest_prefix_wins_and_sms_pays_per_segment() {
        let l = list();
        assert_eq!(
            price(Some(&l), "sms", "+380972920000", 1).ok(),
            Some(23_000)
        );
        assert_eq!(
            price(Some(&l), "sms", "+14155550100", 2).ok(),
            Some(100_000)
        );
        assert_eq!(
            price(Some(&l), "viber", "+380972920000", 3).ok(),
            Some(230_000)
        );
        assert!(matches!(
            price(Some(&l), "viber", "+14155550100", 1),
            Err(PricingError::NoPrice { .. })
        ));
        assert_eq!(price(None, "viber", "+14155550100", 1).ok(), Some(0));
    }

    #[test]
    fn bad_lists_are_refused() {
        let mut l = list();
        l.currency = "euro".into();
        assert!(l.validate().is_err());
        let mut l = list();
        l.prices[0].prefix = "380".into();
        assert!(l.validate().is_err());
        let mut l = list();
        l.prices[0].price = -1.0;
        assert!(l.validate().is_err());
        assert!(list().validate().is_ok());
    }
}
