//! Actions: something a player did, judged by the tenant's `rules` plugin,
//! with every effect applied in one transaction.
//!
//! The plugin runs on a snapshot. Its outcome (ledger grants, badges,
//! messages, custom events) is then committed in one write job together
//! with the action's record, the player's action counters and the plugin's
//! key-value writes, after checking that nothing the plugin read has changed
//! since. If something has, the plugin runs again on fresh data, so a
//! cooldown or a daily cap holds under any number of concurrent requests.
//!
//! A plugin says it does not know an action by answering an empty outcome
//! with an empty trace: the action is refused and not recorded
//! ([`ActionError::UnknownAction`]). A known action that matched no rule (a
//! condition failed, a cap was reached) is recorded with no effects.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::players;
use engage_ledger::views;
use engage_ledger::{self as ledger, LedgerError, Posting};
use engage_runtime::io::{Action, Outcome, Param, TraceEntry};
use engage_runtime::judged::{Judgement, judged_commit};
use engage_runtime::{Input, Output, Plugins, PluginsError};
use engage_store::idempotency::{self, Guarded};
use engage_store::ids::valid_id;
use engage_store::{Reader, Store, StoreError, Table, Tx, key, prefix, seq_part};

/// (tenant, action sequence) → [`ActionRecord`].
const ACTIONS: Table = Table::new("actions");
/// (tenant, player, action) → how many times (u64).
const ACTION_COUNTS: Table = Table::new("action_counts");
/// (tenant, player, badge) → how many times earned (u64).
const BADGES: Table = Table::new("badges");

/// The most different action names one player does, and the most different
/// badges one player holds: what a player's counters and badges list is
/// bounded by. Checked on the snapshot an action is judged on, so two
/// concurrent first uses may pass it by one each; reads stop at it.
pub const MAX_NAMES: usize = 1000;
/// (tenant, player) → the player's latest [`LastAction`].
const LAST_ACTION: Table = Table::new("action_last");

/// tenant → [`Limits`].
const SETTINGS: Table = Table::new("action_settings");

/// What one action may grant, per tenant. A rules plugin (the tenant's own,
/// or one with a bug) cannot mint more than this in one action, whatever it
/// answers: the action is refused and nothing is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ActionLimits)]
pub struct Limits {
    /// The most grant entries one action may carry.
    #[schema(minimum = 1, maximum = 1000)]
    pub max_grants: u32,
    /// The most one action may grant in any one currency, in total.
    #[schema(minimum = 1, maximum = 1000000000000i64)]
    pub max_total_per_currency: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_grants: 64,
            max_total_per_currency: 1_000_000_000,
        }
    }
}

impl Limits {
    fn validate(&self) -> Result<(), ActionError> {
        if self.max_grants == 0 || self.max_grants > 1000 {
            return Err(ActionError::Invalid("max_grants must be 1..=1000".into()));
        }
        if self.max_total_per_currency <= 0 || self.max_total_per_currency > ledger::MAX_AMOUNT {
            return Err(ActionError::Invalid(format!(
                "max_total_per_currency must be 1..={}",
                ledger::MAX_AMOUNT
            )));
        }
        Ok(())
    }
}

/// The tenant's action limits (the defaults until set).
pub fn limits(src: &impl Reader, tenant: &str) -> Result<Limits, StoreError> {
    Ok(src.get(SETTINGS, tenant)?.unwrap_or_default())
}

/// Replace the tenant's action limits.
pub async fn set_limits(store: &Store, tenant: &str, l: Limits) -> Result<Limits, ActionError> {
    l.validate()?;
    let t = tenant.to_owned();
    store
        .write(move |tx| {
            tx.put(SETTINGS, &t, &l)?;
            Ok::<_, ActionError>(l)
        })
        .await
}

/// What can go wrong with an action.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("{0}")]
    Invalid(String),
    #[error("player `{0}` does not exist; register the player first")]
    PlayerNotFound(String),
    #[error("no rule knows the action `{0}`")]
    UnknownAction(String),
    #[error("the rules plugin answered something the ledger refuses: {0}")]
    BadOutcome(String),
    #[error("{0}; nothing was granted (the tenant's limits are at /v1/actions/settings)")]
    GrantLimit(String),
    #[error("the data kept changing under this action; try again")]
    Contention,
    #[error(transparent)]
    Plugin(#[from] PluginsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The plugin's reads changed before commit (internal: re-run).
    #[error("conflict")]
    Retry,
}

/// An action as a client reports it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    #[schema(value_type = engage_store::ids::ClientId)]
    pub player: String,
    #[schema(value_type = engage_store::ids::ClientId)]
    pub action: String,
    /// Up to 64 parameters, each a string (at most 4096 characters), a
    /// number or a boolean, under a name of 1 to 128 characters.
    #[serde(default)]
    #[schema(schema_with = params_schema)]
    pub params: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    #[schema(max_length = 2048)]
    pub url: Option<String>,
}

/// `params` in an API document, exactly as [`ActionRequest::validate`]
/// reads them.
fn params_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Type};
    let value = OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(MAX_PARAM_LEN)),
        )
        .item(ObjectBuilder::new().schema_type(Type::Number))
        .item(ObjectBuilder::new().schema_type(Type::Boolean));
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .max_properties(Some(MAX_PARAMS))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(128)),
        ))
        .additional_properties(Some(AdditionalProperties::RefOr(value.into())))
        .build()
}

/// The most parameters an action carries, and the longest string value.
const MAX_PARAMS: usize = 64;
const MAX_PARAM_LEN: usize = 4096;

/// A grant as applied.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Granted {
    pub currency: String,
    pub amount: i64,
    pub reason: String,
    /// The ledger entry; none in a dry run.
    pub entry_id: Option<String>,
    pub balance: i64,
}

/// A message the action asked for; the messaging engine sends it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct MessageRequest {
    pub channel: String,
    pub to: Option<String>,
    pub template: String,
    pub vars: BTreeMap<String, String>,
}

/// An application event a rule emitted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct CustomEvent {
    pub name: String,
    pub data: String,
}

/// What is stored for every action done.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ActionRecord {
    /// None in a dry run.
    pub id: Option<String>,
    pub player: String,
    pub action: String,
    pub params: BTreeMap<String, String>,
    pub url: Option<String>,
    pub time_ms: i64,
    /// Whether any rule had an effect.
    pub matched: bool,
    pub grants: Vec<Granted>,
    pub badges: Vec<String>,
    pub messages: Vec<MessageRequest>,
    pub custom_events: Vec<CustomEvent>,
    pub plugin: String,
    pub plugin_version: u32,
}

/// What happened, as the API answers it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    RewardReceived {
        currency: String,
        amount: i64,
        reason: String,
        entry_id: Option<String>,
        balance: i64,
    },
    BadgeEarned {
        badge: String,
        /// How many times the player has it now.
        count: u64,
    },
    MessageRequested {
        channel: String,
        to: Option<String>,
        template: String,
    },
    Custom {
        name: String,
        data: String,
    },
}

/// The answer to an action.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[schema(as = ActionResult)]
pub struct Performed {
    pub action: ActionRecord,
    pub events: Vec<Event>,
    pub trace: Vec<TraceEntry>,
    pub dry_run: bool,
    /// The plugin kind of failure when the first-party default answered.
    pub fallback: Option<String>,
    /// How many times the plugin ran (more than 1 after a conflict).
    pub evaluations: u32,
}

impl ActionRequest {
    fn validate(&self) -> Result<BTreeMap<String, String>, ActionError> {
        if !valid_id(&self.player) {
            return Err(ActionError::Invalid(
                "`player` must be 1 to 128 characters without control characters".into(),
            ));
        }
        if !valid_id(&self.action) {
            return Err(ActionError::Invalid(
                "`action` must be 1 to 128 characters without control characters".into(),
            ));
        }
        if self.url.as_ref().is_some_and(|u| u.chars().count() > 2048) {
            return Err(ActionError::Invalid(
                "`url` is at most 2048 characters".into(),
            ));
        }
        if self.params.len() > MAX_PARAMS {
            return Err(ActionError::Invalid("at most 64 `params`".into()));
        }
        self.params
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(n) => n.to_string(),
                    serde_json::Value::Bool(b) => b.to_string(),
                    _ => {
                        return Err(ActionError::Invalid(format!(
                            "parameter `{k}` must be a string, number or boolean"
                        )));
                    }
                };
                if k.is_empty() || k.chars().count() > 128 || v.chars().count() > MAX_PARAM_LEN {
                    return Err(ActionError::Invalid(format!(
                        "parameter `{k}`: names are 1 to 128 characters, values at most 4096"
                    )));
                }
                Ok((k.clone(), v))
            })
            .collect()
    }
}

/// How to perform an action.
#[derive(Debug, Clone, Default)]
pub struct Mode {
    /// Evaluate and answer, change nothing.
    pub dry_run: bool,
    /// Replay the first answer when this key was seen.
    pub idem: Option<idempotency::Call>,
}

/// Run the action through the tenant's rules plugin and commit its effects.
pub async fn perform(
    plugins: &Arc<Plugins>,
    store: &Store,
    tenant: &str,
    req: &ActionRequest,
    now_ms: i64,
    request_id: &str,
    mode: Mode,
) -> Result<Guarded<Performed>, ActionError> {
    let Mode { dry_run, idem } = mode;
    let params = req.validate()?;
    let action = Action {
        player: req.player.clone(),
        name: req.action.clone(),
        params: params
            .iter()
            .map(|(k, v)| Param {
                name: k.clone(),
                value: v.clone(),
            })
            .collect(),
        url: req.url.clone(),
        time_ms: now_ms,
    };
    let input = Input::Evaluate { action };
    let judge = |snapshot: Arc<engage_store::Snapshot>, attempt: u32| {
        if !players::exists(snapshot.as_ref(), tenant, &req.player)? {
            return Err(ActionError::PlayerNotFound(req.player.clone()));
        }
        let called = plugins.call(tenant, &input, Some(snapshot.clone()), now_ms, request_id)?;
        let Output::Outcome(outcome) = called.output else {
            return Err(ActionError::BadOutcome("not an outcome".into()));
        };
        if outcome_is_empty(&outcome) && outcome.trace.is_empty() {
            return Err(ActionError::UnknownAction(req.action.clone()));
        }
        check_outcome(&outcome, &limits(snapshot.as_ref(), tenant)?)?;
        let record = record_of(
            req,
            &params,
            now_ms,
            &outcome,
            &called.plugin,
            called.version,
        );
        let fallback = called.fallback.as_ref().map(|e| e.kind().to_owned());
        if dry_run {
            let (record, events) = preview(snapshot.as_ref(), tenant, record, &outcome)?;
            return Ok(Judgement::Answer(Performed {
                action: record,
                events,
                trace: outcome.trace,
                dry_run: true,
                fallback,
                evaluations: attempt,
            }));
        }
        Ok(Judgement::Commit {
            effects: called.effects,
            payload: (record, outcome, fallback),
        })
    };
    let t = tenant.to_owned();
    let job = move |tx: &mut Tx,
                    (record, outcome, fallback): &(ActionRecord, Outcome, Option<String>),
                    attempt: u32| {
        if !players::exists(tx, &t, &record.player)? {
            return Err(ActionError::PlayerNotFound(record.player.clone()));
        }
        let (record, events) = commit(tx, &t, record.clone(), outcome)?;
        // What reacts to it (campaigns) learns of it from this event.
        crate::events::record(
            tx,
            &t,
            &record.player,
            &record.action,
            &record.params,
            record.id.as_deref().unwrap_or_default(),
            now_ms,
        )?;
        Ok(Performed {
            action: record,
            events,
            trace: outcome.trace.clone(),
            dry_run: false,
            fallback: fallback.clone(),
            evaluations: attempt,
        })
    };
    judged_commit(store, tenant, idem, (now_ms, 200), judge, job)
        .await?
        .ok_or(ActionError::Contention)
}

/// What is stored of an action the rules judged.
fn record_of(
    req: &ActionRequest,
    params: &BTreeMap<String, String>,
    now_ms: i64,
    outcome: &Outcome,
    plugin: &str,
    plugin_version: u32,
) -> ActionRecord {
    ActionRecord {
        id: None,
        player: req.player.clone(),
        action: req.action.clone(),
        params: params.clone(),
        url: req.url.clone(),
        time_ms: now_ms,
        matched: !outcome_is_empty(outcome),
        grants: Vec::new(),
        badges: outcome.badges.clone(),
        messages: outcome
            .messages
            .iter()
            .map(|m| MessageRequest {
                channel: m.channel.clone(),
                to: m.to.clone(),
                template: m.template.clone(),
                vars: m
                    .vars
                    .iter()
                    .map(|p| (p.name.clone(), p.value.clone()))
                    .collect(),
            })
            .collect(),
        custom_events: outcome
            .events
            .iter()
            .map(|e| CustomEvent {
                name: e.name.clone(),
                data: e.data.clone(),
            })
            .collect(),
        plugin: plugin.to_owned(),
        plugin_version,
    }
}

fn outcome_is_empty(o: &Outcome) -> bool {
    o.grants.is_empty() && o.badges.is_empty() && o.messages.is_empty() && o.events.is_empty()
}

fn check_outcome(o: &Outcome, limits: &Limits) -> Result<(), ActionError> {
    if o.grants.len() > limits.max_grants as usize {
        return Err(ActionError::GrantLimit(format!(
            "the rules answered {} grants; one action may carry at most {}",
            o.grants.len(),
            limits.max_grants
        )));
    }
    let mut totals: BTreeMap<&str, i64> = BTreeMap::new();
    for g in &o.grants {
        if !ledger::valid_currency(&g.currency) {
            return Err(ActionError::BadOutcome(format!(
                "grant in `{}`: {}",
                g.currency,
                LedgerError::InvalidCurrency
            )));
        }
        if g.amount <= 0 || g.amount > ledger::MAX_AMOUNT {
            return Err(ActionError::BadOutcome(format!(
                "grant of {} {}: {}",
                g.amount,
                g.currency,
                LedgerError::InvalidAmount
            )));
        }
        let total = totals.entry(&g.currency).or_default();
        *total = total.saturating_add(g.amount);
        if *total > limits.max_total_per_currency {
            return Err(ActionError::GrantLimit(format!(
                "the rules granted more than {} {} in one action",
                limits.max_total_per_currency, g.currency
            )));
        }
    }
    if o.badges.iter().any(|b| !valid_id(b)) {
        return Err(ActionError::BadOutcome(
            "a badge name is 1 to 128 characters without control characters".into(),
        ));
    }
    Ok(())
}

fn message_events(record: &ActionRecord) -> impl Iterator<Item = Event> + '_ {
    record
        .messages
        .iter()
        .map(|m| Event::MessageRequested {
            channel: m.channel.clone(),
            to: m.to.clone(),
            template: m.template.clone(),
        })
        .chain(record.custom_events.iter().map(|e| Event::Custom {
            name: e.name.clone(),
            data: e.data.clone(),
        }))
}

/// What the action would do, computed on a snapshot.
fn preview(
    src: &impl Reader,
    tenant: &str,
    mut record: ActionRecord,
    outcome: &Outcome,
) -> Result<(ActionRecord, Vec<Event>), ActionError> {
    let mut events = Vec::new();
    let player_prefix = prefix(&[tenant, &record.player]);
    if src
        .get_raw(
            ACTION_COUNTS,
            &key(&[tenant, &record.player, &record.action]),
        )?
        .is_none()
        && !engage_store::below_cap(src, ACTION_COUNTS, &player_prefix, MAX_NAMES)?
    {
        return Err(ActionError::Invalid(format!(
            "a player does at most {MAX_NAMES} different actions"
        )));
    }
    let mut balances: BTreeMap<String, i64> = BTreeMap::new();
    for g in &outcome.grants {
        let b = match balances.get(&g.currency) {
            Some(b) => *b,
            None => engage_ledger::views::balance(src, tenant, &record.player, &g.currency)?,
        };
        let b = ledger::add_to_balance(b, g.amount)
            .map_err(|e| ActionError::BadOutcome(e.to_string()))?;
        balances.insert(g.currency.clone(), b);
        record.grants.push(Granted {
            currency: g.currency.clone(),
            amount: g.amount,
            reason: g.reason.clone(),
            entry_id: None,
            balance: b,
        });
    }
    for b in &outcome.badges {
        let count = src.get_u64(BADGES, &key(&[tenant, &record.player, b]))? + 1;
        if count == 1 && !engage_store::below_cap(src, BADGES, &player_prefix, MAX_NAMES)? {
            return Err(ActionError::BadOutcome(format!(
                "a player holds at most {MAX_NAMES} different badges"
            )));
        }
        events.push(Event::BadgeEarned {
            badge: b.clone(),
            count,
        });
    }
    let mut all: Vec<Event> = record
        .grants
        .iter()
        .map(|g| Event::RewardReceived {
            currency: g.currency.clone(),
            amount: g.amount,
            reason: g.reason.clone(),
            entry_id: None,
            balance: g.balance,
        })
        .collect();
    all.append(&mut events);
    all.extend(message_events(&record));
    Ok((record, all))
}

/// Apply the outcome and write the record (checks first, then writes).
fn commit(
    tx: &mut Tx,
    tenant: &str,
    mut record: ActionRecord,
    outcome: &Outcome,
) -> Result<(ActionRecord, Vec<Event>), ActionError> {
    let seq = tx.next_seq(tenant, "action")?;
    let id = seq.to_string();
    record.id = Some(id.clone());
    let mut events = Vec::new();
    for g in &outcome.grants {
        let e = ledger::post(
            tx,
            tenant,
            &Posting {
                player: &record.player,
                currency: &g.currency,
                amount: g.amount,
                reason: &g.reason,
                reference: Some(&reference_of(&id)),
            },
            record.time_ms,
        )
        .map_err(|e| match e {
            LedgerError::Store(s) => ActionError::Store(s),
            e => ActionError::BadOutcome(e.to_string()),
        })?;
        events.push(Event::RewardReceived {
            currency: e.currency.clone(),
            amount: e.amount,
            reason: e.reason.clone(),
            entry_id: Some(e.id.clone()),
            balance: e.balance_after,
        });
        record.grants.push(Granted {
            currency: e.currency,
            amount: e.amount,
            reason: e.reason,
            entry_id: Some(e.id),
            balance: e.balance_after,
        });
    }
    for b in &outcome.badges {
        let k = key(&[tenant, &record.player, b]);
        let count = tx.get_u64(BADGES, &k)? + 1;
        tx.put_u64(BADGES, &k, count)?;
        events.push(Event::BadgeEarned {
            badge: b.clone(),
            count,
        });
    }
    events.extend(message_events(&record));
    let ck = key(&[tenant, &record.player, &record.action]);
    let n = tx.get_u64(ACTION_COUNTS, &ck)? + 1;
    tx.put_u64(ACTION_COUNTS, &ck, n)?;
    let s = seq_part(seq);
    views::record_action(
        tx,
        tenant,
        &record.player,
        &record.action,
        record.time_ms,
        seq,
    )?;
    tx.put(ACTIONS, &key(&[tenant, &s]), &record)?;
    let last = LastAction {
        action: record.action.clone(),
        time_ms: record.time_ms,
    };
    tx.put(LAST_ACTION, &key(&[tenant, &record.player]), &last)?;
    Ok((record, events))
}

/// The action with id `id`.
pub fn get(src: &impl Reader, tenant: &str, id: &str) -> Result<Option<ActionRecord>, StoreError> {
    match id.parse::<u64>() {
        Ok(seq) => src.get(ACTIONS, &key(&[tenant, &seq_part(seq)])),
        Err(_) => Ok(None),
    }
}

/// The ledger reference of the credits action `id` granted.
fn reference_of(id: &str) -> String {
    format!("action:{id}")
}

/// The action that granted a ledger entry with `reference`, if one did.
pub fn by_reference(
    src: &impl Reader,
    tenant: &str,
    reference: &str,
) -> Result<Option<ActionRecord>, StoreError> {
    match reference.strip_prefix("action:") {
        Some(id) => get(src, tenant, id),
        None => Ok(None),
    }
}

/// An action a player did and when.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LastAction {
    pub action: String,
    pub time_ms: i64,
}

/// When `player` last did `action`, or (`None`) any action; `None` if never.
pub fn last(
    src: &impl Reader,
    tenant: &str,
    player: &str,
    action: Option<&str>,
) -> Result<Option<LastAction>, StoreError> {
    let Some(action) = action else {
        return src.get(LAST_ACTION, &key(&[tenant, player]));
    };
    Ok(
        views::last_action_time(src, tenant, player, action)?.map(|time_ms| LastAction {
            action: action.to_owned(),
            time_ms,
        }),
    )
}

/// How many times `player` did `action`.
pub fn count(
    src: &impl Reader,
    tenant: &str,
    player: &str,
    action: &str,
) -> Result<u64, StoreError> {
    src.get_u64(ACTION_COUNTS, &key(&[tenant, player, action]))
}

/// How many times each action was done by `player`.
pub fn counts(
    src: &impl Reader,
    tenant: &str,
    player: &str,
) -> Result<BTreeMap<String, u64>, StoreError> {
    u64_map(src, ACTION_COUNTS, tenant, player)
}

/// A player's badges and how many times each was earned.
pub fn badges(
    src: &impl Reader,
    tenant: &str,
    player: &str,
) -> Result<BTreeMap<String, u64>, StoreError> {
    u64_map(src, BADGES, tenant, player)
}

fn u64_map(
    src: &impl Reader,
    table: Table,
    tenant: &str,
    player: &str,
) -> Result<BTreeMap<String, u64>, StoreError> {
    let p = engage_store::prefix(&[tenant, player]);
    Ok(src
        .scan_raw(table, &p, None, MAX_NAMES, false)?
        .into_iter()
        .map(|(k, v)| {
            let n = <[u8; 8]>::try_from(v.as_slice())
                .map(u64::from_le_bytes)
                .unwrap_or(0);
            (k[p.len()..].to_owned(), n)
        })
        .collect())
}

/// When the tenant's actions since `since_ms` happened, newest first (at
/// most `cap`; also whether the cap cut the list short). Action keys are
/// sequence numbers, so the newest are last.
pub fn times_since(
    src: &impl Reader,
    tenant: &str,
    since_ms: i64,
    cap: usize,
) -> Result<(Vec<i64>, bool), StoreError> {
    src.times_since::<ActionRecord>(ACTIONS, &prefix(&[tenant]), since_ms, cap, |a| a.time_ms)
}
