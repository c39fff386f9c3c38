//! Campaigns: a message template sent on a channel to an audience (a
//! segment, or everyone eligible) when a trigger fires — a loyalty action
//! (or a balance reached through one), a cron schedule, or a send-now.
//!
//! A trigger only writes jobs into the campaign queue, in the same
//! transaction as what caused it (the action, the schedule's slot). The
//! worker ([`engine`]) turns each (campaign, person, trigger) job into at
//! most one message: eligibility, segment, frequency cap and the record
//! that it was done are checked and written in the same transaction as
//! the message, so a retry or a crash cannot send it twice. Quiet hours
//! defer a marketing message to the end of the quiet window.

pub mod cron;
pub mod engine;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use engage_ledger::views::time_part;
use engage_messaging::{self as messaging, Kind};
use engage_store::ids::valid_id;
use engage_store::queue::Queue;
use engage_store::{Reader, StoreError, Table, Tx, key, prefix};

use crate::events::{self, LoyaltyEvent};

/// (tenant, campaign id) → [`Campaign`].
const CAMPAIGNS: Table = Table::new("campaigns");
/// (next slot time, tenant, campaign) → nothing: active scheduled
/// campaigns by their next slot, so firing reads only what is due.
const SLOTS: Table = Table::new("campaign_slots");
/// (due time, tenant, campaign id, job id) → [`Job`].
/// Campaign jobs: claimed with a lease (a worker that dies gives its jobs
/// back when the lease ends), removed in the transaction of their effect.
const QUEUE: Queue = Queue::new("campaign_job_queue");
/// (tenant, campaign id, player, trigger key) → nothing: done.
const DONE: Table = Table::new("campaign_done");
/// (tenant, player) → send times (ms) of campaign marketing messages in
/// the cap window.
const CAPS: Table = Table::new("campaign_caps");
/// (tenant, campaign id, counter) → count.
const STATS: Table = Table::new("campaign_stats");
/// tenant → [`Settings`].
const SETTINGS: Table = Table::new("campaign_settings");

/// What fires a campaign.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Trigger {
    /// A loyalty event: an action by name (`redeemed` for a redemption),
    /// with parameter values that must match, and optionally a balance the
    /// player must have reached (then once per player).
    Event {
        #[schema(value_type = engage_store::ids::ClientId)]
        name: String,
        #[serde(default)]
        params: BTreeMap<String, String>,
        min_balance: Option<Threshold>,
    },
    /// A cron expression (5 fields, or 6 with seconds) in a time zone: an
    /// IANA name (`Europe/Berlin`) or a UTC offset (`+0700`).
    Schedule {
        #[schema(schema_with = cron::schema)]
        cron: String,
        #[serde(default = "utc")]
        #[schema(value_type = engage_messaging::gateway::accounts::TimeZoneName)]
        timezone: String,
    },
    /// Only when asked: `POST /v1/campaigns/{id}/run`.
    Manual,
}

fn utc() -> String {
    "+0000".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    pub currency: String,
    pub amount: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    #[default]
    Active,
    Paused,
}

/// A campaign as clients define it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CampaignSpec)]
pub struct Spec {
    /// Not empty, not only spaces.
    #[schema(pattern = "\\S")]
    pub name: String,
    /// Rendered by the tenant's template binding with the player's fields
    /// (`{{first_name}}`, …) and attributes. Not empty, not only spaces.
    #[schema(pattern = "\\S")]
    pub template: String,
    #[serde(default = "sms")]
    #[schema(schema_with = engage_messaging::channel_schema)]
    pub channel: String,
    /// An e-mail campaign's subject (and only an e-mail campaign's), a
    /// template rendered like `template`: 1 to 500 characters, not only
    /// spaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "\\S", max_length = 500)]
    pub subject: Option<String>,
    #[serde(default = "marketing")]
    pub kind: Kind,
    /// A segment id; none: every player eligible for the kind.
    pub segment: Option<u64>,
    pub trigger: Trigger,
    #[serde(default)]
    pub status: CampaignStatus,
}

fn sms() -> String {
    "sms".into()
}

fn marketing() -> Kind {
    Kind::Marketing
}

/// A campaign as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Campaign {
    pub id: String,
    #[serde(flatten)]
    pub spec: Spec,
    /// The schedule's last slot that fired.
    pub last_slot_ms: Option<i64>,
    /// The schedule's next slot.
    pub next_slot_ms: Option<i64>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// Quiet hours and frequency caps, per tenant.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
#[schema(as = MarketingSettings)]
pub struct Settings {
    /// The zone (IANA name or UTC offset) for people without a `timezone`
    /// attribute that is one.
    #[schema(value_type = Option<engage_messaging::gateway::accounts::TimeZoneName>)]
    pub timezone: Option<String>,
    /// `HH:MM` to `HH:MM` in the recipient's time: marketing waits.
    pub quiet_hours: Option<QuietHours>,
    /// At most `max` campaign marketing messages per person in `hours`.
    pub frequency_cap: Option<Cap>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    /// `HH:MM`, not the same as `end`.
    #[schema(pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    pub start: String,
    #[schema(pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    pub end: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Cap {
    #[schema(minimum = 1)]
    pub max: u32,
    /// 1 to 744 (31 days).
    #[serde(default = "day")]
    #[schema(minimum = 1, maximum = 744)]
    pub hours: u32,
}

fn day() -> u32 {
    24
}

/// A job in the campaign queue.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "job", rename_all = "snake_case")]
pub enum Job {
    /// Consider one person for one trigger.
    Person { player: String, trigger: String },
    /// Expand the audience into person jobs, a page at a time.
    Audience {
        trigger: String,
        after: Option<String>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    #[error("{0}")]
    Invalid(String),
    #[error("no campaign `{0}`")]
    NotFound(String),
    /// The segment a campaign names does not exist.
    #[error("no segment {0}")]
    NoSegment(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `HH:MM` as minutes after midnight.
pub fn minutes_of(hhmm: &str) -> Option<i64> {
    let (h, m) = hhmm.split_once(':')?;
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    ((0..24).contains(&h) && (0..60).contains(&m) && hhmm.len() == 5).then_some(h * 60 + m)
}

impl Settings {
    pub fn validate(&self) -> Result<(), CampaignError> {
        if let Some(tz) = &self.timezone
            && let Err(e) = engage_time::Zone::parse(tz)
        {
            return Err(CampaignError::Invalid(format!("timezone {e}")));
        }
        if let Some(q) = &self.quiet_hours
            && (minutes_of(&q.start).is_none() || minutes_of(&q.end).is_none() || q.start == q.end)
        {
            return Err(CampaignError::Invalid(
                "quiet_hours are two different times HH:MM".into(),
            ));
        }
        if let Some(c) = &self.frequency_cap
            && (c.max == 0 || c.hours == 0 || c.hours > 24 * 31)
        {
            return Err(CampaignError::Invalid(
                "frequency_cap is at least 1 message in 1 to 744 hours".into(),
            ));
        }
        Ok(())
    }
}

/// Done-markers of a campaign that no longer exists are deleted (while it
/// exists they keep "once per person" true).
pub const DONE_SWEEP: engage_store::sweeper::Sweep = engage_store::sweeper::Sweep {
    name: "campaign done-markers",
    table: DONE,
    dead: |tx, look| {
        let mut parts = engage_store::parts(look.key);
        let (Some(tenant), Some(campaign)) = (parts.next(), parts.next()) else {
            return Ok(true);
        };
        Ok(tx.get_raw(CAMPAIGNS, &key(&[tenant, campaign]))?.is_none())
    },
    forget: None,
};

/// A person's cap window is deleted once it holds no send inside the
/// tenant's cap (or the tenant has no cap any more).
pub const CAP_SWEEP: engage_store::sweeper::Sweep = engage_store::sweeper::Sweep {
    name: "campaign cap windows",
    table: CAPS,
    dead: |tx, look| {
        let tenant = engage_store::parts(look.key).next().unwrap_or_default();
        let Some(cap) = settings(tx, tenant)?.frequency_cap else {
            return Ok(true);
        };
        let since = look.now_ms - i64::from(cap.hours) * 3_600_000;
        let times: Vec<i64> = serde_json::from_slice(look.raw).unwrap_or_default();
        Ok(times.iter().all(|t| *t <= since))
    },
    forget: None,
};

pub fn settings(src: &impl Reader, tenant: &str) -> Result<Settings, StoreError> {
    Ok(src.get(SETTINGS, &key(&[tenant]))?.unwrap_or_default())
}

pub fn set_settings(tx: &mut Tx, tenant: &str, s: &Settings) -> Result<(), StoreError> {
    tx.put(SETTINGS, &key(&[tenant]), s)
}

impl Spec {
    fn check(&self, src: &impl Reader, tenant: &str) -> Result<(), CampaignError> {
        let bad = |m: String| Err(CampaignError::Invalid(m));
        if self.name.trim().is_empty() || self.template.trim().is_empty() {
            return bad("a campaign has a name and a template".into());
        }
        engage_messaging::known_channel(&self.channel).map_err(CampaignError::Invalid)?;
        match (&self.subject, self.channel.as_str()) {
            (None, "email") => return bad("an e-mail campaign has a `subject`".into()),
            (Some(_), "email") => {}
            (Some(_), _) => return bad("only an e-mail campaign has a `subject`".into()),
            (None, _) => {}
        }
        if self
            .subject
            .as_ref()
            .is_some_and(|s| s.trim().is_empty() || s.chars().count() > 500)
        {
            return bad("a subject is 1 to 500 characters, not only spaces".into());
        }
        if let Some(id) = self.segment
            && crate::audiences::segments::get(src, tenant, id)?.is_none()
        {
            return Err(CampaignError::NoSegment(id));
        }
        match &self.trigger {
            Trigger::Event { name, .. } if !valid_id(name) => {
                bad("an event name is 1 to 128 characters".into())
            }
            Trigger::Schedule { cron, timezone } => {
                cron::Cron::parse(cron).map_err(CampaignError::Invalid)?;
                if let Err(e) = engage_time::Zone::parse(timezone) {
                    return bad(format!("timezone {e}"));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The schedule's first slot after `after`.
    fn next_slot(&self, after: i64) -> Option<i64> {
        match &self.trigger {
            Trigger::Schedule { cron, timezone } => {
                let zone = engage_messaging::gateway::accounts::zone(timezone);
                cron::Cron::parse(cron).ok()?.next_after(after, &zone)
            }
            _ => None,
        }
    }
}

/// The event a campaign listens to, if its trigger is one.
fn trigger_event(spec: &Spec) -> Option<&str> {
    match &spec.trigger {
        Trigger::Event { name, .. } => Some(name),
        _ => None,
    }
}

/// Create or replace campaign `id`.
/// The most campaigns a tenant keeps.
pub const MAX_CAMPAIGNS: usize = 1000;

pub fn put(
    tx: &mut Tx,
    tenant: &str,
    id: &str,
    spec: Spec,
    now: i64,
) -> Result<Campaign, CampaignError> {
    if !valid_id(id) {
        return Err(CampaignError::Invalid(
            "a campaign id is 1 to 128 characters".into(),
        ));
    }
    spec.check(tx, tenant)?;
    let old = get(tx, tenant, id)?;
    if old.is_none() && !engage_store::below_cap(tx, CAMPAIGNS, &prefix(&[tenant]), MAX_CAMPAIGNS)?
    {
        return Err(CampaignError::Invalid(format!(
            "a tenant keeps at most {MAX_CAMPAIGNS} campaigns; remove one first"
        )));
    }
    if let Some(old) = &old
        && let Some(name) = trigger_event(&old.spec)
    {
        events::unlisten(tx, tenant, name, id)?;
    }
    if let Some(name) = trigger_event(&spec) {
        events::listen(tx, tenant, name, id)?;
    }
    let same_schedule = old.as_ref().is_some_and(|o| o.spec.trigger == spec.trigger);
    let last_slot_ms = if same_schedule {
        old.as_ref().and_then(|o| o.last_slot_ms)
    } else {
        None
    };
    let c = Campaign {
        id: id.to_owned(),
        next_slot_ms: spec.next_slot(last_slot_ms.unwrap_or(now)),
        spec,
        last_slot_ms,
        created_at_ms: old.as_ref().map(|o| o.created_at_ms).unwrap_or(now),
        updated_at_ms: now,
    };
    save(tx, tenant, old.as_ref(), &c)?;
    Ok(c)
}

fn slot_key(tenant: &str, c: &Campaign) -> Option<String> {
    if c.spec.status != CampaignStatus::Active {
        return None;
    }
    c.next_slot_ms.map(|n| key(&[&time_part(n), tenant, &c.id]))
}

/// Store `c` (which was `old`), keeping the slot index in step.
pub(crate) fn save(
    tx: &mut Tx,
    tenant: &str,
    old: Option<&Campaign>,
    c: &Campaign,
) -> Result<(), StoreError> {
    if let Some(k) = old.and_then(|o| slot_key(tenant, o)) {
        tx.remove(SLOTS, &k)?;
    }
    if let Some(k) = slot_key(tenant, c) {
        tx.put_raw(SLOTS, &k, b"")?;
    }
    tx.put(CAMPAIGNS, &key(&[tenant, &c.id]), c)
}

/// The (tenant, campaign) of the schedules due at `now`, earliest first,
/// at most `limit`.
pub(crate) fn due_slots(
    src: &impl Reader,
    now: i64,
    limit: usize,
) -> Result<Vec<(String, String)>, StoreError> {
    let bound = prefix(&[&time_part(now)]);
    Ok(src
        .scan_raw(SLOTS, "", None, limit, false)?
        .into_iter()
        .take_while(|(k, _)| k.as_str() < bound.as_str() || k.starts_with(&bound))
        .filter_map(|(k, _)| {
            let mut p = engage_store::parts(&k);
            let (_, t, c) = (p.next()?, p.next()?, p.next()?);
            Some((t.to_owned(), c.to_owned()))
        })
        .collect())
}

/// Put every scheduled campaign in the slot index (a store written before
/// the index existed); a page of `limit` campaigns after `after`, and the
/// cursor to go on from.
pub(crate) fn index_slots(
    tx: &mut Tx,
    after: Option<&str>,
    limit: usize,
) -> Result<Option<String>, StoreError> {
    let page = tx.scan_page::<Campaign>(CAMPAIGNS, "", after, limit, false)?;
    let last = page.last().map(|(k, _)| k.clone());
    for (k, c) in &page {
        if let Some(tenant) = engage_store::parts(k).next()
            && let Some(sk) = slot_key(tenant, c)
        {
            tx.put_raw(SLOTS, &sk, b"")?;
        }
    }
    Ok(if page.len() < limit { None } else { last })
}

pub fn get(src: &impl Reader, tenant: &str, id: &str) -> Result<Option<Campaign>, StoreError> {
    src.get(CAMPAIGNS, &key(&[tenant, id]))
}

pub fn list(src: &impl Reader, tenant: &str) -> Result<Vec<Campaign>, StoreError> {
    Ok(src
        .scan_page::<Campaign>(CAMPAIGNS, &prefix(&[tenant]), None, MAX_CAMPAIGNS, false)?
        .into_iter()
        .map(|(_, c)| c)
        .collect())
}

/// Remove a campaign; its queued jobs are dropped when the worker meets them.
pub fn remove(tx: &mut Tx, tenant: &str, id: &str) -> Result<(), CampaignError> {
    let c = get(tx, tenant, id)?.ok_or_else(|| CampaignError::NotFound(id.into()))?;
    if let Some(name) = trigger_event(&c.spec) {
        events::unlisten(tx, tenant, name, id)?;
    }
    if let Some(k) = slot_key(tenant, &c) {
        tx.remove(SLOTS, &k)?;
    }
    tx.remove(CAMPAIGNS, &key(&[tenant, id]))?;
    Ok(())
}

/// A job with the campaign it is for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Queued {
    pub tenant: String,
    pub campaign: String,
    pub job: Job,
}

fn enqueue(
    tx: &mut Tx,
    tenant: &str,
    campaign: &str,
    due: i64,
    job: &Job,
) -> Result<(), StoreError> {
    let queued = Queued {
        tenant: tenant.to_owned(),
        campaign: campaign.to_owned(),
        job: job.clone(),
    };
    QUEUE.push(tx, due, &queued)
}

/// Send-now: queue the whole audience once under `run`.
pub fn run_now(
    tx: &mut Tx,
    tenant: &str,
    id: &str,
    run: &str,
    now: i64,
) -> Result<(), CampaignError> {
    let c = get(tx, tenant, id)?.ok_or_else(|| CampaignError::NotFound(id.into()))?;
    let job = Job::Audience {
        trigger: format!("run:{run}"),
        after: None,
    };
    enqueue(tx, tenant, &c.id, now, &job)?;
    Ok(())
}

/// A loyalty event happened: queue a job for every active campaign it
/// triggers (inside the transaction that marks the event handled). The
/// event's id is the trigger key unless a balance threshold makes it once
/// per player; thresholds compare the balances the event carries.
pub fn on_event(tx: &mut Tx, e: &LoyaltyEvent, now: i64) -> Result<(), StoreError> {
    let (tenant, player, params, id) = (e.tenant.as_str(), e.player.as_str(), &e.params, &e.id);
    let ids = events::listeners(tx, tenant, &e.name)?;
    for cid in ids {
        let Some(c) = get(tx, tenant, &cid)? else {
            continue;
        };
        if c.spec.status != CampaignStatus::Active {
            continue;
        }
        let Trigger::Event {
            params: want,
            min_balance,
            ..
        } = &c.spec.trigger
        else {
            continue;
        };
        if want.iter().any(|(k, v)| params.get(k) != Some(v)) {
            continue;
        }
        let trigger = match min_balance {
            Some(t) => {
                if e.balances.get(&t.currency).copied().unwrap_or(0) < t.amount {
                    continue;
                }
                format!("balance:{}:{}", t.currency, t.amount)
            }
            None => format!("event:{id}"),
        };
        let job = Job::Person {
            player: player.to_owned(),
            trigger,
        };
        enqueue(tx, tenant, &cid, now, &job)?;
    }
    Ok(())
}

/// A campaign's counters, and its messages' outcomes so far.
#[derive(Debug, Clone, Serialize, Default, utoipa::ToSchema)]
#[schema(as = CampaignStats)]
pub struct Stats {
    pub targeted: u64,
    pub skipped: BTreeMap<String, u64>,
    pub deferred_quiet_hours: u64,
    pub sent: u64,
    pub delivered: u64,
    pub failed: u64,
    /// Sent, but no final report came in time.
    pub unknown: u64,
    /// Not final yet (queued, scheduled, sent and waiting for a report).
    pub pending: u64,
}

fn bump(
    tx: &mut Tx,
    tenant: &str,
    campaign: &str,
    counter: &str,
    by: u64,
) -> Result<(), StoreError> {
    let k = key(&[tenant, campaign, counter]);
    let n = tx.get_u64(STATS, &k)? + by;
    tx.put_u64(STATS, &k, n)
}

pub fn stats(src: &impl Reader, tenant: &str, campaign: &str) -> Result<Stats, StoreError> {
    let mut s = Stats::default();
    // A handful of named counters per campaign.
    for (k, v) in src.scan_raw(STATS, &prefix(&[tenant, campaign]), None, 64, false)? {
        let n = <[u8; 8]>::try_from(v.as_slice())
            .map(u64::from_le_bytes)
            .unwrap_or(0);
        let counter = engage_store::last_part(&k);
        match counter {
            "targeted" => s.targeted = n,
            "sent" => s.sent = n,
            "deferred_quiet_hours" => s.deferred_quiet_hours = n,
            other => {
                if let Some(reason) = other.strip_prefix("skipped_") {
                    s.skipped.insert(reason.to_owned(), n);
                }
            }
        }
    }
    let (delivered, failed, unknown) = messaging::outcomes(src, tenant, "campaign", campaign)?;
    s.delivered = delivered;
    s.failed = failed;
    s.unknown = unknown;
    s.pending = s.sent.saturating_sub(delivered + failed + unknown);
    Ok(s)
}
