//! Provider adapters: how an attempt leaves Engage.
//!
//! Each tenant names its providers (`PUT /v1/providers/{name}`) with a kind
//! and its credentials; the route plugin refers to them by name. `console`
//! is always there: it logs the message and reports it delivered, so a new
//! tenant sees the whole flow without any account.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};

use super::Status;
use crate::email::smtp::{self, SmtpTls};
use engage_store::secrets::Sealer;
use engage_store::{Reader, StoreError, Table, Tx, key, prefix};

/// (tenant, provider name) → [`ProviderConfig`].
const PROVIDERS: Table = Table::new("providers");

/// (tenant, provider name) → [`Limits`].
const LIMITS: Table = Table::new("provider_limits");

/// How hard Engage may drive one provider of a tenant.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ProviderLimits)]
pub struct Limits {
    /// Sends in flight at once, 1 to 1024.
    #[schema(minimum = 1, maximum = 1024)]
    pub max_in_flight: u32,
    /// Sends per second, on average (bursts up to one second's worth),
    /// above 0 and at most 100000; none: unlimited.
    #[schema(exclusive_minimum = 0, maximum = 100000)]
    pub max_per_s: Option<f64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_in_flight: 32,
            max_per_s: None,
        }
    }
}

impl Limits {
    /// Take `max_in_flight` and `max_per_s` out of a provider definition.
    pub fn take_from(v: &mut serde_json::Value) -> Result<Limits, String> {
        let mut l = Limits::default();
        if let Some(obj) = v.as_object_mut() {
            if let Some(n) = obj.remove("max_in_flight") {
                l.max_in_flight = n
                    .as_u64()
                    .filter(|n| (1..=1024).contains(n))
                    .ok_or("max_in_flight is 1 to 1024")? as u32;
            }
            if let Some(r) = obj.remove("max_per_s").filter(|r| !r.is_null()) {
                l.max_per_s = Some(
                    r.as_f64()
                        .filter(|r| *r > 0.0 && *r <= 100_000.0)
                        .ok_or("max_per_s is above 0 and at most 100000")?,
                );
            }
        }
        Ok(l)
    }
}

/// Provider `name`'s limits.
pub fn limits(src: &impl Reader, tenant: &str, name: &str) -> Result<Limits, StoreError> {
    Ok(src.get(LIMITS, &key(&[tenant, name]))?.unwrap_or_default())
}

/// BSG's production REST API.
/// A request that got no answer: reqwest's words name the url, their
/// innermost cause says why (refused, timed out, a certificate for
/// another name).
fn unreached(provider: &str, e: &reqwest::Error) -> SendError {
    let mut why: &dyn std::error::Error = e;
    while let Some(cause) = why.source() {
        why = cause;
    }
    SendError::Transient(if std::ptr::addr_eq(why, e) {
        format!("{provider}: {e}")
    } else {
        format!("{provider}: {e}: {why}")
    })
}

pub const BSG_BASE_URL: &str = "https://app.bsg.hk/rest";

/// Twilio's production API.
pub const TWILIO_BASE_URL: &str = "https://api.twilio.com";

/// A tenant's provider.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[schema(as = Provider)]
pub enum ProviderConfig {
    /// Logs the message and reports it delivered, or with `report` set,
    /// with that status (to try failover without an account).
    Console {
        #[serde(default)]
        report: Option<Status>,
        /// Only messages on these channels get `report`; empty: all.
        #[serde(default)]
        channels: Vec<String>,
    },
    /// Twilio Programmable Messaging.
    Twilio {
        account_sid: String,
        auth_token: String,
        /// The sender when the attempt names none.
        from: Option<String>,
        /// For tests and proxies; Twilio's API by default.
        base_url: Option<String>,
    },
    /// BSG's REST API (Viber), polled for status.
    Bsg {
        api_key: String,
        /// For tests and proxies; BSG's API by default.
        base_url: Option<String>,
    },
    /// A Kannel gateway's smsbox (`/cgi-bin/sendsms`), with delivery reports
    /// through `dlr-url`.
    Kannel {
        /// The smsbox's base URL, e.g. `http://127.0.0.1:13013`.
        url: String,
        username: String,
        password: String,
        /// The sender when the attempt names none.
        from: Option<String>,
        /// Route through this SMSC (`smsc` parameter).
        smsc: Option<String>,
    },
    /// An SMTP server (a relay or a submission service) for e-mail. Its
    /// bounces are posted to the provider's `bounce_url`.
    Smtp {
        /// The server's host name (TLS checks its certificate against it).
        host: String,
        /// By default the mode's usual one: 25, 587 (STARTTLS) or 465.
        #[schema(minimum = 1, maximum = 65535)]
        port: Option<u16>,
        #[serde(default)]
        tls: SmtpTls,
        /// With `password`, to sign in (AUTH PLAIN or LOGIN).
        username: Option<String>,
        password: Option<String>,
        /// The From of every e-mail, `Shop <shop@example.com>` or an
        /// address; an attempt's sender replaces it.
        from: String,
        /// Where replies go, when not to `from`.
        reply_to: Option<String>,
    },
}

impl ProviderConfig {
    /// The kind, as it appears in callback URLs.
    pub fn kind_name(&self) -> &'static str {
        match self {
            ProviderConfig::Console { .. } => "console",
            ProviderConfig::Twilio { .. } => "twilio",
            ProviderConfig::Kannel { .. } => "kannel",
            ProviderConfig::Bsg { .. } => "bsg",
            ProviderConfig::Smtp { .. } => "smtp",
        }
    }

    /// What is wrong with the definition, beyond its shape (an SMTP
    /// provider's addresses and host).
    pub fn check(&self) -> Result<(), String> {
        self.smtp().map_or(Ok(()), |s| s.check())
    }

    /// An SMTP provider's settings; none for other kinds.
    pub fn smtp(&self) -> Option<smtp::Settings<'_>> {
        match self {
            ProviderConfig::Smtp {
                host,
                port,
                tls,
                username,
                password,
                from,
                reply_to,
            } => Some(smtp::Settings {
                host,
                port: *port,
                tls: *tls,
                username: username.as_deref(),
                password: password.as_deref(),
                from,
                reply_to: reply_to.as_deref(),
            }),
            _ => None,
        }
    }

    /// The provider reports failures only (an SMTP server's bounces): an
    /// attempt no report failed within its report timeout was delivered.
    pub fn reports_only_failures(&self) -> bool {
        matches!(self, ProviderConfig::Smtp { .. })
    }

    /// The configuration without secrets, for listing.
    pub fn redacted(&self) -> serde_json::Value {
        match self {
            ProviderConfig::Console { report, channels } => {
                serde_json::json!({ "kind": "console", "report": report, "channels": channels })
            }
            ProviderConfig::Twilio {
                account_sid,
                from,
                base_url,
                ..
            } => {
                serde_json::json!({ "kind": "twilio", "account_sid": account_sid, "from": from, "base_url": base_url, "auth_token": "***" })
            }
            ProviderConfig::Kannel {
                url,
                username,
                from,
                smsc,
                ..
            } => {
                serde_json::json!({ "kind": "kannel", "url": url, "username": username, "from": from, "smsc": smsc, "password": "***" })
            }
            ProviderConfig::Bsg { base_url, .. } => {
                serde_json::json!({ "kind": "bsg", "base_url": base_url, "api_key": "***" })
            }
            ProviderConfig::Smtp { .. } => match self.smtp() {
                Some(s) => {
                    serde_json::json!({ "kind": "smtp", "host": s.host, "port": s.port, "tls": s.tls,
                    "username": s.username, "password": s.password.map(|_| "***"), "from": s.from, "reply_to": s.reply_to })
                }
                None => serde_json::json!({ "kind": "smtp" }),
            },
        }
    }

    /// Whether Engage asks the provider for the status (no callbacks).
    pub fn polled(&self) -> bool {
        matches!(self, ProviderConfig::Bsg { .. })
    }
}

/// What a provider answered to a send.
pub struct Sent {
    pub provider_id: String,
    pub status: Status,
}

/// Why a send failed.
pub enum SendError {
    /// Worth retrying: the provider is down, slow or overloaded.
    Transient(String),
    /// Not worth retrying with this provider: fail over.
    Permanent(String),
    /// The recipient's address was refused (an SMTP 5xx for the mailbox):
    /// a hard bounce, counted against the address, then fail over.
    Bounced {
        why: String,
        /// The enhanced status code, e.g. `5.1.1`.
        status: Option<String>,
    },
}

/// A stored provider, its secrets opened.
fn unseal(sealer: &Sealer, raw: &[u8]) -> Result<ProviderConfig, StoreError> {
    let plain = sealer.open(raw)?;
    serde_json::from_slice(&plain).map_err(|source| StoreError::Corrupt {
        table: PROVIDERS.to_string(),
        source,
    })
}

/// Provider `name` of `tenant`; `console` exists unless redefined.
pub fn config(
    src: &impl Reader,
    tenant: &str,
    name: &str,
    sealer: &Sealer,
) -> Result<Option<ProviderConfig>, StoreError> {
    let raw = src.get_raw(PROVIDERS, &key(&[tenant, name]))?;
    match raw.map(|r| unseal(sealer, &r)).transpose()? {
        Some(c) => Ok(Some(c)),
        None if name == "console" => Ok(Some(ProviderConfig::Console {
            report: None,
            channels: Vec::new(),
        })),
        None => Ok(None),
    }
}

/// Define (or replace) provider `name`.
pub fn put(
    tx: &mut Tx,
    tenant: &str,
    name: &str,
    c: &ProviderConfig,
    limits: &Limits,
    sealer: &Sealer,
) -> Result<(), StoreError> {
    tx.put(LIMITS, &key(&[tenant, name]), limits)?;
    let plain = serde_json::to_vec(c).map_err(|source| StoreError::Corrupt {
        table: PROVIDERS.to_string(),
        source,
    })?;
    // Credentials are stored sealed, never in clear.
    tx.put_raw(PROVIDERS, &key(&[tenant, name]), &sealer.seal(&plain))
}

/// Seal every provider record still stored in clear (written before
/// credentials were sealed). Runs at start-up; returns how many it sealed.
pub async fn seal_stored(
    store: &engage_store::Store,
    sealer: &Sealer,
) -> Result<usize, StoreError> {
    let mut sealed = 0;
    let mut after: Option<String> = None;
    loop {
        let (s, a) = (sealer.clone(), after.clone());
        let (n, last) = store
            .write(move |tx| {
                let page = tx.scan_raw(PROVIDERS, "", a.as_deref(), 200, false)?;
                let mut n = 0;
                for (k, raw) in &page {
                    if !Sealer::is_sealed(raw) {
                        tx.put_raw(PROVIDERS, k, &s.seal(raw))?;
                        n += 1;
                    }
                }
                let last = (page.len() == 200).then(|| page.last().map(|(k, _)| k.clone()));
                Ok::<_, StoreError>((n, last.flatten()))
            })
            .await?;
        sealed += n;
        match last {
            Some(k) => after = Some(k),
            None => return Ok(sealed),
        }
    }
}

/// The tenant's providers, by name (at most 1,000).
pub fn list(
    src: &impl Reader,
    tenant: &str,
    sealer: &Sealer,
) -> Result<Vec<(String, ProviderConfig)>, StoreError> {
    let p = prefix(&[tenant]);
    src.scan_raw(PROVIDERS, &p, None, 1000, false)?
        .into_iter()
        .map(|(k, raw)| Ok((k[p.len()..].to_owned(), unseal(sealer, &raw)?)))
        .collect()
}

/// One attempt on its way out.
pub struct Outbound<'a> {
    /// Engage's message id, carried to the provider where it allows, so a
    /// duplicate after a crash can be traced.
    pub id: &'a str,
    pub to: &'a str,
    pub channel: &'a str,
    pub from: Option<&'a str>,
    pub body: &'a str,
    /// Where the provider sends delivery reports.
    pub callback: &'a str,
    /// How long the message stays worth delivering, in seconds.
    pub valid_for_s: i64,
    /// The tenant and the provider's name (an SMTP transport is kept per
    /// provider).
    pub tenant: &'a str,
    pub provider: &'a str,
    /// This host's share of the provider's sends in flight (the most
    /// connections an SMTP transport keeps).
    pub max_in_flight: u32,
    /// An e-mail's subject and HTML.
    pub subject: Option<&'a str>,
    pub html: Option<&'a str>,
    /// A marketing e-mail's unsubscribe link.
    pub unsubscribe: Option<&'a str>,
}

/// Twilio's longest `ValidityPeriod`, in seconds.
pub const TWILIO_MAX_VALIDITY_S: i64 = 36_000;

/// Send one attempt.
pub async fn send(
    http: &reqwest::Client,
    smtp: &smtp::Transports,
    c: &ProviderConfig,
    out: &Outbound<'_>,
) -> Result<Sent, SendError> {
    match c {
        ProviderConfig::Smtp { .. } => {
            smtp.send(out.tenant, out.provider, c, out.max_in_flight, out)
                .await
        }
        ProviderConfig::Console { report, channels } => {
            let applies = channels.is_empty() || channels.iter().any(|c| c == out.channel);
            let status = report.filter(|_| applies).unwrap_or(Status::Delivered);
            tracing::info!(
                id = out.id,
                to = out.to,
                channel = out.channel,
                from = out.from,
                body = out.body,
                status = status.as_str(),
                "console provider"
            );
            Ok(Sent {
                provider_id: format!("console-{}-{}", out.channel, out.id),
                status,
            })
        }
        ProviderConfig::Twilio {
            account_sid,
            auth_token,
            from: default_from,
            base_url,
        } => {
            if out.channel != "sms" {
                return Err(SendError::Permanent(format!(
                    "this Twilio provider sends SMS, not {}",
                    out.channel
                )));
            }
            let Some(from) = out.from.or(default_from.as_deref()) else {
                return Err(SendError::Permanent("no sender (From) for Twilio".into()));
            };
            let url = format!(
                "{}/2010-04-01/Accounts/{account_sid}/Messages.json",
                base_url
                    .as_deref()
                    .unwrap_or(TWILIO_BASE_URL)
                    .trim_end_matches('/')
            );
            let resp = http
                .post(url)
                .basic_auth(account_sid, Some(auth_token))
                .form(&[
                    ("To", out.to),
                    ("From", from),
                    ("Body", out.body),
                    ("StatusCallback", out.callback),
                    (
                        "ValidityPeriod",
                        &out.valid_for_s.clamp(1, TWILIO_MAX_VALIDITY_S).to_string(),
                    ),
                ])
                .send()
                .await
                .map_err(|e| unreached("twilio", &e))?;
            let status = resp.status();
            let v: serde_json::Value = resp.json().await.unwrap_or_default();
            if status.is_server_error() || status.as_u16() == 429 {
                return Err(SendError::Transient(format!("twilio answered {status}")));
            }
            if !status.is_success() {
                return Err(SendError::Permanent(format!(
                    "twilio answered {status}: {} {}",
                    v["code"], v["message"]
                )));
            }
            let sid = v["sid"].as_str().unwrap_or_default();
            if sid.is_empty() {
                return Err(SendError::Transient("twilio answered without a sid".into()));
            }
            Ok(Sent {
                provider_id: sid.to_ascii_lowercase(),
                status: twilio_status(v["status"].as_str().unwrap_or("queued")),
            })
        }
        ProviderConfig::Bsg { api_key, base_url } => {
            bsg_send(
                http,
                api_key,
                base_url.as_deref().unwrap_or(BSG_BASE_URL),
                out,
            )
            .await
        }
        ProviderConfig::Kannel {
            url,
            username,
            password,
            from,
            smsc,
        } => {
            kannel_send(
                http,
                (url, username, password, from.as_deref(), smsc.as_deref()),
                out,
            )
            .await
        }
    }
}

/// Send through Kannel's smsbox. Kannel answers before the SMSC does and
/// gives no id, so Engage's message id is the provider id; the `dlr-url`
/// carries it with a signature only Engage can make.
async fn kannel_send(
    http: &reqwest::Client,
    (url, username, password, default_from, smsc): (&str, &str, &str, Option<&str>, Option<&str>),
    out: &Outbound<'_>,
) -> Result<Sent, SendError> {
    if out.channel != "sms" {
        return Err(SendError::Permanent(format!(
            "Kannel sends SMS, not {}",
            out.channel
        )));
    }
    let ucs2 = super::segments::count(out.body).encoding == super::segments::Encoding::Ucs2;
    let dlr_url = format!(
        "{}&type=%d&reply=%A&sig={}",
        out.callback,
        kannel_signature(password, out.id)
    );
    // Kannel's validity is in minutes.
    let validity_min = ((out.valid_for_s + 59) / 60).max(1).to_string();
    let mut query: Vec<(&str, &str)> = vec![
        ("validity", &validity_min),
        ("username", username),
        ("password", password),
        ("to", out.to),
        ("text", out.body),
        ("charset", "UTF-8"),
        ("coding", if ucs2 { "2" } else { "0" }),
        ("dlr-mask", "31"),
        ("dlr-url", &dlr_url),
    ];
    if let Some(from) = out.from.or(default_from) {
        query.push(("from", from));
    }
    if let Some(smsc) = smsc {
        query.push(("smsc", smsc));
    }
    let resp = http
        .get(format!("{}/cgi-bin/sendsms", url.trim_end_matches('/')))
        .query(&query)
        .send()
        .await
        .map_err(|e| unreached("kannel", &e))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if status.is_server_error() {
        return Err(SendError::Transient(format!(
            "kannel answered {status}: {}",
            text.trim()
        )));
    }
    if !status.is_success() {
        return Err(SendError::Permanent(format!(
            "kannel answered {status}: {}",
            text.trim()
        )));
    }
    Ok(Sent {
        provider_id: out.id.to_ascii_lowercase(),
        status: Status::Queued,
    })
}

/// The signature in a Kannel `dlr-url`: hex HMAC-SHA1 of the message id,
/// keyed by the provider's password.
pub fn kannel_signature(password: &str, message_id: &str) -> String {
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(password.as_bytes()) else {
        return String::new();
    };
    mac.update(message_id.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The signature in a Kannel sms-service `get-url` for inbound SMS:
/// [`kannel_signature`] of the fixed text `inbound`.
pub fn kannel_inbound_signature(password: &str) -> String {
    kannel_signature(password, "inbound")
}

/// A Kannel DLR type (`%d`) as Engage's status.
pub fn kannel_status(dlr_type: u32) -> Status {
    match dlr_type {
        1 => Status::Delivered,
        2 => Status::Undeliverable,
        4 => Status::Queued,
        8 => Status::Sent,
        16 => Status::Rejected,
        _ => Status::Unknown,
    }
}

/// Create a Viber message at BSG. The BSG `reference` is Engage's message
/// id, so a send repeated after a crash is refused by BSG (error 43) and
/// found again by its reference instead of going out twice.
async fn bsg_send(
    http: &reqwest::Client,
    api_key: &str,
    base: &str,
    out: &Outbound<'_>,
) -> Result<Sent, SendError> {
    if out.channel != "viber" {
        return Err(SendError::Permanent(format!(
            "this BSG provider sends Viber, not {}",
            out.channel
        )));
    }
    let base = base.trim_end_matches('/');
    let body = serde_json::json!({
        "validity": ((out.valid_for_s + 3599) / 3600).clamp(1, 24).to_string(),
        "messages": [{
            "to": [{ "msisdn": out.to.trim_start_matches('+'), "reference": out.id }],
            "text": out.body,
            "alpha_name": out.from,
        }],
    });
    let resp = http
        .post(format!("{base}/viber/create"))
        .header("X-API-KEY", api_key)
        .json(&body)
        .send()
        .await
        .map_err(|e| unreached("bsg", &e))?;
    let status = resp.status();
    let v: serde_json::Value = resp.json().await.unwrap_or_default();
    if status.is_server_error() || status.as_u16() == 429 {
        return Err(SendError::Transient(format!("bsg answered {status}")));
    }
    let r = &v["result"][0];
    let code = r["error"].as_i64().or(v["error"].as_i64()).unwrap_or(-1);
    let id = match code {
        0 => r["id"].as_str().map(str::to_owned),
        43 => {
            // Sent before (a crash between the send and its record).
            let found = http
                .get(format!("{base}/viber/reference/{}", out.id))
                .header("X-API-KEY", api_key)
                .send()
                .await
                .map_err(|e| unreached("bsg", &e))?;
            let f: serde_json::Value = found.json().await.unwrap_or_default();
            f["id"].as_str().map(str::to_owned)
        }
        _ => {
            let why = r["errorDescription"]
                .as_str()
                .or(v["errorDescription"].as_str());
            return Err(SendError::Permanent(format!(
                "bsg error {code}: {}",
                why.unwrap_or("no description")
            )));
        }
    };
    let id = id.ok_or_else(|| SendError::Transient("bsg answered without an id".into()))?;
    Ok(Sent {
        provider_id: id.to_ascii_lowercase(),
        status: Status::Queued,
    })
}

/// Ask BSG for the status of its message `id`; None when it cannot say now.
pub async fn bsg_status(http: &reqwest::Client, c: &ProviderConfig, id: &str) -> Option<Status> {
    let ProviderConfig::Bsg { api_key, base_url } = c else {
        return None;
    };
    let base = base_url
        .as_deref()
        .unwrap_or(BSG_BASE_URL)
        .trim_end_matches('/');
    let v: serde_json::Value = http
        .get(format!("{base}/viber/{id}"))
        .header("X-API-KEY", api_key)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some(match v["status"].as_str()? {
        "scheduled" => Status::Queued,
        "sent" => Status::Sent,
        "delivered" => Status::Delivered,
        "read" => Status::Read,
        "expired" => Status::Expired,
        "undeliverable" => Status::Undeliverable,
        "rejected" => Status::Rejected,
        _ => Status::Unknown,
    })
}

/// Twilio's message status as Engage's.
pub fn twilio_status(s: &str) -> Status {
    match s {
        "accepted" | "queued" | "scheduled" | "sending" => Status::Queued,
        "sent" => Status::Sent,
        "delivered" => Status::Delivered,
        "read" => Status::Read,
        "undelivered" => Status::Undeliverable,
        "failed" | "canceled" => Status::Rejected,
        _ => Status::Sent,
    }
}

/// Twilio's request signature: base64 of HMAC-SHA1, keyed by the auth
/// token, over the full URL followed by every POST parameter's name and
/// value, sorted by name.
pub fn twilio_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut data = url.to_owned();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes()) else {
        return String::new();
    };
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn credentials_stored_in_clear_are_sealed_at_start() {
        let path =
            std::env::temp_dir().join(format!("engage-seal-{}", engage_store::ids::random_hex(6)));
        let dir = engage_store::files::open_data_dir(&path).expect("dir");
        let store = engage_store::Store::open(&dir).expect("store");
        let plain = br#"{"kind":"bsg","api_key":"k-CLEAR-1","base_url":null}"#.to_vec();
        let p = plain.clone();
        store
            .write(move |tx| tx.put_raw(PROVIDERS, &key(&["t", "bsg"]), &p))
            .await
            .expect("write");
        let sealer = Sealer::new([3; 32]);
        assert_eq!(seal_stored(&store, &sealer).await.expect("seal"), 1);
        assert_eq!(seal_stored(&store, &sealer).await.expect("again"), 0);
        let snap = store.read().expect("read");
        let raw = snap
            .get_raw(PROVIDERS, &key(&["t", "bsg"]))
            .expect("get")
            .expect("kept");
        assert!(Sealer::is_sealed(&raw));
        let opened = config(&snap, "t", "bsg", &sealer).expect("opens");
        assert!(
            matches!(opened, Some(ProviderConfig::Bsg { api_key, .. }) if api_key == "k-CLEAR-1")
        );
        assert!(
            config(&snap, "t", "bsg", &Sealer::new([4; 32])).is_err(),
            "another key fails"
        );
    }

    #[test]
    fn twilio_signature_matches_twilios_documented_example() {
        // The example from Twilio's webhook security documentation.
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            twilio_signature(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &params
            ),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
    }
}
