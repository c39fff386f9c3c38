//! The ledger: an account per (player, currency), append-only entries, and
//! balances that never go negative.
//!
//! Every change of a balance is an [`Entry`] written in the same transaction
//! as the balance, so the two cannot disagree. A mistake is undone by a
//! compensating entry that names the original ([`reverse`]); nothing is ever
//! rewritten. Balances live in [`views`], the crate's read side that plugins
//! see (with the action log, which actions record through it); only this
//! crate writes them.

use serde::{Deserialize, Serialize};

use crate::views::{BALANCES, balance_key};
use engage_store::{Reader, StoreError, Table, Tx, key, prefix, seq_part};

pub mod views;

/// (tenant, player, entry sequence) → [`Entry`].
const ENTRIES: Table = Table::new("ledger_entries");
/// (tenant, entry sequence) → player: finds an entry by id.
const ENTRY_OWNER: Table = Table::new("ledger_entry_owner");
/// (tenant, original entry sequence) → id of the entry that reversed it.
const REVERSED: Table = Table::new("ledger_reversed");
/// (tenant, currency) → first use time.
const CURRENCIES: Table = Table::new("ledger_currencies");
/// (tenant, player, currency) → [`Totals`]: credited then debited, each an
/// `i64` little-endian.
const TOTALS: Table = Table::new("ledger_totals");

/// The currency every tenant has.
pub const DEFAULT_CURRENCY: &str = "points";

/// The most currencies a tenant has (points, coins, a messaging account's
/// credit…): every list of balances is one bounded read.
pub const MAX_CURRENCIES: usize = 100;

/// The largest amount one entry may move; keeps every sum far from overflow.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;

/// The largest balance an account may hold. Far below `i64::MAX`, so no
/// sum of balances or of a day's entries can overflow either.
pub const MAX_BALANCE: i64 = 1_000_000_000_000_000;

/// `balance + amount`, refused when it would go past [`MAX_BALANCE`] (or
/// overflow, which that bound makes impossible for valid amounts).
pub fn add_to_balance(balance: i64, amount: i64) -> Result<i64, LedgerError> {
    match balance.checked_add(amount) {
        Some(after) if after <= MAX_BALANCE => Ok(after),
        _ => Err(LedgerError::BalanceTooLarge),
    }
}

/// What can go wrong in the ledger.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("a currency name is 1 to 64 letters, digits, `_` or `-`")]
    InvalidCurrency,
    #[error("a tenant has at most {MAX_CURRENCIES} currencies; use one it has")]
    TooManyCurrencies,
    #[error("the amount must be a whole number from 1 to {MAX_AMOUNT}")]
    InvalidAmount,
    #[error("not enough {currency}: the balance is {balance}, {needed} needed")]
    InsufficientBalance {
        currency: String,
        balance: i64,
        needed: i64,
    },
    #[error("the balance would exceed {MAX_BALANCE}, the most an account may hold")]
    BalanceTooLarge,
    #[error("ledger entry `{0}` does not exist")]
    EntryNotFound(String),
    #[error("ledger entry `{original}` was already reversed by `{by}`")]
    AlreadyReversed { original: String, by: String },
    #[error("a reversal cannot itself be reversed; post a new entry instead")]
    ReverseOfReversal,
    #[error("player `{0}` does not exist")]
    PlayerNotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One movement of one currency on one player's account.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Entry {
    pub id: String,
    pub player: String,
    pub currency: String,
    /// Positive: credit; negative: debit.
    pub amount: i64,
    pub balance_after: i64,
    pub reason: String,
    /// What caused it: an action id, a redemption ref_id, a client reference.
    pub reference: Option<String>,
    /// The entry this one compensates, for a reversal.
    pub reverses: Option<String>,
    pub time_ms: i64,
}

/// A request to move `amount` (positive credit, negative debit).
#[derive(Debug, Clone)]
pub struct Posting<'a> {
    pub player: &'a str,
    pub currency: &'a str,
    pub amount: i64,
    pub reason: &'a str,
    pub reference: Option<&'a str>,
}

/// Whether `name` can be a currency.
pub fn valid_currency(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Check a posting without writing: the balance it would leave.
pub fn check(src: &impl Reader, tenant: &str, p: &Posting) -> Result<i64, LedgerError> {
    if !valid_currency(p.currency) {
        return Err(LedgerError::InvalidCurrency);
    }
    if p.amount == 0 || p.amount.unsigned_abs() > MAX_AMOUNT as u64 {
        return Err(LedgerError::InvalidAmount);
    }
    if src
        .get_raw(CURRENCIES, &key(&[tenant, p.currency]))?
        .is_none()
        && !engage_store::below_cap(src, CURRENCIES, &prefix(&[tenant]), MAX_CURRENCIES)?
    {
        return Err(LedgerError::TooManyCurrencies);
    }
    let balance = views::balance(src, tenant, p.player, p.currency)?;
    let after = add_to_balance(balance, p.amount)?;
    if after < 0 {
        return Err(LedgerError::InsufficientBalance {
            currency: p.currency.to_owned(),
            balance,
            needed: -p.amount,
        });
    }
    Ok(after)
}

/// Post an entry: checks first, then writes the entry and the balance.
pub fn post(tx: &mut Tx, tenant: &str, p: &Posting, now_ms: i64) -> Result<Entry, LedgerError> {
    post_entry(tx, tenant, p, None, now_ms)
}

fn post_entry(
    tx: &mut Tx,
    tenant: &str,
    p: &Posting,
    reverses: Option<String>,
    now_ms: i64,
) -> Result<Entry, LedgerError> {
    let after = check(tx, tenant, p)?;
    let is_reversal = reverses.is_some();
    let seq = tx.next_seq(tenant, "ledger")?;
    let entry = Entry {
        id: seq.to_string(),
        player: p.player.to_owned(),
        currency: p.currency.to_owned(),
        amount: p.amount,
        balance_after: after,
        reason: p.reason.to_owned(),
        reference: p.reference.map(str::to_owned),
        reverses,
        time_ms: now_ms,
    };
    let s = seq_part(seq);
    tx.put(ENTRIES, &key(&[tenant, p.player, &s]), &entry)?;
    tx.put_raw(ENTRY_OWNER, &key(&[tenant, &s]), p.player.as_bytes())?;
    tx.put_raw(
        BALANCES,
        &balance_key(tenant, p.player, p.currency),
        &after.to_le_bytes(),
    )?;
    add_to_totals(tx, tenant, p, is_reversal)?;
    let ck = key(&[tenant, p.currency]);
    if tx.get_raw(CURRENCIES, &ck)?.is_none() {
        tx.put_raw(CURRENCIES, &ck, &now_ms.to_le_bytes())?;
    }
    Ok(entry)
}

/// What an account was ever credited and debited: a reversal takes back
/// from the side of the entry it undoes, so a reversed credit was never
/// earned. Both stay within `[0, MAX_BALANCE * entries]`, far from overflow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub credited: i64,
    pub debited: i64,
}

/// The account's [`Totals`].
pub fn totals(
    src: &impl Reader,
    tenant: &str,
    player: &str,
    currency: &str,
) -> Result<Totals, StoreError> {
    let raw = src.get_raw(TOTALS, &balance_key(tenant, player, currency))?;
    let half = |b: &[u8], i: usize| {
        b.get(i * 8..i * 8 + 8)
            .and_then(|s| <[u8; 8]>::try_from(s).ok())
            .map(i64::from_le_bytes)
            .unwrap_or(0)
    };
    Ok(raw
        .map(|b| Totals {
            credited: half(&b, 0),
            debited: half(&b, 1),
        })
        .unwrap_or_default())
}

fn add_to_totals(tx: &mut Tx, tenant: &str, p: &Posting, reversal: bool) -> Result<(), StoreError> {
    let mut t = totals(tx, tenant, p.player, p.currency)?;
    match (p.amount > 0, reversal) {
        (true, false) => t.credited = t.credited.saturating_add(p.amount),
        (false, false) => t.debited = t.debited.saturating_add(-p.amount),
        // Undoing a debit: it was never spent; undoing a credit: never earned.
        (true, true) => t.debited = t.debited.saturating_sub(p.amount).max(0),
        (false, true) => t.credited = t.credited.saturating_add(p.amount).max(0),
    }
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&t.credited.to_le_bytes());
    bytes[8..].copy_from_slice(&t.debited.to_le_bytes());
    tx.put_raw(TOTALS, &balance_key(tenant, p.player, p.currency), &bytes)
}

/// The entry with id `id`.
pub fn entry(src: &impl Reader, tenant: &str, id: &str) -> Result<Entry, LedgerError> {
    let missing = || LedgerError::EntryNotFound(id.to_owned());
    let seq: u64 = id.parse().map_err(|_| missing())?;
    let s = seq_part(seq);
    let owner = src
        .get_raw(ENTRY_OWNER, &key(&[tenant, &s]))?
        .ok_or_else(missing)?;
    let player = String::from_utf8_lossy(&owner).into_owned();
    src.get(ENTRIES, &key(&[tenant, &player, &s]))?
        .ok_or_else(missing)
}

/// Undo entry `id` with a compensating entry naming it. A credit already
/// spent cannot be reversed (the balance would go negative).
pub fn reverse(
    tx: &mut Tx,
    tenant: &str,
    id: &str,
    reason: &str,
    now_ms: i64,
) -> Result<Entry, LedgerError> {
    let original = entry(tx, tenant, id)?;
    if original.reverses.is_some() {
        return Err(LedgerError::ReverseOfReversal);
    }
    let rk = key(&[tenant, &seq_part(original.id.parse().unwrap_or(0))]);
    if let Some(by) = tx.get_raw(REVERSED, &rk)? {
        return Err(LedgerError::AlreadyReversed {
            original: original.id,
            by: String::from_utf8_lossy(&by).into_owned(),
        });
    }
    let posting = Posting {
        player: &original.player,
        currency: &original.currency,
        amount: -original.amount,
        reason,
        reference: original.reference.as_deref(),
    };
    let e = post_entry(tx, tenant, &posting, Some(original.id.clone()), now_ms)?;
    tx.put_raw(REVERSED, &rk, e.id.as_bytes())?;
    Ok(e)
}

/// A player's entries, newest first, before the cursor (an entry id);
/// optionally one currency only.
pub fn history(
    src: &impl Reader,
    tenant: &str,
    player: &str,
    currency: Option<&str>,
    before: Option<&str>,
    limit: usize,
) -> Result<Vec<Entry>, StoreError> {
    let before = before
        .and_then(|b| b.parse::<u64>().ok())
        .map(|s| key(&[tenant, player, &seq_part(s)]));
    src.newest_matching(
        ENTRIES,
        &prefix(&[tenant, player]),
        before,
        limit,
        |e: &Entry| currency.is_none_or(|c| c == e.currency),
    )
}

/// Which entries a [`page`] lists.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter<'a> {
    pub currency: Option<&'a str>,
    /// Credits only (what Playbasis calls a player's point history).
    pub credits_only: bool,
}

/// The furthest into a player's history a [`page`] reaches: a page past it
/// is empty rather than a scan of everything before it.
pub const MAX_SKIP: usize = 10_000;

/// A player's entries that `filter` accepts, newest first (or oldest
/// first), after skipping `skip` of them (at most [`MAX_SKIP`]).
pub fn page(
    src: &impl Reader,
    tenant: &str,
    player: &str,
    filter: Filter,
    skip: usize,
    limit: usize,
    oldest_first: bool,
) -> Result<Vec<Entry>, StoreError> {
    if skip > MAX_SKIP || limit == 0 {
        return Ok(Vec::new());
    }
    let keep = |e: &Entry| {
        filter.currency.is_none_or(|c| c == e.currency) && (!filter.credits_only || e.amount > 0)
    };
    let mut found = src.matching(
        ENTRIES,
        &prefix(&[tenant, player]),
        None,
        skip + limit,
        !oldest_first,
        keep,
    )?;
    Ok(found.split_off(skip.min(found.len())))
}

/// The most entries [`recent`] looks at for one page: past it the page is
/// shorter rather than the scan longer.
const MAX_EXAMINED: usize = 50_000;

/// The tenant's entries (all players) that `filter` accepts, newest first,
/// after skipping `skip` (at most [`MAX_SKIP`]).
pub fn recent(
    src: &impl Reader,
    tenant: &str,
    filter: Filter,
    skip: usize,
    limit: usize,
) -> Result<Vec<Entry>, StoreError> {
    if skip > MAX_SKIP || limit == 0 {
        return Ok(Vec::new());
    }
    const PAGE: usize = 200;
    let p = prefix(&[tenant]);
    let (mut cursor, mut examined, mut skipped) = (None::<String>, 0usize, 0usize);
    let mut out = Vec::new();
    loop {
        let page = src.scan_raw(ENTRY_OWNER, &p, cursor.as_deref(), PAGE, true)?;
        let exhausted = page.len() < PAGE;
        for (k, owner) in page {
            examined += 1;
            let seq = &k[p.len()..];
            let player = String::from_utf8_lossy(&owner);
            let entry: Option<Entry> = src.get(ENTRIES, &key(&[tenant, &player, seq]))?;
            cursor = Some(k);
            let Some(e) = entry else { continue };
            let keep = filter.currency.is_none_or(|c| c == e.currency)
                && (!filter.credits_only || e.amount > 0);
            if keep {
                if skipped < skip {
                    skipped += 1;
                } else {
                    out.push(e);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            if examined >= MAX_EXAMINED {
                return Ok(out);
            }
        }
        if exhausted {
            return Ok(out);
        }
    }
}

/// What [`deduct`] took.
#[derive(Debug, Clone, PartialEq)]
pub struct Deducted {
    pub before: i64,
    pub after: i64,
    /// `None` when nothing was taken (a forced deduction from 0).
    pub entry: Option<Entry>,
}

/// Take `amount` of `currency` from `player`; with `force`, take what there
/// is when that is less (never below zero) instead of refusing.
#[allow(clippy::too_many_arguments)]
pub fn deduct(
    tx: &mut Tx,
    tenant: &str,
    player: &str,
    currency: &str,
    amount: i64,
    force: bool,
    reason: &str,
    now_ms: i64,
) -> Result<Deducted, LedgerError> {
    if amount <= 0 || amount > MAX_AMOUNT {
        return Err(LedgerError::InvalidAmount);
    }
    let before = views::balance(tx, tenant, player, currency)?;
    let take = if force { amount.min(before) } else { amount };
    if take == 0 {
        return Ok(Deducted {
            before,
            after: before,
            entry: None,
        });
    }
    let posting = Posting {
        player,
        currency,
        amount: -take,
        reason,
        reference: None,
    };
    let e = post(tx, tenant, &posting, now_ms)?;
    debug_assert!(e.balance_after >= 0 && e.balance_after == before - take);
    Ok(Deducted {
        before,
        after: e.balance_after,
        entry: Some(e),
    })
}

/// A player's balances, by currency.
pub fn balances(
    src: &impl Reader,
    tenant: &str,
    player: &str,
) -> Result<Vec<(String, i64)>, StoreError> {
    let p = prefix(&[tenant, player]);
    Ok(src
        .scan_raw(BALANCES, &p, None, MAX_CURRENCIES, false)?
        .into_iter()
        .map(|(k, v)| {
            let currency = k[p.len()..].to_owned();
            let value = <[u8; 8]>::try_from(v.as_slice())
                .map(i64::from_le_bytes)
                .unwrap_or(0);
            (currency, value)
        })
        .collect())
}

/// The tenant's currencies: the default one and every one used.
pub fn currencies(src: &impl Reader, tenant: &str) -> Result<Vec<String>, StoreError> {
    let p = prefix(&[tenant]);
    let mut out: Vec<String> = src
        .scan_raw(CURRENCIES, &p, None, MAX_CURRENCIES, false)?
        .into_iter()
        .map(|(k, _)| k[p.len()..].to_owned())
        .collect();
    if !out.iter().any(|c| c == DEFAULT_CURRENCY) {
        out.insert(0, DEFAULT_CURRENCY.to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift): the same seed, the same
    /// sequence, so a failure replays exactly.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Random credits, debits, forced deductions and reversals, some of
    /// them refused: after every step each account's balance equals what
    /// was credited minus what was debited, never negative, and equals the
    /// sum of its entries.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn balances_match_totals_and_entries_under_random_postings() {
        let path = std::env::temp_dir().join(format!(
            "engage-ledger-{}",
            engage_store::ids::random_hex(6)
        ));
        let dir = engage_store::files::open_data_dir(&path).expect("dir");
        let store = engage_store::Store::open(&dir).expect("store");
        for seed in [1u64, 7, 42, 2026] {
            let tenant = format!("t{seed}");
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let mut ids: Vec<String> = Vec::new();
            for step in 0..300 {
                let player = format!("p{}", rng.below(3));
                let currency = ["points", "gems"][rng.below(2) as usize].to_owned();
                let amount = 1 + rng.below(500) as i64;
                let op = rng.below(10);
                let reverse_id =
                    (!ids.is_empty()).then(|| ids[rng.below(ids.len() as u64) as usize].clone());
                let t = tenant.clone();
                let posted = store
                    .write(move |tx| {
                        let r = match (op, reverse_id.as_deref()) {
                            (0..=4, _) => post(
                                tx,
                                &t,
                                &Posting {
                                    player: &player,
                                    currency: &currency,
                                    amount,
                                    reason: "c",
                                    reference: None,
                                },
                                step,
                            )
                            .map(Some),
                            (5..=6, _) => post(
                                tx,
                                &t,
                                &Posting {
                                    player: &player,
                                    currency: &currency,
                                    amount: -amount,
                                    reason: "d",
                                    reference: None,
                                },
                                step,
                            )
                            .map(Some),
                            (7, _) => deduct(tx, &t, &player, &currency, amount, true, "f", step)
                                .map(|d| d.entry),
                            (_, Some(id)) => reverse(tx, &t, id, "r", step).map(Some),
                            (_, None) => Ok(None),
                        };
                        // Refusals (short balance, double reversal) are part of the run.
                        Ok::<_, StoreError>(r.ok().flatten())
                    })
                    .await
                    .expect("write");
                if let Some(e) = posted {
                    ids.push(e.id);
                }
                let snap = store.read().expect("read");
                for p in ["p0", "p1", "p2"] {
                    for c in ["points", "gems"] {
                        let b = views::balance(&snap, &tenant, p, c).expect("balance");
                        let t = totals(&snap, &tenant, p, c).expect("totals");
                        assert!(b >= 0, "seed {seed} step {step}: negative {b}");
                        assert_eq!(
                            b,
                            t.credited - t.debited,
                            "seed {seed} step {step}: {p}/{c} {t:?}"
                        );
                        let entries =
                            history(&snap, &tenant, p, Some(c), None, usize::MAX).expect("history");
                        let sum: i64 = entries.iter().map(|e| e.amount).sum();
                        assert_eq!(b, sum, "seed {seed} step {step}: entries of {p}/{c}");
                        // Totals are what was earned and spent and not undone.
                        let undone: std::collections::HashSet<&str> = entries
                            .iter()
                            .filter_map(|e| e.reverses.as_deref())
                            .collect();
                        let standing = entries
                            .iter()
                            .filter(|e| e.reverses.is_none() && !undone.contains(e.id.as_str()));
                        let (cr, db) = standing.fold((0, 0), |(cr, db), e| {
                            if e.amount > 0 {
                                (cr + e.amount, db)
                            } else {
                                (cr, db - e.amount)
                            }
                        });
                        assert_eq!(
                            (t.credited, t.debited),
                            (cr, db),
                            "seed {seed} step {step}: {p}/{c}"
                        );
                    }
                }
            }
        }
        drop(store);
        let _ = std::fs::remove_dir_all(&path);
    }
}
