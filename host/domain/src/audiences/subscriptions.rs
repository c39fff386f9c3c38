//! Sign-up sources and subscriptions.

use serde::{Deserialize, Serialize};

use engage_messaging::optouts;
use engage_store::{Reader, StoreError, Table, Tx, key, prefix};

/// (tenant, source id) → [`Source`].
const SOURCES: Table = Table::new("audience_sources");
/// (tenant, channel, address, type) → [`Record`].
const SUBSCRIPTIONS: Table = Table::new("audience_subscriptions");

/// A subscription's type.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SubType {
    Marketing,
    Transactional,
}

/// A subscription's channel.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Channel {
    Text,
    Email,
}

impl SubType {
    fn as_str(self) -> &'static str {
        match self {
            SubType::Marketing => "MARKETING",
            SubType::Transactional => "TRANSACTIONAL",
        }
    }
}

impl Channel {
    fn as_str(self) -> &'static str {
        match self {
            Channel::Text => "TEXT",
            Channel::Email => "EMAIL",
        }
    }
}

/// One (type, channel) pair.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    #[serde(rename = "type")]
    pub kind: SubType,
    pub channel: Channel,
}

/// Where subscribers sign up (a form, a checkout box, an import): the
/// subscription types it creates.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SignUpSource)]
pub struct Source {
    /// The path's id (what is sent here is ignored).
    #[serde(default)]
    pub id: String,
    /// Not empty, not only spaces.
    #[schema(pattern = "\\S")]
    pub name: String,
    /// Types created on each channel the subscriber gives an address for.
    #[serde(default = "marketing")]
    #[schema(min_items = 1)]
    pub types: Vec<SubType>,
}

fn marketing() -> Vec<SubType> {
    vec![SubType::Marketing]
}

/// The state of one subscription.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub subscribed: bool,
    pub source: Option<String>,
    pub at_ms: i64,
}

/// What can go wrong with subscriptions.
#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    #[error("{0}")]
    Invalid(String),
    #[error("no sign-up source `{0}`; create it with PUT /v1/audiences/sources/{0}")]
    NoSource(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A person as the APIs name them: a phone, an e-mail, or both.
#[derive(
    Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema, utoipa::IntoParams,
)]
#[into_params(parameter_in = Query)]
pub struct Person {
    /// E.164, or ten digits for a North American number. A person is
    /// named by a phone or an e-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<PersonPhone>)]
    #[param(value_type = Option<PersonPhone>)]
    pub phone: Option<String>,
    /// An e-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<PersonEmail>)]
    #[param(value_type = Option<PersonEmail>)]
    pub email: Option<String>,
}

/// A phone in E.164; ten digits are a North American number (`+1`).
pub fn normalize(phone: &str) -> Result<String, SubscriptionError> {
    let bad = || SubscriptionError::Invalid(format!("`{phone}` is not a phone number"));
    let number: String = phone
        .trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '.' | '-' | '(' | ')'))
        .collect();
    if !number.chars().all(|c| c.is_ascii_digit() || c == '+') {
        return Err(bad());
    }
    let north_american = number.len() == 10 && !number.starts_with(['+', '0']);
    let e164 = if north_american {
        engage_messaging::gateway::numbers::to_e164(&format!("1{number}"))
    } else {
        engage_messaging::gateway::numbers::to_e164(&number)
    };
    e164.ok_or_else(bad)
}

/// A person's phone in an API document, exactly as [`normalize`] reads it
/// (or blank: none): E.164 with `+` or `00`, or the digits alone (ten for
/// a North American number), spaces, dots, dashes and brackets dropped.
pub struct PersonPhone;

impl utoipa::PartialSchema for PersonPhone {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("A phone number: `+` or `00` and the country code, or the digits alone (ten for a North American number); blank: none"))
            .pattern(Some(
                "^\\s*$|^\\s*[ .()-]*(\\+|0[ .()-]*0)?[ .()-]*[1-9]([ .()-]*[0-9]){6,14}[ .()-]*\\s*$",
            ))
            .into()
    }
}

impl utoipa::ToSchema for PersonPhone {}

/// A person's e-mail in an API document: an address ([`check_email`]'s),
/// spaces around it dropped, or blank: none.
///
/// [`check_email`]: engage_messaging::address::check_email
pub struct PersonEmail;

impl utoipa::PartialSchema for PersonEmail {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        const C: &str = "\\s\\x00-\\x1f\\x7f-\\x9f";
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("An e-mail address; blank: none"))
            .max_length(Some(254))
            .pattern(Some(format!(
                "^\\s*$|^\\s*[^@{C}]+@[^.{C}][^{C}]*\\.[^{C}]*[^.{C}]\\s*$"
            )))
            .into()
    }
}

impl utoipa::ToSchema for PersonEmail {}

/// The person's addresses: E.164 phone and lower-case e-mail.
fn addresses(p: &Person) -> Result<(Option<String>, Option<String>), SubscriptionError> {
    let phone = p
        .phone
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(normalize)
        .transpose()?;
    let email =
        match p.email.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            Some(e) => Some(engage_messaging::address::normalize_email(e).map_err(|_| {
                SubscriptionError::Invalid(format!("`{e}` is not an e-mail address"))
            })?),
            None => None,
        };
    if phone.is_none() && email.is_none() {
        return Err(SubscriptionError::Invalid(
            "a user needs a phone or an email".into(),
        ));
    }
    Ok((phone, email))
}

fn record_key(tenant: &str, channel: Channel, address: &str, kind: SubType) -> String {
    key(&[tenant, channel.as_str(), address, kind.as_str()])
}

/// The most sign-up sources a tenant keeps.
pub const MAX_SOURCES: usize = 1000;

pub fn put_source(tx: &mut Tx, tenant: &str, mut s: Source) -> Result<Source, SubscriptionError> {
    if !engage_store::ids::valid_id(&s.id) || s.name.trim().is_empty() || s.types.is_empty() {
        return Err(SubscriptionError::Invalid(
            "a source has an id, a name and at least one type".into(),
        ));
    }
    s.types.sort();
    s.types.dedup();
    if tx.get_raw(SOURCES, &key(&[tenant, &s.id]))?.is_none()
        && !engage_store::below_cap(tx, SOURCES, &prefix(&[tenant]), MAX_SOURCES)?
    {
        return Err(SubscriptionError::Invalid(format!(
            "a tenant keeps at most {MAX_SOURCES} sign-up sources; remove one first"
        )));
    }
    tx.put(SOURCES, &key(&[tenant, &s.id]), &s)?;
    Ok(s)
}

pub fn sources(src: &impl Reader, tenant: &str) -> Result<Vec<Source>, StoreError> {
    Ok(src
        .scan_page::<Source>(SOURCES, &prefix(&[tenant]), None, MAX_SOURCES, false)?
        .into_iter()
        .map(|(_, s)| s)
        .collect())
}

/// What subscribing did to one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Created {
    NewlyCreated,
    AlreadySubscribed,
}

/// What unsubscribing did to one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Removed {
    NewlyUnsubscribed,
    AlreadyUnsubscribed,
}

/// The person's channels with an address, TEXT first.
fn channels(phone: &Option<String>, email: &Option<String>) -> Vec<(Channel, String)> {
    let mut v = Vec::new();
    if let Some(p) = phone {
        v.push((Channel::Text, p.clone()));
    }
    if let Some(e) = email {
        v.push((Channel::Email, e.clone()));
    }
    v
}

/// Subscribe the person through `source` to its types on every channel
/// they gave an address for. Fresh MARKETING consent takes the address
/// (a phone for TEXT, an e-mail for EMAIL) off the opt-out list.
pub fn subscribe(
    tx: &mut Tx,
    tenant: &str,
    person: &Person,
    source: &str,
    now: i64,
) -> Result<Vec<(Subscription, Created)>, SubscriptionError> {
    let s: Source = tx
        .get(SOURCES, &key(&[tenant, source]))?
        .ok_or_else(|| SubscriptionError::NoSource(source.to_owned()))?;
    let (phone, email) = addresses(person)?;
    let mut out = Vec::new();
    for kind in &s.types {
        for (channel, address) in channels(&phone, &email) {
            let k = record_key(tenant, channel, &address, *kind);
            let was = tx.get::<Record>(SUBSCRIPTIONS, &k)?;
            let opted_out = *kind == SubType::Marketing && optouts::contains(tx, tenant, &address)?;
            let status = if was.as_ref().is_some_and(|r| r.subscribed) && !opted_out {
                Created::AlreadySubscribed
            } else {
                tx.put(
                    SUBSCRIPTIONS,
                    &k,
                    &Record {
                        subscribed: true,
                        source: Some(s.id.clone()),
                        at_ms: now,
                    },
                )?;
                if opted_out {
                    optouts::remove(tx, tenant, &address)?;
                }
                Created::NewlyCreated
            };
            out.push((
                Subscription {
                    kind: *kind,
                    channel,
                },
                status,
            ));
        }
    }
    out.sort_by_key(|(s, _)| (s.channel, s.kind));
    Ok(out)
}

/// Unsubscribe the person from `which` (none: every subscription they
/// have). MARKETING puts the address on the opt-out list, which every
/// marketing send checks (a phone for TEXT, an e-mail for EMAIL).
pub fn unsubscribe(
    tx: &mut Tx,
    tenant: &str,
    person: &Person,
    which: Option<&[Subscription]>,
    now: i64,
) -> Result<Vec<(Subscription, Removed)>, SubscriptionError> {
    let (phone, email) = addresses(person)?;
    let mut targets: Vec<Subscription> = match which {
        Some(list) => list.to_vec(),
        None => {
            let mut all = Vec::new();
            for (channel, address) in channels(&phone, &email) {
                for kind in [SubType::Marketing, SubType::Transactional] {
                    if tx
                        .get_raw(SUBSCRIPTIONS, &record_key(tenant, channel, &address, kind))?
                        .is_some()
                        || kind == SubType::Marketing
                    {
                        all.push(Subscription { kind, channel });
                    }
                }
            }
            all
        }
    };
    targets.sort_by_key(|s| (s.channel, s.kind));
    targets.dedup();
    let mut out = Vec::new();
    for sub in targets {
        let address = match sub.channel {
            Channel::Text => phone.clone(),
            Channel::Email => email.clone(),
        };
        let Some(address) = address else {
            return Err(SubscriptionError::Invalid(format!(
                "unsubscribing from {} needs the user's {}",
                sub.channel.as_str(),
                if sub.channel == Channel::Text {
                    "phone"
                } else {
                    "email"
                }
            )));
        };
        let k = record_key(tenant, sub.channel, &address, sub.kind);
        let was = tx.get::<Record>(SUBSCRIPTIONS, &k)?;
        let marketing = sub.kind == SubType::Marketing;
        let opted_out = marketing && optouts::contains(tx, tenant, &address)?;
        let subscribed = was.as_ref().is_some_and(|r| r.subscribed) && !opted_out;
        if was.as_ref().is_some_and(|r| r.subscribed) {
            tx.put(
                SUBSCRIPTIONS,
                &k,
                &Record {
                    subscribed: false,
                    source: was.and_then(|r| r.source),
                    at_ms: now,
                },
            )?;
        }
        if marketing {
            optouts::add(tx, tenant, &address, "unsubscribe", now)?;
        }
        let status = if subscribed {
            Removed::NewlyUnsubscribed
        } else {
            Removed::AlreadyUnsubscribed
        };
        out.push((sub, status));
    }
    Ok(out)
}

/// Whether the person may receive each subscription they could have:
/// MARKETING on each channel with an address, TRANSACTIONAL where a
/// record exists.
pub fn eligibility(
    src: &impl Reader,
    tenant: &str,
    person: &Person,
) -> Result<Vec<(Subscription, bool)>, SubscriptionError> {
    let (phone, email) = addresses(person)?;
    let mut out = Vec::new();
    for (channel, address) in channels(&phone, &email) {
        for kind in [SubType::Marketing, SubType::Transactional] {
            let record =
                src.get::<Record>(SUBSCRIPTIONS, &record_key(tenant, channel, &address, kind))?;
            if record.is_none() && kind == SubType::Transactional {
                continue;
            }
            let opted_out = kind == SubType::Marketing && optouts::contains(src, tenant, &address)?;
            let eligible = record.is_some_and(|r| r.subscribed) && !opted_out;
            out.push((Subscription { kind, channel }, eligible));
        }
    }
    Ok(out)
}
