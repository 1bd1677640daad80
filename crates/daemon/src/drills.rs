//! Drills in a cluster. The leader runs every host's scheduled drills, each slot once
//! (claimed like the other repository-wide jobs), in a sandbox on its own engine. Every
//! drill's end is published in etcd, and the service's own host records it in its history:
//! its retention gate, its recoveries and its status count it as if it had run there.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use lifeboat_model::policy::Schedule;
use serde_json::json;

use crate::cluster::{Cluster, ClusterView, DrillPlan, DrillResult};
use crate::daemon::{Daemon, State, drill_key};

/// How often a host reads the published results.
const READ_EVERY: Duration = Duration::from_secs(5);

/// A published result is kept three drill intervals, and at least this long.
const KEEP_AT_LEAST: Duration = Duration::from_secs(3600);

/// What this host knows of the cluster's drills.
#[derive(Debug, Default)]
pub struct Local {
    /// While this host leads: the services whose drills it schedules, with their schedules.
    pub scheduled: BTreeMap<String, Schedule>,
    /// Services with a passed drill of the primary repository, wherever it ran.
    pub verified: BTreeSet<String>,
    /// When the results were last read.
    read_at: Option<Instant>,
}

/// The drill plans of this host's services, for its heartbeat.
pub fn plans(st: &State) -> Vec<DrillPlan> {
    st.services
        .values()
        .filter(|s| s.present)
        .filter_map(|s| {
            Some(DrillPlan {
                service: s.name.clone(),
                every: s.policy.as_ref()?.drill.as_ref()?.spec(),
                backed_up: s.last_success.is_some(),
            })
        })
        .collect()
}

/// One turn of the cluster's drill work: every few seconds, records the drills other hosts
/// ran of this host's services; while leading, schedules every host's drills.
pub fn tick(d: &Daemon, c: &Cluster, view: &ClusterView) {
    if !view.leading {
        unschedule_all(d);
    }
    let due = d
        .state()
        .drills
        .read_at
        .is_none_or(|t| t.elapsed() >= READ_EVERY);
    if !due {
        return;
    }
    d.state().drills.read_at = Some(Instant::now());
    let results = match c.drill_results() {
        Ok(r) => r,
        Err(e) => {
            d.log(
                "warn",
                "cannot read the cluster's drill results",
                json!({"error": e.to_string()}),
            );
            return;
        }
    };
    import(d, &c.plan.host, &results);
    if view.leading {
        schedule(d, view, &results);
    }
}

/// Records the results of drills other hosts ran of this host's services.
fn import(d: &Daemon, me: &str, results: &[DrillResult]) {
    let mine: BTreeSet<String> = d.state().services.keys().cloned().collect();
    let mut changed = BTreeSet::new();
    for r in results
        .iter()
        .filter(|r| r.host != me && mine.contains(&r.service))
    {
        match d.store().import_drill(r) {
            Ok(true) => {
                changed.insert(r.service.clone());
            }
            Ok(false) => {}
            Err(e) => d.log(
                "error",
                "cannot record a drill another host ran",
                json!({"service": r.service, "host": r.host, "error": e.to_string()}),
            ),
        }
    }
    for service in changed {
        let (last, verified) = d.store().last_drills(&service).unwrap_or_default();
        if let Some(s) = d.state().services.get_mut(&service) {
            s.last_drill = last;
            s.last_verified = verified;
        }
    }
    d.state().drills.verified = results
        .iter()
        .filter(|r| r.ok && r.region.is_none())
        .map(|r| r.service.clone())
        .collect();
}

/// The leader's part: a drill schedule entry for every backed-up service any live host
/// publishes, counted from its newest drill anywhere; entries no host asks for any more go.
fn schedule(d: &Daemon, view: &ClusterView, results: &[DrillResult]) {
    let mut wanted = BTreeMap::new();
    for p in view.hosts.iter().flat_map(|h| &h.record.drills) {
        if !p.backed_up || lifeboat_model::names::container_name(&p.service).is_err() {
            continue;
        }
        if let Ok(s) = Schedule::parse(&p.every) {
            wanted.entry(p.service.clone()).or_insert(s);
        }
    }
    let mut last: BTreeMap<&str, Timestamp> = BTreeMap::new();
    for r in results {
        if let Some(t) = r.started_at.as_deref().and_then(|t| t.parse().ok()) {
            let e = last.entry(r.service.as_str()).or_insert(t);
            *e = (*e).max(t);
        }
    }
    let now = Timestamp::now();
    let mut st = d.state();
    let old = std::mem::take(&mut st.drills.scheduled);
    for name in old.keys().filter(|n| !wanted.contains_key(*n)) {
        st.scheduler.unschedule(&drill_key(name));
    }
    for (name, s) in &wanted {
        st.scheduler.upsert(
            &drill_key(name),
            s.clone(),
            last.get(name.as_str()).copied(),
            now,
        );
    }
    let changed = wanted != old;
    st.drills.scheduled = wanted;
    drop(st);
    if changed {
        // The scheduler loop sleeps until its next known run: a new entry wakes it.
        d.wake.notify_one();
    }
}

/// No longer leading: the drills of the cluster are someone else's.
fn unschedule_all(d: &Daemon) {
    let mut st = d.state();
    for name in std::mem::take(&mut st.drills.scheduled).keys() {
        st.scheduler.unschedule(&drill_key(name));
    }
}

/// Publishes the end of drill job `id` of `service`, so its own host counts it.
pub fn publish(d: &Daemon, c: &Cluster, service: &str, id: i64, region: Option<&str>) {
    let Some(job) = d.store().job(id).ok().flatten() else {
        return;
    };
    let every = {
        let st = d.state();
        st.drills.scheduled.get(service).cloned().or_else(|| {
            st.services
                .get(service)
                .and_then(|s| s.policy.as_ref()?.drill.clone())
        })
    };
    let keep = every.map_or(KEEP_AT_LEAST, |s| {
        (s.interval(Timestamp::now()) * 3).max(KEEP_AT_LEAST)
    });
    let result = DrillResult {
        service: service.to_string(),
        host: c.plan.host.clone(),
        job: id,
        ok: job.state == lifeboat_model::JobState::Succeeded,
        backup_id: job.backup_id,
        snapshot_id: job.snapshot_id,
        region: region.map(str::to_string),
        started_at: job.started_at,
        finished_at: job.finished_at,
        duration_seconds: job.duration_seconds,
        error: job.error,
    };
    if let Err(e) = c.publish_drill(&result, keep) {
        d.log(
            "warn",
            "cannot publish a drill's result to the cluster",
            json!({"service": service, "job": id, "error": e.to_string()}),
        );
    }
}
