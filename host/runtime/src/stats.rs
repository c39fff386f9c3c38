//! Per-plugin-version invocation statistics, kept in memory since start.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

/// Four buckets per doubling, from 1 µs up to about 18 minutes.
const BUCKETS: usize = 4 * 30;

/// Counters of one plugin version.
#[derive(Default)]
pub struct Stats {
    inner: Mutex<Inner>,
}

struct Inner {
    calls: u64,
    errors: BTreeMap<&'static str, u64>,
    fallbacks: u64,
    fuel: u64,
    latency: [u64; BUCKETS],
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            calls: 0,
            errors: BTreeMap::new(),
            fallbacks: 0,
            fuel: 0,
            latency: [0; BUCKETS],
        }
    }
}

/// A snapshot of [`Stats`] as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[schema(as = Stats)]
pub struct StatsView {
    pub calls: u64,
    pub errors: BTreeMap<&'static str, u64>,
    pub fallbacks: u64,
    pub fuel_used: u64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
}

fn bucket(d: Duration) -> usize {
    let us = d.as_secs_f64() * 1e6;
    if us <= 1.0 {
        return 0;
    }
    ((us.log2() * 4.0).ceil() as usize).min(BUCKETS - 1)
}

fn bucket_upper_us(i: usize) -> f64 {
    (2f64).powf(i as f64 / 4.0)
}

impl Stats {
    /// Count one call.
    pub fn record(
        &self,
        elapsed: Duration,
        fuel: u64,
        error: Option<&'static str>,
        fell_back: bool,
    ) {
        if let Ok(mut s) = self.inner.lock() {
            s.calls += 1;
            s.fuel = s.fuel.saturating_add(fuel);
            s.latency[bucket(elapsed)] += 1;
            if let Some(kind) = error {
                *s.errors.entry(kind).or_default() += 1;
            }
            if fell_back {
                s.fallbacks += 1;
            }
        }
    }

    /// The counters now.
    pub fn view(&self) -> StatsView {
        let Ok(s) = self.inner.lock() else {
            return StatsView {
                calls: 0,
                errors: BTreeMap::new(),
                fallbacks: 0,
                fuel_used: 0,
                p50_us: None,
                p99_us: None,
            };
        };
        let quantile = |q: f64| {
            if s.calls == 0 {
                return None;
            }
            let rank = ((s.calls as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, n) in s.latency.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    return Some((bucket_upper_us(i) * 10.0).round() / 10.0);
                }
            }
            None
        };
        StatsView {
            calls: s.calls,
            errors: s.errors.clone(),
            fallbacks: s.fallbacks,
            fuel_used: s.fuel,
            p50_us: quantile(0.5),
            p99_us: quantile(0.99),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_bound_the_recorded_latencies() {
        let s = Stats::default();
        for _ in 0..98 {
            s.record(Duration::from_micros(10), 5, None, false);
        }
        s.record(Duration::from_millis(5), 5, Some("timeout"), true);
        s.record(Duration::from_millis(5), 5, Some("timeout"), false);
        let v = s.view();
        assert_eq!(v.calls, 100);
        assert_eq!(v.errors.get("timeout"), Some(&2));
        assert_eq!(v.fallbacks, 1);
        assert_eq!(v.fuel_used, 500);
        let p50 = v.p50_us.unwrap();
        assert!((10.0..12.0).contains(&p50), "{p50}");
        let p99 = v.p99_us.unwrap();
        assert!((5000.0..6000.0).contains(&p99), "{p99}");
    }
}
