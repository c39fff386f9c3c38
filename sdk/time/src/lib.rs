//! Time zones, and local calendar arithmetic on them.
//!
//! A [`Zone`] is written either as an IANA name (`Europe/Berlin`,
//! `America/New_York`, `UTC`) — with its daylight-saving rules — or as a
//! fixed offset from UTC (`+0700`, `+07:00`, `-0330`, `Z`), which is what
//! Engage took before and keeps taking.
//!
//! Wall-clock times that a change skips or repeats are read the way
//! RFC 5545 and JavaScript's Temporal (`"compatible"`) read them: a
//! skipped time (02:30 on the night clocks jump from 02:00 to 03:00) means
//! the instant as far after the jump as the time was after 02:00 (03:30);
//! a repeated time (02:30 on the night clocks fall back from 03:00 to
//! 02:00) means its first occurrence.

use jiff::civil::{Date, DateTime};
use jiff::tz::{Offset, TimeZone};
use jiff::{Timestamp, ZonedDateTime};

/// A time zone: an IANA zone or a fixed offset.
#[derive(Clone, Debug)]
pub struct Zone {
    tz: TimeZone,
    text: String,
}

/// Why a zone's text was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneError(pub String);

impl std::fmt::Display for ZoneError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` is neither an IANA time zone (such as Europe/Berlin) nor a UTC offset (such as +0700 or +07:00)",
            self.0
        )
    }
}

impl std::error::Error for ZoneError {}

/// A calendar period a cap or quota resets on, in local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    /// Monday to Monday.
    Week,
    Month,
}

/// Local wall-clock fields of an instant in a zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    pub year: i16,
    pub month: i8,
    pub day: i8,
    pub hour: i8,
    pub minute: i8,
    pub second: i8,
    /// 0 = Sunday … 6 = Saturday.
    pub weekday: u8,
}

/// An IANA zone by name: from the embedded database (every change in
/// its history).
#[cfg(feature = "tzdb")]
fn named(name: &str) -> Option<TimeZone> {
    TimeZone::get(name).ok()
}

/// An IANA zone by name (case-insensitive): its current rule, from the
/// table build.rs took from the tz database. Instants before the zone's
/// last change of rules are read with today's rule.
#[cfg(not(feature = "tzdb"))]
fn named(name: &str) -> Option<TimeZone> {
    let lower = name.to_ascii_lowercase();
    let i = ZONES
        .binary_search_by(|(n, _)| n.to_ascii_lowercase().cmp(&lower))
        .ok()?;
    TimeZone::posix(ZONES[i].1).ok()
}

#[cfg(not(feature = "tzdb"))]
mod zones {
    include!(concat!(env!("OUT_DIR"), "/zones.rs"));
}
#[cfg(not(feature = "tzdb"))]
use zones::ZONES;

/// Every IANA zone name this build knows, in the database's spelling.
pub fn zone_names() -> Vec<String> {
    #[cfg(feature = "tzdb")]
    {
        let mut names: Vec<String> = jiff::tz::db().available().map(|n| n.to_string()).collect();
        names.sort();
        names
    }
    #[cfg(not(feature = "tzdb"))]
    {
        ZONES.iter().map(|(n, _)| (*n).to_owned()).collect()
    }
}

/// The most a fixed offset may be, in minutes (±14:00, as tz does).
const MAX_OFFSET_MIN: i32 = 14 * 60;

/// A fixed offset in minutes east of UTC from `+HHMM`, `+HH:MM`, `+HH`,
/// `+H`, `-…` or `Z`; `None` otherwise.
pub fn parse_offset(text: &str) -> Option<i32> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("z") {
        return Some(0);
    }
    let (sign, rest) = match t.as_bytes().first()? {
        b'+' => (1, &t[1..]),
        b'-' => (-1, &t[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) || rest.matches(':').count() > 1 {
        return None;
    }
    let (h, m) = match digits.len() {
        1 | 2 if !rest.contains(':') => (digits.parse::<i32>().ok()?, 0),
        4 => (
            digits[..2].parse::<i32>().ok()?,
            digits[2..].parse::<i32>().ok()?,
        ),
        _ => return None,
    };
    if m > 59 || rest.contains(':') && digits.len() != 4 {
        return None;
    }
    let total = h * 60 + m;
    (total <= MAX_OFFSET_MIN).then_some(sign * total)
}

impl Zone {
    /// Parse an IANA name or a fixed offset.
    pub fn parse(text: &str) -> Result<Zone, ZoneError> {
        let t = text.trim();
        let tz = match parse_offset(t) {
            Some(min) => Offset::from_seconds(min * 60)
                .map(TimeZone::fixed)
                .map_err(|_| ZoneError(t.to_owned()))?,
            None if !t.is_empty() && t.len() <= 64 => {
                named(t).ok_or_else(|| ZoneError(t.to_owned()))?
            }
            None => return Err(ZoneError(t.to_owned())),
        };
        Ok(Zone {
            tz,
            text: t.to_owned(),
        })
    }

    /// A fixed offset, `minutes` east of UTC (±14:00 at most).
    pub fn fixed_minutes(minutes: i32) -> Option<Zone> {
        if minutes.abs() > MAX_OFFSET_MIN {
            return None;
        }
        let tz = TimeZone::fixed(Offset::from_seconds(minutes * 60).ok()?);
        let sign = if minutes < 0 { '-' } else { '+' };
        let m = minutes.abs();
        Some(Zone {
            tz,
            text: format!("{sign}{:02}:{:02}", m / 60, m % 60),
        })
    }

    /// The zone a plugin's config names: `time_zone` (an IANA name or an
    /// offset), or the fixed `utc_offset` that configs gave before time
    /// zones, or UTC when neither is there; both at once is refused. The
    /// error is the config check's message.
    pub fn of_config(time_zone: Option<&str>, utc_offset: Option<&str>) -> Result<Zone, String> {
        match (time_zone, utc_offset) {
            (Some(_), Some(_)) => Err("give `time_zone` or `utc_offset`, not both".into()),
            (Some(name), None) => Zone::parse(name).map_err(|e| format!("time_zone {e}")),
            (None, Some(text))
                if text.trim().is_empty() || text.trim().eq_ignore_ascii_case("utc") =>
            {
                Ok(Zone::utc())
            }
            (None, Some(text)) => parse_offset(text)
                .and_then(Zone::fixed_minutes)
                .ok_or_else(|| format!("utc_offset `{text}` is not an offset like +07:00")),
            (None, None) => Ok(Zone::utc()),
        }
    }

    /// UTC.
    pub fn utc() -> Zone {
        Zone {
            tz: TimeZone::UTC,
            text: "UTC".into(),
        }
    }

    /// The text it was parsed from.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The offset from UTC at `ms`, in seconds east.
    pub fn offset_seconds_at(&self, ms: i64) -> i32 {
        match Timestamp::from_millisecond(ms) {
            Ok(ts) => self.tz.to_offset(ts).seconds(),
            Err(_) => 0,
        }
    }

    fn zoned(&self, ms: i64) -> Option<ZonedDateTime> {
        Some(
            Timestamp::from_millisecond(ms)
                .ok()?
                .to_zoned_datetime(self.tz.clone()),
        )
    }

    /// The local wall-clock fields of `ms`.
    pub fn local(&self, ms: i64) -> Option<Local> {
        let z = self.zoned(ms)?;
        Some(Local {
            year: z.year(),
            month: z.month(),
            day: z.day(),
            hour: z.hour(),
            minute: z.minute(),
            second: z.second(),
            weekday: z.weekday().to_sunday_zero_offset() as u8,
        })
    }

    /// The instant a local wall-clock time means here (skipped and
    /// repeated times as the module says); `None` for a date that does
    /// not exist (31 February) or is out of range.
    pub fn instant(
        &self,
        year: i16,
        month: i8,
        day: i8,
        hour: i8,
        minute: i8,
        second: i8,
    ) -> Option<i64> {
        let dt = DateTime::new(year, month, day, hour, minute, second, 0).ok()?;
        let ts = self.tz.to_ambiguous_timestamp(dt).compatible().ok()?;
        Some(ts.as_millisecond())
    }

    /// Where the local day of `ms` starts and ends (the next day's start):
    /// 23 or 25 hours on the days clocks change.
    pub fn day_bounds(&self, ms: i64) -> Option<(i64, i64)> {
        self.period_bounds(ms, Period::Day)
    }

    /// Where the local period of `ms` starts and where the next one does.
    pub fn period_bounds(&self, ms: i64, period: Period) -> Option<(i64, i64)> {
        let today = self.zoned(ms)?.date();
        let (first, next) = match period {
            Period::Day => (today, today.tomorrow().ok()?),
            Period::Week => {
                let back = today.weekday().to_monday_zero_offset();
                let monday = today.checked_sub(jiff::Span::new().days(back)).ok()?;
                (monday, monday.checked_add(jiff::Span::new().days(7)).ok()?)
            }
            Period::Month => {
                let first = today.first_of_month();
                (first, first.checked_add(jiff::Span::new().months(1)).ok()?)
            }
        };
        let start = |d: Date| -> Option<i64> {
            let z = d
                .to_zoned_datetime(self.tz.clone())
                .ok()?
                .start_of_day()
                .ok()?;
            Some(z.timestamp().as_millisecond())
        };
        Some((start(first)?, start(next)?))
    }

    /// `ms` as its local wall-clock time written as if it were UTC (a
    /// "naive" time: what SQL-style datetimes print, and what calendar
    /// arithmetic on local days and hours runs on).
    pub fn to_naive(&self, ms: i64) -> i64 {
        ms + i64::from(self.offset_seconds_at(ms)) * 1000
    }

    /// The instant a naive local time means here (skipped and repeated
    /// times as the module says); `None` out of range.
    pub fn from_naive(&self, naive_ms: i64) -> Option<i64> {
        let dt = Timestamp::from_millisecond(naive_ms)
            .ok()?
            .to_zoned_datetime(TimeZone::UTC)
            .datetime();
        let ts = self.tz.to_ambiguous_timestamp(dt).compatible().ok()?;
        Some(ts.as_millisecond())
    }

    /// The local date of `ms` shifted by `days`, as (year, month, day).
    pub fn date_plus(&self, ms: i64, days: i32) -> Option<(i16, i8, i8)> {
        let d: Date = self.zoned(ms)?.date();
        let d = d.checked_add(jiff::Span::new().days(days)).ok()?;
        Some((d.year(), d.month(), d.day()))
    }
}

impl PartialEq for Zone {
    fn eq(&self, other: &Zone) -> bool {
        self.text == other.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(zone: &Zone, y: i16, mo: i8, d: i8, h: i8, mi: i8) -> i64 {
        zone.instant(y, mo, d, h, mi, 0).expect("an instant")
    }

    const HOUR: i64 = 3_600_000;

    #[test]
    fn offsets_and_names() {
        for (text, min) in [
            ("+0700", 420),
            ("+07:00", 420),
            ("-0330", -210),
            ("+05", 300),
            ("Z", 0),
            ("-00:00", 0),
        ] {
            assert_eq!(parse_offset(text), Some(min), "{text}");
        }
        assert_eq!(parse_offset("+7"), Some(420));
        for bad in [
            "0700", "+0760", "+1500", "+07:0", "+07::00", "+7:00", "", "UTC+1",
        ] {
            assert_eq!(parse_offset(bad), None, "{bad}");
        }
        assert!(Zone::parse("Europe/Berlin").is_ok());
        assert!(Zone::parse("UTC").is_ok());
        assert!(Zone::parse("+0700").is_ok());
        let e = Zone::parse("Mars/Olympus").expect_err("no such zone");
        assert!(e.to_string().contains("IANA"), "{e}");
        assert!(Zone::parse("").is_err());
        assert!(Zone::parse(&"A/".repeat(100)).is_err());
    }

    #[test]
    fn berlin_days_around_the_changes() {
        let berlin = Zone::parse("Europe/Berlin").expect("zone");
        // 2026-03-29: 02:00 CET becomes 03:00 CEST: a 23-hour day.
        let noon = ms(&berlin, 2026, 3, 29, 12, 0);
        let (start, end) = berlin.day_bounds(noon).expect("bounds");
        assert_eq!(end - start, 23 * HOUR);
        assert_eq!(start, ms(&Zone::utc(), 2026, 3, 28, 23, 0));
        // 2026-10-25: 03:00 CEST becomes 02:00 CET: a 25-hour day.
        let (start, end) = berlin
            .day_bounds(ms(&berlin, 2026, 10, 25, 12, 0))
            .expect("bounds");
        assert_eq!(end - start, 25 * HOUR);
        assert_eq!(start, ms(&Zone::utc(), 2026, 10, 24, 22, 0));
        // A fixed offset never changes.
        let plus1 = Zone::parse("+01:00").expect("zone");
        let (s, e) = plus1.day_bounds(noon).expect("bounds");
        assert_eq!(e - s, 24 * HOUR);
        // The week of Sunday 29 March 2026 starts on Monday the 23rd, in
        // CET, and lasts an hour less; its month has 31 days less an hour.
        let (s, e) = berlin.period_bounds(noon, Period::Week).expect("week");
        assert_eq!(s, ms(&Zone::utc(), 2026, 3, 22, 23, 0));
        assert_eq!(e - s, 7 * 24 * HOUR - HOUR);
        let (s, e) = berlin.period_bounds(noon, Period::Month).expect("month");
        assert_eq!(s, ms(&Zone::utc(), 2026, 2, 28, 23, 0));
        assert_eq!(e, ms(&Zone::utc(), 2026, 3, 31, 22, 0));
    }

    #[test]
    fn skipped_and_repeated_wall_clock_times() {
        let berlin = Zone::parse("Europe/Berlin").expect("zone");
        let utc = Zone::utc();
        // 02:30 does not exist on 29 March: it means 03:30 CEST (01:30 UTC).
        assert_eq!(
            ms(&berlin, 2026, 3, 29, 2, 30),
            ms(&utc, 2026, 3, 29, 1, 30)
        );
        // 02:30 happens twice on 25 October: the first, CEST (00:30 UTC).
        assert_eq!(
            ms(&berlin, 2026, 10, 25, 2, 30),
            ms(&utc, 2026, 10, 25, 0, 30)
        );
        assert_eq!(
            berlin.offset_seconds_at(ms(&utc, 2026, 10, 25, 0, 30)),
            7200
        );
        assert_eq!(
            berlin.offset_seconds_at(ms(&utc, 2026, 10, 25, 1, 30)),
            3600
        );
        let local = berlin.local(ms(&utc, 2026, 10, 25, 1, 30)).expect("local");
        assert_eq!((local.hour, local.minute, local.weekday), (2, 30, 0));
        assert!(berlin.instant(2026, 2, 31, 0, 0, 0).is_none());
        // Naive local times, both ways.
        let first = ms(&utc, 2026, 10, 25, 0, 30);
        assert_eq!(berlin.to_naive(first), ms(&utc, 2026, 10, 25, 2, 30));
        assert_eq!(
            berlin.from_naive(ms(&utc, 2026, 10, 25, 2, 30)),
            Some(first)
        );
        assert_eq!(
            berlin.from_naive(ms(&utc, 2026, 3, 29, 2, 30)),
            Some(ms(&utc, 2026, 3, 29, 1, 30))
        );
    }
}
