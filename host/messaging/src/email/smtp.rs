//! Sending through an SMTP server (a relay, or a submission service such
//! as a mailbox provider's), with lettre's tokio transport.
//!
//! One transport, with its pool of connections, is kept per (tenant,
//! provider) and reused for every e-mail (`max_in_flight` connections at
//! most); a changed definition gets a new one. The SMTP server's answer is
//! all there is at send time: 250 means it took the message (the attempt is
//! `sent`); a 5xx for the recipient's address is a hard bounce; a 4xx, a
//! timeout or a broken connection is transient and retried. Bounces that
//! come later arrive as reports at the bounce webhook
//! ([`super::bounces`]); an attempt no bounce reports within its report
//! timeout is counted delivered.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::{Deserialize, Serialize};

use super::mime::{self, Email};
use crate::Status;
use crate::providers::{Outbound, ProviderConfig, SendError, Sent};

/// How the connection to the SMTP server is secured.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain text (a relay on the same host or network only).
    None,
    /// Upgraded with STARTTLS, which the server must offer (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Implicit,
}

impl SmtpTls {
    /// The usual port for the mode.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Implicit => 465,
        }
    }
}

/// The transports in use, one per (tenant, provider).
pub struct Transports {
    timeout: Duration,
    /// Extra roots to trust (`[messaging] ca_file`), PEM.
    roots: Option<Vec<u8>>,
    cache: Mutex<HashMap<(String, String), (u64, Transport)>>,
}

/// One provider's transport and its pool.
type Transport = Arc<AsyncSmtpTransport<Tokio1Executor>>;

/// What an SMTP provider sends with, checked when it is defined.
pub struct Settings<'a> {
    pub host: &'a str,
    pub port: Option<u16>,
    pub tls: SmtpTls,
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
    pub from: &'a str,
    pub reply_to: Option<&'a str>,
}

impl Settings<'_> {
    /// Whether an e-mail can be sent with these: what is wrong otherwise.
    pub fn check(&self) -> Result<(), String> {
        let host_ok = !self.host.is_empty()
            && self.host.len() <= 253
            && self.host.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
            });
        if !host_ok {
            return Err(format!(
                "`host` is the SMTP server's name or address, not `{}`",
                self.host.chars().take(64).collect::<String>()
            ));
        }
        if self.port == Some(0) {
            return Err("`port` is 1 to 65535".into());
        }
        if self.username.is_some() != self.password.is_some() {
            return Err("`username` and `password` go together".into());
        }
        mailbox(self.from, "from")?;
        if let Some(r) = self.reply_to {
            mailbox(r, "reply_to")?;
        }
        Ok(())
    }
}

/// `Name <address>` or a bare address.
pub fn mailbox(s: &str, field: &str) -> Result<Mailbox, String> {
    s.parse::<Mailbox>().map_err(|e| {
        format!(
            "`{field}` is an address, or a name and an address like `Shop <shop@example.com>`: {e}"
        )
    })
}

impl Transports {
    pub fn new(timeout: Duration, roots: Option<Vec<u8>>) -> Transports {
        Transports {
            timeout,
            roots,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The transport for provider `name` of `tenant`, made (or remade, when
    /// its definition changed) on first use.
    fn transport(
        &self,
        tenant: &str,
        name: &str,
        s: &Settings<'_>,
        max_in_flight: u32,
    ) -> Result<Transport, SendError> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (s.host, s.port, s.tls, s.username, s.password, max_in_flight).hash(&mut h);
        let print = h.finish();
        let k = (tenant.to_owned(), name.to_owned());
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((p, t)) = cache.get(&k)
            && *p == print
        {
            return Ok(t.clone());
        }
        let tls = match s.tls {
            SmtpTls::None => Tls::None,
            mode => {
                let mut params = TlsParameters::builder(s.host.to_owned());
                if let Some(pem) = &self.roots {
                    let cert = Certificate::from_pem(pem)
                        .map_err(|e| SendError::Permanent(format!("smtp: the CA file: {e}")))?;
                    params = params.add_root_certificate(cert);
                }
                let params = params
                    .build()
                    .map_err(|e| SendError::Permanent(format!("smtp: TLS for {}: {e}", s.host)))?;
                if mode == SmtpTls::Implicit {
                    Tls::Wrapper(params)
                } else {
                    Tls::Required(params)
                }
            }
        };
        let hello = s
            .from
            .parse::<Mailbox>()
            .map(|m| m.email.domain().to_owned())
            .unwrap_or_else(|_| "localhost".into());
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host)
            .port(s.port.unwrap_or(s.tls.default_port()))
            .tls(tls)
            .hello_name(ClientId::Domain(hello))
            .timeout(Some(self.timeout))
            .pool_config(
                PoolConfig::new()
                    .max_size(max_in_flight.clamp(1, 64))
                    .idle_timeout(Duration::from_secs(60)),
            );
        if let (Some(u), Some(p)) = (s.username, s.password) {
            b = b.credentials(Credentials::new(u.to_owned(), p.to_owned()));
        }
        let t = Arc::new(b.build());
        cache.insert(k, (print, t.clone()));
        Ok(t)
    }

    /// Send one e-mail attempt through provider `name`.
    pub async fn send(
        &self,
        tenant: &str,
        name: &str,
        c: &ProviderConfig,
        max_in_flight: u32,
        out: &Outbound<'_>,
    ) -> Result<Sent, SendError> {
        let Some(s) = c.smtp() else {
            return Err(SendError::Permanent("not an SMTP provider".into()));
        };
        if out.channel != "email" {
            return Err(SendError::Permanent(format!(
                "an SMTP provider sends e-mail, not {}",
                out.channel
            )));
        }
        // An attempt's sender is a whole From (`Name <address>`).
        let from = mailbox(out.from.unwrap_or(s.from), "from").map_err(SendError::Permanent)?;
        let reply_to = s
            .reply_to
            .map(|r| mailbox(r, "reply_to"))
            .transpose()
            .map_err(SendError::Permanent)?;
        let message_id = format!("{}@{}", out.id, from.email.domain()).to_ascii_lowercase();
        let email = mime::build(&Email {
            message_id: &message_id,
            from: &from,
            reply_to: reply_to.as_ref(),
            to: out.to,
            subject: out.subject.unwrap_or(""),
            text: out.body,
            html: out.html,
            unsubscribe: out.unsubscribe,
        })
        .map_err(SendError::Permanent)?;
        let transport = self.transport(tenant, name, &s, max_in_flight)?;
        match transport.send(email).await {
            Ok(_) => Ok(Sent {
                provider_id: message_id,
                status: Status::Sent,
            }),
            Err(e) => Err(classify(&e)),
        }
    }
}

/// What an SMTP failure means for the attempt.
fn classify(e: &lettre::transport::smtp::Error) -> SendError {
    let text = format!("smtp: {e}");
    if !e.is_permanent() {
        // 4xx, timeouts, refused or broken connections, TLS trouble: the
        // server or the way to it, not the address.
        return SendError::Transient(text);
    }
    let code = e.status().map(|c| c.to_string()).unwrap_or_default();
    let enhanced = enhanced_status(&text);
    // 5.1.x and 5.2.x are about the recipient's mailbox (5.1.7 and 5.1.8
    // about the sender's, which is this provider's problem); without an
    // enhanced code, 550, 551 and 553 are what a server answers to RCPT.
    let recipient = match enhanced.as_deref() {
        Some("5.1.7" | "5.1.8") => false,
        Some(s) => s.starts_with("5.1.") || s.starts_with("5.2."),
        None => matches!(code.as_str(), "550" | "551" | "553"),
    };
    if recipient {
        SendError::Bounced {
            why: text,
            status: enhanced,
        }
    } else {
        SendError::Permanent(text)
    }
}

/// The first enhanced status code (RFC 3463, `5.1.1`) in a server's words.
pub fn enhanced_status(text: &str) -> Option<String> {
    text.split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | ':' | ';' | ','))
        .find(|w| {
            let mut parts = w.split('.');
            let class = parts.next();
            let (subject, detail) = (parts.next(), parts.next());
            matches!(class, Some("2" | "4" | "5"))
                && [subject, detail].iter().all(|p| {
                    p.is_some_and(|p| {
                        !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit())
                    })
                })
                && parts.next().is_none()
        })
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enhanced_codes_are_found_in_what_servers_say() {
        assert_eq!(
            enhanced_status("smtp: permanent error (550): 5.1.1 <a@b.c>: user unknown").as_deref(),
            Some("5.1.1")
        );
        assert_eq!(enhanced_status("550 mailbox unavailable"), None);
        assert_eq!(
            enhanced_status("version 1.2.3 is 4.4.10"),
            Some("4.4.10".into())
        );
    }
}
