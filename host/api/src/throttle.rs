//! Slowing down credential guessing: failed credential checks are counted
//! in a fixed window per login from one address, per address, and — for
//! user-chosen passwords, which can be guessed from many addresses — per
//! login over all addresses (with a higher allowance). Past an allowance,
//! checks are refused at once, without looking at the credential, until
//! the window ends. A success clears its login's counts (not the
//! address's: one valid account must not reset a guesser's budget).
//!
//! Why not one count per login: an API key is public (browser apps embed
//! it), so anyone could then lock a tenant out of its own tokens by sending
//! ten wrong secrets a minute. A secret of 192 random bits cannot be
//! guessed anyway; its failures count per address. A password can, so it
//! also has the all-addresses count, whose allowance is ten times higher.
//!
//! The state is in memory, per process: it bounds what one host answers,
//! which is what protects its CPU, and it forgets on restart.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// Limits on failed credential checks.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Failed checks of one login (user name, API key) from one address
    /// allowed per window.
    pub max_failures_per_login: u32,
    /// Failed password checks of one user name from all addresses together
    /// allowed per window.
    pub max_failures_per_user: u32,
    /// Failed checks from one client address allowed per window.
    pub max_failures_per_address: u32,
    /// The window, in ms: a login or address that used up its allowance is
    /// refused until its window ends.
    pub window_ms: u64,
    /// The most logins and addresses tracked at once (memory bound); when
    /// full, expired entries are dropped, then those not locked out.
    pub max_tracked: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            max_failures_per_login: 10,
            max_failures_per_user: 100,
            max_failures_per_address: 300,
            window_ms: 60_000,
            max_tracked: 100_000,
        }
    }
}

/// Refused: too many failures; try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked {
    pub retry_after: Duration,
}

impl Locked {
    /// Whole seconds to wait, at least 1 (for `Retry-After`).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }
}

impl std::fmt::Display for Locked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "too many failed attempts; try again in {} s",
            self.retry_after_secs()
        )
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    started: Instant,
    failures: u32,
}

/// The failure counters.
pub struct Throttle {
    config: ThrottleConfig,
    entries: Mutex<HashMap<String, Entry>>,
}

/// What one credential check is counted under.
pub struct Subject {
    /// The login as tried from this address.
    pair: Option<String>,
    /// The login from anywhere (passwords only).
    login: Option<String>,
    address: Option<String>,
}

/// A login name bounded in length: a megabyte-long name must not become a
/// megabyte-long key.
fn bounded(kind: &str, login: &str) -> String {
    let login: String = login.chars().take(128).collect();
    format!("{kind}:{login}")
}

impl Subject {
    /// A check of a high-entropy secret belonging to `login` (an API key
    /// and secret, an app id and secret) from `ip`.
    pub fn new(kind: &str, login: &str, ip: Option<IpAddr>) -> Subject {
        let address = ip.map(|ip| format!("ip:{ip}"));
        Subject {
            pair: Some(format!(
                "{}@{}",
                bounded(kind, login),
                address.as_deref().unwrap_or("-")
            )),
            login: None,
            address,
        }
    }

    /// A check of a user-chosen password of `login` from `ip`.
    pub fn password(kind: &str, login: &str, ip: Option<IpAddr>) -> Subject {
        Subject {
            login: Some(bounded(kind, login)),
            ..Subject::new(kind, login, ip)
        }
    }

    /// A check of a credential that names no owner (a random token): only
    /// the address is counted.
    pub fn address(ip: Option<IpAddr>) -> Subject {
        Subject {
            pair: None,
            login: None,
            address: ip.map(|ip| format!("ip:{ip}")),
        }
    }

    /// Each key with its allowance.
    fn keys<'a>(&'a self, c: &ThrottleConfig) -> impl Iterator<Item = (&'a str, u32)> {
        [
            (self.pair.as_deref(), c.max_failures_per_login),
            (self.login.as_deref(), c.max_failures_per_user),
            (self.address.as_deref(), c.max_failures_per_address),
        ]
        .into_iter()
        .filter_map(|(k, max)| k.map(|k| (k, max)))
    }
}

impl Throttle {
    pub fn new(config: ThrottleConfig) -> Throttle {
        Throttle {
            config,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn window(&self) -> Duration {
        Duration::from_millis(self.config.window_ms.max(1))
    }

    /// Refuse at once when the login or the address used up its allowance.
    pub fn check(&self, s: &Subject) -> Result<(), Locked> {
        let now = Instant::now();
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let window = self.window();
        let locked = |key: &str, max: u32| -> Option<Duration> {
            let e = entries.get(key)?;
            let end = e.started + window;
            (e.failures >= max && end > now).then(|| end - now)
        };
        let wait = s
            .keys(&self.config)
            .filter_map(|(k, max)| locked(k, max))
            .max();
        match wait {
            Some(retry_after) => {
                engage_telemetry::refused("credential_throttle");
                Err(Locked { retry_after })
            }
            None => Ok(()),
        }
    }

    /// Count the outcome of a check.
    pub fn record(&self, s: &Subject, ok: bool) {
        if ok && s.pair.is_none() && s.login.is_none() {
            // A success clears nothing for an address: no need to lock
            // (this is every request with a valid token).
            return;
        }
        let now = Instant::now();
        let window = self.window();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if ok {
            for key in s.pair.iter().chain(s.login.iter()) {
                entries.remove(key);
            }
            return;
        }
        let cap = self.config.max_tracked.max(3);
        if entries.len() + 3 > cap {
            // Full: forget the expired, then those not locked out, then
            // everything. Each step frees many entries at once, so a flood
            // of new names costs O(1) per failure, amortized.
            entries.retain(|_, e| e.started + window > now);
            let least = self
                .config
                .max_failures_per_login
                .min(self.config.max_failures_per_user)
                .min(self.config.max_failures_per_address);
            if entries.len() + 3 > cap * 9 / 10 {
                entries.retain(|_, e| e.failures >= least);
            }
            if entries.len() + 3 > cap * 9 / 10 {
                entries.clear();
            }
        }
        for (key, _) in s.keys(&self.config) {
            let e = entries.entry(key.to_owned()).or_insert(Entry {
                started: now,
                failures: 0,
            });
            if e.started + window <= now {
                *e = Entry {
                    started: now,
                    failures: 0,
                };
            }
            e.failures = e.failures.saturating_add(1);
        }
    }

    /// How many logins and addresses are tracked (for tests).
    pub fn tracked(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(window_ms: u64, max_tracked: usize) -> Throttle {
        Throttle::new(ThrottleConfig {
            max_failures_per_login: 3,
            max_failures_per_user: 4,
            max_failures_per_address: 5,
            window_ms,
            max_tracked,
        })
    }

    #[test]
    fn a_login_is_locked_after_its_allowance_and_free_after_the_window() {
        let t = throttle(100, 64);
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        let s = Subject::password("user", "acme/admin", Some(ip));
        for _ in 0..3 {
            assert!(t.check(&s).is_ok());
            t.record(&s, false);
        }
        let locked = t.check(&s).expect_err("locked");
        assert!(locked.retry_after <= Duration::from_millis(100));
        std::thread::sleep(Duration::from_millis(120));
        assert!(t.check(&s).is_ok(), "the window ended");
    }

    #[test]
    fn an_address_is_locked_across_logins_and_a_success_does_not_reset_it() {
        let t = throttle(60_000, 64);
        let ip: IpAddr = "10.0.0.2".parse().expect("ip");
        // A public API key guessed at from one address is not locked for
        // the others.
        let key = |ip: &str| Subject::new("key", "ek_public", Some(ip.parse().expect("ip")));
        for _ in 0..3 {
            t.record(&key("10.0.0.9"), false);
        }
        assert!(t.check(&key("10.0.0.9")).is_err());
        assert!(t.check(&key("10.0.0.8")).is_ok());
        // A password guessed at from many addresses is.
        let user = |ip: &str| Subject::password("user", "acme/bob", Some(ip.parse().expect("ip")));
        for i in 0..4 {
            t.record(&user(&format!("10.1.0.{i}")), false);
        }
        assert!(t.check(&user("10.1.0.200")).is_err());
        for i in 0..5 {
            let s = Subject::new("user", &format!("acme/u{i}"), Some(ip));
            t.record(&s, false);
        }
        let fresh = Subject::new("user", "acme/other", Some(ip));
        assert!(t.check(&fresh).is_err(), "the address used its allowance");
        t.record(&fresh, true);
        assert!(t.check(&fresh).is_err());
        let elsewhere = Subject::new("user", "acme/other", Some("10.0.0.3".parse().expect("ip")));
        assert!(t.check(&elsewhere).is_ok());
    }

    #[test]
    fn memory_stays_bounded() {
        let t = throttle(60_000, 8);
        for i in 0..100 {
            t.record(&Subject::new("user", &format!("u{i}"), None), false);
        }
        assert!(t.tracked() <= 8);
    }
}
