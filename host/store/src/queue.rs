//! A durable queue: items enqueued inside the transaction that makes them
//! necessary, claimed when due with a lease, and marked done when handled.
//!
//! Why a lease and not a lock: a worker that claims an item and dies (a
//! crash, a killed host) must not lose it. A claim moves the item to "due
//! again when the lease ends"; `done` removes it. An item whose worker died
//! comes back when its lease ends and is claimed again, with its attempt
//! count raised: handling is at least once, so handlers must tolerate a
//! repeat (they record their effect in the same transaction as `done`, or
//! their effect is idempotent). This maps onto a SQL table with a `due`
//! column claimed by `UPDATE … WHERE due <= now … RETURNING`, as the
//! PostgreSQL backend will.
//!
//! Keys are (due time, sequence): items come out in due order, and among
//! equals in the order they were enqueued.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Reader, Store, StoreError, Table, Tx, key, parts, seq_part};

/// A due time as a key part: zero-padded, so keys sort by time.
fn time_part(ms: i64) -> String {
    format!("{:020}", ms.max(0))
}

/// One queue: its own table.
#[derive(Debug, Clone, Copy)]
pub struct Queue(Table);

/// A claimed item: handle it, then [`Queue::done`] its key.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed<T> {
    pub key: String,
    pub item: T,
    /// How many times it was claimed, this claim included (more than 1:
    /// an earlier worker did not finish in its lease).
    pub attempts: u32,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    attempts: u32,
    /// Claimed and not yet done or given back: its key's time is the
    /// lease's end, not the item's due time.
    #[serde(default)]
    claimed: bool,
    item: serde_json::Value,
}

impl Queue {
    pub const fn new(name: &'static str) -> Queue {
        Queue(Table::new(name))
    }

    /// Enqueue `item`, due at `due_ms` (inside the caller's transaction: it
    /// exists exactly when the caller's effects do).
    pub fn push<T: Serialize>(&self, tx: &mut Tx, due_ms: i64, item: &T) -> Result<(), StoreError> {
        let seq = tx.next_seq("", self.0.name())?;
        let envelope = Envelope {
            attempts: 0,
            claimed: false,
            item: serde_json::to_value(item).map_err(|source| StoreError::Corrupt {
                table: self.0.to_string(),
                source,
            })?,
        };
        tx.put(
            self.0,
            &key(&[&time_part(due_ms), &seq_part(seq)]),
            &envelope,
        )
    }

    /// Claim up to `limit` items due at `now_ms`, each leased for
    /// `lease_ms` (due again then, unless done), in one write.
    pub async fn claim<T>(
        &self,
        store: &Store,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<Claimed<T>>, StoreError>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let table = self.0;
        let claimed: Vec<(String, u32, serde_json::Value)> = store
            .write(move |tx| {
                let due: Vec<(String, Envelope)> = tx
                    .scan_page(table, "", None, limit, false)?
                    .into_iter()
                    .filter(|(k, _): &(String, Envelope)| due_ms(k) <= now_ms)
                    .collect();
                let mut out = Vec::with_capacity(due.len());
                for (k, mut e) in due {
                    let seq = parts(&k).nth(1).unwrap_or_default().to_owned();
                    tx.remove(table, &k)?;
                    e.attempts += 1;
                    e.claimed = true;
                    let leased = key(&[&time_part(now_ms.saturating_add(lease_ms)), &seq]);
                    tx.put(table, &leased, &e)?;
                    out.push((leased, e.attempts, e.item));
                }
                Ok::<_, StoreError>(out)
            })
            .await?;
        claimed
            .into_iter()
            .map(|(key, attempts, v)| {
                let item = serde_json::from_value(v).map_err(|source| StoreError::Corrupt {
                    table: table.to_string(),
                    source,
                })?;
                Ok(Claimed {
                    key,
                    item,
                    attempts,
                })
            })
            .collect()
    }

    /// Whether the item of `key` is still there as claimed (not done, and
    /// not moved by another claim since).
    pub fn holds(&self, src: &impl Reader, key: &str) -> Result<bool, StoreError> {
        Ok(src.get_raw(self.0, key)?.is_some())
    }

    /// The item of `key` is handled: gone for good. False when it was not
    /// there (its lease ended and another claim moved it).
    pub fn done(&self, tx: &mut Tx, key: &str) -> Result<bool, StoreError> {
        tx.remove(self.0, key)
    }

    /// Give a claimed item back unhandled: due again at `now_ms` (a worker
    /// that stops before handling what it claimed).
    pub fn release(&self, tx: &mut Tx, key: &str, now_ms: i64) -> Result<bool, StoreError> {
        let Some(mut e) = tx.get::<Envelope>(self.0, key)? else {
            return Ok(false);
        };
        let seq = parts(key).nth(1).unwrap_or_default().to_owned();
        tx.remove(self.0, key)?;
        e.claimed = false;
        tx.put(self.0, &super::key(&[&time_part(now_ms), &seq]), &e)?;
        Ok(true)
    }

    /// Give back every claim (due again at `now_ms`): what a process that
    /// starts does with the claims of the one before it, when no other
    /// process can hold any — the embedded store is locked to one process,
    /// so its claims are all dead. With several hosts on one database
    /// ([`Store::is_shared`]) the claims may be live hosts' and nothing is
    /// given back: leases end on their own. How many were given back.
    pub async fn release_claims(&self, store: &Store, now_ms: i64) -> Result<usize, StoreError> {
        if store.is_shared() {
            return Ok(0);
        }
        let table = self.0;
        let mut after: Option<String> = None;
        let mut released = 0;
        loop {
            let page: Vec<(String, Envelope)> =
                store
                    .read()?
                    .scan_page(table, "", after.as_deref(), 256, false)?;
            let exhausted = page.len() < 256;
            after = page.last().map(|(k, _)| k.clone());
            let claimed: Vec<String> = page
                .into_iter()
                .filter(|(_, e)| e.claimed)
                .map(|(k, _)| k)
                .collect();
            if !claimed.is_empty() {
                released += store
                    .write(move |tx| {
                        let mut n = 0;
                        for k in &claimed {
                            n += usize::from(Queue(table).release(tx, k, now_ms)?);
                        }
                        Ok::<_, StoreError>(n)
                    })
                    .await?;
            }
            if exhausted {
                return Ok(released);
            }
        }
    }

    /// How many items wait, due or leased (all counted: for metrics).
    pub fn count(&self, src: &impl Reader) -> Result<u64, StoreError> {
        src.count_from(self.0, "", "")
    }

    /// How many items wait, due or leased (at most `limit` counted).
    pub fn len(&self, src: &impl Reader, limit: usize) -> Result<usize, StoreError> {
        Ok(src.scan_raw(self.0, "", None, limit, false)?.len())
    }

    /// The due time of the first item, if any (for the next wake-up).
    pub fn next_due(&self, src: &impl Reader) -> Result<Option<i64>, StoreError> {
        Ok(src
            .scan_raw(self.0, "", None, 1, false)?
            .first()
            .map(|(k, _)| due_ms(k)))
    }
}

fn due_ms(k: &str) -> i64 {
    parts(k).next().and_then(|t| t.parse().ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const Q: Queue = Queue::new("test_queue");

    fn open(path: &std::path::Path) -> Store {
        let dir = crate::files::open_data_dir(path).expect("dir");
        Store::open(&dir).expect("store")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn due_order_leases_and_done() {
        let path = std::env::temp_dir().join(format!("engage-q-{}", crate::ids::random_hex(6)));
        let store = open(&path);
        store
            .write(|tx| {
                Q.push(tx, 300, &"c")?;
                Q.push(tx, 100, &"a")?;
                Q.push(tx, 100, &"b")?;
                Q.push(tx, 5_000, &"later")
            })
            .await
            .expect("push");
        let first: Vec<Claimed<String>> = Q.claim(&store, 1_000, 10_000, 10).await.expect("claim");
        let items: Vec<&str> = first.iter().map(|c| c.item.as_str()).collect();
        assert_eq!(items, ["a", "b", "c"], "due order, then enqueue order");
        assert!(first.iter().all(|c| c.attempts == 1));
        // Leased: not due again before the lease ends; `later` is not due.
        let none: Vec<Claimed<String>> = Q.claim(&store, 2_000, 10_000, 10).await.expect("claim");
        assert!(none.is_empty(), "{none:?}");
        let a = first[0].key.clone();
        assert!(store.write(move |tx| Q.done(tx, &a)).await.expect("done"));
        // Past the lease, the unfinished ones come back, attempts counted.
        let again: Vec<Claimed<String>> = Q.claim(&store, 11_001, 10_000, 10).await.expect("claim");
        let items: Vec<(&str, u32)> = again
            .iter()
            .map(|c| (c.item.as_str(), c.attempts))
            .collect();
        // Re-leased together, they keep their enqueue order (c, then b).
        assert_eq!(items, [("later", 1), ("c", 2), ("b", 2)]);
        // A done for a key another claim moved is a no-op.
        let stale = first[1].key.clone();
        assert!(
            !store
                .write(move |tx| Q.done(tx, &stale))
                .await
                .expect("done")
        );
        // A new process gives back its predecessor's claims at once.
        assert_eq!(Q.release_claims(&store, 12_000).await.expect("release"), 3);
        let back: Vec<Claimed<String>> = Q.claim(&store, 12_000, 10_000, 10).await.expect("claim");
        assert_eq!(back.len(), 3, "{back:?}");
        assert_eq!(Q.release_claims(&store, 12_000).await.expect("release"), 3);
        assert_eq!(
            Q.release_claims(&store, 12_000).await.expect("release"),
            0,
            "given back once"
        );
        drop(store);
        let _ = std::fs::remove_dir_all(&path);
    }

    /// Random pushes, claims, dones, restarts and clock steps (seeded):
    /// every item pushed is, at the end, done exactly once or still in the
    /// queue — never lost, never done twice — and a claimed item is never
    /// handed out again while its lease runs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nothing_is_lost_or_done_twice_across_restarts() {
        let path = std::env::temp_dir().join(format!("engage-q-{}", crate::ids::random_hex(6)));
        let mut store = open(&path);
        let mut seeded = crate::ids::Seeded::new(0x9E37_79B9_7F4A_7C15u64);
        let mut next = |n: u64| seeded.below(n);
        let (mut now, lease) = (0i64, 1_000i64);
        let mut pushed = 0u64;
        let mut done: BTreeMap<u64, u32> = BTreeMap::new();
        // item → lease end of the claim we hold
        let mut held: BTreeMap<u64, (String, i64)> = BTreeMap::new();
        for _ in 0..400 {
            match next(10) {
                0..=2 => {
                    let (id, due) = (pushed, now + next(2_000) as i64);
                    pushed += 1;
                    store
                        .write(move |tx| Q.push(tx, due, &id))
                        .await
                        .expect("push");
                }
                3..=5 => {
                    let got: Vec<Claimed<u64>> =
                        Q.claim(&store, now, lease, 5).await.expect("claim");
                    for c in got {
                        if let Some((_, until)) = held.get(&c.item) {
                            assert!(now >= *until, "item {} handed out inside its lease", c.item);
                        }
                        held.insert(c.item, (c.key, now + lease));
                    }
                }
                6..=7 => {
                    if let Some((&id, (k, _))) =
                        held.iter().nth(next(held.len().max(1) as u64) as usize)
                    {
                        let k = k.clone();
                        let removed = store.write(move |tx| Q.done(tx, &k)).await.expect("done");
                        held.remove(&id);
                        if removed {
                            *done.entry(id).or_default() += 1;
                        }
                    }
                }
                8 => {
                    // A restart: leases survive it.
                    let closing = store.closing();
                    drop(store);
                    assert!(closing.wait(std::time::Duration::from_secs(10)).await);
                    store = open(&path);
                }
                _ => now += next(1_500) as i64,
            }
        }
        let left: Vec<Claimed<u64>> = Q
            .claim(&store, i64::MAX / 4, lease, 10_000)
            .await
            .expect("drain");
        let left: std::collections::BTreeSet<u64> = left.into_iter().map(|c| c.item).collect();
        for id in 0..pushed {
            let d = done.get(&id).copied().unwrap_or(0);
            assert!(d <= 1, "item {id} done {d} times");
            assert!(
                (d == 1) != left.contains(&id),
                "item {id}: done {d}, still queued {}",
                left.contains(&id)
            );
        }
        drop(store);
        let _ = std::fs::remove_dir_all(&path);
    }
}
