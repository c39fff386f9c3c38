//! What a phone number and an e-mail address must look like, wherever one
//! comes from (a player's profile, a phonebook entry, a send request).

/// An address that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error(
        "`{0}` is not a phone number in international format (+ country code and number, e.g. +6681234567)"
    )]
    Phone(String),
    #[error("`{0}` is not an email address")]
    Email(String),
}

/// Normalise a phone number to E.164: spaces, dots, dashes and brackets are
/// dropped, a leading `00` becomes `+`; then it must be `+`, a non-zero
/// digit and 6 to 14 more digits. [`Phone`] is this rule as API documents
/// publish it.
pub fn normalize_phone(raw: &str) -> Result<String, AddressError> {
    let bad = || AddressError::Phone(raw.chars().take(64).collect());
    let compact: String = raw
        .trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '.' | '-' | '(' | ')'))
        .collect();
    let digits = if let Some(d) = compact.strip_prefix('+') {
        d
    } else if let Some(d) = compact.strip_prefix("00") {
        d
    } else {
        return Err(bad());
    };
    let ok = (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if ok {
        Ok(format!("+{digits}"))
    } else {
        Err(bad())
    }
}

/// An e-mail address: a local part, `@`, a domain with a dot inside it, at
/// most 254 characters, no spaces or control characters. [`Email`] is this
/// rule as API documents publish it.
pub fn check_email(email: &str) -> Result<(), AddressError> {
    let ok = email.chars().count() <= 254
        && email.split_once('@').is_some_and(|(l, d)| {
            !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(AddressError::Email(email.chars().take(64).collect()))
    }
}

/// An e-mail address as Engage keeps it: [`check_email`]'s, spaces around
/// it dropped, in lower case (opt-outs, suppressions and subscriptions are
/// keyed by it, and mail systems treat addresses without regard to case).
pub fn normalize_email(raw: &str) -> Result<String, AddressError> {
    let e = raw.trim();
    check_email(e)?;
    Ok(e.to_lowercase())
}

/// A phone number ([`normalize_phone`]) in an API document: the pattern
/// accepts exactly what `normalize_phone` accepts.
pub struct Phone;

impl utoipa::PartialSchema for Phone {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        string(
            "A phone number in international format: `+` (or `00`), the country code and the number, 7 to 15 digits, the first not 0; spaces, dots, dashes and brackets are dropped (stored as E.164, `+6681234567`)",
            None,
            "^\\s*[ .()-]*(\\+|0[ .()-]*0)[ .()-]*[1-9]([ .()-]*[0-9]){6,14}[ .()-]*\\s*$",
        )
    }
}

impl utoipa::ToSchema for Phone {}

/// An e-mail address ([`check_email`]) in an API document: the pattern and
/// length accept exactly what `check_email` accepts.
pub struct Email;

impl utoipa::PartialSchema for Email {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        string(
            "An e-mail address: a local part, `@`, a domain with a dot inside it; at most 254 characters, no spaces or control characters",
            Some(254),
            "^[^@\\s\\x00-\\x1f\\x7f-\\x9f]+@[^.\\s\\x00-\\x1f\\x7f-\\x9f][^\\s\\x00-\\x1f\\x7f-\\x9f]*\\.[^\\s\\x00-\\x1f\\x7f-\\x9f]*[^.\\s\\x00-\\x1f\\x7f-\\x9f]$",
        )
    }
}

impl utoipa::ToSchema for Email {}

/// A message's recipient in an API document: a phone number ([`Phone`]),
/// or for an e-mail an address ([`Email`]).
pub struct Recipient;

impl utoipa::PartialSchema for Recipient {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::OneOfBuilder::new()
            .item(<Phone as utoipa::PartialSchema>::schema())
            .item(<Email as utoipa::PartialSchema>::schema())
            .description(Some(
                "A phone number (SMS, Viber) or an e-mail address (e-mail)",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Recipient {}

fn string(
    description: &str,
    max_length: Option<usize>,
    pattern: &str,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .description(Some(description))
        .max_length(max_length)
        .pattern(Some(pattern))
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_normalise_to_e164() {
        assert_eq!(
            normalize_phone("+6681234567").ok().as_deref(),
            Some("+6681234567")
        );
        assert_eq!(
            normalize_phone(" +1 (415) 555-0100 ").ok().as_deref(),
            Some("+14155550100")
        );
        assert_eq!(
            normalize_phone("0044 20 7946 0958").ok().as_deref(),
            Some("+442079460958")
        );
        for bad in [
            "6681234567",
            "+0123456789",
            "+12",
            "+1234567890123456",
            "+66abc1234",
            "",
        ] {
            assert!(normalize_phone(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn emails_are_checked_loosely() {
        assert!(check_email("a@b.co").is_ok());
        for bad in ["a", "@b.co", "a@b", "a b@c.de", "a@.com"] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
    }
}
