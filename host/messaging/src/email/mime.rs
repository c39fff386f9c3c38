//! An e-mail as it goes on the wire: RFC 5322 headers (a UTF-8 subject or
//! display name encoded per RFC 2047), a `text/plain` body, or
//! `multipart/alternative` with the HTML beside it, each part in the
//! transfer encoding its text needs (7bit, quoted-printable or base64, as
//! lettre picks it).

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};

const LIST_UNSUBSCRIBE: HeaderName = HeaderName::new_from_ascii_str("List-Unsubscribe");
const LIST_UNSUBSCRIBE_POST: HeaderName = HeaderName::new_from_ascii_str("List-Unsubscribe-Post");

/// One e-mail to one recipient.
pub struct Email<'a> {
    /// Without angle brackets: `id@domain`.
    pub message_id: &'a str,
    pub from: &'a Mailbox,
    pub reply_to: Option<&'a Mailbox>,
    pub to: &'a str,
    pub subject: &'a str,
    pub text: &'a str,
    pub html: Option<&'a str>,
    /// A marketing e-mail's unsubscribe link: in `List-Unsubscribe` with
    /// one-click (RFC 8058) and in a footer of each part.
    pub unsubscribe: Option<&'a str>,
}

/// The message, or why it cannot be made (an address lettre refuses).
pub fn build(e: &Email<'_>) -> Result<lettre::Message, String> {
    let to: Mailbox =
        e.to.parse()
            .map_err(|err| format!("`{}` cannot be a recipient: {err}", e.to))?;
    // A subject is one line: a line break in it would start a header.
    let subject: String = e
        .subject
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut b = lettre::Message::builder()
        .from(e.from.clone())
        .to(to)
        .subject(subject)
        .date_now()
        .message_id(Some(format!("<{}>", e.message_id)));
    if let Some(r) = e.reply_to {
        b = b.reply_to(r.clone());
    }
    let mut text = e.text.to_owned();
    let mut html = e.html.map(str::to_owned);
    if let Some(url) = e.unsubscribe {
        b = b
            .raw_header(HeaderValue::new(LIST_UNSUBSCRIBE, format!("<{url}>")))
            .raw_header(HeaderValue::new(
                LIST_UNSUBSCRIBE_POST,
                "List-Unsubscribe=One-Click".into(),
            ));
        text.push_str(&format!(
            "\n\n-- \nTo receive no more of these e-mails: {url}\n"
        ));
        if let Some(h) = &mut html {
            let footer = format!(
                "<p style=\"font-size:small;color:#666\"><a href=\"{}\">Unsubscribe</a> from these e-mails.</p>",
                attribute(url)
            );
            match h.to_ascii_lowercase().rfind("</body>") {
                Some(at) => h.insert_str(at, &footer),
                None => h.push_str(&footer),
            }
        }
    }
    let built = match html {
        Some(h) => b.multipart(MultiPart::alternative_plain_html(text, h)),
        None => b.singlepart(SinglePart::plain(text)),
    };
    built.map_err(|err| format!("the e-mail cannot be built: {err}"))
}

/// `s` safe inside a double-quoted HTML attribute.
fn attribute(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_is_encoded_and_the_unsubscribe_link_is_in_the_headers_and_both_parts() {
        let from: Mailbox = "Café Shop <shop@example.com>".parse().expect("mailbox");
        let m = build(&Email {
            message_id: "abc@example.com",
            from: &from,
            reply_to: None,
            to: "ann@example.org",
            subject: "Ваш код\r\nBcc: evil@example.net",
            text: "Привет, Ann",
            html: Some("<html><body><p>Привет</p></body></html>"),
            unsubscribe: Some("https://engage.example/unsubscribe/t.s"),
        })
        .expect("built");
        let wire = String::from_utf8(m.formatted()).expect("ascii on the wire");
        assert!(wire.is_ascii(), "every header and part is encoded: {wire}");
        assert!(wire.contains("Message-ID: <abc@example.com>"));
        assert!(wire.contains("List-Unsubscribe: <https://engage.example/unsubscribe/t.s>"));
        assert!(wire.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"));
        assert!(wire.contains("multipart/alternative"));
        assert!(
            !wire.contains("\r\nBcc:"),
            "a line break in the subject cannot add a header"
        );
        assert!(wire.contains("Subject: =?utf-8?"), "{wire}");
    }
}
