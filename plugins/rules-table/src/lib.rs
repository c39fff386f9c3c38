//! The default rules plugin: a rule table kept in the binding's config.
//!
//! ```json
//! {
//!   "time_zone": "Asia/Bangkok",
//!   "rules": [
//!     { "name": "buy-100", "action": "buy",
//!       "when": [ { "param": "amount", "op": "gte", "value": "10" } ],
//!       "award": { "currency": "points", "amount": 100 },
//!       "badges": ["shopper"],
//!       "cooldown_seconds": 60,
//!       "cap": { "count": 1, "per": "day" },
//!       "active": { "from_ms": 1700000000000, "until_ms": 1800000000000 } },
//!     { "name": "carried", "action": "*",
//!       "award": { "currency_param": "reward", "amount_param": "quantity" } }
//!   ]
//! }
//! ```
//!
//! Every rule whose action name (`*` for any), conditions and active window
//! match, and which is neither cooling down nor capped, fires. A rule's
//! award is a fixed currency and amount, or read from the action's own
//! parameters (Playbasis's `reward` and `quantity`). Caps and cooldowns are
//! kept in the plugin's key-value store, so they hold under concurrency.

use engage_plugin_sdk::rules::{Action, CustomEvent, Grant, Message, Outcome, TraceEntry};
use engage_plugin_sdk::time::{Period, period_bounds};
use engage_plugin_sdk::{Param, PluginError, host, param};
use engage_time::Zone;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The zone caps reset in: an IANA name (`Europe/Berlin`, with its
    /// daylight-saving changes: a day cap resets at local midnight, on
    /// 23- and 25-hour days too). Default UTC.
    pub time_zone: Option<String>,
    /// A fixed UTC offset instead (`+07:00`), as configs before time zones
    /// said; give one or the other.
    pub utc_offset: Option<String>,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    /// The action name this rule listens to; `*` for any.
    pub action: String,
    #[serde(default)]
    pub when: Vec<Condition>,
    #[serde(default)]
    pub award: Option<Award>,
    #[serde(default)]
    pub badges: Vec<String>,
    #[serde(default)]
    pub messages: Vec<MessageSpec>,
    #[serde(default)]
    pub events: Vec<EventSpec>,
    #[serde(default)]
    pub cooldown_seconds: Option<u64>,
    #[serde(default)]
    pub cap: Option<Cap>,
    #[serde(default)]
    pub active: Option<Window>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub param: String,
    pub op: Op,
    #[serde(default)]
    pub value: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    Exists,
    In,
    Contains,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Award {
    /// A fixed currency...
    pub currency: Option<String>,
    /// ...or the parameter that names it (default `points` when neither).
    pub currency_param: Option<String>,
    /// A fixed amount...
    pub amount: Option<i64>,
    /// ...or the parameter that carries it.
    pub amount_param: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageSpec {
    #[serde(default = "sms")]
    pub channel: String,
    pub template: String,
}

fn sms() -> String {
    "sms".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSpec {
    pub name: String,
    #[serde(default)]
    pub data: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cap {
    pub count: u64,
    pub per: Period,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub from_ms: Option<i64>,
    pub until_ms: Option<i64>,
}

/// The host services the evaluation needs, so unit tests can run natively.
pub trait Env {
    fn kv_get_i64(&mut self, key: &str) -> Option<i64>;
    fn kv_increment(&mut self, key: &str, ttl_ms: u64) -> i64;
    fn kv_set_flag(&mut self, key: &str, ttl_ms: u64);
}

/// The binding's config check (run by the host at bind time): the config
/// parses, its zone is a zone, every award names an amount, fixed
/// amounts are positive and rule names are unique.
pub fn check_config(json: &str) -> Result<(), PluginError> {
    let config: Config = host::parse_config(json)?;
    let bad = |message: String| Err(PluginError::new("bad-config", message));
    zone_of(&config).map_err(|m| PluginError::new("bad-config", m))?;
    let mut names = std::collections::BTreeSet::new();
    for rule in &config.rules {
        if !names.insert(rule.name.as_str()) {
            return bad(format!(
                "two rules are named `{}`; names must be unique",
                rule.name
            ));
        }
        if let Some(award) = &rule.award {
            match (award.amount, &award.amount_param) {
                (None, None) => {
                    return bad(format!(
                        "rule `{}` awards no amount: give `amount` or `amount_param`",
                        rule.name
                    ));
                }
                (Some(a), _) if a <= 0 => {
                    return bad(format!(
                        "rule `{}` awards {a}; awards must be positive",
                        rule.name
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Evaluate `action` against `config`.
pub fn evaluate(
    action: &Action,
    config: &Config,
    env: &mut dyn Env,
) -> Result<Outcome, PluginError> {
    let zone = zone_of(config).map_err(|m| PluginError::new("bad-config", m))?;
    let mut outcome = Outcome::default();
    // Only rules that listen to this action are traced: an empty trace
    // tells the host that no rule knows the action.
    for rule in config.rules.iter().filter(|r| listens(r, action)) {
        let verdict = check(rule, action, &zone, env);
        let matched = verdict.is_ok();
        let reason = match verdict {
            Ok(()) => fire(rule, action, &zone, env, &mut outcome)?,
            Err(why) => why,
        };
        outcome.trace.push(TraceEntry {
            rule: rule.name.clone(),
            matched,
            reason,
        });
    }
    Ok(outcome)
}

fn listens(rule: &Rule, action: &Action) -> bool {
    rule.action == "*" || rule.action == action.name
}

fn check(rule: &Rule, action: &Action, zone: &Zone, env: &mut dyn Env) -> Result<(), String> {
    if !listens(rule, action) {
        return Err(format!(
            "listens to `{}`, not `{}`",
            rule.action, action.name
        ));
    }
    if let Some(window) = &rule.active {
        if window.from_ms.is_some_and(|from| action.time_ms < from) {
            return Err("not active yet".into());
        }
        if window.until_ms.is_some_and(|until| action.time_ms >= until) {
            return Err("no longer active".into());
        }
    }
    for cond in &rule.when {
        if !holds(cond, &action.params) {
            return Err(format!(
                "condition on `{}` ({:?}) does not hold",
                cond.param, cond.op
            ));
        }
    }
    if rule.cooldown_seconds.is_some() && env.kv_get_i64(&cooldown_key(rule, action)).is_some() {
        return Err("cooling down".into());
    }
    if let Some(cap) = &rule.cap {
        let (key, _) = cap_key(rule, cap, action, zone);
        let used = env.kv_get_i64(&key).unwrap_or(0);
        if used >= cap.count as i64 {
            return Err(
                format!("capped: {used} of {} this {:?}", cap.count, cap.per).to_lowercase(),
            );
        }
    }
    Ok(())
}

fn fire(
    rule: &Rule,
    action: &Action,
    zone: &Zone,
    env: &mut dyn Env,
    outcome: &mut Outcome,
) -> Result<String, PluginError> {
    let mut reason = String::from("matched");
    if let Some(award) = &rule.award {
        let grant = award_grant(rule, award, action)?;
        reason = format!("matched: {} {}", grant.amount, grant.currency);
        outcome.grants.push(grant);
    }
    if let Some(secs) = rule.cooldown_seconds {
        env.kv_set_flag(&cooldown_key(rule, action), secs.saturating_mul(1000));
    }
    if let Some(cap) = &rule.cap {
        let (key, end) = cap_key(rule, cap, action, zone);
        env.kv_increment(&key, (end - action.time_ms).max(1) as u64);
    }
    outcome.badges.extend(rule.badges.iter().cloned());
    for m in &rule.messages {
        outcome.messages.push(Message {
            channel: m.channel.clone(),
            to: None,
            template: m.template.clone(),
            vars: action.params.clone(),
        });
    }
    for e in &rule.events {
        outcome.events.push(CustomEvent {
            name: e.name.clone(),
            data: e
                .data
                .as_ref()
                .map(|d| d.to_string())
                .unwrap_or_else(|| "{}".into()),
        });
    }
    Ok(reason)
}

fn award_grant(rule: &Rule, award: &Award, action: &Action) -> Result<Grant, PluginError> {
    let currency = match (&award.currency, &award.currency_param) {
        (Some(c), _) => c.clone(),
        (None, Some(p)) => param(&action.params, p).unwrap_or("points").to_owned(),
        (None, None) => "points".to_owned(),
    };
    let amount = match (award.amount, &award.amount_param) {
        (Some(a), _) => a,
        (None, Some(p)) => {
            let raw = param(&action.params, p).unwrap_or("1");
            raw.trim().parse::<i64>().map_err(|_| {
                PluginError::new(
                    "bad-parameter",
                    format!("parameter `{p}` must be a whole number, got `{raw}`"),
                )
            })?
        }
        (None, None) => {
            return Err(PluginError::new(
                "bad-config",
                format!("rule `{}` awards no amount", rule.name),
            ));
        }
    };
    if amount <= 0 {
        return Err(PluginError::new(
            "bad-parameter",
            format!(
                "rule `{}` would award {amount}; awards must be positive",
                rule.name
            ),
        ));
    }
    Ok(Grant {
        currency,
        amount,
        reason: rule.name.clone(),
    })
}

fn cooldown_key(rule: &Rule, action: &Action) -> String {
    format!("cooldown/{}/{}", rule.name, action.player)
}

fn cap_key(rule: &Rule, cap: &Cap, action: &Action, zone: &Zone) -> (String, i64) {
    let per = match cap.per {
        Period::Day => engage_time::Period::Day,
        Period::Week => engage_time::Period::Week,
        Period::Month => engage_time::Period::Month,
    };
    // Out of range (a clock beyond year 9999) counts in UTC days.
    let (start, end) = zone
        .period_bounds(action.time_ms, per)
        .unwrap_or_else(|| period_bounds(action.time_ms, 0, cap.per));
    (format!("cap/{}/{}/{start}", rule.name, action.player), end)
}

/// The zone of the config (see [`Zone::of_config`]).
fn zone_of(config: &Config) -> Result<Zone, String> {
    Zone::of_config(config.time_zone.as_deref(), config.utc_offset.as_deref())
}

fn holds(cond: &Condition, params: &[Param]) -> bool {
    let actual = param(params, &cond.param);
    let expected = cond.value.as_ref();
    match (cond.op, actual) {
        (Op::Exists, a) => a.is_some(),
        (_, None) => false,
        (Op::Eq, Some(a)) => expected.is_some_and(|e| same(a, e)),
        (Op::Ne, Some(a)) => expected.is_none_or(|e| !same(a, e)),
        (Op::In, Some(a)) => expected
            .and_then(|e| e.as_array())
            .is_some_and(|list| list.iter().any(|e| same(a, e))),
        (Op::Contains, Some(a)) => expected.is_some_and(|e| a.contains(&text(e))),
        (op, Some(a)) => {
            let (Ok(a), Some(e)) = (a.trim().parse::<f64>(), expected.and_then(number)) else {
                return false;
            };
            match op {
                Op::Gt => a > e,
                Op::Gte => a >= e,
                Op::Lt => a < e,
                _ => a <= e,
            }
        }
    }
}

fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn number(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn same(actual: &str, expected: &serde_json::Value) -> bool {
    match (number(expected), actual.trim().parse::<f64>()) {
        (Some(e), Ok(a)) if !matches!(expected, serde_json::Value::String(_)) => a == e,
        _ => actual == text(expected),
    }
}

/// The host's key-value store, as the plugin sees it in a sandbox.
struct HostEnv;

impl Env for HostEnv {
    fn kv_get_i64(&mut self, key: &str) -> Option<i64> {
        host::kv_get(key)
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(i64::from_le_bytes)
    }
    fn kv_increment(&mut self, key: &str, ttl_ms: u64) -> i64 {
        host::kv_increment(key, 1, Some(ttl_ms))
    }
    fn kv_set_flag(&mut self, key: &str, ttl_ms: u64) {
        host::kv_set(key, &1i64.to_le_bytes(), Some(ttl_ms));
    }
}

struct RulesTable;

impl engage_plugin_sdk::rules::Guest for RulesTable {
    fn evaluate(action: Action) -> Result<Outcome, PluginError> {
        let config: Config = host::config()?;
        evaluate(&action, &config, &mut HostEnv)
    }
}

engage_plugin_sdk::export_rules!(RulesTable, check = check_config);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn the_config_check_refuses_what_evaluation_could_not_use() {
        let refused = |json: &str| check_config(json).err().map(|e| e.message);
        assert_eq!(refused(r#"{"rules":[]}"#), None);
        assert_eq!(refused(""), None);
        for (json, says) in [
            (r#"{"points":5}"#, "unknown field `points`"),
            (r#"{"utc_offset":"+25:00"}"#, "utc_offset `+25:00`"),
            (
                r#"{"rules":[{"name":"a","action":"x","award":{"amount":0}}]}"#,
                "awards 0",
            ),
            (
                r#"{"rules":[{"name":"a","action":"x"},{"name":"a","action":"y"}]}"#,
                "two rules are named `a`",
            ),
        ] {
            let message = refused(json).unwrap_or_default();
            assert!(message.contains(says), "{json}: {message}");
        }
    }

    /// An in-memory key-value store with expiry, like the host's.
    #[derive(Default)]
    struct MemEnv {
        now: i64,
        kv: BTreeMap<String, (i64, i64)>,
    }

    impl Env for MemEnv {
        fn kv_get_i64(&mut self, key: &str) -> Option<i64> {
            self.kv
                .get(key)
                .filter(|(_, exp)| *exp > self.now)
                .map(|(v, _)| *v)
        }
        fn kv_increment(&mut self, key: &str, ttl_ms: u64) -> i64 {
            let v = self.kv_get_i64(key).unwrap_or(0) + 1;
            self.kv.insert(key.into(), (v, self.now + ttl_ms as i64));
            v
        }
        fn kv_set_flag(&mut self, key: &str, ttl_ms: u64) {
            self.kv.insert(key.into(), (1, self.now + ttl_ms as i64));
        }
    }

    fn action(name: &str, time_ms: i64, params: &[(&str, &str)]) -> Action {
        Action {
            player: "p1".into(),
            name: name.into(),
            params: params.iter().map(|(n, v)| Param::new(*n, *v)).collect(),
            url: None,
            time_ms,
        }
    }

    fn config(json: &str) -> Config {
        host::parse_config(json).unwrap()
    }

    const T0: i64 = 1_700_000_000_000;

    #[test]
    fn fixed_award_and_trace() {
        let c = config(
            r#"{"rules":[{"name":"buy-100","action":"buy","award":{"currency":"points","amount":100},"badges":["shopper"]},{"name":"login","action":"login","award":{"amount":5}}]}"#,
        );
        let mut env = MemEnv {
            now: T0,
            ..Default::default()
        };
        let out = evaluate(&action("buy", T0, &[]), &c, &mut env).unwrap();
        assert_eq!(
            out.grants,
            vec![Grant {
                currency: "points".into(),
                amount: 100,
                reason: "buy-100".into()
            }]
        );
        assert_eq!(out.badges, vec!["shopper".to_string()]);
        // `login` does not listen to `buy`: not traced.
        assert_eq!(out.trace.len(), 1);
        assert!(out.trace[0].matched);
        let unknown = evaluate(&action("dance", T0, &[]), &c, &mut env).unwrap();
        assert!(unknown.trace.is_empty() && unknown.grants.is_empty());
    }

    #[test]
    fn award_from_parameters_like_playbasis() {
        let c = config(
            r#"{"rules":[{"name":"carried","action":"*","award":{"currency_param":"reward","amount_param":"quantity"}}]}"#,
        );
        let mut env = MemEnv::default();
        let out = evaluate(
            &action("like", T0, &[("reward", "exp"), ("quantity", "7")]),
            &c,
            &mut env,
        )
        .unwrap();
        assert_eq!(out.grants[0].currency, "exp");
        assert_eq!(out.grants[0].amount, 7);
        let bad = evaluate(&action("like", T0, &[("quantity", "lots")]), &c, &mut env).unwrap_err();
        assert_eq!(bad.code, "bad-parameter");
        let negative =
            evaluate(&action("like", T0, &[("quantity", "-3")]), &c, &mut env).unwrap_err();
        assert_eq!(negative.code, "bad-parameter");
    }

    #[test]
    fn conditions() {
        let c = config(
            r#"{"rules":[{"name":"big","action":"buy","when":[{"param":"amount","op":"gte","value":10},{"param":"sku","op":"in","value":["a","b"]},{"param":"coupon","op":"exists"}],"award":{"amount":1}}]}"#,
        );
        let mut env = MemEnv::default();
        let ok = action(
            "buy",
            T0,
            &[("amount", "10.0"), ("sku", "b"), ("coupon", "")],
        );
        assert_eq!(evaluate(&ok, &c, &mut env).unwrap().grants.len(), 1);
        for params in [
            vec![("amount", "9"), ("sku", "b"), ("coupon", "")],
            vec![("amount", "10"), ("sku", "c"), ("coupon", "")],
            vec![("amount", "10"), ("sku", "a")],
            vec![("amount", "ten"), ("sku", "a"), ("coupon", "")],
        ] {
            let out = evaluate(&action("buy", T0, &params), &c, &mut env).unwrap();
            assert!(out.grants.is_empty(), "{params:?}");
        }
    }

    #[test]
    fn cap_per_day_resets_in_the_configured_zone() {
        let c = config(
            r#"{"utc_offset":"+07:00","rules":[{"name":"daily","action":"login","award":{"amount":10},"cap":{"count":1,"per":"day"}}]}"#,
        );
        // 2023-11-14T16:30Z is 23:30 at +07:00; 17:30Z is the next local day.
        let t = 1_699_979_400_000;
        let mut env = MemEnv {
            now: t,
            ..Default::default()
        };
        assert_eq!(
            evaluate(&action("login", t, &[]), &c, &mut env)
                .unwrap()
                .grants
                .len(),
            1
        );
        let again = evaluate(&action("login", t + 60_000, &[]), &c, &mut env).unwrap();
        assert!(again.grants.is_empty());
        assert!(again.trace[0].reason.starts_with("capped"));
        env.now = t + 3_600_000;
        assert_eq!(
            evaluate(&action("login", env.now, &[]), &c, &mut env)
                .unwrap()
                .grants
                .len(),
            1
        );
    }

    #[test]
    fn cooldown_and_window() {
        let c = config(
            r#"{"rules":[{"name":"cool","action":"tap","award":{"amount":1},"cooldown_seconds":60,"active":{"from_ms":1700000000000,"until_ms":1700000600000}}]}"#,
        );
        let mut env = MemEnv {
            now: T0,
            ..Default::default()
        };
        assert!(
            evaluate(&action("tap", T0 - 1, &[]), &c, &mut env)
                .unwrap()
                .grants
                .is_empty()
        );
        assert_eq!(
            evaluate(&action("tap", T0, &[]), &c, &mut env)
                .unwrap()
                .grants
                .len(),
            1
        );
        env.now = T0 + 30_000;
        assert!(
            evaluate(&action("tap", env.now, &[]), &c, &mut env)
                .unwrap()
                .grants
                .is_empty()
        );
        env.now = T0 + 61_000;
        assert_eq!(
            evaluate(&action("tap", env.now, &[]), &c, &mut env)
                .unwrap()
                .grants
                .len(),
            1
        );
        env.now = T0 + 600_000;
        assert!(
            evaluate(&action("tap", env.now, &[]), &c, &mut env)
                .unwrap()
                .grants
                .is_empty()
        );
    }

    #[test]
    fn bad_config_is_explained() {
        assert_eq!(
            host::parse_config::<Config>(r#"{"rules":[{"name":"x"}]}"#)
                .unwrap_err()
                .code,
            "bad-config"
        );
        let c = config(r#"{"utc_offset":"Mars/Olympus","rules":[]}"#);
        let err = evaluate(&action("a", T0, &[]), &c, &mut MemEnv::default()).unwrap_err();
        assert!(err.message.contains("utc_offset"));
    }

    /// Milliseconds of a UTC date and time.
    fn utc(y: i16, mo: i8, d: i8, h: i8, mi: i8) -> i64 {
        engage_time::Zone::utc()
            .instant(y, mo, d, h, mi, 0)
            .expect("instant")
    }

    fn granted(c: &Config, env: &mut MemEnv, at: i64) -> bool {
        env.now = at;
        !evaluate(&action("login", at, &[]), c, env)
            .unwrap()
            .grants
            .is_empty()
    }

    #[test]
    fn a_daily_cap_in_berlin_resets_at_local_midnight_across_the_changes() {
        let c = config(
            r#"{"time_zone":"Europe/Berlin","rules":[{"name":"daily","action":"login","award":{"amount":10},"cap":{"count":1,"per":"day"}}]}"#,
        );
        let mut env = MemEnv::default();
        // Sunday 29 March 2026 lasts 23 hours: 23:30 CEST is 21:30 UTC,
        // and Monday starts at 22:00 UTC (a fixed +01:00 would say 23:00).
        assert!(granted(&c, &mut env, utc(2026, 3, 29, 21, 30)));
        assert!(!granted(&c, &mut env, utc(2026, 3, 29, 21, 59)));
        assert!(granted(&c, &mut env, utc(2026, 3, 29, 22, 0)));
        // Sunday 25 October lasts 25 hours: 02:30 CEST (00:30 UTC) and
        // 23:30 CET (22:30 UTC) are the same day; Monday starts at 23:00 UTC.
        assert!(granted(&c, &mut env, utc(2026, 10, 25, 0, 30)));
        assert!(!granted(&c, &mut env, utc(2026, 10, 25, 22, 30)));
        assert!(granted(&c, &mut env, utc(2026, 10, 25, 23, 0)));
    }

    #[test]
    fn time_zone_and_offset_are_checked_at_bind() {
        let both = r#"{"time_zone":"Europe/Berlin","utc_offset":"+01:00","rules":[]}"#;
        let e = check_config(both).unwrap_err();
        assert!(e.message.contains("not both"), "{}", e.message);
        let e = check_config(r#"{"time_zone":"Mars/Olympus","rules":[]}"#).unwrap_err();
        assert!(e.message.contains("IANA"), "{}", e.message);
        assert!(check_config(r#"{"time_zone":"America/New_York","rules":[]}"#).is_ok());
        assert!(check_config(r#"{"utc_offset":"+07:00","rules":[]}"#).is_ok());
    }
}
