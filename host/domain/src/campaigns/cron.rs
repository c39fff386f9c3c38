//! Cron expressions: `minute hour day-of-month month day-of-week`, with an
//! optional leading seconds field; `*`, lists (`1,15`), ranges (`9-17`) and
//! steps (`*/5`, `0-30/10`). Day of week 0 or 7 is Sunday. When both day
//! fields are restricted, either may match (as in Vixie cron).

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Cron {
    seconds: Vec<bool>,
    minutes: Vec<bool>,
    hours: Vec<bool>,
    days: Vec<bool>,
    months: Vec<bool>,
    weekdays: Vec<bool>,
    days_any: bool,
    weekdays_any: bool,
}

fn field(text: &str, min: u32, max: u32, name: &str) -> Result<(Vec<bool>, bool), String> {
    let mut set = vec![false; max as usize + 1];
    let bad =
        || format!("the {name} field `{text}` is not {min}-{max}, *, a list, a range or a step");
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().ok().filter(|s| *s > 0).ok_or_else(bad)?),
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?)
        } else {
            let v: u32 = range.parse().map_err(|_| bad())?;
            (v, if part.contains('/') { max } else { v })
        };
        if lo < min || hi > max || lo > hi {
            return Err(bad());
        }
        for v in (lo..=hi).step_by(step as usize) {
            set[v as usize] = true;
        }
    }
    Ok((set, text == "*"))
}

/// The expressions [`Cron::parse`] reads, as a JSON Schema pattern for the
/// API document: 5 fields (or 6, seconds first) of `*`, values, ranges and
/// lists, each with an optional step. That a range runs upwards (`5-10`,
/// not `10-5`) is said in words; a pattern cannot say it.
pub fn pattern() -> String {
    let field = |v: &str| {
        let part = format!("(\\*|{v}|{v}-{v})(/0*[1-9][0-9]{{0,8}})?");
        format!("{part}(,{part})*")
    };
    let (sec, min) = (field("0*[0-5]?[0-9]"), field("0*[0-5]?[0-9]"));
    let hour = field("0*(1?[0-9]|2[0-3])");
    let dom = field("0*([1-9]|[12][0-9]|3[01])");
    let month = field("0*([1-9]|1[0-2])");
    let dow = field("0*[0-7]");
    format!("^\\s*({sec}\\s+)?{min}\\s+{hour}\\s+{dom}\\s+{month}\\s+{dow}\\s*$")
}

/// A cron expression in an API document (see [`pattern`]).
pub fn schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .description(Some(
            "5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first), each `*`, a value, a range running upwards, or a list of them, with an optional `/step`",
        ))
        .pattern(Some(pattern()))
        .build()
}

impl Cron {
    pub fn parse(expr: &str) -> Result<Cron, String> {
        let parts: Vec<&str> = expr.split_whitespace().collect();
        let (sec, rest) = match parts.len() {
            5 => ("0", &parts[..]),
            6 => (parts[0], &parts[1..]),
            _ => return Err("a cron expression has 5 fields (or 6 with seconds first)".into()),
        };
        let (seconds, _) = field(sec, 0, 59, "second")?;
        let (minutes, _) = field(rest[0], 0, 59, "minute")?;
        let (hours, _) = field(rest[1], 0, 23, "hour")?;
        let (days, days_any) = field(rest[2], 1, 31, "day-of-month")?;
        let (months, _) = field(rest[3], 1, 12, "month")?;
        let (mut weekdays, weekdays_any) = field(rest[4], 0, 7, "day-of-week")?;
        if weekdays[7] {
            weekdays[0] = true;
        }
        Ok(Cron {
            seconds,
            minutes,
            hours,
            days,
            months,
            weekdays,
            days_any,
            weekdays_any,
        })
    }

    fn day_matches(&self, day: u32, weekday: u32) -> bool {
        let d = self.days[day as usize];
        let w = self.weekdays[weekday as usize];
        match (self.days_any, self.weekdays_any) {
            (true, true) => true,
            (false, true) => d,
            (true, false) => w,
            (false, false) => d || w,
        }
    }

    /// The first slot strictly after `after_ms`, with the expression read
    /// in `zone`'s local time; `None` within 4 years (an impossible date
    /// such as 31 February).
    ///
    /// Across daylight-saving changes a slot fires once: a local time the
    /// spring-forward skips (02:30 when 02:00 becomes 03:00) fires as far
    /// after the jump (03:30), a time the fall-back repeats fires at its
    /// first occurrence only (see `engage_time`).
    pub fn next_after(&self, after_ms: i64, zone: &engage_time::Zone) -> Option<i64> {
        // Walk local wall-clock seconds (naive: as if UTC), from just after
        // `after_ms`'s own local time.
        let mut t = zone.to_naive(after_ms).div_euclid(1000) + 1;
        let limit = t + 4 * 366 * 86_400;
        while t < limit {
            let days = t.div_euclid(86_400);
            let (_, month, day) = engage_store::ids::civil_from_days(days);
            let weekday = (days + 4).rem_euclid(7) as u32; // 1970-01-01 was a Thursday
            if !self.months[month as usize] || !self.day_matches(day, weekday) {
                t = (days + 1) * 86_400;
                continue;
            }
            let secs = t.rem_euclid(86_400);
            let (h, m, s) = (
                (secs / 3600) as usize,
                (secs % 3600 / 60) as usize,
                (secs % 60) as usize,
            );
            if !self.hours[h] {
                t = days * 86_400 + (h as i64 + 1) * 3600;
                continue;
            }
            if !self.minutes[m] {
                t = days * 86_400 + h as i64 * 3600 + (m as i64 + 1) * 60;
                continue;
            }
            match (s..60).find(|s| self.seconds[*s]) {
                Some(found) => {
                    let local = days * 86_400 + h as i64 * 3600 + m as i64 * 60 + found as i64;
                    match zone.from_naive(local * 1000) {
                        // A repeated hour's second pass names an instant
                        // already behind: not a new slot.
                        Some(at) if at > after_ms => return Some(at),
                        _ => t = local + 1,
                    }
                }
                None => t = days * 86_400 + h as i64 * 3600 + (m as i64 + 1) * 60,
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engage_store::ids::{parse_sql_datetime, sql_datetime};

    fn next(expr: &str, after: &str, zone: &str) -> String {
        let c = Cron::parse(expr).expect("parses");
        let at = parse_sql_datetime(after).expect("date");
        let zone = engage_time::Zone::parse(zone).expect("zone");
        sql_datetime(c.next_after(at, &zone).expect("a slot"))
    }

    #[test]
    fn next_slots() {
        let cases = [
            (
                "0 9 * * *",
                "2026-11-23 09:00:00",
                "+0000",
                "2026-11-24 09:00:00",
            ),
            (
                "0 9 * * *",
                "2026-11-23 08:59:59",
                "+0000",
                "2026-11-23 09:00:00",
            ),
            (
                "*/15 * * * *",
                "2026-11-23 10:07:00",
                "+0000",
                "2026-11-23 10:15:00",
            ),
            // 09:00 in UTC+7 is 02:00 UTC.
            (
                "0 9 * * *",
                "2026-11-23 03:00:00",
                "+0700",
                "2026-11-24 02:00:00",
            ),
            // Mondays at 10:00; 2026-11-23 is a Monday.
            (
                "0 10 * * 1",
                "2026-11-23 10:00:00",
                "+0000",
                "2026-11-30 10:00:00",
            ),
            (
                "0 0 1 1 *",
                "2026-11-23 00:00:00",
                "+0000",
                "2027-01-01 00:00:00",
            ),
            (
                "*/2 * * * * *",
                "2026-11-23 10:00:00",
                "+0000",
                "2026-11-23 10:00:02",
            ),
        ];
        for (expr, after, offset, want) in cases {
            assert_eq!(next(expr, after, offset), want, "{expr} after {after}");
        }
        assert!(
            Cron::parse("0 0 31 2 *")
                .expect("parses")
                .next_after(0, &engage_time::Zone::utc())
                .is_none()
        );
        for bad in [
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "*/0 * * * *",
            "a * * * *",
        ] {
            assert!(Cron::parse(bad).is_err(), "{bad}");
        }
    }

    /// Every slot from `from` (UTC) for `n` slots.
    fn slots(expr: &str, from: &str, zone: &str, n: usize) -> Vec<String> {
        let c = Cron::parse(expr).expect("parses");
        let zone = engage_time::Zone::parse(zone).expect("zone");
        let mut at = parse_sql_datetime(from).expect("date");
        (0..n)
            .map(|_| {
                at = c.next_after(at, &zone).expect("a slot");
                sql_datetime(at)
            })
            .collect()
    }

    #[test]
    fn a_spring_forward_day_fires_the_skipped_time_once() {
        // Europe/Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST, so
        // 02:30 does not exist that day; it fires at 03:30 CEST (01:30 UTC),
        // once. The days around it: 02:30 CET (01:30 UTC), then 02:30 CEST
        // (00:30 UTC).
        assert_eq!(
            slots("30 2 * * *", "2026-03-27 12:00:00", "Europe/Berlin", 4),
            [
                "2026-03-28 01:30:00",
                "2026-03-29 01:30:00",
                "2026-03-30 00:30:00",
                "2026-03-31 00:30:00"
            ]
        );
        // Hourly: the skipped hour is skipped, no slot fires twice.
        assert_eq!(
            slots("0 * * * *", "2026-03-29 00:30:00", "Europe/Berlin", 3),
            [
                "2026-03-29 01:00:00",
                "2026-03-29 02:00:00",
                "2026-03-29 03:00:00"
            ]
        );
    }

    #[test]
    fn a_fall_back_night_fires_the_repeated_time_once() {
        // 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 happens twice and
        // fires at its first (00:30 UTC) only.
        assert_eq!(
            slots("30 2 * * *", "2026-10-24 12:00:00", "Europe/Berlin", 3),
            [
                "2026-10-25 00:30:00",
                "2026-10-26 01:30:00",
                "2026-10-27 01:30:00"
            ]
        );
        // Asked from inside the repeated hour, after its first pass: the
        // next day, not the second pass.
        assert_eq!(
            slots("30 2 * * *", "2026-10-25 01:15:00", "Europe/Berlin", 1),
            ["2026-10-26 01:30:00"]
        );
    }
}
