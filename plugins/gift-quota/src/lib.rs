//! The default gift hooks: a per-player daily quota on gift requests (and,
//! optionally, on replies), the seed's own example of a pre hook.
//!
//! Binding config (JSON, every field optional):
//!
//! ```json
//! { "requests_per_day": 3, "replies_per_day": null, "time_zone": "Europe/Berlin",
//!   "code": -30004, "code_str": "E_GIFT_QUOTA_EXCEEDED",
//!   "message": "You have exceeded your quota of gifts" }
//! ```
//!
//! The day is the local day of `time_zone` (an IANA name: 23 or 25 hours
//! long on the days clocks change), or of the fixed `utc_offset` configs
//! gave before time zones (`"+07:00"`); UTC by default, one or the other.
//! `null` (or absent) for a quota means unlimited. The count lives in the
//! plugin's key-value store and commits with the request it allowed, so the
//! quota holds exactly under concurrent requests.

use engage_plugin_sdk::gift::{GiftReply, GiftRequest, Rejection, Verdict};
use engage_plugin_sdk::time::{Period, period_bounds};
use engage_plugin_sdk::{PluginError, host};
use engage_time::Zone;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub requests_per_day: Option<u32>,
    pub replies_per_day: Option<u32>,
    pub time_zone: Option<String>,
    pub utc_offset: Option<String>,
    pub code: i32,
    pub code_str: String,
    pub message: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            requests_per_day: Some(10),
            replies_per_day: None,
            time_zone: None,
            utc_offset: None,
            code: -30004,
            code_str: "E_GIFT_QUOTA_EXCEEDED".into(),
            message: "You have exceeded your quota of gifts".into(),
        }
    }
}

/// The counter the quota needs, so unit tests can run natively.
pub trait Counter {
    fn get(&mut self, key: &str) -> i64;
    fn increment(&mut self, key: &str, ttl_ms: u64);
}

/// Count one use of `what` by `player` against `limit`, or reject.
pub fn take(
    config: &Config,
    limit: Option<u32>,
    what: &str,
    player: &str,
    now_ms: i64,
    counter: &mut dyn Counter,
) -> Result<Verdict, PluginError> {
    let Some(limit) = limit else {
        return Ok(Verdict::Allow);
    };
    let zone = zone_of(config).map_err(|m| PluginError::new("bad-config", m))?;
    // Out of range (a clock beyond year 9999) counts in UTC days.
    let (day_start, day_end) = zone
        .day_bounds(now_ms)
        .unwrap_or_else(|| period_bounds(now_ms, 0, Period::Day));
    let key = format!("{what}/{player}/{day_start}");
    if counter.get(&key) >= i64::from(limit) {
        return Ok(Verdict::Reject(Rejection {
            code: config.code,
            code_str: config.code_str.clone(),
            message: config.message.clone(),
        }));
    }
    counter.increment(&key, (day_end - now_ms).max(1) as u64);
    Ok(Verdict::Allow)
}

struct HostCounter;

impl Counter for HostCounter {
    fn get(&mut self, key: &str) -> i64 {
        host::kv_get(key)
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(i64::from_le_bytes)
            .unwrap_or(0)
    }
    fn increment(&mut self, key: &str, ttl_ms: u64) {
        host::kv_increment(key, 1, Some(ttl_ms));
    }
}

struct GiftQuota;

impl engage_plugin_sdk::gift::Guest for GiftQuota {
    fn pre_request(request: GiftRequest) -> Result<Verdict, PluginError> {
        let config: Config = host::config()?;
        take(
            &config,
            config.requests_per_day,
            "requests",
            &request.sender,
            host::now_ms(),
            &mut HostCounter,
        )
    }

    fn post_request(_request: GiftRequest) -> Result<(), PluginError> {
        Ok(())
    }

    fn pre_reply(reply: GiftReply) -> Result<Verdict, PluginError> {
        let config: Config = host::config()?;
        take(
            &config,
            config.replies_per_day,
            "replies",
            &reply.player,
            host::now_ms(),
            &mut HostCounter,
        )
    }

    fn post_reply(_reply: GiftReply) -> Result<(), PluginError> {
        Ok(())
    }
}

/// The zone of the config (see [`Zone::of_config`]).
fn zone_of(config: &Config) -> Result<Zone, String> {
    Zone::of_config(config.time_zone.as_deref(), config.utc_offset.as_deref())
}

/// The binding's config check (run by the host at bind time): the config
/// parses and its zone is a zone.
pub fn check_config(json: &str) -> Result<(), PluginError> {
    let config: Config = host::parse_config(json)?;
    zone_of(&config).map_err(|m| PluginError::new("bad-config", m))?;
    Ok(())
}

engage_plugin_sdk::export_gift_hooks!(GiftQuota, check = check_config);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Mem(HashMap<String, i64>);

    impl Counter for Mem {
        fn get(&mut self, key: &str) -> i64 {
            self.0.get(key).copied().unwrap_or(0)
        }
        fn increment(&mut self, key: &str, _ttl_ms: u64) {
            *self.0.entry(key.into()).or_default() += 1;
        }
    }

    const NOON: i64 = 1_700_049_600_000; // 2023-11-15T12:00Z

    #[test]
    fn quota_of_two_per_day() {
        let config: Config = host::parse_config(r#"{"requests_per_day":2}"#).unwrap();
        let mut mem = Mem::default();
        let take_one = |mem: &mut Mem, at| {
            take(
                &config,
                config.requests_per_day,
                "requests",
                "kunalg",
                at,
                mem,
            )
            .unwrap()
        };
        assert_eq!(take_one(&mut mem, NOON), Verdict::Allow);
        assert_eq!(take_one(&mut mem, NOON + 1), Verdict::Allow);
        match take_one(&mut mem, NOON + 2) {
            Verdict::Reject(r) => {
                assert_eq!(
                    (r.code, r.code_str.as_str()),
                    (-30004, "E_GIFT_QUOTA_EXCEEDED")
                );
                assert_eq!(r.message, "You have exceeded your quota of gifts");
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
        // Another player, and the next day, are unaffected.
        assert_eq!(
            take(&config, Some(2), "requests", "abcd", NOON, &mut mem).unwrap(),
            Verdict::Allow
        );
        assert_eq!(take_one(&mut mem, NOON + 86_400_000), Verdict::Allow);
    }

    #[test]
    fn unlimited_and_bad_offset() {
        let mut mem = Mem::default();
        let config = Config {
            utc_offset: Some("nowhere".into()),
            ..Config::default()
        };
        assert_eq!(
            take(&config, None, "replies", "p", NOON, &mut mem).unwrap(),
            Verdict::Allow
        );
        assert_eq!(
            take(&config, Some(1), "replies", "p", NOON, &mut mem)
                .unwrap_err()
                .code,
            "bad-config"
        );
    }
}
