//! Gateway accounts: who may use the SMS gateway, how they authenticate
//! (password for a token, token for everything else, optionally only from
//! some networks), their level (admin, user, subuser under a parent), and
//! their sending preferences. Each account pays from its own credit: a
//! messaging account named after its never-reused uid.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::GatewayError;
use crate::Kind;
use engage_store::ids::{constant_time_eq, hex, random_hex};
use engage_store::{Reader, StoreError, Table, Tx, key, prefix};

/// (tenant, username) → [`Account`].
const ACCOUNTS: Table = Table::new("gateway_accounts");
/// token → (tenant, username): tokens are unique over the whole server, so
/// a token alone finds its tenant.
const TOKENS: Table = Table::new("gateway_tokens");
/// (login name: username or e-mail, tenant) → username, to find the
/// tenant of a password login that names none.
const LOGINS: Table = Table::new("gateway_logins");

/// PBKDF2-HMAC-SHA256 rounds for stored passwords.
const PBKDF2_ROUNDS: u32 = 20_000;

/// An account's level; playSMS's status codes 2, 3 and 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Admin,
    User,
    Subuser,
}

impl Level {
    /// playSMS's numeric status.
    pub fn code(self) -> u8 {
        match self {
            Level::Admin => 2,
            Level::User => 3,
            Level::Subuser => 4,
        }
    }

    pub fn from_code(code: &str) -> Option<Level> {
        match code.trim() {
            "2" => Some(Level::Admin),
            "3" => Some(Level::User),
            "4" => Some(Level::Subuser),
            _ => None,
        }
    }
}

/// A salted password hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PasswordHash {
    pub salt: String,
    pub rounds: u32,
    pub hash: String,
}

impl PasswordHash {
    pub fn new(password: &str) -> PasswordHash {
        let salt = random_hex(16);
        let hash = pbkdf2(password, &salt, PBKDF2_ROUNDS);
        PasswordHash {
            salt,
            rounds: PBKDF2_ROUNDS,
            hash,
        }
    }

    pub fn verify(&self, password: &str) -> bool {
        let h = pbkdf2(password, &self.salt, self.rounds);
        constant_time_eq(h.as_bytes(), self.hash.as_bytes())
    }
}

/// The longest password a login may present, in bytes. A longer one
/// matches no account (passwords are at most 128 characters) and is
/// refused before any hashing.
pub const MAX_PASSWORD_BYTES: usize = 512;

/// The most gateway accounts a tenant keeps.
pub const MAX_ACCOUNTS: usize = 10_000;

/// PBKDF2-HMAC-SHA256, one 32-byte block, as hex (RustCrypto's `pbkdf2`,
/// the format stored hashes have always had).
///
/// It keys HMAC with the password once and clones the keyed state per
/// round, so a round's cost does not depend on the password's length (a
/// 1 MiB password keyed anew in each of 40,000 rounds took 10–15 s of CPU);
/// `MAX_PASSWORD_BYTES` bounds it besides.
fn pbkdf2(password: &str, salt: &str, rounds: u32) -> String {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(
        password.as_bytes(),
        salt.as_bytes(),
        rounds.max(1),
        &mut out,
    );
    hex(&out)
}

/// `password` checked and hashed on the blocking pool. Call before the
/// write job that stores it: hashing takes milliseconds of CPU, and inside
/// a job it would hold the one writer every tenant's writes wait for (and
/// run again when the job is retried).
pub async fn hash_password(password: &str) -> Result<PasswordHash, GatewayError> {
    check_password(password)?;
    let p = password.to_owned();
    tokio::task::spawn_blocking(move || PasswordHash::new(&p))
        .await
        .map_err(|e| GatewayError::Store(StoreError::JobPanicked(format!("hashing: {e}"))))
}

/// A hash nobody's password matches, checked when a login names no
/// account, so that an unknown name costs what a known one does and
/// names cannot be found by timing.
fn decoy() -> &'static PasswordHash {
    static DECOY: std::sync::OnceLock<PasswordHash> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| PasswordHash::new(&random_hex(16)))
}

/// The one account (with its tenant) whose login name (username or
/// e-mail) and password these are: in `tenant` when given, else in any
/// tenant. None when none or several match. Costs one password hash per
/// account the name could mean, and one when it means none. CPU-bound:
/// call it off the async workers.
pub fn login(
    src: &impl Reader,
    tenant: Option<&str>,
    name: &str,
    password: &str,
) -> Result<Option<(String, Account)>, StoreError> {
    if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
        return Ok(None);
    }
    let candidates = by_login(src, tenant, name)?;
    if candidates.is_empty() {
        let _ = decoy().verify(password);
        return Ok(None);
    }
    let mut matched = candidates
        .into_iter()
        .filter(|(_, a)| a.password.verify(password));
    Ok(match (matched.next(), matched.next()) {
        (Some(one), None) => Some(one),
        _ => None,
    })
}

/// A gateway account as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[schema(as = GatewayAccount)]
pub struct Account {
    /// Numeric id, never reused within the tenant.
    pub uid: u64,
    pub username: String,
    pub level: Level,
    /// The parent's username, for a subuser.
    pub parent: Option<String>,
    #[schema(ignore)]
    pub password: PasswordHash,
    /// The webservices token; none until one is set.
    pub token: Option<String>,
    /// Whether the token may be used at all.
    pub webservices: bool,
    /// Networks the token may be used from (`10.0.0.0/8`, `192.0.2.7`);
    /// empty: any.
    pub webservices_ip: Vec<String>,
    pub banned: bool,
    pub name: String,
    pub email: String,
    pub mobile: String,
    pub address: String,
    pub city: String,
    pub state: String,
    pub country: String,
    pub zipcode: String,
    /// The zone of the account's dates: an IANA name (`Asia/Jakarta`) or
    /// a UTC offset (`+0700`).
    pub timezone: String,
    pub language: String,
    /// Appended (after a space) to every message unless `nofooter`.
    pub footer: String,
    /// Sender id used when a send names none.
    pub sender: String,
    pub fwd_to_inbox: bool,
    pub fwd_to_email: bool,
    pub fwd_to_mobile: bool,
    /// A number of exactly this many digits is local (0: no rule).
    pub local_length: u32,
    /// Digits that replace a local number's leading 0.
    pub replace_zero: String,
    /// How the account's sends count for opt-outs: marketing messages are
    /// not sent to numbers that said STOP.
    pub message_kind: Kind,
    /// One-time key for `ws_login`.
    #[schema(ignore)]
    pub login_key: Option<String>,
    pub last_login_ms: Option<i64>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl Account {
    /// The messaging account whose credit this account spends.
    pub fn credit_account(&self) -> String {
        format!("gateway-{}", self.uid)
    }

    /// Whether the token may be used from `ip`.
    pub fn ip_allowed(&self, ip: Option<IpAddr>) -> bool {
        if self.webservices_ip.is_empty() {
            return true;
        }
        let Some(ip) = ip else { return false };
        self.webservices_ip.iter().any(|net| net_contains(net, ip))
    }

    /// The account as the API shows it: no password hash, no login key.
    pub fn view(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.remove("password");
            o.remove("login_key");
            o.insert("status".into(), self.level.code().into());
            o.insert("credit_account".into(), self.credit_account().into());
        }
        v
    }
}

/// Whether `net` (an address or CIDR range) contains `ip`.
pub fn net_contains(net: &str, ip: IpAddr) -> bool {
    let (addr, bits) = match net.trim().split_once('/') {
        Some((a, b)) => (a, b.parse::<u32>().ok()),
        None => (net.trim(), None),
    };
    let Ok(addr) = addr.parse::<IpAddr>() else {
        return false;
    };
    // An IPv4 client may arrive as an IPv4-mapped IPv6 address.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    match (addr, ip) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let bits = bits.unwrap_or(32).min(32);
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let bits = bits.unwrap_or(128).min(128);
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// Whether `net` is an address or a CIDR range.
pub fn valid_net(net: &str) -> bool {
    let (addr, bits) = match net.trim().split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (net.trim(), None),
    };
    match addr.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => bits.is_none_or(|b| b.parse::<u32>().is_ok_and(|b| b <= 32)),
        Ok(IpAddr::V6(_)) => bits.is_none_or(|b| b.parse::<u32>().is_ok_and(|b| b <= 128)),
        Err(_) => false,
    }
}

/// An address or network in an API document, as [`valid_net`] reads it:
/// IPv4 with an optional prefix length, or IPv6.
#[derive(utoipa::ToSchema)]
#[schema(
    value_type = String,
    pattern = "^\\s*(((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(/(3[0-2]|[12]?[0-9]))?|(([0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,7}:|([0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,5}(:[0-9a-fA-F]{1,4}){1,2}|([0-9a-fA-F]{1,4}:){1,4}(:[0-9a-fA-F]{1,4}){1,3}|([0-9a-fA-F]{1,4}:){1,3}(:[0-9a-fA-F]{1,4}){1,4}|([0-9a-fA-F]{1,4}:){1,2}(:[0-9a-fA-F]{1,4}){1,5}|[0-9a-fA-F]{1,4}:(:[0-9a-fA-F]{1,4}){1,6}|:((:[0-9a-fA-F]{1,4}){1,7}|:))(/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?)\\s*$"
)]
#[allow(dead_code)]
struct Network(String);

/// A time zone in an API document: an IANA name from the embedded tz
/// database (any case), or a fixed offset (`Z`, `+7`, `+0700`, `+07:00`, at
/// most 14 hours), as [`zone`] reads them.
pub struct TimeZoneName;

impl utoipa::PartialSchema for TimeZoneName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
        let names = ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(engage_time::zone_names()));
        let offset = ObjectBuilder::new().schema_type(Type::String).pattern(Some(
            "^\\s*([zZ]|[+-]([0-9]|0[0-9]|1[0-4]|(0[0-9]|1[0-3]):?[0-5][0-9]|14:?00))\\s*$",
        ));
        Schema::OneOf(
            OneOfBuilder::new()
                .description(Some("An IANA time zone name or a fixed UTC offset"))
                .item(names)
                .item(offset)
                .build(),
        )
        .into()
    }
}

impl utoipa::ToSchema for TimeZoneName {}

/// A username as the gateway keeps it: lower case, letters, digits, `-`,
/// `.`, `_`, 3 to 64 characters.
pub fn normalize_username(raw: &str) -> Option<String> {
    let u = raw.trim().to_ascii_lowercase();
    let ok = (3..=64).contains(&u.len())
        && u.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
    ok.then_some(u)
}

/// What a new account needs, and what it may set.
#[derive(Debug, Clone, Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = GatewayAccountCreate)]
pub struct NewAccount {
    /// 3 to 64 letters, digits, `-`, `.` or `_` (kept in lower case).
    #[schema(pattern = "^\\s*[A-Za-z0-9._-]{3,64}\\s*$")]
    pub username: String,
    #[schema(min_length = 4, max_length = 128)]
    pub password: String,
    /// `password`, hashed by [`NewAccount::hashed`] before the write.
    #[serde(skip)]
    pub password_hash: Option<PasswordHash>,
    /// A subuser, and only a subuser, has a parent: an admin or a user.
    pub level: Option<Level>,
    pub parent: Option<String>,
    /// Up to 100 characters, not empty.
    #[schema(pattern = "^\\s*[^\\x00-\\x1f\\x7f-\\x9f\\s][^\\x00-\\x1f\\x7f-\\x9f]{0,99}\\s*$")]
    pub name: String,
    #[schema(value_type = crate::address::Email)]
    pub email: String,
    #[serde(default)]
    pub mobile: String,
    #[schema(value_type = Option<TimeZoneName>)]
    pub timezone: Option<String>,
    #[schema(pattern = "^\\s*[^\\x00-\\x1f\\x7f-\\x9f]{0,32}\\s*$")]
    pub language: Option<String>,
    /// Up to 30 letters, digits, spaces, `+ - _ @`.
    #[serde(default)]
    #[schema(pattern = "^\\s*[\\w\\s+@-]{0,30}\\s*$")]
    pub footer: String,
    /// Addresses or networks (`10.0.0.0/8`) the webservices take calls from.
    #[serde(default)]
    #[schema(inline, value_type = Vec<Network>)]
    pub webservices_ip: Vec<String>,
    pub message_kind: Option<Kind>,
}

/// Changes to an account's profile and configuration (`None`: keep).
#[derive(Debug, Clone, Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = GatewayAccountChanges)]
pub struct Changes {
    #[schema(min_length = 4, max_length = 128)]
    pub password: Option<String>,
    /// `password`, hashed by [`Changes::hashed`] before the write.
    #[serde(skip)]
    pub password_hash: Option<PasswordHash>,
    #[schema(pattern = "^\\s*[^\\x00-\\x1f\\x7f-\\x9f\\s][^\\x00-\\x1f\\x7f-\\x9f]{0,99}\\s*$")]
    pub name: Option<String>,
    #[schema(value_type = Option<crate::address::Email>)]
    pub email: Option<String>,
    pub mobile: Option<String>,
    #[schema(pattern = "^\\s*[^\\x00-\\x1f\\x7f-\\x9f]{0,250}\\s*$")]
    pub address: Option<String>,
    #[schema(pattern = "^\\s*[^\\x00-\\x1f\\x7f-\\x9f]{0,100}\\s*$")]
    pub city: Option<String>,
    #[schema(pattern = "^\\s*[^\\x00-\\x1f\\x7f-\\x9f]{0,100}\\s*$")]
    pub state: Option<String>,
    #[schema(pattern = "^\\s*[^\\x00-\\x1f\\x7f-\\x9f]{0,100}\\s*$")]
    pub country: Option<String>,
    #[schema(pattern = "^\\s*[^\\x00-\\x1f\\x7f-\\x9f]{0,20}\\s*$")]
    pub zipcode: Option<String>,
    #[schema(value_type = Option<TimeZoneName>)]
    pub timezone: Option<String>,
    #[schema(pattern = "^\\s*[^\\x00-\\x1f\\x7f-\\x9f]{0,32}\\s*$")]
    pub language: Option<String>,
    #[schema(pattern = "^\\s*[\\w\\s+@-]{0,30}\\s*$")]
    pub footer: Option<String>,
    /// Up to 16 digits (and `+`), or up to 11 characters with letters; empty: none.
    #[schema(pattern = "^\\s*([0-9+ _-]{1,16}|(?=.*[A-Za-z])[A-Za-z0-9+ _-]{1,11})?\\s*$")]
    pub sender: Option<String>,
    pub fwd_to_inbox: Option<bool>,
    pub fwd_to_email: Option<bool>,
    pub fwd_to_mobile: Option<bool>,
    #[schema(maximum = 15)]
    pub local_length: Option<u32>,
    #[schema(pattern = "^\\s*[0-9]{0,4}\\s*$")]
    pub replace_zero: Option<String>,
    pub webservices: Option<bool>,
    #[schema(inline, value_type = Option<Vec<Network>>)]
    pub webservices_ip: Option<Vec<String>>,
    pub message_kind: Option<Kind>,
    pub banned: Option<bool>,
}

fn invalid(m: impl Into<String>) -> GatewayError {
    GatewayError::Invalid(m.into())
}

fn check_password(p: &str) -> Result<(), GatewayError> {
    if (4..=128).contains(&p.chars().count()) {
        Ok(())
    } else {
        Err(invalid("a password is 4 to 128 characters"))
    }
}

fn check_email(e: &str) -> Result<(), GatewayError> {
    crate::address::check_email(e).map_err(|_| invalid(format!("`{e}` is not an e-mail address")))
}

fn check_text(field: &str, v: &str, max: usize) -> Result<(), GatewayError> {
    if v.chars().count() > max || v.chars().any(char::is_control) {
        Err(invalid(format!(
            "{field} is at most {max} characters, no control characters"
        )))
    } else {
        Ok(())
    }
}

/// The time zone stored as an account's (or a campaign's, or a person's)
/// `timezone`: an IANA name or a UTC offset, as [`engage_time::Zone`]
/// takes them. Stored values were checked when stored; one that no longer
/// parses (a zone removed from the tz database) reads as UTC.
pub fn zone(tz: &str) -> engage_time::Zone {
    engage_time::Zone::parse(tz).unwrap_or_else(|_| engage_time::Zone::utc())
}

/// A sender id: up to 16 digits (and `+`), or up to 11 characters with
/// letters.
pub fn valid_sender(s: &str) -> bool {
    let has_letter = s.chars().any(char::is_alphabetic);
    let allowed = s
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '+' | '-' | '_'));
    !s.trim().is_empty() && allowed && s.chars().count() <= if has_letter { 11 } else { 16 }
}

fn set_text(
    slot: &mut String,
    field: &str,
    v: Option<String>,
    max: usize,
) -> Result<(), GatewayError> {
    if let Some(v) = v {
        let v = v.trim().to_owned();
        check_text(field, &v, max)?;
        *slot = v;
    }
    Ok(())
}

impl NewAccount {
    /// The account with its password hashed (off the writer).
    pub async fn hashed(mut self) -> Result<NewAccount, GatewayError> {
        self.password_hash = Some(hash_password(&self.password).await?);
        Ok(self)
    }
}

impl Changes {
    /// The changes with a new password hashed (off the writer).
    pub async fn hashed(mut self) -> Result<Changes, GatewayError> {
        if let Some(p) = &self.password {
            self.password_hash = Some(hash_password(p).await?);
        }
        Ok(self)
    }

    /// Apply to `a`, checking every field; `a` is unchanged on error.
    pub fn apply(self, a: &mut Account) -> Result<(), GatewayError> {
        let mut n = a.clone();
        match (self.password_hash, self.password) {
            (Some(h), _) => n.password = h,
            (None, Some(p)) => {
                check_password(&p)?;
                n.password = PasswordHash::new(&p);
            }
            (None, None) => {}
        }
        set_text(&mut n.name, "name", self.name, 100)?;
        if n.name.is_empty() {
            return Err(invalid("name cannot be empty"));
        }
        if let Some(e) = self.email {
            check_email(e.trim())?;
            n.email = e.trim().to_owned();
        }
        if let Some(m) = self.mobile {
            let m = super::numbers::sanitize(&m);
            n.mobile = m;
        }
        set_text(&mut n.address, "address", self.address, 250)?;
        set_text(&mut n.city, "city", self.city, 100)?;
        set_text(&mut n.state, "state", self.state, 100)?;
        set_text(&mut n.country, "country", self.country, 100)?;
        set_text(&mut n.zipcode, "zipcode", self.zipcode, 20)?;
        if let Some(tz) = self.timezone {
            engage_time::Zone::parse(tz.trim()).map_err(|e| invalid(format!("timezone {e}")))?;
            n.timezone = tz.trim().to_owned();
        }
        set_text(&mut n.language, "language", self.language, 32)?;
        if let Some(f) = self.footer {
            let f = f.trim().to_owned();
            let ok = f
                .chars()
                .all(|c| c.is_alphanumeric() || c.is_whitespace() || "+-_@".contains(c));
            if !ok || f.chars().count() > 30 {
                return Err(invalid(
                    "a footer is up to 30 letters, digits, spaces, + - _ @",
                ));
            }
            n.footer = f;
        }
        if let Some(s) = self.sender {
            let s = s.trim().to_owned();
            if !s.is_empty() && !valid_sender(&s) {
                return Err(invalid(
                    "a sender id is up to 16 digits or up to 11 letters and digits",
                ));
            }
            n.sender = s;
        }
        n.fwd_to_inbox = self.fwd_to_inbox.unwrap_or(n.fwd_to_inbox);
        n.fwd_to_email = self.fwd_to_email.unwrap_or(n.fwd_to_email);
        n.fwd_to_mobile = self.fwd_to_mobile.unwrap_or(n.fwd_to_mobile);
        if let Some(l) = self.local_length {
            if l > 15 {
                return Err(invalid("local_length is 0 to 15 digits"));
            }
            n.local_length = l;
        }
        if let Some(z) = self.replace_zero {
            let z = z.trim().to_owned();
            if z.len() > 4 || !z.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid("replace_zero is up to 4 digits, e.g. 62"));
            }
            n.replace_zero = z;
        }
        n.webservices = self.webservices.unwrap_or(n.webservices);
        if let Some(ips) = self.webservices_ip {
            if let Some(bad) = ips.iter().find(|n| !valid_net(n)) {
                return Err(invalid(format!(
                    "`{bad}` is not an IP address or CIDR range"
                )));
            }
            n.webservices_ip = ips.iter().map(|s| s.trim().to_owned()).collect();
        }
        n.message_kind = self.message_kind.unwrap_or(n.message_kind);
        n.banned = self.banned.unwrap_or(n.banned);
        *a = n;
        Ok(())
    }
}

/// Account `username` of `tenant`.
pub fn get(src: &impl Reader, tenant: &str, username: &str) -> Result<Option<Account>, StoreError> {
    let Some(u) = normalize_username(username) else {
        return Ok(None);
    };
    src.get(ACCOUNTS, &key(&[tenant, &u]))
}

/// The tenant's accounts in username order.
pub fn list(src: &impl Reader, tenant: &str) -> Result<Vec<Account>, StoreError> {
    Ok(src
        .scan_page::<Account>(ACCOUNTS, &prefix(&[tenant]), None, MAX_ACCOUNTS, false)?
        .into_iter()
        .map(|(_, a)| a)
        .collect())
}

/// The tenant and account a token belongs to.
pub fn by_token(src: &impl Reader, token: &str) -> Result<Option<(String, Account)>, StoreError> {
    if token.is_empty() || token.len() > 128 {
        return Ok(None);
    }
    let Some((tenant, username)) = src.get::<(String, String)>(TOKENS, token)? else {
        return Ok(None);
    };
    Ok(get(src, &tenant, &username)?
        .filter(|a| a.token.as_deref() == Some(token))
        .map(|a| (tenant, a)))
}

/// The accounts (with tenants) a login name (username or e-mail) can mean:
/// in `tenant` when given, else in any tenant.
pub fn by_login(
    src: &impl Reader,
    tenant: Option<&str>,
    login: &str,
) -> Result<Vec<(String, Account)>, StoreError> {
    let login = login.trim().to_ascii_lowercase();
    if login.is_empty() || login.len() > 254 {
        return Ok(Vec::new());
    }
    let p = match tenant {
        Some(t) => key(&[&login, t]),
        None => prefix(&[&login]),
    };
    let mut out = Vec::new();
    for (k, username) in src.scan_page::<String>(LOGINS, &p, None, 16, false)? {
        let t = engage_store::last_part(&k);
        if tenant.is_some_and(|want| want != t) {
            continue;
        }
        if let Some(a) = get(src, t, &username)? {
            out.push((t.to_owned(), a));
        }
    }
    Ok(out)
}

/// Write `a`, keeping the token and login indexes in step with `old`.
pub fn save(
    tx: &mut Tx,
    tenant: &str,
    old: Option<&Account>,
    a: &Account,
) -> Result<(), StoreError> {
    if let Some(old) = old {
        if let Some(t) = &old.token
            && old.token != a.token
        {
            tx.remove(TOKENS, t)?;
        }
        if !old.email.is_empty() && !old.email.eq_ignore_ascii_case(&a.email) {
            tx.remove(LOGINS, &key(&[&old.email.to_ascii_lowercase(), tenant]))?;
        }
    }
    if let Some(t) = &a.token {
        tx.put(TOKENS, t, &(tenant, &a.username))?;
    }
    tx.put(LOGINS, &key(&[&a.username, tenant]), &a.username)?;
    if !a.email.is_empty() {
        tx.put(
            LOGINS,
            &key(&[&a.email.to_ascii_lowercase(), tenant]),
            &a.username,
        )?;
    }
    tx.put(ACCOUNTS, &key(&[tenant, &a.username]), a)
}

/// Create an account (with a webservices token, enabled).
pub fn create(tx: &mut Tx, tenant: &str, n: NewAccount, now: i64) -> Result<Account, GatewayError> {
    let username = normalize_username(&n.username)
        .ok_or_else(|| invalid("a username is 3 to 64 letters, digits, -, . or _"))?;
    if get(tx, tenant, &username)?.is_some() {
        return Err(GatewayError::AccountExists(username));
    }
    if !engage_store::below_cap(tx, ACCOUNTS, &prefix(&[tenant]), MAX_ACCOUNTS)? {
        return Err(invalid(format!(
            "a tenant keeps at most {MAX_ACCOUNTS} gateway accounts; remove one first"
        )));
    }
    let password = match n.password_hash {
        Some(h) => h,
        None => {
            check_password(&n.password)?;
            PasswordHash::new(&n.password)
        }
    };
    let level = n.level.unwrap_or(Level::User);
    let parent = match (&n.parent, level) {
        (Some(p), Level::Subuser) => {
            let parent = get(tx, tenant, p)?.ok_or_else(|| GatewayError::NoAccount(p.clone()))?;
            if parent.level == Level::Subuser {
                return Err(invalid("a subuser's parent is an admin or a user"));
            }
            Some(parent.username)
        }
        (None, Level::Subuser) => return Err(invalid("a subuser needs a parent")),
        (Some(_), _) => return Err(invalid("only a subuser has a parent")),
        (None, _) => None,
    };
    let mut a = Account {
        uid: tx.next_seq(tenant, "gateway_uid")?,
        username,
        level,
        parent,
        password,
        token: Some(random_hex(16)),
        webservices: true,
        webservices_ip: Vec::new(),
        banned: false,
        name: String::new(),
        email: String::new(),
        mobile: String::new(),
        address: String::new(),
        city: String::new(),
        state: String::new(),
        country: String::new(),
        zipcode: String::new(),
        timezone: "+0000".into(),
        language: "en_US".into(),
        footer: String::new(),
        sender: String::new(),
        fwd_to_inbox: true,
        fwd_to_email: false,
        fwd_to_mobile: false,
        local_length: 0,
        replace_zero: String::new(),
        message_kind: n.message_kind.unwrap_or(Kind::Marketing),
        login_key: None,
        last_login_ms: None,
        created_at_ms: now,
        updated_at_ms: now,
    };
    Changes {
        name: Some(n.name),
        email: Some(n.email),
        mobile: Some(n.mobile),
        timezone: n.timezone,
        language: n.language,
        footer: Some(n.footer),
        webservices_ip: Some(n.webservices_ip),
        ..Changes::default()
    }
    .apply(&mut a)?;
    save(tx, tenant, None, &a)?;
    Ok(a)
}

/// Change account `username` with `f`, which may fail to leave it as it was.
pub fn update(
    tx: &mut Tx,
    tenant: &str,
    username: &str,
    now: i64,
    f: impl FnOnce(&mut Account) -> Result<(), GatewayError>,
) -> Result<Account, GatewayError> {
    let old = get(tx, tenant, username)?.ok_or_else(|| GatewayError::NoAccount(username.into()))?;
    let mut a = old.clone();
    f(&mut a)?;
    a.updated_at_ms = now;
    save(tx, tenant, Some(&old), &a)?;
    Ok(a)
}

/// Remove account `username`. Its subusers lose their parent; its credit
/// stays in the ledger under its credit account (a uid is never reused).
pub fn remove(tx: &mut Tx, tenant: &str, username: &str) -> Result<Account, GatewayError> {
    let a = get(tx, tenant, username)?.ok_or_else(|| GatewayError::NoAccount(username.into()))?;
    if let Some(t) = &a.token {
        tx.remove(TOKENS, t)?;
    }
    tx.remove(LOGINS, &key(&[&a.username, tenant]))?;
    if !a.email.is_empty() {
        tx.remove(LOGINS, &key(&[&a.email.to_ascii_lowercase(), tenant]))?;
    }
    tx.remove(ACCOUNTS, &key(&[tenant, &a.username]))?;
    super::phonebook::remove_all(tx, tenant, &a.username)?;
    for mut child in list(tx, tenant)? {
        if child.parent.as_deref() == Some(a.username.as_str()) {
            let old = child.clone();
            child.parent = None;
            save(tx, tenant, Some(&old), &child)?;
        }
    }
    Ok(a)
}

/// A fresh token (the old one stops working).
pub fn new_token() -> String {
    random_hex(16)
}

/// Set (or, with `None`, revoke) `username`'s webservices token.
pub fn set_token(
    tx: &mut Tx,
    tenant: &str,
    username: &str,
    token: Option<String>,
    now: i64,
) -> Result<Account, GatewayError> {
    update(tx, tenant, username, now, |a| {
        a.token = token;
        Ok(())
    })
}

/// Remove `target` on `actor`'s behalf: an account cannot remove itself.
pub fn remove_by(
    tx: &mut Tx,
    tenant: &str,
    actor: &str,
    target: &str,
) -> Result<Account, GatewayError> {
    if get(tx, tenant, target)?.is_some() && actor == target {
        return Err(invalid("an account cannot remove itself"));
    }
    remove(tx, tenant, target)
}

/// Make `parent` the parent of `username`: only a subuser has a parent,
/// and the parent is an admin or a user. Both accounts are read in the
/// transaction that writes, so a concurrent change cannot slip between.
pub fn set_parent(
    tx: &mut Tx,
    tenant: &str,
    username: &str,
    parent: &str,
    now: i64,
) -> Result<Account, GatewayError> {
    let p = get(tx, tenant, parent)?.ok_or_else(|| GatewayError::NoAccount(parent.into()))?;
    update(tx, tenant, username, now, |a| {
        if a.level != Level::Subuser || p.level == Level::Subuser {
            return Err(invalid(
                "only a subuser has a parent, and the parent is an admin or a user",
            ));
        }
        a.parent = Some(p.username.clone());
        Ok(())
    })
}

/// Ban (or unban) `target` on `actor`'s behalf: the state must change, and
/// an account cannot ban itself.
pub fn set_banned(
    tx: &mut Tx,
    tenant: &str,
    actor: &str,
    target: &str,
    ban: bool,
    now: i64,
) -> Result<Account, GatewayError> {
    update(tx, tenant, target, now, |a| {
        if a.banned == ban {
            return Err(invalid(if ban {
                "the account is already banned"
            } else {
                "the account is not banned"
            }));
        }
        if ban && a.username == actor {
            return Err(invalid("an account cannot ban itself"));
        }
        a.banned = ban;
        Ok(())
    })
}

/// Use up `username`'s login key: true (and the login recorded) when `key`
/// is it and the account is not banned. The key is gone either way, so a
/// guess costs the key.
pub fn use_login_key(
    tx: &mut Tx,
    tenant: &str,
    username: &str,
    key: &str,
    now: i64,
) -> Result<bool, GatewayError> {
    let mut used = false;
    update(tx, tenant, username, now, |a| {
        let given = a.login_key.take();
        used = !key.is_empty()
            && !a.banned
            && given
                .as_deref()
                .is_some_and(|g| engage_store::ids::constant_time_eq(g.as_bytes(), key.as_bytes()));
        if used {
            a.last_login_ms = Some(now);
        }
        Ok(())
    })?;
    Ok(used)
}

/// [`use_login_key`] in a write of its own: a browser's `ws_login`.
pub async fn log_in(
    store: &engage_store::Store,
    tenant: &str,
    username: &str,
    key: &str,
    now: i64,
) -> Result<bool, GatewayError> {
    let (t, u, k) = (tenant.to_owned(), username.to_owned(), key.to_owned());
    store
        .write(move |tx| use_login_key(tx, &t, &u, &k, now))
        .await
}

/// Give `username` a new login key (for `ws_login`); the old one stops
/// working.
pub fn new_login_key(
    tx: &mut Tx,
    tenant: &str,
    username: &str,
    key: &str,
    now: i64,
) -> Result<Account, GatewayError> {
    update(tx, tenant, username, now, |a| {
        a.login_key = Some(key.to_owned());
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify() {
        let h = PasswordHash::new("s3cret");
        assert!(h.verify("s3cret"));
        assert!(!h.verify("s3cres"));
    }

    #[test]
    fn pbkdf2_matches_rfc_7914_vector() {
        // RFC 7914 §11: PBKDF2-HMAC-SHA256 ("passwd", "salt", 1), first 32 bytes.
        assert_eq!(
            pbkdf2("passwd", "salt", 1),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
    }

    #[test]
    fn networks_match() {
        let ip = |s: &str| {
            s.parse::<IpAddr>()
                .ok()
                .unwrap_or(IpAddr::from([0, 0, 0, 0]))
        };
        assert!(net_contains("127.0.0.1", ip("127.0.0.1")));
        assert!(net_contains("10.0.0.0/8", ip("10.20.30.40")));
        assert!(!net_contains("10.0.0.0/8", ip("11.0.0.1")));
        assert!(net_contains("127.0.0.0/8", ip("::ffff:127.0.0.1")));
        assert!(net_contains("2001:db8::/32", ip("2001:db8::1")));
        assert!(!net_contains("junk", ip("127.0.0.1")));
        assert!(valid_net("192.168.0.0/16") && !valid_net("192.168.0.0/33"));
    }

    #[test]
    fn usernames_and_offsets() {
        assert_eq!(normalize_username(" Anton ").as_deref(), Some("anton"));
        assert_eq!(normalize_username("a b"), None);
        assert_eq!(zone("-0330").offset_seconds_at(0), -210 * 60);
        assert_eq!(
            zone("Europe/Berlin").offset_seconds_at(1_782_000_000_000),
            7200
        );
        assert_eq!(zone("no/such-zone").offset_seconds_at(0), 0);
        assert!(valid_sender("BSG") && valid_sender("+6281234") && !valid_sender("TooLongSender"));
    }
}
