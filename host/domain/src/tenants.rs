//! Tenants, their API credentials and access tokens, and the admin token.
//!
//! A tenant's id is its name, a short slug chosen at creation (it is the
//! `APP_ID` of the Playblazer API). Its API secret and every access token
//! are stored only as SHA-256 hashes: they are high-entropy random strings,
//! so a fast hash is enough and a stolen data file reveals no credential.

use serde::{Deserialize, Serialize};

use engage_store::ids::{now_ms, random_hex, sha256_hex};
use engage_store::{Reader, Snapshot, Store, StoreError, Table};

const TENANTS: Table = Table::new("tenants");
const API_KEYS: Table = Table::new("tenant_api_keys");
const TOKENS: Table = Table::new("tenant_tokens");
/// sha256(admin session token) → its expiry (ms, little-endian `u64`).
const ADMIN_SESSIONS: Table = Table::new("admin_sessions");
const SETTINGS: Table = Table::new("settings");

/// How long an access token lives: three days, as Playbasis's do.
pub const TOKEN_TTL_MS: i64 = 3 * 24 * 3600 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error(
        "a tenant name is 1 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit"
    )]
    InvalidName,
    #[error("a tenant named `{0}` already exists")]
    NameTaken(String),
    #[error("no tenant named `{0}`")]
    NotFound(String),
    #[error("the API key and secret do not match any tenant")]
    BadCredentials,
    #[error("the access token is not valid; get a new one from POST /v1/auth/token")]
    BadToken,
    #[error("the access token expired; renew it or get a new one from POST /v1/auth/token")]
    TokenExpired,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A stored tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tenant {
    pub id: String,
    pub api_key: String,
    pub secret_sha256: String,
    pub created_at_ms: i64,
}

/// What a tenant's creator is told once: the secret is not stored in clear.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Credentials {
    pub tenant: String,
    pub api_key: String,
    pub api_secret: String,
}

/// An access token, as issued.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessToken {
    pub token: String,
    /// The tenant it acts for (empty for an admin session).
    pub tenant: String,
    pub expires_at_ms: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct TokenRecord {
    tenant: String,
    expires_at_ms: i64,
}

fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// Create a tenant named `name` and return its credentials.
pub async fn create(store: &Store, name: &str) -> Result<Credentials, TenantError> {
    if !valid_name(name) {
        return Err(TenantError::InvalidName);
    }
    let creds = Credentials {
        tenant: name.to_owned(),
        api_key: format!("ek_{}", random_hex(12)),
        api_secret: random_hex(24),
    };
    let tenant = Tenant {
        id: name.to_owned(),
        api_key: creds.api_key.clone(),
        secret_sha256: sha256_hex(creds.api_secret.as_bytes()),
        created_at_ms: now_ms(),
    };
    store
        .write(move |tx| {
            if tx.get_raw(TENANTS, &tenant.id)?.is_some() {
                return Err(TenantError::NameTaken(tenant.id.clone()));
            }
            tx.put(TENANTS, &tenant.id, &tenant)?;
            tx.put_raw(API_KEYS, &tenant.api_key, tenant.id.as_bytes())?;
            Ok(())
        })
        .await?;
    tracing::info!(tenant = name, "tenant created");
    Ok(creds)
}

/// Up to `limit` tenants by id, after the id `after`.
pub fn list(
    snap: &Snapshot,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<Tenant>, TenantError> {
    Ok(snap
        .scan_page::<Tenant>(TENANTS, "", after, limit, false)?
        .into_iter()
        .map(|(_, t)| t)
        .collect())
}

/// One tenant.
pub fn get(snap: &Snapshot, id: &str) -> Result<Tenant, TenantError> {
    snap.get(TENANTS, id)?
        .ok_or_else(|| TenantError::NotFound(id.to_owned()))
}

/// The tenant whose API key and secret these are.
pub fn check_secret(
    snap: &Snapshot,
    api_key: &str,
    api_secret: &str,
) -> Result<Tenant, TenantError> {
    let id = snap
        .get_raw(API_KEYS, api_key)?
        .ok_or(TenantError::BadCredentials)?;
    let id = String::from_utf8(id).map_err(|_| TenantError::BadCredentials)?;
    let tenant = get(snap, &id).map_err(|_| TenantError::BadCredentials)?;
    if tenant.secret_sha256 != sha256_hex(api_secret.as_bytes()) {
        return Err(TenantError::BadCredentials);
    }
    Ok(tenant)
}

/// Whether `secret` is tenant `id`'s API secret (Playblazer authenticates
/// by app id and secret key).
pub fn check_tenant_secret(snap: &Snapshot, id: &str, secret: &str) -> Result<(), TenantError> {
    let tenant = get(snap, id).map_err(|_| TenantError::BadCredentials)?;
    if tenant.secret_sha256 == sha256_hex(secret.as_bytes()) {
        Ok(())
    } else {
        Err(TenantError::BadCredentials)
    }
}

/// The tenant an API key belongs to (Playbasis authenticates reads by the
/// API key alone).
pub fn by_api_key(snap: &Snapshot, api_key: &str) -> Result<String, TenantError> {
    let id = snap
        .get_raw(API_KEYS, api_key)?
        .ok_or(TenantError::BadCredentials)?;
    String::from_utf8(id).map_err(|_| TenantError::BadCredentials)
}

/// Exchange an API key and secret for an access token.
pub async fn issue_token(
    store: &Store,
    api_key: &str,
    api_secret: &str,
) -> Result<AccessToken, TenantError> {
    issue_token_for(store, api_key, api_secret, TOKEN_TTL_MS).await
}

/// [`issue_token`] for a token that lives `ttl_ms` (at most
/// [`TOKEN_TTL_MS`]): a browser session asks for less than a server does.
pub async fn issue_token_for(
    store: &Store,
    api_key: &str,
    api_secret: &str,
    ttl_ms: i64,
) -> Result<AccessToken, TenantError> {
    let tenant = check_secret(&store.read()?, api_key, api_secret)?;
    new_token(store, tenant.id, ttl_ms.clamp(1, TOKEN_TTL_MS)).await
}

/// Exchange a valid token for a new one (the old one stays valid until it expires).
pub async fn renew_token(store: &Store, token: &str) -> Result<AccessToken, TenantError> {
    let tenant = verify_token(&store.read()?, token, now_ms())?;
    new_token(store, tenant, TOKEN_TTL_MS).await
}

async fn new_token(store: &Store, tenant: String, ttl_ms: i64) -> Result<AccessToken, TenantError> {
    let token = AccessToken {
        token: random_hex(20),
        tenant: tenant.clone(),
        expires_at_ms: now_ms() + ttl_ms,
    };
    let key = sha256_hex(token.token.as_bytes());
    let record = TokenRecord {
        tenant,
        expires_at_ms: token.expires_at_ms,
    };
    store
        .write(move |tx| {
            tx.put(TOKENS, &key, &record)?;
            Ok::<_, TenantError>(())
        })
        .await?;
    Ok(token)
}

/// Access tokens are deleted once expired.
pub const TOKEN_SWEEP: engage_store::sweeper::Sweep = engage_store::sweeper::Sweep {
    name: "access tokens",
    table: TOKENS,
    dead: |_, look| {
        Ok(serde_json::from_slice::<TokenRecord>(look.raw)
            .map(|r| r.expires_at_ms <= look.now_ms)
            .unwrap_or(true))
    },
    forget: None,
};

/// The tenant an access token belongs to.
pub fn verify_token(snap: &Snapshot, token: &str, now_ms: i64) -> Result<String, TenantError> {
    let record: TokenRecord = snap
        .get(TOKENS, &sha256_hex(token.as_bytes()))?
        .ok_or(TenantError::BadToken)?;
    if record.expires_at_ms <= now_ms {
        return Err(TenantError::TokenExpired);
    }
    Ok(record.tenant)
}

/// Revoke an access token (signing out): it is refused from now on, on
/// every host. Revoking an unknown or expired token is not an error.
pub async fn revoke_token(store: &Store, token: &str) -> Result<(), TenantError> {
    let key = sha256_hex(token.as_bytes());
    store
        .write(move |tx| {
            tx.remove(TOKENS, &key)?;
            Ok::<_, TenantError>(())
        })
        .await
}

/// How long an admin session token lives: 12 hours. The admin token itself
/// is long-lived; a session token is what a browser keeps, so a leaked
/// cookie is worth a working day at most and can be revoked.
pub const ADMIN_SESSION_TTL_MS: i64 = 12 * 3600 * 1000;

/// Exchange the admin token for a short-lived admin session token.
pub async fn issue_admin_session(store: &Store) -> Result<AccessToken, TenantError> {
    let token = AccessToken {
        token: random_hex(20),
        tenant: String::new(),
        expires_at_ms: now_ms() + ADMIN_SESSION_TTL_MS,
    };
    let key = sha256_hex(token.token.as_bytes());
    let expires = token.expires_at_ms as u64;
    store
        .write(move |tx| {
            tx.put_u64(ADMIN_SESSIONS, &key, expires)?;
            Ok::<_, TenantError>(())
        })
        .await?;
    Ok(token)
}

/// Whether `token` is a live admin session token.
pub fn is_admin_session(snap: &Snapshot, token: &str, now_ms: i64) -> Result<bool, TenantError> {
    let expires = snap.get_u64(ADMIN_SESSIONS, &sha256_hex(token.as_bytes()))?;
    Ok(expires > 0 && now_ms < expires as i64)
}

/// Revoke an admin session token.
pub async fn revoke_admin_session(store: &Store, token: &str) -> Result<(), TenantError> {
    let key = sha256_hex(token.as_bytes());
    store
        .write(move |tx| {
            tx.remove(ADMIN_SESSIONS, &key)?;
            Ok::<_, TenantError>(())
        })
        .await
}

/// Admin session tokens are deleted once expired.
pub const ADMIN_SESSION_SWEEP: engage_store::sweeper::Sweep = engage_store::sweeper::Sweep {
    name: "admin sessions",
    table: ADMIN_SESSIONS,
    dead: |_, look| {
        Ok(<[u8; 8]>::try_from(look.raw)
            .map(|b| u64::from_le_bytes(b) as i64 <= look.now_ms)
            .unwrap_or(true))
    },
    forget: None,
};

/// Store the admin token's hash (first start, or `ENGAGE_ADMIN_TOKEN`).
pub async fn set_admin_token(store: &Store, token: &str) -> Result<(), TenantError> {
    let hash = sha256_hex(token.as_bytes());
    store
        .write(move |tx| {
            tx.put_raw(SETTINGS, "admin_token_sha256", hash.as_bytes())?;
            Ok::<_, TenantError>(())
        })
        .await
}

/// Whether an admin token has been set.
pub fn has_admin_token(snap: &Snapshot) -> Result<bool, TenantError> {
    Ok(snap.get_raw(SETTINGS, "admin_token_sha256")?.is_some())
}

/// Whether `token` is the admin token.
pub fn is_admin_token(snap: &Snapshot, token: &str) -> Result<bool, TenantError> {
    let stored = snap.get_raw(SETTINGS, "admin_token_sha256")?;
    Ok(stored.is_some_and(|h| h == sha256_hex(token.as_bytes()).as_bytes()))
}
