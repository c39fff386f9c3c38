//! Calendar helpers on the request's clock, for quotas and caps that reset
//! per day, week or month in a tenant's time zone.
//!
//! Time zones are fixed UTC offsets (`"+07:00"`, `"-05:30"`, `"Z"`): a guest
//! carries no time-zone database, and a binding's config states its offset.

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// A calendar period a cap resets on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Day,
    Week,
    Month,
}

/// Parse a UTC offset such as `+07:00`, `-0530`, `Z` or `+7` into minutes.
pub fn parse_utc_offset(text: &str) -> Option<i64> {
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("z") || text.eq_ignore_ascii_case("utc") {
        return Some(0);
    }
    let (sign, rest) = match text.as_bytes()[0] {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None if rest.len() == 4 => rest.split_at(2),
        None => (rest, "0"),
    };
    let h: i64 = h.parse().ok()?;
    let m: i64 = m.parse().ok()?;
    if h > 14 || m > 59 {
        return None;
    }
    Some(sign * (h * 60 + m))
}

/// The start (ms since the epoch, UTC) and end of the period containing
/// `now_ms`, in the zone `offset_minutes` east of UTC. Weeks start on Monday.
pub fn period_bounds(now_ms: i64, offset_minutes: i64, period: Period) -> (i64, i64) {
    let offset_ms = offset_minutes * 60_000;
    let local = now_ms + offset_ms;
    let day = local.div_euclid(DAY_MS);
    let (start_day, end_day) = match period {
        Period::Day => (day, day + 1),
        Period::Week => {
            // 1970-01-01 was a Thursday: Monday-based weekday is (day + 3) % 7.
            let start = day - (day + 3).rem_euclid(7);
            (start, start + 7)
        }
        Period::Month => {
            let (y, m, _) = civil_from_days(day);
            let start = days_from_civil(y, m, 1);
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            (start, days_from_civil(ny, nm, 1))
        }
    };
    (start_day * DAY_MS - offset_ms, end_day * DAY_MS - offset_ms)
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Howard Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Day count since 1970-01-01 of a civil date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets() {
        assert_eq!(parse_utc_offset("+07:00"), Some(420));
        assert_eq!(parse_utc_offset("-0530"), Some(-330));
        assert_eq!(parse_utc_offset("Z"), Some(0));
        assert_eq!(parse_utc_offset("+7"), Some(420));
        assert_eq!(parse_utc_offset("Asia/Bangkok"), None);
        assert_eq!(parse_utc_offset("+25:00"), None);
    }

    #[test]
    fn periods() {
        // 2024-02-29T23:30:00Z, a Thursday.
        let t = 1_709_249_400_000;
        let (s, e) = period_bounds(t, 0, Period::Day);
        assert_eq!((s, e), (1_709_164_800_000, 1_709_251_200_000));
        // At +07:00 it is already Friday 1 March, 06:30.
        let (s, _) = period_bounds(t, 420, Period::Day);
        assert_eq!(s, 1_709_251_200_000 - 7 * 3_600_000);
        let (s, e) = period_bounds(t, 0, Period::Week);
        assert_eq!(civil_from_days(s / DAY_MS), (2024, 2, 26));
        assert_eq!(e - s, 7 * DAY_MS);
        let (s, e) = period_bounds(t, 0, Period::Month);
        assert_eq!(civil_from_days(s / DAY_MS), (2024, 2, 1));
        assert_eq!(civil_from_days(e / DAY_MS), (2024, 3, 1));
        for d in [-1000, 0, 59, 365 * 30, 20_000] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }
}
