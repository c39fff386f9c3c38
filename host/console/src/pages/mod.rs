//! The console's pages, a module per section of its navigation. Each
//! handler turns a form into API calls and API answers into a template's
//! context; none decides anything the API would not.

mod audiences;
mod gateway;
mod goods;
mod messaging;
mod overview;
mod players;
mod plugins;
mod rules;
mod tenants;

use axum::Router;
use axum::routing::{get, post};

use crate::Console;

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/overview", get(overview::page))
        .route("/players", get(players::list))
        .route("/players/{id}", get(players::profile))
        .route(
            "/players/{id}/reverse/{entry}",
            get(players::confirm_reverse).post(players::reverse),
        )
        .route("/goods", get(goods::list).post(goods::create))
        .route("/goods/{id}", get(goods::group).post(goods::edit))
        .route("/goods/{id}/codes", post(goods::upload_codes))
        .route("/rules", get(rules::page).post(rules::submit))
        .route("/plugins", get(plugins::list).post(plugins::upload))
        .route("/plugins/{name}", get(plugins::plugin))
        .route("/bindings/{point}", post(plugins::bind))
        .route("/bindings/{point}/rollback", post(plugins::roll_back))
        .route("/bindings/{point}/unbind", post(plugins::unbind))
        .route("/messaging", get(messaging::page))
        .route("/messaging/test", post(messaging::test_send))
        .route("/messages/{id}", get(messaging::message))
        .route("/audiences", get(audiences::page))
        .route("/campaigns", get(audiences::campaigns))
        .route("/campaigns/{id}", get(audiences::campaign))
        .route("/campaigns/{id}/status", post(audiences::set_status))
        .route("/campaigns/{id}/run", post(audiences::run))
        .route("/gateway", get(gateway::page))
        .route("/gateway/accounts/{username}", get(gateway::account))
        .route("/tenants", get(tenants::list).post(tenants::create))
}

/// `s` as one path segment of an API URL (everything but the unreserved
/// characters percent-encoded), so a console URL cannot walk the API's.
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query string of the pairs whose value is not empty (`?a=1&b=2`, or
/// nothing).
pub fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let kept: Vec<(&str, &str)> = pairs
        .iter()
        .filter_map(|(k, v)| v.filter(|v| !v.is_empty()).map(|v| (*k, v)))
        .collect();
    match serde_urlencoded::to_string(&kept) {
        Ok(q) if !q.is_empty() => format!("?{q}"),
        _ => String::new(),
    }
}

/// The part of a list one page shows, for lists the API answers whole:
/// `page` (from 1) of `per` items, and whether there is a next one.
pub fn slice(items: &serde_json::Value, page: usize, per: usize) -> (Vec<serde_json::Value>, bool) {
    let all = items.as_array().map(Vec::as_slice).unwrap_or(&[]);
    let start = page.saturating_sub(1).saturating_mul(per);
    let shown = all.iter().skip(start).take(per).cloned().collect();
    (shown, all.len() > start.saturating_add(per))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_cannot_leave_its_place() {
        assert_eq!(seg("player-1_a.b~"), "player-1_a.b~");
        assert_eq!(seg("../goods"), "..%2Fgoods");
        assert_eq!(seg("a b?c#d"), "a%20b%3Fc%23d");
        assert_eq!(seg("é"), "%C3%A9");
    }

    #[test]
    fn queries_leave_out_empty_values() {
        assert_eq!(
            query(&[("q", Some("a b")), ("after", None), ("x", Some(""))]),
            "?q=a+b"
        );
        assert_eq!(query(&[("q", None)]), "");
    }

    #[test]
    fn slices_page_through_a_whole_list() {
        let v = serde_json::json!([1, 2, 3, 4, 5]);
        assert_eq!(slice(&v, 1, 2), (vec![1.into(), 2.into()], true));
        assert_eq!(slice(&v, 3, 2), (vec![5.into()], false));
        assert_eq!(slice(&v, 9, 2), (vec![], false));
    }
}
