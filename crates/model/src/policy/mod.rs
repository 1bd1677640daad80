//! Backup policies: what the daemon does for a service, and when. A policy is merged from
//! three layers, later ones winning: the config file's `[defaults]`, a named policy from the
//! file (label `lifeboat.policy`), and the container's own labels. The merged [`Policy`] is
//! validated once and fingerprinted (SHA-256 of its canonical JSON), so every backup can be
//! traced to the exact policy that made it.

mod cron;
mod duration;
mod retention;
mod schedule;

use crate::labels;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use cron::Cron;
pub use duration::{format_duration, parse_duration};
pub use retention::Retention;
pub use schedule::Schedule;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
/// Why a policy (or one of its values) is refused.
pub enum PolicyError {
    #[error("duration `{text}` is not valid: {why}")]
    /// A bad duration.
    Duration {
        /// The text given.
        text: String,
        /// What is wrong.
        why: String,
    },
    #[error("cron schedule `{text}` is not valid: {why}")]
    /// A bad cron expression.
    Cron {
        /// The text given.
        text: String,
        /// What is wrong.
        why: String,
    },
    #[error(
        "schedule `{text}` is neither an interval nor a cron expression; write e.g. `5m`, \
         `@every 1h`, `@daily` or `*/5 * * * *`"
    )]
    /// Neither an interval nor a cron expression.
    Schedule {
        /// The text given.
        text: String,
    },
    #[error("retention `{text}` is not valid: {why}")]
    /// A bad retention rule.
    Retention {
        /// The text given.
        text: String,
        /// What is wrong.
        why: String,
    },
    #[error("mode `{0}` is not one of hot, pause, stop, none")]
    /// An unknown consistency mode.
    Mode(String),
    #[error("strategy `{0}` is not one of {words}", words = crate::Strategy::words())]
    /// An unknown hot strategy.
    Strategy(String),
    #[error("{0}")]
    /// A bad `lifeboat.failover` or `lifeboat.failover-hosts` label.
    Failover(String),
    #[error("recover `{0}` is not one of auto, notify, off")]
    /// An unknown recovery mode.
    Recover(String),
    #[error("recover-attempts `{0}` is not a whole number from 1 to 10")]
    /// A bad number of recovery attempts.
    RecoverAttempts(String),
    #[error("policy `{0}` is not defined in the config file (known: {1})")]
    /// A named policy the config does not define: the service and the name.
    UnknownPolicy(String, String),
    #[error(
        "no schedule: set the label `lifeboat.schedule` (e.g. `1h`) or `schedule` in the config file's [defaults]"
    )]
    /// A managed service without a schedule.
    NoSchedule,
    #[error("{source} (from {origin})")]
    /// An error, and where the value came from (a label, the config file).
    At {
        /// Where the value came from.
        origin: String,
        /// The error.
        #[source]
        source: Box<PolicyError>,
    },
}

/// One layer of policy settings, as written in a config file section or in labels. Every
/// field is optional; [`PolicyOptions::resolve`] merges layers and validates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyOptions {
    /// When to back up.
    pub schedule: Option<String>,
    /// What to keep.
    pub retention: Option<String>,
    /// The consistency mode.
    pub mode: Option<String>,
    /// The hot strategy.
    pub strategy: Option<String>,
    /// Also save the image.
    pub with_image: Option<bool>,
    /// Called (GET) after each successful backup, healthchecks-style; `<url>/fail` after a
    /// failed one.
    pub ping_url: Option<String>,
    /// When to verify the newest backup with a restore drill (a schedule, like `schedule`).
    pub drill: Option<String>,
    /// What to do when the service fails: `auto`, `notify` (default) or `off`.
    pub recover: Option<String>,
    /// How long a failure must last before it counts (default 30s).
    pub recover_after: Option<String>,
    /// A removed container is a failure too (default false).
    pub recover_removed: Option<bool>,
    /// Automatic recoveries tried within an hour before the service is left alone
    /// (default 3); a failed one is tried again after `recover-after` doubled per attempt.
    #[serde(default, deserialize_with = "number_or_text")]
    pub recover_attempts: Option<String>,
}

/// A setting written as a TOML number (`3`) or a string (`"3"`), kept as text like the
/// label form and validated with the rest.
fn number_or_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(i64),
        Text(String),
    }
    Ok(Option::<Either>::deserialize(d)?.map(|v| match v {
        Either::Number(n) => n.to_string(),
        Either::Text(t) => t,
    }))
}

/// What the daemon does when a service fails, and after how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Recovery {
    /// `auto`, `notify` or `off`.
    pub mode: crate::RecoverMode,
    /// How long a failure must last before it counts.
    #[serde(with = "secs")]
    pub after: std::time::Duration,
    /// A removed container counts as failed and is recovered (`lifeboat.recover-removed`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub removed: bool,
    /// Automatic recoveries within [`Recovery::WINDOW`] before the service is left alone.
    #[serde(skip_serializing_if = "Recovery::default_attempts")]
    pub attempts: u32,
}

impl Default for Recovery {
    fn default() -> Self {
        Recovery {
            mode: crate::RecoverMode::Notify,
            after: std::time::Duration::from_secs(30),
            removed: false,
            attempts: Recovery::ATTEMPTS,
        }
    }
}

impl Recovery {
    /// Automatic recoveries tried within [`Recovery::WINDOW`] unless the policy says otherwise.
    pub const ATTEMPTS: u32 = 3;
    /// The window in which [`Recovery::attempts`] are counted.
    pub const WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);

    fn is_default(&self) -> bool {
        *self == Recovery::default()
    }

    /// Left out of the fingerprint while it is the default, so existing policies keep theirs.
    fn default_attempts(n: &u32) -> bool {
        *n == Recovery::ATTEMPTS
    }

    /// How long a failed recovery waits before the next attempt: `recover-after` doubled
    /// for each attempt already made in the window (capped at 64 times).
    pub fn backoff(&self, attempts_made: u32) -> std::time::Duration {
        self.after * 2u32.pow(attempts_made.min(6))
    }
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

/// The validated policy the daemon executes for one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// The named policy from the config file, if the service uses one.
    pub name: Option<String>,
    /// When to back up.
    pub schedule: Schedule,
    /// What to keep.
    pub retention: Option<Retention>,
    /// The consistency mode.
    pub mode: Option<crate::Mode>,
    /// The hot strategy.
    pub strategy: Option<crate::Strategy>,
    /// Also save the image.
    pub with_image: bool,
    /// A healthchecks-style URL pinged after each backup.
    pub ping_url: Option<String>,
    /// Drills enabled: retention then counts a backup as good only once a drill verified it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drill: Option<Schedule>,
    /// Automatic recovery (left out of the fingerprint while it is the default, so existing
    /// policies keep theirs).
    #[serde(skip_serializing_if = "Recovery::is_default")]
    pub recovery: Recovery,
}

impl Policy {
    /// SHA-256 of the canonical JSON of this policy.
    pub fn fingerprint(&self) -> String {
        let json = serde_json::to_vec(self).expect("a policy always serialises");
        hex::encode(Sha256::digest(&json))
    }
}

impl PolicyOptions {
    /// The policy settings found in a container's labels.
    pub fn from_labels(labels: &BTreeMap<String, String>) -> PolicyOptions {
        let get = |k: &str| {
            labels
                .get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        PolicyOptions {
            schedule: get(labels::SCHEDULE),
            retention: get(labels::RETENTION),
            mode: get(labels::MODE),
            strategy: get(labels::STRATEGY),
            with_image: get(labels::WITH_IMAGE).map(|v| v == "true"),
            ping_url: get(labels::PING_URL),
            drill: get(labels::DRILL),
            recover: get(labels::RECOVER),
            recover_after: get(labels::RECOVER_AFTER),
            recover_removed: get(labels::RECOVER_REMOVED).map(|v| v == "true"),
            recover_attempts: get(labels::RECOVER_ATTEMPTS),
        }
    }

    /// `self` with every field that `over` sets replaced.
    pub fn overlay(&self, over: &PolicyOptions) -> PolicyOptions {
        PolicyOptions {
            schedule: over.schedule.clone().or_else(|| self.schedule.clone()),
            retention: over.retention.clone().or_else(|| self.retention.clone()),
            mode: over.mode.clone().or_else(|| self.mode.clone()),
            strategy: over.strategy.clone().or_else(|| self.strategy.clone()),
            with_image: over.with_image.or(self.with_image),
            ping_url: over.ping_url.clone().or_else(|| self.ping_url.clone()),
            drill: over.drill.clone().or_else(|| self.drill.clone()),
            recover: over.recover.clone().or_else(|| self.recover.clone()),
            recover_after: over
                .recover_after
                .clone()
                .or_else(|| self.recover_after.clone()),
            recover_removed: over.recover_removed.or(self.recover_removed),
            recover_attempts: over
                .recover_attempts
                .clone()
                .or_else(|| self.recover_attempts.clone()),
        }
    }

    /// Merges defaults, the named policy and the labels of one container, and validates.
    pub fn resolve(
        defaults: &PolicyOptions,
        named: &BTreeMap<String, PolicyOptions>,
        labels: &BTreeMap<String, String>,
    ) -> Result<Policy, PolicyError> {
        let own = PolicyOptions::from_labels(labels);
        let name = labels.get(labels::POLICY).cloned();
        let mut merged = defaults.clone();
        if let Some(n) = &name {
            let p = named.get(n).ok_or_else(|| {
                let known: Vec<&str> = named.keys().map(String::as_str).collect();
                PolicyError::UnknownPolicy(n.clone(), known.join(", "))
            })?;
            merged = merged.overlay(p);
        }
        merged = merged.overlay(&own);
        let origin = |field: &str, from_label: bool| {
            if from_label {
                format!("label `lifeboat.{field}`")
            } else {
                match &name {
                    Some(n) => {
                        format!("`{field}` of policy `{n}` or [defaults] in the config file")
                    }
                    None => format!("`{field}` in the config file's [defaults]"),
                }
            }
        };
        let at = |field: &str, from_label: bool| {
            let o = origin(field, from_label);
            move |e: PolicyError| PolicyError::At {
                origin: o,
                source: Box::new(e),
            }
        };
        let schedule_text = merged.schedule.as_deref().ok_or(PolicyError::NoSchedule)?;
        let schedule =
            Schedule::parse(schedule_text).map_err(at("schedule", own.schedule.is_some()))?;
        let retention = merged
            .retention
            .as_deref()
            .filter(|r| *r != "none")
            .map(Retention::parse)
            .transpose()
            .map_err(at("retention", own.retention.is_some()))?;
        let drill = merged
            .drill
            .as_deref()
            .filter(|d| *d != "none")
            .map(Schedule::parse)
            .transpose()
            .map_err(at("drill", own.drill.is_some()))?;
        let mode = merged
            .mode
            .as_deref()
            .map(|m| {
                crate::Mode::from_word(m)
                    .ok_or_else(|| at("mode", own.mode.is_some())(PolicyError::Mode(m.into())))
            })
            .transpose()?;
        let strategy = merged
            .strategy
            .as_deref()
            .map(|s| {
                crate::Strategy::from_word(s).ok_or_else(|| {
                    at("strategy", own.strategy.is_some())(PolicyError::Strategy(s.into()))
                })
            })
            .transpose()?;
        let mut recovery = Recovery::default();
        if let Some(m) = merged.recover.as_deref() {
            recovery.mode = crate::RecoverMode::from_word(m).ok_or_else(|| {
                at("recover", own.recover.is_some())(PolicyError::Recover(m.into()))
            })?;
        }
        if let Some(a) = merged.recover_after.as_deref() {
            recovery.after =
                parse_duration(a).map_err(at("recover-after", own.recover_after.is_some()))?;
        }
        recovery.removed = merged.recover_removed.unwrap_or(false);
        if let Some(n) = merged.recover_attempts.as_deref() {
            recovery.attempts = n
                .trim()
                .parse()
                .ok()
                .filter(|n| (1..=10).contains(n))
                .ok_or_else(|| {
                    at("recover-attempts", own.recover_attempts.is_some())(
                        PolicyError::RecoverAttempts(n.into()),
                    )
                })?;
        }
        Ok(Policy {
            recovery,
            name,
            schedule,
            retention,
            mode,
            strategy,
            with_image: merged.with_image.unwrap_or(false),
            ping_url: merged.ping_url,
            drill,
        })
    }
}

/// Whether the daemon manages a container: `lifeboat.enable=true`, or any container when
/// `all` (the config file's `enable_all`) unless it says `lifeboat.enable=false`.
pub fn is_enabled(labels: &BTreeMap<String, String>, all: bool) -> bool {
    match labels.get(labels::ENABLE).map(|v| v.trim()) {
        Some("true") | Some("1") | Some("yes") => true,
        Some("false") | Some("0") | Some("no") => false,
        _ => all,
    }
}

/// Where a service may come back when its host dies: `None` unless `lifeboat.failover=auto`;
/// else the hosts of `lifeboat.failover-hosts` in order of preference (empty: the least
/// loaded host).
pub fn failover_hosts(
    labels: &BTreeMap<String, String>,
) -> Result<Option<Vec<String>>, PolicyError> {
    let value = |k: &str| labels.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    match value(labels::FAILOVER) {
        None | Some("off") => Ok(None),
        Some("auto") => {
            let hosts: Vec<String> = value(labels::FAILOVER_HOSTS)
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(str::to_string)
                .collect();
            for h in &hosts {
                crate::names::container_name(h).map_err(|e| {
                    PolicyError::Failover(format!(
                        "label {}: `{h}` is not a host name ({e}); list [cluster] host names, \
                         comma-separated",
                        labels::FAILOVER_HOSTS
                    ))
                })?;
            }
            Ok(Some(hosts))
        }
        Some(other) => Err(PolicyError::Failover(format!(
            "label {}: `{other}` is not a failover mode; use auto or off",
            labels::FAILOVER
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failover_is_off_unless_asked_and_names_its_hosts_in_order() {
        let hosts = |pairs: &[(&str, &str)]| failover_hosts(&labels(pairs)).unwrap();
        assert_eq!(hosts(&[]), None);
        assert_eq!(hosts(&[(labels::FAILOVER, "off")]), None);
        assert_eq!(hosts(&[(labels::FAILOVER, "auto")]), Some(vec![]));
        assert_eq!(
            hosts(&[
                (labels::FAILOVER, " auto "),
                (labels::FAILOVER_HOSTS, "h3, h2,")
            ]),
            Some(vec!["h3".into(), "h2".into()])
        );
        let bad = failover_hosts(&labels(&[(labels::FAILOVER, "yes")]))
            .unwrap_err()
            .to_string();
        assert!(bad.contains("auto or off"), "{bad}");
        let bad = failover_hosts(&labels(&[
            (labels::FAILOVER, "auto"),
            (labels::FAILOVER_HOSTS, "h2,../x"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(bad.contains("`../x` is not a host name"), "{bad}");
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn recovery_comes_from_labels_defaults_to_notify_and_leaves_old_fingerprints_alone() {
        let none = BTreeMap::new();
        let base = labels(&[("lifeboat.schedule", "1h")]);
        let plain =
            PolicyOptions::resolve(&PolicyOptions::default(), &BTreeMap::new(), &base).unwrap();
        assert_eq!(plain.recovery, Recovery::default());
        assert!(!serde_json::to_string(&plain).unwrap().contains("recovery"));
        let auto = labels(&[
            ("lifeboat.schedule", "1h"),
            ("lifeboat.recover", "auto"),
            ("lifeboat.recover-after", "5s"),
        ]);
        let p = PolicyOptions::resolve(&PolicyOptions::default(), &none, &auto).unwrap();
        assert_eq!(p.recovery.mode, crate::RecoverMode::Auto);
        assert_eq!(p.recovery.after, std::time::Duration::from_secs(5));
        assert!(!p.recovery.removed);
        assert_ne!(p.fingerprint(), plain.fingerprint());
        let removed = labels(&[
            ("lifeboat.schedule", "1h"),
            ("lifeboat.recover", "auto"),
            ("lifeboat.recover-after", "5s"),
            ("lifeboat.recover-removed", "true"),
        ]);
        let r = PolicyOptions::resolve(&PolicyOptions::default(), &none, &removed).unwrap();
        assert!(r.recovery.removed);
        assert_ne!(r.fingerprint(), p.fingerprint());
        assert_eq!(r.recovery.attempts, Recovery::ATTEMPTS);
        let mut two = auto.clone();
        two.insert("lifeboat.recover-attempts".into(), "2".into());
        let t = PolicyOptions::resolve(&PolicyOptions::default(), &none, &two).unwrap();
        assert_eq!(t.recovery.attempts, 2);
        assert_ne!(t.fingerprint(), p.fingerprint());
        assert_eq!(t.recovery.backoff(0), std::time::Duration::from_secs(5));
        assert_eq!(t.recovery.backoff(2), std::time::Duration::from_secs(20));
        assert_eq!(t.recovery.backoff(40), std::time::Duration::from_secs(320));
        for bad in ["0", "11", "three", "-1"] {
            two.insert("lifeboat.recover-attempts".into(), bad.into());
            let err = PolicyOptions::resolve(&PolicyOptions::default(), &none, &two).unwrap_err();
            assert!(
                err.to_string().contains("lifeboat.recover-attempts")
                    && err.to_string().contains("1 to 10"),
                "{err}"
            );
        }
        let bad = labels(&[("lifeboat.schedule", "1h"), ("lifeboat.recover", "always")]);
        let err = PolicyOptions::resolve(&PolicyOptions::default(), &none, &bad).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("lifeboat.recover") && text.contains("auto, notify, off"),
            "{text}"
        );
    }

    #[test]
    fn labels_override_the_named_policy_which_overrides_defaults() {
        let defaults = PolicyOptions {
            schedule: Some("1h".into()),
            retention: Some("last=10".into()),
            mode: Some("pause".into()),
            ..Default::default()
        };
        let named = BTreeMap::from([(
            "critical".to_string(),
            PolicyOptions {
                schedule: Some("5m".into()),
                retention: Some("7d".into()),
                ..Default::default()
            },
        )]);
        let p = PolicyOptions::resolve(
            &defaults,
            &named,
            &labels(&[(labels::POLICY, "critical"), (labels::RETENTION, "last=3")]),
        )
        .unwrap();
        assert_eq!(p.schedule.spec(), "5m");
        assert_eq!(p.retention.unwrap().spec(), "last=3");
        assert_eq!(p.mode, Some(crate::Mode::Pause));
        assert_eq!(p.name.as_deref(), Some("critical"));
    }

    #[test]
    fn the_fingerprint_changes_with_any_setting_and_not_with_spelling() {
        let d = PolicyOptions::default();
        let n = BTreeMap::new();
        let a = PolicyOptions::resolve(&d, &n, &labels(&[(labels::SCHEDULE, "300s")])).unwrap();
        let b = PolicyOptions::resolve(&d, &n, &labels(&[(labels::SCHEDULE, "5m")])).unwrap();
        let c = PolicyOptions::resolve(&d, &n, &labels(&[(labels::SCHEDULE, "6m")])).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
        assert_eq!(a.fingerprint().len(), 64);
    }

    #[test]
    fn errors_name_where_the_bad_value_came_from() {
        let d = PolicyOptions::default();
        let n = BTreeMap::new();
        let e = PolicyOptions::resolve(&d, &n, &labels(&[(labels::SCHEDULE, "sometimes")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("label `lifeboat.schedule`") && e.contains("sometimes"),
            "{e}"
        );
        let e = PolicyOptions::resolve(&d, &n, &labels(&[(labels::POLICY, "gold")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`gold` is not defined"), "{e}");
        let e = PolicyOptions::resolve(&d, &n, &labels(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no schedule"), "{e}");
        let e = PolicyOptions::resolve(
            &d,
            &n,
            &labels(&[(labels::SCHEDULE, "1h"), (labels::MODE, "freeze")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("freeze") && e.contains(labels::MODE), "{e}");
    }

    #[test]
    fn enablement_is_opt_in_unless_all_is_set() {
        assert!(is_enabled(&labels(&[(labels::ENABLE, "true")]), false));
        assert!(!is_enabled(&labels(&[]), false));
        assert!(is_enabled(&labels(&[]), true));
        assert!(!is_enabled(&labels(&[(labels::ENABLE, "false")]), true));
    }
}
