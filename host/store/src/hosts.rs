//! The hosts sharing a store, for limits that must hold across all of
//! them together.
//!
//! Each host writes a heartbeat row (its id and when it expires) every
//! [`BEAT_EVERY`]; the hosts whose rows have not expired are the live ones.
//! A host knows its rank among them (by id), so a limit of `n` is split
//! into shares that add up to exactly `n` ([`Hosts::share`]). There is no
//! leader: a dead host's row expires after [`TTL`] and the others take its
//! share then. While it is still counted, the others use less than the
//! limit, never more; a host that joins is counted by the others within a
//! beat, the one window in which the shares may add up to more.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::shutdown::Shutdown;
use crate::{Reader, Store, StoreError, Table};

const HOSTS: Table = Table::new("hosts");

/// How often a host renews its row.
pub const BEAT_EVERY: Duration = Duration::from_secs(1);
/// How long a row lives without renewal.
pub const TTL: Duration = Duration::from_secs(5);
/// The most hosts counted.
const MAX_HOSTS: usize = 1024;

/// This host among the hosts sharing its store.
pub struct Hosts {
    id: String,
    rank: AtomicU32,
    count: AtomicU32,
}

impl Default for Hosts {
    fn default() -> Self {
        Hosts {
            id: crate::ids::random_hex(8),
            rank: AtomicU32::new(0),
            count: AtomicU32::new(1),
        }
    }
}

impl Hosts {
    /// This host's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// How many hosts are live (1 when alone).
    pub fn count(&self) -> u32 {
        self.count.load(Ordering::Relaxed).max(1)
    }

    /// This host's share of a limit of `total`: the shares of all live
    /// hosts add up to `total` exactly (some get 0 when `total` is smaller
    /// than the number of hosts).
    pub fn share(&self, total: u32) -> u32 {
        split(total, self.rank.load(Ordering::Relaxed), self.count())
    }

    /// This host's share of a rate.
    pub fn share_rate(&self, total: f64) -> f64 {
        total / f64::from(self.count())
    }

    /// Renew this host's row and recount until shutdown; then remove the
    /// row so the others take its share at once. A no-op on a store no
    /// other host shares.
    pub async fn heartbeat_loop(self: Arc<Self>, store: Store, mut stop: Shutdown) {
        if !store.is_shared() {
            return;
        }
        while !stop.is_requested() {
            if let Err(e) = self.beat(&store).await {
                tracing::warn!(error = %e, "host heartbeat");
            }
            stop.sleep(BEAT_EVERY).await;
        }
        let id = self.id.clone();
        let _ = store.write(move |tx| tx.remove(HOSTS, &id).map(drop)).await;
    }

    /// Renew, then count the live hosts and find this one's rank.
    pub async fn beat(&self, store: &Store) -> Result<(), StoreError> {
        let now = crate::ids::now_ms();
        let until = now.saturating_add(TTL.as_millis() as i64);
        let id = self.id.clone();
        store
            .write(move |tx| tx.put_u64(HOSTS, &id, until as u64))
            .await?;
        let rows = store.read()?.scan_raw(HOSTS, "", None, MAX_HOSTS, false)?;
        let mut live = Vec::new();
        let mut dead = Vec::new();
        for (host, v) in rows {
            let expires = <[u8; 8]>::try_from(v.as_slice())
                .map(u64::from_le_bytes)
                .unwrap_or(0) as i64;
            if expires > now || host == self.id {
                live.push(host);
            } else if expires + 60_000 < now {
                dead.push(host);
            }
        }
        let rank = live.iter().position(|h| *h == self.id).unwrap_or(0);
        self.rank.store(rank as u32, Ordering::Relaxed);
        self.count
            .store(live.len().max(1) as u32, Ordering::Relaxed);
        if !dead.is_empty() {
            store
                .write(move |tx| {
                    for h in &dead {
                        tx.remove(HOSTS, h)?;
                    }
                    Ok::<_, StoreError>(())
                })
                .await?;
        }
        Ok(())
    }
}

/// The share of `total` for the host at `rank` of `count`.
fn split(total: u32, rank: u32, count: u32) -> u32 {
    let count = count.max(1);
    total / count + u32::from(rank < total % count)
}

#[cfg(test)]
mod tests {
    use super::split;

    /// Shares add up to the limit exactly, for every limit and host count,
    /// and differ by at most one.
    #[test]
    fn shares_add_up_to_the_limit() {
        for total in 0..200 {
            for count in 1..12 {
                let shares: Vec<u32> = (0..count).map(|r| split(total, r, count)).collect();
                assert_eq!(shares.iter().sum::<u32>(), total, "{total} over {count}");
                let (lo, hi) = (shares.iter().min(), shares.iter().max());
                assert!(hi.zip(lo).is_some_and(|(h, l)| h - l <= 1), "{shares:?}");
            }
        }
    }
}
