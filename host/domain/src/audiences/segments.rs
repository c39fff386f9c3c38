//! Segments: named sets of players, either listed (by e-mail or player
//! id, as Annex Cloud pushes them) or a rule over players (attributes,
//! balances, actions in a window) evaluated when the segment is used.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::players::{self, Player};
use engage_store::{Reader, StoreError, Table, Tx, key, prefix, seq_part};

/// (tenant, segment id) → [`Segment`].
const SEGMENTS: Table = Table::new("audience_segments");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SegmentStatus {
    #[default]
    Active,
    Inactive,
}

/// A rule over players; every condition given must hold.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Profile attributes that must equal these values.
    #[serde(default)]
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// Balance at least this much, per currency.
    #[serde(default)]
    pub min_balance: BTreeMap<String, i64>,
    /// Did this action at least `min_count` times in the last `within_days`.
    pub action: Option<ActionCondition>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionCondition {
    pub name: String,
    #[serde(default = "one")]
    pub min_count: u64,
    pub within_days: u32,
}

fn one() -> u64 {
    1
}

/// A segment as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Segment {
    pub id: u64,
    pub name: String,
    /// "Current Data" or "Past Data".
    #[serde(rename = "type")]
    pub kind: String,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// Listed members: e-mails or player ids.
    pub members: Vec<String>,
    pub rule: Option<Rule>,
    pub status: SegmentStatus,
    pub external_id: Option<String>,
    pub external_name: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// What a client sends to create or replace a segment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentSpec {
    /// 1 to 200 characters, not only spaces.
    #[schema(max_length = 200, pattern = "\\S")]
    pub name: String,
    #[serde(rename = "type", default = "current")]
    #[schema(schema_with = segment_kind)]
    pub kind: String,
    /// Not after `to_ms`.
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// Up to 100,000 e-mails or player ids; a segment lists members or
    /// has a rule (or both).
    #[serde(default)]
    #[schema(max_items = 100000, inline, value_type = Vec<SegmentMember>)]
    pub members: Vec<String>,
    pub rule: Option<Rule>,
    #[serde(default)]
    pub status: SegmentStatus,
    pub external_id: Option<String>,
    pub external_name: Option<String>,
}

/// A listed member in an API document: not empty, not only spaces.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, pattern = "\\S")]
#[allow(dead_code)]
struct SegmentMember(String);

fn segment_kind() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["Current Data", "Past Data"]))
        .default(Some("Current Data".into()))
        .build()
}

fn current() -> String {
    "Current Data".into()
}

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("{0}")]
    Invalid(String),
    #[error("no segment {0}")]
    NotFound(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SegmentSpec {
    fn check(&self) -> Result<(), SegmentError> {
        let bad = |m: &str| Err(SegmentError::Invalid(m.into()));
        if self.name.trim().is_empty() || self.name.chars().count() > 200 {
            return bad("a segment name is 1 to 200 characters");
        }
        if !matches!(self.kind.as_str(), "Current Data" | "Past Data") {
            return bad("type is \"Current Data\" or \"Past Data\"");
        }
        if let (Some(f), Some(t)) = (self.from_ms, self.to_ms)
            && f > t
        {
            return bad("fromDate is after toDate");
        }
        if self.members.len() > 100_000 || self.members.iter().any(|m| m.trim().is_empty()) {
            return bad("members are up to 100,000 non-empty e-mails or player ids");
        }
        if self.members.is_empty() && self.rule.is_none() {
            return bad("a segment lists members or has a rule");
        }
        Ok(())
    }
}

/// The most segments a tenant keeps.
pub const MAX_SEGMENTS: usize = 1000;

pub fn create(
    tx: &mut Tx,
    tenant: &str,
    spec: SegmentSpec,
    now: i64,
) -> Result<Segment, SegmentError> {
    spec.check()?;
    if !engage_store::below_cap(tx, SEGMENTS, &prefix(&[tenant]), MAX_SEGMENTS)? {
        return Err(SegmentError::Invalid(format!(
            "a tenant keeps at most {MAX_SEGMENTS} segments; remove one first"
        )));
    }
    let id = tx.next_seq(tenant, "segment")? + 100; // ids read like Annex's (101, …)
    let s = from_spec(id, spec, now, now);
    tx.put(SEGMENTS, &key(&[tenant, &seq_part(id)]), &s)?;
    Ok(s)
}

pub fn replace(
    tx: &mut Tx,
    tenant: &str,
    id: u64,
    spec: SegmentSpec,
    now: i64,
) -> Result<Segment, SegmentError> {
    spec.check()?;
    let old = get(tx, tenant, id)?.ok_or(SegmentError::NotFound(id))?;
    let s = from_spec(id, spec, old.created_at_ms, now);
    tx.put(SEGMENTS, &key(&[tenant, &seq_part(id)]), &s)?;
    Ok(s)
}

pub fn remove(tx: &mut Tx, tenant: &str, id: u64) -> Result<(), SegmentError> {
    if tx.remove(SEGMENTS, &key(&[tenant, &seq_part(id)]))? {
        Ok(())
    } else {
        Err(SegmentError::NotFound(id))
    }
}

fn from_spec(id: u64, spec: SegmentSpec, created: i64, now: i64) -> Segment {
    let mut members: Vec<String> = spec.members.iter().map(|m| m.trim().to_owned()).collect();
    members.dedup();
    Segment {
        id,
        name: spec.name.trim().to_owned(),
        kind: spec.kind,
        from_ms: spec.from_ms,
        to_ms: spec.to_ms,
        members,
        rule: spec.rule,
        status: spec.status,
        external_id: spec.external_id,
        external_name: spec.external_name,
        created_at_ms: created,
        updated_at_ms: now,
    }
}

pub fn get(src: &impl Reader, tenant: &str, id: u64) -> Result<Option<Segment>, StoreError> {
    src.get(SEGMENTS, &key(&[tenant, &seq_part(id)]))
}

pub fn list(src: &impl Reader, tenant: &str) -> Result<Vec<Segment>, StoreError> {
    Ok(src
        .scan_page::<Segment>(SEGMENTS, &prefix(&[tenant]), None, MAX_SEGMENTS, false)?
        .into_iter()
        .map(|(_, s)| s)
        .collect())
}

/// Whether `p` satisfies `rule` now.
pub fn matches(
    src: &impl Reader,
    tenant: &str,
    rule: &Rule,
    p: &Player,
    now: i64,
) -> Result<bool, StoreError> {
    if rule
        .attributes
        .iter()
        .any(|(k, v)| p.attributes.get(k) != Some(v))
    {
        return Ok(false);
    }
    for (currency, min) in &rule.min_balance {
        if engage_ledger::views::balance(src, tenant, &p.id, currency)? < *min {
            return Ok(false);
        }
    }
    if let Some(a) = &rule.action {
        let since = now - i64::from(a.within_days) * 86_400_000;
        if engage_ledger::views::action_count(src, tenant, &p.id, &a.name, since)? < a.min_count {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether player `p` is in segment `s` now: listed (by id or e-mail), or
/// matching its rule.
pub fn contains(
    src: &impl Reader,
    tenant: &str,
    s: &Segment,
    p: &Player,
    now: i64,
) -> Result<bool, StoreError> {
    if s.status == SegmentStatus::Inactive {
        return Ok(false);
    }
    let listed = s.members.iter().any(|m| {
        *m == p.id
            || p.email
                .as_deref()
                .is_some_and(|e| e.eq_ignore_ascii_case(m))
    });
    if listed {
        return Ok(true);
    }
    match &s.rule {
        Some(r) => matches(src, tenant, r, p, now),
        None => Ok(false),
    }
}

/// The segment's members now, as players (a page at a time from `after`).
pub fn members(
    src: &impl Reader,
    tenant: &str,
    s: &Segment,
    after: Option<&str>,
    limit: usize,
    now: i64,
) -> Result<Vec<Player>, StoreError> {
    let mut out = Vec::new();
    let mut cursor = after.map(str::to_owned);
    loop {
        let page = players::list(src, tenant, cursor.as_deref(), 500)?;
        let Some(last) = page.last() else { break };
        cursor = Some(last.id.clone());
        let n = page.len();
        for p in page {
            if contains(src, tenant, s, &p, now)? {
                out.push(p);
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
        if n < 500 {
            break;
        }
    }
    Ok(out)
}
