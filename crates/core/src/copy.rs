//! Copies of backups into another repository (a region): every committed backup the
//! destination lacks, its parts first and its manifest last, so that a backup is listed there
//! only once it is whole. Only the data the destination lacks is sent. The engine gives
//! copied snapshots new ids, so a part is found again by what a copy keeps (time, tags,
//! paths), and the manifest written there names the parts' ids there. A copy cut short is
//! finished by the next one without duplicates; nothing is ever removed on either side.

use std::time::Instant;

use lifeboat_capture::MANIFEST_SNAPSHOT_PATH;
use lifeboat_model::tags;
use lifeboat_repo::{CopyReport, GoAhead, RepoError, SnapshotInfo, StreamBackup};
use serde::Serialize;

use crate::catalog::entry;
use crate::stream::BytesSource;
use crate::{CoreError, Note, Repository};

/// Which backups to copy.
#[derive(Debug, Clone, Default)]
pub struct CopyRequest {
    /// Only these containers' backups (every container's when empty).
    pub names: Vec<String>,
    /// Only the backups this host took (every host's when none).
    pub host: Option<String>,
    /// Say what would be copied; copy nothing.
    pub dry_run: bool,
}

/// One backup copied (or, in a dry run, to copy).
#[derive(Debug, Clone, Serialize)]
pub struct CopiedBackup {
    /// The container.
    pub service: String,
    /// The host that took it.
    pub host: String,
    /// The backup.
    pub backup_id: String,
    /// When it was taken (RFC 3339).
    pub time: String,
    /// Parts sent now.
    pub parts_sent: usize,
    /// Parts already there (an earlier copy cut short, or shared with another backup).
    pub parts_present: usize,
    /// Its manifest snapshot in the destination (none in a dry run).
    pub snapshot: Option<String>,
}

/// A backup that could not be copied, and why.
#[derive(Debug, Clone, Serialize)]
pub struct CopyFailure {
    /// The backup.
    pub backup_id: String,
    /// Why.
    pub error: String,
}

/// What a copy did.
#[derive(Debug, Clone, Serialize)]
pub struct CopyOutcome {
    /// The backups copied, oldest first.
    pub copied: Vec<CopiedBackup>,
    /// Backups that were whole in the destination already.
    pub already_there: usize,
    /// Backups that could not be copied (the others were).
    pub failed: Vec<CopyFailure>,
    /// Bytes of pack files written in the destination.
    pub bytes_added: u64,
    /// How long it took.
    pub seconds: f64,
    /// Nothing was copied.
    pub dry_run: bool,
}

/// Copies snapshots (by id in the source) into the destination: the engine's copy.
pub type Copier<'a> = &'a dyn Fn(&[String]) -> Result<CopyReport, RepoError>;

/// A snapshot's copy among `snaps`: the same time, tags and paths.
fn copy_of<'a>(original: &SnapshotInfo, snaps: &'a [SnapshotInfo]) -> Option<&'a SnapshotInfo> {
    let mut want = original.tags.clone();
    want.sort();
    snaps.iter().find(|s| {
        let mut have = s.tags.clone();
        have.sort();
        s.time == original.time && s.paths == original.paths && have == want
    })
}

/// Copies every committed backup `dest` lacks (of `req.names`, of `req.host`) from `src`.
/// `go_ahead` is asked before each manifest is written there; when it says no, the copy
/// stops with [`RepoError::Withdrawn`] and that backup is not listed there.
pub fn copy_backups(
    src: &dyn Repository,
    dest: &dyn Repository,
    copier: Copier<'_>,
    go_ahead: GoAhead<'_>,
    req: &CopyRequest,
    note: Note<'_>,
) -> Result<CopyOutcome, CoreError> {
    let t0 = Instant::now();
    let lifeboat = [tags::LIFEBOAT.to_string()];
    let src_snaps = src.snapshots(&lifeboat)?;
    let mut backups = Vec::new();
    for s in src_snaps
        .iter()
        .filter(|s| s.tags.iter().any(|t| t == tags::MANIFEST))
    {
        match entry(s.clone()) {
            Ok(b) => {
                let wanted = req.names.is_empty() || req.names.contains(&b.manifest.container_name);
                if wanted && req.host.as_ref().is_none_or(|h| *h == b.manifest.host) {
                    backups.push((s, b));
                }
            }
            Err(e) => log::warn!("not copying snapshot {}: {e}", s.id),
        }
    }
    backups.sort_by_key(|(_, b)| b.manifest.started_at);
    let mut dest_snaps = dest.snapshots(&lifeboat)?;
    let mut out = CopyOutcome {
        copied: Vec::new(),
        already_there: 0,
        failed: Vec::new(),
        bytes_added: 0,
        seconds: 0.0,
        dry_run: req.dry_run,
    };
    for (manifest_snap, b) in backups {
        let id = &b.manifest.backup_id.0;
        if copy_of(manifest_snap, &dest_snaps).is_some() {
            out.already_there += 1;
            continue;
        }
        let result = copy_one(
            dest,
            (copier, go_ahead),
            (&src_snaps, &mut dest_snaps),
            manifest_snap,
            &b,
            req.dry_run,
            note,
        );
        match result {
            Ok((copied, bytes)) => {
                out.bytes_added += bytes;
                out.copied.push(copied);
            }
            Err(e @ CoreError::Repo(RepoError::Withdrawn { .. })) => return Err(e),
            Err(e) => {
                note(&format!("cannot copy backup {id}: {e}"));
                out.failed.push(CopyFailure {
                    backup_id: id.clone(),
                    error: e.to_string(),
                });
            }
        }
    }
    out.seconds = t0.elapsed().as_secs_f64();
    Ok(out)
}

/// Copies one backup: its missing parts, then its manifest naming the parts' ids there.
fn copy_one(
    dest: &dyn Repository,
    (copier, go_ahead): (Copier<'_>, GoAhead<'_>),
    (src_snaps, dest_snaps): (&[SnapshotInfo], &mut Vec<SnapshotInfo>),
    manifest_snap: &SnapshotInfo,
    b: &crate::BackupEntry,
    dry_run: bool,
    note: Note<'_>,
) -> Result<(CopiedBackup, u64), CoreError> {
    let id = &b.manifest.backup_id.0;
    let originals = b
        .manifest
        .parts
        .iter()
        .map(|p| {
            src_snaps
                .iter()
                .find(|s| s.id == p.snapshot_id)
                .ok_or_else(|| {
                    CoreError::Stack(format!(
                        "part {} of backup {id} (snapshot {}) is missing from the source; run \
                     `lifeboat check` there",
                        p.name, p.snapshot_id
                    ))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let missing: Vec<String> = originals
        .iter()
        .filter(|o| copy_of(o, dest_snaps).is_none())
        .map(|o| o.id.clone())
        .collect();
    let mut copied = CopiedBackup {
        service: b.manifest.container_name.clone(),
        host: b.manifest.host.clone(),
        backup_id: id.clone(),
        time: lifeboat_model::format_timestamp(b.manifest.started_at),
        parts_sent: missing.len(),
        parts_present: originals.len() - missing.len(),
        snapshot: None,
    };
    if dry_run {
        return Ok((copied, 0));
    }
    note(&format!(
        "copying backup {id}: {} part(s) to send, {} there already",
        copied.parts_sent, copied.parts_present
    ));
    let report = copier(&missing)?;
    if !missing.is_empty() {
        *dest_snaps = dest.snapshots(&[tags::LIFEBOAT.to_string()])?;
    }
    let mut manifest = b.manifest.clone();
    for (part, original) in manifest.parts.iter_mut().zip(&originals) {
        let there = copy_of(original, dest_snaps).ok_or_else(|| {
            CoreError::Stack(format!(
                "part {} of backup {id} was copied but is not found in the destination",
                part.name
            ))
        })?;
        part.snapshot_id = there.id.clone();
    }
    // Written last: the backup is listed there only now that it is whole.
    if !dry_run {
        go_ahead().map_err(|why| RepoError::Withdrawn {
            step: format!("committing the copy of backup {id}"),
            why,
        })?;
    }
    let json = manifest.to_json();
    let written = dest.backup_stream(
        &StreamBackup {
            path: MANIFEST_SNAPSHOT_PATH,
            tags: &manifest_snap.tags,
            description: Some(json.clone()),
            time: Some(manifest_snap.time),
        },
        &mut BytesSource(json.into_bytes()),
    )?;
    copied.snapshot = Some(written.snapshot_id.clone());
    dest_snaps.push(SnapshotInfo {
        id: written.snapshot_id,
        ..manifest_snap.clone()
    });
    Ok((copied, report.bytes_added + written.added_bytes))
}
