//! The daemon's shared state: what it knows about each service, and the views the API,
//! the metrics and the dashboard read. One lock (`state`) guards services and scheduler;
//! it is never held across engine, repository or network calls.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard};

use jiff::Timestamp;
use lifeboat_docker::Engine;
use lifeboat_model::JobState;
use lifeboat_model::policy::Policy;
use lifeboat_repo::RepoLocation;
use serde::Serialize;

use crate::config::DaemonPlan;
use crate::notify::Notifier;
use crate::scheduler::Scheduler;
use crate::store::{Job, Store};

/// Where Lifeboat's data lives; the same settings the CLI commands take.
#[derive(Debug, Clone)]
pub struct RunEnv {
    pub state_dir: PathBuf,
    pub host_root: PathBuf,
    pub hostname: String,
    pub repo: RepoLocation,
    pub password: String,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    /// False once its container is gone (its backups and history remain).
    pub present: bool,
    pub policy: Option<Policy>,
    pub policy_sha256: Option<String>,
    /// Why the labels or config give no valid policy (the service is not protected).
    pub policy_error: Option<String>,
    pub last_job: Option<Job>,
    pub last_success: Option<Job>,
    pub failures: u64,
    /// The newest finished drill, and the newest successful one (the last verified restore).
    pub last_drill: Option<Job>,
    pub last_verified: Option<Job>,
    /// Committed backups in the repository (known after the first listing).
    pub snapshots: Option<usize>,
    pub first_seen: Timestamp,
}

pub struct State {
    pub scheduler: Scheduler<i64>,
    pub services: BTreeMap<String, Service>,
}

pub struct Daemon {
    pub plan: DaemonPlan,
    pub env: RunEnv,
    pub engine: Arc<dyn Engine>,
    pub store: Mutex<Store>,
    pub state: Mutex<State>,
    pub notifier: Notifier,
    pub token: String,
    pub wake: tokio::sync::Notify,
    pub stopping: AtomicBool,
    pub started_at: Timestamp,
    pub jobs_started: AtomicU64,
}

/// RPO status colour of a service, as the dashboard shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Rpo {
    /// The last success is within one schedule interval.
    Green,
    /// Late, but within the RPO (interval × tolerance).
    Amber,
    /// RPO breached, or never backed up once the RPO has passed since it was first seen.
    Red,
}

/// A service as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceView {
    pub name: String,
    pub present: bool,
    /// `ok`, `running`, `failing`, `never`, `missing` (container gone), `invalid` (policy).
    pub status: String,
    pub policy: Option<Policy>,
    pub policy_sha256: Option<String>,
    pub policy_error: Option<String>,
    pub last_job: Option<Job>,
    pub last_success_at: Option<String>,
    pub last_success_age_seconds: Option<i64>,
    pub next_run: Option<String>,
    pub interval_seconds: Option<u64>,
    pub rpo_seconds: Option<u64>,
    pub rpo: Rpo,
    pub snapshots: Option<usize>,
    pub failures_total: u64,
    /// When a drill last restored, started and probed a backup of this service.
    pub last_verified_at: Option<String>,
    pub last_verified_backup: Option<String>,
    /// The newest drill failed.
    pub last_drill_failed: bool,
    pub next_drill: Option<String>,
}

fn parse_ts(s: &Option<String>) -> Option<Timestamp> {
    s.as_deref().and_then(|t| t.parse().ok())
}

impl Service {
    pub fn last_success_time(&self) -> Option<Timestamp> {
        self.last_success
            .as_ref()
            .and_then(|j| parse_ts(&j.finished_at))
    }

    pub fn view(&self, state: &State, tolerance: f64, now: Timestamp) -> ServiceView {
        let interval = self
            .policy
            .as_ref()
            .map(|p| p.schedule.interval(now).as_secs());
        let rpo_s = interval.map(|i| (i as f64 * tolerance).round() as u64);
        let last_ok = self.last_success_time();
        let age = last_ok.map(|t| now.as_second() - t.as_second());
        let since = age.unwrap_or(now.as_second() - self.first_seen.as_second());
        let rpo = match (interval, rpo_s) {
            (Some(i), Some(r)) => {
                if since > r as i64 || !self.present {
                    Rpo::Red
                } else if last_ok.is_none() || since > i as i64 {
                    Rpo::Amber
                } else {
                    Rpo::Green
                }
            }
            _ => Rpo::Red,
        };
        let running = state.scheduler.is_running(&self.name);
        let failing = self
            .last_job
            .as_ref()
            .is_some_and(|j| j.state != JobState::Succeeded);
        let status = if self.policy_error.is_some() {
            "invalid"
        } else if !self.present {
            "missing"
        } else if running {
            "running"
        } else if failing {
            "failing"
        } else if last_ok.is_none() {
            "never"
        } else {
            "ok"
        };
        ServiceView {
            name: self.name.clone(),
            present: self.present,
            status: status.into(),
            policy: self.policy.clone(),
            policy_sha256: self.policy_sha256.clone(),
            policy_error: self.policy_error.clone(),
            last_job: self.last_job.clone(),
            last_success_at: last_ok.map(lifeboat_model::format_timestamp),
            last_success_age_seconds: age,
            next_run: state
                .scheduler
                .next_run(&self.name)
                .map(lifeboat_model::format_timestamp),
            interval_seconds: interval,
            rpo_seconds: rpo_s,
            rpo,
            snapshots: self.snapshots,
            failures_total: self.failures,
            last_verified_at: self
                .last_verified
                .as_ref()
                .and_then(|j| j.finished_at.clone()),
            last_verified_backup: self
                .last_verified
                .as_ref()
                .and_then(|j| j.backup_id.clone()),
            last_drill_failed: self
                .last_drill
                .as_ref()
                .is_some_and(|j| j.state != JobState::Succeeded),
            next_drill: state
                .scheduler
                .next_run(&drill_key(&self.name))
                .map(lifeboat_model::format_timestamp),
        }
    }
}

impl Daemon {
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn services_view(&self) -> Vec<ServiceView> {
        let now = Timestamp::now();
        let st = self.state();
        st.services
            .values()
            .map(|s| s.view(&st, self.plan.rpo_tolerance, now))
            .collect()
    }

    /// Structured log line on stderr (one JSON object per line).
    pub fn log(&self, level: &str, msg: &str, fields: serde_json::Value) {
        crate::log::log_line(level, msg, fields);
    }
}

/// The scheduler entry of a service's drills (its backups use the service's name).
pub fn drill_key(service: &str) -> String {
    format!("{service}#drill")
}
