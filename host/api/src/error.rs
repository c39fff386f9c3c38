//! The native API's error format: `{"error": {"code", "message", "request_id"}}`
//! with a matching HTTP status. Codes are stable; messages say what to do.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use engage_domain::actions::ActionError;
use engage_domain::goods::GoodsError;
use engage_domain::players::PlayerError;
use engage_domain::tenants::TenantError;
use engage_ledger::LedgerError;
use engage_runtime::{CallError, PluginsError};
use engage_store::StoreError;

/// An error answer of the native API.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<Box<serde_json::Value>>,
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// Add a `Retry-After` (seconds) to the answer.
    pub fn retry_after(mut self, secs: u64) -> ApiError {
        self.retry_after = Some(u32::try_from(secs).unwrap_or(u32::MAX));
        self
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// A storage failure: 503 with `Retry-After` while the database is
    /// away or busy (nothing was done; try again), else 500.
    pub fn store(e: impl std::borrow::Borrow<StoreError>) -> ApiError {
        let e = e.borrow();
        if e.is_unavailable() {
            tracing::warn!(error = %e, "storage unavailable");
            let (code, message) = match e {
                StoreError::Conflict(_) => (
                    "storage_busy",
                    "too many writes to the same records at once; try again (with the same Idempotency-Key, if any)",
                ),
                _ => (
                    "storage_unavailable",
                    "storage is unavailable for a moment; try again (with the same Idempotency-Key, if any)",
                ),
            };
            engage_telemetry::refused(code);
            return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message).retry_after(1);
        }
        ApiError::internal(e)
    }

    fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an internal error occurred; it has been logged",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(d) = self.details {
            error["details"] = *d;
        }
        // The request id travels in the `x-request-id` response header.
        let mut r = (self.status, Json(json!({ "error": error }))).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string())
        {
            r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
        }
        r
    }
}

impl From<crate::wire::BodyError> for ApiError {
    fn from(e: crate::wire::BodyError) -> ApiError {
        let code = if e.status == StatusCode::PAYLOAD_TOO_LARGE {
            engage_telemetry::refused("body_too_large");
            "body_too_large"
        } else {
            "invalid_body"
        };
        ApiError::new(e.status, code, e.message)
    }
}

impl From<engage_domain::cors::CorsError> for ApiError {
    fn from(e: engage_domain::cors::CorsError) -> ApiError {
        match e {
            engage_domain::cors::CorsError::Invalid(m) => {
                ApiError::bad_request("invalid_origin", m)
            }
            engage_domain::cors::CorsError::Store(s) => ApiError::store(s),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        ApiError::store(e)
    }
}

impl From<TenantError> for ApiError {
    fn from(e: TenantError) -> ApiError {
        let (status, code) = match &e {
            TenantError::InvalidName => (StatusCode::BAD_REQUEST, "invalid_name"),
            TenantError::NameTaken(_) => (StatusCode::CONFLICT, "tenant_exists"),
            TenantError::NotFound(_) => (StatusCode::NOT_FOUND, "tenant_not_found"),
            TenantError::BadCredentials => (StatusCode::UNAUTHORIZED, "bad_credentials"),
            TenantError::BadToken => (StatusCode::UNAUTHORIZED, "bad_token"),
            TenantError::TokenExpired => (StatusCode::UNAUTHORIZED, "token_expired"),
            TenantError::Store(s) => return ApiError::store(s),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<PluginsError> for ApiError {
    fn from(e: PluginsError) -> ApiError {
        let (status, code) = match &e {
            PluginsError::Empty => (StatusCode::BAD_REQUEST, "empty_upload"),
            PluginsError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "component_too_large"),
            PluginsError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_component"),
            PluginsError::BadName => (StatusCode::BAD_REQUEST, "invalid_name"),
            PluginsError::ReservedName(_) => (StatusCode::CONFLICT, "reserved_name"),
            PluginsError::UnknownPoint(_) => (StatusCode::BAD_REQUEST, "unknown_point"),
            PluginsError::NoPlugin(_) => (StatusCode::NOT_FOUND, "plugin_not_found"),
            PluginsError::NoVersion(..) => (StatusCode::NOT_FOUND, "version_not_found"),
            PluginsError::WrongWorld { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "wrong_world"),
            PluginsError::BadConfig => (StatusCode::BAD_REQUEST, "invalid_config"),
            PluginsError::ConfigRejected { code, .. } => {
                let mut err = ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "config_rejected",
                    e.to_string(),
                );
                err.details = Some(Box::new(json!({ "plugin_code": code })));
                return err;
            }
            PluginsError::ConfigCheckFailed { error, logs, .. } => {
                let status = match error {
                    CallError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                };
                let mut err = ApiError::new(status, "config_check_failed", e.to_string());
                err.details = Some(Box::new(json!({ "error": error, "logs": logs })));
                return err;
            }
            PluginsError::BadLimits(_) => (StatusCode::BAD_REQUEST, "invalid_limits"),
            PluginsError::CallFailed { error, logs, .. } => {
                let status = match error {
                    CallError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::BAD_GATEWAY,
                };
                let mut err = ApiError::new(status, plugin_code(error), e.to_string());
                err.details = Some(Box::new(json!({ "error": error, "logs": logs })));
                return err;
            }
            PluginsError::TooManyConflicts(_) => {
                engage_telemetry::refused("contention");
                (StatusCode::SERVICE_UNAVAILABLE, "contention")
            }
            PluginsError::KvQuota(_) | PluginsError::PluginQuota(_) => {
                engage_telemetry::refused("quota");
                (StatusCode::INSUFFICIENT_STORAGE, "quota_exceeded")
            }
            PluginsError::VersionBound { .. } => (StatusCode::CONFLICT, "version_bound"),
            PluginsError::NotBound(_) => (StatusCode::NOT_FOUND, "not_bound"),
            PluginsError::NoCanary(_) => (StatusCode::CONFLICT, "no_canary"),
            PluginsError::BadCanary(_) => (StatusCode::BAD_REQUEST, "invalid_canary"),
            PluginsError::CanaryIsStable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_canary"),
            PluginsError::BindingChanged(_) => (StatusCode::CONFLICT, "binding_changed"),
            PluginsError::Store(s) => return ApiError::store(s),
            PluginsError::Internal(s) => return ApiError::internal(s),
        };
        ApiError::new(status, code, e.to_string())
    }
}

fn plugin_code(e: &CallError) -> &'static str {
    match e {
        CallError::Guest { .. } => "plugin_rejected",
        CallError::Busy { .. } => "plugin_busy",
        _ => "plugin_failed",
    }
}

impl From<PlayerError> for ApiError {
    fn from(e: PlayerError) -> ApiError {
        let (status, code) = match &e {
            PlayerError::InvalidId => (StatusCode::BAD_REQUEST, "invalid_player_id"),
            PlayerError::Exists(_) => (StatusCode::CONFLICT, "player_exists"),
            PlayerError::NotFound(_) => (StatusCode::NOT_FOUND, "player_not_found"),
            PlayerError::InvalidPhone(_) => (StatusCode::BAD_REQUEST, "invalid_phone"),
            PlayerError::InvalidEmail(_) => (StatusCode::BAD_REQUEST, "invalid_email"),
            PlayerError::UsernameTaken(_) => (StatusCode::CONFLICT, "username_taken"),
            PlayerError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            PlayerError::Store(s) => return ApiError::store(s),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> ApiError {
        let (status, code) = match &e {
            LedgerError::InvalidCurrency => (StatusCode::BAD_REQUEST, "invalid_currency"),
            LedgerError::TooManyCurrencies => (StatusCode::BAD_REQUEST, "too_many_currencies"),
            LedgerError::InvalidAmount => (StatusCode::BAD_REQUEST, "invalid_amount"),
            LedgerError::InsufficientBalance {
                currency,
                balance,
                needed,
            } => {
                let mut err =
                    ApiError::new(StatusCode::CONFLICT, "insufficient_balance", e.to_string());
                err.details = Some(Box::new(
                    json!({ "currency": currency, "balance": balance, "needed": needed }),
                ));
                return err;
            }
            LedgerError::BalanceTooLarge => (StatusCode::UNPROCESSABLE_ENTITY, "balance_too_large"),
            LedgerError::EntryNotFound(_) => (StatusCode::NOT_FOUND, "entry_not_found"),
            LedgerError::PlayerNotFound(_) => (StatusCode::NOT_FOUND, "player_not_found"),
            LedgerError::AlreadyReversed { .. } => (StatusCode::CONFLICT, "already_reversed"),
            LedgerError::ReverseOfReversal => (StatusCode::CONFLICT, "reverse_of_reversal"),
            LedgerError::Store(s) => return ApiError::store(s),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<ActionError> for ApiError {
    fn from(e: ActionError) -> ApiError {
        let (status, code) = match e {
            ActionError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            ActionError::PlayerNotFound(_) => (StatusCode::NOT_FOUND, "player_not_found"),
            ActionError::UnknownAction(_) => (StatusCode::NOT_FOUND, "unknown_action"),
            ActionError::BadOutcome(_) => (StatusCode::BAD_GATEWAY, "plugin_invalid_outcome"),
            ActionError::GrantLimit(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "grant_limit_exceeded")
            }
            ActionError::Contention | ActionError::Retry => {
                (StatusCode::SERVICE_UNAVAILABLE, "contention")
            }
            ActionError::Plugin(p) => return p.into(),
            ActionError::Store(s) => return ApiError::store(s),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<GoodsError> for ApiError {
    fn from(e: GoodsError) -> ApiError {
        let (status, code) = match &e {
            GoodsError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            GoodsError::NotFound(_) => (StatusCode::NOT_FOUND, "goods_not_found"),
            GoodsError::Incomplete(_) => (StatusCode::UNPROCESSABLE_ENTITY, "incomplete_group"),
            GoodsError::PlayerNotFound(_) => (StatusCode::NOT_FOUND, "player_not_found"),
            GoodsError::NotActive(_) => (StatusCode::CONFLICT, "goods_not_active"),
            GoodsError::LimitReached { .. } => (StatusCode::CONFLICT, "redeem_limit_reached"),
            GoodsError::OutOfStock { .. } => (StatusCode::CONFLICT, "out_of_stock"),
            GoodsError::InsufficientBalance { .. } => {
                (StatusCode::CONFLICT, "insufficient_balance")
            }
            GoodsError::RedemptionNotFound(_) => (StatusCode::NOT_FOUND, "redemption_not_found"),
            GoodsError::Store(s) => return ApiError::store(s),
        };
        ApiError::new(status, code, e.to_string())
    }
}
