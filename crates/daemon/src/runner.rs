//! Runs one job on a blocking thread, through `lifeboat-core`, and records it: backup
//! (then retention), restore, or prune. Every outcome lands in the job history, the
//! service's state, the log, and (on failure or recovery) the notifications.

use lifeboat_model::{JobKind, JobState};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use lifeboat_core::drill::{DrillRequest, run_drill};
use lifeboat_core::stack::Selection;
use lifeboat_core::{
    BackupRequest, RestoreRequest, RetentionRequest, apply_retention, backup_container,
    list_host_backups, restore_container,
};
use lifeboat_model::policy::Policy;
use lifeboat_repo::{Repository, RusticRepository};
use serde::Deserialize;
use serde_json::json;

use crate::daemon::Daemon;
use crate::store::JobEnd;

/// What `POST .../restore` may ask.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreJob {
    /// This backup (snapshot or backup id).
    pub snapshot: Option<String>,
    /// Restore side by side under this name.
    #[serde(rename = "as")]
    pub as_name: Option<String>,
    /// Replace what exists (after a safety backup); for a prune: past the safety gate.
    #[serde(default)]
    pub force: bool,
    /// Say what would be done; change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// What `POST .../recover` may ask.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RecoverJob {
    /// This backup instead of the newest good one.
    pub snapshot: Option<String>,
    /// Say what would be done; change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

impl RecoverJob {
    /// The snapshot selector, checked before the job is queued.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(s) = &self.snapshot {
            lifeboat_model::names::snapshot_selector(s).map_err(|e| format!("`snapshot`: {e}"))?;
        }
        Ok(())
    }
}

impl RestoreJob {
    /// The names in the request, checked before the job is queued (and again by the restore).
    pub fn validate(&self) -> Result<(), String> {
        use lifeboat_model::names;
        if let Some(a) = &self.as_name {
            names::container_name(a).map_err(|e| format!("`as`: {e}"))?;
        }
        if let Some(s) = &self.snapshot {
            names::snapshot_selector(s).map_err(|e| format!("`snapshot`: {e}"))?;
        }
        Ok(())
    }
}

/// What `POST .../prune` may ask.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PruneJob {
    /// Replace what exists (after a safety backup); for a prune: past the safety gate.
    #[serde(default)]
    pub force: bool,
}

/// The first retry of a failed copy to a region, doubling with each failure in a row.
const COPY_RETRY_FIRST: Duration = Duration::from_secs(10);
/// The longest wait between retries (the region's own slot may come sooner).
const COPY_RETRY_MAX: Duration = Duration::from_secs(600);

fn fail(e: impl std::fmt::Display) -> JobEnd {
    JobEnd {
        ok: false,
        error: Some(e.to_string()),
        ..Default::default()
    }
}

impl Daemon {
    fn open_repo(&self) -> Result<RusticRepository, lifeboat_repo::RepoError> {
        self.env.open_repo()
    }

    fn backup_request(
        &self,
        policy: Option<&Policy>,
        sha: Option<String>,
    ) -> Result<BackupRequest, String> {
        Ok(BackupRequest {
            with_image: policy.is_some_and(|p| p.with_image),
            mode: policy.and_then(|p| p.mode),
            strategy: policy.and_then(|p| p.strategy),
            policy_sha256: sha,
            ..BackupRequest::new(
                self.env.host_root.clone(),
                self.env.state_dir.clone(),
                self.env.hostname.clone(),
            )
        })
    }

    /// Runs job `id` of `service` to its end and records it.
    pub fn execute(&self, service: &str, id: i64) {
        let Some(job) = self.store().job(id).ok().flatten() else {
            self.log("error", "no such job in the history", json!({"job": id}));
            return;
        };
        let kind = job.kind;
        let request = self.store().request(id).ok().flatten();
        let slot = request.as_ref().and_then(|r| r.get("slot")).cloned();
        let claim = request
            .as_ref()
            .and_then(|r| Some((r["claim"].as_str()?.to_string(), r["slot"].as_i64()?)));
        let (policy, sha) = {
            let st = self.state();
            let s = st.services.get(service);
            (
                s.and_then(|s| s.policy.clone()),
                s.and_then(|s| s.policy_sha256.clone()),
            )
        };
        if let Err(e) = self.store().start(id, sha.as_deref()) {
            self.log(
                "error",
                "cannot record job start",
                json!({"job": id, "error": e.to_string()}),
            );
        }
        self.log(
            "info",
            "job started",
            json!({"job": id, "kind": kind, "service": service}),
        );
        let t0 = Instant::now();
        let recovering = |id| {
            if kind == JobKind::Recover
                && let Some(s) = self.state().services.get_mut(service)
            {
                s.recovering = id;
            }
        };
        recovering(Some(id));
        let end = match kind {
            JobKind::Backup => self.backup(service, id, policy.as_ref(), sha),
            JobKind::Restore => {
                match serde_json::from_value::<RestoreJob>(request.unwrap_or(json!({}))) {
                    Ok(r) => self.restore(service, id, &r),
                    Err(e) => fail(format!("bad restore request: {e}")),
                }
            }
            JobKind::Drill => self.drill(service, id),
            JobKind::Recover => {
                let r = request
                    .and_then(|r| serde_json::from_value::<RecoverJob>(r).ok())
                    .unwrap_or_default();
                self.recover(service, id, policy.as_ref(), r.snapshot, r.dry_run)
            }
            JobKind::Copy => self.copy(service, id),
            JobKind::Failover => self.failover(service, id, request),
            JobKind::Check => self.check_repository(service, id),
            JobKind::Prune if service == crate::daemon::REPOSITORY_PRUNE => {
                self.prune_repository(service, id)
            }
            JobKind::Prune => {
                let force = request
                    .and_then(|r| serde_json::from_value::<PruneJob>(r).ok())
                    .is_some_and(|p| p.force);
                self.prune(service, id, policy.as_ref(), force)
            }
        };
        // Hook output and engine errors may quote env values: scrubbed before the end of a
        // job is stored, logged, sent or shown.
        let mut end = end.redacted();
        // A repository-wide job of a cluster names the slot it claimed.
        if let Some(slot) = slot {
            let detail = end.detail.get_or_insert_with(|| json!({}));
            if let Some(d) = detail.as_object_mut() {
                d.insert("slot".into(), slot);
            }
        }
        recovering(None);
        if let (Some(c), Some((claim, slot))) = (&self.cluster, &claim) {
            c.finish_claim(claim, *slot);
        }
        let seconds = t0.elapsed().as_secs_f64();
        if let Err(e) = self.store().finish(id, seconds, &end) {
            self.log(
                "error",
                "cannot record job end",
                json!({"job": id, "error": e.to_string()}),
            );
        }
        self.log(
            if end.ok { "info" } else { "error" },
            "job finished",
            json!({"job": id, "kind": kind, "service": service, "ok": end.ok, "seconds": seconds,
                   "bytes_added": end.bytes_added, "snapshot": end.snapshot_id, "error": end.error}),
        );
        match kind {
            JobKind::Backup => self.after_backup(service, id, &end, policy.as_ref()),
            JobKind::Drill => self.after_drill(service, id, &end),
            JobKind::Recover => self.after_recover(service, id, &end),
            JobKind::Copy => self.after_copy(service, id, &end),
            JobKind::Restore | JobKind::Prune | JobKind::Check | JobKind::Failover => {}
        }
    }

    fn note_for(&self, service: &str, id: i64) -> impl Fn(&str) + '_ {
        let service = service.to_string();
        move |line: &str| {
            crate::log::log_line("info", line, json!({"service": service, "job": id}));
            // Visible in the API while the job runs (and kept in the history).
            let _ = self
                .store()
                .step(id, &lifeboat_docker::secrets::redact(line));
        }
    }

    fn backup(
        &self,
        service: &str,
        id: i64,
        policy: Option<&Policy>,
        sha: Option<String>,
    ) -> JobEnd {
        let req = match self.backup_request(policy, sha) {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        let repo = match self.open_repo() {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        let note = self.note_for(service, id);
        let out = match backup_container(self.engine.as_ref(), &repo, service, &req, &note) {
            Ok(out) => out,
            Err(e) => return fail(e),
        };
        let m = &out.manifest;
        let mut end = JobEnd {
            ok: true,
            bytes_added: Some(m.parts.iter().map(|p| p.added_bytes).sum()),
            bytes_total: Some(m.total_bytes()),
            snapshot_id: Some(out.manifest_snapshot.clone()),
            backup_id: Some(m.backup_id.0.clone()),
            error: None,
            detail: Some(
                json!({"partial": m.partial, "problems": m.problems, "consistency": m.consistency}),
            ),
        };
        if let Some(retention) = policy.and_then(|p| p.retention.clone()) {
            let req = RetentionRequest {
                retention,
                force: false,
                newest_attempt_failed: false,
                shrink_ratio: self.plan.shrink_ratio,
                margin: self.plan.retention_margin,
                dry_run: false,
                state_dir: self.env.state_dir.clone(),
                host: Some(self.env.hostname.clone()),
                verified: self.verified(service, policy),
                prune: self.prunes_after_retention(),
                now: Timestamp::now(),
            };
            let detail = match apply_retention(&repo, service, &req, &note) {
                Ok(r) => {
                    if let Some(why) = &r.refused {
                        self.log(
                            "warn",
                            "retention refused",
                            json!({"service": service, "reason": why}),
                        );
                        self.notifier.webhook(json!({"event": "retention_refused", "service": service, "message": why}));
                    }
                    serde_json::to_value(&r).unwrap_or_default()
                }
                Err(e) => {
                    self.notifier.webhook(json!({"event": "retention_failed", "service": service, "error": e.to_string()}));
                    json!({"error": e.to_string()})
                }
            };
            if let Some(d) = end.detail.as_mut().and_then(|d| d.as_object_mut()) {
                d.insert("retention".into(), detail);
            }
        }
        if let Ok(list) = list_host_backups(&repo, Some(service), Some(&self.env.hostname)) {
            self.set_snapshot_count(service, list.len());
        }
        end
    }

    /// With drills enabled for `service`: the backups a drill verified.
    fn verified(&self, service: &str, policy: Option<&Policy>) -> Option<Vec<String>> {
        policy?.drill.as_ref()?;
        Some(self.store().verified_backups(service).unwrap_or_default())
    }

    /// Where a drill of `service` restores from: once it has a verified backup, its drills
    /// rotate through the primary and each region (`None`: the primary).
    fn drill_region(&self, service: &str) -> Option<String> {
        let mut st = self.state();
        let verified = st
            .services
            .get(service)
            .is_some_and(|s| s.last_verified.is_some())
            || st.drills.verified.contains(service);
        if !verified || self.plan.regions.is_empty() {
            return None;
        }
        let turn = st.drill_turns.entry(service.to_string()).or_insert(0);
        *turn += 1;
        let slot = *turn % (self.plan.regions.len() + 1);
        (slot > 0).then(|| self.plan.regions[slot - 1].name.clone())
    }

    /// Restores the service's newest backup into a sandbox, probes it, tears it down.
    fn drill(&self, service: &str, id: i64) -> JobEnd {
        let req = DrillRequest {
            selection: Selection::Names(vec![service.to_string()]),
            at: None,
            timeout: Duration::from_secs(600),
            backup: match self.backup_request(None, None) {
                Ok(b) => b,
                Err(e) => return fail(e),
            },
        };
        let region = self.drill_region(service);
        let repo = match &region {
            None => self.open_repo().map_err(|e| e.to_string()),
            Some(r) => self
                .env
                .open_region(r)
                .map_err(|e| format!("region `{r}`: {e}")),
        };
        let repo = match repo {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        let note = self.note_for(service, id);
        if let Some(r) = &region {
            note(&format!("drilling from region {r}"));
        }
        match run_drill(self.engine.as_ref(), &repo, &req, &note) {
            Ok(report) => {
                let s = report.services.iter().find(|s| s.service == service);
                let mut detail = serde_json::to_value(&report).ok();
                if let (Some(r), Some(d)) = (&region, detail.as_mut()) {
                    d["region"] = json!(r);
                }
                JobEnd {
                    ok: report.ok,
                    backup_id: s.map(|s| s.backup_id.clone()),
                    snapshot_id: s.map(|s| s.snapshot_id.clone()),
                    error: report
                        .services
                        .iter()
                        .find_map(|s| s.error.clone())
                        .or_else(|| report.teardown_problems.first().cloned()),
                    detail,
                    ..Default::default()
                }
            }
            Err(e) => {
                let mut end = fail(e);
                end.detail = region.map(|r| json!({"region": r}));
                end
            }
        }
    }

    fn after_drill(&self, service: &str, id: i64, end: &JobEnd) {
        let detail = end.detail.as_ref();
        if let Some(c) = &self.cluster {
            let region = detail.and_then(|d| d["region"].as_str());
            crate::drills::publish(self, c, service, id, region);
        }
        if let Some(region) = detail.and_then(|d| d["region"].as_str()) {
            // A drill from a region measures that region's recovery time; it verifies only
            // the region's copy, so the primary's verification is left as it is.
            let seconds = detail
                .and_then(|d| d["recovery_seconds"].as_f64())
                .unwrap_or(0.0);
            if let Some(r) = self.state().regions.get_mut(region) {
                r.drills.insert(service.to_string(), (seconds, end.ok));
            }
            if !end.ok {
                self.notifier.webhook(json!({
                    "event": "drill_failed", "service": service, "job": id, "region": region,
                    "error": end.error,
                    "message": format!("restore drill of `{service}` from region `{region}` failed: {}", end.error.as_deref().unwrap_or("")),
                }));
            }
            return;
        }
        let job = self.store().job(id).ok().flatten();
        if let Some(s) = self.state().services.get_mut(service) {
            s.last_drill = job.clone();
            if end.ok {
                s.last_verified = job;
            }
        }
        if !end.ok {
            self.notifier.webhook(json!({
                "event": "drill_failed", "service": service, "job": id, "error": end.error,
                "message": format!("restore drill of `{service}` failed: {}", end.error.as_deref().unwrap_or("")),
            }));
        }
    }

    /// Records how many backups a service has (metrics, dashboard).
    pub fn set_snapshot_count(&self, service: &str, n: usize) {
        if let Some(s) = self.state().services.get_mut(service) {
            s.snapshots = Some(n);
        }
    }

    fn after_backup(&self, service: &str, id: i64, end: &JobEnd, policy: Option<&Policy>) {
        let job = self.store().job(id).ok().flatten();
        let was_failing = {
            let mut st = self.state();
            let Some(s) = st.services.get_mut(service) else {
                return;
            };
            let was = s
                .last_job
                .as_ref()
                .is_some_and(|j| j.state != JobState::Succeeded);
            s.last_job = job.clone();
            if end.ok {
                s.last_success = job.clone();
            } else {
                s.failures += 1;
            }
            was
        };
        self.notifier
            .ping(policy.and_then(|p| p.ping_url.as_deref()), end.ok);
        // A backup never restored is not trusted: the first one is drilled at once.
        let never_verified = self
            .state()
            .services
            .get(service)
            .is_some_and(|s| s.last_verified.is_none());
        // (In a cluster the leader schedules it as soon as this host publishes the backup.)
        if end.ok
            && never_verified
            && self.cluster.is_none()
            && policy.is_some_and(|p| p.drill.is_some())
            && let Err(e) = self.enqueue(service, JobKind::Drill, None)
        {
            self.log(
                "warn",
                "cannot queue the first drill",
                json!({"service": service, "error": e.to_string()}),
            );
        }
        if !end.ok {
            self.notifier.webhook(json!({
                "event": "backup_failed", "service": service, "job": id,
                "error": end.error, "time": lifeboat_model::format_timestamp(Timestamp::now()),
                "message": format!("backup of `{service}` failed: {}", end.error.as_deref().unwrap_or("")),
            }));
        } else if was_failing {
            self.notifier.webhook(json!({
                "event": "backup_recovered", "service": service, "job": id,
                "snapshot": end.snapshot_id,
                "message": format!("backup of `{service}` works again"),
            }));
        }
    }

    fn restore(&self, service: &str, id: i64, r: &RestoreJob) -> JobEnd {
        let backup = match self.backup_request(None, None) {
            Ok(b) => b,
            Err(e) => return fail(e),
        };
        let req = RestoreRequest {
            snapshot: r.snapshot.clone(),
            as_name: r.as_name.clone(),
            force: r.force,
            dry_run: r.dry_run,
            ..RestoreRequest::new(backup)
        };
        let repo = match self.open_repo() {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        let note = self.note_for(service, id);
        match restore_container(self.engine.as_ref(), &repo, service, &req, &note) {
            Ok(out) => JobEnd {
                ok: true,
                snapshot_id: Some(out.from_snapshot.clone()),
                backup_id: Some(out.backup_id.clone()),
                detail: Some(json!({
                    "container": out.container, "safety_snapshot": out.safety_snapshot,
                    "volumes": out.volumes, "binds": out.binds, "started": out.started,
                    "health": out.health, "dry_run": out.dry_run, "actions": out.actions,
                    "seconds": out.seconds,
                })),
                ..Default::default()
            },
            Err(e) => fail(e),
        }
    }

    /// Brings `service` back from its newest good backup (drill-verified when drills are on),
    /// after a forensic backup of the broken state.
    fn recover(
        &self,
        service: &str,
        id: i64,
        policy: Option<&Policy>,
        snapshot: Option<String>,
        dry_run: bool,
    ) -> JobEnd {
        let backup = match self.backup_request(None, None) {
            Ok(b) => b,
            Err(e) => return fail(e),
        };
        let req = lifeboat_core::RecoverRequest {
            restore: RestoreRequest {
                snapshot,
                dry_run,
                ..RestoreRequest::new(backup)
            },
            verified: self.verified(service, policy),
        };
        let repo = match self.open_repo() {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        let note = self.note_for(service, id);
        // Its schedules and those of what depends on it wait: a broken state is never
        // backed up, and retention never ages out the good copies meanwhile.
        let dependents =
            lifeboat_core::dependents(self.engine.as_ref(), service).unwrap_or_else(|e| {
                note(&format!("cannot read what depends on {service}: {e}"));
                Vec::new()
            });
        let mut paused = vec![service.to_string()];
        paused.extend(dependents.iter().cloned());
        if !dry_run {
            note(&format!("pausing the schedules of {}", paused.join(", ")));
            self.pause(&paused);
        }
        let result =
            lifeboat_core::recover_container(self.engine.as_ref(), &repo, service, &req, &note);
        if !dry_run {
            // A service still broken stays paused until its container starts again.
            if let Some(s) = self.state().services.get_mut(service) {
                s.held_after_failed_recovery = result.is_err();
            }
            let resume = if result.is_ok() {
                &paused[..]
            } else {
                &paused[1..]
            };
            if !resume.is_empty() {
                note(&format!("resuming the schedules of {}", resume.join(", ")));
                self.resume(resume);
            }
        }
        match result {
            Ok(out) => JobEnd {
                ok: true,
                snapshot_id: Some(out.from_snapshot.clone()),
                backup_id: Some(out.backup_id.clone()),
                detail: serde_json::to_value(&out).ok(),
                ..Default::default()
            },
            Err(e) => fail(e),
        }
    }

    /// Holds the scheduled backups and drills of `services`.
    pub(crate) fn pause(&self, services: &[String]) {
        let mut st = self.state();
        for s in services {
            st.scheduler.pause(s);
            st.scheduler.pause(&crate::daemon::drill_key(s));
        }
    }

    /// Lets the scheduled backups and drills of `services` run again.
    pub(crate) fn resume(&self, services: &[String]) {
        let mut st = self.state();
        for s in services {
            st.scheduler.resume(s);
            st.scheduler.resume(&crate::daemon::drill_key(s));
        }
        drop(st);
        self.wake.notify_one();
    }

    fn after_recover(&self, service: &str, id: i64, end: &JobEnd) {
        if end.ok {
            crate::failures::recovered(self, service);
        } else {
            crate::failures::recovery_failed(self, service);
        }
        if let Some(s) = self.state().services.get_mut(service) {
            if end.ok {
                s.recoveries.0 += 1;
                s.recoveries.2 = end
                    .detail
                    .as_ref()
                    .and_then(|d| d.get("seconds"))
                    .and_then(|v| v.as_f64());
            } else {
                s.recoveries.1 += 1;
            }
        }
        let mut event = json!({
            "event": if end.ok { "service_recovered" } else { "recovery_failed" },
            "service": service,
            "job": id,
            "backup_id": end.backup_id,
            "error": end.error,
        });
        if let Some(d) = &end.detail {
            for k in [
                "data_lost_seconds",
                "seconds",
                "forensic_snapshot",
                "health",
                "backup_time",
            ] {
                event[k] = d.get(k).cloned().unwrap_or_default();
            }
        }
        self.notifier.webhook(event);
    }

    /// Copies this host's backups a region lacks into it (`key` is `region#NAME`); in a
    /// cluster, the leader copies every host's. A region that is down fails only its own
    /// copy; backups to the primary never wait for it.
    fn copy(&self, key: &str, id: i64) -> JobEnd {
        let region = key.trim_start_matches("region#");
        let src = match self.open_repo() {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        let dest = match self.env.open_region(region) {
            Ok(r) => r,
            Err(e) => return fail(format!("region `{region}`: {e}")),
        };
        let only_host = self.cluster.is_none().then(|| self.env.hostname.clone());
        let req = lifeboat_core::CopyRequest {
            names: Vec::new(),
            host: only_host.clone(),
            dry_run: false,
        };
        let copier = |ids: &[String]| src.copy_to(&dest, ids);
        let go_ahead = || self.go_ahead();
        let note = self.note_for(key, id);
        let out = match lifeboat_core::copy_backups(&src, &dest, &copier, &go_ahead, &req, &note) {
            Ok(out) => out,
            Err(e) => return fail(format!("region `{region}`: {e}")),
        };
        // The region's own retention, behind the same safety gate as the primary's.
        let mut retention = serde_json::Map::new();
        let rules = self
            .plan
            .regions
            .iter()
            .find(|r| r.name == region)
            .and_then(|r| r.retention.clone());
        if let Some(rules) = rules {
            let services: std::collections::BTreeSet<(String, String)> = out
                .copied
                .iter()
                .map(|c| (c.host.clone(), c.service.clone()))
                .collect();
            for (host, service) in services {
                if let Err(why) = self.go_ahead() {
                    return fail(format!("region `{region}`: retention not applied: {why}"));
                }
                let req = RetentionRequest {
                    retention: rules.clone(),
                    force: false,
                    newest_attempt_failed: false,
                    shrink_ratio: self.plan.shrink_ratio,
                    margin: self.plan.retention_margin,
                    dry_run: false,
                    state_dir: self.env.state_dir.clone(),
                    host: Some(host.clone()),
                    verified: None,
                    prune: true,
                    now: Timestamp::now(),
                };
                let done = match apply_retention(&dest, &service, &req, &note) {
                    Ok(r) => serde_json::to_value(&r).unwrap_or_default(),
                    Err(e) => json!({"error": e.to_string()}),
                };
                let label = if only_host.is_some() {
                    service
                } else {
                    format!("{host}/{service}")
                };
                retention.insert(label, done);
            }
        }
        // What is there now, per service (for the lag metrics).
        let newest = lifeboat_core::list_host_backups(&dest, None, only_host.as_deref())
            .map(|list| {
                let mut newest = std::collections::BTreeMap::new();
                for b in list.iter().filter(|b| !b.safety) {
                    newest.insert(
                        b.manifest.container_name.clone(),
                        lifeboat_model::format_timestamp(b.manifest.started_at),
                    );
                }
                newest
            })
            .unwrap_or_default();
        if let Some(r) = self.state().regions.get_mut(region) {
            r.newest = newest;
        }
        JobEnd {
            ok: out.failed.is_empty(),
            bytes_added: Some(out.bytes_added),
            error: out
                .failed
                .first()
                .map(|f| format!("backup {} not copied: {}", f.backup_id, f.error)),
            detail: serde_json::to_value(&out).ok().map(|mut d| {
                d["retention"] = serde_json::Value::Object(retention);
                d
            }),
            ..Default::default()
        }
    }

    fn after_copy(&self, key: &str, id: i64, end: &JobEnd) {
        let region = key.trim_start_matches("region#");
        let job = self.store().job(id).ok().flatten();
        let failures = {
            let mut st = self.state();
            let failures = match st.regions.get_mut(region) {
                Some(r) => {
                    r.last_copy = job;
                    r.failures = if end.ok { 0 } else { r.failures + 1 };
                    r.failures
                }
                None => 0,
            };
            if failures > 0 {
                // Retried with backoff (10 s doubling), never later than its next slot.
                let delay = COPY_RETRY_FIRST.saturating_mul(1 << (failures - 1).min(16));
                let at = Timestamp::now()
                    .checked_add(delay.min(COPY_RETRY_MAX))
                    .unwrap_or_else(|_| Timestamp::now());
                st.scheduler.retry_at(key, at);
            }
            failures
        };
        if !end.ok {
            self.notifier.webhook(json!({
                "event": "copy_failed", "region": region, "job": id, "error": end.error,
                "failures_in_a_row": failures,
                "message": format!(
                    "copy to region `{region}` failed ({failures} in a row; retried with \
                     backoff): {}",
                    end.error.as_deref().unwrap_or("")
                ),
            }));
        }
    }

    /// Restores on this host the services the cluster's leader moved here (`key` is
    /// `failover#GROUP`): as a stack, health-gated, each container started only while the
    /// move is still this host's; then records them as running here, or the failure (the
    /// leader then tries another host).
    fn failover(&self, key: &str, id: i64, request: Option<serde_json::Value>) -> JobEnd {
        let Some(c) = self.cluster.clone() else {
            return fail("a failover runs only in a cluster ([cluster] in the config file)");
        };
        match request.map(serde_json::from_value::<crate::failover::FailoverJob>) {
            Some(Ok(job)) => self.restore_moved(&c, key, id, &job),
            _ => fail("bad failover request"),
        }
    }

    fn restore_moved(
        &self,
        c: &std::sync::Arc<crate::cluster::Cluster>,
        key: &str,
        id: i64,
        job: &crate::failover::FailoverJob,
    ) -> JobEnd {
        let owners = match crate::failover::assigned(c, job) {
            Ok(o) => o,
            Err(e) => return fail(e),
        };
        let me = c.plan.host.clone();
        let names: Vec<String> = owners.iter().map(|o| o.service.clone()).collect();
        let from = owners[0].previous.last().cloned().unwrap_or_default();
        let note = self.note_for(key, id);
        // Written back with a few tries: a move left `moving` would be restored again.
        let record = |error: Option<&str>| {
            let after = crate::failover::after_restore(&owners, &me, error);
            for attempt in 0..5 {
                match c.write_owners(&after, false) {
                    Ok(true) => return,
                    Ok(false) => {
                        note("the move's records changed meanwhile; left as they are");
                        return;
                    }
                    Err(e) if attempt == 4 => {
                        note(&format!("cannot record the end of the move in etcd: {e}"))
                    }
                    Err(_) => std::thread::sleep(Duration::from_secs(1)),
                }
            }
        };
        let failed = |e: String| {
            record(Some(&e));
            fail(e)
        };
        note(&format!(
            "restoring {} here: moved from {from}, whose registration expired",
            names.join(", ")
        ));
        // Only this host's own stale copies (it ran the service before) may be replaced,
        // after a safety backup.
        let mut force = false;
        for o in &owners {
            let n = &o.service;
            let own_copy = o.previous.contains(&me) || self.state().failover.moved_away.contains(n);
            match self.engine.container(n) {
                Ok(None) => {}
                Ok(Some(_)) if own_copy => force = true,
                Ok(Some(_)) => {
                    return failed(format!(
                        "a container named `{n}` already exists on `{me}` and is not a copy                          Lifeboat stopped; rename or remove it, or name other hosts in                          lifeboat.failover-hosts"
                    ));
                }
                Err(e) => return failed(e.to_string()),
            }
        }
        let repo = match self.open_repo() {
            Ok(r) => r,
            Err(e) => return failed(e.to_string()),
        };
        let plan = match lifeboat_core::stack::plan_stack(
            self.engine.as_ref(),
            &repo,
            &Selection::Names(names.clone()),
            None,
        ) {
            Ok(p) => p,
            Err(e) => return failed(e.to_string()),
        };
        let backup = match self.backup_request(None, None) {
            Ok(b) => b,
            Err(e) => return failed(e),
        };
        let (gate_cluster, gate_owners) = (c.clone(), owners.clone());
        let req = RestoreRequest {
            force,
            compose_files: false,
            any_host: true,
            gate: lifeboat_core::Gate::new(move || gate_cluster.still_assigned(&gate_owners)),
            ..RestoreRequest::new(backup)
        };
        {
            // From here the containers are this host's again: their events are followed.
            let mut st = self.state();
            for n in &names {
                st.failover.moved_away.remove(n);
            }
        }
        let t0 = Instant::now();
        let results = lifeboat_core::stack::restore_stack(
            self.engine.as_ref(),
            &repo,
            &plan,
            &req,
            &|_| None,
            Duration::from_secs(600),
            &note,
        );
        let seconds = t0.elapsed().as_secs_f64();
        let error = results
            .iter()
            .find_map(|r| r.error.as_ref().map(|e| format!("{}: {e}", r.service)));
        record(error.as_deref());
        for n in &names {
            if let Ok(details) = self.engine.container(n) {
                crate::services::apply(self, n, details);
            }
        }
        let detail = json!({"services": names, "from": from, "levels": plan.levels,
            "run_id": plan.run_id, "results": results, "seconds": seconds});
        match error {
            None => JobEnd {
                ok: true,
                detail: Some(detail),
                ..Default::default()
            },
            Some(e) => JobEnd {
                detail: Some(detail),
                ..fail(e)
            },
        }
    }

    /// Asked before each irreversible step of a repository-wide job: in a cluster, this
    /// daemon must still lead.
    pub fn go_ahead(&self) -> Result<(), String> {
        self.cluster.as_ref().map_or(Ok(()), |c| c.fence())
    }

    /// Checks the repository's structure (a repository-wide job).
    fn check_repository(&self, key: &str, id: i64) -> JobEnd {
        let repo = match self.open_repo() {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        (self.note_for(key, id))("checking the repository's structure");
        match repo.check(false) {
            Ok(r) => JobEnd {
                ok: r.errors.is_empty(),
                error: r.errors.first().map(|e| {
                    format!(
                        "the repository check found {} error(s), the first: {e}; run `lifeboat \
                         check` for all of them",
                        r.errors.len()
                    )
                }),
                detail: Some(json!({"errors": r.errors, "warnings": r.warnings})),
                ..Default::default()
            },
            Err(e) => fail(e),
        }
    }

    /// Whether a service's retention prunes the data it freed right away: only on a daemon
    /// alone with no repository-wide `prune` scheduled. In a cluster the leader prunes; with
    /// `prune` set, that job does (many services on short schedules would otherwise prune,
    /// each time exclusively, after almost every backup).
    fn prunes_after_retention(&self) -> bool {
        self.cluster.is_none() && self.plan.prune.is_none()
    }

    /// Removes the data no backup references any more (a repository-wide job). In a cluster
    /// the leader's fence is checked once the plan is made, before anything is deleted.
    fn prune_repository(&self, key: &str, id: i64) -> JobEnd {
        let repo = match self.open_repo() {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        let _gate = match lifeboat_consistency::RepoGate::exclusive(&self.env.state_dir, repo.id())
        {
            Ok(g) => g,
            Err(e) => return fail(e),
        };
        let note = self.note_for(key, id);
        note("pruning: planning which data no backup uses");
        // Tests freeze the daemon between the plan and the deletions.
        let pause = std::env::var("LIFEBOAT_TEST_PRUNE_PAUSE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis);
        let go_ahead = || {
            if let Some(p) = pause {
                note("pruning: planned; pausing (LIFEBOAT_TEST_PRUNE_PAUSE_MS)");
                std::thread::sleep(p);
            }
            let verdict = self.go_ahead();
            note(&match &verdict {
                Ok(()) => "pruning: the go-ahead holds; deleting".to_string(),
                Err(why) => format!("pruning: stopped before deleting: {why}"),
            });
            verdict
        };
        match repo.prune_if(&go_ahead) {
            Ok(r) => JobEnd {
                ok: true,
                detail: serde_json::to_value(&r).ok(),
                ..Default::default()
            },
            Err(e) => fail(e),
        }
    }

    fn prune(&self, service: &str, id: i64, policy: Option<&Policy>, force: bool) -> JobEnd {
        let Some(retention) = policy.and_then(|p| p.retention.clone()) else {
            return fail(format!(
                "`{service}` has no retention policy: set the label lifeboat.retention (e.g. 7d)"
            ));
        };
        let newest_attempt_failed = self
            .state()
            .services
            .get(service)
            .and_then(|s| s.last_job.as_ref().map(|j| j.state != JobState::Succeeded))
            .unwrap_or(false);
        let repo = match self.open_repo() {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        let req = RetentionRequest {
            retention,
            force,
            newest_attempt_failed,
            shrink_ratio: self.plan.shrink_ratio,
            margin: self.plan.retention_margin,
            dry_run: false,
            state_dir: self.env.state_dir.clone(),
            host: Some(self.env.hostname.clone()),
            verified: self.verified(service, policy),
            prune: self.cluster.is_none(),
            now: Timestamp::now(),
        };
        match apply_retention(&repo, service, &req, &self.note_for(service, id)) {
            Ok(r) => {
                if let Ok(list) = list_host_backups(&repo, Some(service), Some(&self.env.hostname))
                {
                    self.set_snapshot_count(service, list.len());
                }
                JobEnd {
                    ok: r.refused.is_none(),
                    error: r.refused.clone(),
                    detail: serde_json::to_value(&r).ok(),
                    ..Default::default()
                }
            }
            Err(e) => fail(e),
        }
    }
}
