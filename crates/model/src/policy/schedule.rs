//! When a service is backed up: a fixed interval (`5m`, `@every 5m`) or a cron expression.

use std::time::Duration;

use jiff::Timestamp;

use super::PolicyError;
use super::cron::Cron;
use super::duration::{format_duration, parse_duration};

#[derive(Debug, Clone, PartialEq, Eq)]
/// When a job runs.
pub enum Schedule {
    /// Every so long.
    Every(Duration),
    /// At the times of a cron expression.
    Cron(Cron),
}

impl Schedule {
    /// `5m`, `@every 5m`, `*/5 * * * *` or a macro such as `@hourly`.
    pub fn parse(text: &str) -> Result<Schedule, PolicyError> {
        let t = text.trim();
        if let Some(rest) = t.strip_prefix("@every") {
            return Ok(Schedule::Every(parse_duration(rest)?));
        }
        if t.starts_with('@') || t.contains(char::is_whitespace) {
            return Ok(Schedule::Cron(Cron::parse(t)?));
        }
        parse_duration(t)
            .map(Schedule::Every)
            .map_err(|_| PolicyError::Schedule {
                text: text.to_string(),
            })
    }

    /// The normalised spelling (`300s` → `5m`), used in fingerprints.
    pub fn spec(&self) -> String {
        match self {
            Schedule::Every(d) => format_duration(*d),
            Schedule::Cron(c) => c.as_str().to_string(),
        }
    }

    /// The first slot strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        match self {
            Schedule::Every(d) => t.checked_add(*d).ok(),
            Schedule::Cron(c) => c.next_after(t),
        }
    }

    /// The gap between two runs around `t` (for a cron schedule, between its next two
    /// slots): the basis of the recovery point objective.
    pub fn interval(&self, t: Timestamp) -> Duration {
        match self {
            Schedule::Every(d) => *d,
            Schedule::Cron(c) => c
                .next_after(t)
                .and_then(|a| c.next_after(a).map(|b| (a, b)))
                .map(|(a, b)| Duration::from_secs((b.as_second() - a.as_second()).max(60) as u64))
                .unwrap_or(Duration::from_secs(86_400 * 365)),
        }
    }
}

impl serde::Serialize for Schedule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.spec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_and_cron_expressions_are_told_apart() {
        assert_eq!(
            Schedule::parse("10s").unwrap(),
            Schedule::Every(Duration::from_secs(10))
        );
        assert_eq!(
            Schedule::parse("@every 5m").unwrap(),
            Schedule::Every(Duration::from_secs(300))
        );
        assert!(matches!(
            Schedule::parse("*/5 * * * *").unwrap(),
            Schedule::Cron(_)
        ));
        assert!(matches!(
            Schedule::parse("@daily").unwrap(),
            Schedule::Cron(_)
        ));
        assert_eq!(Schedule::parse("300s").unwrap().spec(), "5m");
    }

    #[test]
    fn a_schedule_that_is_neither_is_refused_with_examples() {
        let e = Schedule::parse("often").unwrap_err().to_string();
        assert!(e.contains("often") && e.contains("*/5 * * * *"), "{e}");
    }

    #[test]
    fn a_cron_interval_is_the_gap_between_slots() {
        let s = Schedule::parse("*/15 * * * *").unwrap();
        let t: Timestamp = "2026-11-23T10:02:00Z".parse().unwrap();
        assert_eq!(s.interval(t), Duration::from_secs(900));
    }
}
