//! Form parameters the way PHP-era APIs take them: from the query string
//! and the body (URL-encoded or `multipart/form-data`), the body winning.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;

use super::AppState;

/// Every parameter of `req`; an error names why the body could not be read.
pub async fn read(req: Request, state: &AppState) -> Result<BTreeMap<String, String>, String> {
    let mut map: BTreeMap<String, String> = req
        .uri()
        .query()
        .map(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).unwrap_or_default())
        .unwrap_or_default()
        .into_iter()
        .collect();
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = Bytes::from_request(req, state)
        .await
        .map_err(|e| format!("could not read the body: {e}"))?;
    if let Some(boundary) = content_type
        .strip_prefix("multipart/form-data")
        .and_then(|rest| rest.split("boundary=").nth(1))
    {
        let boundary = boundary
            .split(';')
            .next()
            .unwrap_or_default()
            .trim_matches('"');
        map.extend(multipart_fields(&body, boundary));
    } else if !body.is_empty() {
        map.extend(
            serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body).unwrap_or_default(),
        );
    }
    Ok(map)
}

/// The text fields of a `multipart/form-data` body (file parts are read as
/// text too).
fn multipart_fields(body: &[u8], boundary: &str) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    let delimiter = format!("--{boundary}");
    let mut out = Vec::new();
    for part in text.split(delimiter.as_str()).skip(1) {
        if part.starts_with("--") {
            break;
        }
        let part = part.strip_prefix("\r\n").unwrap_or(part);
        let Some((head, value)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let name = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition"))
            .and_then(|l| l.split("name=\"").nth(1))
            .and_then(|n| n.split('"').next());
        if let Some(name) = name {
            let value = value.strip_suffix("\r\n").unwrap_or(value);
            out.push((name.to_owned(), value.to_owned()));
        }
    }
    out
}

/// Text escaped for XML content and attribute values.
/// Text for an XML 1.0 element or attribute value: markup escaped, and
/// every character XML 1.0 cannot carry at all (C0 controls other than tab,
/// newline and carriage return; U+FFFE, U+FFFF) replaced by U+FFFD, so a
/// stored control character can never make a whole answer unparseable.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_text_never_carries_what_xml_forbids() {
        assert_eq!(escape("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
        assert_eq!(
            escape("x\u{0}y\u{1b}[31m\tz\n"),
            "x\u{FFFD}y\u{FFFD}[31m\tz\n"
        );
        assert_eq!(escape("\u{FFFF}\u{202E}ok"), "\u{FFFD}\u{202E}ok");
    }

    #[test]
    fn multipart_fields_as_curl_sends_them() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"secret_key\"\r\n\r\ncb8d\r\n--XyZ\r\nContent-Disposition: form-data; name=\"custom:item_name\"\r\n\r\nitem 1\r\nline 2\r\n--XyZ--\r\n";
        assert_eq!(
            multipart_fields(body.as_bytes(), "XyZ"),
            vec![
                ("secret_key".to_owned(), "cb8d".to_owned()),
                ("custom:item_name".to_owned(), "item 1\r\nline 2".to_owned())
            ]
        );
    }
}
