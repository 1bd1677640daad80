//! `forget` and `prune` for one service: delete the backups its retention policy no longer
//! keeps, then free their data. Guarded: nothing is deleted while the service's newest
//! backup failed, is partial, or is suspiciously small next to the one before (a broken
//! service writing an empty volume must not age out its last good copies), unless forced.
//!
//! The rules order backups by the time their host's clock gave them. A backup dated after this
//! host's clock means a clock was wrong (ahead then, or behind now): that backup is never
//! deleted, and while one exists nothing else is either unless forced, since a later backup
//! with a right clock would look older than it and age out first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use jiff::{SignedDuration, Timestamp};
use lifeboat_consistency::RepoGate;
use lifeboat_model::policy::Retention;
use lifeboat_model::tags;
use lifeboat_repo::{PruneReport, Repository};

use crate::catalog::{BackupEntry, list_backups};
use crate::{CoreError, Note};

/// What a retention run may do.
#[derive(Debug, Clone)]
pub struct RetentionRequest {
    /// The rules.
    pub retention: Retention,
    /// Delete even when the safety gate says no.
    pub force: bool,
    /// The newest backup attempt of this service failed (the daemon's job history knows).
    pub newest_attempt_failed: bool,
    /// The newest backup is suspicious when smaller than this fraction of the previous one.
    pub shrink_ratio: f64,
    /// A backup dated less than this before `now` is never deleted, forced or not.
    pub margin: std::time::Duration,
    /// Say what would be deleted, delete nothing.
    pub dry_run: bool,
    /// With drills enabled: the backup ids a drill verified. Only those count as good: the
    /// newest verified backup is always kept, and nothing is deleted before one exists.
    pub verified: Option<Vec<String>>,
    /// Lifeboat's state (the prune gate's lock).
    pub state_dir: PathBuf,
    /// Whose backups the rules apply to: this host's (several hosts share a repository and
    /// may run containers of the same name). `None`: every host's.
    pub host: Option<String>,
    /// Also remove the data only the deleted backups used (`false`: a later repository-wide
    /// prune does, as in a cluster, where only the leader prunes).
    pub prune: bool,
    /// This host's clock, now (the caller's `Timestamp::now()`; tests set it).
    pub now: Timestamp,
}

/// How far after this host's clock a backup may be dated before the clocks are called wrong
/// (clocks kept by NTP differ by milliseconds; a minute leaves room for a slow step).
pub const CLOCK_TOLERANCE: SignedDuration = SignedDuration::from_secs(60);

/// Why the backups' order cannot be trusted against `now`, if it cannot: the newest backup
/// dated after `now` by more than [`CLOCK_TOLERANCE`].
pub fn clock_gate(name: &str, backups: &[BackupEntry], now: Timestamp) -> Option<String> {
    let latest = backups.iter().max_by_key(|b| b.manifest.started_at)?;
    let at = latest.manifest.started_at;
    let ahead = at.duration_since(now);
    (ahead > CLOCK_TOLERANCE).then(|| {
        format!(
            "backup {} of `{name}` (host {}) is dated {} after this host's clock ({}): a clock \
             was ahead when it was taken, or is behind now, so the backups' order cannot be \
             trusted; old backups are kept until this clock passes {} (check the time sync, \
             e.g. `timedatectl`, on both hosts; force the prune to apply the rules anyway: \
             backups dated in the future are kept even then)",
            latest.manifest.backup_id,
            latest.manifest.host,
            lifeboat_model::policy::format_duration(ahead.unsigned_abs()),
            lifeboat_model::format_timestamp(now),
            lifeboat_model::format_timestamp(at),
        )
    })
}

/// What a retention run decided and did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RetentionOutcome {
    /// Backup ids kept and deleted (or to be deleted, in a dry run).
    pub kept: Vec<String>,
    /// Backup ids deleted (or to be, in a dry run).
    pub deleted: Vec<String>,
    /// Why nothing was deleted, when the safety gate refused.
    pub refused: Option<String>,
    /// What the prune freed, when it ran.
    pub prune: Option<PruneReport>,
}

/// Why deleting old backups of `name` is unsafe right now, if it is.
pub fn prune_gate(
    name: &str,
    backups: &[BackupEntry],
    newest_attempt_failed: bool,
    shrink_ratio: f64,
) -> Option<String> {
    if newest_attempt_failed {
        return Some(format!(
            "the newest backup attempt of `{name}` failed; old backups are kept until a backup \
             succeeds (force the prune to override)"
        ));
    }
    let newest = backups.last()?;
    if newest.manifest.partial {
        return Some(format!(
            "the newest backup of `{name}` ({}) is partial; old backups are kept",
            newest.manifest.backup_id
        ));
    }
    let previous = backups.iter().rev().nth(1)?;
    let (new, old) = (
        newest.manifest.total_bytes(),
        previous.manifest.total_bytes(),
    );
    if (new as f64) < (old as f64) * shrink_ratio {
        return Some(format!(
            "the newest backup of `{name}` holds {new} bytes, the previous one {old}: \
             suspiciously small, so old backups are kept (check the service, or force the prune)"
        ));
    }
    None
}

/// Applies `req.retention` to the committed backups of `name`.
pub fn apply_retention(
    repo: &dyn Repository,
    name: &str,
    req: &RetentionRequest,
    note: Note<'_>,
) -> Result<RetentionOutcome, CoreError> {
    let backups = crate::catalog::list_host_backups(repo, Some(name), req.host.as_deref())?;
    // Dated in the future: younger than any rule can judge, kept even when forced, and left
    // out of the rules (the newest by date would otherwise be kept in place of the newest).
    let future: Vec<bool> = backups
        .iter()
        .map(|b| b.manifest.started_at.duration_since(req.now) > CLOCK_TOLERANCE)
        .collect();
    let judged: Vec<usize> = (0..backups.len()).filter(|i| !future[*i]).collect();
    let times: Vec<_> = judged
        .iter()
        .map(|i| backups[*i].manifest.started_at)
        .collect();
    let margin = SignedDuration::try_from(req.margin).unwrap_or(SignedDuration::MAX);
    let mut keep = future.clone();
    for (i, k) in judged.iter().zip(req.retention.keep(&times)) {
        let young = req.now.duration_since(backups[*i].manifest.started_at) < margin;
        keep[*i] = k || young;
    }
    let mut unverified = false;
    if let Some(verified) = &req.verified {
        match backups
            .iter()
            .rposition(|b| verified.contains(&b.manifest.backup_id.0))
        {
            Some(i) => keep[i] = true,
            None => unverified = true,
        }
    }
    let mut out = RetentionOutcome::default();
    for (b, k) in backups.iter().zip(&keep) {
        let id = b.manifest.backup_id.0.clone();
        if *k {
            out.kept.push(id)
        } else {
            out.deleted.push(id)
        }
    }
    // A wrong clock is reported on every run, even one with nothing to delete.
    let clock = clock_gate(name, &backups, req.now);
    if out.deleted.is_empty() && (clock.is_none() || req.force) {
        return Ok(out);
    }
    let why = clock
        .or_else(|| prune_gate(name, &backups, req.newest_attempt_failed, req.shrink_ratio))
        .or_else(|| {
            unverified.then(|| {
                format!(
                    "no backup of `{name}` has been verified by a drill yet; old backups are kept \
                 until one is (run `lifeboat drill {name}`)"
                )
            })
        });
    if !req.force
        && let Some(why) = why
    {
        out.refused = Some(why);
        out.deleted.clear();
        return Ok(out);
    }
    if req.dry_run {
        return Ok(out);
    }
    // Every snapshot of each backup: the manifest goes first, which uncommits the backup;
    // parts left by an interruption are orphans that the next backup deletes.
    let mut by_backup: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for s in repo.snapshots(&[tags::LIFEBOAT.to_string(), tags::container(name)])? {
        if let Some(id) = tags::value(&s.tags, "backup")
            && out.deleted.iter().any(|d| d == id)
        {
            let entry = by_backup.entry(id.to_string()).or_default();
            if s.tags.iter().any(|t| t == tags::MANIFEST) {
                entry.0.push(s.id);
            } else {
                entry.1.push(s.id);
            }
        }
    }
    let manifests: Vec<String> = by_backup.values().flat_map(|(m, _)| m.clone()).collect();
    // A part another kept backup refers to (a volume shared in a run) stays.
    let kept_refs: BTreeSet<String> = list_backups(repo, None)?
        .into_iter()
        .filter(|b| !out.deleted.contains(&b.manifest.backup_id.0))
        .flat_map(|b| b.manifest.parts.into_iter().map(|p| p.snapshot_id))
        .collect();
    let parts: Vec<String> = by_backup
        .values()
        .flat_map(|(_, p)| p.clone())
        .filter(|id| !kept_refs.contains(id))
        .collect();
    note(&format!(
        "retention: deleting {} backup(s) of {name}, keeping {}",
        out.deleted.len(),
        out.kept.len()
    ));
    repo.delete(&manifests)?;
    if !parts.is_empty() {
        repo.delete(&parts)?;
    }
    if req.prune {
        let _gate = RepoGate::exclusive(&req.state_dir, repo.id())?;
        let _repo_lock = repo.lock_run(true)?;
        out.prune = Some(repo.prune()?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeboat_model::{BackupId, Manifest, Part, PartKind};

    fn entry(bytes: u64, partial: bool) -> BackupEntry {
        let mut m: Manifest = serde_json::from_value(serde_json::json!({
            "schema_version": 2, "lifeboat_version": "0", "backup_id": "b",
            "started_at": "2026-11-23T00:00:00.000000000Z",
            "finished_at": "2026-11-23T00:00:00.000000000Z", "host": "h",
            "engine_version": "", "engine_api_version": "", "container_name": "db",
            "container_id": "x", "config": {"image": "i"}, "config_sha256": "", "parts": []
        }))
        .unwrap();
        m.backup_id = BackupId(format!("b{bytes}"));
        m.partial = partial;
        m.parts = vec![Part {
            kind: PartKind::Volume,
            name: "v".into(),
            belongs_to: None,
            snapshot_path: "/volumes/v".into(),
            snapshot_id: "s".into(),
            files: 1,
            dirs: 0,
            bytes,
            added_bytes: 0,
        }];
        BackupEntry {
            snapshot_id: "s".into(),
            time: m.started_at,
            manifest: m,
            safety: false,
            forensic: false,
        }
    }

    #[test]
    fn the_gate_refuses_after_a_failed_attempt_a_partial_or_a_shrunken_backup() {
        let good = [entry(1000, false), entry(990, false)];
        assert_eq!(prune_gate("db", &good, false, 0.5), None);
        assert!(
            prune_gate("db", &good, true, 0.5)
                .unwrap()
                .contains("failed")
        );
        let shrunk = [entry(1000, false), entry(10, false)];
        assert!(
            prune_gate("db", &shrunk, false, 0.5)
                .unwrap()
                .contains("suspiciously small")
        );
        let partial = [entry(1000, false), entry(1000, true)];
        assert!(
            prune_gate("db", &partial, false, 0.5)
                .unwrap()
                .contains("partial")
        );
        assert_eq!(prune_gate("db", &[entry(5, false)], false, 0.5), None);
    }
}
