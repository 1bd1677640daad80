//! Which backups a retention policy keeps: `7d` (everything within 7 days of the newest) or
//! counts (`last=3,hourly=24,daily=7,weekly=4,monthly=12`, optionally with `within=7d`).
//! The rules are restic's: each calendar rule keeps the newest backup of each of the N newest
//! hours/days/ISO weeks/months (UTC) that have one; a backup kept by any rule is kept. The
//! newest backup is always kept, whatever the rules say.

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::PolicyError;
use super::duration::{format_duration, parse_duration};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
/// What to keep of a service's backups.
pub struct Retention {
    /// Everything taken within this long of the newest backup.
    pub within: Option<Duration>,
    /// The newest N.
    pub last: u32,
    /// The newest of each of the last N hours.
    pub hourly: u32,
    /// The newest of each of the last N days.
    pub daily: u32,
    /// The newest of each of the last N weeks.
    pub weekly: u32,
    /// The newest of each of the last N months.
    pub monthly: u32,
}

impl Retention {
    /// Parses `7d`, `last=3,daily=7` and the like.
    pub fn parse(text: &str) -> Result<Retention, PolicyError> {
        let bad = |why: String| PolicyError::Retention {
            text: text.to_string(),
            why,
        };
        let mut r = Retention::default();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let Some((key, value)) = item.split_once('=') else {
                r.within = Some(parse_duration(item).map_err(|e| bad(e.to_string()))?);
                continue;
            };
            let key = key.trim().trim_start_matches("keep-");
            let value = value.trim();
            if key == "within" {
                r.within = Some(parse_duration(value).map_err(|e| bad(e.to_string()))?);
                continue;
            }
            let n: u32 = value
                .parse()
                .map_err(|_| bad(format!("`{value}` for {key} is not a count")))?;
            match key {
                "last" => r.last = n,
                "hourly" => r.hourly = n,
                "daily" => r.daily = n,
                "weekly" => r.weekly = n,
                "monthly" => r.monthly = n,
                other => {
                    return Err(bad(format!(
                        "unknown rule `{other}` (use within, last, hourly, daily, weekly, monthly)"
                    )));
                }
            }
        }
        if r == Retention::default() {
            return Err(bad(
                "it keeps nothing; write e.g. `7d` or `last=3,daily=7`".into()
            ));
        }
        Ok(r)
    }

    /// The normalised spelling, used in fingerprints.
    pub fn spec(&self) -> String {
        let mut parts = Vec::new();
        if let Some(w) = self.within {
            parts.push(format!("within={}", format_duration(w)));
        }
        for (k, v) in [
            ("last", self.last),
            ("hourly", self.hourly),
            ("daily", self.daily),
            ("weekly", self.weekly),
            ("monthly", self.monthly),
        ] {
            if v > 0 {
                parts.push(format!("{k}={v}"));
            }
        }
        parts.join(",")
    }

    /// For each of `times` (any order): keep it?
    pub fn keep(&self, times: &[Timestamp]) -> Vec<bool> {
        let mut order: Vec<usize> = (0..times.len()).collect();
        order.sort_by(|a, b| times[*b].cmp(&times[*a])); // newest first
        let mut keep = vec![false; times.len()];
        let Some(&newest) = order.first() else {
            return keep;
        };
        // Every backup dated at the newest time: none of them can be told to be older.
        for &i in &order {
            if times[i] != times[newest] {
                break;
            }
            keep[i] = true;
        }
        for &i in order.iter().take(self.last as usize) {
            keep[i] = true;
        }
        if let Some(w) = self.within {
            let cutoff = times[newest].checked_sub(w).unwrap_or(Timestamp::MIN);
            for &i in &order {
                keep[i] |= times[i] >= cutoff;
            }
        }
        type Bucket = fn(Timestamp) -> (i32, i32, i32, i32);
        let rules: [(u32, Bucket); 4] = [
            (self.hourly, |t| {
                let z = t.to_zoned(TimeZone::UTC);
                (
                    z.year() as i32,
                    z.month() as i32,
                    z.day() as i32,
                    z.hour() as i32,
                )
            }),
            (self.daily, |t| {
                let z = t.to_zoned(TimeZone::UTC);
                (z.year() as i32, z.month() as i32, z.day() as i32, 0)
            }),
            (self.weekly, |t| {
                let w = t.to_zoned(TimeZone::UTC).date().iso_week_date();
                (w.year() as i32, w.week() as i32, 0, 0)
            }),
            (self.monthly, |t| {
                let z = t.to_zoned(TimeZone::UTC);
                (z.year() as i32, z.month() as i32, 0, 0)
            }),
        ];
        for (count, bucket) in rules {
            let mut seen = BTreeSet::new();
            for &i in &order {
                if seen.len() >= count as usize {
                    break;
                }
                if seen.insert(bucket(times[i])) {
                    keep[i] = true;
                }
            }
        }
        keep
    }
}

impl serde::Serialize for Retention {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.spec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_bare_duration_means_within() {
        let r = Retention::parse("7d").unwrap();
        assert_eq!(r.within, Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(
            Retention::parse("keep-last=3, daily=7").unwrap().spec(),
            "last=3,daily=7"
        );
    }

    #[test]
    fn bad_retention_is_refused_with_the_rule_named() {
        for (bad, says) in [
            ("", "keeps nothing"),
            ("yearly=2", "unknown rule"),
            ("last=x", "not a count"),
            ("7", "unit"),
        ] {
            let e = Retention::parse(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day() {
        let times = [
            at("2026-11-20T08:00:00Z"),
            at("2026-11-20T20:00:00Z"),
            at("2026-11-21T09:00:00Z"),
            at("2026-11-22T09:00:00Z"),
            at("2026-11-22T10:00:00Z"),
        ];
        let r = Retention::parse("daily=2").unwrap();
        assert_eq!(r.keep(&times), vec![false, false, true, false, true]);
        let r = Retention::parse("daily=3").unwrap();
        assert_eq!(r.keep(&times), vec![false, true, true, false, true]);
    }

    #[test]
    fn within_counts_back_from_the_newest_backup_not_from_now() {
        // Backups stopped a month ago: retention must not delete the last ones.
        let times = [
            at("2026-10-01T00:00:00Z"),
            at("2026-10-20T00:00:00Z"),
            at("2026-10-23T00:00:00Z"),
        ];
        let r = Retention::parse("7d").unwrap();
        assert_eq!(r.keep(&times), vec![false, true, true]);
    }

    fn times() -> impl Strategy<Value = Vec<Timestamp>> {
        prop::collection::vec(1_700_000_000i64..1_800_000_000, 0..60).prop_map(|v| {
            v.into_iter()
                .map(|s| Timestamp::from_second(s).unwrap())
                .collect()
        })
    }

    fn retention() -> impl Strategy<Value = Retention> {
        (
            prop::option::of(1u64..100 * 86_400),
            0u32..5,
            0u32..30,
            0u32..10,
            0u32..6,
            0u32..4,
        )
            .prop_map(|(w, last, hourly, daily, weekly, monthly)| Retention {
                within: w.map(Duration::from_secs),
                last,
                hourly,
                daily,
                weekly,
                monthly,
            })
    }

    proptest! {
        #[test]
        fn the_newest_backup_is_always_kept(ts in times(), r in retention()) {
            let keep = r.keep(&ts);
            if let Some(newest) = ts.iter().max() {
                let i = ts.iter().position(|t| t == newest).unwrap();
                prop_assert!(keep.iter().zip(&ts).any(|(k, t)| *k && t == newest), "index {i}");
            }
        }

        #[test]
        fn counts_bound_what_is_kept(ts in times(), r in retention()) {
            prop_assume!(r.within.is_none());
            let kept = r.keep(&ts).iter().filter(|k| **k).count();
            let bound = (r.last + r.hourly + r.daily + r.weekly + r.monthly).max(1) as usize;
            prop_assert!(kept <= bound.min(ts.len()));
        }

        #[test]
        fn backups_sharing_the_newest_time_are_all_kept(n in 2usize..30, hourly in 0u32..1000) {
            // Found by the retention fuzz target: with 22 backups at one second, `hourly=806`
            // kept one of them.
            let t = Timestamp::from_second(234_571_946_510).unwrap();
            let r = Retention { hourly, last: 1, ..Retention::default() };
            prop_assert!(r.keep(&vec![t; n]).iter().all(|k| *k));
        }

        #[test]
        fn keep_last_keeps_exactly_the_newest_n(ts in times(), n in 1u32..10) {
            let r = Retention { last: n, ..Retention::default() };
            let keep = r.keep(&ts);
            let mut sorted: Vec<_> = ts.iter().enumerate().collect();
            sorted.sort_by(|a, b| b.1.cmp(a.1));
            let newest = sorted.first().map(|(_, t)| **t);
            for (rank, (i, t)) in sorted.iter().enumerate() {
                // (All backups at the newest time are kept: none can be told to be older.)
                prop_assert_eq!(keep[*i], rank < n as usize || Some(**t) == newest);
            }
        }

        #[test]
        fn applying_retention_twice_deletes_nothing_more(ts in times(), r in retention()) {
            let keep = r.keep(&ts);
            let kept: Vec<Timestamp> = ts.iter().zip(&keep).filter(|(_, k)| **k).map(|(t, _)| *t).collect();
            prop_assert!(r.keep(&kept).iter().all(|k| *k));
        }

        #[test]
        fn within_keeps_everything_in_the_window(ts in times(), secs in 1u64..50 * 86_400) {
            let r = Retention { within: Some(Duration::from_secs(secs)), ..Retention::default() };
            let keep = r.keep(&ts);
            if let Some(newest) = ts.iter().max() {
                for (t, k) in ts.iter().zip(&keep) {
                    prop_assert_eq!(*k, newest.as_second() - t.as_second() <= secs as i64);
                }
            }
        }
    }
}
