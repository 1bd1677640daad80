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
    /// When the manifest snapshot was taken.
    pub time: Timestamp,
    /// The manifest.
    pub manifest: Manifest,
    /// A safety backup taken by `restore --force` ([`tags::SAFETY`]).
    pub safety: bool,
    /// A forensic backup: the broken state a recovery replaced ([`tags::FORENSIC`]).
    pub forensic: bool,
}

pub(crate) fn entry(s: SnapshotInfo) -> Result<BackupEntry, CoreError> {
    let text = s.description.clone().unwrap_or_default();
    let manifest = Manifest::from_json(&text).map_err(|source| CoreError::Manifest {
        snapshot: s.id.clone(),
        source,
    })?;
    // A restore may quote these back (engine errors echo create bodies): scrub them too.
    lifeboat_docker::secrets::remember_env(&manifest.config.env);
    Ok(BackupEntry {
        safety: s.tags.iter().any(|t| t == tags::SAFETY),
        forensic: s.tags.iter().any(|t| t == tags::FORENSIC),
        snapshot_id: s.id,
        time: s.time,
        manifest,
    })
}

/// A manifest snapshot that could not be read (corrupt, or written by a newer Lifeboat).
#[derive(Debug, Clone)]
pub struct UnreadableBackup {
    /// The manifest snapshot.
    pub snapshot_id: String,
    /// When the manifest snapshot was taken.
    pub time: Timestamp,
    /// Why it cannot be read.
    pub reason: String,
    /// Written by a newer Lifeboat (not damage: upgrade to read it).
    pub newer_schema: bool,
}

/// Committed backups, oldest first, of `container` (or of all containers) taken on `host`
/// (or on any host), and the manifests that could not be read. One bad manifest never hides
/// the others.
pub fn scan_backups(
    repo: &dyn Repository,
    container: Option<&str>,
    host: Option<&str>,
) -> Result<(Vec<BackupEntry>, Vec<UnreadableBackup>), CoreError> {
    let mut want = vec![tags::LIFEBOAT.to_string(), tags::MANIFEST.to_string()];
    if let Some(name) = container {
        want.push(tags::container(name));
    }

    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for s in repo.snapshots(&want)? {
        let (id, time) = (s.id.clone(), s.time);
        match entry(s) {
            // The manifest says which host took it (a tag could be missing or forged alone).
            Ok(e) if host.is_some_and(|h| e.manifest.host != h) => {}
            Ok(e) => good.push(e),
            Err(CoreError::Manifest { source, .. }) => bad.push(UnreadableBackup {
                snapshot_id: id,
                time,
                newer_schema: matches!(source, lifeboat_model::ManifestError::NewerSchema { .. }),
                reason: source.to_string(),
            }),
            Err(other) => return Err(other),
        }
    }
    Ok((good, bad))
}

/// Every part snapshot a committed backup refers to (a volume shared in a run is one part
/// that several manifests refer to): what deleting old snapshots must leave alone.
pub fn referenced_parts(
    repo: &dyn Repository,
) -> Result<std::collections::BTreeSet<String>, CoreError> {
    Ok(list_backups(repo, None)?
        .into_iter()
        .flat_map(|b| b.manifest.parts.into_iter().map(|p| p.snapshot_id))
        .collect())
}

/// Committed backups, oldest first, of `container` (or of all containers), from every host.
/// Manifests that cannot be read are skipped with a warning naming them (`lifeboat check`
/// lists them).
pub fn list_backups(
    repo: &dyn Repository,
    container: Option<&str>,
) -> Result<Vec<BackupEntry>, CoreError> {
    list_host_backups(repo, container, None)
}

/// [`list_backups`] of one host (`None`: every host).
pub fn list_host_backups(
    repo: &dyn Repository,
    container: Option<&str>,
    host: Option<&str>,
) -> Result<Vec<BackupEntry>, CoreError> {
    let (good, bad) = scan_backups(repo, container, host)?;
    for b in bad {
        log::warn!(
            "skipping backup with manifest snapshot {} ({}): {}",
            b.snapshot_id,
            b.time,
            b.reason
        );
    }
    Ok(good)
}

/// The backup of `container` to restore: by snapshot or backup id (prefixes accepted), else
/// the newest taken at or before `at`, else the newest. Safety backups are chosen only by id.
/// With `host`, only that host's backups count (several hosts share a repository and may
/// each run a container of that name).
pub fn find_backup(
    repo: &dyn Repository,
    container: &str,
    host: Option<&str>,
    snapshot: Option<&str>,
    at: Option<Timestamp>,
) -> Result<BackupEntry, CoreError> {
    let all = list_host_backups(repo, Some(container), host)?;
    let found = match (snapshot, at) {
        (Some(id), _) => all
            .into_iter()
            .rev()
            .find(|b| b.snapshot_id.starts_with(id) || b.manifest.backup_id.0.starts_with(id)),
        (None, Some(at)) => all
            .into_iter()
            .rev()
            .find(|b| !b.safety && b.manifest.started_at <= at),
        (None, None) => all.into_iter().rev().find(|b| !b.safety),
    };
    let Some(found) = found else {
        let mut detail = match (snapshot, at) {
            (Some(id), _) => format!("matches snapshot `{id}`"),
            (None, Some(at)) => format!("was taken at or before {at}"),
            (None, None) => "exists yet".to_string(),
        };
        if let Some(host) = host {
            detail.push_str(&format!(" from host `{host}`"));
            let others: std::collections::BTreeSet<String> = list_backups(repo, Some(container))
                .unwrap_or_default()
                .into_iter()
                .map(|b| b.manifest.host)
                .filter(|h| h != host)
                .collect();
            if !others.is_empty() {
                let names: Vec<String> = others.into_iter().collect();
                detail.push_str(&format!(
                    " (hosts with backups of it: {}; pick one with --host)",
                    names.join(", ")
                ));
            }
        }
        if let Some(note) = foreign_note(repo) {
            detail.push_str(&format!(" ({note})"));
        }
        return Err(CoreError::NoBackup {
            name: container.to_string(),
            detail,
        });
    };
    Ok(found)
}

/// When the repository holds no Lifeboat backup at all but snapshots another tool made (a
/// repository restic alone wrote): says so, and what reads them. `None` otherwise, or when
/// the listing fails (the caller's own answer stands).
pub fn foreign_note(repo: &dyn Repository) -> Option<String> {
    let all = repo.snapshots(&[]).ok()?;
    let ours = all
        .iter()
        .filter(|s| s.tags.iter().any(|t| t == tags::LIFEBOAT))
        .count();
    let foreign = all.len() - ours;
    (ours == 0 && foreign > 0).then(|| {
        format!(
            "no Lifeboat backups here: the repository holds {foreign} snapshot{} another tool \
             made (restic?); read them with `restic snapshots`",
            if foreign == 1 { "" } else { "s" }
        )
    })
}
