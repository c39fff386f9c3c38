//! Which web origins may call Engage from a browser, per tenant.
//!
//! Browser SDKs (Playbasis's JavaScript library, a tenant's own web app)
//! call Engage from the app's origin; the browser asks first (a CORS
//! preflight) and shows the answer to the page only when Engage names the
//! origin. Default: no origin. Engage takes no ambient credentials (no
//! cookies): every call carries its key or token, so credentials are never
//! allowed (`Access-Control-Allow-Credentials` is never sent).

use serde::{Deserialize, Serialize};

use engage_store::{Reader, Store, StoreError, Table, key, prefix};

/// tenant → [`Settings`].
const SETTINGS: Table = Table::new("cors_settings");
/// (origin, tenant) → nothing: which tenants allow an origin, for requests
/// whose tenant cannot be told before the handler runs.
const ORIGINS: Table = Table::new("cors_origins");

/// The most origins a tenant may list.
pub const MAX_ORIGINS: usize = 100;

/// A tenant's CORS settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CorsSettings)]
pub struct Settings {
    /// `scheme://host[:port]` origins, or `*` for any (at most 100).
    #[schema(max_items = 100, inline, value_type = Vec<Origin>)]
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CorsError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether `o` is an origin as browsers send it: `http(s)://host[:port]`,
/// lower case, without a path.
/// An allowed origin in an API document, exactly as [`valid_origin`]
/// reads one (or `*`).
#[derive(utoipa::ToSchema)]
#[schema(
    value_type = String,
    max_length = 255,
    pattern = "^(\\*|https?://[a-z0-9.:\\[\\]-]+)$"
)]
#[allow(dead_code)]
struct Origin(String);

fn valid_origin(o: &str) -> bool {
    let Some(rest) = o
        .strip_prefix("https://")
        .or_else(|| o.strip_prefix("http://"))
    else {
        return false;
    };
    !rest.is_empty()
        && o.len() <= 255
        && rest
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.:[]".contains(&b))
}

impl Settings {
    fn validate(&self) -> Result<(), CorsError> {
        if self.allowed_origins.len() > MAX_ORIGINS {
            return Err(CorsError::Invalid(format!(
                "at most {MAX_ORIGINS} allowed origins"
            )));
        }
        if let Some(bad) = self
            .allowed_origins
            .iter()
            .find(|o| o.as_str() != "*" && !valid_origin(o))
        {
            return Err(CorsError::Invalid(format!(
                "`{bad}` is not an origin: write scheme://host[:port] in lower case, without a path (or `*`)"
            )));
        }
        Ok(())
    }

    /// Whether `origin` may call.
    pub fn allows(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|o| o == "*" || o == origin)
    }
}

/// The tenant's settings (none allowed until set).
pub fn settings(src: &impl Reader, tenant: &str) -> Result<Settings, StoreError> {
    Ok(src.get(SETTINGS, tenant)?.unwrap_or_default())
}

/// Replace the tenant's allowed origins.
pub async fn set(store: &Store, tenant: &str, s: Settings) -> Result<Settings, CorsError> {
    s.validate()?;
    let t = tenant.to_owned();
    store
        .write(move |tx| {
            let old = settings(tx, &t)?;
            for o in &old.allowed_origins {
                tx.remove(ORIGINS, &key(&[o, &t]))?;
            }
            for o in &s.allowed_origins {
                tx.put_raw(ORIGINS, &key(&[o, &t]), b"")?;
            }
            tx.put(SETTINGS, &t, &s)?;
            Ok::<_, CorsError>(s.clone())
        })
        .await
}

/// Whether some tenant allows `origin` (for a request whose tenant is not
/// known before its handler runs).
pub fn any_allows(src: &impl Reader, origin: &str) -> Result<bool, StoreError> {
    Ok(!src
        .scan_raw(ORIGINS, &prefix(&[origin]), None, 1, false)?
        .is_empty()
        || !src
            .scan_raw(ORIGINS, &prefix(&["*"]), None, 1, false)?
            .is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked_as_browsers_send_them() {
        assert!(valid_origin("https://app.example.com"));
        assert!(valid_origin("http://localhost:5173"));
        assert!(!valid_origin("https://app.example.com/path"));
        assert!(!valid_origin("app.example.com"));
        assert!(!valid_origin("https://App.Example.com"));
        let s = Settings {
            allowed_origins: vec!["https://a.example".into()],
        };
        assert!(s.allows("https://a.example"));
        assert!(!s.allows("https://b.example"));
        assert!(
            Settings {
                allowed_origins: vec!["*".into()]
            }
            .allows("https://b.example")
        );
    }
}
