//! Destination numbers as an SMS gateway's users type them: local numbers
//! with a leading 0, numbers without `+`, spaces and dashes.

use crate::address::normalize_phone;

/// Keep digits and `+`, at most 15 characters (the gateway's own limit).
pub fn sanitize(raw: &str) -> String {
    raw.trim()
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '+')
        .take(15)
        .collect()
}

/// Apply an account's local-number rules: a number of exactly
/// `local_length` digits not starting with 0 gets `prefix` in front, and a
/// leading 0 is replaced by `prefix`.
pub fn localize(number: &str, prefix: &str, local_length: u32) -> String {
    let n = sanitize(number);
    let n = if local_length > 0 && n.len() == local_length as usize && !n.starts_with('0') {
        format!("{prefix}{n}")
    } else {
        n
    };
    match n.strip_prefix('0') {
        Some(rest) if !prefix.is_empty() => format!("{prefix}{rest}"),
        _ => n,
    }
}

/// The E.164 form of a localized number: `+` and digits as they are, bare
/// digits taken as international. A number still starting with 0 has no
/// country: `None`.
pub fn to_e164(number: &str) -> Option<String> {
    if number.starts_with('0') && !number.starts_with("00") {
        return None;
    }
    if number.starts_with('+') || number.starts_with("00") {
        return normalize_phone(number).ok();
    }
    normalize_phone(&format!("+{number}")).ok()
}

/// Whether `stored` (E.164) matches a number filter the way the gateway's
/// clients expect: the filter's digits without leading zeros end it.
pub fn matches(stored: &str, filter: &str) -> bool {
    let digits: String = filter.chars().filter(char::is_ascii_digit).collect();
    let tail = digits.trim_start_matches('0');
    !tail.is_empty() && stored.ends_with(tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_numbers_get_the_prefix() {
        assert_eq!(localize("0987 654-321", "62", 0), "62987654321");
        assert_eq!(localize("0987654321", "", 0), "0987654321");
        assert_eq!(localize("87654321", "62", 8), "6287654321");
        assert_eq!(localize("+6287654321", "62", 8), "+6287654321");
        assert_eq!(to_e164("62987654321").as_deref(), Some("+62987654321"));
        assert_eq!(to_e164("+62987654321").as_deref(), Some("+62987654321"));
        assert_eq!(to_e164("0062987654321").as_deref(), Some("+62987654321"));
        assert_eq!(to_e164("0987654321"), None);
        assert_eq!(to_e164("12"), None);
    }

    #[test]
    fn filters_match_the_tail() {
        assert!(matches("+62987654321", "0987654321"));
        assert!(matches("+62987654321", "+62987654321"));
        assert!(!matches("+62987654321", "0987654322"));
        assert!(!matches("+62987654321", "0"));
    }
}
