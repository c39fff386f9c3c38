//! The default router: ordered channel/provider failover chosen by the
//! message's channel, kind and destination prefix.
//!
//! Binding config (JSON):
//!
//! ```json
//! { "routes": [
//!     { "channel": "viber", "prefixes": ["+380"],
//!       "attempts": [ { "channel": "viber", "provider": "bsg" },
//!                     { "channel": "sms", "provider": "twilio",
//!                       "body_param": "alt_text", "sender_param": "alt_sender" } ] }
//!   ],
//!   "default_provider": "console" }
//! ```
//!
//! The first route whose `channel` (absent: any), `kind` (absent: any) and
//! `prefixes` (absent: any) match gives the attempts. `body_param` and
//! `sender_param` name message metadata that overrides the body or sender
//! for that attempt (the BSG `alt_route` text). With no matching route the
//! message goes out once on its own channel through `default_provider`.

use engage_plugin_sdk::routing::{Attempt, MessageKind, Outgoing};
use engage_plugin_sdk::{PluginError, host, param};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub routes: Vec<Route>,
    pub default_provider: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            routes: Vec::new(),
            default_provider: "console".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub channel: Option<String>,
    pub kind: Option<Kind>,
    #[serde(default)]
    pub prefixes: Vec<String>,
    pub attempts: Vec<AttemptSpec>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Transactional,
    Marketing,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttemptSpec {
    pub channel: String,
    pub provider: String,
    pub sender: Option<String>,
    pub body_param: Option<String>,
    pub sender_param: Option<String>,
}

/// The attempts for `message` under `config`.
pub fn route(message: &Outgoing, config: &Config) -> Vec<Attempt> {
    let kind = match message.kind {
        MessageKind::Transactional => Kind::Transactional,
        MessageKind::Marketing => Kind::Marketing,
    };
    let chosen = config.routes.iter().find(|r| {
        r.channel.as_ref().is_none_or(|c| *c == message.channel)
            && r.kind.is_none_or(|k| k == kind)
            && (r.prefixes.is_empty()
                || r.prefixes
                    .iter()
                    .any(|p| message.to.starts_with(p.as_str())))
    });
    match chosen {
        Some(r) => r
            .attempts
            .iter()
            .map(|a| Attempt {
                channel: a.channel.clone(),
                provider: a.provider.clone(),
                sender: a
                    .sender_param
                    .as_deref()
                    .and_then(|p| param(&message.metadata, p))
                    .map(str::to_owned)
                    .or_else(|| a.sender.clone()),
                body: a
                    .body_param
                    .as_deref()
                    .and_then(|p| param(&message.metadata, p))
                    .map(str::to_owned),
            })
            .collect(),
        None => vec![Attempt {
            channel: message.channel.clone(),
            provider: config.default_provider.clone(),
            sender: None,
            body: None,
        }],
    }
}

struct Router;

impl engage_plugin_sdk::routing::Guest for Router {
    fn route(message: Outgoing) -> Result<Vec<Attempt>, PluginError> {
        let config: Config = host::config()?;
        Ok(route(&message, &config))
    }
}

engage_plugin_sdk::export_routing!(Router, config = Config);

#[cfg(test)]
mod tests {
    use super::*;
    use engage_plugin_sdk::Param;

    fn msg(channel: &str, to: &str, kind: MessageKind) -> Outgoing {
        Outgoing {
            id: "m1".into(),
            to: to.into(),
            channel: channel.into(),
            sender: None,
            body: "hi".into(),
            kind,
            reference: None,
            metadata: vec![
                Param::new("alt_text", "SMS fallback"),
                Param::new("alt_sender", "BSG"),
            ],
        }
    }

    const CONFIG: &str = r#"{"routes":[
        {"channel":"viber","attempts":[{"channel":"viber","provider":"bsg"},{"channel":"sms","provider":"twilio","body_param":"alt_text","sender_param":"alt_sender"}]},
        {"kind":"marketing","prefixes":["+44"],"attempts":[{"channel":"sms","provider":"cheap","sender":"PROMO"}]}
    ],"default_provider":"kannel"}"#;

    #[test]
    fn viber_falls_back_to_sms_with_its_own_text() {
        let config: Config = host::parse_config(CONFIG).unwrap();
        let attempts = route(
            &msg("viber", "+380972920000", MessageKind::Transactional),
            &config,
        );
        assert_eq!(attempts.len(), 2);
        assert_eq!(
            (attempts[0].channel.as_str(), attempts[0].provider.as_str()),
            ("viber", "bsg")
        );
        assert_eq!(attempts[0].body, None);
        assert_eq!(attempts[1].provider, "twilio");
        assert_eq!(attempts[1].body.as_deref(), Some("SMS fallback"));
        assert_eq!(attempts[1].sender.as_deref(), Some("BSG"));
    }

    #[test]
    fn kind_and_prefix_then_default() {
        let config: Config = host::parse_config(CONFIG).unwrap();
        let promo = route(
            &msg("sms", "+447700900000", MessageKind::Marketing),
            &config,
        );
        assert_eq!(promo[0].provider, "cheap");
        assert_eq!(promo[0].sender.as_deref(), Some("PROMO"));
        let other = route(
            &msg("sms", "+447700900000", MessageKind::Transactional),
            &config,
        );
        assert_eq!((other.len(), other[0].provider.as_str()), (1, "kannel"));
        let plain = route(
            &msg("sms", "+15550100", MessageKind::Marketing),
            &Config::default(),
        );
        assert_eq!(plain[0].provider, "console");
    }
}
