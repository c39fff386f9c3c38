//! The first-party rule table's configuration as a form: rules with their
//! conditions, awards, badges, cooldowns, caps and active windows, and the
//! time zone caps reset in. "Dry run" runs the edited table, unsaved, on an
//! action through `POST /v1/bindings/rules/try` and shows the plugin's
//! trace; "Save" binds it with `PUT /v1/bindings/rules`. The plugin's own
//! config check is the validation (its refusal is shown in place); the form
//! only checks that numbers are numbers.
//!
//! What the form has no field for (a rule's messages and events, an award
//! read from parameters, other top-level keys) is carried through unchanged
//! in a hidden copy of the rule as it was.

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::Query;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use minijinja::context;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};

use crate::api::Payload;
use crate::render::{PageError, page_with};
use crate::session::{Kind, Session};

/// The plugin this form edits the config of.
const RULE_TABLE: &str = "rules-table";

/// One rule as the form shows it (every field a string, as typed).
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
struct RuleForm {
    /// The rule as stored, with the fields the form has no input for.
    keep: String,
    name: String,
    action: String,
    when: String,
    currency: String,
    amount: String,
    badges: String,
    cooldown_seconds: String,
    cap_count: String,
    cap_per: String,
    active_from: String,
    active_until: String,
}

/// `ms` as a `datetime-local` value in UTC.
fn local(ms: Option<i64>) -> String {
    ms.map(|ms| {
        let t = engage_store::ids::rfc3339(ms);
        t.get(..16).unwrap_or(&t).to_owned()
    })
    .unwrap_or_default()
}

fn parse_local(label: &str, v: &str) -> Result<Option<i64>, String> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    let mut s = v.replacen('T', " ", 1);
    if s.len() == 16 {
        s.push_str(":00");
    }
    engage_store::ids::parse_sql_datetime(&s)
        .map(Some)
        .ok_or_else(|| format!("{label}: `{v}` is not a date and time (YYYY-MM-DD HH:MM, UTC)"))
}

fn text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Null => String::new(),
        other => other.to_string(),
    }
}

impl RuleForm {
    fn of(rule: &Json) -> RuleForm {
        let when = rule["when"]
            .as_array()
            .map(|c| {
                c.iter()
                    .map(|c| {
                        let value = match &c["value"] {
                            Json::Null => String::new(),
                            Json::Array(items) => {
                                items.iter().map(text).collect::<Vec<_>>().join(",")
                            }
                            v => text(v),
                        };
                        format!("{} {} {value}", text(&c["param"]), text(&c["op"]))
                            .trim_end()
                            .to_owned()
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default();
        RuleForm {
            keep: rule.to_string(),
            name: text(&rule["name"]),
            action: text(&rule["action"]),
            when,
            currency: text(&rule["award"]["currency"]),
            amount: text(&rule["award"]["amount"]),
            badges: rule["badges"]
                .as_array()
                .map(|b| b.iter().map(text).collect::<Vec<_>>().join(", "))
                .unwrap_or_default(),
            cooldown_seconds: text(&rule["cooldown_seconds"]),
            cap_count: text(&rule["cap"]["count"]),
            cap_per: text(&rule["cap"]["per"]),
            active_from: local(rule["active"]["from_ms"].as_i64()),
            active_until: local(rule["active"]["until_ms"].as_i64()),
        }
    }

    fn blank(&self) -> bool {
        self.name.trim().is_empty() && self.action.trim().is_empty() && self.keep.is_empty()
    }

    /// The rule the form describes, on top of the one it was.
    fn rule(&self) -> Result<Json, String> {
        let name = self.name.trim();
        let label = |field: &str| {
            if name.is_empty() {
                field.to_owned()
            } else {
                format!("Rule `{name}`, {field}")
            }
        };
        let mut r: Map<String, Json> = serde_json::from_str(&self.keep).unwrap_or_default();
        if name.is_empty() {
            return Err("Every rule needs a name.".into());
        }
        r.insert("name".into(), name.into());
        let action = self.action.trim();
        if action.is_empty() {
            return Err(format!(
                "{}: say which action it listens to (`*` for any).",
                label("action")
            ));
        }
        r.insert("action".into(), action.into());
        let mut when = Vec::new();
        for line in self.when.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let mut parts = line.splitn(3, char::is_whitespace);
            let (param, op) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let value = parts.next().map(str::trim).unwrap_or("");
            if op.is_empty() {
                return Err(format!(
                    "{}: `{line}` is not `parameter operator value` (e.g. `amount gte 10`).",
                    label("conditions")
                ));
            }
            let mut c = json!({ "param": param, "op": op });
            match op {
                "exists" => {}
                "in" => c["value"] = json!(value.split(',').map(str::trim).collect::<Vec<_>>()),
                _ => c["value"] = json!(value),
            }
            when.push(c);
        }
        set(&mut r, "when", (!when.is_empty()).then(|| json!(when)));
        let mut award: Map<String, Json> = r
            .get("award")
            .and_then(|a| a.as_object().cloned())
            .unwrap_or_default();
        match self.currency.trim() {
            "" => award.remove("currency"),
            c => award.insert("currency".into(), c.into()),
        };
        match self.amount.trim() {
            "" => award.remove("amount"),
            a => award.insert(
                "amount".into(),
                a.parse::<i64>()
                    .map_err(|_| format!("{}: `{a}` is not a whole number.", label("amount")))?
                    .into(),
            ),
        };
        let has_amount = award.contains_key("amount") || award.contains_key("amount_param");
        set(&mut r, "award", has_amount.then(|| Json::Object(award)));
        let badges: Vec<&str> = self
            .badges
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .collect();
        set(
            &mut r,
            "badges",
            (!badges.is_empty()).then(|| json!(badges)),
        );
        let whole = |field: &str, v: &str| -> Result<Option<u64>, String> {
            let v = v.trim();
            if v.is_empty() {
                return Ok(None);
            }
            v.parse::<u64>().map(Some).map_err(|_| {
                format!(
                    "{}: `{v}` is not a whole number of 0 or more.",
                    label(field)
                )
            })
        };
        set(
            &mut r,
            "cooldown_seconds",
            whole("cooldown (seconds)", &self.cooldown_seconds)?.map(Json::from),
        );
        let cap = whole("cap", &self.cap_count)?;
        let per = self.cap_per.trim();
        set(
            &mut r,
            "cap",
            match (cap, per) {
                (None, _) => None,
                (Some(_), "") => {
                    return Err(format!("{}: say per day, week or month.", label("cap")));
                }
                (Some(n), per) => Some(json!({ "count": n, "per": per })),
            },
        );
        // A time the form shows to the minute keeps its stored seconds
        // unless it was changed.
        let kept = |field: &str, name: &str, typed: &str| -> Result<Option<i64>, String> {
            let was = r.get("active").and_then(|a| a[field].as_i64());
            if was.is_some() && local(was) == typed.trim() {
                return Ok(was);
            }
            parse_local(&label(name), typed)
        };
        let from = kept("from_ms", "active from", &self.active_from)?;
        let until = kept("until_ms", "active until", &self.active_until)?;
        set(
            &mut r,
            "active",
            (from.is_some() || until.is_some())
                .then(|| json!({ "from_ms": from, "until_ms": until })),
        );
        Ok(Json::Object(r))
    }
}

fn set(r: &mut Map<String, Json>, key: &str, v: Option<Json>) {
    match v {
        Some(v) => r.insert(key.into(), v),
        None => r.remove(key),
    };
}

/// The whole form: the table and the dry-run action.
#[derive(Debug, Default, Serialize)]
struct TableForm {
    keep: String,
    time_zone: String,
    rules: Vec<RuleForm>,
    try_player: String,
    try_action: String,
    try_params: String,
}

impl TableForm {
    fn of(config: &Json) -> TableForm {
        let mut rules: Vec<RuleForm> = config["rules"]
            .as_array()
            .map(|r| r.iter().map(RuleForm::of).collect())
            .unwrap_or_default();
        rules.push(RuleForm::default());
        TableForm {
            keep: config.to_string(),
            time_zone: text(&config["time_zone"]),
            rules,
            ..TableForm::default()
        }
    }

    /// From the posted fields: `time_zone`, `r<i>.<field>`, `r<i>.remove`.
    fn posted(fields: &[(String, String)]) -> TableForm {
        let mut f = TableForm::default();
        let mut rules: BTreeMap<usize, RuleForm> = BTreeMap::new();
        let mut removed = Vec::new();
        for (k, v) in fields {
            match k.as_str() {
                "keep" => f.keep = v.clone(),
                "time_zone" => f.time_zone = v.clone(),
                "try_player" => f.try_player = v.clone(),
                "try_action" => f.try_action = v.clone(),
                "try_params" => f.try_params = v.clone(),
                _ => {
                    let Some((i, field)) = k.strip_prefix('r').and_then(|k| k.split_once('.'))
                    else {
                        continue;
                    };
                    let Ok(i) = i.parse::<usize>() else { continue };
                    if i > 1000 {
                        continue;
                    }
                    let r = rules.entry(i).or_default();
                    let slot = match field {
                        "keep" => &mut r.keep,
                        "name" => &mut r.name,
                        "action" => &mut r.action,
                        "when" => &mut r.when,
                        "currency" => &mut r.currency,
                        "amount" => &mut r.amount,
                        "badges" => &mut r.badges,
                        "cooldown_seconds" => &mut r.cooldown_seconds,
                        "cap_count" => &mut r.cap_count,
                        "cap_per" => &mut r.cap_per,
                        "active_from" => &mut r.active_from,
                        "active_until" => &mut r.active_until,
                        "remove" => {
                            removed.push(i);
                            continue;
                        }
                        _ => continue,
                    };
                    *slot = v.clone();
                }
            }
        }
        f.rules = rules
            .into_iter()
            .filter(|(i, r)| !removed.contains(i) && !r.blank())
            .map(|(_, r)| r)
            .collect();
        f.rules.push(RuleForm::default());
        f
    }

    /// The config the form describes.
    fn config(&self) -> Result<Json, String> {
        let mut c: Map<String, Json> = serde_json::from_str(&self.keep).unwrap_or_default();
        let rules = self
            .rules
            .iter()
            .filter(|r| !r.blank())
            .map(RuleForm::rule)
            .collect::<Result<Vec<_>, _>>()?;
        c.insert("rules".into(), json!(rules));
        match self.time_zone.trim() {
            "" => c.remove("time_zone"),
            z => {
                c.remove("utc_offset");
                c.insert("time_zone".into(), z.into())
            }
        };
        Ok(Json::Object(c))
    }

    /// The dry-run action.
    fn action(&self, now_ms: i64) -> Result<Json, String> {
        let player = self.try_player.trim();
        let name = self.try_action.trim();
        if player.is_empty() || name.is_empty() {
            return Err("To dry-run, give a player and an action.".into());
        }
        let mut params = Vec::new();
        for line in self
            .try_params
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| format!("Parameters: `{line}` is not `name=value`."))?;
            params.push(json!({ "name": k.trim(), "value": v.trim() }));
        }
        Ok(json!({
            "call": "evaluate",
            "action": { "player": player, "name": name, "params": params, "url": null, "time_ms": now_ms },
        }))
    }
}

#[derive(Deserialize)]
pub struct RulesQuery {
    done: Option<String>,
}

pub async fn page(s: Session, Query(q): Query<RulesQuery>) -> Result<Response, PageError> {
    s.require(Kind::Tenant)?;
    let binding = s.get("/v1/bindings/rules").await?;
    let form = TableForm::of(&binding["config"]);
    show(&s, &binding, &form, None, None, q.done, StatusCode::OK)
}

fn show(
    s: &Session,
    binding: &Json,
    form: &TableForm,
    error: Option<String>,
    tried: Option<Json>,
    done: Option<String>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let editable = binding["plugin"].as_str() == Some(RULE_TABLE);
    page_with(
        s,
        "rules.html",
        "rules",
        context! {
            binding => crate::render::json(binding),
            editable,
            form => crate::render::json(form),
            error,
            tried => crate::render::json(&tried),
            done,
        },
        status,
    )
}

pub async fn submit(
    s: Session,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    s.require(Kind::Tenant)?;
    let binding = s.get("/v1/bindings/rules").await?;
    if binding["plugin"].as_str() != Some(RULE_TABLE) {
        return Err(PageError::Forbidden(format!(
            "the rules point runs `{}`, not the rule table; configure it on the Plugins page",
            text(&binding["plugin"])
        )));
    }
    let op = fields
        .iter()
        .find(|(k, _)| k == "op")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let form = TableForm::posted(&fields);
    let bad = |why: String| {
        show(
            &s,
            &binding,
            &form,
            Some(why),
            None,
            None,
            StatusCode::BAD_REQUEST,
        )
    };
    let config = match form.config() {
        Ok(c) => c,
        Err(why) => return bad(why),
    };
    match op {
        "try" => {
            let input = match form.action(engage_store::ids::now_ms()) {
                Ok(i) => i,
                Err(why) => return bad(why),
            };
            let a = s
                .call(
                    Method::POST,
                    "/v1/bindings/rules/try",
                    Payload::Json(json!({ "config": config, "input": input })),
                )
                .await?;
            if !a.ok() {
                return show(&s, &binding, &form, Some(a.message()), None, None, a.status);
            }
            show(
                &s,
                &binding,
                &form,
                None,
                Some(a.body),
                None,
                StatusCode::OK,
            )
        }
        "save" => {
            let mut body = super::plugins::kept_settings(&binding);
            body["plugin"] = binding["plugin"].clone();
            body["version"] = binding["version"].clone();
            body["config"] = config;
            let a = s
                .call(Method::PUT, "/v1/bindings/rules", Payload::Json(body))
                .await?;
            if !a.ok() {
                return show(&s, &binding, &form, Some(a.message()), None, None, a.status);
            }
            Err(PageError::Redirect("/console/rules?done=saved".into()))
        }
        _ => bad("Press Dry run or Save.".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(config: Json) -> Json {
        let form = TableForm::of(&config);
        let mut fields = vec![
            ("keep".to_owned(), form.keep.clone()),
            ("time_zone".into(), form.time_zone.clone()),
        ];
        for (i, r) in form.rules.iter().enumerate() {
            let v = serde_json::to_value(r).unwrap();
            for (k, v) in v.as_object().unwrap() {
                fields.push((format!("r{i}.{k}"), v.as_str().unwrap().to_owned()));
            }
        }
        TableForm::posted(&fields).config().unwrap()
    }

    #[test]
    fn a_table_survives_the_form_unchanged() {
        let config = json!({
            "time_zone": "Asia/Bangkok",
            "rules": [
                { "name": "buy-100", "action": "buy",
                  "when": [ { "param": "amount", "op": "gte", "value": "10" },
                            { "param": "sku", "op": "in", "value": ["a", "b"] },
                            { "param": "coupon", "op": "exists" } ],
                  "award": { "currency": "points", "amount": 100 },
                  "badges": ["shopper", "vip"],
                  "cooldown_seconds": 60,
                  "cap": { "count": 1, "per": "day" },
                  "active": { "from_ms": 1_700_000_000_000i64, "until_ms": 1_800_000_000_000i64 },
                  "messages": [ { "channel": "sms", "template": "hi" } ] },
                { "name": "carried", "action": "*",
                  "award": { "currency_param": "reward", "amount_param": "quantity" } }
            ]
        });
        let back = round_trip(config.clone());
        // The window's seconds are below the form's minute precision here.
        assert_eq!(back, config);
    }

    #[test]
    fn edits_removals_and_a_new_rule_are_read() {
        let config = json!({ "rules": [ { "name": "a", "action": "buy", "award": { "amount": 5 } },
                                         { "name": "b", "action": "login" } ] });
        let form = TableForm::of(&config);
        let keep = |i: usize| form.rules[i].keep.clone();
        let f = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        let posted = TableForm::posted(&f(&[
            ("keep", &form.keep),
            ("r0.keep", &keep(0)),
            ("r0.name", "a"),
            ("r0.action", "buy"),
            ("r0.amount", "7"),
            ("r1.keep", &keep(1)),
            ("r1.name", "b"),
            ("r1.action", "login"),
            ("r1.remove", "on"),
            ("r2.name", "new"),
            ("r2.action", "share"),
            ("r2.currency", "coins"),
            ("r2.amount", "3"),
            ("r2.cap_count", "2"),
            ("r2.cap_per", "week"),
        ]));
        assert_eq!(
            posted.config().unwrap(),
            json!({ "rules": [
                { "name": "a", "action": "buy", "award": { "amount": 7 } },
                { "name": "new", "action": "share", "award": { "currency": "coins", "amount": 3 },
                  "cap": { "count": 2, "per": "week" } } ] })
        );
        let bad = TableForm::posted(&f(&[
            ("r0.name", "x"),
            ("r0.action", "buy"),
            ("r0.amount", "lots"),
        ]));
        assert!(bad.config().unwrap_err().contains("Rule `x`, amount"));
        let no_per = TableForm::posted(&f(&[
            ("r0.name", "x"),
            ("r0.action", "buy"),
            ("r0.cap_count", "1"),
        ]));
        assert!(
            no_per
                .config()
                .unwrap_err()
                .contains("per day, week or month")
        );
    }
}
