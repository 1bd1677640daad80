//! Finding committed backups: manifest snapshots, newest last.

use jiff::Timestamp;
use lifeboat_model::{Manifest, tags};
use lifeboat_repo::{Repository, SnapshotInfo};

use crate::CoreError;

/// A committed backup as listed from the repository.
#[derive(Debug, Clone)]
pub struct BackupEntry {
    /// The manifest snapshot's id.
    pub snapshot_id: String,
    pub time: Timestamp,
    pub manifest: Manifest,
}

fn entry(s: SnapshotInfo) -> Result<BackupEntry, CoreError> {
    let text = s.description.clone().unwrap_or_default();
    let manifest = Manifest::from_json(&text).map_err(|source| CoreError::Manifest {
        snapshot: s.id.clone(),
        source,
    })?;
    Ok(BackupEntry {
        snapshot_id: s.id,
        time: s.time,
        manifest,
    })
}

/// Committed backups, oldest first, of `container` (or of all containers).
pub fn list_backups(
    repo: &dyn Repository,
    container: Option<&str>,
) -> Result<Vec<BackupEntry>, CoreError> {
    let mut want = vec![tags::LIFEBOAT.to_string(), tags::MANIFEST.to_string()];
    if let Some(name) = container {
        want.push(tags::container(name));
    }
    repo.snapshots(&want)?.into_iter().map(entry).collect()
}

/// The backup of `container` to restore: by snapshot or backup id (prefixes accepted), else
/// the newest taken at or before `at`, else the newest.
pub fn find_backup(
    repo: &dyn Repository,
    container: &str,
    snapshot: Option<&str>,
    at: Option<Timestamp>,
) -> Result<BackupEntry, CoreError> {
    let all = list_backups(repo, Some(container))?;
    let found = match (snapshot, at) {
        (Some(id), _) => all
            .into_iter()
            .rev()
            .find(|b| b.snapshot_id.starts_with(id) || b.manifest.backup_id.0.starts_with(id)),
        (None, Some(at)) => all.into_iter().rev().find(|b| b.manifest.started_at <= at),
        (None, None) => all.into_iter().last(),
    };
    found.ok_or_else(|| CoreError::NoBackup {
        name: container.to_string(),
        detail: match (snapshot, at) {
            (Some(id), _) => format!("matches snapshot `{id}`"),
            (None, Some(at)) => format!("was taken at or before {at}"),
            (None, None) => "exists yet".to_string(),
        },
    })
}
