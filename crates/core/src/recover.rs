//! Recovery: a failed service comes back from its newest good backup. The broken state is
//! kept first as a forensic backup (a safety backup tagged `forensic`: never chosen by
//! default, never counted as good), then the container and its volumes are replaced by the
//! backup's, and the service must come back healthy; then the containers that depend on it
//! are restarted, dependencies first.
//!
//! A recovery records what it is doing in `<state>/recoveries/<name>.json` before it changes
//! anything and removes it at its end: a process killed in between leaves the file, and
//! [`interrupted_recoveries`] finds it so the next daemon finishes the job.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use jiff::Timestamp;
use lifeboat_consistency::ContainerLock;
use lifeboat_docker::ContainerDetails;
use serde::{Deserialize, Serialize};

use crate::catalog::{BackupEntry, list_host_backups};
use crate::restore::{RestoreRequest, restore_container};
use crate::stack::{declared_dependencies, levels};
use crate::{CoreError, Engine, Repository};

/// What to recover from and how.
#[derive(Debug, Clone)]
pub struct RecoverRequest {
    /// The restore settings (its `force` is set by the recovery itself).
    pub restore: RestoreRequest,
    /// With drills on: the backup ids a drill verified; only those count as good.
    pub verified: Option<Vec<String>>,
}

/// What a recovery did (or, in a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct RecoverOutcome {
    /// The service.
    pub service: String,
    /// The backup it came back from.
    pub backup_id: String,
    /// Its manifest snapshot.
    pub from_snapshot: String,
    /// When that backup was taken.
    pub backup_time: String,
    /// Seconds of data lost: from that backup to the recovery.
    pub data_lost_seconds: f64,
    /// The forensic backup of the broken state (its manifest snapshot).
    pub forensic_snapshot: Option<String>,
    /// The container's health at the end, when it has a healthcheck.
    pub health: Option<String>,
    /// How long the recovery took.
    pub seconds: f64,
    /// Nothing was changed; `steps` says what would happen.
    pub dry_run: bool,
    /// The containers depending on it that were restarted, in that order.
    pub restarted: Vec<String>,
    /// The steps, in order.
    pub steps: Vec<String>,
}

/// The newest good backup of `name` on `host`: complete (not partial), not a safety or
/// forensic backup, and, with drills on, verified by one.
pub fn newest_good_backup(
    repo: &dyn Repository,
    name: &str,
    host: &str,
    verified: Option<&[String]>,
) -> Result<BackupEntry, CoreError> {
    let all = list_host_backups(repo, Some(name), Some(host))?;
    let count = all.len();
    all.into_iter()
        .rev()
        .filter(|b| !b.safety && !b.manifest.partial)
        .find(|b| verified.is_none_or(|v| v.contains(&b.manifest.backup_id.0)))
        .ok_or_else(|| CoreError::NoBackup {
            name: name.to_string(),
            detail: format!(
                "is good enough to recover from ({count} backup(s) from host `{host}`, none \
                 complete{})",
                if verified.is_some() {
                    " and drill-verified"
                } else {
                    ""
                }
            ),
        })
}

/// Recovers `name`: forensic backup of what is there, restore of the newest good backup in
/// place (or of `req.restore.snapshot`), health waited for.
pub fn recover_container(
    engine: &dyn Engine,
    repo: &dyn Repository,
    name: &str,
    req: &RecoverRequest,
    note: crate::Note<'_>,
) -> Result<RecoverOutcome, CoreError> {
    let t0 = Instant::now();
    let state_dir = req.restore.backup.state_dir.clone();
    // One recovery of a service at a time, across processes; a free lock with an intent
    // file left means the process that wrote it died.
    let _lock = ContainerLock::acquire(&state_dir, &recovery_lock_name(name))?;
    let chosen = match &req.restore.snapshot {
        Some(_) => None,
        None => Some(newest_good_backup(
            repo,
            name,
            &req.restore.backup.hostname,
            req.verified.as_deref(),
        )?),
    };
    let mut restore = req.restore.clone();
    restore.force = true;
    restore.as_name = None;
    if let Some(b) = &chosen {
        restore.snapshot = Some(b.snapshot_id.clone());
    }
    restore
        .backup
        .extra_tags
        .push(lifeboat_model::tags::FORENSIC.into());
    // The broken state is kept as it is, file by file: a consistent copy through SQLite
    // would fail on the very damage it must keep.
    restore.backup.mode = Some(lifeboat_model::Mode::None);
    restore.backup.as_found = true;
    note(&format!(
        "recovering {name} from backup {}",
        restore.snapshot.as_deref().unwrap_or("?")
    ));
    let dependents = dependents(engine, name)?;
    let intent = (!req.restore.dry_run)
        .then(|| {
            write_intent(
                &state_dir,
                &RecoveryIntent {
                    service: name.to_string(),
                    snapshot: restore.snapshot.clone().unwrap_or_default(),
                    at: lifeboat_model::format_timestamp(Timestamp::now()),
                },
            )
        })
        .transpose()?;
    let done = restore_container(engine, repo, name, &restore, note).and_then(|out| {
        if req.restore.dry_run {
            return Ok((out, Vec::new()));
        }
        if out.started {
            probe_recovered(engine, name, &req.restore.backup.host_root, note)?;
        }
        let restarted = restart_dependents(engine, name, &dependents, &req.restore, note)?;
        Ok((out, restarted))
    });
    // Finished or failed, the recovery is over: only a killed one leaves its intent.
    if let Some(path) = intent {
        let _ = std::fs::remove_file(path);
    }
    let (out, restarted) = done?;
    let entry = match chosen {
        Some(b) => b,
        None => crate::catalog::find_backup(
            repo,
            name,
            Some(&req.restore.backup.hostname),
            restore.snapshot.as_deref(),
            None,
        )?,
    };
    let mut steps = vec![
        "take a forensic backup of the broken state (kept, tagged forensic)".to_string(),
        format!(
            "restore backup {} ({}) in place",
            entry.manifest.backup_id.0,
            lifeboat_model::format_timestamp(entry.manifest.started_at)
        ),
    ];
    steps.extend(out.actions.iter().cloned());
    if !dependents.is_empty() {
        steps.push(format!(
            "restart what depends on it, in order: {}",
            dependents.join(", ")
        ));
    }
    Ok(RecoverOutcome {
        restarted,
        service: name.to_string(),
        backup_id: entry.manifest.backup_id.0.clone(),
        from_snapshot: entry.snapshot_id.clone(),
        backup_time: lifeboat_model::format_timestamp(entry.manifest.started_at),
        data_lost_seconds: Timestamp::now()
            .duration_since(entry.manifest.started_at)
            .as_secs_f64()
            .max(0.0),
        forensic_snapshot: out.safety_snapshot,
        health: out.health,
        seconds: t0.elapsed().as_secs_f64(),
        dry_run: req.restore.dry_run,
        steps,
    })
}

/// The lock a recovery of `name` holds while it runs.
fn recovery_lock_name(name: &str) -> String {
    format!("recover.{name}")
}

/// The containers here that depend on `name`, directly or through one another (compose
/// `depends_on`, links, `lifeboat.depends-on`), ordered so that each comes after what it
/// depends on. Drill sandboxes are never included.
pub fn dependents(engine: &dyn Engine, name: &str) -> Result<Vec<String>, CoreError> {
    dependents_of(engine, &[name.to_string()])
}

/// [`dependents`] of several containers at once (one reading of the engine); one of `names`
/// is included when it depends on another.
pub fn dependents_of(engine: &dyn Engine, names: &[String]) -> Result<Vec<String>, CoreError> {
    let mut all: Vec<ContainerDetails> = Vec::new();
    for n in engine.container_names()? {
        if let Some(c) = engine.container(&n)?
            && c.config.label(lifeboat_model::labels::SANDBOX).is_none()
        {
            all.push(c);
        }
    }
    let on = |c: &ContainerDetails, t: &ContainerDetails| {
        c.name != t.name
            && declared_dependencies(&c.config).iter().any(|d| {
                *d == t.name
                    || matches!((&c.compose, &t.compose),
                        (Some(a), Some(b)) if a.project == b.project && *d == b.service)
            })
    };
    // Everything that reaches a target through dependency edges.
    let mut found: Vec<&ContainerDetails> = Vec::new();
    let mut frontier: Vec<&ContainerDetails> =
        all.iter().filter(|c| names.contains(&c.name)).collect();
    while let Some(t) = frontier.pop() {
        for c in &all {
            if on(c, t) && !found.iter().any(|f| f.name == c.name) {
                found.push(c);
                frontier.push(c);
            }
        }
    }
    let graph: BTreeMap<String, Vec<String>> = found
        .iter()
        .map(|c| {
            let deps = found
                .iter()
                .filter(|o| on(c, o))
                .map(|o| o.name.clone())
                .collect();
            (c.name.clone(), deps)
        })
        .collect();
    let ordered = levels(&graph).map_err(|e| CoreError::Stack(e.to_string()))?;
    Ok(ordered.into_iter().flatten().collect())
}

/// Runs the drill probes (its `lifeboat.probe`, SQLite integrity) on the recovered service.
fn probe_recovered(
    engine: &dyn Engine,
    name: &str,
    host_root: &Path,
    note: crate::Note<'_>,
) -> Result<(), CoreError> {
    let Some(c) = engine.container(name)? else {
        return Err(CoreError::NoSuchContainer(name.to_string()));
    };
    let probes = crate::drill::live_probes(engine, &c.config, name, host_root, true);
    if probes.is_empty() {
        return Ok(());
    }
    note(&format!("probing {name} ({} probe(s))", probes.len()));
    let failed: Vec<String> = probes
        .iter()
        .filter(|p| !p.ok)
        .map(|p| format!("{} ({})", p.name, p.output.trim()))
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CoreError::ProbesFailed {
            name: name.to_string(),
            failed: failed.join("; "),
        })
    }
}

/// Restarts the running ones of `dependents` (in their order), each waited for (healthy, or
/// running without a healthcheck) before the next: they reconnect to the recovered service.
fn restart_dependents(
    engine: &dyn Engine,
    name: &str,
    dependents: &[String],
    req: &RestoreRequest,
    note: crate::Note<'_>,
) -> Result<Vec<String>, CoreError> {
    let mut restarted = Vec::new();
    for d in dependents {
        match engine.container(d)? {
            Some(c) if c.state.running => {}
            _ => continue,
        }
        note(&format!("restarting {d} (it depends on {name})"));
        engine.stop_container(d, 10)?;
        engine.start_container(d)?;
        crate::stack::wait_ready(
            engine,
            std::slice::from_ref(d),
            Instant::now() + req.health_timeout,
        )?;
        restarted.push(d.clone());
    }
    Ok(restarted)
}

/// A recovery under way, as recorded on disk before it changes anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryIntent {
    /// The service.
    pub service: String,
    /// The backup it is recovered from (its manifest snapshot).
    pub snapshot: String,
    /// When the recovery began (RFC 3339).
    pub at: String,
}

fn recoveries_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("recoveries")
}

fn write_intent(state_dir: &Path, intent: &RecoveryIntent) -> Result<PathBuf, CoreError> {
    let path = recoveries_dir(state_dir).join(format!("{}.json", intent.service));
    let json = serde_json::to_vec(intent).expect("an intent serialises");
    lifeboat_consistency::write_durably(&path, &json)
        .map_err(CoreError::io("writing", path.display()))?;
    Ok(path)
}

/// Recoveries a killed process left half done (their lock is free): each should be run
/// again from the same backup. Unreadable intent files are skipped (and named in the log of
/// the caller through the error list).
pub fn interrupted_recoveries(state_dir: &Path) -> Vec<Result<RecoveryIntent, String>> {
    let Ok(dir) = std::fs::read_dir(recoveries_dir(state_dir)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let parsed = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<RecoveryIntent>(&b).map_err(|e| e.to_string()))
            .and_then(|i| {
                lifeboat_model::names::container_name(&i.service)
                    .and_then(|_| lifeboat_model::names::snapshot_selector(&i.snapshot))
                    .map(|_| i)
                    .map_err(|e| e.to_string())
            });
        match parsed {
            // A live recovery holds its lock: not ours to finish.
            Ok(i) => {
                if ContainerLock::acquire(state_dir, &recovery_lock_name(&i.service)).is_ok() {
                    out.push(Ok(i));
                }
            }
            Err(e) => out.push(Err(format!("{}: {e}", path.display()))),
        }
    }
    out
}

/// The mounts of a container whose data is gone from this host: a named volume the engine no
/// longer knows, or a volume directory or bind source that no longer exists (a disk that was
/// not mounted, a directory removed). Only paths the engine reports are looked at.
pub fn missing_mounts(
    engine: &dyn Engine,
    details: &ContainerDetails,
    host_root: &Path,
) -> Result<Vec<String>, CoreError> {
    use lifeboat_model::MountKind;
    let mut out = Vec::new();
    for m in &details.mounts {
        let exists =
            |p: &str| std::fs::symlink_metadata(lifeboat_capture::under_root(host_root, p)).is_ok();
        match m.kind {
            MountKind::Volume => match engine.volume(&m.name)? {
                None => out.push(format!("volume {} is gone", m.name)),
                Some(v) if !exists(&v.mountpoint) => out.push(format!(
                    "the directory of volume {} ({}) is gone",
                    m.name, v.mountpoint
                )),
                Some(_) => {}
            },
            MountKind::Bind if !exists(&m.host_path) => {
                out.push(format!("bind source {} is gone", m.host_path))
            }
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_recovery_is_found_again_and_a_hostile_record_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let good = RecoveryIntent {
            service: "db".into(),
            snapshot: "0123abcd".into(),
            at: "2026-12-01T00:00:00Z".into(),
        };
        write_intent(dir.path(), &good).unwrap();
        let hostile = RecoveryIntent {
            service: "../../etc".into(),
            ..good.clone()
        };
        std::fs::write(
            recoveries_dir(dir.path()).join("evil.json"),
            serde_json::to_vec(&hostile).unwrap(),
        )
        .unwrap();
        let mut found = interrupted_recoveries(dir.path());
        found.sort_by_key(|r| r.is_err());
        assert_eq!(found[0].as_ref().unwrap(), &good);
        assert!(
            found[1].as_ref().unwrap_err().contains("evil.json"),
            "{found:?}"
        );
        // A live recovery holds its lock: it is not someone else's to finish.
        let _held = ContainerLock::acquire(dir.path(), &recovery_lock_name("db")).unwrap();
        assert!(
            interrupted_recoveries(dir.path())
                .iter()
                .all(|r| r.is_err())
        );
    }
}
