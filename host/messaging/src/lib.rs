//! Messaging: messages written to a durable outbox, rendered by the
//! tenant's `template` binding, routed by its `route` binding into an
//! ordered list of attempts, and dispatched to providers with failover.
//!
//! A message is committed together with its outbox entry before the client
//! hears "accepted". The dispatcher takes due entries in order, sends the
//! current attempt, and records the outcome: a transient failure is retried
//! with backoff, a permanent one (or a failed delivery report) moves on to
//! the next attempt, and a message past its validity expires. An entry
//! leaves the outbox only after its send is recorded, so a crash between
//! the two sends that message once more (and only that one).

pub mod address;
pub mod email;
pub mod gateway;
pub mod optouts;
pub mod pricing;
pub mod providers;
pub mod segments;
pub mod text;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use crate::address::normalize_phone;
use engage_ledger::views::time_part;
use engage_runtime::io::{Attempt, CHANNELS, MessageKind, Outgoing};
use engage_runtime::{Input, Output, Plugins, PluginsError, params};
use engage_store::idempotency::{self, Call, Guarded};
use engage_store::ids::{now_ms, random_hex, valid_id};
use engage_store::secrets::Sealer;
use engage_store::shutdown::Shutdown;
use engage_store::{Reader, Snapshot, Store, StoreError, Table, Tx, key, prefix, seq_part};
use pricing::{PriceList, PricingError};
use providers::{Limits, SendError, Sent};
use tracing::Instrument;

/// (tenant, message id) → [`Message`].
const MESSAGES: Table = Table::new("messages");
/// (tenant, client reference) → message ids (JSON list).
const REFERENCES: Table = Table::new("message_references");
/// (tenant, message number) → message id.
const NUMBERS: Table = Table::new("message_numbers");
/// (due time, tenant, message id) → nothing: what the dispatcher does next.
const OUTBOX: Table = Table::new("message_outbox");
/// (provider kind, provider's message id) → (tenant, message id) as JSON.
const PROVIDER_IDS: Table = Table::new("provider_message_ids");
/// (provider kind, provider's message id) → [`EarlyReport`]: a report
/// that arrived before the send it reports on was recorded.
const EARLY_REPORTS: Table = Table::new("early_delivery_reports");
/// (tenant, tag, value, outcome) → count of final messages.
const OUTCOMES: Table = Table::new("message_outcomes");

/// Reports whose send never showed up are dropped after the retention.
pub const EARLY_REPORT_SWEEP: engage_store::sweeper::Sweep = engage_store::sweeper::Sweep {
    name: "unmatched delivery reports",
    table: EARLY_REPORTS,
    dead: |_, look| {
        Ok(serde_json::from_slice::<EarlyReport>(look.raw)
            .map(|r| {
                r.received_at_ms
                    .saturating_add(look.retention.early_report_ms())
                    < look.now_ms
            })
            .unwrap_or(true))
    },
    forget: None,
};

/// A delivery report kept until its send is recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct EarlyReport {
    tenant: String,
    /// When it arrived (0 for reports stored before this was recorded).
    #[serde(default)]
    received_at_ms: i64,
    status: Status,
    error: Option<String>,
}

/// The most recipients one send takes (BSG's limit).
pub const MAX_RECIPIENTS: usize = 50;

/// The latest a message may be scheduled: the end of the year 9999.
const MAX_SCHEDULE_MS: i64 = 253_402_300_799_999;
/// The most segments one message may take.
pub const MAX_SEGMENTS: usize = 10;
/// The default validity: 24 hours.
pub const DEFAULT_VALIDITY_S: i64 = 24 * 3600;
/// How many times a transient failure is tried before failing over.
const MAX_TRIES: u32 = 3;
/// How long to wait for a delivery report before failing over, by default.
pub const DEFAULT_REPORT_TIMEOUT_S: i64 = 600;
/// How often a provider without callbacks is asked for a status.
const POLL_EVERY_MS: i64 = 1000;
/// The shortest pause between two outbox scans of the dispatcher.
const SCAN_COALESCE: Duration = Duration::from_millis(5);
/// Sends in flight at once, over all providers.
const MAX_IN_FLIGHT: usize = 256;

/// Where a message (or one attempt) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Scheduled,
    Queued,
    Sent,
    Delivered,
    Read,
    Expired,
    Undeliverable,
    Rejected,
    Unknown,
}

impl Status {
    /// No further change is expected.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Delivered
                | Status::Read
                | Status::Expired
                | Status::Undeliverable
                | Status::Rejected
                | Status::Unknown
        )
    }

    /// The attempt did not reach the recipient: try the next one.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Status::Undeliverable | Status::Rejected | Status::Expired
        )
    }

    /// The provider took the message (and charges for it).
    pub fn went_out(self) -> bool {
        matches!(
            self,
            Status::Sent | Status::Delivered | Status::Read | Status::Unknown
        )
    }

    /// The lower-case name, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Scheduled => "scheduled",
            Status::Queued => "queued",
            Status::Sent => "sent",
            Status::Delivered => "delivered",
            Status::Read => "read",
            Status::Expired => "expired",
            Status::Undeliverable => "undeliverable",
            Status::Rejected => "rejected",
            Status::Unknown => "unknown",
        }
    }
}

/// Transactional or marketing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    #[default]
    Transactional,
    Marketing,
}

/// One try through one provider.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct AttemptRecord {
    pub channel: String,
    pub provider: String,
    /// Where this attempt went, when not to the message's `to` (an attempt
    /// on another kind of channel: an SMS fallback of an e-mail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    pub sender: Option<String>,
    pub provider_id: Option<String>,
    pub status: Status,
    pub error: Option<String>,
    /// Sends made for this attempt (transient failures are retried).
    pub tries: u32,
    /// What this attempt costs if it went out, in micro-units.
    #[serde(rename = "price_micros")]
    pub price: i64,
    pub at_ms: i64,
    pub updated_at_ms: i64,
}

/// A message as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Message {
    pub id: String,
    /// A per-tenant sequence number, for the compatible APIs whose clients
    /// take message ids for integers (BSG's libraries do); 0 on messages
    /// stored before numbers were given.
    #[serde(default)]
    pub number: u64,
    pub to: String,
    pub channel: String,
    pub sender: Option<String>,
    pub body: String,
    /// An e-mail's subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// An e-mail's HTML part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    pub kind: Kind,
    pub reference: Option<String>,
    pub status: Status,
    /// Why the message was never sent, when it was refused outright (the
    /// recipient opted out of marketing messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub encoding: segments::Encoding,
    pub segments: usize,
    /// The route plugin's plan; `attempts` holds what was tried.
    pub plan: Vec<PlannedAttempt>,
    pub attempts: Vec<AttemptRecord>,
    pub metadata: BTreeMap<String, String>,
    /// The sending account whose credit pays.
    pub account: String,
    /// The price list's currency, when the tenant has one.
    pub currency: Option<String>,
    /// Credit held until the final status, in micro-units.
    #[serde(rename = "reserved_micros")]
    pub reserved: i64,
    /// What the message cost, once final, in micro-units.
    #[serde(rename = "charged_micros")]
    pub charged: i64,
    /// Sends of the current attempt so far (for transient retries).
    pub tries: u32,
    /// When its outbox entry is due, while it has one.
    pub due_ms: Option<i64>,
    pub report_timeout_s: i64,
    pub created_at_ms: i64,
    pub schedule_at_ms: Option<i64>,
    pub sent_at_ms: Option<i64>,
    pub final_at_ms: Option<i64>,
    pub expires_at_ms: i64,
    pub updated_at_ms: i64,
    /// The request that accepted it (its `x-request-id`): the dispatcher's
    /// log lines for the message carry it, so a send is followed from the
    /// request through to the provider's answer. Empty on messages stored
    /// before it was recorded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub request_id: String,
}

/// An attempt the route plugin planned.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct PlannedAttempt {
    pub channel: String,
    pub provider: String,
    /// The address for an attempt on another kind of channel than the
    /// message's (a phone for SMS or Viber, an address for e-mail), from
    /// the message's metadata `phone` or `email`; none: the message's `to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    pub sender: Option<String>,
    pub body: Option<String>,
    /// In micro-units.
    #[serde(rename = "price_micros")]
    pub price: i64,
}

/// A fallback the client asks for explicitly (BSG's `alt_route`): routed
/// as its own message and tried after every attempt of the first.
#[derive(Debug, Clone, Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Fallback {
    #[serde(default = "sms")]
    #[schema(schema_with = channel_schema)]
    pub channel: String,
    pub sender: Option<String>,
    /// With a character that is sent (not only spaces, control characters
    /// or direction marks, which are dropped).
    #[schema(pattern = "[^\\s\\x00-\\x1f\\x7f-\\x9f\\u202a-\\u202e\\u2066-\\u2069]")]
    pub body: String,
}

/// What a client asks to send. The default is an SMS with nothing set.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// Phone numbers, or for e-mail addresses; at least one. Each gets its
    /// own message.
    #[schema(min_items = 1, max_items = 50, value_type = Vec<crate::address::Recipient>)]
    pub to: Vec<String>,
    #[serde(default = "sms")]
    #[schema(schema_with = channel_schema)]
    pub channel: String,
    pub sender: Option<String>,
    /// The text; or a `template` the tenant's template binding renders
    /// (one of the two). Control characters and direction marks are
    /// dropped; a character must remain that is not a space.
    #[schema(pattern = "[^\\s\\x00-\\x1f\\x7f-\\x9f\\u202a-\\u202e\\u2066-\\u2069]")]
    pub body: Option<String>,
    pub template: Option<String>,
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// An e-mail's subject (needed for `email`, refused otherwise), 1 to
    /// 500 characters; with `template`, rendered with the same `vars`.
    #[schema(max_length = 500, pattern = "\\S")]
    pub subject: Option<String>,
    /// An e-mail's HTML, sent beside the text as multipart/alternative;
    /// with `template`, rendered with the same `vars`. At most 256 KiB.
    pub html: Option<String>,
    #[schema(value_type = Option<engage_store::ids::ClientId>)]
    pub reference: Option<String>,
    #[serde(default)]
    pub kind: Kind,
    /// When to send (ms since the epoch; before now: at once), up to the
    /// end of the year 9999.
    #[schema(minimum = 0, maximum = 253402300799999i64)]
    pub schedule_at_ms: Option<i64>,
    /// Seconds, 1 to 7 days (48 hours by default).
    #[schema(minimum = 1, maximum = 604800)]
    pub validity_s: Option<i64>,
    /// Seconds, 1 to 7 days.
    #[schema(minimum = 1, maximum = 604800)]
    pub report_timeout_s: Option<i64>,
    #[schema(value_type = Option<engage_store::ids::ClientId>)]
    pub account: Option<String>,
    pub fallback: Option<Fallback>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

fn sms() -> String {
    "sms".into()
}

impl Default for SendRequest {
    fn default() -> Self {
        SendRequest {
            to: Vec::new(),
            channel: sms(),
            sender: None,
            body: None,
            template: None,
            vars: BTreeMap::new(),
            subject: None,
            html: None,
            reference: None,
            kind: Kind::default(),
            schedule_at_ms: None,
            validity_s: None,
            report_timeout_s: None,
            account: None,
            fallback: None,
            metadata: BTreeMap::new(),
        }
    }
}

/// What can go wrong with messages.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("{0}")]
    Invalid(String),
    #[error("`{0}` is not a phone number in international format")]
    InvalidNumber(String),
    #[error("`{0}` is not an e-mail address")]
    InvalidEmail(String),
    #[error("at most {MAX_RECIPIENTS} recipients per message")]
    TooManyRecipients,
    #[error("reference `{0}` was already used")]
    DuplicateReference(String),
    #[error("the text takes {0} segments; at most {MAX_SEGMENTS}")]
    TooLong(usize),
    #[error("the route plugin planned no attempt for {0}")]
    NoRoute(String),
    #[error("message `{0}` does not exist")]
    NotFound(String),
    #[error("message `{0}` is no longer scheduled")]
    NotCancellable(String),
    /// The caller's part of [`Messaging::send_with`] declined to commit.
    #[error("declined: {0}")]
    Declined(&'static str),
    #[error(transparent)]
    Pricing(#[from] PricingError),
    #[error(transparent)]
    Plugin(#[from] PluginsError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<engage_ledger::LedgerError> for MessageError {
    fn from(e: engage_ledger::LedgerError) -> Self {
        MessageError::Pricing(e.into())
    }
}

/// One request of a batch, ready to store: its messages and reference.
type Prepared = (Vec<Message>, Option<String>);

/// What became of one request of [`Messaging::send_batch`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Submitted {
    Accepted(Vec<Message>),
    Refused(Refusal),
}

/// Why one request of a batch was refused (nothing of it was stored), in
/// terms every API maps to its own codes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RefusalKind {
    Invalid,
    InvalidNumber,
    TooManyRecipients,
    DuplicateReference,
    TooLong,
    NoRoute,
    NoPrice,
    InsufficientCredit,
    Other,
}

impl Refusal {
    /// The refusal a request's error means; `None` for a storage failure,
    /// which fails the whole batch instead.
    fn of(e: MessageError) -> Result<Refusal, MessageError> {
        let kind = match &e {
            MessageError::Store(_) => return Err(e),
            MessageError::Invalid(_) => RefusalKind::Invalid,
            MessageError::InvalidNumber(_) | MessageError::InvalidEmail(_) => {
                RefusalKind::InvalidNumber
            }
            MessageError::TooManyRecipients => RefusalKind::TooManyRecipients,
            MessageError::DuplicateReference(_) => RefusalKind::DuplicateReference,
            MessageError::TooLong(_) => RefusalKind::TooLong,
            MessageError::NoRoute(_) => RefusalKind::NoRoute,
            MessageError::Pricing(PricingError::NoPrice { .. }) => RefusalKind::NoPrice,
            MessageError::Pricing(PricingError::InsufficientCredit { .. }) => {
                RefusalKind::InsufficientCredit
            }
            _ => RefusalKind::Other,
        };
        Ok(Refusal {
            kind,
            message: e.to_string(),
        })
    }
}

/// What a send accepted: one message per recipient.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Accepted {
    pub messages: Vec<Message>,
}

/// A price quote: what [`Messaging::send`] would reserve.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Quote {
    pub encoding: segments::Encoding,
    pub units: usize,
    pub segments: usize,
    pub currency: Option<String>,
    /// The price if the first planned attempt goes out, per recipient.
    pub recipients: Vec<QuoteLine>,
    pub total_price: f64,
    /// What is held from the credit until the final status (the dearest
    /// planned attempt of each recipient).
    pub total_reserved: f64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct QuoteLine {
    pub to: String,
    pub price: f64,
    pub reserved: f64,
    pub attempts: Vec<PlannedAttempt>,
}

/// The messaging service.
pub struct Messaging {
    store: Store,
    plugins: Arc<Plugins>,
    http: reqwest::Client,
    wake: Notify,
    /// The server's base URL, for provider callbacks.
    public_url: RwLock<String>,
    /// Concurrency and rate per (tenant, provider), so a slow provider
    /// cannot take every slot and a provider's own limits hold.
    lanes: Mutex<HashMap<(String, String), Arc<Lane>>>,
    /// Opens the providers' stored credentials.
    sealer: Sealer,
    /// How long a host sharing the store holds a message it is sending
    /// before another host may take it over: the provider timeout and a
    /// margin.
    claim_ms: i64,
    /// The hosts sharing the store: each takes its share of a provider's
    /// limits, so they hold across all hosts together.
    hosts: Arc<engage_store::hosts::Hosts>,
    /// SMTP transports (and their pooled connections), per provider.
    smtp: email::smtp::Transports,
}

impl Messaging {
    /// What seals and opens provider credentials.
    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// `extra_roots`: PEM certificates trusted for TLS to providers (HTTPS
    /// and SMTP) beside the built-in Mozilla roots (a private CA, a
    /// TLS-inspecting proxy).
    pub fn new(
        store: Store,
        plugins: Arc<Plugins>,
        provider_timeout: Duration,
        sealer: Sealer,
        hosts: Arc<engage_store::hosts::Hosts>,
        extra_roots: Option<Vec<u8>>,
    ) -> Result<Arc<Messaging>, reqwest::Error> {
        let mut http = reqwest::Client::builder()
            .timeout(provider_timeout)
            .connect_timeout(provider_timeout.min(Duration::from_secs(5)))
            .use_rustls_tls();
        if let Some(pem) = &extra_roots {
            for root in reqwest::Certificate::from_pem_bundle(pem)? {
                http = http.add_root_certificate(root);
            }
        }
        let http = http.build()?;
        Ok(Arc::new(Messaging {
            store,
            plugins,
            http,
            wake: Notify::new(),
            public_url: RwLock::new(String::new()),
            lanes: Mutex::new(HashMap::new()),
            sealer,
            hosts,
            smtp: email::smtp::Transports::new(provider_timeout, extra_roots),
            claim_ms: i64::try_from(provider_timeout.as_millis())
                .unwrap_or(i64::MAX / 2)
                .saturating_add(CLAIM_MARGIN_MS),
        }))
    }

    /// Set the base URL providers call back (known once the server listens).
    pub fn set_public_url(&self, url: &str) {
        if let Ok(mut u) = self.public_url.write() {
            *u = url.trim_end_matches('/').to_owned();
        }
    }

    /// The base URL providers call back.
    pub fn public_url(&self) -> String {
        self.public_url
            .read()
            .map(|u| u.clone())
            .unwrap_or_default()
    }

    /// Render the body: the `template` binding when a template is given.
    fn body(&self, call: &PluginCall<'_>, req: &SendRequest) -> Result<String, MessageError> {
        match (&req.body, &req.template) {
            (Some(b), None) => Ok(b.clone()),
            (None, Some(t)) => self.render(call, t, req),
            _ => Err(MessageError::Invalid(
                "send either `body` or `template`".into(),
            )),
        }
    }

    /// `template` rendered by the tenant's `template` binding with the
    /// request's `vars`.
    fn render(
        &self,
        call: &PluginCall<'_>,
        template: &str,
        req: &SendRequest,
    ) -> Result<String, MessageError> {
        let input = Input::Render {
            template: template.to_owned(),
            vars: params(&req.vars),
        };
        match self.call(call, &input)? {
            Output::Text(s) => Ok(s),
            _ => Err(MessageError::Invalid(
                "the template plugin did not answer text".into(),
            )),
        }
    }

    /// An e-mail's subject and HTML, rendered like its body when it has a
    /// template; none for other channels (which refuse them).
    fn email_parts(
        &self,
        call: &PluginCall<'_>,
        req: &SendRequest,
    ) -> Result<(Option<String>, Option<String>), MessageError> {
        if req.channel != "email" {
            if req.subject.is_some() || req.html.is_some() {
                return Err(MessageError::Invalid(
                    "`subject` and `html` are for e-mail (channel `email`)".into(),
                ));
            }
            return Ok((None, None));
        }
        let Some(subject) = &req.subject else {
            return Err(MessageError::Invalid("an e-mail needs a `subject`".into()));
        };
        let templated = req.template.is_some();
        let subject = if templated {
            self.render(call, subject, req)?
        } else {
            subject.clone()
        };
        // One line, nothing a header cannot carry.
        let subject: String = text::for_channel(&subject)
            .chars()
            .map(|c| if c.is_whitespace() { ' ' } else { c })
            .collect();
        let subject = subject.trim().to_owned();
        if subject.is_empty() || subject.chars().count() > email::MAX_SUBJECT {
            return Err(MessageError::Invalid(format!(
                "a subject is 1 to {} characters, not only spaces",
                email::MAX_SUBJECT
            )));
        }
        let html = match &req.html {
            Some(h) if templated => Some(self.render(call, h, req)?),
            Some(h) => Some(h.clone()),
            None => None,
        };
        if html
            .as_ref()
            .is_some_and(|h| h.len() > email::MAX_BODY_BYTES)
        {
            return Err(MessageError::Invalid(format!(
                "the HTML is at most {} KiB",
                email::MAX_BODY_BYTES / 1024
            )));
        }
        Ok((Some(subject), html.map(|h| text::for_channel(&h))))
    }

    /// Ask the route binding for the attempts of one message.
    fn route(
        &self,
        call: &PluginCall<'_>,
        outgoing: Outgoing,
    ) -> Result<Vec<Attempt>, MessageError> {
        match self.call(call, &Input::Route { message: outgoing })? {
            Output::Attempts(plan) => Ok(plan),
            _ => Err(MessageError::Invalid(
                "the route plugin did not answer attempts".into(),
            )),
        }
    }

    fn call(&self, call: &PluginCall<'_>, input: &Input) -> Result<Output, MessageError> {
        let snap = Some(call.snapshot.clone());
        Ok(self
            .plugins
            .call(call.tenant, input, snap, call.now, call.rid)?
            .output)
    }

    /// Validate, render, route and price: the messages `send` would commit.
    fn prepare(
        &self,
        tenant: &str,
        req: &SendRequest,
        now: i64,
        rid: &str,
    ) -> Result<(Vec<Message>, segments::Segments, Option<PriceList>), MessageError> {
        if req.to.is_empty() {
            return Err(MessageError::Invalid(
                "`to` needs at least one recipient".into(),
            ));
        }
        if req.to.len() > MAX_RECIPIENTS {
            return Err(MessageError::TooManyRecipients);
        }
        check_channel(&req.channel)?;
        if let Some(f) = &req.fallback {
            check_channel(&f.channel)?;
            if f.body.trim().is_empty() {
                return Err(MessageError::Invalid("the fallback text is empty".into()));
            }
        }
        if let Some(r) = &req.reference
            && !valid_id(r)
        {
            return Err(MessageError::Invalid(
                "a reference is 1 to 128 characters".into(),
            ));
        }
        let account = req.account.as_deref().unwrap_or(pricing::DEFAULT_ACCOUNT);
        if !pricing::valid_account(account) {
            return Err(MessageError::Invalid(
                "an account name is 1 to 128 characters".into(),
            ));
        }
        let validity_s = req.validity_s.unwrap_or(DEFAULT_VALIDITY_S);
        if !(1..=7 * 24 * 3600).contains(&validity_s) {
            return Err(MessageError::Invalid("validity is 1 s to 7 days".into()));
        }
        let report_timeout_s = req.report_timeout_s.unwrap_or(DEFAULT_REPORT_TIMEOUT_S);
        if !(1..=7 * 24 * 3600).contains(&report_timeout_s) {
            return Err(MessageError::Invalid(
                "report_timeout_s is 1 s to 7 days".into(),
            ));
        }
        let is_email = req.channel == "email";
        let numbers = req
            .to
            .iter()
            .map(|n| {
                if is_email {
                    address::normalize_email(n)
                        .map_err(|_| MessageError::InvalidEmail(n.chars().take(64).collect()))
                } else {
                    normalize_phone(n)
                        .map_err(|_| MessageError::InvalidNumber(n.chars().take(32).collect()))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        // One snapshot for every plugin call and the price list.
        let snapshot = Arc::new(self.store.read()?);
        let call = PluginCall {
            tenant,
            snapshot: snapshot.clone(),
            now,
            rid,
        };
        let body = text::for_channel(&self.body(&call, req)?);
        if body.trim().is_empty() {
            return Err(MessageError::Invalid("the text is empty".into()));
        }
        let (subject, html) = self.email_parts(&call, req)?;
        if is_email && body.len() > email::MAX_BODY_BYTES {
            return Err(MessageError::Invalid(format!(
                "an e-mail's text is at most {} KiB",
                email::MAX_BODY_BYTES / 1024
            )));
        }
        // Each recipient's message keeps its own copy: bound what one
        // request can make the store hold.
        let one = body.len() + html.as_ref().map_or(0, String::len);
        if is_email && one.saturating_mul(numbers.len()) > email::MAX_REQUEST_BYTES {
            return Err(MessageError::Invalid(format!(
                "an e-mail takes {} KiB; to {} recipients that is over the {} KiB one request may make: send it to fewer at a time",
                one / 1024,
                numbers.len(),
                email::MAX_REQUEST_BYTES / 1024
            )));
        }
        let seg = segments::for_channel(&req.channel, &body);
        if seg.segments > MAX_SEGMENTS {
            return Err(MessageError::TooLong(seg.segments));
        }
        let prices = pricing::price_list(&*snapshot, tenant)?;
        if req
            .schedule_at_ms
            .is_some_and(|s| !(0..=MAX_SCHEDULE_MS).contains(&s))
        {
            return Err(MessageError::Invalid(
                "schedule_at_ms is a time from 1970 to the end of 9999, in ms".into(),
            ));
        }
        let start = req.schedule_at_ms.filter(|s| *s > now);
        let mut messages = Vec::with_capacity(numbers.len());
        for to in numbers {
            let id = random_hex(16);
            let refused =
                if req.kind == Kind::Marketing && optouts::contains(&*snapshot, tenant, &to)? {
                    Some(optouts::OPTED_OUT)
                } else if is_email && email::suppression::contains(&*snapshot, tenant, &to)? {
                    Some(email::suppression::SUPPRESSED_ERROR)
                } else {
                    None
                };
            if let Some(why) = refused {
                let mut m = blocked(id, to, req, &body, seg, account, now);
                m.error = Some(why.into());
                (m.subject, m.html) = (subject.clone(), html.clone());
                messages.push(m);
                continue;
            }
            let outgoing = |channel: &str, sender: &Option<String>, body: &str| Outgoing {
                id: id.clone(),
                to: to.clone(),
                channel: channel.to_owned(),
                sender: sender.clone(),
                body: body.to_owned(),
                kind: match req.kind {
                    Kind::Transactional => MessageKind::Transactional,
                    Kind::Marketing => MessageKind::Marketing,
                },
                reference: req.reference.clone(),
                metadata: params(&req.metadata),
            };
            let mut plan: Vec<PlannedAttempt> = self
                .route(&call, outgoing(&req.channel, &req.sender, &body))?
                .into_iter()
                .map(planned)
                .collect();
            if let Some(f) = &req.fallback {
                let alt = self.route(&call, outgoing(&f.channel, &f.sender, &f.body))?;
                plan.extend(alt.into_iter().map(|a| {
                    let mut p = planned(a);
                    p.sender = p.sender.or_else(|| f.sender.clone());
                    p.body = p.body.or_else(|| Some(text::for_channel(&f.body)));
                    p
                }));
            }
            if plan.is_empty() {
                return Err(MessageError::NoRoute(to));
            }
            for a in plan.iter_mut() {
                check_channel(&a.channel)?;
                if (a.channel == "email") != is_email {
                    // Another kind of address: the metadata's, if any (an
                    // attempt without one is rejected when its turn comes).
                    a.to = other_address(&a.channel, &req.metadata);
                }
                let text = a.body.as_deref().unwrap_or(&body);
                let segments = segments::for_channel(&a.channel, text).segments;
                let dest = a.to.as_deref().unwrap_or(&to);
                a.price = pricing::price(prices.as_ref(), &a.channel, dest, segments)?;
            }
            let reserved = plan.iter().map(|a| a.price).max().unwrap_or(0);
            messages.push(Message {
                number: 0,
                id,
                to,
                channel: req.channel.clone(),
                sender: req.sender.clone(),
                body: body.clone(),
                subject: subject.clone(),
                html: html.clone(),
                kind: req.kind,
                reference: req.reference.clone(),
                error: None,
                status: if start.is_some() {
                    Status::Scheduled
                } else {
                    Status::Queued
                },
                encoding: seg.encoding,
                segments: seg.segments,
                plan,
                attempts: Vec::new(),
                metadata: req.metadata.clone(),
                account: account.to_owned(),
                currency: prices.as_ref().map(|p| p.currency.clone()),
                reserved,
                charged: 0,
                tries: 0,
                due_ms: Some(start.unwrap_or(now)),
                report_timeout_s,
                created_at_ms: now,
                schedule_at_ms: start,
                sent_at_ms: None,
                final_at_ms: None,
                expires_at_ms: start.unwrap_or(now) + validity_s * 1000,
                updated_at_ms: now,
                request_id: String::new(),
            });
        }
        for m in &mut messages {
            m.request_id = rid.to_owned();
        }
        Ok((messages, seg, prices))
    }

    /// What sending `req` would cost, without sending.
    pub fn quote(
        &self,
        tenant: &str,
        req: &SendRequest,
        now: i64,
        rid: &str,
    ) -> Result<Quote, MessageError> {
        let (messages, seg, prices) = self.prepare(tenant, req, now, rid)?;
        let recipients: Vec<QuoteLine> = messages
            .into_iter()
            .map(|m| QuoteLine {
                to: m.to,
                price: pricing::to_units(m.plan.first().map(|a| a.price).unwrap_or(0)),
                reserved: pricing::to_units(m.reserved),
                attempts: m.plan,
            })
            .collect();
        Ok(Quote {
            encoding: seg.encoding,
            units: seg.units,
            segments: seg.segments,
            currency: prices.map(|p| p.currency),
            total_price: recipients.iter().map(|r| r.price).sum(),
            total_reserved: recipients.iter().map(|r| r.reserved).sum(),
            recipients,
        })
    }

    /// Accept a message to every number in `req.to`: validate, render,
    /// route, price, reserve credit, and commit them with their outbox
    /// entries. All or nothing. With an idempotency key, a repeated call
    /// answers what the first one did and sends nothing.
    pub async fn send(
        &self,
        tenant: &str,
        req: SendRequest,
        idem: Option<Call>,
        now: i64,
        rid: &str,
    ) -> Result<Guarded<Accepted>, MessageError> {
        if let Some(call) = &idem
            && let Some(early) = idempotency::precheck(&self.store.read()?, tenant, call, now)?
        {
            return Ok(early);
        }
        let (accepted, ()) = self
            .send_with(tenant, req, idem, now, rid, |_, _| Ok(()))
            .await?;
        Ok(accepted)
    }

    /// [`Messaging::send`], and `also` in the same write transaction: a
    /// compatible API's own records of the messages (its log ids, say)
    /// are committed with them or not at all. `also` may run more than
    /// once (a batch that fails is retried job by job); only its last run
    /// counts.
    pub async fn send_with<T, F>(
        &self,
        tenant: &str,
        req: SendRequest,
        idem: Option<Call>,
        now: i64,
        rid: &str,
        mut also: F,
    ) -> Result<(Guarded<Accepted>, T), MessageError>
    where
        T: Default + Send + 'static,
        F: FnMut(&mut Tx, &[Message]) -> Result<T, MessageError> + Send + 'static,
    {
        let (mut messages, _, _) = self.prepare(tenant, &req, now, rid)?;
        let (t, reference) = (tenant.to_owned(), req.reference.clone());
        let saved = self
            .store
            .write(move |tx| {
                let mut extra = T::default();
                let g = idempotency::guarded(tx, &t, idem.as_ref(), now, 202, |tx| {
                    commit(tx, &t, &mut messages, reference.as_deref(), now)?;
                    extra = also(tx, &messages)?;
                    Ok::<_, MessageError>(Accepted {
                        messages: messages.clone(),
                    })
                })?;
                Ok::<_, MessageError>((g, extra))
            })
            .await?;
        self.wake.notify_one();
        Ok(saved)
    }

    /// Send many requests in one write (a vendor request for 50 numbers is
    /// one transaction, not 50): each request is accepted or refused on
    /// its own (a reused reference, not enough credit, a bad number), in
    /// order; `idem` guards the whole batch.
    pub async fn send_batch(
        &self,
        tenant: &str,
        reqs: Vec<SendRequest>,
        idem: Option<Call>,
        now: i64,
        rid: &str,
    ) -> Result<Guarded<Vec<Submitted>>, MessageError> {
        self.send_batch_with(tenant, reqs, idem, now, rid, |_, out| Ok(out))
            .await
    }

    /// [`Messaging::send_batch`], with `answer` run in the same write on
    /// what became of each request: it records what the caller keeps beside
    /// the messages (a gateway's outgoing log) and makes the answer `idem`
    /// remembers, so a retried call replays it instead of sending again.
    pub async fn send_batch_with<T, F>(
        &self,
        tenant: &str,
        reqs: Vec<SendRequest>,
        idem: Option<Call>,
        now: i64,
        rid: &str,
        mut answer: F,
    ) -> Result<Guarded<T>, MessageError>
    where
        T: Serialize + Send + 'static,
        F: FnMut(&mut Tx, Vec<Submitted>) -> Result<T, MessageError> + Send + 'static,
    {
        if let Some(call) = &idem
            && let Some(early) = idempotency::precheck(&self.store.read()?, tenant, call, now)?
        {
            return Ok(early);
        }
        // Templates and routes run first, outside the write.
        let mut prepared: Vec<Result<Prepared, Refusal>> = Vec::new();
        for req in &reqs {
            prepared.push(match self.prepare(tenant, req, now, rid) {
                Ok((messages, _, _)) => Ok((messages, req.reference.clone())),
                Err(e) => Err(Refusal::of(e)?),
            });
        }
        let t = tenant.to_owned();
        let saved = self
            .store
            .write(move |tx| {
                idempotency::guarded(tx, &t, idem.as_ref(), now, 200, |tx| {
                    let mut out = Vec::with_capacity(prepared.len());
                    let mut seen = HashSet::new();
                    for item in &prepared {
                        let (messages, reference) = match item {
                            Ok(p) => p,
                            Err(r) => {
                                out.push(Submitted::Refused(r.clone()));
                                continue;
                            }
                        };
                        let mut messages = messages.clone();
                        // Every check of a request before any write of it.
                        let refused = match commit_checks(tx, &t, &messages, reference, &mut seen) {
                            Ok(()) => None,
                            Err(e) => Some(Refusal::of(e)?),
                        };
                        if let Some(r) = refused {
                            out.push(Submitted::Refused(r));
                            continue;
                        }
                        commit(tx, &t, &mut messages, reference.as_deref(), now)?;
                        out.push(Submitted::Accepted(messages));
                    }
                    answer(tx, out)
                })
            })
            .await?;
        self.wake.notify_one();
        Ok(saved)
    }

    /// Cancel a scheduled message; its reserved credit is released.
    pub async fn cancel(&self, tenant: &str, id: &str, now: i64) -> Result<Message, MessageError> {
        let (t, id) = (tenant.to_owned(), id.to_owned());
        self.store
            .write(move |tx| {
                let mut m: Message = tx
                    .get(MESSAGES, &key(&[&t, &id]))?
                    .ok_or_else(|| MessageError::NotFound(id.clone()))?;
                if m.status != Status::Scheduled {
                    return Err(MessageError::NotCancellable(id.clone()));
                }
                m.status = Status::Rejected;
                m.metadata.insert("_cancelled".into(), "true".into());
                close(tx, &t, &mut m, now)?;
                Ok(m)
            })
            .await
    }

    /// Send due messages until shutdown. Each send runs as its own task,
    /// so a slow provider holds only its own lane; on shutdown the sends in
    /// flight finish (their outcome is recorded) and the rest stay queued.
    pub async fn dispatch_loop(self: Arc<Self>, mut shutdown: Shutdown) {
        let mut running: JoinSet<String> = JoinSet::new();
        let mut in_flight: HashSet<String> = HashSet::new();
        while !shutdown.is_requested() {
            while let Some(done) = running.try_join_next() {
                if let Ok(k) = done {
                    in_flight.remove(&k);
                }
            }
            let free = MAX_IN_FLIGHT.saturating_sub(in_flight.len());
            if free > 0 {
                match self.due(free + in_flight.len()) {
                    Ok(due) => {
                        for k in due {
                            if in_flight.len() >= MAX_IN_FLIGHT {
                                break;
                            }
                            if in_flight.insert(k.clone()) {
                                let this = self.clone();
                                // Filled once the message is read: its
                                // tenant, id and the request that made it.
                                let span = tracing::info_span!(
                                    "dispatch",
                                    tenant = tracing::field::Empty,
                                    message = tracing::field::Empty,
                                    request_id = tracing::field::Empty,
                                );
                                running.spawn(
                                    async move {
                                        if let Err(e) = this.dispatch_one(&k).await {
                                            tracing::warn!(error = %e, "dispatching a message");
                                        }
                                        k
                                    }
                                    .instrument(span),
                                );
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "message outbox");
                        shutdown.sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            tokio::select! {
                _ = shutdown.requested() => {}
                _ = self.wake.notified() => {}
                Some(done) = running.join_next(), if !running.is_empty() => {
                    if let Ok(k) = done {
                        in_flight.remove(&k);
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            // Let wakes and finished sends pile up a little: one outbox scan
            // then serves many of them.
            shutdown.sleep(SCAN_COALESCE).await;
        }
        while running.join_next().await.is_some() {}
    }

    /// Record the outbox's depth, how many entries are due and how late the
    /// oldest due one is (a scrape of `/metrics` calls this; it counts
    /// every entry, so it is cheap only next to a scrape interval).
    pub fn record_outbox(&self) -> Result<(), StoreError> {
        let now = now_ms();
        let snap = self.store.read()?;
        let all = snap.count_from(OUTBOX, "", "")?;
        let later = snap.count_from(OUTBOX, "", &prefix(&[&time_part(now)]))?;
        let oldest = snap
            .scan_raw(OUTBOX, "", None, 1, false)?
            .first()
            .and_then(|(k, _)| engage_store::parts(k).next()?.parse::<i64>().ok())
            .filter(|due| *due < now)
            .map(|due| Duration::from_millis((now - due) as u64));
        engage_telemetry::outbox(all, all.saturating_sub(later), oldest);
        Ok(())
    }

    /// Up to `limit` outbox keys that are due now, oldest first.
    fn due(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let bound = prefix(&[&time_part(now_ms())]);
        Ok(self
            .store
            .read()?
            .scan_raw(OUTBOX, "", None, limit, false)?
            .into_iter()
            .map(|(k, _)| k)
            .take_while(|k| k.as_str() < bound.as_str())
            .collect())
    }

    fn lane(&self, tenant: &str, provider: &str, limits: Limits) -> Arc<Lane> {
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        let lane = lanes
            .entry((tenant.to_owned(), provider.to_owned()))
            .or_insert_with(|| Arc::new(Lane::new(limits)));
        if lane.limits != limits {
            *lane = Arc::new(Lane::new(limits));
        }
        lane.clone()
    }

    /// Take one due outbox entry one step further.
    async fn dispatch_one(&self, entry: &str) -> Result<(), MessageError> {
        let mut parts = engage_store::parts(entry);
        let (Some(_), Some(tenant), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
            return Ok(());
        };
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        let snap = self.store.read()?;
        let Some(m) = snap.get::<Message>(MESSAGES, &key(&[&tenant, &id]))? else {
            let k = entry.to_owned();
            return self
                .store
                .write(move |tx| tx.remove(OUTBOX, &k).map(|_| ()))
                .await
                .map_err(Into::into);
        };
        let span = tracing::Span::current();
        span.record("tenant", tenant.as_str());
        span.record("message", id.as_str());
        if !m.request_id.is_empty() {
            span.record("request_id", m.request_id.as_str());
        }
        let now = now_ms();
        let awaiting_report = m
            .attempts
            .last()
            .is_some_and(|a| !a.status.is_final() && !a.status.is_failure());
        if awaiting_report
            && let Some(a) = m.attempts.last()
            && now < a.at_ms + m.report_timeout_s * 1000
            && let Some(c) = providers::config(&snap, &tenant, &a.provider, &self.sealer)?
            && c.polled()
        {
            // A provider without callbacks: ask it, then look again later.
            let pid = a.provider_id.clone().unwrap_or_default();
            drop(snap);
            match providers::bsg_status(&self.http, &c, &pid).await {
                Some(st) if st.is_final() || st.is_failure() => {
                    self.report(c.kind_name(), &tenant, &pid, st, None).await?;
                }
                _ => {
                    self.update(entry, &tenant, &id, |_, now| {
                        Step::Retry(now + POLL_EVERY_MS)
                    })
                    .await?;
                }
            }
            return Ok(());
        }
        if awaiting_report {
            // The report timer fired: no final report in time. From a
            // provider that reports only failures (an SMTP server's
            // bounces), that silence is the delivery.
            let silent_ok = match m.attempts.last() {
                Some(a) => providers::config(&snap, &tenant, &a.provider, &self.sealer)?
                    .is_some_and(|c| c.reports_only_failures()),
                None => false,
            };
            drop(snap);
            let t = tenant.clone();
            return self
                .update_with(entry, &tenant, &id, move |tx, m, now| {
                    if let Some(a) = m.attempts.last_mut()
                        && !a.status.is_final()
                    {
                        a.updated_at_ms = now;
                        if silent_ok {
                            a.status = Status::Delivered;
                            m.status = Status::Delivered;
                            email::suppression::delivered(tx, &t, &m.to)?;
                            return Ok(Step::Final);
                        }
                        a.status = Status::Unknown;
                        a.error = Some("no delivery report in time".into());
                    }
                    Ok(Step::NextAttempt)
                })
                .await;
        }
        if m.kind == Kind::Marketing && optouts::contains(&snap, &tenant, &m.to)? {
            return self
                .update(entry, &tenant, &id, |m, _| {
                    m.status = Status::Rejected;
                    m.error = Some(optouts::OPTED_OUT.into());
                    Step::Final
                })
                .await;
        }
        if now >= m.expires_at_ms {
            return self
                .update(entry, &tenant, &id, |m, _| {
                    m.status = Status::Expired;
                    Step::Final
                })
                .await;
        }
        let index = m.attempts.len();
        if let Some(why) = m
            .plan
            .get(index)
            .map(|p| refusal(&snap, &tenant, &m, p))
            .transpose()?
            .flatten()
        {
            // Nothing to send this attempt to (no address of its kind, or
            // one suppressed or opted out since the message was accepted).
            return self
                .update(entry, &tenant, &id, move |m, now| {
                    if let Some(p) = m.plan.get(m.attempts.len()).cloned() {
                        m.attempts.push(AttemptRecord {
                            channel: p.channel,
                            provider: p.provider,
                            to: p.to,
                            sender: p.sender,
                            provider_id: None,
                            status: Status::Rejected,
                            error: Some(why.clone()),
                            tries: 0,
                            price: p.price,
                            at_ms: now,
                            updated_at_ms: now,
                        });
                    }
                    Step::NextAttempt
                })
                .await;
        }
        let Some(plan) = m.plan.get(index).cloned() else {
            return self
                .update(entry, &tenant, &id, |m, _| {
                    m.status = m
                        .attempts
                        .last()
                        .map(|a| a.status)
                        .unwrap_or(Status::Undeliverable);
                    Step::Final
                })
                .await;
        };
        let config = providers::config(&snap, &tenant, &plan.provider, &self.sealer)?;
        let limits = providers::limits(&snap, &tenant, &plan.provider)?;
        drop(snap);
        let body = plan.body.clone().unwrap_or_else(|| m.body.clone());
        let sender = plan.sender.clone().or_else(|| m.sender.clone());
        // The lane's slot is held until the outcome is recorded, so its
        // bound is also the most sends a crash can repeat.
        // This host's share of the provider's limits (all of them, alone).
        let limits = Limits {
            max_in_flight: self.hosts.share(limits.max_in_flight),
            max_per_s: limits.max_per_s.map(|r| self.hosts.share_rate(r)),
        };
        if config.is_some() && limits.max_in_flight == 0 {
            // Its share is another host's: it stays due for them.
            return Ok(());
        }
        let _slot = match &config {
            Some(_) => self.lane(&tenant, &plan.provider, limits).enter().await,
            None => None,
        };
        // Hosts sharing the store claim a message before sending it: its
        // outbox entry moves to when the claim ends, so no other host sees
        // it due meanwhile, and a host that dies mid-send leaves it to the
        // others once the claim ends. Alone on its store, the in-memory
        // set of sends in flight is claim enough.
        let claimed;
        let entry: &str = if self.store.is_shared() {
            match self.claim(entry, &tenant, &id).await? {
                Some(k) => {
                    claimed = k;
                    &claimed
                }
                None => return Ok(()), // another host has it
            }
        } else {
            entry
        };
        let sending = std::time::Instant::now();
        let result = match &config {
            None => Err(SendError::Permanent(format!(
                "no provider named `{}`",
                plan.provider
            ))),
            Some(c) => {
                // The message id rides in the callback URL, so every
                // provider request names the message it sends.
                let callback = format!(
                    "{}/hooks/{}/{tenant}/{}?message={}",
                    self.public_url(),
                    c.kind_name(),
                    plan.provider,
                    m.id
                );
                let to = plan.to.as_deref().unwrap_or(&m.to);
                // Marketing e-mail carries its recipient's unsubscribe link.
                let unsubscribe =
                    (m.kind == Kind::Marketing && plan.channel == "email").then(|| {
                        email::unsubscribe::url(&self.sealer, &self.public_url(), &tenant, to)
                    });
                // An e-mail attempt of a message without a subject (an SMS
                // falling back to e-mail): its text's first line.
                let subject = m.subject.clone().or_else(|| {
                    (plan.channel == "email").then(|| {
                        body.lines()
                            .next()
                            .unwrap_or_default()
                            .chars()
                            .take(78)
                            .collect()
                    })
                });
                providers::send(
                    &self.http,
                    &self.smtp,
                    c,
                    &providers::Outbound {
                        id: &m.id,
                        to,
                        channel: &plan.channel,
                        from: sender.as_deref(),
                        body: &body,
                        callback: &callback,
                        valid_for_s: ((m.expires_at_ms - now) / 1000).max(1),
                        tenant: &tenant,
                        provider: &plan.provider,
                        max_in_flight: limits.max_in_flight,
                        subject: subject.as_deref(),
                        html: m.html.as_deref(),
                        unsubscribe: unsubscribe.as_deref(),
                    },
                )
                .await
            }
        };
        let kind = config.as_ref().map(|c| c.kind_name()).unwrap_or("none");
        if config.is_some() {
            let outcome = match &result {
                Ok(_) => "accepted",
                Err(SendError::Transient(_)) => "unavailable",
                Err(SendError::Permanent(_)) => "failed",
                Err(SendError::Bounced { .. }) => "bounced",
            };
            let elapsed = sending.elapsed();
            tracing::debug!(
                provider = %plan.provider,
                kind,
                outcome,
                us = elapsed.as_micros() as u64,
                "sent to the provider"
            );
            engage_telemetry::send(kind, &plan.channel, outcome, &tenant, elapsed);
        }
        // When the provider answered (a paced lane may have waited).
        let now = now_ms();
        let mut attempt = AttemptRecord {
            channel: plan.channel.clone(),
            provider: plan.provider.clone(),
            to: plan.to.clone(),
            sender,
            provider_id: None,
            status: Status::Queued,
            error: None,
            tries: m.tries + 1,
            price: plan.price,
            at_ms: now,
            updated_at_ms: now,
        };
        match result {
            Ok(Sent {
                provider_id,
                status,
            }) => {
                attempt.provider_id = Some(provider_id.clone());
                attempt.status = status;
                let link = key(&[kind, &provider_id]);
                let owner = (tenant.clone(), id.clone());
                let polled = config.as_ref().is_some_and(|c| c.polled());
                self.update(entry, &tenant, &id, move |m, now| {
                    m.tries = 0;
                    m.sent_at_ms.get_or_insert(now);
                    m.attempts.push(attempt.clone());
                    let check_at = polled.then_some(now + POLL_EVERY_MS);
                    Step::Link(link.clone(), owner.clone(), check_at)
                })
                .await
            }
            Err(SendError::Transient(e)) if attempt.tries < MAX_TRIES => {
                let backoff = 250i64 << attempt.tries;
                tracing::info!(tenant, id, error = %e, backoff, "provider unavailable; retrying");
                self.update(entry, &tenant, &id, move |m, now| {
                    m.tries += 1;
                    Step::Retry(now + backoff)
                })
                .await
            }
            Err(SendError::Transient(e) | SendError::Permanent(e)) => {
                attempt.status = Status::Rejected;
                attempt.error = Some(e);
                self.update(entry, &tenant, &id, move |m, _| {
                    m.tries = 0;
                    m.attempts.push(attempt.clone());
                    Step::NextAttempt
                })
                .await
            }
            Err(SendError::Bounced { why, status }) => {
                // A hard bounce at send time: counted against the address
                // in the same write that fails the attempt over.
                attempt.status = Status::Undeliverable;
                attempt.error = Some(why.clone());
                let t = tenant.clone();
                self.update_with(entry, &tenant, &id, move |tx, m, now| {
                    let address = attempt.to.clone().unwrap_or_else(|| m.to.clone());
                    let bounce = email::suppression::HardBounce {
                        address: &address,
                        status: status.as_deref(),
                        diagnostic: &why,
                    };
                    email::suppression::record(tx, &t, &bounce, now)?;
                    m.tries = 0;
                    m.attempts.push(attempt.clone());
                    Ok(Step::NextAttempt)
                })
                .await
            }
        }
    }

    /// Claim message `id` for [`Messaging::claim_ms`] if `entry` is still
    /// its outbox entry: its new entry, due when the claim ends; none when
    /// another host (or a report) moved it on.
    async fn claim(
        &self,
        entry: &str,
        tenant: &str,
        id: &str,
    ) -> Result<Option<String>, MessageError> {
        let (k, t, id) = (entry.to_owned(), tenant.to_owned(), id.to_owned());
        let claim_ms = self.claim_ms;
        self.store
            .write(move |tx| {
                if tx.get_raw(OUTBOX, &k)?.is_none() {
                    return Ok::<_, MessageError>(None);
                }
                let Some(mut m) = tx.get::<Message>(MESSAGES, &key(&[&t, &id]))? else {
                    return Ok(None);
                };
                let until = now_ms().saturating_add(claim_ms);
                requeue(tx, &t, &mut m, Some(until))?;
                Ok(Some(outbox_key(until, &t, &id)))
            })
            .await
    }

    /// Change message `id` in one write, if `entry` is still its outbox
    /// entry (a delivery report may have moved it on meanwhile).
    async fn update(
        &self,
        entry: &str,
        tenant: &str,
        id: &str,
        change: impl Fn(&mut Message, i64) -> Step + Send + 'static,
    ) -> Result<(), MessageError> {
        self.update_with(entry, tenant, id, move |_, m, now| Ok(change(m, now)))
            .await
    }

    /// [`Messaging::update`], with the write's transaction for what is
    /// recorded beside the message (a bounce against its address).
    async fn update_with(
        &self,
        entry: &str,
        tenant: &str,
        id: &str,
        change: impl Fn(&mut Tx, &mut Message, i64) -> Result<Step, MessageError> + Send + 'static,
    ) -> Result<(), MessageError> {
        let (k, t, id) = (entry.to_owned(), tenant.to_owned(), id.to_owned());
        let woke = self
            .store
            .write(move |tx| {
                if tx.get_raw(OUTBOX, &k)?.is_none() {
                    return Ok::<_, MessageError>(false);
                }
                let Some(mut m) = tx.get::<Message>(MESSAGES, &key(&[&t, &id]))? else {
                    tx.remove(OUTBOX, &k)?;
                    return Ok(false);
                };
                let now = now_ms();
                let step = change(tx, &mut m, now)?;
                apply(tx, &t, &mut m, step, now)
            })
            .await?;
        if woke {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// A provider's delivery report for its message `provider_id`. A
    /// failed delivery fails over to the next planned attempt. Reports for
    /// unknown ids, other tenants' messages or final attempts are logged
    /// and ignored (providers repeat reports).
    pub async fn report(
        &self,
        kind: &str,
        tenant: &str,
        provider_id: &str,
        status: Status,
        error: Option<String>,
    ) -> Result<bool, MessageError> {
        let (t, kind_, pid) = (
            tenant.to_owned(),
            kind.to_owned(),
            normalize_provider_id(provider_id),
        );
        // One write: the send's record and this report cannot pass each
        // other between a lookup and a write.
        let (matched, woke, lag_ms) = self
            .store
            .write(move |tx| report_in(tx, &t, &kind_, &pid, status, error.clone()))
            .await?;
        if let Some(ms) = lag_ms {
            engage_telemetry::delivery_report(kind, Duration::from_millis(ms.max(0) as u64));
        }
        if woke {
            self.wake.notify_one();
        }
        Ok(matched)
    }

    /// Follow an unsubscribe link (the page's button, or a mailbox
    /// provider's one-click `POST`): the address it was made for goes on its
    /// tenant's opt-out list. The (tenant, address) and whether it is new;
    /// none for a token this server did not make.
    pub async fn unsubscribe(
        &self,
        token: &str,
        now: i64,
    ) -> Result<Option<(String, String, bool)>, StoreError> {
        let Some((tenant, address)) = email::unsubscribe::open(&self.sealer, token) else {
            return Ok(None);
        };
        let (t, a) = (tenant.clone(), address.clone());
        let newly = self
            .store
            .write(move |tx| optouts::add(tx, &t, &a, "email:unsubscribe-link", now))
            .await?;
        Ok(Some((tenant, address, newly)))
    }

    /// Suppress `address` (lower case) by hand, as a client's own black
    /// list does; true if it was not suppressed before.
    pub async fn suppress(
        &self,
        tenant: &str,
        address: &str,
        reason: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let (t, a, r) = (tenant.to_owned(), address.to_owned(), reason.to_owned());
        self.store
            .write(move |tx| email::suppression::add(tx, &t, &a, &r, now))
            .await
    }

    /// Lift the suppression of `address`; true if it was suppressed.
    pub async fn lift_suppression(&self, tenant: &str, address: &str) -> Result<bool, StoreError> {
        let (t, a) = (tenant.to_owned(), address.to_owned());
        self.store
            .write(move |tx| email::suppression::remove(tx, &t, &a))
            .await
    }

    /// What a mail system reported back to the tenant's bounce webhook
    /// (parsed by [`email::bounces::parse`]), applied in one write:
    ///
    /// - a hard bounce counts against the address (and may suppress it,
    ///   see [`email::suppression`]);
    /// - a hard or soft bounce of an e-mail Engage sent fails that
    ///   attempt, as an undeliverable report does: the next planned
    ///   attempt goes out;
    /// - a complaint opts the address out of the tenant's marketing.
    pub async fn bounced(
        &self,
        tenant: &str,
        reports: Vec<email::bounces::Report>,
    ) -> Result<BounceOutcome, MessageError> {
        use email::bounces::Event;
        let t = tenant.to_owned();
        let (outcome, woke) = self
            .store
            .write(move |tx| {
                let now = now_ms();
                let mut out = BounceOutcome::default();
                let mut woke = false;
                for r in &reports {
                    // The message it is about, if Engage sent it (to this tenant).
                    let pid = r.message_id.as_deref().map(normalize_provider_id);
                    let message = match &pid {
                        Some(pid) => {
                            match tx.get::<(String, String)>(PROVIDER_IDS, &key(&["smtp", pid]))? {
                                Some((owner, id)) if owner == t => {
                                    tx.get::<Message>(MESSAGES, &key(&[&t, &id]))?
                                }
                                _ => None,
                            }
                        }
                        None => None,
                    };
                    let recipient = r
                        .recipient
                        .clone()
                        .or_else(|| message.as_ref().map(|m| m.to.clone()))
                        .and_then(|a| address::normalize_email(&a).ok());
                    let Some(address) = recipient else {
                        out.unknown += 1;
                        continue;
                    };
                    match r.event {
                        Event::HardBounce => {
                            out.hard_bounces += 1;
                            let b = email::suppression::HardBounce {
                                address: &address,
                                status: r.status.as_deref(),
                                diagnostic: &r.diagnostic,
                            };
                            if email::suppression::record(tx, &t, &b, now)? {
                                out.suppressed.push(address.clone());
                            }
                        }
                        Event::SoftBounce => out.soft_bounces += 1,
                        Event::Complaint => {
                            out.complaints += 1;
                            optouts::add(tx, &t, &address, "email:complaint", now)?;
                        }
                    }
                    if let (Some(pid), Some(_), Event::HardBounce | Event::SoftBounce) =
                        (&pid, &message, &r.event)
                    {
                        let why = match &r.status {
                            Some(st) => format!("bounced: {st} {}", r.diagnostic),
                            None => format!("bounced: {}", r.diagnostic),
                        };
                        let (matched, w, _) =
                            report_in(tx, &t, "smtp", pid, Status::Undeliverable, Some(why))?;
                        out.matched += usize::from(matched);
                        woke |= w;
                    }
                }
                out.suppressed.sort();
                out.suppressed.dedup();
                Ok::<_, MessageError>((out, woke))
            })
            .await?;
        if woke {
            self.wake.notify_one();
        }
        Ok(outcome)
    }
}

/// What [`Messaging::bounced`] did with a report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct BounceOutcome {
    pub hard_bounces: usize,
    pub soft_bounces: usize,
    pub complaints: usize,
    /// Reports that named no address Engage could find.
    pub unknown: usize,
    /// Bounces of e-mails Engage sent (their attempts failed over).
    pub matched: usize,
    /// Addresses suppressed (now or before).
    pub suppressed: Vec<String>,
}

/// A provider's report on its message `pid` (normalised) within a write:
/// (whether it matched a message of `t`, whether the dispatcher has new
/// work, the report's lag in ms).
fn report_in(
    tx: &mut Tx,
    t: &str,
    kind_: &str,
    pid: &str,
    status: Status,
    error: Option<String>,
) -> Result<(bool, bool, Option<i64>), MessageError> {
    let link = key(&[kind_, pid]);
    let Some((owner, id)) = tx.get::<(String, String)>(PROVIDER_IDS, &link)? else {
        // Possibly faster than our record of the send: keep it
        // for the send to pick up (a final report wins over a
        // later non-final one).
        tracing::info!(kind = %kind_, provider_id = %pid, "delivery report before its send was recorded");
        let kept = tx.get::<EarlyReport>(EARLY_REPORTS, &link)?;
        if !kept.is_some_and(|e| e.status.is_final() || e.status.is_failure()) {
            let early = EarlyReport {
                tenant: t.to_owned(),
                received_at_ms: now_ms(),
                status,
                error: error.clone(),
            };
            tx.put(EARLY_REPORTS, &link, &early)?;
        }
        return Ok::<_, MessageError>((false, false, None));
    };
    if owner != t {
        tracing::warn!(kind = %kind_, provider_id = %pid, "delivery report for another tenant's message");
        return Ok((false, false, None));
    }
    let Some(mut m) = tx.get::<Message>(MESSAGES, &key(&[t, &id]))? else {
        return Ok((false, false, None));
    };
    let now = now_ms();
    let last = m.attempts.len().saturating_sub(1);
    let Some((i, a)) = m
        .attempts
        .iter_mut()
        .enumerate()
        .rev()
        .find(|(_, a)| a.provider_id.as_deref() == Some(pid))
    else {
        return Ok((false, false, None));
    };
    if a.status.is_final() || a.status.is_failure() {
        return Ok((true, false, None)); // a late or repeated report
    }
    let lag = now - a.at_ms;
    a.status = status;
    a.error = error.clone();
    a.updated_at_ms = now;
    if i != last {
        // An earlier attempt already timed out and was replaced.
        m.updated_at_ms = now;
        tx.put(MESSAGES, &key(&[t, &m.id]), &m)?;
        return Ok((true, false, Some(lag)));
    }
    let step = if status.is_failure() {
        Step::NextAttempt
    } else if status.is_final() {
        m.status = status;
        Step::Final
    } else {
        m.status = status;
        Step::Keep
    };
    Ok((true, apply(tx, t, &mut m, step, now)?, Some(lag)))
}

/// One provider's share of the dispatcher: a bound on sends in flight and
/// a token bucket for sends per second.
struct Lane {
    limits: Limits,
    permits: Arc<Semaphore>,
    /// Tokens, and when they were last counted.
    bucket: Mutex<(f64, std::time::Instant)>,
}

impl Lane {
    fn new(limits: Limits) -> Lane {
        let burst = limits.max_per_s.unwrap_or(0.0).max(1.0);
        Lane {
            limits,
            permits: Arc::new(Semaphore::new(limits.max_in_flight.max(1) as usize)),
            bucket: Mutex::new((burst, std::time::Instant::now())),
        }
    }

    /// Wait for a free slot and, with a rate, for a token.
    async fn enter(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let permit = self.permits.clone().acquire_owned().await.ok();
        if let Some(rate) = self.limits.max_per_s {
            loop {
                let wait = {
                    let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
                    let now = std::time::Instant::now();
                    let refill = now.duration_since(b.1).as_secs_f64() * rate;
                    *b = ((b.0 + refill).min(rate.max(1.0)), now);
                    if b.0 >= 1.0 {
                        b.0 -= 1.0;
                        None
                    } else {
                        Some(Duration::from_secs_f64((1.0 - b.0) / rate))
                    }
                };
                match wait {
                    None => break,
                    Some(d) => tokio::time::sleep(d).await,
                }
            }
        }
        permit
    }
}

/// What every plugin call of one request shares.
struct PluginCall<'a> {
    tenant: &'a str,
    snapshot: Arc<Snapshot>,
    now: i64,
    rid: &'a str,
}

/// What an update does to the message's outbox entry.
enum Step {
    /// Sent: link the provider's id to the message, then wait for the
    /// report (or finish, if the provider already answered finally).
    Link(String, (String, String), Option<i64>),
    /// Try again at this time.
    Retry(i64),
    /// The current attempt failed: queue the next one now, or finish.
    NextAttempt,
    /// The message reached its final status.
    Final,
    /// Keep the entry as it is.
    Keep,
}

/// Apply `step` to `m` and its outbox entry; true if the dispatcher has
/// new due work.
fn apply(
    tx: &mut Tx,
    t: &str,
    m: &mut Message,
    step: Step,
    now: i64,
) -> Result<bool, MessageError> {
    m.updated_at_ms = now;
    match step {
        Step::Link(link, owner, check_at) => {
            tx.put(PROVIDER_IDS, &link, &owner)?;
            if let Some(early) = tx.get::<EarlyReport>(EARLY_REPORTS, &link)? {
                tx.remove(EARLY_REPORTS, &link)?;
                if let Some(a) = m.attempts.last_mut()
                    && early.tenant == t
                {
                    a.status = early.status;
                    a.error = early.error;
                    a.updated_at_ms = now;
                }
            }
            let status = m
                .attempts
                .last()
                .map(|a| a.status)
                .unwrap_or(Status::Unknown);
            if status.is_failure() {
                return apply(tx, t, m, Step::NextAttempt, now);
            }
            m.status = status;
            if status.is_final() {
                close(tx, t, m, now)?;
                return Ok(false);
            }
            let timer = check_at
                .unwrap_or(now + m.report_timeout_s * 1000)
                .min(m.expires_at_ms.max(now));
            requeue(tx, t, m, Some(timer))?;
            Ok(false)
        }
        Step::Retry(at) => {
            requeue(tx, t, m, Some(at))?;
            Ok(false)
        }
        Step::NextAttempt => {
            if m.attempts.len() < m.plan.len() && now < m.expires_at_ms {
                m.status = Status::Queued;
                requeue(tx, t, m, Some(now))?;
                Ok(true)
            } else {
                m.status = if now >= m.expires_at_ms {
                    Status::Expired
                } else {
                    m.attempts
                        .last()
                        .map(|a| a.status)
                        .unwrap_or(Status::Undeliverable)
                };
                close(tx, t, m, now)?;
                Ok(false)
            }
        }
        Step::Final => {
            close(tx, t, m, now)?;
            Ok(false)
        }
        Step::Keep => {
            tx.put(MESSAGES, &key(&[t, &m.id]), &*m)?;
            Ok(false)
        }
    }
}

/// Move the message's outbox entry to `due` (none: take it off).
fn requeue(tx: &mut Tx, t: &str, m: &mut Message, due: Option<i64>) -> Result<(), MessageError> {
    if let Some(old) = m.due_ms.take() {
        tx.remove(OUTBOX, &outbox_key(old, t, &m.id))?;
    }
    if let Some(due) = due {
        tx.put_raw(OUTBOX, &outbox_key(due, t, &m.id), b"")?;
        m.due_ms = Some(due);
    }
    tx.put(MESSAGES, &key(&[t, &m.id]), &*m)?;
    Ok(())
}

/// Metadata keys whose values get outcome counters (a campaign's
/// delivered and failed messages, without reading every message).
const COUNTED_TAGS: [&str; 1] = ["campaign"];

/// Count a final message under its counted tags.
fn count_outcome(tx: &mut Tx, t: &str, m: &Message) -> Result<(), StoreError> {
    let outcome = match m.status {
        Status::Delivered | Status::Read => "delivered",
        s if s.is_failure() => "failed",
        _ => "unknown",
    };
    for tag in COUNTED_TAGS {
        if let Some(v) = m.metadata.get(tag) {
            let k = key(&[t, tag, v, outcome]);
            let n = tx.get_u64(OUTCOMES, &k)? + 1;
            tx.put_u64(OUTCOMES, &k, n)?;
        }
    }
    Ok(())
}

/// Final messages tagged `tag` = `value` by outcome: delivered, failed
/// (undeliverable, rejected, expired) and unknown (no report in time).
pub fn outcomes(
    src: &impl Reader,
    tenant: &str,
    tag: &str,
    value: &str,
) -> Result<(u64, u64, u64), StoreError> {
    let get = |o: &str| src.get_u64(OUTCOMES, &key(&[tenant, tag, value, o]));
    Ok((get("delivered")?, get("failed")?, get("unknown")?))
}

/// The message is final: off the outbox, its credit settled, counted.
fn close(tx: &mut Tx, t: &str, m: &mut Message, now: i64) -> Result<(), MessageError> {
    count_outcome(tx, t, m)?;
    m.final_at_ms = Some(now);
    m.charged = m
        .attempts
        .iter()
        .filter(|a| a.status.went_out())
        .map(|a| a.price)
        .sum::<i64>()
        .min(m.reserved);
    pricing::settle(tx, t, &m.account, m.reserved, m.charged, &m.id, now)?;
    m.reserved = 0;
    requeue(tx, t, m, None)
}

fn check_channel(channel: &str) -> Result<(), MessageError> {
    known_channel(channel).map_err(MessageError::Invalid)
}

/// Whether Engage sends on `channel`; the error names the ones it does.
pub fn known_channel(channel: &str) -> Result<(), String> {
    if CHANNELS.contains(&channel) {
        Ok(())
    } else {
        Err(format!(
            "unknown channel `{channel}`: {}",
            CHANNELS.join(", ")
        ))
    }
}

/// What a claim adds to the provider timeout.
const CLAIM_MARGIN_MS: i64 = 5_000;

fn outbox_key(due: i64, tenant: &str, id: &str) -> String {
    key(&[&time_part(due), tenant, id])
}

/// Providers differ in the case they echo ids back in.
fn normalize_provider_id(id: &str) -> String {
    id.trim().to_ascii_lowercase()
}

/// The record of a message refused at acceptance: final, never queued,
/// nothing reserved.
fn blocked(
    id: String,
    to: String,
    req: &SendRequest,
    body: &str,
    seg: segments::Segments,
    account: &str,
    now: i64,
) -> Message {
    Message {
        number: 0,
        id,
        to,
        channel: req.channel.clone(),
        sender: req.sender.clone(),
        body: body.to_owned(),
        subject: None,
        html: None,
        kind: req.kind,
        reference: req.reference.clone(),
        status: Status::Rejected,
        error: Some(optouts::OPTED_OUT.into()),
        encoding: seg.encoding,
        segments: seg.segments,
        plan: Vec::new(),
        attempts: Vec::new(),
        metadata: req.metadata.clone(),
        account: account.to_owned(),
        currency: None,
        reserved: 0,
        charged: 0,
        tries: 0,
        due_ms: None,
        report_timeout_s: 0,
        created_at_ms: now,
        schedule_at_ms: None,
        sent_at_ms: None,
        final_at_ms: Some(now),
        expires_at_ms: now,
        updated_at_ms: now,
        request_id: String::new(),
    }
}

fn planned(a: Attempt) -> PlannedAttempt {
    PlannedAttempt {
        channel: a.channel,
        provider: a.provider,
        to: None,
        sender: a.sender,
        body: a.body.as_deref().map(text::for_channel),
        price: 0,
    }
}

/// Why attempt `p` of `m` cannot be sent, if it cannot: no address of its
/// kind, or an e-mail address suppressed (or, for marketing, an address
/// opted out) since the message was accepted.
fn refusal(
    src: &impl Reader,
    tenant: &str,
    m: &Message,
    p: &PlannedAttempt,
) -> Result<Option<String>, StoreError> {
    let cross = (p.channel == "email") != (m.channel == "email");
    let Some(to) = (if cross {
        p.to.as_deref()
    } else {
        Some(m.to.as_str())
    }) else {
        let (what, field) = if p.channel == "email" {
            ("e-mail address", "email")
        } else {
            ("phone number", "phone")
        };
        return Ok(Some(format!(
            "no {what} for this {} attempt: give one in the message's metadata `{field}`",
            p.channel
        )));
    };
    if p.channel == "email" && email::suppression::contains(src, tenant, to)? {
        return Ok(Some(email::suppression::SUPPRESSED_ERROR.into()));
    }
    if cross && m.kind == Kind::Marketing && optouts::contains(src, tenant, to)? {
        return Ok(Some(optouts::OPTED_OUT.into()));
    }
    Ok(None)
}

/// The address an attempt on `channel` goes to when the message's `to` is
/// of the other kind: metadata `email` for e-mail, `phone` for SMS and
/// Viber, normalised; none when it is missing or not an address.
fn other_address(channel: &str, metadata: &BTreeMap<String, String>) -> Option<String> {
    if channel == "email" {
        address::normalize_email(metadata.get("email")?).ok()
    } else {
        normalize_phone(metadata.get("phone")?).ok()
    }
}

/// Message `id`.
pub fn get(src: &impl Reader, tenant: &str, id: &str) -> Result<Option<Message>, StoreError> {
    src.get(MESSAGES, &key(&[tenant, id]))
}

/// What must hold before `messages` (one request's) are stored: their
/// reference is new (in the store and in `seen`, the batch so far) and
/// their account can hold their reservation. Writes nothing.
fn commit_checks(
    tx: &Tx,
    t: &str,
    messages: &[Message],
    reference: &Option<String>,
    seen: &mut HashSet<String>,
) -> Result<(), MessageError> {
    if let Some(r) = reference
        && (tx.get_raw(REFERENCES, &key(&[t, r]))?.is_some() || !seen.insert(r.clone()))
    {
        return Err(MessageError::DuplicateReference(r.clone()));
    }
    let mut per_account: BTreeMap<&str, i64> = BTreeMap::new();
    for m in messages {
        *per_account.entry(m.account.as_str()).or_default() += m.reserved;
    }
    for (account, micros) in per_account {
        pricing::can_reserve(tx, t, account, micros)?;
    }
    Ok(())
}

/// Store one request's messages: reference, numbers, credit reservations,
/// the messages and their outbox entries (or outcome, when refused).
fn commit(
    tx: &mut Tx,
    t: &str,
    messages: &mut [Message],
    reference: Option<&str>,
    now: i64,
) -> Result<(), MessageError> {
    if let Some(r) = reference {
        let rk = key(&[t, r]);
        if tx.get_raw(REFERENCES, &rk)?.is_some() {
            return Err(MessageError::DuplicateReference(r.to_owned()));
        }
        let ids: Vec<&str> = messages.iter().map(|m| m.id.as_str()).collect();
        tx.put(REFERENCES, &rk, &ids)?;
    }
    for m in messages.iter_mut() {
        m.number = tx.next_seq(t, "message")?;
        tx.put_raw(NUMBERS, &key(&[t, &seq_part(m.number)]), m.id.as_bytes())?;
    }
    for m in messages.iter() {
        pricing::reserve(tx, t, &m.account, m.reserved, &m.id, now)?;
        tx.put(MESSAGES, &key(&[t, &m.id]), m)?;
        match m.due_ms {
            Some(due) => tx.put_raw(OUTBOX, &outbox_key(due, t, &m.id), b"")?,
            None => count_outcome(tx, t, m)?, // refused: final already
        }
    }
    Ok(())
}

/// The message with number `number` (see [`Message::number`]).
pub fn by_number(
    src: &impl Reader,
    tenant: &str,
    number: u64,
) -> Result<Option<Message>, StoreError> {
    match src.get_raw(NUMBERS, &key(&[tenant, &seq_part(number)]))? {
        Some(id) => get(src, tenant, &String::from_utf8_lossy(&id)),
        None => Ok(None),
    }
}

/// The tenant's messages created at or after `since_ms`, newest first, at
/// most `cap` of them (walking the message numbers backwards); also whether
/// the cap stopped the walk before `since_ms`.
pub fn newest_since(
    src: &impl Reader,
    tenant: &str,
    since_ms: i64,
    cap: usize,
) -> Result<(Vec<Message>, bool), StoreError> {
    let p = prefix(&[tenant]);
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = src.scan_raw(NUMBERS, &p, cursor.as_deref(), 256, true)?;
        let end = page.len() < 256;
        for (k, id) in page {
            cursor = Some(k);
            let Some(m) = get(src, tenant, &String::from_utf8_lossy(&id))? else {
                continue;
            };
            if m.created_at_ms < since_ms {
                return Ok((out, false));
            }
            if out.len() >= cap {
                return Ok((out, true));
            }
            out.push(m);
        }
        if end {
            return Ok((out, false));
        }
    }
}

/// The messages sent under a client reference.
pub fn by_reference(
    src: &impl Reader,
    tenant: &str,
    reference: &str,
) -> Result<Vec<Message>, StoreError> {
    let ids: Vec<String> = src
        .get(REFERENCES, &key(&[tenant, reference]))?
        .unwrap_or_default();
    let mut out = Vec::new();
    for id in ids {
        if let Some(m) = get(src, tenant, &id)? {
            out.push(m);
        }
    }
    Ok(out)
}

/// A page of the tenant's messages (by id order), filtered.
pub fn list(
    src: &impl Reader,
    tenant: &str,
    filter: impl Fn(&Message) -> bool,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<Message>, StoreError> {
    let p = prefix(&[tenant]);
    let start = after.map(|a| key(&[tenant, a]));
    let mut out = Vec::new();
    let mut cursor = start;
    loop {
        let page = src.scan_page::<Message>(MESSAGES, &p, cursor.as_deref(), 256, false)?;
        let Some((last, _)) = page.last() else { break };
        cursor = Some(last.clone());
        let n = page.len();
        out.extend(page.into_iter().map(|(_, m)| m).filter(|m| filter(m)));
        if out.len() >= limit || n < 256 {
            break;
        }
    }
    out.truncate(limit);
    Ok(out)
}

/// A channel name where a client writes one (`sms` or `viber`), in an API
/// document.
pub fn channel_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(CHANNELS))
        .build()
}
