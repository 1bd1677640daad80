//! Which containers the daemon manages and with what policy: read once at start, then
//! followed through the engine's event stream (create, start, die, destroy, rename,
//! update), never by polling. Compose applies a label change by recreating the container,
//! which arrives here as destroy + create.

use lifeboat_core::wait::Backoff;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use lifeboat_docker::{ContainerDetails, EngineError};
use lifeboat_model::policy::{PolicyOptions, is_enabled};
use serde_json::json;

use crate::daemon::{Daemon, Service, drill_key};

/// Reads every container and brings the service list in line with it.
pub fn discover(d: &Daemon) -> Result<(), EngineError> {
    let names = d.engine.container_names()?;
    let mut seen = Vec::new();
    for name in &names {
        let details = d.engine.container(name)?;
        if let Some(c) = &details {
            seen.push(c.name.clone());
        }
        apply(d, name, details);
    }
    d.discovered
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let gone: Vec<String> = d
        .state()
        .services
        .keys()
        .filter(|n| !seen.contains(n))
        .cloned()
        .collect();
    for name in gone {
        apply(d, &name, None);
    }
    Ok(())
}

/// Updates one service from its container's current details (`None`: it is gone).
pub fn apply(d: &Daemon, name: &str, details: Option<ContainerDetails>) {
    let now = Timestamp::now();
    let Some(c) = details else {
        let mut st = d.state();
        if let Some(s) = st.services.get_mut(name)
            && s.present
        {
            s.present = false;
            st.scheduler.unschedule(name);
            st.scheduler.unschedule(&drill_key(name));
            drop(st);
            d.log(
                "warn",
                "container gone; its backups are kept",
                json!({"service": name}),
            );
            d.notifier.webhook(json!({
                "event": "service_missing", "service": name,
                "message": format!("container `{name}` was removed; it is no longer backed up"),
            }));
        }
        return;
    };
    let name = c.name.clone();
    let in_scope = d
        .plan
        .scope
        .as_ref()
        .is_none_or(|(k, v)| c.config.label(k) == Some(v.as_str()));
    // A service that moved to another host in the cluster: this stale copy is not managed.
    let moved_away = d.state().failover.moved_away.contains(&name);
    if moved_away || !in_scope || !is_enabled(&c.config.labels, d.plan.enable_all) {
        let mut st = d.state();
        if st.services.remove(&name).is_some() {
            st.scheduler.unschedule(&name);
            st.scheduler.unschedule(&drill_key(&name));
            drop(st);
            d.log(
                "info",
                "service no longer enabled",
                json!({"service": name}),
            );
        }
        return;
    }
    let mut resolved = PolicyOptions::resolve(&d.plan.defaults, &d.plan.policies, &c.config.labels);
    let failover = match lifeboat_model::policy::failover_hosts(&c.config.labels) {
        Ok(hosts) => hosts.map(|hosts| crate::failover::Spec {
            hosts,
            stack: c.compose.as_ref().map(|i| i.project.clone()),
        }),
        Err(e) => {
            // A failover label that does not parse leaves the service unprotected, said
            // as for any other invalid label.
            if resolved.is_ok() {
                resolved = Err(e);
            }
            None
        }
    };
    let (history, failures, drills) = {
        let store = d.store();
        (
            store.last_backups(&name).unwrap_or_default(),
            store.failures(&name).unwrap_or(0),
            store.last_drills(&name).unwrap_or_default(),
        )
    };
    let mut st = d.state();
    let is_new = !st.services.contains_key(&name);
    let service = st.services.entry(name.clone()).or_insert_with(|| Service {
        name: name.clone(),
        present: true,
        policy: None,
        policy_sha256: None,
        policy_error: None,
        last_job: history.0.clone(),
        last_success: history.1.clone(),
        failures,
        last_drill: drills.0.clone(),
        last_verified: drills.1.clone(),
        snapshots: None,
        first_seen: now,
        down: None,
        stopped_at: None,
        recovered_at: None,
        deaths: Vec::new(),
        recoveries: (0, 0, None),
        probe_failures: (0, None),
        recovering: None,
        held_after_failed_recovery: false,
        recovery_attempts: Vec::new(),
        failover: None,
    });
    service.present = true;
    service.failover = failover;
    match resolved {
        Ok(policy) => {
            let sha = policy.fingerprint();
            let changed = service.policy_sha256.as_deref() != Some(sha.as_str());
            service.policy_error = None;
            service.policy = Some(policy.clone());
            service.policy_sha256 = Some(sha.clone());
            let last_start = history
                .2
                .as_ref()
                .and_then(|j| j.started_at.as_deref())
                .and_then(|t| t.parse().ok());
            st.scheduler
                .upsert(&name, policy.schedule.clone(), last_start, now);
            // In a cluster the leader schedules every host's drills (crate::drills).
            match &policy.drill {
                _ if d.cluster.is_some() => {}
                Some(drill) => {
                    let last = drills
                        .0
                        .as_ref()
                        .and_then(|j| j.started_at.as_deref())
                        .and_then(|t| t.parse().ok());
                    st.scheduler
                        .upsert(&drill_key(&name), drill.clone(), last, now);
                }
                None => st.scheduler.unschedule(&drill_key(&name)),
            }
            drop(st);
            if changed {
                let value = serde_json::to_value(&policy).unwrap_or_default();
                let recorded = d
                    .store()
                    .record_policy(&name, &sha, &value)
                    .unwrap_or(false);
                d.log(
                    "info",
                    if is_new { "service managed" } else { "policy changed" },
                    json!({"service": name, "policy": value, "policy_sha256": sha, "new_version": recorded}),
                );
            }
            d.wake.notify_one();
        }
        Err(e) => {
            let text = e.to_string();
            let was = service.policy_error.replace(text.clone());
            service.policy = None;
            service.policy_sha256 = None;
            st.scheduler.unschedule(&name);
            st.scheduler.unschedule(&drill_key(&name));
            drop(st);
            if was.as_deref() != Some(text.as_str()) {
                d.log(
                    "error",
                    "invalid policy: service not protected",
                    json!({"service": name, "error": text}),
                );
                d.notifier.webhook(json!({
                    "event": "policy_invalid", "service": name, "error": text,
                    "message": format!("`{name}` is not backed up: {text}"),
                }));
            }
        }
    }
}

/// Follows the event stream until the daemon stops; on a dropped connection, re-reads
/// everything and subscribes again (with backoff), so no change is missed.
pub fn watch(d: Arc<Daemon>) {
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    while !d.stopping.load(std::sync::atomic::Ordering::Relaxed) {
        // Subscribe first, then read the state: a change in between is not lost.
        let events = match d.engine.container_events() {
            Ok(rx) => rx,
            Err(e) => {
                d.log(
                    "error",
                    "engine event stream unavailable",
                    json!({"error": e.to_string()}),
                );
                std::thread::sleep(backoff.next_delay());
                continue;
            }
        };
        if let Err(e) = discover(&d) {
            d.log(
                "error",
                "cannot read containers",
                json!({"error": e.to_string()}),
            );
        }
        backoff.reset();
        let mut checked = std::time::Instant::now();
        loop {
            // Failures are acted on about once a second, however busy the event stream is.
            if checked.elapsed() >= Duration::from_secs(1) {
                crate::failures::check(&d);
                checked = std::time::Instant::now();
            }
            let ev = match events.recv_timeout(Duration::from_secs(1)) {
                Ok(ev) => ev,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            };
            if ev.action == "rename" {
                let _ = discover(&d);
                continue;
            }
            crate::failures::note_event(&d, &ev.name, &ev.action);
            if matches!(ev.action.as_str(), "kill" | "stop")
                || ev.action.starts_with("health_status")
            {
                continue;
            }
            let details = match d.engine.container(&ev.id) {
                Ok(details) => details,
                Err(e) => {
                    d.log(
                        "warn",
                        "cannot inspect container",
                        json!({"container": ev.name, "error": e.to_string()}),
                    );
                    continue;
                }
            };
            apply(&d, &ev.name, details);
        }
        d.log("warn", "engine event stream ended; reconnecting", json!({}));
        std::thread::sleep(backoff.next_delay());
    }
}
