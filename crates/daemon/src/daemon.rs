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
    /// Lifeboat's state directory.
    pub state_dir: PathBuf,
    /// Where the host's root is mounted here.
    pub host_root: PathBuf,
    /// This host's name.
    pub hostname: String,
    /// The repository.
    pub repo: RepoLocation,
    /// Its password.
    pub password: String,
    /// How to reach it (S3 account, cache, lock host name).
    pub settings: lifeboat_repo::RepoSettings,
    /// The regions copies go to, by name.
    pub regions: BTreeMap<String, RegionAccess>,
}

/// How to reach a region's repository.
#[derive(Debug, Clone)]
pub struct RegionAccess {
    /// Where it is.
    pub location: RepoLocation,
    /// Its password.
    pub password: String,
    /// Its S3 account, cache, lock host name.
    pub settings: lifeboat_repo::RepoSettings,
}

impl RunEnv {
    /// Opens a region's repository.
    pub fn open_region(&self, name: &str) -> Result<lifeboat_repo::RusticRepository, String> {
        let r = self
            .regions
            .get(name)
            .ok_or_else(|| format!("no region `{name}` in the config file"))?;
        lifeboat_repo::RusticRepository::open_with(
            &r.location,
            &r.password,
            None,
            r.settings.clone(),
        )
        .map_err(|e| e.to_string())
    }

    /// Opens the repository (each job opens its own).
    pub fn open_repo(&self) -> Result<lifeboat_repo::RusticRepository, lifeboat_repo::RepoError> {
        lifeboat_repo::RusticRepository::open_with(
            &self.repo,
            &self.password,
            None,
            self.settings.clone(),
        )
    }
}

/// A service the daemon manages (a container and its policy).
#[derive(Debug, Clone)]
pub struct Service {
    /// The container name.
    pub name: String,
    /// False once its container is gone (its backups and history remain).
    pub present: bool,
    /// Its merged, validated policy (none when invalid).
    pub policy: Option<Policy>,
    /// The policy's fingerprint.
    pub policy_sha256: Option<String>,
    /// Why the labels or config give no valid policy (the service is not protected).
    pub policy_error: Option<String>,
    /// Its newest finished backup job.
    pub last_job: Option<Job>,
    /// Its newest successful backup job.
    pub last_success: Option<Job>,
    /// Backup failures since the daemon started.
    pub failures: u64,
    /// The newest finished drill, and the newest successful one (the last verified restore).
    pub last_drill: Option<Job>,
    /// Its newest successful drill.
    pub last_verified: Option<Job>,
    /// Committed backups in the repository (known after the first listing).
    pub snapshots: Option<usize>,
    /// When the daemon first saw it.
    pub first_seen: Timestamp,
    /// Its container is down, and since when (the failure watch).
    pub down: Option<Down>,
    /// When the engine last reported a stop or kill of it (an operator's, or Lifeboat's
    /// own stop mode): a `die` right after is not a failure.
    pub stopped_at: Option<std::time::Instant>,
    /// When it was last recovered (a failure soon after is left alone).
    pub recovered_at: Option<std::time::Instant>,
    /// When its container died lately (a crash loop is several within a minute).
    pub deaths: Vec<std::time::Instant>,
    /// Recoveries that succeeded and failed since the daemon started, and how long the
    /// last successful one took.
    pub recoveries: (u64, u64, Option<f64>),
    /// Probes of the running service that failed in a row, and since when.
    pub probe_failures: (u32, Option<std::time::Instant>),
    /// The recovery job running for it now.
    pub recovering: Option<i64>,
    /// Its recovery failed: its schedules stay paused until its container starts again.
    pub held_after_failed_recovery: bool,
    /// When the failure watch started its recent recoveries (at most the policy's
    /// `recover-attempts` within [`lifeboat_model::Recovery::WINDOW`]).
    pub recovery_attempts: Vec<std::time::Instant>,
    /// `lifeboat.failover=auto`: where it may come back if this host dies (in a cluster).
    pub failover: Option<crate::failover::Spec>,
}

/// A service that failed: its container died, crash-loops, turned unhealthy, fails its
/// probes, lost its mounted data, or was removed.
#[derive(Debug, Clone, Copy)]
pub struct Down {
    /// `died`, `crash-loop`, `unhealthy`, `probe`, `volume-missing`, `removed`, or
    /// `recovery-failed` (still broken after a failed automatic recovery).
    pub kind: &'static str,
    /// When it died.
    pub since: std::time::Instant,
    /// It was stopped (`docker stop`, compose stop/down, Lifeboat's stop mode), not failed.
    pub stopped: bool,
    /// The failure was acted on (recovery queued, or notified).
    pub handled: bool,
}

/// The daemon's mutable state.
pub struct State {
    /// When each service runs next.
    pub scheduler: Scheduler<i64>,
    /// The managed services, by name.
    pub services: BTreeMap<String, Service>,
    /// What is known of each region the daemon copies to.
    pub regions: BTreeMap<String, RegionState>,
    /// Per service, how many scheduled drills it had (they rotate through the primary and
    /// the regions).
    pub drill_turns: BTreeMap<String, usize>,
    /// Host failover, as this host knows it.
    pub failover: crate::failover::Local,
    /// The cluster's drills, as this host knows them.
    pub drills: crate::drills::Local,
}

/// A region, as the daemon last saw it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RegionState {
    /// The newest copy job that ended.
    pub last_copy: Option<Job>,
    /// When each service's newest backup there was taken (RFC 3339).
    pub newest: BTreeMap<String, String>,
    /// Copies that failed in a row.
    pub failures: u64,
    /// Per service, the recovery time of its newest drill from this region (seconds), and
    /// whether it passed.
    pub drills: BTreeMap<String, (f64, bool)>,
}

/// The scheduler entry of a region's copies.
pub fn region_key(region: &str) -> String {
    format!("region#{region}")
}

/// The running daemon, shared by its threads and the API.
pub struct Daemon {
    /// The validated configuration.
    pub plan: DaemonPlan,
    /// Where it runs.
    pub env: RunEnv,
    /// The Docker engine.
    pub engine: Arc<dyn Engine>,
    /// The job history.
    pub store: Mutex<Store>,
    /// Services and schedule.
    pub state: Mutex<State>,
    /// Webhooks and pings.
    pub notifier: Notifier,
    /// The API token.
    pub token: String,
    /// Wakes the scheduler loop (a job was queued).
    pub wake: tokio::sync::Notify,
    /// SIGTERM arrived: no new jobs.
    pub stopping: AtomicBool,
    /// When the daemon started.
    pub started_at: Timestamp,
    /// Jobs started since then.
    pub jobs_started: AtomicU64,
    /// Its membership in a cluster (`[cluster]`), if it is in one.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// The first reading of the engine's containers is done.
    pub discovered: AtomicBool,
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
    /// The container name.
    pub name: String,
    /// Its container exists now.
    pub present: bool,
    /// `ok`, `running`, `recovering`, `failing`, `never`, `missing` (container gone),
    /// `invalid` (policy).
    pub status: String,
    /// Its merged, validated policy (none when invalid).
    pub policy: Option<Policy>,
    /// The policy's fingerprint.
    pub policy_sha256: Option<String>,
    /// Why its policy is invalid, when it is.
    pub policy_error: Option<String>,
    /// Its newest finished backup job.
    pub last_job: Option<Job>,
    /// When its newest backup succeeded (RFC 3339).
    pub last_success_at: Option<String>,
    /// How long ago that was.
    pub last_success_age_seconds: Option<i64>,
    /// Its next scheduled backup (RFC 3339).
    pub next_run: Option<String>,
    /// Its backup interval.
    pub interval_seconds: Option<u64>,
    /// The recovery point objective it is held to.
    pub rpo_seconds: Option<u64>,
    /// Whether that objective holds now.
    pub rpo: Rpo,
    /// Its committed backups in the repository.
    pub snapshots: Option<usize>,
    /// Backup failures since the daemon started.
    pub failures_total: u64,
    /// When a drill last restored, started and probed a backup of this service.
    pub last_verified_at: Option<String>,
    /// The newest backup a drill verified.
    pub last_verified_backup: Option<String>,
    /// The newest drill failed.
    pub last_drill_failed: bool,
    /// Its next scheduled drill (RFC 3339).
    pub next_drill: Option<String>,
    /// Its scheduled backups and drills wait (a recovery of it, or of what it depends on, is
    /// under way, or failed).
    pub paused: bool,
    /// The recovery running now, with its steps so far.
    pub recovery: Option<Job>,
}

fn parse_ts(s: &Option<String>) -> Option<Timestamp> {
    s.as_deref().and_then(|t| t.parse().ok())
}

impl Service {
    /// When its newest backup succeeded.
    pub fn last_success_time(&self) -> Option<Timestamp> {
        self.last_success
            .as_ref()
            .and_then(|j| parse_ts(&j.finished_at))
    }

    /// What the API and the dashboard show of it.
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
        } else if self.recovering.is_some() {
            "recovering"
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
            paused: state.scheduler.is_paused(&self.name),
            recovery: None,
        }
    }
}

impl Daemon {
    /// The engine's containers have been read once (services not seen yet are gone).
    pub fn discovered(&self) -> bool {
        self.discovered.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The state, locked.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The job history, locked.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every service as the API shows it.
    pub fn services_view(&self) -> Vec<ServiceView> {
        let now = Timestamp::now();
        let (mut views, recovering): (Vec<ServiceView>, Vec<Option<i64>>) = {
            let st = self.state();
            st.services
                .values()
                .map(|s| (s.view(&st, self.plan.rpo_tolerance, now), s.recovering))
                .unzip()
        };
        // The history holds the steps; it is read without the state locked.
        for (v, id) in views.iter_mut().zip(recovering) {
            v.recovery = id.and_then(|id| self.store().job(id).ok().flatten());
        }
        views
    }

    /// Structured log line on stderr (one JSON object per line).
    pub fn log(&self, level: &str, msg: &str, fields: serde_json::Value) {
        crate::log::log_line(level, msg, fields);
    }
}

/// The scheduler entry (and job service) of the repository-wide check.
pub const REPOSITORY_CHECK: &str = "repository#check";

/// The scheduler entry (and job service) of the repository-wide prune.
pub const REPOSITORY_PRUNE: &str = "repository#prune";

/// A scheduler entry whose jobs concern the whole repository (copies, check, prune): in a
/// cluster only the leader runs them, once per slot.
pub fn repository_wide(key: &str) -> bool {
    key.starts_with("region#") || key.starts_with("repository#")
}

impl Daemon {
    /// The schedule of a repository-wide entry.
    pub fn repository_schedule(&self, key: &str) -> Option<lifeboat_model::policy::Schedule> {
        if let Some(service) = key.strip_suffix("#drill") {
            return self.state().drills.scheduled.get(service).cloned();
        }
        match key {
            REPOSITORY_CHECK => self.plan.check.clone(),
            REPOSITORY_PRUNE => self.plan.prune.clone(),
            _ => self
                .plan
                .regions
                .iter()
                .find(|r| region_key(&r.name) == key)
                .map(|r| r.schedule.clone()),
        }
    }

    /// Every repository-wide entry this daemon schedules.
    pub fn repository_entries(&self) -> Vec<(String, lifeboat_model::policy::Schedule)> {
        let mut out: Vec<(String, lifeboat_model::policy::Schedule)> = self
            .plan
            .regions
            .iter()
            .map(|r| (region_key(&r.name), r.schedule.clone()))
            .collect();
        for key in [REPOSITORY_CHECK, REPOSITORY_PRUNE] {
            if let Some(s) = self.repository_schedule(key) {
                out.push((key.to_string(), s));
            }
        }
        out
    }
}

/// The scheduler entry of a service's drills (its backups use the service's name).
pub fn drill_key(service: &str) -> String {
    format!("{service}#drill")
}
