//! Five-field cron expressions (`minute hour day-of-month month day-of-week`), evaluated in
//! UTC: `*`, lists, ranges, steps, month and weekday names, and the `@hourly`-style macros.
//! As in Vixie cron, when both day fields are restricted a day matches if either does.

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;

use super::PolicyError;

#[derive(Debug, Clone, PartialEq, Eq)]
/// A five-field cron expression, in UTC.
pub struct Cron {
    text: String,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_any: bool,
    weekdays_any: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn value(s: &str, names: &[&str], base: u32) -> Option<u32> {
    if let Ok(n) = s.parse() {
        return Some(n);
    }
    let lower = s.to_ascii_lowercase();
    names
        .iter()
        .position(|n| *n == lower)
        .map(|i| i as u32 + base)
}

/// One field as a bit set of allowed values, and whether it was `*`.
fn field(
    text: &str,
    spec: &str,
    what: &str,
    min: u32,
    max: u32,
    names: &[&str],
) -> Result<(u64, bool), PolicyError> {
    let bad = |why: String| PolicyError::Cron {
        text: text.to_string(),
        why,
    };
    let mut bits = 0u64;
    for item in spec.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| bad(format!("bad step `{s}` in the {what} field")))?,
            ),
            None => (item, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let a = value(a, names, min)
                .ok_or_else(|| bad(format!("bad value `{a}` in the {what} field")))?;
            let b = value(b, names, min)
                .ok_or_else(|| bad(format!("bad value `{b}` in the {what} field")))?;
            (a, b)
        } else {
            let v = value(range, names, min)
                .ok_or_else(|| bad(format!("bad value `{range}` in the {what} field")))?;
            (v, if item.contains('/') { max } else { v })
        };
        if lo < min || hi > max || lo > hi {
            return Err(bad(format!(
                "{what} `{range}` is outside {min}-{max} or reversed"
            )));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, spec == "*"))
}

impl Cron {
    /// Parses `min hour day-of-month month day-of-week` (lists, ranges, steps, names).
    pub fn parse(text: &str) -> Result<Cron, PolicyError> {
        let expanded = match text.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(PolicyError::Cron {
                text: text.to_string(),
                why: format!(
                    "it has {} fields; a cron schedule has five (minute hour day month weekday), \
                     e.g. `*/5 * * * *`",
                    fields.len()
                ),
            });
        }
        let (minutes, _) = field(text, fields[0], "minute", 0, 59, &[])?;
        let (hours, _) = field(text, fields[1], "hour", 0, 23, &[])?;
        let (days, days_any) = field(text, fields[2], "day-of-month", 1, 31, &[])?;
        let (months, _) = field(text, fields[3], "month", 1, 12, &MONTHS)?;
        let (mut weekdays, weekdays_any) = field(text, fields[4], "weekday", 0, 7, &WEEKDAYS)?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1; // 7 is Sunday too
        }
        Ok(Cron {
            text: text.trim().to_string(),
            minutes,
            hours,
            days,
            months,
            weekdays,
            days_any,
            weekdays_any,
        })
    }

    /// The expression as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn day_matches(&self, d: Date) -> bool {
        let dom = self.days & (1 << d.day()) != 0;
        let dow = self.weekdays & (1 << d.weekday().to_sunday_zero_offset()) != 0;
        match (self.days_any, self.weekdays_any) {
            (true, true) => true,
            (false, true) => dom,
            (true, false) => dow,
            (false, false) => dom || dow,
        }
    }

    /// The first matching minute strictly after `t`; `None` if none within eight years
    /// (e.g. `0 0 31 2 *`).
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let utc = TimeZone::UTC;
        let start = t.to_zoned(utc.clone()).datetime();
        let mut dt = start
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(jiff::Span::new().minutes(1))
            .ok()?;
        let limit = start.checked_add(jiff::Span::new().years(8)).ok()?;
        while dt <= limit {
            if self.months & (1 << dt.month()) == 0 {
                let first = dt.date().first_of_month();
                dt = DateTime::from_parts(
                    first.checked_add(jiff::Span::new().months(1)).ok()?,
                    jiff::civil::Time::midnight(),
                );
                continue;
            }
            if !self.day_matches(dt.date()) {
                dt =
                    DateTime::from_parts(dt.date().tomorrow().ok()?, jiff::civil::Time::midnight());
                continue;
            }
            if self.hours & (1 << dt.hour()) == 0 {
                dt = dt
                    .with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(jiff::Span::new().hours(1))
                    .ok()?;
                continue;
            }
            if self.minutes & (1 << dt.minute()) == 0 {
                dt = dt.checked_add(jiff::Span::new().minutes(1)).ok()?;
                continue;
            }
            return dt.to_zoned(utc).ok().map(|z| z.timestamp());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn every_five_minutes_fires_on_the_next_multiple_of_five() {
        let c = Cron::parse("*/5 * * * *").unwrap();
        assert_eq!(
            c.next_after(ts("2026-11-23T10:02:30Z")),
            Some(ts("2026-11-23T10:05:00Z"))
        );
        assert_eq!(
            c.next_after(ts("2026-11-23T10:05:00Z")),
            Some(ts("2026-11-23T10:10:00Z"))
        );
    }

    #[test]
    fn daily_at_a_time_rolls_over_to_the_next_day_and_month() {
        let c = Cron::parse("30 2 * * *").unwrap();
        assert_eq!(
            c.next_after(ts("2026-11-30T03:00:00Z")),
            Some(ts("2026-12-01T02:30:00Z"))
        );
        let y = Cron::parse("@yearly").unwrap();
        assert_eq!(
            y.next_after(ts("2026-11-23T00:00:00Z")),
            Some(ts("2027-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn weekday_names_and_sunday_as_seven_work() {
        let c = Cron::parse("0 9 * * mon-fri").unwrap();
        // 2026-11-21 is a Saturday.
        assert_eq!(
            c.next_after(ts("2026-11-21T12:00:00Z")),
            Some(ts("2026-11-23T09:00:00Z"))
        );
        let s = Cron::parse("0 0 * * 7").unwrap();
        assert_eq!(
            s.next_after(ts("2026-11-21T12:00:00Z")),
            Some(ts("2026-11-22T00:00:00Z"))
        );
    }

    #[test]
    fn both_day_fields_restricted_match_either() {
        let c = Cron::parse("0 0 1 * sun").unwrap();
        assert_eq!(
            c.next_after(ts("2026-11-23T00:00:00Z")),
            Some(ts("2026-11-29T00:00:00Z"))
        );
    }

    #[test]
    fn impossible_dates_never_fire() {
        assert_eq!(
            Cron::parse("0 0 31 2 *")
                .unwrap()
                .next_after(ts("2026-01-01T00:00:00Z")),
            None
        );
    }

    #[test]
    fn malformed_expressions_are_refused_with_the_field_named() {
        for (bad, says) in [
            ("* * * *", "five"),
            ("60 * * * *", "minute"),
            ("* 24 * * *", "hour"),
            ("* * 0 * *", "day-of-month"),
            ("* * * foo *", "month"),
            ("*/0 * * * *", "step"),
            ("5-1 * * * *", "reversed"),
        ] {
            let e = Cron::parse(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    proptest::proptest! {
        #[test]
        fn next_is_later_matches_and_nothing_matches_in_between(
            minute in 0u32..60, hour_step in 1u32..12, start in 1_700_000_000i64..1_900_000_000,
        ) {
            let c = Cron::parse(&format!("{minute} */{hour_step} * * *")).unwrap();
            let t = Timestamp::from_second(start).unwrap();
            let next = c.next_after(t).unwrap();
            proptest::prop_assert!(next > t);
            let z = next.to_zoned(TimeZone::UTC);
            proptest::prop_assert_eq!(z.minute() as u32, minute);
            proptest::prop_assert_eq!(z.hour() as u32 % hour_step, 0);
            proptest::prop_assert!(next.as_second() - t.as_second() <= 86_400 + 60);
            // No earlier matching minute was skipped.
            let mut m = t.as_second() / 60 * 60 + 60;
            while m < next.as_second() {
                let zm = Timestamp::from_second(m).unwrap().to_zoned(TimeZone::UTC);
                proptest::prop_assert!(!(zm.minute() as u32 == minute && (zm.hour() as u32).is_multiple_of(hour_step)));
                m += 60;
            }
        }
    }
}
