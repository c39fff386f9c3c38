//! Random ids, secrets, hashes and the clock.

use sha2::{Digest, Sha256};

/// `n` random bytes as lowercase hex (2n characters), from the OS's CSPRNG.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    // getrandom only fails when the OS has no entropy source at all; there
    // is no safe way to go on issuing secrets then.
    if let Err(e) = getrandom::fill(&mut bytes) {
        panic!("the operating system's random number generator failed: {e}");
    }
    hex(&bytes)
}

/// SHA-256 of `data` as lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Whether `id` is acceptable as a client-chosen id (tenant, plugin, player,
/// ...): 1 to 128 characters, no control characters (they separate key parts).
/// [`ClientId`] is this rule as API documents publish it.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.chars().count() <= 128 && !id.chars().any(char::is_control)
}

/// A client-chosen id ([`valid_id`]) in an API document: the JSON Schema
/// that accepts exactly what `valid_id` accepts (control characters are
/// Unicode's `Cc`, U+0000 to U+001F and U+007F to U+009F).
pub struct ClientId;

impl ClientId {
    /// The schema itself, for a place that takes one inline (the key names
    /// of a map of attributes).
    pub fn object() -> utoipa::openapi::schema::Object {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("1 to 128 characters, no control characters"))
            .min_length(Some(1))
            .max_length(Some(128))
            .pattern(Some(NO_CONTROL))
            .build()
    }
}

impl utoipa::PartialSchema for ClientId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        ClientId::object().into()
    }
}

impl utoipa::ToSchema for ClientId {}

/// A JSON Schema pattern: no control character anywhere.
pub const NO_CONTROL: &str = "^[^\\x00-\\x1f\\x7f-\\x9f]*$";

/// `ms` since the epoch as RFC 3339 in UTC, to the second: `2026-11-23T09:20:02Z`.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `ms` since the epoch as ISO 8601 with a numeric offset, in UTC:
/// `2026-11-23T09:20:02+0000` (Playbasis's `registered`).
pub fn iso8601_offset(ms: i64) -> String {
    format!("{}+0000", rfc3339(ms).trim_end_matches('Z'))
}

/// `ms` since the epoch as `YYYY-MM-DD HH:MM:SS` in UTC (Playbasis dates).
pub fn sql_datetime(ms: i64) -> String {
    rfc3339(ms).trim_end_matches('Z').replacen('T', " ", 1)
}

/// `ms` since the epoch as PHP's `date('r e')` in UTC:
/// `Mon, 23 Nov 2026 09:20:02 +0000 UTC`.
pub fn php_date_r(ms: i64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} +0000 UTC",
        DAYS[(days + 4).rem_euclid(7) as usize],
        MONTHS[(m as usize).saturating_sub(1) % 12],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// (year, month, day) of a day count since 1970-01-01 (Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) as ms since the epoch; `None` if it is not
/// a valid date and time in that form.
pub fn parse_sql_datetime(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b' '
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || d < 1 || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let days = days_from_civil(y, m as u32, d as u32);
    if civil_from_days(days) != (y, m as u32, d as u32) {
        return None; // e.g. 2026-02-30
    }
    Some((days * 86_400 + h * 3600 + mi * 60 + sec) * 1000)
}

/// Days since 1970-01-01 of a civil date (Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Compare two secrets in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn php_dates() {
        // 2026-11-23 is a Monday.
        let ms = 1_795_425_602_000;
        assert_eq!(super::sql_datetime(ms), "2026-11-23 09:20:02");
        assert_eq!(super::php_date_r(ms), "Mon, 23 Nov 2026 09:20:02 +0000 UTC");
    }

    use super::*;

    #[test]
    fn parses_sql_datetimes() {
        let ms = 1_795_425_602_000;
        assert_eq!(parse_sql_datetime(&sql_datetime(ms)), Some(ms));
        assert_eq!(parse_sql_datetime("1970-01-01 00:00:00"), Some(0));
        assert_eq!(
            parse_sql_datetime("2024-02-29 12:00:00")
                .map(sql_datetime)
                .as_deref(),
            Some("2024-02-29 12:00:00")
        );
        for bad in [
            "2026-02-30 00:00:00",
            "2026-11-23",
            "2026-11-23 24:00:00",
            "2026-11-23T09:20:02",
            "2026-1x-23 09:20:02",
        ] {
            assert_eq!(parse_sql_datetime(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_484_644_802_000), "2017-01-17T09:20:02Z");
    }

    #[test]
    fn hex_and_ids() {
        assert_eq!(hex(&[0, 15, 255]), "000fff");
        assert_eq!(random_hex(8).len(), 16);
        assert!(valid_id("player1") && !valid_id("") && !valid_id("a\u{1f}b"));
    }
}

/// A deterministic generator (xorshift64) for seeded property tests: the
/// same seed gives the same cases, so a failure replays. Not for secrets.
#[derive(Debug, Clone)]
pub struct Seeded(u64);

impl Seeded {
    /// A generator from `seed` (not 0).
    pub fn new(seed: u64) -> Seeded {
        Seeded(seed.max(1))
    }

    /// The next number below `n` (at least 1).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}
