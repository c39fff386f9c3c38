//! Goods groups and their coupon codes, and redemption for points.
//!
//! A group (the seed's "group of goods") has a price in a currency and a
//! pool of unique codes uploaded from files; its stock is the number of
//! codes not yet given out. Redeeming takes one free code per unit, debits
//! the price and writes a redemption record in one transaction, after every
//! check has passed: not enough points changes nothing, and no code left
//! takes no points (the seed's two rules).

use serde::{Deserialize, Serialize};

use crate::players;
use engage_ledger::{self as ledger, LedgerError, Posting};
use engage_store::ids::{random_hex, valid_id};
use engage_store::{Reader, StoreError, Table, Tx, key, prefix, seq_part};

/// (tenant, group) → [`Group`].
const GROUPS: Table = Table::new("goods_groups");
/// (tenant, group) → free codes (u64).
const STOCK: Table = Table::new("goods_stock");
/// (tenant, group, code) → the redemption ref_id, or empty while free.
const CODES: Table = Table::new("goods_codes");
/// (tenant, group, upload sequence) → code: the free codes, oldest first.
const FREE: Table = Table::new("goods_free_codes");
/// (tenant, ref_id) → [`Redemption`].
const REDEMPTIONS: Table = Table::new("redemptions");
/// (tenant, player, time, ref_id) → group: a player's redemptions.
const PLAYER_REDEMPTIONS: Table = Table::new("player_redemptions");
/// (tenant, group, player) → units redeemed (u64).
const REDEEMED: Table = Table::new("goods_redeemed");
/// (tenant, group name) → group id: Playbasis names a group by its name.
const NAMES: Table = Table::new("goods_group_names");

/// The longest code accepted.
pub const MAX_CODE_LEN: usize = 128;

/// What can go wrong with goods.
#[derive(Debug, thiserror::Error)]
pub enum GoodsError {
    #[error("{0}")]
    Invalid(String),
    #[error("goods group `{0}` does not exist")]
    NotFound(String),
    /// A change to a group that does not exist, without what creating it needs.
    #[error("goods group `{0}` does not exist: creating it needs a `name` and a `price`")]
    Incomplete(String),
    #[error("player `{0}` does not exist")]
    PlayerNotFound(String),
    #[error("goods group `{0}` is not available now (outside its active window)")]
    NotActive(String),
    #[error("player `{player}` may redeem `{group}` at most {limit} times and has {used}")]
    LimitReached {
        player: String,
        group: String,
        limit: u64,
        used: u64,
    },
    #[error("goods group `{group}` has {stock} codes left, {wanted} wanted; no points were taken")]
    OutOfStock {
        group: String,
        stock: u64,
        wanted: u64,
    },
    #[error("not enough {currency}: the balance is {balance}, the price is {price}")]
    InsufficientBalance {
        currency: String,
        balance: i64,
        price: i64,
    },
    #[error("redemption `{0}` does not exist")]
    RedemptionNotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A group of goods.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub currency: String,
    /// Price per unit, in `currency` (0: free).
    pub price: i64,
    pub active_from_ms: Option<i64>,
    pub active_until_ms: Option<i64>,
    /// Units one player may redeem in all; none: no limit.
    pub per_player_limit: Option<u64>,
    /// Stock at or below which the group reports `low_stock`.
    pub low_stock_threshold: Option<u64>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// Fields to create or change a group with.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// Needed to create a group.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub name: Option<String>,
    pub description: Option<String>,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub currency: Option<String>,
    /// Points per unit; needed to create a group.
    #[schema(minimum = 0, maximum = 1000000000000i64)]
    pub price: Option<i64>,
    pub active_from_ms: Option<i64>,
    pub active_until_ms: Option<i64>,
    pub per_player_limit: Option<u64>,
    pub low_stock_threshold: Option<u64>,
}

/// A redemption: what a player got for what.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Redemption {
    /// 24 hex digits, as Playbasis writes its ids.
    pub ref_id: String,
    pub player: String,
    pub group: String,
    pub group_name: String,
    pub codes: Vec<String>,
    pub amount: u64,
    pub currency: String,
    pub price_each: i64,
    pub total: i64,
    /// The ledger debit; none when the group is free.
    pub entry_id: Option<String>,
    pub time_ms: i64,
}

/// A group with its stock, as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[schema(as = GoodsGroup)]
pub struct GroupView {
    #[serde(flatten)]
    pub group: Group,
    pub stock: u64,
    pub low_stock: bool,
}

/// What an upload of codes did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct UploadReport {
    pub added: u64,
    /// Already in the group (from an earlier upload or earlier in this one).
    pub duplicates: u64,
    pub blank: u64,
    pub rejected: u64,
    /// The first problems, with their line numbers.
    pub problems: Vec<UploadProblem>,
    pub stock: u64,
}

/// One rejected or duplicate line of an upload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct UploadProblem {
    pub line: u64,
    pub reason: String,
}

const MAX_PROBLEMS: usize = 50;

fn group_key(tenant: &str, id: &str) -> String {
    key(&[tenant, id])
}

/// Create group `id` or change it (inside a write job). Creating needs a
/// name and a price.
/// The most goods groups a tenant keeps.
pub const MAX_GROUPS: usize = 1000;

pub fn put(
    tx: &mut Tx,
    tenant: &str,
    id: &str,
    spec: GroupSpec,
    now_ms: i64,
) -> Result<(GroupView, bool), GoodsError> {
    if !valid_id(id) {
        return Err(GoodsError::Invalid(
            "a goods group id is 1 to 128 characters without control characters".into(),
        ));
    }
    let existing: Option<Group> = tx.get(GROUPS, &group_key(tenant, id))?;
    if existing.is_none() && !engage_store::below_cap(tx, GROUPS, &prefix(&[tenant]), MAX_GROUPS)? {
        return Err(GoodsError::Invalid(format!(
            "a tenant keeps at most {MAX_GROUPS} goods groups; remove one first"
        )));
    }
    let old_name = existing.as_ref().map(|g| g.name.clone());
    let created = existing.is_none();
    let mut g = match existing {
        Some(g) => g,
        None => Group {
            id: id.to_owned(),
            name: spec
                .name
                .clone()
                .ok_or_else(|| GoodsError::Incomplete(id.to_owned()))?,
            description: None,
            currency: ledger::DEFAULT_CURRENCY.to_owned(),
            price: spec
                .price
                .ok_or_else(|| GoodsError::Incomplete(id.to_owned()))?,
            active_from_ms: None,
            active_until_ms: None,
            per_player_limit: None,
            low_stock_threshold: None,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        },
    };
    if let Some(v) = spec.name {
        g.name = v;
    }
    if let Some(v) = spec.description {
        g.description = Some(v);
    }
    if let Some(v) = spec.currency {
        g.currency = v;
    }
    if let Some(v) = spec.price {
        g.price = v;
    }
    if spec.active_from_ms.is_some() {
        g.active_from_ms = spec.active_from_ms;
    }
    if spec.active_until_ms.is_some() {
        g.active_until_ms = spec.active_until_ms;
    }
    if spec.per_player_limit.is_some() {
        g.per_player_limit = spec.per_player_limit;
    }
    if spec.low_stock_threshold.is_some() {
        g.low_stock_threshold = spec.low_stock_threshold;
    }
    g.updated_at_ms = now_ms;
    if g.name.is_empty() || g.name.chars().count() > 256 || g.name.chars().any(char::is_control) {
        return Err(GoodsError::Invalid(
            "`name` is 1 to 256 characters without control characters".into(),
        ));
    }
    if !ledger::valid_currency(&g.currency) {
        return Err(GoodsError::Invalid(
            LedgerError::InvalidCurrency.to_string(),
        ));
    }
    if !(0..=ledger::MAX_AMOUNT).contains(&g.price) {
        return Err(GoodsError::Invalid(format!(
            "`price` is a whole number from 0 to {}",
            ledger::MAX_AMOUNT
        )));
    }
    if let (Some(a), Some(b)) = (g.active_from_ms, g.active_until_ms)
        && a >= b
    {
        return Err(GoodsError::Invalid(
            "the active window must end after it starts".into(),
        ));
    }
    tx.put(GROUPS, &group_key(tenant, id), &g)?;
    if let Some(old) = old_name.filter(|o| *o != g.name) {
        let ok = key(&[tenant, &old]);
        if tx.get_raw(NAMES, &ok)?.as_deref() == Some(id.as_bytes()) {
            tx.remove(NAMES, &ok)?;
        }
    }
    tx.put_raw(NAMES, &key(&[tenant, &g.name]), id.as_bytes())?;
    Ok((view(tx, tenant, g)?, created))
}

/// The group `id_or_name` names: its id, else its name (the last group
/// given that name, when several share it).
pub fn find(src: &impl Reader, tenant: &str, id_or_name: &str) -> Result<GroupView, GoodsError> {
    match get(src, tenant, id_or_name) {
        Err(GoodsError::NotFound(_)) => {
            let id = src
                .get_raw(NAMES, &key(&[tenant, id_or_name]))?
                .ok_or_else(|| GoodsError::NotFound(id_or_name.to_owned()))?;
            get(src, tenant, &String::from_utf8_lossy(&id))
        }
        other => other,
    }
}

fn view(src: &impl Reader, tenant: &str, group: Group) -> Result<GroupView, StoreError> {
    let stock = src.get_u64(STOCK, &group_key(tenant, &group.id))?;
    Ok(GroupView {
        low_stock: group.low_stock_threshold.is_some_and(|t| stock <= t),
        stock,
        group,
    })
}

/// Group `id` with its stock.
pub fn get(src: &impl Reader, tenant: &str, id: &str) -> Result<GroupView, GoodsError> {
    let g: Group = src
        .get(GROUPS, &group_key(tenant, id))?
        .ok_or_else(|| GoodsError::NotFound(id.to_owned()))?;
    Ok(view(src, tenant, g)?)
}

/// Every group of the tenant, by id.
pub fn list(src: &impl Reader, tenant: &str) -> Result<Vec<GroupView>, StoreError> {
    src.scan_page::<Group>(GROUPS, &prefix(&[tenant]), None, MAX_GROUPS, false)?
        .into_iter()
        .map(|(_, g)| view(src, tenant, g))
        .collect()
}

/// [`add_codes`] in a write of its own: one batch of a file that streams
/// in. A re-upload of the same lines adds nothing twice (codes are unique
/// per group), so a retried upload is safe without an Idempotency-Key.
pub async fn import_codes(
    store: &engage_store::Store,
    tenant: &str,
    group: &str,
    lines: Vec<String>,
    first_line: u64,
    report: UploadReport,
) -> Result<UploadReport, GoodsError> {
    let (t, g) = (tenant.to_owned(), group.to_owned());
    store
        .write(move |tx| {
            // From the same starting point on every run of the job.
            let mut r = report.clone();
            add_codes(tx, &t, &g, &lines, first_line, &mut r)?;
            Ok(r)
        })
        .await
}

/// Add a batch of lines from an uploaded file (inside a write job).
/// `first_line` numbers them for the report; `report` accumulates.
pub fn add_codes(
    tx: &mut Tx,
    tenant: &str,
    group: &str,
    lines: &[String],
    first_line: u64,
    report: &mut UploadReport,
) -> Result<(), GoodsError> {
    get(tx, tenant, group)?;
    let gk = group_key(tenant, group);
    let mut stock = tx.get_u64(STOCK, &gk)?;
    let problem = |report: &mut UploadReport, line: u64, reason: String| {
        if report.problems.len() < MAX_PROBLEMS {
            report.problems.push(UploadProblem { line, reason });
        }
    };
    for (i, raw) in lines.iter().enumerate() {
        let line = first_line + i as u64;
        let code = first_field(raw);
        if code.is_empty() {
            report.blank += 1;
            continue;
        }
        if code.len() > MAX_CODE_LEN || code.chars().any(char::is_control) {
            report.rejected += 1;
            problem(
                report,
                line,
                format!("a code is 1 to {MAX_CODE_LEN} characters without control characters"),
            );
            continue;
        }
        let ck = key(&[tenant, group, code]);
        if tx.get_raw(CODES, &ck)?.is_some() {
            report.duplicates += 1;
            problem(report, line, format!("duplicate code `{code}`"));
            continue;
        }
        let seq = tx.next_seq(tenant, "goods_code")?;
        tx.put_raw(CODES, &ck, b"")?;
        tx.put_raw(
            FREE,
            &key(&[tenant, group, &seq_part(seq)]),
            code.as_bytes(),
        )?;
        stock += 1;
        report.added += 1;
    }
    tx.put_u64(STOCK, &gk, stock)?;
    report.stock = stock;
    Ok(())
}

/// The code on a line of a text or CSV file: the first field, trimmed,
/// without surrounding quotes.
pub fn first_field(line: &str) -> &str {
    let line = line.trim_start_matches('\u{feff}').trim();
    let field = match line.strip_prefix('"') {
        Some(rest) => rest.split('"').next().unwrap_or(""),
        None => line.split([',', ';', '\t']).next().unwrap_or(""),
    };
    field.trim()
}

/// How many units `player` could redeem now: 0 when the group is inactive
/// or the player is at the limit, else the stock.
pub fn availability(
    src: &impl Reader,
    tenant: &str,
    group: &str,
    player: Option<&str>,
    now_ms: i64,
) -> Result<u64, GoodsError> {
    let g = get(src, tenant, group)?;
    if !active(&g.group, now_ms) {
        return Ok(0);
    }
    if let (Some(p), Some(limit)) = (player, g.group.per_player_limit) {
        let used = src.get_u64(REDEEMED, &key(&[tenant, group, p]))?;
        if used >= limit {
            return Ok(0);
        }
    }
    Ok(g.stock)
}

fn active(g: &Group, now_ms: i64) -> bool {
    g.active_from_ms.is_none_or(|a| now_ms >= a) && g.active_until_ms.is_none_or(|b| now_ms < b)
}

/// Redeem `amount` units of `group` for `player` (inside a write job).
pub fn redeem(
    tx: &mut Tx,
    tenant: &str,
    player: &str,
    group: &str,
    amount: u64,
    now_ms: i64,
) -> Result<Redemption, GoodsError> {
    if !(1..=100).contains(&amount) {
        return Err(GoodsError::Invalid("`amount` is from 1 to 100".into()));
    }
    if !players::exists(tx, tenant, player)? {
        return Err(GoodsError::PlayerNotFound(player.to_owned()));
    }
    let g = get(tx, tenant, group)?;
    if !active(&g.group, now_ms) {
        return Err(GoodsError::NotActive(group.to_owned()));
    }
    let rk = key(&[tenant, group, player]);
    let used = tx.get_u64(REDEEMED, &rk)?;
    if let Some(limit) = g.group.per_player_limit
        && used + amount > limit
    {
        return Err(GoodsError::LimitReached {
            player: player.to_owned(),
            group: group.to_owned(),
            limit,
            used,
        });
    }
    if g.stock < amount {
        return Err(GoodsError::OutOfStock {
            group: group.to_owned(),
            stock: g.stock,
            wanted: amount,
        });
    }
    let total = g.group.price * amount as i64;
    let ref_id = new_ref_id(now_ms);
    let posting = Posting {
        player,
        currency: &g.group.currency,
        amount: -total,
        reason: "redeem",
        reference: Some(&ref_id),
    };
    if total > 0 {
        match ledger::check(tx, tenant, &posting) {
            Ok(_) => {}
            Err(LedgerError::InsufficientBalance { balance, .. }) => {
                return Err(GoodsError::InsufficientBalance {
                    currency: g.group.currency.clone(),
                    balance,
                    price: total,
                });
            }
            Err(LedgerError::Store(e)) => return Err(e.into()),
            Err(e) => return Err(GoodsError::Invalid(e.to_string())),
        }
    }
    // Every check passed: from here on only writes.
    let free = tx.scan_raw(
        FREE,
        &prefix(&[tenant, group]),
        None,
        amount as usize,
        false,
    )?;
    let mut codes = Vec::with_capacity(free.len());
    for (k, code) in free {
        let code = String::from_utf8_lossy(&code).into_owned();
        tx.remove(FREE, &k)?;
        tx.put_raw(CODES, &key(&[tenant, group, &code]), ref_id.as_bytes())?;
        codes.push(code);
    }
    tx.put_u64(
        STOCK,
        &group_key(tenant, group),
        g.stock - codes.len() as u64,
    )?;
    tx.put_u64(REDEEMED, &rk, used + amount)?;
    let entry_id = if total > 0 {
        let e = ledger::post(tx, tenant, &posting, now_ms).map_err(|e| match e {
            LedgerError::Store(s) => GoodsError::Store(s),
            e => GoodsError::Invalid(e.to_string()),
        })?;
        Some(e.id)
    } else {
        None
    };
    let r = Redemption {
        ref_id: ref_id.clone(),
        player: player.to_owned(),
        group: group.to_owned(),
        group_name: g.group.name,
        codes,
        amount,
        currency: g.group.currency,
        price_each: g.group.price,
        total,
        entry_id,
        time_ms: now_ms,
    };
    tx.put(REDEMPTIONS, &key(&[tenant, &ref_id]), &r)?;
    tx.put_raw(
        PLAYER_REDEMPTIONS,
        &key(&[
            tenant,
            player,
            &engage_ledger::views::time_part(now_ms),
            &ref_id,
        ]),
        group.as_bytes(),
    )?;
    // What reacts to a redemption (campaigns) learns of it from this event.
    let params = std::collections::BTreeMap::from([("goods".to_owned(), group.to_owned())]);
    crate::events::record(tx, tenant, player, "redeemed", &params, &ref_id, now_ms)?;
    Ok(r)
}

/// A Playbasis-style id: 8 hex digits of seconds, then 16 random.
fn new_ref_id(now_ms: i64) -> String {
    format!("{:08x}{}", (now_ms / 1000) as u32, random_hex(8))
}

/// Redemption `ref_id`.
pub fn redemption(src: &impl Reader, tenant: &str, ref_id: &str) -> Result<Redemption, GoodsError> {
    src.get(REDEMPTIONS, &key(&[tenant, ref_id]))?
        .ok_or_else(|| GoodsError::RedemptionNotFound(ref_id.to_owned()))
}

/// A player's redemptions, newest first.
pub fn redemptions_of(
    src: &impl Reader,
    tenant: &str,
    player: &str,
    limit: usize,
) -> Result<Vec<Redemption>, GoodsError> {
    let p = prefix(&[tenant, player]);
    let mut out = Vec::new();
    for (k, _) in src.scan_raw(PLAYER_REDEMPTIONS, &p, None, limit, true)? {
        let ref_id = engage_store::last_part(&k);
        out.push(redemption(src, tenant, ref_id)?);
    }
    Ok(out)
}

/// When the tenant's redemptions since `since_ms` happened, newest first (at
/// most `cap`; also whether the cap cut the list short). A `ref_id` starts
/// with its second in hex (see `new_ref_id`), so keys sort in time order.
pub fn redemption_times_since(
    src: &impl Reader,
    tenant: &str,
    since_ms: i64,
    cap: usize,
) -> Result<(Vec<i64>, bool), StoreError> {
    src.times_since::<Redemption>(REDEMPTIONS, &prefix(&[tenant]), since_ms, cap, |r| {
        r.time_ms
    })
}

#[cfg(test)]
mod tests {
    use super::first_field;

    #[test]
    fn codes_come_from_the_first_field() {
        assert_eq!(first_field("8830644924\r"), "8830644924");
        assert_eq!(first_field("\u{feff}ABC,10 points"), "ABC");
        assert_eq!(first_field("\"X,1\",y"), "X,1");
        assert_eq!(first_field("   "), "");
    }
}
