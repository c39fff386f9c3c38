//! Data a plugin call sees when it runs outside the server: the key-value
//! entries and the ledger's views, given by hand (`engage plugin run
//! --kv`, `--views`) or rebuilt from what a recorded call read (replay).

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::kv::{self, Read};

/// What a call outside the server reads instead of a store snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Fixture {
    /// The plugin's own keys to their stored entries (expiry and value, as
    /// [`kv::encode`] writes them).
    #[serde(default)]
    pub kv: BTreeMap<String, Vec<u8>>,
    /// Balances by player, then currency (0 when absent).
    #[serde(default)]
    pub balances: BTreeMap<String, BTreeMap<String, i64>>,
    /// When each player performed each action, ms since the epoch: an
    /// action count since `t` counts the times at or after `t`.
    #[serde(default)]
    pub actions: BTreeMap<String, BTreeMap<String, Vec<i64>>>,
    /// Exact answers to action counts (player, action, since), as a
    /// recorded call read them; they win over `actions`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counts: Vec<(String, String, i64, u64)>,
}

impl Fixture {
    /// The stored entry of `key`, if any.
    pub fn kv_raw(&self, key: &str) -> Option<Vec<u8>> {
        self.kv.get(key).cloned()
    }

    pub fn balance(&self, player: &str, currency: &str) -> i64 {
        self.balances
            .get(player)
            .and_then(|c| c.get(currency))
            .copied()
            .unwrap_or(0)
    }

    pub fn action_count(&self, player: &str, action: &str, since_ms: i64) -> u64 {
        if let Some((.., n)) = self
            .counts
            .iter()
            .find(|(p, a, s, _)| p == player && a == action && *s == since_ms)
        {
            return *n;
        }
        self.actions
            .get(player)
            .and_then(|a| a.get(action))
            .map(|times| times.iter().filter(|t| **t >= since_ms).count() as u64)
            .unwrap_or(0)
    }

    /// The data a recorded call read, so that running the call again sees
    /// exactly what it saw the first time.
    pub fn from_reads(reads: &[Read]) -> Fixture {
        let mut f = Fixture::default();
        for read in reads {
            match read {
                Read::Key { key, raw } => {
                    if let Some(raw) = raw {
                        f.kv.insert(key.clone(), raw.clone());
                    }
                }
                Read::Balance {
                    player,
                    currency,
                    value,
                } => {
                    f.balances
                        .entry(player.clone())
                        .or_default()
                        .insert(currency.clone(), *value);
                }
                Read::ActionCount {
                    player,
                    action,
                    since_ms,
                    value,
                } => f
                    .counts
                    .push((player.clone(), action.clone(), *since_ms, *value)),
            }
        }
        f
    }

    /// Key-value entries from an author's JSON: each key maps to a string
    /// (its UTF-8 bytes), an integer (an 8-byte counter, as `kv-increment`
    /// keeps it) or `{"text"|"base64"|"counter": …, "expires_at_ms": n}`.
    pub fn kv_from_json(v: &serde_json::Value) -> Result<BTreeMap<String, Vec<u8>>, String> {
        let obj = v
            .as_object()
            .ok_or("the key-value state must be a JSON object of key to value")?;
        let mut out = BTreeMap::new();
        for (key, value) in obj {
            let (bytes, expires) = match value {
                serde_json::Value::String(s) => (s.clone().into_bytes(), None),
                serde_json::Value::Number(n) => (counter(key, n.as_i64())?, None),
                serde_json::Value::Object(o) => {
                    let expires = match o.get("expires_at_ms") {
                        None | Some(serde_json::Value::Null) => None,
                        Some(e) => Some(e.as_i64().ok_or_else(|| {
                            format!("key `{key}`: expires_at_ms must be an integer")
                        })?),
                    };
                    let bytes = if let Some(t) = o.get("text").and_then(|t| t.as_str()) {
                        t.as_bytes().to_vec()
                    } else if let Some(n) = o.get("counter") {
                        counter(key, n.as_i64())?
                    } else if let Some(b) = o.get("base64").and_then(|b| b.as_str()) {
                        base64::engine::general_purpose::STANDARD
                            .decode(b)
                            .map_err(|e| format!("key `{key}`: base64: {e}"))?
                    } else {
                        return Err(format!("key `{key}`: give one of text, counter, base64"));
                    };
                    (bytes, expires)
                }
                _ => {
                    return Err(format!(
                        "key `{key}`: a value is a string, an integer or an object"
                    ));
                }
            };
            out.insert(key.clone(), kv::encode(expires, &bytes));
        }
        Ok(out)
    }
}

fn counter(key: &str, n: Option<i64>) -> Result<Vec<u8>, String> {
    n.map(|n| n.to_le_bytes().to_vec())
        .ok_or_else(|| format!("key `{key}`: a counter is a whole number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_from_an_authors_json() {
        let kv = Fixture::kv_from_json(&serde_json::json!({
            "a": "hi", "n": 3, "t": { "text": "x", "expires_at_ms": 10 }, "b": { "base64": "AAEC" }
        }))
        .expect("parsed");
        assert_eq!(
            kv::live(kv.get("a").map(|v| v.as_slice()), 0).map(|l| l.1),
            Some(b"hi".to_vec())
        );
        assert_eq!(
            kv::live(kv.get("n").map(|v| v.as_slice()), 0).map(|l| l.1),
            Some(3i64.to_le_bytes().to_vec())
        );
        assert_eq!(
            kv::live(kv.get("t").map(|v| v.as_slice()), 11),
            None,
            "expired"
        );
        assert_eq!(
            kv::live(kv.get("b").map(|v| v.as_slice()), 0).map(|l| l.1),
            Some(vec![0, 1, 2])
        );
        assert!(Fixture::kv_from_json(&serde_json::json!({ "x": [1] })).is_err());
    }

    #[test]
    fn action_counts_count_from_since_and_recorded_answers_win() {
        let mut f = Fixture::default();
        f.actions
            .entry("p".into())
            .or_default()
            .insert("login".into(), vec![5, 10, 20]);
        assert_eq!(f.action_count("p", "login", 10), 2);
        assert_eq!(f.action_count("p", "buy", 0), 0);
        f.counts.push(("p".into(), "login".into(), 10, 7));
        assert_eq!(f.action_count("p", "login", 10), 7);
    }
}
