//! Players: a tenant's end users, under the id the client chose.
//!
//! A player carries a profile (username, email, a phone number kept in
//! E.164, image, names, free-form attributes). Balances, badges and action
//! counts belong to the ledger and actions modules and are keyed by the same
//! id; deleting a player removes the profile and keeps that history, which
//! is an audit trail.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use engage_store::ids::valid_id;
use engage_store::{Reader, StoreError, Table, Tx, key, prefix};

const PLAYERS: Table = Table::new("players");
/// (tenant, username) → player id: usernames are unique in a tenant.
const USERNAMES: Table = Table::new("player_usernames");

/// What can go wrong with players.
#[derive(Debug, thiserror::Error)]
pub enum PlayerError {
    #[error("a player id is 1 to 128 characters with no control characters")]
    InvalidId,
    #[error("player `{0}` already exists")]
    Exists(String),
    #[error("player `{0}` does not exist")]
    NotFound(String),
    #[error(
        "`{0}` is not a phone number in international format (+ country code and number, e.g. +6681234567)"
    )]
    InvalidPhone(String),
    #[error("`{0}` is not an email address")]
    InvalidEmail(String),
    #[error("username `{0}` is taken by another player")]
    UsernameTaken(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A player's profile.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Player {
    pub id: String,
    pub username: Option<String>,
    pub email: Option<String>,
    /// E.164: `+` and 7 to 15 digits.
    pub phone: Option<String>,
    pub image: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub nickname: Option<String>,
    pub gender: Option<String>,
    pub birth_date: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, serde_json::Value>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// Who reads a player: a caller with only the tenant's API key (which
/// browser and mobile apps embed, so anyone may hold it) sees the public
/// profile; a caller with an access token (a server) sees everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Public,
    Private,
}

impl Player {
    /// The player as `audience` may see it: contact details (e-mail, phone
    /// number) and attributes are private.
    pub fn for_audience(mut self, audience: Audience) -> Player {
        if audience == Audience::Public {
            self.email = None;
            self.phone = None;
            self.attributes.clear();
        }
        self
    }
}

/// [`register`] or [`update`]: what a compatible API's profile write does.
pub type ProfileWrite = fn(&mut Tx<'_>, &str, &str, Profile, i64) -> Result<Player, PlayerError>;

/// Fields to set on register or update; `None` keeps what is stored (an
/// update without a phone number keeps the phone number).
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    #[schema(value_type = Option<engage_store::ids::ClientId>)]
    pub username: Option<String>,
    #[schema(value_type = Option<engage_messaging::address::Email>)]
    pub email: Option<String>,
    #[schema(value_type = Option<engage_messaging::address::Phone>)]
    pub phone: Option<String>,
    #[schema(max_length = 1024, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub image: Option<String>,
    #[schema(max_length = 1024, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub first_name: Option<String>,
    #[schema(max_length = 1024, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub last_name: Option<String>,
    #[schema(max_length = 1024, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub nickname: Option<String>,
    #[schema(max_length = 1024, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub gender: Option<String>,
    #[schema(max_length = 1024, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub birth_date: Option<String>,
    /// Merged into the stored attributes; a `null` value removes one. At
    /// most 100 keys of 1 to 128 characters without control characters.
    #[schema(schema_with = attributes_schema)]
    pub attributes: Option<BTreeMap<String, serde_json::Value>>,
}

/// `attributes` in an API document, as [`Profile::validate`] reads them.
fn attributes_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
        .max_properties(Some(100))
        .property_names(Some(engage_store::ids::ClientId::object()))
        .build()
}

use engage_messaging::address::{check_email, normalize_phone};

impl From<engage_messaging::address::AddressError> for PlayerError {
    fn from(e: engage_messaging::address::AddressError) -> Self {
        use engage_messaging::address::AddressError;
        match e {
            AddressError::Phone(p) => PlayerError::InvalidPhone(p),
            AddressError::Email(e) => PlayerError::InvalidEmail(e),
        }
    }
}

fn check_text(field: &str, v: &Option<String>) -> Result<(), PlayerError> {
    match v {
        Some(s) if s.chars().count() > 1024 || s.chars().any(char::is_control) => {
            Err(PlayerError::Invalid(format!(
                "`{field}` must be at most 1024 characters, without control characters"
            )))
        }
        _ => Ok(()),
    }
}

impl Profile {
    /// Validate and normalise in place (phone to E.164).
    fn validate(&mut self) -> Result<(), PlayerError> {
        if let Some(p) = &self.phone {
            self.phone = Some(normalize_phone(p)?);
        }
        if let Some(e) = &self.email {
            check_email(e)?;
        }
        if let Some(u) = &self.username
            && !valid_id(u)
        {
            return Err(PlayerError::Invalid(
                "`username` must be 1 to 128 characters without control characters".into(),
            ));
        }
        for (f, v) in [
            ("image", &self.image),
            ("first_name", &self.first_name),
            ("last_name", &self.last_name),
            ("nickname", &self.nickname),
            ("gender", &self.gender),
            ("birth_date", &self.birth_date),
        ] {
            check_text(f, v)?;
        }
        if let Some(a) = &self.attributes
            && (a.len() > 100 || a.keys().any(|k| !valid_id(k)))
        {
            return Err(PlayerError::Invalid(
                "`attributes` holds at most 100 keys of 1 to 128 characters".into(),
            ));
        }
        Ok(())
    }

    fn apply(self, p: &mut Player) {
        macro_rules! set {
            ($($f:ident),*) => {$( if let Some(v) = self.$f { p.$f = Some(v); } )*};
        }
        set!(
            username, email, phone, image, first_name, last_name, nickname, gender, birth_date
        );
        for (k, v) in self.attributes.unwrap_or_default() {
            if v.is_null() {
                p.attributes.remove(&k);
            } else {
                p.attributes.insert(k, v);
            }
        }
    }
}

fn player_key(tenant: &str, id: &str) -> String {
    key(&[tenant, id])
}

/// The player `id`, if registered.
pub fn find(src: &impl Reader, tenant: &str, id: &str) -> Result<Option<Player>, StoreError> {
    src.get(PLAYERS, &player_key(tenant, id))
}

/// The player `id`, or [`PlayerError::NotFound`].
pub fn get(src: &impl Reader, tenant: &str, id: &str) -> Result<Player, PlayerError> {
    find(src, tenant, id)?.ok_or_else(|| PlayerError::NotFound(id.to_owned()))
}

/// Whether player `id` is registered.
pub fn exists(src: &impl Reader, tenant: &str, id: &str) -> Result<bool, StoreError> {
    Ok(src.get_raw(PLAYERS, &player_key(tenant, id))?.is_some())
}

fn claim_username(
    tx: &mut Tx,
    tenant: &str,
    id: &str,
    old: Option<&str>,
    new: Option<&str>,
) -> Result<(), PlayerError> {
    if old == new {
        return Ok(());
    }
    if let Some(u) = new {
        let k = key(&[tenant, u]);
        if let Some(owner) = tx.get_raw(USERNAMES, &k)?
            && owner != id.as_bytes()
        {
            return Err(PlayerError::UsernameTaken(u.to_owned()));
        }
    }
    // Checks done; writes follow.
    if let Some(u) = old {
        tx.remove(USERNAMES, &key(&[tenant, u]))?;
    }
    if let Some(u) = new {
        tx.put_raw(USERNAMES, &key(&[tenant, u]), id.as_bytes())?;
    }
    Ok(())
}

/// Register a new player (inside a write job).
pub fn register(
    tx: &mut Tx,
    tenant: &str,
    id: &str,
    mut profile: Profile,
    now_ms: i64,
) -> Result<Player, PlayerError> {
    if !valid_id(id) {
        return Err(PlayerError::InvalidId);
    }
    profile.validate()?;
    if exists(tx, tenant, id)? {
        return Err(PlayerError::Exists(id.to_owned()));
    }
    let mut p = Player {
        id: id.to_owned(),
        username: None,
        email: None,
        phone: None,
        image: None,
        first_name: None,
        last_name: None,
        nickname: None,
        gender: None,
        birth_date: None,
        attributes: BTreeMap::new(),
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
    };
    profile.apply(&mut p);
    claim_username(tx, tenant, id, None, p.username.as_deref())?;
    tx.put(PLAYERS, &player_key(tenant, id), &p)?;
    Ok(p)
}

/// Change a player's profile (inside a write job).
pub fn update(
    tx: &mut Tx,
    tenant: &str,
    id: &str,
    mut profile: Profile,
    now_ms: i64,
) -> Result<Player, PlayerError> {
    profile.validate()?;
    let mut p = get(tx, tenant, id)?;
    let old_username = p.username.clone();
    profile.apply(&mut p);
    p.updated_at_ms = now_ms;
    claim_username(
        tx,
        tenant,
        id,
        old_username.as_deref(),
        p.username.as_deref(),
    )?;
    tx.put(PLAYERS, &player_key(tenant, id), &p)?;
    Ok(p)
}

/// Remove a player's profile (inside a write job).
pub fn delete(tx: &mut Tx, tenant: &str, id: &str) -> Result<(), PlayerError> {
    let p = get(tx, tenant, id)?;
    claim_username(tx, tenant, id, p.username.as_deref(), None)?;
    tx.remove(PLAYERS, &player_key(tenant, id))?;
    Ok(())
}

/// Players in id order, after the cursor (a player id).
pub fn list(
    src: &impl Reader,
    tenant: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<Player>, StoreError> {
    let p = prefix(&[tenant]);
    let after = after.map(|a| player_key(tenant, a));
    Ok(src
        .scan_page::<Player>(PLAYERS, &p, after.as_deref(), limit, false)?
        .into_iter()
        .map(|(_, v)| v)
        .collect())
}

/// How many players one search request examines at most: a search is a
/// scan in id order, so its cost is bounded by this, not by the tenant's
/// size. The answer's cursor continues where it stopped.
pub const SEARCH_EXAMINED: usize = 5_000;

/// Whether `p` matches the search `q`: a case-insensitive part of its id,
/// username, names or e-mail, or (with three digits or more) of the digits
/// of its phone number.
pub fn matches(p: &Player, q: &str) -> bool {
    let q = q.trim().to_lowercase();
    if q.is_empty() {
        return true;
    }
    let text = [
        Some(&p.id),
        p.username.as_ref(),
        p.first_name.as_ref(),
        p.last_name.as_ref(),
        p.nickname.as_ref(),
        p.email.as_ref(),
    ];
    if text
        .into_iter()
        .flatten()
        .any(|t| t.to_lowercase().contains(&q))
    {
        return true;
    }
    let digits: String = q.chars().filter(char::is_ascii_digit).collect();
    let full = [p.first_name.as_deref(), p.last_name.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    (digits.len() >= 3
        && p.phone.as_deref().is_some_and(|ph| {
            ph.chars()
                .filter(char::is_ascii_digit)
                .collect::<String>()
                .contains(&digits)
        }))
        || (q.contains(' ') && full.contains(&q))
}

/// Up to `limit` players matching `q` (see [`matches`]) in id order, after
/// the id `after`, examining at most [`SEARCH_EXAMINED`] players. Also
/// the cursor to continue from (`None` when the scan reached the end).
pub fn search(
    src: &impl Reader,
    tenant: &str,
    q: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<Player>, Option<String>), StoreError> {
    const PAGE: usize = 200;
    let p = prefix(&[tenant]);
    let mut cursor = after.map(|a| player_key(tenant, a));
    let mut found = Vec::new();
    let mut examined = 0;
    loop {
        let page = src.scan_page::<Player>(PLAYERS, &p, cursor.as_deref(), PAGE, false)?;
        let end = page.len() < PAGE;
        for (k, player) in page {
            examined += 1;
            cursor = Some(k);
            let id = player.id.clone();
            if matches(&player, q) {
                found.push(player);
            }
            if found.len() >= limit || examined >= SEARCH_EXAMINED {
                return Ok((found, Some(id)));
            }
        }
        if end {
            return Ok((found, None));
        }
    }
}

/// Post an entry to a registered player's account (not a messaging
/// account): what every API's credit and debit does.
pub fn post_points(
    tx: &mut Tx,
    tenant: &str,
    p: &engage_ledger::Posting,
    now_ms: i64,
) -> Result<engage_ledger::Entry, engage_ledger::LedgerError> {
    if !exists(tx, tenant, p.player)? {
        return Err(engage_ledger::LedgerError::PlayerNotFound(
            p.player.to_owned(),
        ));
    }
    engage_ledger::post(tx, tenant, p, now_ms)
}
