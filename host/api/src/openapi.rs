//! The native API's OpenAPI 3.1 document, generated from the code: every
//! `/v1` and `/admin` route is registered through [`utoipa_axum`] from its
//! handler's `#[utoipa::path]`, so a route cannot be served without being
//! documented, nor documented without being served; the schemas are derived
//! from the types the handlers read and answer (`ToSchema`), so a field
//! added to a type is in the document at once.
//!
//! What every operation of a kind can answer (a refused credential, a
//! malformed path, query or body, a body over the limit, an idempotency
//! key used for another request, storage away for a moment) is added here
//! once, by [`standard_errors`], from the operation's shape, because the
//! extractors that give those answers are shared; an operation's own
//! outcomes are listed beside its handler. CI runs schemathesis against a
//! running server with this document (`scripts/schemathesis`).

use utoipa::openapi::path::{Operation, Parameter, ParameterIn};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, OpenApi, RefOr, Response, ResponseBuilder};
use utoipa::{IntoParams, Modify, ToSchema};

/// Every error of the native API: `{"error": {"code", "message", "details"?}}`
/// with a matching HTTP status. The request id is in the `x-request-id` header.
#[derive(ToSchema)]
#[schema(as = Error)]
#[allow(dead_code)] // a schema: the answer is written by ApiError
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct ErrorDetail {
    /// Stable, machine-readable (`player_not_found`, `insufficient_balance`, …).
    code: String,
    /// For a person: what went wrong and what to do.
    message: String,
    /// What the code needs to be acted on, when it has more (a plugin's code, a limit, …).
    #[schema(value_type = Option<Object>)]
    details: Option<()>,
}

/// The `Idempotency-Key` header every mutating call takes.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct IdempotencyKey {
    /// Makes the call safe to retry: the same key with the same request
    /// replays the first successful answer (marked `Idempotent-Replayed:
    /// true`) for 24 hours; the same key with a different request answers
    /// 422 `idempotency_key_reused`. A refused call is not remembered.
    #[param(
        rename = "Idempotency-Key",
        max_length = 255,
        min_length = 1,
        pattern = "^[\\x21-\\x7e]+$"
    )]
    idempotency_key: Option<String>,
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Engage native API",
        description = "The native API of Engage. Tenant calls send `Authorization: Bearer <token>` (from POST /v1/auth/token); admin calls send the admin token. Every answer carries an `x-request-id` header. Errors are `{\"error\": {\"code\", \"message\", \"details\"?}}` with a matching status. Seed-compatible APIs live under their own prefixes and follow their vendors' documents, not this one. This document is generated from the server's code.",
    ),
    components(schemas(ErrorBody)),
    modifiers(&Security),
)]
struct Base;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            let mut h = Http::new(HttpAuthScheme::Bearer);
            h.description = Some(description.to_owned());
            SecurityScheme::Http(h)
        };
        components.add_security_scheme("tenantToken", bearer("From POST /v1/auth/token"));
        components.add_security_scheme(
            "adminToken",
            bearer(
                "Printed on first start and written to credentials.json, or set with ENGAGE_ADMIN_TOKEN",
            ),
        );
    }
}

/// The whole document: the base above, the operations of `routes`, and
/// the answers every operation of a kind shares.
pub fn document(routes: OpenApi) -> serde_json::Value {
    use utoipa::OpenApi as _;
    let mut doc = Base::openapi();
    doc.merge(routes);
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            standard_errors(op);
        }
    }
    let mut v = serde_json::to_value(&doc).expect("a document is JSON");
    unsigned_bounds(&mut v);
    optional_bodies(&mut v);
    flatten_all_of(&mut v);
    closed_variants(&mut v, &["Trigger", "Provider"]);
    v
}

/// Internally tagged enums that refuse unknown fields
/// (`#[serde(tag = …, deny_unknown_fields)]`): utoipa does not carry the
/// refusal to their variants, so each variant object is closed here.
fn closed_variants(v: &mut serde_json::Value, names: &[&str]) {
    for name in names {
        let variants = v
            .pointer_mut(&format!("/components/schemas/{name}/oneOf"))
            .and_then(serde_json::Value::as_array_mut);
        for variant in variants.into_iter().flatten() {
            if variant["type"] == "object" {
                variant["additionalProperties"] = false.into();
            }
        }
    }
}

/// A type that `#[serde(flatten)]`s another is written by utoipa as `allOf`
/// of both; when the inner one refuses unknown fields
/// (`additionalProperties: false`), no object satisfies the pair. Each
/// such schema is written as the one object it is: the members' properties
/// and required fields together, closed only when every member was.
fn flatten_all_of(v: &mut serde_json::Value) {
    use serde_json::{Map, Value};
    let schemas = v["components"]["schemas"].clone();
    let resolve = |s: &Value| -> Value {
        match s["$ref"].as_str() {
            Some(r) => schemas[r.trim_start_matches("#/components/schemas/")].clone(),
            None => s.clone(),
        }
    };
    let Some(all) = v
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for schema in all.values_mut() {
        let Some(members) = schema.get("allOf").and_then(Value::as_array) else {
            continue;
        };
        let members: Vec<Value> = members.iter().map(resolve).collect();
        if !members.iter().all(|m| m["type"] == "object") {
            continue;
        }
        let (mut properties, mut required) = (Map::new(), Vec::<Value>::new());
        let mut closed = true;
        for m in &members {
            if let Some(p) = m["properties"].as_object() {
                properties.extend(p.clone());
            }
            for r in m["required"].as_array().into_iter().flatten() {
                if !required.contains(r) {
                    required.push(r.clone());
                }
            }
            closed &= m["additionalProperties"] == false;
        }
        let mut merged = Map::new();
        merged.insert("type".into(), "object".into());
        if let Some(d) = schema
            .get("description")
            .or_else(|| members[0].get("description"))
        {
            merged.insert("description".into(), d.clone());
        }
        merged.insert("required".into(), required.into());
        merged.insert("properties".into(), properties.into());
        if closed {
            merged.insert("additionalProperties".into(), false.into());
        }
        *schema = merged.into();
    }
}

/// utoipa writes an unsigned integer as `int32` or `int64` with `minimum:
/// 0`, which readers bound at the *signed* maximum: a `u64` id above 2^63
/// would read as out of range, though the server takes it. Without a
/// maximum of its own, such a schema gets its type's (`u32` or `u64`; `u8`
/// and `u16` fields carry their own maximum) and loses the signed format.
fn unsigned_bounds(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let integer = match map.get("type") {
                Some(Value::String(t)) => t == "integer",
                Some(Value::Array(ts)) => ts.iter().any(|t| t == "integer"),
                _ => false,
            };
            let unsigned = map.get("minimum").and_then(Value::as_u64) == Some(0);
            if integer && unsigned && !map.contains_key("maximum") {
                let max = match map.get("format").and_then(Value::as_str) {
                    Some("int32") => Some(u64::from(u32::MAX)),
                    // `usize` parameters come without a format.
                    Some("int64") | None => Some(u64::MAX),
                    _ => None,
                };
                if let Some(max) = max {
                    map.insert("maximum".into(), max.into());
                    map.remove("format");
                }
            }
            map.values_mut().for_each(unsigned_bounds);
        }
        Value::Array(items) => items.iter_mut().for_each(unsigned_bounds),
        _ => {}
    }
}

/// A mutating call reads an empty body as `{}` ([`crate::mutation::Mutation::json`]),
/// so a body whose schema requires no property may be left out: its
/// `requestBody` is not `required`.
fn optional_bodies(v: &mut serde_json::Value) {
    let schemas = v["components"]["schemas"].clone();
    let Some(paths) = v.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    for item in paths.values_mut().filter_map(|i| i.as_object_mut()) {
        for op in item.values_mut() {
            let Some(body) = op.get_mut("requestBody") else {
                continue;
            };
            let schema = &body["content"]["application/json"]["schema"];
            let resolved = match schema["$ref"].as_str() {
                Some(r) => &schemas[r.trim_start_matches("#/components/schemas/")],
                None => schema,
            };
            let object = resolved["type"] == "object";
            let required = resolved["required"]
                .as_array()
                .is_some_and(|r| !r.is_empty());
            if object && !required {
                body["required"] = false.into();
            }
        }
    }
}

fn error(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    "Error",
                )))),
            )
            .build(),
    )
}

/// Add to `op` the errors its shape implies (each only where the operation
/// does not describe that status itself).
fn standard_errors(op: &mut Operation) {
    let params: Vec<&Parameter> = op
        .parameters
        .iter()
        .flatten()
        .filter_map(|p| match p {
            RefOr::T(p) => Some(p),
            RefOr::Ref(_) => None,
        })
        .collect();
    let has = |at: ParameterIn| params.iter().any(|p| p.parameter_in == at);
    let (path, query, body) = (
        has(ParameterIn::Path),
        has(ParameterIn::Query),
        op.request_body.is_some(),
    );
    let idempotent = params.iter().any(|p| p.name == "Idempotency-Key");
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let mut add = |status: &str, description: &str| {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| error(description));
    };
    if secured {
        add(
            "401",
            "unauthorized: no credential, or one that is wrong or expired",
        );
    }
    let mut bad = Vec::new();
    if path {
        bad.push("invalid_path");
    }
    if query {
        bad.push("invalid_query");
    }
    if body {
        bad.push("invalid_json / invalid_request / invalid_body");
    }
    if idempotent {
        bad.push("invalid_idempotency_key");
    }
    if !bad.is_empty() {
        add(
            "400",
            &format!("{}: what was wrong, in `message`", bad.join(", ")),
        );
    }
    if body {
        add(
            "413",
            "body_too_large: the body is over this operation's limit",
        );
    }
    if idempotent {
        add(
            "422",
            "idempotency_key_reused: this key came with a different request; use a new key",
        );
    }
    add(
        "503",
        "storage_unavailable / storage_busy: nothing was done; try again after Retry-After",
    );
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// Every `$ref` in `v`.
    fn refs(v: &serde_json::Value, out: &mut BTreeSet<String>) {
        match v {
            serde_json::Value::Object(o) => {
                for (k, v) in o {
                    match (k.as_str(), v.as_str()) {
                        ("$ref", Some(r)) => {
                            out.insert(r.to_owned());
                        }
                        _ => refs(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves_and_every_operation_is_named_once() {
        let doc = crate::openapi_document();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut found = BTreeSet::new();
        refs(&doc, &mut found);
        for r in &found {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("a reference outside the schemas: {r}"));
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "{r} is referenced but not defined"
            );
        }
        let mut ids = BTreeSet::new();
        let paths = doc["paths"].as_object().expect("paths");
        for (path, item) in paths {
            for (method, op) in item.as_object().expect("a path item") {
                let id = op["operationId"].as_str().unwrap_or_default().to_owned();
                assert!(!id.is_empty(), "{method} {path} has no operationId");
                assert!(ids.insert(id.clone()), "operationId {id} is used twice");
                // Exchanging credentials is open and answers 401 to bad ones.
                let secured = op.get("security").is_some() || id == "token";
                assert_eq!(
                    secured,
                    op["responses"].get("401").is_some(),
                    "{method} {path}: a secured operation documents 401, an open one does not"
                );
            }
        }
        assert!(ids.len() >= 110, "only {} operations", ids.len());
    }
}
