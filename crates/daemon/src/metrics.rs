//! `/metrics` in the Prometheus text format, rendered from the daemon's state.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use crate::daemon::{Daemon, Rpo};

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The Prometheus text of every metric.
pub fn render(d: &Daemon) -> String {
    let views = d.services_view();
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (service, v) in rows {
            if service.is_empty() {
                let _ = writeln!(out, "{name} {v}");
            } else {
                let _ = writeln!(out, "{name}{{service=\"{}\"}} {v}", label(&service));
            }
        }
    };
    let per = |f: &dyn Fn(&crate::daemon::ServiceView) -> Option<f64>| -> Vec<(String, f64)> {
        views
            .iter()
            .filter_map(|v| f(v).map(|x| (v.name.clone(), x)))
            .collect()
    };
    family(
        "lifeboat_last_success_timestamp_seconds",
        "gauge",
        "Unix time the last successful backup of the service finished.",
        per(&|v| {
            v.last_success_at
                .as_deref()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .map(|t| t.as_second() as f64)
        }),
    );
    let success = |v: &crate::daemon::ServiceView| {
        // The last successful job, found through the service's own state.
        d.state()
            .services
            .get(&v.name)
            .and_then(|s| s.last_success.clone())
    };
    let recoveries = |v: &crate::daemon::ServiceView| {
        d.state()
            .services
            .get(&v.name)
            .map(|s| s.recoveries)
            .unwrap_or((0, 0, None))
    };
    family(
        "lifeboat_recoveries_total",
        "counter",
        "Recoveries of the service that succeeded (since the daemon started).",
        per(&|v| Some(recoveries(v).0 as f64)),
    );
    family(
        "lifeboat_recovery_failures_total",
        "counter",
        "Recoveries of the service that failed (since the daemon started).",
        per(&|v| Some(recoveries(v).1 as f64)),
    );
    family(
        "lifeboat_last_recovery_seconds",
        "gauge",
        "How long the last successful recovery of the service took.",
        per(&|v| recoveries(v).2),
    );
    family(
        "lifeboat_last_backup_duration_seconds",
        "gauge",
        "Duration of the last successful backup.",
        per(&|v| success(v).and_then(|j| j.duration_seconds)),
    );
    family(
        "lifeboat_last_backup_added_bytes",
        "gauge",
        "Bytes the last successful backup added to the repository (after deduplication).",
        per(&|v| success(v).and_then(|j| j.bytes_added).map(|b| b as f64)),
    );
    family(
        "lifeboat_backup_failures_total",
        "counter",
        "Failed backups of the service (all time, from the job history).",
        per(&|v| Some(v.failures_total as f64)),
    );
    family(
        "lifeboat_last_backup_failed",
        "gauge",
        "1 when the service's most recent backup attempt failed.",
        per(&|v| {
            Some(
                v.last_job
                    .as_ref()
                    .is_some_and(|j| j.state != lifeboat_model::JobState::Succeeded)
                    as u8 as f64,
            )
        }),
    );
    family(
        "lifeboat_snapshots",
        "gauge",
        "Committed backups of the service in the repository.",
        per(&|v| v.snapshots.map(|n| n as f64)),
    );
    family(
        "lifeboat_rpo_seconds",
        "gauge",
        "Recovery point objective: the schedule interval times the tolerance.",
        per(&|v| v.rpo_seconds.map(|s| s as f64)),
    );
    family(
        "lifeboat_rpo_breached",
        "gauge",
        "1 when the last successful backup is older than the RPO (or there is none).",
        per(&|v| Some((v.rpo == Rpo::Red) as u8 as f64)),
    );
    family(
        "lifeboat_last_verified_timestamp_seconds",
        "gauge",
        "Unix time a restore drill last restored, started and probed a backup of the service.",
        per(&|v| {
            v.last_verified_at
                .as_deref()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .map(|t| t.as_second() as f64)
        }),
    );
    family(
        "lifeboat_last_drill_failed",
        "gauge",
        "1 when the service's most recent restore drill failed.",
        per(&|v| Some(v.last_drill_failed as u8 as f64)),
    );
    let running = d.state().scheduler.running();
    family(
        "lifeboat_jobs_running",
        "gauge",
        "Jobs running now.",
        vec![(String::new(), running as f64)],
    );
    family(
        "lifeboat_jobs_started_total",
        "counter",
        "Jobs started since the daemon started.",
        vec![(String::new(), d.jobs_started.load(Ordering::Relaxed) as f64)],
    );
    family(
        "lifeboat_daemon_start_time_seconds",
        "gauge",
        "Unix time the daemon started.",
        vec![(String::new(), d.started_at.as_second() as f64)],
    );
    family(
        "lifeboat_notifications_failed_total",
        "counter",
        "Webhooks and pings not delivered after retries.",
        vec![(
            String::new(),
            d.notifier.failed.load(Ordering::Relaxed) as f64,
        )],
    );
    family(
        "lifeboat_notifications_sent_total",
        "counter",
        "Webhooks and pings delivered.",
        vec![(
            String::new(),
            d.notifier.sent.load(Ordering::Relaxed) as f64,
        )],
    );
    region_metrics(d, &mut out);
    cluster_metrics(d, &mut out);
    out
}

/// In a cluster: who leads (1) and who does not (0), per registered host, the heartbeat
/// age of each, where each failover service lives, and whether etcd answers this daemon.
fn cluster_metrics(d: &Daemon, out: &mut String) {
    let Some(c) = &d.cluster else {
        return;
    };
    let view = c.view();
    let _ = writeln!(
        out,
        "# HELP lifeboat_cluster_leader 1 for the host leading the cluster, 0 for the others.\n\
         # TYPE lifeboat_cluster_leader gauge"
    );
    let mut hosts: Vec<(String, f64)> = view
        .hosts
        .iter()
        .map(|h| (h.record.host.clone(), h.heartbeat_age_seconds))
        .collect();
    if !hosts.iter().any(|(h, _)| *h == view.host) {
        hosts.push((view.host.clone(), f64::NAN));
    }
    for (host, _) in &hosts {
        let leads =
            view.leader.as_deref() == Some(host.as_str()) && (host != &view.host || view.leading);
        let _ = writeln!(
            out,
            "lifeboat_cluster_leader{{host=\"{}\"}} {}",
            label(host),
            u8::from(leads)
        );
    }
    let _ = writeln!(
        out,
        "# HELP lifeboat_cluster_heartbeat_age_seconds Seconds since the host's last heartbeat.\n\
         # TYPE lifeboat_cluster_heartbeat_age_seconds gauge"
    );
    for (host, age) in hosts.iter().filter(|(_, a)| a.is_finite()) {
        let _ = writeln!(
            out,
            "lifeboat_cluster_heartbeat_age_seconds{{host=\"{}\"}} {age}",
            label(host)
        );
    }
    let _ = writeln!(
        out,
        "# HELP lifeboat_cluster_failover_service 1 per failover service, labelled with the \
         host it lives on and its state (running, moving, failed).\n\
         # TYPE lifeboat_cluster_failover_service gauge"
    );
    for o in &view.services {
        let state = serde_json::to_value(o.state).unwrap_or_default();
        let _ = writeln!(
            out,
            "lifeboat_cluster_failover_service{{service=\"{}\",host=\"{}\",state=\"{}\"}} 1",
            label(&o.service),
            label(&o.host),
            state.as_str().unwrap_or("")
        );
    }
    let _ = writeln!(
        out,
        "# HELP lifeboat_cluster_etcd_up 1 when etcd answered this daemon's last heartbeat.\n\
         # TYPE lifeboat_cluster_etcd_up gauge\nlifeboat_cluster_etcd_up {}",
        u8::from(view.etcd_ok)
    );
}

/// Per region and service: the age of the newest backup there against the region's RPO
/// (its copy schedule's interval × `rpo_tolerance`), and copy failures in a row.
fn region_metrics(d: &Daemon, out: &mut String) {
    let now = jiff::Timestamp::now();
    let regions = d.state().regions.clone();
    let mut lag = String::new();
    let mut breached = String::new();
    let mut failures = String::new();
    let mut recovery = String::new();
    let mut rto_breached = String::new();
    for plan in &d.plan.regions {
        let Some(r) = regions.get(&plan.name) else {
            continue;
        };
        let rpo = plan.schedule.interval(now).as_secs_f64() * d.plan.rpo_tolerance;
        let region = label(&plan.name);
        let _ = writeln!(
            failures,
            "lifeboat_region_copy_failures{{region=\"{region}\"}} {}",
            r.failures
        );
        for (service, (seconds, ok)) in &r.drills {
            let labels = format!("region=\"{region}\",service=\"{}\"", label(service));
            if *ok {
                let _ = writeln!(
                    recovery,
                    "lifeboat_region_recovery_seconds{{{labels}}} {seconds}"
                );
            }
            if let Some(rto) = plan.rto {
                // A failed drill is no recovery at all: past any objective.
                let breached = !*ok || *seconds > rto.as_secs_f64();
                let _ = writeln!(
                    rto_breached,
                    "lifeboat_region_rto_breached{{{labels}}} {}",
                    u8::from(breached)
                );
            }
        }
        for (service, newest) in &r.newest {
            let Ok(t) = newest.parse::<jiff::Timestamp>() else {
                continue;
            };
            let age = (now.as_second() - t.as_second()).max(0) as f64;
            let labels = format!("region=\"{region}\",service=\"{}\"", label(service));
            let _ = writeln!(lag, "lifeboat_region_lag_seconds{{{labels}}} {age}");
            let _ = writeln!(
                breached,
                "lifeboat_region_rpo_breached{{{labels}}} {}",
                u8::from(age > rpo)
            );
        }
    }
    for (name, help, kind, rows) in [
        (
            "lifeboat_region_lag_seconds",
            "Age of the newest backup of the service in the region.",
            "gauge",
            lag,
        ),
        (
            "lifeboat_region_rpo_breached",
            "1 when that age is past the region's RPO (copy interval x rpo_tolerance).",
            "gauge",
            breached,
        ),
        (
            "lifeboat_region_recovery_seconds",
            "Recovery time (restored, healthy, probed) of the newest passed drill from the region.",
            "gauge",
            recovery,
        ),
        (
            "lifeboat_region_rto_breached",
            "1 when the newest drill from the region failed or took longer than its rto.",
            "gauge",
            rto_breached,
        ),
        (
            "lifeboat_region_copy_failures",
            "Copies to the region that failed in a row.",
            "gauge",
            failures,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{rows}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `lifeboat_*` name in `text`.
    fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        let mut rest = text;
        while let Some(i) = rest.find("lifeboat_") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            out.insert(tail[..end].to_string());
            rest = &tail[end..];
        }
        out
    }

    #[test]
    fn the_shipped_alert_rules_and_dashboard_name_only_metrics_the_daemon_exports() {
        let exported = metric_names(include_str!("metrics.rs"));
        for (file, text) in [
            (
                "lifeboat-rules.yml",
                include_str!("../../../deploy/prometheus/lifeboat-rules.yml"),
            ),
            (
                "lifeboat-dashboard.json",
                include_str!("../../../deploy/grafana/lifeboat-dashboard.json"),
            ),
        ] {
            let used = metric_names(text);
            assert!(used.len() >= 8, "{file}: {used:?}");
            let unknown: Vec<_> = used.difference(&exported).collect();
            assert!(
                unknown.is_empty(),
                "{file} names unknown metrics: {unknown:?}"
            );
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
