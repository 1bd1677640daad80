//! Recovery: a failed service comes back from its newest good backup. The broken state is
//! kept first as a forensic backup (a safety backup tagged `forensic`: never chosen by
//! default, never counted as good), then the container and its volumes are replaced by the
//! backup's, and the service must come back healthy.

use std::time::Instant;

use jiff::Timestamp;
use serde::Serialize;

use crate::catalog::{BackupEntry, list_host_backups};
use crate::restore::{RestoreRequest, restore_container};
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
    note(&format!(
        "recovering {name} from backup {}",
        restore.snapshot.as_deref().unwrap_or("?")
    ));
    let out = restore_container(engine, repo, name, &restore, note)?;
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
    Ok(RecoverOutcome {
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
