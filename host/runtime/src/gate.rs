//! Admission to the shared instance pool: every call of a tenant's plugin
//! reserves what it will instantiate (component and core instances,
//! memories, tables, and its memory cap) before it starts, from a budget
//! that no single tenant can take more than its share of.
//!
//! Without this, the pooling allocator's slots are first come, first
//! served: one tenant calling a component with many core instances at
//! high concurrency made *other* tenants' calls, first-party ones included,
//! fail with "maximum concurrent limit … reached". Now a call that cannot
//! be admitted waits, up to its own deadline, and then fails as `busy`;
//! first-party plugins run outside the gate on a reserved part of the pool.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use super::shape::Shape;

/// The dimensions a call reserves.
const DIMS: usize = 5;
const NAMES: [&str; DIMS] = [
    "component instances",
    "core instances",
    "memories",
    "tables",
    "MiB of memory",
];

/// What a call (or a budget) holds in each dimension.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Units([u64; DIMS]);

impl Units {
    /// What one call of a component of `shape` with a memory cap of
    /// `memory_bytes` reserves.
    pub fn call(shape: Shape, memory_bytes: usize) -> Units {
        Units([
            1,
            u64::from(shape.core_instances.max(1)),
            u64::from(shape.memories),
            u64::from(shape.tables),
            (memory_bytes as u64).div_ceil(1 << 20),
        ])
    }

    /// A budget: the pool's sizes and a memory total in MiB.
    pub fn budget(
        instances: u64,
        core_instances: u64,
        memories: u64,
        tables: u64,
        memory_mib: u64,
    ) -> Units {
        Units([instances, core_instances, memories, tables, memory_mib])
    }

    /// `percent` of each dimension (at least 1).
    pub fn share(self, percent: u64) -> Units {
        Units(self.0.map(|v| (v.saturating_mul(percent) / 100).max(1)))
    }

    fn plus(self, o: Units) -> Units {
        let mut r = self.0;
        for (a, b) in r.iter_mut().zip(o.0) {
            *a = a.saturating_add(b);
        }
        Units(r)
    }

    fn minus(self, o: Units) -> Units {
        let mut r = self.0;
        for (a, b) in r.iter_mut().zip(o.0) {
            *a = a.saturating_sub(b);
        }
        Units(r)
    }

    /// The first dimension in which `self` exceeds `limit`.
    fn over(self, limit: Units) -> Option<&'static str> {
        (0..DIMS)
            .find(|&i| self.0[i] > limit.0[i])
            .map(|i| NAMES[i])
    }

    fn is_zero(self) -> bool {
        self.0.iter().all(|v| *v == 0)
    }
}

/// Why a call was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The call alone needs more than a tenant may ever hold.
    TooBig(&'static str),
    /// The tenant, or the whole pool, stayed full until the deadline.
    Busy {
        tenant_full: bool,
        what: &'static str,
    },
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::TooBig(what) => write!(
                f,
                "one call needs more {what} than a tenant may hold at once; lower the binding's memory_mib"
            ),
            Refused::Busy {
                tenant_full: true,
                what,
            } => write!(
                f,
                "this tenant's plugin calls already hold all the {what} it may use at once; calls waited until their deadline"
            ),
            Refused::Busy { what, .. } => write!(
                f,
                "the server's plugin pool had no {what} free until the call's deadline; try again"
            ),
        }
    }
}

/// The admission gate of one instance pool.
pub struct Gate {
    total: Units,
    per_tenant: Units,
    max_calls_per_tenant: u64,
    state: Mutex<State>,
    freed: Condvar,
}

#[derive(Default)]
struct State {
    used: Units,
    tenants: HashMap<Arc<str>, (Units, u64)>,
    /// Calls waiting for room, per tenant. Each holds a thread while it
    /// waits, so a tenant may have only as many waiting as running.
    waiting: HashMap<Arc<str>, u64>,
}

/// A reservation; dropping it gives the units back.
pub struct Ticket<'a> {
    gate: &'a Gate,
    tenant: Arc<str>,
    units: Units,
}

impl Gate {
    /// A gate over `total`, of which one tenant holds at most `per_tenant`
    /// and at most `max_calls_per_tenant` calls.
    pub fn new(total: Units, per_tenant: Units, max_calls_per_tenant: u64) -> Gate {
        Gate {
            total,
            per_tenant,
            max_calls_per_tenant: max_calls_per_tenant.max(1),
            state: Mutex::new(State::default()),
            freed: Condvar::new(),
        }
    }

    /// Reserve `units` for a call of `tenant`, waiting until `deadline` for
    /// room.
    pub fn admit(
        &self,
        tenant: &Arc<str>,
        units: Units,
        deadline: Instant,
    ) -> Result<Ticket<'_>, Refused> {
        if let Some(what) = units.over(self.per_tenant) {
            return Err(Refused::TooBig(what));
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut queued = false;
        let result = loop {
            let (held, calls) = state.tenants.get(tenant).copied().unwrap_or_default();
            let tenant_over = if calls >= self.max_calls_per_tenant {
                Some("concurrent calls")
            } else {
                held.plus(units).over(self.per_tenant)
            };
            let pool_over = state.used.plus(units).over(self.total);
            if tenant_over.is_none() && pool_over.is_none() {
                state.used = state.used.plus(units);
                let e = state.tenants.entry(tenant.clone()).or_default();
                e.0 = e.0.plus(units);
                e.1 += 1;
                break Ok(Ticket {
                    gate: self,
                    tenant: tenant.clone(),
                    units,
                });
            }
            if !queued {
                let w = state.waiting.entry(tenant.clone()).or_default();
                if *w >= self.max_calls_per_tenant {
                    // As many already wait as may run: refuse at once.
                    return Err(Refused::Busy {
                        tenant_full: true,
                        what: "waiting calls",
                    });
                }
                *w += 1;
                queued = true;
            }
            let now = Instant::now();
            if now >= deadline {
                break Err(match tenant_over {
                    Some(what) => Refused::Busy {
                        tenant_full: true,
                        what,
                    },
                    None => Refused::Busy {
                        tenant_full: false,
                        what: pool_over.unwrap_or("room"),
                    },
                });
            }
            state = match self.freed.wait_timeout(state, deadline - now) {
                Ok((s, _)) => s,
                Err(p) => p.into_inner().0,
            };
        };
        if queued && let Some(w) = state.waiting.get_mut(tenant) {
            *w = w.saturating_sub(1);
            if *w == 0 {
                state.waiting.remove(tenant);
            }
        }
        result
    }

    fn release(&self, tenant: &Arc<str>, units: Units) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.used = state.used.minus(units);
        if let Some(e) = state.tenants.get_mut(tenant) {
            e.0 = e.0.minus(units);
            e.1 = e.1.saturating_sub(1);
            if e.1 == 0 && e.0.is_zero() {
                state.tenants.remove(tenant);
            }
        }
        drop(state);
        self.freed.notify_all();
    }

    /// What is reserved now, over all tenants.
    #[cfg(test)]
    fn in_use(&self) -> (u64, u64) {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (state.used.0[0], state.used.0[1])
    }
}

/// The part of the pool idle warm instances may hold, in all. An idle
/// instance keeps its pool slots and its memory, so without a bound the
/// warm pools of many bindings could fill the pool between calls.
pub struct IdleBudget {
    cap: Units,
    used: Mutex<Units>,
}

impl IdleBudget {
    pub fn new(cap: Units) -> IdleBudget {
        IdleBudget {
            cap,
            used: Mutex::new(Units::default()),
        }
    }

    /// Take `units` for an instance to keep idle; false when full.
    pub fn take(&self, units: Units) -> bool {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if used.plus(units).over(self.cap).is_some() {
            return false;
        }
        *used = used.plus(units);
        true
    }

    /// Give back what an idle instance held.
    pub fn give(&self, units: Units) {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        *used = used.minus(units);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.gate.release(&self.tenant, self.units);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn gate() -> Gate {
        let total = Units::budget(10, 40, 20, 80, 1000);
        Gate::new(total, total.share(50), 4)
    }

    fn shape(core: u32) -> Shape {
        Shape {
            core_instances: core,
            memories: 1,
            tables: 1,
        }
    }

    #[test]
    fn a_tenant_holds_at_most_its_share_and_others_still_get_in() {
        let g = gate();
        let (bad, good): (Arc<str>, Arc<str>) = ("bad".into(), "good".into());
        let soon = || Instant::now() + Duration::from_millis(20);
        let big = Units::call(shape(10), 1 << 20);
        let t1 = g.admit(&bad, big, soon()).expect("first");
        let t2 = g
            .admit(&bad, big, soon())
            .expect("second: 20 of 20 core instances");
        assert_eq!(
            g.admit(&bad, big, soon()).err(),
            Some(Refused::Busy {
                tenant_full: true,
                what: "core instances"
            })
        );
        // The other tenant is untouched by the first one's flood.
        let ok = g.admit(&good, Units::call(shape(2), 1 << 20), soon());
        assert!(ok.is_ok());
        drop((t1, t2));
        assert!(g.admit(&bad, big, soon()).is_ok());
    }

    #[test]
    fn refusals_say_why_and_every_ticket_gives_back_what_it_took() {
        let g = gate();
        let t: Arc<str> = "t".into();
        let huge = Units::call(shape(30), 1 << 20);
        assert_eq!(
            g.admit(&t, huge, Instant::now()).err(),
            Some(Refused::TooBig("core instances"))
        );
        let small = Units::call(shape(1), 1 << 20);
        let tickets: Vec<_> = (0..4)
            .map(|_| g.admit(&t, small, Instant::now()).expect("in"))
            .collect();
        assert_eq!(
            g.admit(&t, small, Instant::now()).err(),
            Some(Refused::Busy {
                tenant_full: true,
                what: "concurrent calls"
            })
        );
        drop(tickets);
        assert_eq!(g.in_use(), (0, 0));
    }

    #[test]
    fn a_tenant_may_have_only_as_many_calls_waiting_as_running() {
        let g = Arc::new(gate());
        let t: Arc<str> = "t".into();
        let small = Units::call(shape(1), 1 << 20);
        let _running: Vec<_> = (0..4)
            .map(|_| g.admit(&t, small, Instant::now()).expect("in"))
            .collect();
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let (g, t) = (g.clone(), t.clone());
                std::thread::spawn(move || {
                    g.admit(&t, small, Instant::now() + Duration::from_millis(300))
                        .map(|_| ())
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            g.admit(&t, small, Instant::now() + Duration::from_secs(5))
                .err(),
            Some(Refused::Busy {
                tenant_full: true,
                what: "waiting calls"
            }),
            "refused at once, not after five seconds"
        );
        for w in waiters {
            assert!(w.join().expect("thread").is_err(), "timed out waiting");
        }
    }

    #[test]
    fn a_waiting_call_gets_in_when_another_finishes() {
        let g = Arc::new(gate());
        let t: Arc<str> = "t".into();
        let big = Units::call(shape(10), 1 << 20);
        let held = (
            g.admit(&t, big, Instant::now()),
            g.admit(&t, big, Instant::now()),
        );
        let (g2, t2) = (g.clone(), t.clone());
        let waiter = std::thread::spawn(move || {
            g2.admit(&t2, big, Instant::now() + Duration::from_secs(5))
                .map(|_| ())
        });
        std::thread::sleep(Duration::from_millis(50));
        drop(held);
        assert_eq!(waiter.join().ok(), Some(Ok(())));
    }
}
