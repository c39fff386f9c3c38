//! Reading what a mail system sends back about an e-mail: a delivery
//! status notification (RFC 3464, `multipart/report; report-type=
//! delivery-status`, what Postfix, Exim, Sendmail, Exchange and the large
//! mailbox providers send for a bounce) or a complaint in the Abuse
//! Reporting Format (RFC 5965, `message/feedback-report`, what a feedback
//! loop sends when a recipient marks a message as spam).
//!
//! Both usually carry the original message or its headers, whose
//! `Message-ID` Engage made (`<message id@sender domain>`): that is how a
//! report finds the message it is about.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use mail_parser::{MessageParser, MessagePart, MimeHeaders, PartType};

use engage_store::secrets::Sealer;

/// The signature's purpose (see [`Sealer::sign`]).
const PURPOSE: &str = "smtp-bounce-webhook";

/// The `sig` of provider `provider`'s bounce webhook URL.
pub fn webhook_signature(sealer: &Sealer, tenant: &str, provider: &str) -> String {
    let data = serde_json::json!([tenant, provider]).to_string();
    B64.encode(&sealer.sign(PURPOSE, data.as_bytes())[..16])
}

/// Whether `sig` is [`webhook_signature`]'s.
pub fn webhook_signature_ok(sealer: &Sealer, tenant: &str, provider: &str, sig: &str) -> bool {
    let data = serde_json::json!([tenant, provider]).to_string();
    B64.decode(sig)
        .is_ok_and(|s| s.len() == 16 && sealer.verify(PURPOSE, data.as_bytes(), &s))
}

/// The most recipients one report is read for.
pub const MAX_REPORTS: usize = 100;

/// What a report says happened to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The receiving system gave up for good (a 5.x.x status).
    HardBounce,
    /// It gave up, for a reason that may pass (a 4.x.x status with
    /// `Action: failed`): counted as a failed delivery, never a strike.
    SoftBounce,
    /// The recipient reported the message as spam.
    Complaint,
}

/// One recipient's fate in a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub event: Event,
    /// Lower-case; none when the report does not say.
    pub recipient: Option<String>,
    /// The original message's `Message-ID`, without angle brackets, in
    /// lower case; none when the report does not carry it.
    pub message_id: Option<String>,
    /// The enhanced status code, e.g. `5.1.1`.
    pub status: Option<String>,
    /// What the receiving server said (`Diagnostic-Code`), or the
    /// complaint's feedback type.
    pub diagnostic: String,
}

/// Why a body is not a report Engage can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the body is not an e-mail message (RFC 5322 headers, a blank line, a body)")]
    NotAMessage,
    #[error(
        "the message has no delivery-status part (RFC 3464) and no feedback-report part (RFC 5965): it is not a bounce or a complaint"
    )]
    NoReport,
}

/// The recipients a bounce or complaint message reports on.
pub fn parse(raw: &[u8]) -> Result<Vec<Report>, ParseError> {
    let parser = MessageParser::default();
    let message = parser.parse(raw).ok_or(ParseError::NotAMessage)?;
    let original = original_message_id(&parser, &message);
    let mut reports = Vec::new();
    let mut any = false;
    for part in &message.parts {
        if is(part, "message", "delivery-status") || is(part, "message", "global-delivery-status") {
            any = true;
            let text = String::from_utf8_lossy(part.contents()).into_owned();
            for block in blocks(&text).into_iter().skip(1) {
                if let Some(r) = recipient_report(&block, original.clone()) {
                    reports.push(r);
                }
            }
        } else if is(part, "message", "feedback-report") {
            any = true;
            let text = String::from_utf8_lossy(part.contents()).into_owned();
            let fields = blocks(&text).into_iter().flatten().collect::<Vec<_>>();
            let kind = field(&fields, "feedback-type").unwrap_or("abuse");
            let recipient = field(&fields, "original-rcpt-to")
                .map(address_of)
                .or_else(|| original_recipient(&message));
            reports.push(Report {
                event: Event::Complaint,
                recipient,
                message_id: original.clone(),
                status: None,
                diagnostic: format!("complaint: {kind}"),
            });
        }
    }
    if !any {
        return Err(ParseError::NoReport);
    }
    // One report is about one message; past a few recipients it is not a
    // bounce a sender gets, and each costs work in one write.
    reports.truncate(MAX_REPORTS);
    Ok(reports)
}

/// One per-recipient block of a delivery-status part, when it reports a
/// failure (`delayed`, `delivered`, `relayed` and `expanded` are not).
fn recipient_report(fields: &[(String, String)], message_id: Option<String>) -> Option<Report> {
    let action = field(fields, "action")?.to_ascii_lowercase();
    if action != "failed" {
        return None;
    }
    let status = field(fields, "status")
        .and_then(|s| s.split_whitespace().next())
        .map(str::to_owned);
    let event = match status.as_deref() {
        Some(s) if s.starts_with('4') => Event::SoftBounce,
        _ => Event::HardBounce,
    };
    let recipient = field(fields, "final-recipient")
        .or_else(|| field(fields, "original-recipient"))
        .map(address_of);
    let diagnostic = field(fields, "diagnostic-code")
        .map(|d| d.split_once(';').map_or(d, |(_, rest)| rest).trim())
        .unwrap_or("")
        .chars()
        .take(500)
        .collect();
    Some(Report {
        event,
        recipient,
        message_id,
        status,
        diagnostic,
    })
}

/// `rfc822; Someone@Example.com` (or a bare address) → lower case, no type.
fn address_of(value: &str) -> String {
    let v = value.split_once(';').map_or(value, |(_, a)| a);
    v.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_lowercase()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Header-style fields, unfolded, in groups separated by blank lines.
fn blocks(text: &str) -> Vec<Vec<(String, String)>> {
    let mut out: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if out.last().is_some_and(|b| !b.is_empty()) {
                out.push(Vec::new());
            }
            continue;
        }
        let block = out.last_mut().expect("never empty");
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = block.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            block.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    out.retain(|b| !b.is_empty());
    out
}

/// Whether `part` is of MIME type `ctype`/`subtype`.
fn is(part: &MessagePart<'_>, ctype: &str, subtype: &str) -> bool {
    part.content_type().is_some_and(|c| {
        c.ctype().eq_ignore_ascii_case(ctype)
            && c.subtype().is_some_and(|s| s.eq_ignore_ascii_case(subtype))
    })
}

/// The returned message's `Message-ID`: from an attached `message/rfc822`
/// (nested message), or a `text/rfc822-headers` part.
fn original_message_id(
    parser: &MessageParser,
    message: &mail_parser::Message<'_>,
) -> Option<String> {
    let clean = |id: &str| id.trim().trim_matches(['<', '>']).to_ascii_lowercase();
    for part in &message.parts {
        match &part.body {
            PartType::Message(nested) => {
                if let Some(id) = nested.message_id() {
                    return Some(clean(id));
                }
            }
            _ if is(part, "text", "rfc822-headers") => {
                if let Some(id) = parser
                    .parse_headers(part.contents())
                    .and_then(|h| h.message_id().map(clean))
                {
                    return Some(id);
                }
            }
            _ => {}
        }
    }
    None
}

/// The `To` of the returned message (a complaint without `Original-Rcpt-To`).
fn original_recipient(message: &mail_parser::Message<'_>) -> Option<String> {
    message.parts.iter().find_map(|part| match &part.body {
        PartType::Message(nested) => nested.to()?.first()?.address().map(str::to_lowercase),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bounce as Postfix writes one.
    const POSTFIX_BOUNCE: &str = "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r
To: shop@example.com\r
Subject: Undelivered Mail Returned to Sender\r
MIME-Version: 1.0\r
Content-Type: multipart/report; report-type=delivery-status;\r
\tboundary=\"B1\"\r
\r
--B1\r
Content-Type: text/plain\r
\r
This is the mail system at host mx.example.net. I'm sorry to have to inform you...\r
\r
--B1\r
Content-Type: message/delivery-status\r
\r
Reporting-MTA: dns; mx.example.net\r
Arrival-Date: Mon,  7 Dec 2026 10:00:00 +0000 (UTC)\r
\r
Final-Recipient: rfc822; Gone@Example.ORG\r
Original-Recipient: rfc822;gone@example.org\r
Action: failed\r
Status: 5.1.1\r
Remote-MTA: dns; mail.example.org\r
Diagnostic-Code: smtp; 550 5.1.1 <gone@example.org>: Recipient address\r
    rejected: User unknown in virtual mailbox table\r
\r
Final-Recipient: rfc822; later@example.org\r
Action: delayed\r
Status: 4.4.1\r
\r
--B1\r
Content-Type: text/rfc822-headers\r
\r
From: Shop <shop@example.com>\r
To: gone@example.org\r
Message-ID: <ABC123@example.com>\r
Subject: Your code\r
\r
--B1--\r
";

    #[test]
    fn a_postfix_bounce_names_the_recipient_the_status_and_the_message() {
        let reports = parse(POSTFIX_BOUNCE.as_bytes()).expect("a report");
        assert_eq!(
            reports,
            vec![Report {
                event: Event::HardBounce,
                recipient: Some("gone@example.org".into()),
                message_id: Some("abc123@example.com".into()),
                status: Some("5.1.1".into()),
                diagnostic: "550 5.1.1 <gone@example.org>: Recipient address rejected: User unknown in virtual mailbox table".into(),
            }],
            "the delayed recipient is not a bounce"
        );
    }

    #[test]
    fn a_complaint_names_the_recipient_from_the_returned_message() {
        let arf = "From: fbl@isp.example\r
To: abuse@example.com\r
Subject: complaint\r
MIME-Version: 1.0\r
Content-Type: multipart/report; report-type=feedback-report; boundary=\"F\"\r
\r
--F\r
Content-Type: text/plain\r
\r
A complaint.\r
--F\r
Content-Type: message/feedback-report\r
\r
Feedback-Type: abuse\r
User-Agent: SomeGenerator/1.0\r
Version: 1\r
\r
--F\r
Content-Type: message/rfc822\r
\r
From: Shop <shop@example.com>\r
To: Reader@Example.net\r
Message-ID: <m42@example.com>\r
Subject: Sale\r
\r
Buy now.\r
--F--\r
";
        let reports = parse(arf.as_bytes()).expect("a report");
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].event, Event::Complaint);
        assert_eq!(reports[0].recipient.as_deref(), Some("reader@example.net"));
        assert_eq!(reports[0].message_id.as_deref(), Some("m42@example.com"));
    }

    #[test]
    fn what_is_not_a_report_says_so() {
        assert_eq!(
            parse(b"From: a@b.c\r\nSubject: hi\r\n\r\nhello\r\n"),
            Err(ParseError::NoReport)
        );
        assert_eq!(parse(b""), Err(ParseError::NotAMessage));
    }
}
