//! Canary bindings: a second plugin version bound beside the stable one
//! for a share of players, with statistics per version since the canary
//! started, then promoted or rolled back in one call.
//!
//! Who gets the canary is a stable hash of the call's subject (the player,
//! see [`subject`]), salted with the tenant, the point and the canary's
//! plugin and version. The same player gets the same version on every
//! call and every host, so a player never sees the two versions alternate;
//! raising the percentage only adds players (a player in at 5% is still in
//! at 20%); a new canary version draws a new cohort, so the same players
//! are not always the first to meet a change.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::runtime::Input;
use crate::stats::{Stats, StatsView};
use crate::{Binding, Plugins, PluginsError, Point, key, log_binding_change};
use engage_store::Reader;
use engage_store::ids::{now_ms, sha256_hex};

/// The canary of a stored binding.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Canary {
    pub plugin: String,
    pub version: u32,
    pub config: serde_json::Value,
    /// The share of players (1 to 99) whose calls the canary answers.
    pub percent: u8,
    /// When this canary (this plugin, version and config) started; its
    /// statistics count from here.
    pub started_at_ms: i64,
}

/// What a tenant asks for when starting (or widening) a canary.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CanaryRequest {
    /// Default: the bound plugin.
    #[serde(default)]
    pub plugin: Option<String>,
    /// Default: the plugin's latest version.
    #[serde(default)]
    pub version: Option<u32>,
    /// Of the players, 1 to 99 (to give every player the canary, promote it).
    #[schema(minimum = 1, maximum = 99)]
    pub percent: u8,
    /// Default: the binding's config when the canary is of the bound
    /// plugin, else `{}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub config: Option<serde_json::Value>,
}

/// The two versions' statistics since the canary started, on this host.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CanaryStats {
    pub since_ms: i64,
    pub stable: StatsView,
    pub canary: StatsView,
}

/// This host's counters of one running canary.
pub(crate) struct Session {
    started_at_ms: i64,
    pub(crate) stable: Arc<Stats>,
    pub(crate) canary: Arc<Stats>,
}

/// Whose call this is, for choosing the version: the acting player
/// (rules), the requesting or replying player (gift hooks), the message's
/// recipient (routing), a template's `player` variable, else the
/// template's text (templating: the same message renders the same way).
pub fn subject(input: &Input) -> &str {
    match input {
        Input::Evaluate { action } => &action.player,
        Input::PreRequest { request } | Input::PostRequest { request } => &request.sender,
        Input::PreReply { reply } | Input::PostReply { reply } => &reply.player,
        Input::Route { message } => &message.to,
        Input::Render { template, vars } => vars
            .iter()
            .find(|p| p.name == "player")
            .map_or(template.as_str(), |p| p.value.as_str()),
    }
}

/// Whether `subject`'s calls go to `canary`: its hash, salted with the
/// canary's identity, falls in the first `percent` of 10,000 buckets.
pub fn chosen(tenant: &str, point: Point, canary: &Canary, subject: &str) -> bool {
    let salted = format!(
        "{tenant}\u{0}{}\u{0}{}\u{0}{}\u{0}{subject}",
        point.as_str(),
        canary.plugin,
        canary.version
    );
    let hex = sha256_hex(salted.as_bytes());
    let bucket = u64::from_str_radix(&hex[..16], 16).unwrap_or(0) % 10_000;
    bucket < u64::from(canary.percent) * 100
}

impl Plugins {
    /// Bind `req`'s version beside the stable binding of `point` for
    /// `req.percent`% of players. Its config is checked first, as a bind's
    /// is. Asking again for the same version and config changes only the
    /// share (the statistics go on); another version or config starts a
    /// new canary.
    pub async fn start_canary(
        &self,
        tenant: &str,
        point: Point,
        req: CanaryRequest,
    ) -> Result<Binding, PluginsError> {
        if !(1..=99).contains(&req.percent) {
            return Err(PluginsError::BadCanary(
                "percent is 1 to 99: to give every player the canary, promote it".into(),
            ));
        }
        let snap = self.store.read()?;
        let current = self.bound(&snap, tenant, point)?;
        let plugin = req.plugin.unwrap_or_else(|| current.plugin.clone());
        let record = self.record(&snap, tenant, &plugin)?;
        if record.point != point {
            return Err(PluginsError::WrongWorld {
                plugin,
                world: record.point.world(),
                point: point.as_str(),
                wanted: point.world(),
            });
        }
        let version = req.version.unwrap_or(record.latest);
        if plugin == current.plugin && version == current.version {
            return Err(PluginsError::CanaryIsStable(format!(
                "{plugin} v{version} is the stable version; a canary is another version"
            )));
        }
        let config = match req.config {
            None if plugin == current.plugin => current.config.clone(),
            None => serde_json::Value::Object(Default::default()),
            Some(v @ serde_json::Value::Object(_)) => v,
            Some(_) => return Err(PluginsError::BadConfig),
        };
        let info = self.version_info(&snap, tenant, &plugin, version)?;
        let (prepared, _) = self
            .prepare_stored(&info.sha256, &current.wasi)
            .map_err(|e| PluginsError::Internal(e.to_string()))?;
        drop(snap);
        self.check_config(tenant, &plugin, version, &prepared, &config, current.limits)?;
        let same = current
            .canary
            .as_ref()
            .filter(|c| c.plugin == plugin && c.version == version && c.config == config);
        let canary = Canary {
            started_at_ms: same.map_or_else(now_ms, |c| c.started_at_ms),
            plugin,
            version,
            config,
            percent: req.percent,
        };
        let mut next = current.clone();
        next.canary = Some(canary);
        let binding = self.replace_binding(tenant, &current, next).await?;
        let c = binding.canary.as_ref();
        tracing::info!(tenant, point = point.as_str(), canary = ?c.map(|c| (&c.plugin, c.version, c.percent)), "canary bound");
        Ok(binding)
    }

    /// Make the canary the binding for every player.
    pub async fn promote_canary(
        &self,
        tenant: &str,
        point: Point,
    ) -> Result<Binding, PluginsError> {
        let current = self.bound(&self.store.read()?, tenant, point)?;
        let canary = current
            .canary
            .clone()
            .ok_or_else(|| PluginsError::NoCanary(point.as_str()))?;
        let mut next = current.clone();
        next.plugin = canary.plugin;
        next.version = canary.version;
        next.config = canary.config;
        next.canary = None;
        next.bound_at_ms = now_ms();
        let binding = self.replace_binding(tenant, &current, next).await?;
        tracing::info!(tenant, point = point.as_str(), plugin = %binding.plugin, version = binding.version, "canary promoted");
        Ok(binding)
    }

    /// End the canary: every player is back on the stable version.
    pub async fn roll_back_canary(
        &self,
        tenant: &str,
        point: Point,
    ) -> Result<Binding, PluginsError> {
        let current = self.bound(&self.store.read()?, tenant, point)?;
        if current.canary.is_none() {
            return Err(PluginsError::NoCanary(point.as_str()));
        }
        let mut next = current.clone();
        next.canary = None;
        let binding = self.replace_binding(tenant, &current, next).await?;
        tracing::info!(tenant, point = point.as_str(), plugin = %binding.plugin, version = binding.version, "canary rolled back");
        Ok(binding)
    }

    /// The running canary's statistics on this host, if `point` has one.
    pub fn canary_stats(&self, tenant: &str, point: Point) -> Option<CanaryStats> {
        let sessions = self.canaries.lock().ok()?;
        let s = sessions.get(&(tenant.to_owned(), point))?;
        Some(CanaryStats {
            since_ms: s.started_at_ms,
            stable: s.stable.view(),
            canary: s.canary.view(),
        })
    }

    /// This host's counters of `binding`'s canary (none without one):
    /// kept while the same canary runs, new when another starts.
    pub(crate) fn session(&self, tenant: &str, binding: &Binding) -> Option<Arc<Session>> {
        let mut sessions = self.canaries.lock().ok()?;
        let k = (tenant.to_owned(), binding.point);
        let Some(c) = &binding.canary else {
            sessions.remove(&k);
            return None;
        };
        if let Some(s) = sessions.get(&k)
            && s.started_at_ms == c.started_at_ms
        {
            return Some(s.clone());
        }
        let s = Arc::new(Session {
            started_at_ms: c.started_at_ms,
            stable: Arc::default(),
            canary: Arc::default(),
        });
        sessions.insert(k, s.clone());
        Some(s)
    }

    fn bound(
        &self,
        snap: &impl Reader,
        tenant: &str,
        point: Point,
    ) -> Result<Binding, PluginsError> {
        snap.get::<Binding>(crate::BINDINGS, &key(&[tenant, point.as_str()]))?
            .ok_or(PluginsError::NotBound(point.as_str()))
    }

    /// Write `next` in place of `current`, unless the binding changed
    /// since it was read (then nothing is written: the caller asks again),
    /// and put it in force here.
    async fn replace_binding(
        &self,
        tenant: &str,
        current: &Binding,
        next: Binding,
    ) -> Result<Binding, PluginsError> {
        let arms = {
            let snap = self.store.read()?;
            self.prepare_arms(&snap, tenant, &next)?
        };
        let (t, was, b) = (tenant.to_owned(), current.clone(), next.clone());
        let logged = self
            .store
            .write(move |tx| {
                let k = key(&[&t, b.point.as_str()]);
                if tx.get::<Binding>(crate::BINDINGS, &k)?.as_ref() != Some(&was) {
                    return Err(PluginsError::BindingChanged(b.point.as_str()));
                }
                tx.put(crate::BINDINGS, &k, &b)?;
                Ok(log_binding_change(tx, &t)?)
            })
            .await?;
        self.activate(tenant, next.clone(), arms, logged);
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{Action, Param};

    fn canary(version: u32, percent: u8) -> Canary {
        Canary {
            plugin: "rules-v2".into(),
            version,
            config: serde_json::json!({}),
            percent,
            started_at_ms: 0,
        }
    }

    fn players() -> impl Iterator<Item = String> {
        (0..10_000).map(|i| format!("player-{i}"))
    }

    /// Over 10,000 players the canary's share is its percentage within
    /// ±1.5 points (five standard deviations of a fair draw at 50%).
    #[test]
    fn the_share_of_players_is_the_percentage() {
        for percent in [1, 5, 10, 25, 50, 75, 99] {
            let c = canary(2, percent);
            let n = players()
                .filter(|p| chosen("t", Point::Rules, &c, p))
                .count();
            let share = n as f64 / 100.0;
            assert!(
                (share - f64::from(percent)).abs() <= 1.5,
                "{percent}%: {share}% of 10,000 players"
            );
        }
    }

    /// Raising the share only adds players; the same player always gets
    /// the same answer; another version draws another cohort.
    #[test]
    fn cohorts_are_stable_nested_and_per_version() {
        let mut previous: Vec<bool> = players().map(|_| false).collect();
        for percent in [1, 2, 5, 10, 20, 50, 99] {
            let c = canary(2, percent);
            for (i, p) in players().enumerate() {
                let now = chosen("t", Point::Rules, &c, &p);
                assert!(!previous[i] || now, "{p} left the canary at {percent}%");
                assert_eq!(now, chosen("t", Point::Rules, &c, &p));
                previous[i] = now;
            }
        }
        let (v2, v3) = (canary(2, 10), canary(3, 10));
        let both = players()
            .filter(|p| chosen("t", Point::Rules, &v2, p) && chosen("t", Point::Rules, &v3, p))
            .count();
        // Independent 10% cohorts share about 1% of players, not 10%.
        assert!(both < 250, "{both} players in both cohorts");
        let other_tenant = players()
            .filter(|p| chosen("t", Point::Rules, &v2, p) && chosen("u", Point::Rules, &v2, p))
            .count();
        assert!(
            other_tenant < 250,
            "{other_tenant} players in both tenants' cohorts"
        );
    }

    #[test]
    fn the_subject_is_the_player() {
        let action = Input::Evaluate {
            action: Action {
                player: "ann".into(),
                name: "login".into(),
                params: vec![],
                url: None,
                time_ms: 0,
            },
        };
        assert_eq!(subject(&action), "ann");
        let render = |vars: Vec<Param>| Input::Render {
            template: "hi {{name}}".into(),
            vars,
        };
        assert_eq!(subject(&render(vec![])), "hi {{name}}");
        let player = Param {
            name: "player".into(),
            value: "bob".into(),
        };
        assert_eq!(subject(&render(vec![player])), "bob");
    }
}
