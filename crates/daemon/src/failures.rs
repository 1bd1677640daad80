//! The failure watch: a managed container that died and stays down (not stopped by an
//! operator or by Lifeboat's own stop mode), that crash-loops (three deaths within a minute
//! under a restart policy), that stays unhealthy (the engine reports only the transition), or
//! whose probes keep failing (data-level damage), or whose mounted data is gone, for its
//! policy's `recover-after` is a failure; so is a removed one with `lifeboat.recover-removed`.
//! With `lifeboat.recover=auto` a `recover` job is queued (its scheduled backups wait: a
//! broken state is never backed up); with `notify` a webhook says so; a failure within
//! [`LEFT_ALONE_FOR`] of a recovery is left alone and reported (no loops). A failed automatic
//! recovery is tried again after `recover-after` doubled for each attempt, at most
//! `recover-attempts` times within [`Recovery::WINDOW`]; then the service is left alone too.

use std::time::{Duration, Instant};

use lifeboat_model::policy::Recovery;
use lifeboat_model::{JobKind, RecoverMode};
use serde_json::json;

use crate::daemon::{Daemon, Down};

/// A service that fails again this soon after a recovery is not recovered again.
pub const LEFT_ALONE_FOR: Duration = Duration::from_secs(600);

/// A `die` this soon after a `kill` or `stop` event belongs to that stop.
const STOP_TO_DIE: Duration = Duration::from_secs(30);

/// Deaths within this window that make a crash loop.
const LOOP_WINDOW: Duration = Duration::from_secs(60);
/// How many deaths in [`LOOP_WINDOW`] are a crash loop.
const LOOP_DEATHS: usize = 3;

/// Records what an engine event says about a service's state.
pub(crate) fn note_event(d: &Daemon, name: &str, action: &str) {
    let mut st = d.state();
    let Some(s) = st.services.get_mut(name) else {
        return;
    };
    let now = Instant::now();
    let failing = |kind| Down {
        kind,
        since: now,
        stopped: false,
        handled: false,
    };
    match action {
        "kill" | "stop" => s.stopped_at = Some(now),
        "die" => {
            if s.stopped_at.is_some_and(|t| t.elapsed() < STOP_TO_DIE) {
                s.down = Some(Down {
                    stopped: true,
                    ..failing("died")
                });
                return;
            }
            s.deaths.retain(|t| t.elapsed() < LOOP_WINDOW);
            s.deaths.push(now);
            if s.down.is_some_and(|f| f.kind == "crash-loop") {
                return;
            }
            s.down = Some(if s.deaths.len() >= LOOP_DEATHS {
                failing("crash-loop")
            } else {
                failing("died")
            });
        }
        // A restart policy bringing it back ends a death, not a crash loop.
        "start" if s.down.is_some_and(|f| f.kind == "crash-loop" && !f.handled) => {
            s.stopped_at = None;
        }
        "start" => {
            s.down = None;
            s.stopped_at = None;
            // A service left paused by its failed recovery runs again once it is started
            // (by someone else than a recovery of its own, which decides at its end).
            if s.recovering.is_none() && std::mem::take(&mut s.held_after_failed_recovery) {
                let name = s.name.clone();
                st.scheduler.resume(&name);
                st.scheduler.resume(&crate::daemon::drill_key(&name));
            }
        }
        // Removed while no job of Lifeboat's own (a restore replaces the container) runs; a
        // container back within `recover-after` (compose recreating it) was never failed.
        "destroy" if s.policy.as_ref().is_some_and(|p| p.recovery.removed) => {
            let name = s.name.clone();
            if !st.scheduler.is_running(&name)
                && let Some(s) = st.services.get_mut(&name)
            {
                s.down = Some(failing("removed"));
            }
        }
        "health_status: unhealthy" if s.down.is_none() => s.down = Some(failing("unhealthy")),
        "health_status: healthy" if s.down.is_some_and(|f| f.kind == "unhealthy") => s.down = None,
        _ => {}
    }
}

/// A failure to act on.
struct Due {
    name: String,
    mode: RecoverMode,
    /// Why it is left alone instead of recovered: recovered lately, or out of attempts.
    left_alone: Option<String>,
    kind: &'static str,
    /// Which automatic attempt within the window this would be.
    attempt: usize,
}

/// Acts on failures that lasted their `recover-after` (called about once a second).
pub(crate) fn check(d: &Daemon) {
    let (mut due, failed): (Vec<Due>, Vec<String>) = {
        let st = d.state();
        let mut due = Vec::new();
        let mut failed = Vec::new();
        for s in st.services.values() {
            let Some(policy) = &s.policy else { continue };
            let Some(down) = s.down.filter(|f| !f.stopped) else {
                continue;
            };
            failed.push(s.name.clone());
            let made = s
                .recovery_attempts
                .iter()
                .filter(|t| t.elapsed() < Recovery::WINDOW)
                .count();
            // A failed recovery is tried again later each time; a paused service waits for
            // the recovery of what it depends on (one held after its own failed recovery
            // does not).
            let wait = if down.kind == "recovery-failed" {
                policy.recovery.backoff(made as u32)
            } else {
                policy.recovery.after
            };
            if down.handled
                || down.since.elapsed() < wait
                || (st.scheduler.is_paused(&s.name) && !s.held_after_failed_recovery)
            {
                continue;
            }
            let left_alone = if s.recovered_at.is_some_and(|t| t.elapsed() < LEFT_ALONE_FOR) {
                Some(format!(
                    "failed again within {} minutes of its recovery",
                    LEFT_ALONE_FOR.as_secs() / 60
                ))
            } else if made >= policy.recovery.attempts as usize {
                Some(format!(
                    "is still broken after {made} automatic recoveries within {} minutes \
                     (lifeboat.recover-attempts = {})",
                    Recovery::WINDOW.as_secs() / 60,
                    policy.recovery.attempts
                ))
            } else {
                None
            };
            due.push(Due {
                name: s.name.clone(),
                mode: policy.recovery.mode,
                left_alone,
                kind: down.kind,
                attempt: made + 1,
            });
        }
        (due, failed)
    };
    if due.is_empty() {
        return;
    }
    // A service failing because something it depends on failed (its health needs it) is not
    // failed itself: recovering that one restarts it. It is looked at again afterwards.
    if failed.len() > 1 {
        let downstream =
            lifeboat_core::dependents_of(d.engine.as_ref(), &failed).unwrap_or_default();
        due.retain(|d| !downstream.contains(&d.name));
    }
    {
        let mut st = d.state();
        for Due { name, .. } in &due {
            if let Some(down) = st.services.get_mut(name).and_then(|s| s.down.as_mut()) {
                down.handled = true;
            }
        }
    }
    for Due {
        name,
        mode,
        left_alone,
        kind,
        attempt,
    } in due
    {
        // Still failing? (A restart policy may have brought it back meanwhile.)
        let still = match (kind, d.engine.container(&name)) {
            // Its recovery failed: whatever it looks like, it was not brought back.
            ("recovery-failed", _) => true,
            (_, Err(_)) => false,
            ("removed", Ok(found)) => found.is_none(),
            (_, Ok(None)) => false,
            ("unhealthy", Ok(Some(c))) => c.state.health == Some(lifeboat_model::Health::Unhealthy),
            ("crash-loop" | "probe", Ok(Some(_))) => true,
            ("volume-missing", Ok(Some(c))) => {
                lifeboat_core::missing_mounts(d.engine.as_ref(), &c, &d.env.host_root)
                    .is_ok_and(|m| !m.is_empty())
            }
            (_, Ok(Some(c))) => !c.state.running,
        };
        if !still {
            if let Some(s) = d.state().services.get_mut(&name) {
                s.down = None;
            }
            continue;
        }
        match (mode, left_alone) {
            (RecoverMode::Off, _) => {}
            (RecoverMode::Auto, Some(why)) => {
                d.log(
                    "warn",
                    "service failed; left alone",
                    json!({"service": name, "why": why}),
                );
                d.notifier.webhook(json!({
                    "event": "recovery_skipped", "service": name, "failure": kind,
                    "message": format!(
                        "`{name}` {why}; it is left alone: look at it (`lifeboat recover \
                         {name}` by hand)"
                    ),
                }));
            }
            (RecoverMode::Auto, None) => {
                // Its schedules, and those of what depends on it, wait from now on: a
                // broken state is never backed up, and its dependents' failures are its own
                // (the recovery resumes them all).
                let mut paused = vec![name.clone()];
                paused.extend(
                    lifeboat_core::dependents(d.engine.as_ref(), &name).unwrap_or_default(),
                );
                d.pause(&paused);
                let trigger = if kind == "recovery-failed" {
                    "retry"
                } else {
                    "failure"
                };
                match d.enqueue_for(&name, JobKind::Recover, None, trigger) {
                    Ok(job) => {
                        if let Some(s) = d.state().services.get_mut(&name) {
                            s.recovery_attempts
                                .retain(|t| t.elapsed() < Recovery::WINDOW);
                            s.recovery_attempts.push(Instant::now());
                        }
                        d.log(
                            "warn",
                            "service failed; recovering it",
                            json!({"service": name, "failure": kind, "job": job, "attempt": attempt}),
                        );
                        d.notifier.webhook(json!({
                            "event": "service_failed", "service": name, "action": "recover",
                            "failure": kind, "job": job, "attempt": attempt,
                        }));
                    }
                    Err(e) => d.log(
                        "error",
                        "cannot queue the recovery",
                        json!({"service": name, "error": e.to_string()}),
                    ),
                }
            }
            (RecoverMode::Notify, _) => {
                d.log("warn", "service failed", json!({"service": name}));
                d.notifier.webhook(json!({
                    "event": "service_failed", "service": name, "action": "notify",
                    "failure": kind,
                    "message": format!(
                        "`{name}` {}; label it lifeboat.recover=auto to have it recovered, or \
                         run `lifeboat recover {name}`",
                        describe(kind)
                    ),
                }));
            }
        }
    }
}

/// What a failure kind means, for messages.
fn describe(kind: &str) -> &'static str {
    match kind {
        "crash-loop" => "keeps crashing (a crash loop)",
        "unhealthy" => "stays unhealthy",
        "probe" => "keeps failing its probes",
        "volume-missing" => "lost the data of a mount",
        "removed" => "was removed",
        "recovery-failed" => "is still broken after a failed recovery",
        _ => "died and stays down",
    }
}

/// Marks `name` recovered now (its next failure within [`LEFT_ALONE_FOR`] is left alone).
pub(crate) fn recovered(d: &Daemon, name: &str) {
    if let Some(s) = d.state().services.get_mut(name) {
        s.recovered_at = Some(Instant::now());
        s.down = None;
        s.deaths.clear();
        s.probe_failures = (0, None);
    }
}

/// Marks `name` still broken after its recovery failed: with `lifeboat.recover=auto` the
/// failure watch tries again after the policy's backoff, within its attempts.
pub(crate) fn recovery_failed(d: &Daemon, name: &str) {
    if let Some(s) = d.state().services.get_mut(name) {
        let auto = s
            .policy
            .as_ref()
            .is_some_and(|p| p.recovery.mode == RecoverMode::Auto);
        s.down = auto.then(|| Down {
            kind: "recovery-failed",
            since: Instant::now(),
            stopped: false,
            handled: false,
        });
        s.deaths.clear();
        s.probe_failures = (0, None);
    }
}

/// How often a running service's probes run.
pub const PROBE_EVERY: Duration = Duration::from_secs(10);
/// Failed probes in a row that make a failure.
pub const PROBE_FAILURES: u32 = 3;

/// Runs the probes of running services every [`PROBE_EVERY`] (until the daemon stops): the
/// `lifeboat.probe` label's command for services whose recovery is not `off`, and SQLite
/// integrity checks for those with `lifeboat.recover=auto`. [`PROBE_FAILURES`] failures in
/// a row are a failure (data-level damage the engine cannot see).
pub(crate) fn probe_watch(d: std::sync::Arc<Daemon>) {
    while !d.stopping.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(PROBE_EVERY);
        let candidates: Vec<(String, bool)> = d
            .state()
            .services
            .values()
            .filter(|s| s.present && s.down.is_none())
            .filter_map(|s| {
                let mode = s.policy.as_ref()?.recovery.mode;
                (mode != RecoverMode::Off).then(|| (s.name.clone(), mode == RecoverMode::Auto))
            })
            .collect();
        for (name, sqlite) in candidates {
            let Ok(Some(c)) = d.engine.container(&name) else {
                continue;
            };
            // A running service's mount whose data is gone is a failure at once (no retry
            // makes it come back). A stopped one is the operator's business.
            match lifeboat_core::missing_mounts(d.engine.as_ref(), &c, &d.env.host_root) {
                Ok(missing) if c.state.running && !missing.is_empty() => {
                    d.log(
                        "warn",
                        "a mount's data is gone",
                        json!({"service": name, "missing": missing}),
                    );
                    if let Some(s) = d.state().services.get_mut(&name)
                        && s.down.is_none()
                    {
                        s.down = Some(Down {
                            kind: "volume-missing",
                            since: Instant::now(),
                            stopped: false,
                            handled: false,
                        });
                    }
                    continue;
                }
                _ => {}
            }
            let has_probe = c.config.label(lifeboat_model::labels::PROBE).is_some();
            if !c.state.running || (!sqlite && !has_probe) {
                continue;
            }
            let probes = lifeboat_core::drill::live_probes(
                d.engine.as_ref(),
                &c.config,
                &name,
                &d.env.host_root,
                sqlite,
            );
            let failed: Vec<String> = probes
                .iter()
                .filter(|p| !p.ok)
                .map(|p| format!("{}: {}", p.name, p.output))
                .collect();
            let mut st = d.state();
            let Some(s) = st.services.get_mut(&name) else {
                continue;
            };
            if failed.is_empty() {
                s.probe_failures = (0, None);
                continue;
            }
            let since = *s.probe_failures.1.get_or_insert_with(Instant::now);
            s.probe_failures.0 += 1;
            if s.probe_failures.0 >= PROBE_FAILURES && s.down.is_none() {
                s.down = Some(Down {
                    kind: "probe",
                    since,
                    stopped: false,
                    handled: false,
                });
                drop(st);
                d.log(
                    "warn",
                    "probes keep failing",
                    json!({"service": name, "failed": failed}),
                );
            }
        }
    }
}
