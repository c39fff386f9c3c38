//! Slowing down credential guessing: failed credential checks are counted
//! per login (tenant and user name, or API key) and per client address in
//! a fixed window; past the allowance, checks for that login or address
//! are refused at once, without looking at the credential, until the
//! window ends. A success clears the login's count (not the address's:
//! one valid account must not reset a guesser's budget).
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
    /// Failed checks of one login (user name, API key) allowed per window.
    pub max_failures_per_login: u32,
    /// Failed checks from one client address allowed per window.
    pub max_failures_per_address: u32,
    /// The window, in ms: a login or address that used up its allowance is
    /// refused until its window ends.
    pub window_ms: u64,
    /// The most logins and addresses tracked at once (memory bound); when
    /// full, expired entries are dropped, then the oldest.
    pub max_tracked: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            max_failures_per_login: 10,
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
    login: Option<String>,
    address: Option<String>,
}

impl Subject {
    /// A check of `login` (any stable name for the credential's owner,
    /// e.g. `tenant/user` or an API key) from `ip`.
    pub fn new(kind: &str, login: &str, ip: Option<IpAddr>) -> Subject {
        // A login is counted by a bounded prefix: a megabyte-long name must
        // not become a megabyte-long key.
        let login: String = login.chars().take(128).collect();
        Subject {
            login: Some(format!("{kind}:{login}")),
            address: ip.map(|ip| format!("ip:{ip}")),
        }
    }

    /// A check of a credential that names no owner (a random token): only
    /// the address is counted.
    pub fn address(ip: Option<IpAddr>) -> Subject {
        Subject {
            login: None,
            address: ip.map(|ip| format!("ip:{ip}")),
        }
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
        let wait = [
            s.login
                .as_deref()
                .and_then(|l| locked(l, self.config.max_failures_per_login)),
            s.address
                .as_deref()
                .and_then(|a| locked(a, self.config.max_failures_per_address)),
        ]
        .into_iter()
        .flatten()
        .max();
        match wait {
            Some(retry_after) => Err(Locked { retry_after }),
            None => Ok(()),
        }
    }

    /// Count the outcome of a check.
    pub fn record(&self, s: &Subject, ok: bool) {
        let now = Instant::now();
        let window = self.window();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if ok {
            if let Some(l) = &s.login {
                entries.remove(l);
            }
            return;
        }
        if entries.len() + 2 > self.config.max_tracked.max(2) {
            entries.retain(|_, e| e.started + window > now);
            while entries.len() + 2 > self.config.max_tracked.max(2) {
                let oldest = entries
                    .iter()
                    .min_by_key(|(_, e)| e.started)
                    .map(|(k, _)| k.clone());
                match oldest {
                    Some(k) => entries.remove(&k),
                    None => break,
                };
            }
        }
        for key in s.login.iter().chain(s.address.as_ref()) {
            let e = entries.entry(key.clone()).or_insert(Entry {
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

    fn throttle(window_ms: u64) -> Throttle {
        Throttle::new(ThrottleConfig {
            max_failures_per_login: 3,
            max_failures_per_address: 5,
            window_ms,
            max_tracked: 8,
        })
    }

    #[test]
    fn a_login_is_locked_after_its_allowance_and_free_after_the_window() {
        let t = throttle(100);
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        let s = Subject::new("user", "acme/admin", Some(ip));
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
        let t = throttle(60_000);
        let ip: IpAddr = "10.0.0.2".parse().expect("ip");
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
        let t = throttle(60_000);
        for i in 0..100 {
            t.record(&Subject::new("user", &format!("u{i}"), None), false);
        }
        assert!(t.tracked() <= 8);
    }
}
