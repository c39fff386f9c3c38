//! The campaign worker: fires due schedule slots and turns queued jobs
//! into messages, each (campaign, person, trigger) at most once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::{
    CAPS, Campaign, CampaignStatus, DONE, Job, QUEUE, Queued, Settings, bump, enqueue, get,
    minutes_of, settings,
};
use crate::audiences::segments;
use crate::audiences::subscriptions::{self, Channel, Person, SubType};
use crate::events::{EVENTS, LoyaltyEvent};
use crate::players::{self, Player};
use engage_messaging::address::normalize_email;
use engage_messaging::{Kind, MessageError, Messaging, SendRequest, optouts};
use engage_store::ids::now_ms;
use engage_store::queue::Claimed;
use engage_store::shutdown::Shutdown;
use engage_store::{Reader, Store, StoreError, Tx, key};

/// Jobs worked on at once. Their writes share group commits, so more in
/// flight means fewer, larger commits: 256 accepted a 100,000-member
/// campaign in 16 s where 64 took 25 s (docs/benchmarks.md, issue 18). A
/// tenant's own plugins still run at most `max_concurrent_calls_per_tenant`
/// at once; the rest wait in the tenant's gate.
const IN_FLIGHT: usize = 256;
/// Players read per audience page.
const PAGE: usize = 500;
/// How often schedules are looked at (a slot fires at most this late).
const SCHEDULE_EVERY: Duration = Duration::from_millis(250);
/// How long a claimed job is its worker's: past it (the worker died), it
/// is claimed again.
const JOB_LEASE_MS: i64 = 60_000;

/// The worker.
pub struct Campaigns {
    store: Store,
    messaging: Arc<Messaging>,
    wake: Notify,
}

/// Why a person got nothing.
#[derive(Debug, Clone, Copy)]
enum Skip {
    NoPlayer,
    NoPhone,
    /// An e-mail campaign's player has no (valid) e-mail address.
    NoEmail,
    /// The address bounced or complained: nothing goes to it any more.
    Suppressed,
    NotInSegment,
    NotSubscribed,
    OptedOut,
    Capped,
    SendFailed,
    /// This trigger already reached this person (a threshold met again).
    AlreadySent,
}

impl Skip {
    fn counter(self) -> &'static str {
        match self {
            Skip::NoPlayer => "skipped_no_player",
            Skip::NoPhone => "skipped_no_phone",
            Skip::NoEmail => "skipped_no_email",
            Skip::Suppressed => "skipped_suppressed",
            Skip::NotInSegment => "skipped_not_in_segment",
            Skip::NotSubscribed => "skipped_not_subscribed",
            Skip::OptedOut => "skipped_opted_out",
            Skip::Capped => "skipped_capped",
            Skip::SendFailed => "skipped_send_failed",
            Skip::AlreadySent => "skipped_already_sent",
        }
    }
}

/// What the message transaction found (it declines to commit otherwise).
const DUPLICATE: &str = "campaign: already done";
const CAPPED: &str = "campaign: frequency cap";

impl Campaigns {
    pub fn new(store: Store, messaging: Arc<Messaging>) -> Arc<Campaigns> {
        Arc::new(Campaigns {
            store,
            messaging,
            wake: Notify::new(),
        })
    }

    /// Look at the queue now (after a send-now, say).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Fire schedules and work the queue until shutdown.
    pub async fn run_loop(self: Arc<Self>, mut shutdown: Shutdown) {
        let mut running: JoinSet<()> = JoinSet::new();
        let mut schedules_checked = std::time::Instant::now()
            .checked_sub(SCHEDULE_EVERY)
            .unwrap_or_else(std::time::Instant::now);
        if let Err(e) = self.index_schedules().await {
            tracing::error!(error = %e, "campaign schedule index");
        }
        // Jobs and events the previous process claimed and did not finish:
        // due now.
        for (queue, what) in [(QUEUE, "campaign jobs"), (EVENTS, "loyalty events")] {
            match queue.release_claims(&self.store, now_ms()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(n, "{what} given back after a restart"),
                Err(e) => tracing::error!(error = %e, "{what}: giving back claims"),
            }
        }
        while !shutdown.is_requested() {
            if schedules_checked.elapsed() >= SCHEDULE_EVERY {
                schedules_checked = std::time::Instant::now();
                if let Err(e) = self.fire_schedules(now_ms()).await {
                    tracing::error!(error = %e, "campaign schedules");
                }
            }
            if let Err(e) = self.react_to_events().await {
                tracing::error!(error = %e, "loyalty events");
            }
            while running.try_join_next().is_some() {}
            // Claim only what can run now (a claimed job waits for its lease
            // otherwise), and in batches, once half the slots are free: a
            // claim is a write, and claiming whenever one job finished cost
            // a commit per job (docs/benchmarks.md, issue 18).
            let room = IN_FLIGHT.saturating_sub(running.len());
            let room = if running.is_empty() || room >= IN_FLIGHT / 2 {
                room
            } else {
                0
            };
            match self.due(room).await {
                Ok(due) => {
                    for c in due {
                        let this = self.clone();
                        running.spawn(async move {
                            if let Err(e) = this.work(&c.key, c.item).await {
                                tracing::warn!(error = %e, "campaign job");
                            }
                        });
                    }
                }
                Err(e) => tracing::error!(error = %e, "campaign queue"),
            }
            tokio::select! {
                _ = shutdown.requested() => {}
                _ = self.wake.notified() => {}
                Some(_) = running.join_next(), if !running.is_empty() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        while running.join_next().await.is_some() {}
    }

    /// The campaigns each recorded event triggers: queued in the write that
    /// marks the event handled (so a repeat after a crash does nothing).
    async fn react_to_events(&self) -> Result<(), StoreError> {
        let now = now_ms();
        if EVENTS
            .next_due(&self.store.read()?)?
            .is_none_or(|d| d > now)
        {
            return Ok(());
        }
        let claimed: Vec<Claimed<LoyaltyEvent>> =
            EVENTS.claim(&self.store, now, JOB_LEASE_MS, 256).await?;
        if claimed.is_empty() {
            return Ok(());
        }
        self.store
            .write(move |tx| {
                for c in &claimed {
                    if EVENTS.done(tx, &c.key)? {
                        super::on_event(tx, &c.item, now)?;
                    }
                }
                Ok::<_, StoreError>(())
            })
            .await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Record how many campaign jobs wait (for a scrape of `/metrics`).
    pub fn record_queue(&self) -> Result<(), StoreError> {
        engage_telemetry::campaign_jobs_queued(QUEUE.count(&self.store.read()?)?);
        Ok(())
    }

    /// Claim up to `limit` due jobs (a read first: no write while idle).
    async fn due(&self, limit: usize) -> Result<Vec<Claimed<Queued>>, StoreError> {
        let now = now_ms();
        let first = QUEUE.next_due(&self.store.read()?)?;
        if limit == 0 || first.is_none_or(|d| d > now) {
            return Ok(Vec::new());
        }
        QUEUE.claim(&self.store, now, JOB_LEASE_MS, limit).await
    }

    /// Queue the audience of every schedule whose slot has come, once per
    /// slot (the slot is recorded in the same write). Slots missed while
    /// the server was down fire once, as the latest of them.
    async fn fire_schedules(&self, now: i64) -> Result<(), StoreError> {
        // Only what is due: the slot index, not every campaign.
        let due = super::due_slots(&self.store.read()?, now, 256)?;
        for (tenant, cid) in due {
            self.store
                .write(move |tx| {
                    let Some(old) = get(tx, &tenant, &cid)? else {
                        return Ok::<_, StoreError>(());
                    };
                    if old.spec.status != CampaignStatus::Active {
                        return Ok(());
                    }
                    let Some(mut slot) = old.next_slot_ms.filter(|n| *n <= now) else {
                        return Ok(()); // fired meanwhile
                    };
                    let mut c = old.clone();
                    while let Some(next) = c.spec.next_slot(slot).filter(|n| *n <= now) {
                        slot = next;
                    }
                    c.last_slot_ms = Some(slot);
                    c.next_slot_ms = c.spec.next_slot(slot);
                    super::save(tx, &tenant, Some(&old), &c)?;
                    let job = Job::Audience {
                        trigger: format!("slot:{slot}"),
                        after: None,
                    };
                    enqueue(tx, &tenant, &c.id, now, &job)?;
                    tracing::info!(tenant, campaign = %c.id, slot, "campaign slot fired");
                    Ok(())
                })
                .await?;
        }
        Ok(())
    }

    /// Put every scheduled campaign in the slot index, a page per write
    /// (once at start: a store from before the index has none).
    async fn index_schedules(&self) -> Result<(), StoreError> {
        let mut after: Option<String> = None;
        loop {
            let from = after.clone();
            after = self
                .store
                .write(move |tx| super::index_slots(tx, from.as_deref(), 500))
                .await?;
            if after.is_none() {
                return Ok(());
            }
        }
    }

    async fn work(&self, entry: &str, queued: Queued) -> Result<(), MessageError> {
        let Queued {
            tenant,
            campaign: cid,
            job,
        } = queued;
        let snap = self.store.read()?;
        let campaign =
            get(&snap, &tenant, &cid)?.filter(|c| c.spec.status == CampaignStatus::Active);
        let Some(campaign) = campaign else {
            drop(snap);
            let e = entry.to_owned();
            self.store
                .write(move |tx| QUEUE.done(tx, &e).map(|_| ()))
                .await?;
            engage_telemetry::campaign_job_done("dropped");
            return Ok(());
        };
        let (outcome, done) = match job {
            Job::Audience { trigger, after } => {
                drop(snap);
                let done = self.expand(entry, &tenant, &campaign, trigger, after).await;
                ("expanded", done)
            }
            Job::Person { player, trigger } => {
                let settings = settings(&snap, &tenant)?;
                let verdict = self.consider(&snap, &tenant, &campaign, &player)?;
                drop(snap);
                match verdict {
                    Err(skip) => ("skipped", self.skip(entry, &tenant, &cid, skip).await),
                    Ok((p, address)) => {
                        let sent = self
                            .send(entry, &tenant, &campaign, &p, address, &trigger, &settings)
                            .await;
                        ("sent", sent)
                    }
                }
            }
        };
        engage_telemetry::campaign_job_done(if done.is_ok() { outcome } else { "failed" });
        done
    }

    /// One page of the audience: a person job for each member, and the
    /// next page's job, in one write.
    async fn expand(
        &self,
        entry: &str,
        tenant: &str,
        c: &Campaign,
        trigger: String,
        after: Option<String>,
    ) -> Result<(), MessageError> {
        let now = now_ms();
        let snap = self.store.read()?;
        let page = players::list(&snap, tenant, after.as_deref(), PAGE)?;
        let segment = match c.spec.segment {
            Some(id) => segments::get(&snap, tenant, id)?,
            None => None,
        };
        let mut members = Vec::with_capacity(page.len());
        for p in &page {
            let inside = match &segment {
                Some(s) => segments::contains(&snap, tenant, s, p, now)?,
                None => c.spec.segment.is_none(),
            };
            if inside {
                members.push(p.id.clone());
            }
        }
        drop(snap);
        let last = (page.len() == PAGE)
            .then(|| page.last().map(|p| p.id.clone()))
            .flatten();
        let (e, t, cid) = (entry.to_owned(), tenant.to_owned(), c.id.clone());
        self.store
            .write(move |tx| {
                if !QUEUE.done(tx, &e)? {
                    return Ok::<_, StoreError>(()); // another worker has it
                }
                for m in &members {
                    let job = Job::Person {
                        player: m.clone(),
                        trigger: trigger.clone(),
                    };
                    enqueue(tx, &t, &cid, now, &job)?;
                }
                if let Some(after) = &last {
                    let job = Job::Audience {
                        trigger: trigger.clone(),
                        after: Some(after.clone()),
                    };
                    enqueue(tx, &t, &cid, now, &job)?;
                }
                Ok(())
            })
            .await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Whether `player` may get the campaign: the player and the address
    /// on the campaign's channel (a phone, or for e-mail an e-mail
    /// address), or why not.
    fn consider(
        &self,
        src: &impl Reader,
        tenant: &str,
        c: &Campaign,
        player: &str,
    ) -> Result<Result<(Player, String), Skip>, StoreError> {
        let Some(p) = players::find(src, tenant, player)? else {
            return Ok(Err(Skip::NoPlayer));
        };
        if let Some(id) = c.spec.segment {
            let inside = match segments::get(src, tenant, id)? {
                Some(s) => segments::contains(src, tenant, &s, &p, now_ms())?,
                None => false,
            };
            if !inside {
                return Ok(Err(Skip::NotInSegment));
            }
        }
        let email = c.spec.channel == "email";
        let (address, who, channel) = if email {
            let Some(e) = p.email.as_deref().and_then(|e| normalize_email(e).ok()) else {
                return Ok(Err(Skip::NoEmail));
            };
            if engage_messaging::email::suppression::contains(src, tenant, &e)? {
                return Ok(Err(Skip::Suppressed));
            }
            let who = Person {
                phone: None,
                email: Some(e.clone()),
            };
            (e, who, Channel::Email)
        } else {
            let Some(phone) = p.phone.clone() else {
                return Ok(Err(Skip::NoPhone));
            };
            let who = Person {
                phone: Some(phone.clone()),
                email: None,
            };
            (phone, who, Channel::Text)
        };
        if c.spec.kind == Kind::Marketing {
            if optouts::contains(src, tenant, &address)? {
                return Ok(Err(Skip::OptedOut));
            }
            let list = match subscriptions::eligibility(src, tenant, &who) {
                Ok(list) => list,
                Err(subscriptions::SubscriptionError::Store(s)) => return Err(s),
                Err(_) if email => return Ok(Err(Skip::NoEmail)),
                Err(_) => return Ok(Err(Skip::NoPhone)),
            };
            let subscribed = list
                .iter()
                .any(|(s, ok)| *ok && s.channel == channel && s.kind == SubType::Marketing);
            if !subscribed {
                return Ok(Err(Skip::NotSubscribed));
            }
        }
        Ok(Ok((p, address)))
    }

    async fn skip(
        &self,
        entry: &str,
        tenant: &str,
        cid: &str,
        why: Skip,
    ) -> Result<(), MessageError> {
        let (e, t, c) = (entry.to_owned(), tenant.to_owned(), cid.to_owned());
        self.store
            .write(move |tx| {
                if QUEUE.done(tx, &e)? {
                    bump(tx, &t, &c, "targeted", 1)?;
                    bump(tx, &t, &c, why.counter(), 1)?;
                }
                Ok::<_, StoreError>(())
            })
            .await?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        entry: &str,
        tenant: &str,
        c: &Campaign,
        p: &Player,
        address: String,
        trigger: &str,
        settings: &Settings,
    ) -> Result<(), MessageError> {
        let now = now_ms();
        let marketing = c.spec.kind == Kind::Marketing;
        let defer_to = if marketing {
            quiet_until(settings, p, now)
        } else {
            None
        };
        let mut metadata = BTreeMap::from([("campaign".to_owned(), c.id.clone())]);
        metadata.insert("trigger".into(), trigger.to_owned());
        // The player's other address, for a route that falls back to
        // another channel (an SMS when an e-mail bounces).
        if let Some(phone) = &p.phone {
            metadata.insert("phone".into(), phone.clone());
        }
        if let Some(email) = p.email.as_deref().and_then(|e| normalize_email(e).ok()) {
            metadata.insert("email".into(), email);
        }
        let req = SendRequest {
            to: vec![address],
            channel: c.spec.channel.clone(),
            template: Some(c.spec.template.clone()),
            subject: c.spec.subject.clone(),
            vars: vars(p),
            kind: c.spec.kind,
            schedule_at_ms: defer_to,
            metadata,
            ..SendRequest::default()
        };
        let cap = settings.frequency_cap.clone().filter(|_| marketing);
        let (e, t, cid, pid, trig) = (
            entry.to_owned(),
            tenant.to_owned(),
            c.id.clone(),
            p.id.clone(),
            trigger.to_owned(),
        );
        let sent = self
            .messaging
            .send_with(tenant, req, None, now, "campaign", move |tx, _| {
                let done = key(&[&t, &cid, &pid, &trig]);
                if !QUEUE.holds(tx, &e)? || tx.get_raw(DONE, &done)?.is_some() {
                    return Err(MessageError::Declined(DUPLICATE));
                }
                if let Some(cap) = &cap
                    && !within_cap(tx, &t, &pid, cap, now)?
                {
                    return Err(MessageError::Declined(CAPPED));
                }
                QUEUE.done(tx, &e)?;
                tx.put_raw(DONE, &done, b"")?;
                bump(tx, &t, &cid, "targeted", 1)?;
                bump(tx, &t, &cid, "sent", 1)?;
                if defer_to.is_some() {
                    bump(tx, &t, &cid, "deferred_quiet_hours", 1)?;
                }
                Ok(())
            })
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(MessageError::Declined(DUPLICATE)) => {
                self.skip(entry, tenant, &c.id, Skip::AlreadySent).await
            }
            Err(MessageError::Declined(_)) => self.skip(entry, tenant, &c.id, Skip::Capped).await,
            Err(e @ MessageError::Store(_)) => Err(e),
            Err(e) => {
                tracing::warn!(tenant, campaign = %c.id, error = %e, "campaign message not sent");
                self.skip(entry, tenant, &c.id, Skip::SendFailed).await
            }
        }
    }
}

/// Whether one more campaign marketing message fits the person's cap; if
/// so it is counted.
fn within_cap(
    tx: &mut Tx,
    tenant: &str,
    player: &str,
    cap: &super::Cap,
    now: i64,
) -> Result<bool, StoreError> {
    let k = key(&[tenant, player]);
    let since = now - i64::from(cap.hours) * 3_600_000;
    let mut times: Vec<i64> = tx.get(CAPS, &k)?.unwrap_or_default();
    times.retain(|t| *t > since);
    if times.len() >= cap.max as usize {
        return Ok(false);
    }
    times.push(now);
    tx.put(CAPS, &k, &times)?;
    Ok(true)
}

/// The end of the quiet window if the person's local time is inside it.
fn quiet_until(s: &Settings, p: &Player, now: i64) -> Option<i64> {
    let q = s.quiet_hours.as_ref()?;
    let (start, end) = (minutes_of(&q.start)?, minutes_of(&q.end)?);
    // The person's own zone if it is one (an IANA name or an offset),
    // else the settings' zone, else UTC.
    let zone = p
        .attributes
        .get("timezone")
        .and_then(|v| v.as_str())
        .and_then(|tz| engage_time::Zone::parse(tz).ok())
        .or_else(|| {
            s.timezone
                .as_deref()
                .map(engage_messaging::gateway::accounts::zone)
        })
        .unwrap_or_else(engage_time::Zone::utc);
    quiet_end(&zone, start, end, now)
}

/// The end of the quiet window from local minute `start` to `end` (it may
/// span midnight) if `now` is inside it, in `zone`'s wall-clock time: on a
/// night the clocks change the window is an hour shorter or longer in
/// real time, and ends at the local time it names.
fn quiet_end(zone: &engage_time::Zone, start: i64, end: i64, now: i64) -> Option<i64> {
    const DAY: i64 = 86_400_000;
    let naive = zone.to_naive(now);
    let local_min = naive.rem_euclid(DAY) / 60_000;
    let inside = if start < end {
        (start..end).contains(&local_min)
    } else {
        local_min >= start || local_min < end
    };
    if !inside {
        return None;
    }
    let midnight = naive - naive.rem_euclid(DAY);
    let end_naive = if local_min < end {
        midnight + end * 60_000
    } else {
        midnight + DAY + end * 60_000
    };
    zone.from_naive(end_naive).filter(|at| *at > now)
}

/// A player's fields and string attributes, for the template.
fn vars(p: &Player) -> BTreeMap<String, String> {
    let mut v: BTreeMap<String, String> = p
        .attributes
        .iter()
        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
        .collect();
    v.insert("player_id".into(), p.id.clone());
    for (k, f) in [
        ("first_name", &p.first_name),
        ("last_name", &p.last_name),
        ("nickname", &p.nickname),
        ("username", &p.username),
        ("email", &p.email),
        ("phone", &p.phone),
    ] {
        if let Some(f) = f {
            v.insert(k.into(), f.clone());
        }
    }
    v
}

#[cfg(test)]
mod quiet_tests {
    use super::quiet_end;
    use engage_store::ids::{parse_sql_datetime, sql_datetime};

    fn at(s: &str) -> i64 {
        parse_sql_datetime(s).expect("date")
    }

    #[test]
    fn quiet_hours_on_a_fall_back_night_end_at_the_local_time() {
        let berlin = engage_time::Zone::parse("Europe/Berlin").expect("zone");
        // Quiet 21:00-08:00. 2026-10-25 03:00 CEST falls back to 02:00 CET:
        // the night is 12 hours long, not 11.
        let (start, end) = (21 * 60, 8 * 60);
        // 22:00 CEST on the 24th (20:00 UTC): quiet until 08:00 CET (07:00 UTC).
        let until = quiet_end(&berlin, start, end, at("2026-10-24 20:00:00")).expect("quiet");
        assert_eq!(sql_datetime(until), "2026-10-25 07:00:00");
        // Inside the repeated hour, both passes: still quiet, same end.
        for now in ["2026-10-25 00:30:00", "2026-10-25 01:30:00"] {
            let until = quiet_end(&berlin, start, end, at(now)).expect("quiet");
            assert_eq!(sql_datetime(until), "2026-10-25 07:00:00", "{now}");
        }
        // 08:00 CET (07:00 UTC) is not quiet; 07:59 CET is.
        assert_eq!(
            quiet_end(&berlin, start, end, at("2026-10-25 07:00:00")),
            None
        );
        assert!(quiet_end(&berlin, start, end, at("2026-10-25 06:59:00")).is_some());
        // A fixed offset is the same every night: 22:00 at +01:00 is quiet
        // until 08:00 at +01:00 (07:00 UTC), 10 hours.
        let plus1 = engage_time::Zone::parse("+0100").expect("zone");
        let until = quiet_end(&plus1, start, end, at("2026-10-24 21:00:00")).expect("quiet");
        assert_eq!(sql_datetime(until), "2026-10-25 07:00:00");
        // In a window that does not span midnight.
        let until = quiet_end(&plus1, 12 * 60, 14 * 60, at("2026-10-24 11:30:00")).expect("quiet");
        assert_eq!(sql_datetime(until), "2026-10-24 13:00:00");
    }
}
