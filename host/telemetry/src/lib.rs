//! Engage's metrics, in one place: each metric's name, labels and meaning
//! (the functions below are the only way the other crates record one),
//! the tenant label's bounded values, and the Prometheus text exposition
//! served at `GET /metrics`.
//!
//! The recording side is the `metrics` facade: until a server installs
//! the exporter ([`install`]) every call here is a no-op, so libraries and
//! the kit's local runner pay nothing.
//!
//! **Cardinality.** Every label takes a bounded set of values: route
//! templates (never raw paths), methods, status codes, extension points,
//! error kinds, provider names (configured), and the tenant only for the
//! tenants an operator names (`[metrics] tenants`); every other tenant is
//! `other`, and a request no tenant made is `none`. A tenant cannot grow
//! the exposition by making requests.
//!
//! Names follow Prometheus conventions: `_total` counters, base units
//! (`_seconds`, `_bytes`), one `engage_` prefix. `docs/operations.md`
//! lists them with a dashboard.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const HTTP_REQUESTS: &str = "engage_http_requests_total";
pub const HTTP_DURATION: &str = "engage_http_request_duration_seconds";
pub const PLUGIN_CALLS: &str = "engage_plugin_calls_total";
pub const PLUGIN_DURATION: &str = "engage_plugin_call_duration_seconds";
pub const PLUGIN_FUEL: &str = "engage_plugin_call_fuel";
pub const STORE_COMMITS: &str = "engage_store_commits_total";
pub const STORE_BATCH: &str = "engage_store_commit_jobs";
pub const STORE_COMMIT_DURATION: &str = "engage_store_commit_duration_seconds";
pub const STORE_FSYNC_DURATION: &str = "engage_store_fsync_duration_seconds";
pub const STORE_QUEUE: &str = "engage_store_write_queue_jobs";
pub const OUTBOX_DEPTH: &str = "engage_outbox_messages";
pub const OUTBOX_DUE: &str = "engage_outbox_due_messages";
pub const OUTBOX_OLDEST_DUE_AGE: &str = "engage_outbox_oldest_due_age_seconds";
pub const SENDS: &str = "engage_message_sends_total";
pub const SEND_DURATION: &str = "engage_message_send_duration_seconds";
pub const REPORT_LAG: &str = "engage_delivery_report_lag_seconds";
pub const CAMPAIGN_JOBS_QUEUED: &str = "engage_campaign_jobs_queued";
pub const CAMPAIGN_JOBS_DONE: &str = "engage_campaign_jobs_done_total";
pub const REFUSALS: &str = "engage_refusals_total";

/// Latency buckets, seconds: 100 µs to 30 s.
const LATENCY: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0, 30.0,
];
/// Fuel buckets: 10 k to 10 G instructions.
const FUEL: [f64; 7] = [1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10];
/// Jobs per group commit.
const BATCH: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
/// Delivery-report lag, seconds: a second to a day.
const LAG: [f64; 9] = [1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0];

/// How often histograms are folded even when nobody scrapes, so their
/// samples never pile up.
const UPKEEP: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
static LABELLED: OnceLock<RwLock<HashSet<Arc<str>>>> = OnceLock::new();

/// Install the Prometheus recorder for this process (once; later calls
/// find it installed). Returns whether metrics are being recorded.
pub fn install() -> bool {
    HANDLE
        .get_or_init(|| {
            let built = (|| {
                let mut b = PrometheusBuilder::new();
                for (name, buckets) in [
                    (HTTP_DURATION, &LATENCY[..]),
                    (PLUGIN_DURATION, &LATENCY[..]),
                    (STORE_COMMIT_DURATION, &LATENCY[..]),
                    (STORE_FSYNC_DURATION, &LATENCY[..]),
                    (SEND_DURATION, &LATENCY[..]),
                    (PLUGIN_FUEL, &FUEL[..]),
                    (STORE_BATCH, &BATCH[..]),
                    (REPORT_LAG, &LAG[..]),
                ] {
                    b = b.set_buckets_for_metric(Matcher::Full(name.into()), buckets)?;
                }
                b.install_recorder()
            })();
            match built {
                Ok(handle) => {
                    describe();
                    let h = handle.clone();
                    let _ = std::thread::Builder::new()
                        .name("engage-metrics-upkeep".into())
                        .spawn(move || {
                            loop {
                                std::thread::sleep(UPKEEP);
                                h.run_upkeep();
                            }
                        });
                    Some(handle)
                }
                // Another recorder is installed (an embedding program's):
                // Engage records into it and serves no exposition itself.
                Err(_) => None,
            }
        })
        .is_some()
}

/// The exposition in the Prometheus text format, if installed.
pub fn render() -> Option<String> {
    let handle = HANDLE.get()?.as_ref()?;
    handle.run_upkeep();
    Some(handle.render())
}

/// Give these tenants their own value of the `tenant` label (added to
/// those named before: one process may run several servers in tests).
pub fn label_tenants<'a>(tenants: impl IntoIterator<Item = &'a str>) {
    let set = LABELLED.get_or_init(Default::default);
    if let Ok(mut s) = set.write() {
        s.extend(tenants.into_iter().map(Arc::from));
    }
}

/// The `tenant` label's value for `tenant`: its id when named in the
/// configuration, else `other`.
pub fn tenant_label(tenant: &str) -> Arc<str> {
    static OTHER: OnceLock<Arc<str>> = OnceLock::new();
    LABELLED
        .get()
        .and_then(|s| s.read().ok()?.get(tenant).cloned())
        .unwrap_or_else(|| OTHER.get_or_init(|| Arc::from("other")).clone())
}

/// An HTTP request answered: `route` is the route template (`unmatched`
/// for a path Engage does not serve), `tenant` the label of the tenant
/// whose token authenticated it (`none` without one).
pub fn http_request(route: &str, method: &str, status: u16, tenant: &str, elapsed: Duration) {
    // A client may send any token as a method: only the standard ones
    // get their own value.
    let method = match method {
        "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => method,
        _ => "other",
    };
    let labels = [
        ("route", route.to_owned()),
        ("method", method.to_owned()),
        ("status", status.to_string()),
        ("tenant", tenant.to_owned()),
    ];
    counter!(HTTP_REQUESTS, &labels).increment(1);
    histogram!(HTTP_DURATION, &labels[..2]).record(elapsed.as_secs_f64());
}

/// A plugin call: its point, how it ended (`ok` or the error's kind),
/// the binding's isolation, and whether it ran a tenant's component or a
/// first-party one.
pub fn plugin_call(
    point: &'static str,
    outcome: &'static str,
    isolation: &'static str,
    tenant: &str,
    elapsed: Duration,
    fuel: u64,
) {
    let labels = [
        ("point", point.to_owned()),
        ("outcome", outcome.to_owned()),
        ("isolation", isolation.to_owned()),
        ("tenant", tenant_label(tenant).to_string()),
    ];
    counter!(PLUGIN_CALLS, &labels).increment(1);
    histogram!(PLUGIN_DURATION, "point" => point).record(elapsed.as_secs_f64());
    histogram!(PLUGIN_FUEL, "point" => point).record(fuel as f64);
}

/// A group commit of `jobs` write jobs, committed or not.
pub fn store_commit(jobs: usize, committed: bool, elapsed: Duration) {
    let outcome = if committed { "committed" } else { "failed" };
    counter!(STORE_COMMITS, "outcome" => outcome).increment(1);
    histogram!(STORE_BATCH).record(jobs as f64);
    histogram!(STORE_COMMIT_DURATION).record(elapsed.as_secs_f64());
}

/// One fsync of the embedded store's file, made beside the writer.
pub fn store_fsync(elapsed: Duration) {
    histogram!(STORE_FSYNC_DURATION).record(elapsed.as_secs_f64());
}

/// Write jobs waiting for the writer now.
pub fn store_queue(jobs: usize) {
    gauge!(STORE_QUEUE).set(jobs as f64);
}

/// The outbox now: every entry, those due, and how late the oldest due is.
pub fn outbox(entries: u64, due: u64, oldest_due_age: Option<Duration>) {
    gauge!(OUTBOX_DEPTH).set(entries as f64);
    gauge!(OUTBOX_DUE).set(due as f64);
    gauge!(OUTBOX_OLDEST_DUE_AGE).set(oldest_due_age.map_or(0.0, |d| d.as_secs_f64()));
}

/// One send to a provider of kind `provider`: `outcome` is `accepted`,
/// `unavailable` (a transient failure: retried) or `failed` (refused for
/// good).
pub fn send(provider: &str, channel: &str, outcome: &'static str, tenant: &str, elapsed: Duration) {
    let labels = [
        ("provider", provider.to_owned()),
        ("channel", channel.to_owned()),
        ("outcome", outcome.to_owned()),
        ("tenant", tenant_label(tenant).to_string()),
    ];
    counter!(SENDS, &labels).increment(1);
    histogram!(SEND_DURATION, "provider" => provider.to_owned()).record(elapsed.as_secs_f64());
}

/// A delivery report arrived `lag` after its message was sent.
pub fn delivery_report(provider: &str, lag: Duration) {
    histogram!(REPORT_LAG, "provider" => provider.to_owned()).record(lag.as_secs_f64());
}

/// Campaign jobs waiting to run now.
pub fn campaign_jobs_queued(n: u64) {
    gauge!(CAMPAIGN_JOBS_QUEUED).set(n as f64);
}

/// A campaign job finished: `expanded` (a page of the audience became
/// person jobs), `sent`, `skipped` (consent, caps, quiet hours…),
/// `dropped` (its campaign is no longer active) or `failed` (it will be
/// tried again).
pub fn campaign_job_done(outcome: &'static str) {
    counter!(CAMPAIGN_JOBS_DONE, "outcome" => outcome).increment(1);
}

/// A request refused to protect the service: `reason` is one of
/// `credential_throttle` (too many failed credential checks),
/// `plugin_busy` (the plugin pool's admission gate was full until the
/// call's deadline), `storage_busy` / `storage_unavailable` (answered 503),
/// `contention` (a plugin's writes kept conflicting), `quota` (a
/// tenant's storage quota), `body_too_large`.
pub fn refused(reason: &'static str) {
    counter!(REFUSALS, "reason" => reason).increment(1);
}

fn describe() {
    describe_counter!(
        HTTP_REQUESTS,
        Unit::Count,
        "HTTP requests answered, by route template, method, status and tenant label"
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time to answer an HTTP request, by route template and method"
    );
    describe_counter!(
        PLUGIN_CALLS,
        Unit::Count,
        "Plugin calls, by extension point, outcome (ok or the error kind), isolation mode and tenant label"
    );
    describe_histogram!(
        PLUGIN_DURATION,
        Unit::Seconds,
        "Wall time of a plugin call including its wait for admission, by point"
    );
    describe_histogram!(
        PLUGIN_FUEL,
        Unit::Count,
        "Fuel (about one per WebAssembly instruction) a plugin call used, by point"
    );
    describe_counter!(
        STORE_COMMITS,
        Unit::Count,
        "Group commits of the storage writer, by outcome"
    );
    describe_histogram!(STORE_BATCH, Unit::Count, "Write jobs per group commit");
    describe_histogram!(
        STORE_COMMIT_DURATION,
        Unit::Seconds,
        "Time to run and commit one group commit"
    );
    describe_histogram!(
        STORE_FSYNC_DURATION,
        Unit::Seconds,
        "Time to make one commit of the embedded store durable (fsync)"
    );
    describe_gauge!(
        STORE_QUEUE,
        Unit::Count,
        "Write jobs waiting for the storage writer"
    );
    describe_gauge!(OUTBOX_DEPTH, Unit::Count, "Messages in the outbox");
    describe_gauge!(
        OUTBOX_DUE,
        Unit::Count,
        "Outbox messages due now (waiting for a send)"
    );
    describe_gauge!(
        OUTBOX_OLDEST_DUE_AGE,
        Unit::Seconds,
        "How long the oldest due outbox message has been due"
    );
    describe_counter!(
        SENDS,
        Unit::Count,
        "Sends to providers, by provider, channel, outcome and tenant label"
    );
    describe_histogram!(
        SEND_DURATION,
        Unit::Seconds,
        "Time a provider took to answer a send, by provider"
    );
    describe_histogram!(
        REPORT_LAG,
        Unit::Seconds,
        "From a send to its delivery report, by provider"
    );
    describe_gauge!(
        CAMPAIGN_JOBS_QUEUED,
        Unit::Count,
        "Campaign jobs waiting to run"
    );
    describe_counter!(
        CAMPAIGN_JOBS_DONE,
        Unit::Count,
        "Campaign jobs finished, by outcome"
    );
    describe_counter!(
        REFUSALS,
        Unit::Count,
        "Requests refused to protect the service, by reason"
    );
}
