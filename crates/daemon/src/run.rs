//! Starting, running and stopping the daemon: token, job history, discovery thread,
//! scheduler loop, HTTP listeners, and the SIGTERM path (stop scheduling, let running jobs
//! finish within the grace period, else undo their pauses and stops before exiting).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use jiff::Timestamp;
use lifeboat_docker::Engine;
use lifeboat_model::JobKind;
use serde_json::json;

use crate::config::DaemonPlan;
use crate::daemon::{Daemon, RunEnv, State};
use crate::log::log_line;
use crate::notify::Notifier;
use crate::scheduler::{Scheduler, Start};
use crate::store::Store;

/// Why the daemon cannot start or run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Notifications cannot be sent as configured.
    #[error(
        "notifications: {0}; set LIFEBOAT_CA_FILE to a PEM file of the CA that signs your webhook's certificate"
    )]
    Notify(String),
    /// The job history failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(
        "cannot listen on {addr}: {cause}; is another daemon running? Pick another with --listen"
    )]
    /// The API address cannot be bound.
    Listen {
        /// The address.
        addr: String,
        /// The cause.
        cause: std::io::Error,
    },
    #[error("API token file {path}: {cause}")]
    /// The token file cannot be read or written.
    Token {
        /// The file.
        path: String,
        /// The cause.
        cause: std::io::Error,
    },
    /// The async runtime cannot start.
    #[error("cannot start the daemon's runtime: {0}")]
    Runtime(std::io::Error),
}

/// The API token: `LIFEBOAT_API_TOKEN`, else the token file, else a new token file (the
/// token is printed once, on stderr).
pub fn api_token(plan: &DaemonPlan) -> Result<String, DaemonError> {
    if let Ok(t) = std::env::var("LIFEBOAT_API_TOKEN")
        && !t.trim().is_empty()
    {
        return Ok(t.trim().to_string());
    }
    let path = &plan.token_file;
    let err = |cause| DaemonError::Token {
        path: path.display().to_string(),
        cause,
    };
    if path.exists() {
        return lifeboat_core::secret::read_secret_file(path).map_err(err);
    }
    let token = lifeboat_core::secret::generate_secret_file(path).map_err(err)?;
    eprintln!(
        "lifeboat: new API token (shown once; kept in {}, mode 0600): {token}",
        path.display()
    );
    Ok(token)
}

/// Counts each service's committed backups once at start (for metrics and the dashboard).
fn count_snapshots(d: &Daemon) {
    match d.snapshots(None) {
        Ok(rows) => {
            let mut st = d.state();
            for s in st.services.values_mut() {
                s.snapshots = Some(
                    rows.iter()
                        .filter(|b| b.manifest.container_name == s.name)
                        .count(),
                );
            }
        }
        Err(e) => d.log("error", "cannot list the repository", json!({"error": e})),
    }
}

/// Recoveries a killed daemon (or `lifeboat recover`) left half done are run again, from
/// the backup they had chosen: the service ends up recovered, never half restored.
fn resume_recoveries(d: &Daemon) {
    for found in lifeboat_core::interrupted_recoveries(&d.env.state_dir) {
        match found {
            Ok(i) => {
                let request = json!({"snapshot": i.snapshot});
                let queued = d.enqueue_for(&i.service, JobKind::Recover, Some(request), "resume");
                d.log(
                    "warn",
                    "a recovery was cut short; running it again",
                    json!({"service": i.service, "snapshot": i.snapshot, "began": i.at,
                           "job": queued.as_ref().ok(), "error": queued.err().map(|e| e.to_string())}),
                );
            }
            Err(e) => d.log(
                "error",
                "unreadable recovery record; recover the service by hand",
                json!({"error": e}),
            ),
        }
    }
}

/// Runs the daemon until SIGTERM or Ctrl-C.
pub fn run(plan: DaemonPlan, env: RunEnv, engine: Arc<dyn Engine>) -> Result<(), DaemonError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    let token = api_token(&plan)?;
    let store = Store::open(&env.state_dir.join("daemon.db"))?;
    let aborted = store.abort_unfinished()?;
    if aborted > 0 {
        log_line(
            "warn",
            "jobs cut short by the previous daemon marked aborted",
            json!({"count": aborted}),
        );
    }
    let plan_cluster = plan.cluster.clone();
    let ca_file = std::env::var_os("LIFEBOAT_CA_FILE").map(std::path::PathBuf::from);
    let agent = crate::notify::agent(ca_file.as_deref()).map_err(DaemonError::Notify)?;
    let d = Arc::new(Daemon {
        notifier: Notifier::new(rt.handle().clone(), plan.webhook.clone(), agent),
        state: std::sync::Mutex::new(State {
            scheduler: Scheduler::new(plan.concurrency, plan.jitter),
            services: Default::default(),
            regions: Default::default(),
            drill_turns: Default::default(),
            failover: Default::default(),
            drills: Default::default(),
        }),
        store: std::sync::Mutex::new(store),
        plan,
        env,
        engine,
        token,
        wake: tokio::sync::Notify::new(),
        stopping: Default::default(),
        started_at: Timestamp::now(),
        jobs_started: Default::default(),
        cluster: plan_cluster.map(|p| Arc::new(crate::cluster::Cluster::new(p))),
        discovered: Default::default(),
    });
    {
        // Each region is copied to on its own schedule (the first copy at start), and the
        // repository is checked and pruned on theirs.
        let mut st = d.state();
        for r in &d.plan.regions {
            st.regions.insert(r.name.clone(), Default::default());
        }
        for (key, schedule) in d.repository_entries() {
            st.scheduler.upsert(&key, schedule, None, Timestamp::now());
        }
    }
    // Signal handlers before anything answers: a SIGTERM right after the ports open stops
    // the daemon cleanly instead of killing it.
    let signals = rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        Ok::<_, std::io::Error>((
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        ))
    });
    let signals = signals.map_err(DaemonError::Runtime)?;
    // Listeners first: a port clash fails the start before anything runs.
    let listeners = rt.block_on(async {
        let mut out = Vec::new();
        let mut addrs = vec![(d.plan.listen, false)];
        if let Some(m) = d.plan.metrics_listen {
            addrs.push((m, true));
        }
        for (addr, metrics_only) in addrs {
            let l =
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|cause| DaemonError::Listen {
                        addr: addr.to_string(),
                        cause,
                    })?;
            out.push((l, metrics_only));
        }
        Ok::<_, DaemonError>(out)
    })?;
    if let Some(c) = &d.cluster {
        // Before anything else: copies of services that moved to another host while this
        // one was away are stopped, so a service never runs twice.
        match c.owners() {
            Ok(owners) => {
                crate::failover::stop_stale_copies(&d, &c.plan.host, &owners);
            }
            Err(e) => log_line(
                "error",
                "etcd does not answer: stale copies of moved services are checked once it does",
                json!({"error": e.to_string()}),
            ),
        }
    }
    {
        let d = d.clone();
        std::thread::Builder::new()
            .name("lifeboat-events".into())
            .spawn(move || crate::services::watch(d))
            .map_err(DaemonError::Runtime)?;
    }
    if let Some(c) = d.cluster.clone() {
        let (d1, c1) = (d.clone(), c.clone());
        std::thread::Builder::new()
            .name("lifeboat-cluster".into())
            .spawn(move || heartbeat(d1, c1))
            .map_err(DaemonError::Runtime)?;
        let d = d.clone();
        std::thread::Builder::new()
            .name("lifeboat-failover".into())
            .spawn(move || failover_loop(d, c))
            .map_err(DaemonError::Runtime)?;
    }
    {
        let d = d.clone();
        std::thread::Builder::new()
            .name("lifeboat-probes".into())
            .spawn(move || crate::failures::probe_watch(d))
            .map_err(DaemonError::Runtime)?;
    }
    log_line(
        "info",
        "daemon started",
        json!({"listen": d.plan.listen.to_string(), "metrics_listen": d.plan.metrics_listen.map(|a| a.to_string()),
               "repository": d.env.repo.0, "concurrency": d.plan.concurrency, "pid": std::process::id()}),
    );
    rt.block_on(async move {
        for (listener, metrics_only) in listeners {
            let app = if metrics_only {
                crate::api::metrics_router(d.clone())
            } else {
                crate::api::router(d.clone())
            };
            let d2 = d.clone();
            tokio::spawn(async move {
                let stop = async move {
                    while !d2.stopping.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                };
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await;
            });
        }
        {
            let d = d.clone();
            tokio::task::spawn_blocking(move || {
                let root = &d.env.host_root;
                for line in lifeboat_core::drill::clean_stale_sandboxes(d.engine.as_ref(), root) {
                    d.log("warn", &line, json!({}));
                }
                resume_recoveries(&d);
                count_snapshots(&d)
            });
        }
        schedule_loop(d, signals).await;
    });
    Ok(())
}

/// The cluster heartbeat: every beat renews the lease, publishes this host's services and
/// campaigns; a daemon that has just become leader runs the repository-wide slots its
/// predecessor may have left undone at once. Ends at SIGTERM by leaving the cluster.
fn heartbeat(d: Arc<Daemon>, c: Arc<crate::cluster::Cluster>) {
    let mut was_leading = false;
    let mut etcd_was_ok = true;
    while !d.stopping.load(Ordering::Relaxed) {
        let (services, drills) = {
            let st = d.state();
            (
                st.services.keys().cloned().collect(),
                crate::drills::plans(&st),
            )
        };
        let record = crate::cluster::HostRecord {
            started_at: lifeboat_model::format_timestamp(d.started_at),
            api: d.plan.listen.to_string(),
            services,
            drills,
            ..Default::default()
        };
        let became = c.beat(record);
        let view = c.view();
        if became {
            log_line(
                "info",
                "this daemon leads the cluster",
                json!({"host": c.plan.host}),
            );
            let now = Timestamp::now();
            let mut st = d.state();
            for (key, _) in d.repository_entries() {
                st.scheduler.due_now(&key, now);
            }
            drop(st);
            d.wake.notify_one();
        } else if was_leading && !view.leading {
            log_line(
                "warn",
                "this daemon no longer leads the cluster; repository-wide jobs stop here",
                json!({"host": c.plan.host, "leader": view.leader, "etcd_error": view.etcd_error}),
            );
        }
        if view.etcd_ok != etcd_was_ok {
            log_line(
                if view.etcd_ok { "info" } else { "error" },
                if view.etcd_ok {
                    "etcd answers again"
                } else {
                    "etcd does not answer: backups go on, repository-wide jobs wait"
                },
                json!({"error": view.etcd_error}),
            );
        }
        was_leading = view.leading;
        etcd_was_ok = view.etcd_ok;
        std::thread::sleep(c.beat_interval());
    }
    c.leave();
}

/// Host failover, on its own thread so engine calls never delay a heartbeat: after each
/// beat's reading of the cluster, this host follows it (registers its failover services,
/// restores what moved here, stops stale copies) and, while it leads, moves the services of
/// dead hosts.
fn failover_loop(d: Arc<Daemon>, c: Arc<crate::cluster::Cluster>) {
    let mut gone = std::collections::BTreeMap::new();
    while !d.stopping.load(Ordering::Relaxed) {
        std::thread::sleep(c.beat_interval());
        let view = c.view();
        if !view.etcd_ok {
            continue;
        }
        crate::failover::follow(&d, &c, &view);
        crate::drills::tick(&d, &c, &view);
        if view.leading {
            crate::failover::lead(&c, &view, &mut gone);
        } else {
            gone.clear();
        }
    }
}

/// Runs job `id` (none: the slot was not this daemon's), then frees the schedule entry `key`
/// (its next scheduled run counted from `at`) and wakes the scheduler loop. On a blocking
/// thread.
fn run_job(
    d: &Daemon,
    service: &str,
    id: Option<i64>,
    key: &str,
    start: &Start<i64>,
    at: Timestamp,
) {
    if let Some(id) = id {
        d.jobs_started.fetch_add(1, Ordering::Relaxed);
        d.execute(service, id);
    }
    d.state()
        .scheduler
        .finished(key, start, at, Timestamp::now());
    d.wake.notify_one();
}

/// Claims the slot of a scheduled repository-wide job in the cluster. Returns when that
/// slot's window began (the entry's next run is counted from it, so runs stay on window
/// boundaries and never drift past one), and the slot when this daemon won it.
fn claim_slot(d: &Daemon, key: &str, now: Timestamp) -> (Timestamp, Option<i64>) {
    let (Some(c), Some(schedule)) = (&d.cluster, d.repository_schedule(key)) else {
        return (now, None);
    };
    let (slot, began) = crate::cluster::slot_of(&schedule, now);
    // Kept two windows (and at least a minute) past its start, then forgotten by etcd.
    let keep = schedule.interval(now) * 2 + Duration::from_secs(60);
    match c.claim(key, slot, keep, &json!({"job": key})) {
        crate::cluster::Claim::Won => (began, Some(slot)),
        crate::cluster::Claim::NotLeader => (began, None),
        other => {
            log_line(
                "info",
                "repository-wide slot not run here",
                json!({"job": key, "slot": slot, "why": format!("{other:?}")}),
            );
            (began, None)
        }
    }
}

/// SIGTERM and SIGINT, registered at start.
type Signals = (tokio::signal::unix::Signal, tokio::signal::unix::Signal);

async fn shutdown_signal((mut term, mut int): Signals) {
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

async fn schedule_loop(d: Arc<Daemon>, signals: Signals) {
    let mut jobs = tokio::task::JoinSet::new();
    let signal = shutdown_signal(signals);
    tokio::pin!(signal);
    loop {
        let now = Timestamp::now();
        let starts = d.state().scheduler.poll(now);
        for (key, start) in starts {
            // A service's drills have their own schedule entry (`<service>#drill`), and so
            // does each region's copy (`region#<name>`, also its job's service).
            let (service, kind) = match key.strip_suffix("#drill") {
                Some(s) => (s.to_string(), JobKind::Drill),
                None if key.starts_with("region#") => (key.clone(), JobKind::Copy),
                None if key == crate::daemon::REPOSITORY_CHECK => (key.clone(), JobKind::Check),
                None if key == crate::daemon::REPOSITORY_PRUNE => (key.clone(), JobKind::Prune),
                None => (key.clone(), JobKind::Backup),
            };
            // In a cluster, scheduled drills are the leader's too (crate::drills).
            let cluster_wide = d.cluster.is_some()
                && (crate::daemon::repository_wide(&key) || kind == JobKind::Drill);
            if cluster_wide && matches!(start, Start::Scheduled) {
                // Only the leader, once per slot: the claim goes to etcd, off this task.
                let (d2, key2) = (d.clone(), key.clone());
                jobs.spawn_blocking(move || {
                    let (began, slot) = claim_slot(&d2, &key2, now);
                    let id = slot.and_then(|slot| {
                        let request = json!({"slot": slot, "claim": key2});
                        d2.store()
                            .queue(kind, &service, "schedule", Some(&request))
                            .ok()
                    });
                    run_job(&d2, &service, id, &key2, &start, began);
                });
                continue;
            }
            let never_backed_up = d
                .state()
                .services
                .get(&service)
                .is_none_or(|s| s.last_success.is_none());
            if kind == JobKind::Drill && never_backed_up {
                // Nothing to drill yet; the first backup queues one.
                d.state().scheduler.finished(&key, &start, now, now);
                continue;
            }
            let id = match &start {
                Start::Requested(id) => *id,
                Start::Scheduled => match d.store().queue(kind, &service, "schedule", None) {
                    Ok(id) => id,
                    Err(e) => {
                        d.log(
                            "error",
                            "cannot record a scheduled job",
                            json!({"service": service, "error": e.to_string()}),
                        );
                        d.state().scheduler.finished(&key, &start, now, now);
                        continue;
                    }
                },
            };
            let d2 = d.clone();
            jobs.spawn_blocking(move || run_job(&d2, &service, Some(id), &key, &start, now));
        }
        let wait = d
            .state()
            .scheduler
            .next_wakeup()
            .map(|t| {
                Duration::from_millis(
                    (t.as_millisecond() - Timestamp::now().as_millisecond()).max(20) as u64,
                )
            })
            .unwrap_or(Duration::from_secs(60))
            .min(Duration::from_secs(60));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = d.wake.notified() => {}
            Some(_) = jobs.join_next(), if !jobs.is_empty() => {}
            _ = &mut signal => break,
        }
    }
    d.stopping.store(true, Ordering::Relaxed);
    let running = d.state().scheduler.running();
    log_line(
        "info",
        "stopping: no new jobs; waiting for running ones",
        json!({"running": running, "grace_seconds": d.plan.shutdown_grace.as_secs()}),
    );
    let all_done = async { while jobs.join_next().await.is_some() {} };
    let in_time = tokio::time::timeout(d.plan.shutdown_grace, all_done)
        .await
        .is_ok();
    if !in_time {
        // Jobs still running: undo what they paused or stopped, then leave. Their intents
        // are on disk too, so even a kill here is repaired by the next start.
        let d2 = d.clone();
        let undone = tokio::task::spawn_blocking(move || {
            lifeboat_consistency::recover(
                d2.engine.as_ref(),
                &d2.env.state_dir,
                Some(std::process::id()),
            )
        })
        .await
        .unwrap_or_default();
        log_line(
            "warn",
            "grace period over: jobs abandoned, containers put back",
            json!({"undone": undone}),
        );
        let _ = d.store().abort_unfinished();
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // let listeners close
    log_line("info", "daemon stopped", json!({}));
}
