//! Form parameters the way PHP-era APIs take them: from the query string
//! and the body (URL-encoded or `multipart/form-data`), the body winning.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;

use super::AppState;

/// A request body that could not be read: too large, or not arrived whole
/// in time. Each API turns it into its own error format.
#[derive(Debug)]
pub struct BodyError {
    pub status: axum::http::StatusCode,
    pub message: String,
}

/// The most a request body may carry unless an endpoint says otherwise.
pub const MAX_BODY_BYTES: usize = 2 << 20;

/// The body if it fits in `limit` bytes. An oversized body is still read
/// to its end (up to a few times the limit, discarded; the connection's
/// body deadline bounds the time) so the client gets the 413 instead of a
/// connection reset from unread data.
pub async fn read_limited(body: axum::body::Body, limit: usize) -> Result<Bytes, BodyError> {
    use futures_util::StreamExt;
    let drain_cap = limit.saturating_mul(4).max(16 << 20);
    let mut stream = body.into_data_stream();
    let mut kept = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BodyError {
            status: axum::http::StatusCode::BAD_REQUEST,
            message: format!("the request body could not be read: {e}"),
        })?;
        seen = seen.saturating_add(chunk.len());
        if seen <= limit {
            kept.extend_from_slice(&chunk);
        } else if seen > drain_cap {
            break;
        }
    }
    if seen > limit {
        return Err(BodyError {
            status: axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("the request body is larger than this endpoint's {limit} bytes"),
        });
    }
    Ok(Bytes::from(kept))
}

/// The whole request body (at most [`MAX_BODY_BYTES`]) and the call its
/// `Idempotency-Key` guards, if the client sent one; a failure (or a
/// malformed key) is answered as the API's error `E`.
pub struct Body<E>(
    pub Bytes,
    pub Option<engage_store::idempotency::Call>,
    pub std::marker::PhantomData<fn() -> E>,
);

impl<S, E> FromRequest<S> for Body<E>
where
    S: Send + Sync,
    E: From<BodyError> + axum::response::IntoResponse,
{
    type Rejection = E;

    async fn from_request(req: Request, _: &S) -> Result<Self, E> {
        let key = super::mutation::key_of(req.headers()).map_err(|m| {
            E::from(BodyError {
                status: axum::http::StatusCode::BAD_REQUEST,
                message: m.to_owned(),
            })
        })?;
        let (method, uri) = (req.method().clone(), req.uri().clone());
        let body = read_limited(req.into_body(), MAX_BODY_BYTES)
            .await
            .map_err(E::from)?;
        let idem = super::mutation::call_of(key, &method, &uri, &body);
        Ok(Body(body, idem, std::marker::PhantomData))
    }
}

/// Every parameter of `req`; an error names why the body could not be read.
pub async fn read(req: Request, _state: &AppState) -> Result<BTreeMap<String, String>, String> {
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
    let body = read_limited(req.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|e| e.message)?;
    map.extend(body_fields(&content_type, &body).await);
    Ok(map)
}

/// The fields of a form body, `multipart/form-data` (as curl and PHP send
/// it) or URL-encoded (anything else).
pub async fn body_fields(content_type: &str, body: &[u8]) -> Vec<(String, String)> {
    if let Some(boundary) = content_type
        .strip_prefix("multipart/form-data")
        .and_then(|rest| rest.split("boundary=").nth(1))
    {
        let boundary = boundary
            .split(';')
            .next()
            .unwrap_or_default()
            .trim_matches('"');
        return multipart_fields(body, boundary).await;
    }
    if body.is_empty() {
        return Vec::new();
    }
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).unwrap_or_default()
}

/// The fields of a `multipart/form-data` body, in order (file parts are
/// read as text too), parsed by `multer`: quoted and `filename` parameters,
/// header case and folding as RFC 7578 has them. A body that breaks off
/// gives the fields before the break.
async fn multipart_fields(body: &[u8], boundary: &str) -> Vec<(String, String)> {
    let data = Bytes::copy_from_slice(body);
    let whole = futures_util::stream::once(async move { Ok::<_, std::convert::Infallible>(data) });
    let mut parts = multer::Multipart::new(whole, boundary);
    let mut out = Vec::new();
    while let Ok(Some(field)) = parts.next_field().await {
        let Some(name) = field.name().map(str::to_owned) else {
            continue;
        };
        match field.bytes().await {
            Ok(value) => out.push((name, String::from_utf8_lossy(&value).into_owned())),
            Err(_) => break,
        }
    }
    out
}

/// How a JSON answer becomes a vendor's XML.
#[derive(Clone, Copy, PartialEq)]
pub enum XmlStyle {
    /// PHP's array-to-XML (playSMS): list items are `<item>`; null, false
    /// and "" are empty elements (`<x/>`), true is `1`.
    Php,
    /// Playblazer's: list items are named by the list's singular
    /// (`requests` → `request`, else `item`), null is `<x></x>`, booleans
    /// `true` / `false`.
    Singular,
}

/// `v` as the element `name`, objects as child elements named by their
/// keys. A key that is not an XML name (custom attributes may be
/// anything) becomes `<attr name="…">`, so no stored key can break the
/// document.
///
/// Hand-written rather than a writer crate's: the mapping is each
/// vendor's own, and [`escape`] also replaces what XML 1.0 cannot carry
/// at all, which the writers' escaping passes through into an unparseable
/// answer.
pub fn write_xml(out: &mut String, name: &str, v: &serde_json::Value, style: XmlStyle) {
    use serde_json::Value;
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    let tag = if valid {
        name.to_owned()
    } else {
        format!("attr name=\"{}\"", escape(name))
    };
    let close = if valid { name } else { "attr" };
    let empty = matches!(v, Value::Null | Value::Bool(false))
        || matches!(v, Value::String(s) if s.is_empty());
    if style == XmlStyle::Php && empty {
        out.push_str(&format!("<{tag}/>"));
        return;
    }
    out.push_str(&format!("<{tag}>"));
    match v {
        Value::Null => {}
        Value::Bool(_) if style == XmlStyle::Php => out.push('1'), // false was empty
        Value::Bool(b) => out.push_str(&b.to_string()),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => out.push_str(&escape(s)),
        Value::Array(items) => {
            let item = match style {
                XmlStyle::Php => "item",
                XmlStyle::Singular => name
                    .strip_suffix('s')
                    .filter(|s| !s.is_empty())
                    .unwrap_or("item"),
            };
            for i in items {
                write_xml(out, item, i, style);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                write_xml(out, k, v, style);
            }
        }
    }
    out.push_str(&format!("</{close}>"));
}

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

/// `axum`'s `Path`, its rejection answered as the native API's JSON error
/// (`400 invalid_path`) instead of axum's plain text.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<S>
    for Path<T>
{
    type Rejection = crate::ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(e) => Err(crate::ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_path",
                e.body_text(),
            )),
        }
    }
}

/// `axum`'s `Query`, its rejection answered as the native API's JSON
/// error (`400 invalid_query`: an unknown parameter, a number that is not
/// one) instead of axum's plain text.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S>
    for Query<T>
{
    type Rejection = crate::ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(e) => Err(crate::ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_query",
                e.body_text(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_keys_that_are_not_names_cannot_break_the_document() {
        let v =
            serde_json::json!({ "ok": true, "no": false, "blank": "", "a b<": "x", "c d": null });
        let mut php = String::new();
        write_xml(&mut php, "r", &v, XmlStyle::Php);
        assert_eq!(
            php,
            "<r><ok>1</ok><no/><blank/><attr name=\"a b&lt;\">x</attr><attr name=\"c d\"/></r>"
        );
        let mut singular = String::new();
        write_xml(&mut singular, "r", &v, XmlStyle::Singular);
        assert_eq!(
            singular,
            "<r><ok>true</ok><no>false</no><blank></blank><attr name=\"a b&lt;\">x</attr><attr name=\"c d\"></attr></r>"
        );
    }

    #[test]
    fn xml_text_never_carries_what_xml_forbids() {
        assert_eq!(escape("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
        assert_eq!(
            escape("x\u{0}y\u{1b}[31m\tz\n"),
            "x\u{FFFD}y\u{FFFD}[31m\tz\n"
        );
        assert_eq!(escape("\u{FFFF}\u{202E}ok"), "\u{FFFD}\u{202E}ok");
    }

    #[tokio::test]
    async fn multipart_fields_as_curl_sends_them() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"secret_key\"\r\n\r\ncb8d\r\n--XyZ\r\nContent-Disposition: form-data; name=\"custom:item_name\"\r\n\r\nitem 1\r\nline 2\r\n--XyZ--\r\n";
        assert_eq!(
            multipart_fields(body.as_bytes(), "XyZ").await,
            vec![
                ("secret_key".to_owned(), "cb8d".to_owned()),
                ("custom:item_name".to_owned(), "item 1\r\nline 2".to_owned())
            ]
        );
    }

    #[tokio::test]
    async fn a_file_part_is_named_by_name_not_filename() {
        let body = "--b\r\nContent-Disposition: form-data; filename=\"codes.txt\"; name=\"file\"\r\nContent-Type: text/plain\r\n\r\nA1\nA2\r\n--b\r\ncontent-disposition: form-data; name=\"group\"\r\n\r\ncoupon\r\n--b--\r\n";
        assert_eq!(
            multipart_fields(body.as_bytes(), "b").await,
            vec![
                ("file".to_owned(), "A1\nA2".to_owned()),
                ("group".to_owned(), "coupon".to_owned())
            ]
        );
        // Cut off mid-part: the fields before the cut.
        let cut = &body.as_bytes()[..body.find("coupon").expect("there")];
        assert_eq!(
            multipart_fields(cut, "b").await,
            vec![("file".to_owned(), "A1\nA2".to_owned())]
        );
    }
}
