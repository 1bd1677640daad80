//! `backup`: capture one container into the repository, all or nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use jiff::Timestamp;
use lifeboat_capture::{MANIFEST_SNAPSHOT_PATH, PlannedPart, plan};
use lifeboat_docker::{ContainerDetails, Engine};
use lifeboat_model::{BackupId, Manifest, Part, PartKind, SCHEMA_VERSION, tags};
use lifeboat_repo::{DirBackup, PartReport, Repository, StreamBackup};

use crate::consistent::capture_consistently;
use crate::stream::{BytesSource, ReaderSource};
use crate::tuning::Pacer;
use crate::{CoreError, Note};
use lifeboat_consistency::base_backup::BaseBackup;
use lifeboat_consistency::{ContainerLock, Mode, RepoGate};

/// What the user asked for, resolved.
#[derive(Debug, Clone)]
pub struct BackupRequest {
    /// Also save the image.
    pub with_image: bool,
    /// Where the host's root is mounted (`/` when Lifeboat runs on the host).
    pub host_root: PathBuf,
    /// Lifeboat's own state (locks), e.g. `/var/lib/lifeboat`.
    pub state_dir: PathBuf,
    /// This host's name (manifest and tags).
    pub hostname: String,
    /// Extra tags for every snapshot of this backup (e.g. `safety`).
    pub extra_tags: Vec<String>,
    /// Overrides the container's `lifeboat.mode` label.
    pub mode: Option<Mode>,
    /// What to do with an unhealthy, restarting or dead container.
    pub unhealthy: UnhealthyPolicy,
    /// Overrides the container's `lifeboat.strategy` label (a daemon policy's strategy).
    pub strategy: Option<lifeboat_model::Strategy>,
    /// Fingerprint of the daemon policy that asked for this backup, kept in the manifest.
    pub policy_sha256: Option<String>,
    /// The multi-container run this backup belongs to (manifest field and `run=` tag).
    pub run_id: Option<String>,
    /// The CPU and I/O priority the backup runs at (lowered unless asked otherwise).
    pub priority: crate::Priority,
    /// A run's parts of named volumes already stored by an earlier backup of the run: a
    /// volume several containers mount is read and stored once per run.
    pub run_parts: Option<RunParts>,
    /// Keep what is there, as it is (a recovery's forensic backup): a mount whose data is
    /// gone is a problem of a partial backup, not an error.
    pub as_found: bool,
}

/// The named-volume parts a run has stored, by (kind, volume name), shared by its backups.
pub type RunParts = std::sync::Arc<std::sync::Mutex<BTreeMap<(PartKind, String), Part>>>;

/// Whether a part is of a named volume (its data, its database copies or server settings).
fn of_volume(kind: PartKind, belongs_to: Option<PartKind>) -> bool {
    belongs_to.unwrap_or(kind) == PartKind::Volume
        && matches!(
            kind,
            PartKind::Volume | PartKind::Sqlite | PartKind::Settings | PartKind::Wal
        )
}

impl BackupRequest {
    /// A plain backup on this host: no image, no overrides, unhealthy containers skipped,
    /// lowered priority. Callers change what their user asked for.
    pub fn new(host_root: PathBuf, state_dir: PathBuf, hostname: String) -> BackupRequest {
        BackupRequest {
            with_image: false,
            host_root,
            state_dir,
            hostname,
            extra_tags: Vec::new(),
            mode: None,
            unhealthy: UnhealthyPolicy::Skip,
            strategy: None,
            policy_sha256: None,
            run_id: None,
            priority: crate::Priority::Lowered,
            run_parts: None,
            as_found: false,
        }
    }
}

/// The health gate: an unhealthy, restarting or dead container is not backed up by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnhealthyPolicy {
    /// Refuse it (the default).
    Skip,
    /// Wait up to this long for it to become healthy.
    Wait(std::time::Duration),
    /// Back it up as it is.
    Force,
}

/// What a backup stored.
#[derive(Debug, Clone)]
pub struct BackupOutcome {
    /// The manifest snapshot, which commits the backup.
    pub manifest_snapshot: String,
    /// The manifest written.
    pub manifest: Manifest,
    /// Parts left out on purpose (tmpfs, excluded), for the report.
    pub skipped: Vec<String>,
    /// Orphaned parts of earlier killed runs that were deleted.
    pub cleaned_orphans: usize,
}

/// Backs up container `name`. On error nothing new is listed and the parts already written
/// are deleted; on success with `manifest.partial`, some files could not be read.
pub fn backup_container(
    engine: &dyn Engine,
    repo: &dyn Repository,
    name: &str,
    req: &BackupRequest,
    note: Note<'_>,
) -> Result<BackupOutcome, CoreError> {
    // Every backup, whoever starts it, runs at the documented priority.
    let _priority = crate::tuning::PriorityGuard::enter(req.priority);
    let started_at = Timestamp::now();
    let info = engine.info()?;
    let details = engine
        .container(name)?
        .ok_or_else(|| CoreError::NoSuchContainer(name.to_string()))?;
    let _lock = ContainerLock::acquire(&req.state_dir, &details.name)?;
    // Shared with other backups, exclusive with a prune of the same repository.
    let _gate = RepoGate::shared(&req.state_dir, repo.id())?;
    // And shared with every host's (and restic's) backups, exclusive with their prunes.
    let _repo_lock = repo.lock_run(false)?;
    let mut details = crate::consistent::health_gate(engine, details, req.unhealthy, note)?;
    if let Some(s) = &req.strategy
        && details
            .config
            .label(lifeboat_model::labels::STRATEGY)
            .is_none()
    {
        // A policy's strategy acts as the label would, and is recorded with the config.
        details
            .config
            .labels
            .insert(lifeboat_model::labels::STRATEGY.into(), s.to_string());
    }
    let label = details.config.label(lifeboat_model::labels::MODE);
    let chosen = match (req.mode, label) {
        (Some(m), _) => Some(m),
        (None, Some(l)) => Some(Mode::parse(l)?),
        (None, None) => None, // automatic: hot when a database is found, else none
    };
    let hooks = lifeboat_consistency::Hooks::from_labels(&details.config)?;
    // Orphans are harmless: with a damaged snapshot file around (whose parts would look
    // orphaned) they are left for a later run, and the backup goes on.
    let cleaned_orphans = match delete_orphans(repo, &details.name, &req.hostname) {
        Err(CoreError::Repo(e @ lifeboat_repo::RepoError::UnreadableSnapshots { .. })) => {
            log::warn!("leaving earlier runs' parts in place: {e}");
            0
        }
        other => other?,
    };
    let mut gone = Vec::new();
    let mut capture = if req.as_found {
        let mut reachable = details.clone();
        reachable.mounts.retain(|m| {
            let here = m.kind == lifeboat_model::MountKind::Tmpfs
                || m.host_path.is_empty()
                || std::fs::symlink_metadata(lifeboat_capture::under_root(
                    &req.host_root,
                    &m.host_path,
                ))
                .is_ok();
            if !here {
                gone.push(format!(
                    "{}: its data is gone ({})",
                    m.destination, m.host_path
                ));
            }
            here
        });
        plan(&reachable, &req.host_root, req.with_image)?
    } else {
        plan(&details, &req.host_root, req.with_image)?
    };
    let hot = crate::hot::HotPlan::detect(&details, &capture.parts, &req.state_dir, chosen)?;
    let mode = chosen.unwrap_or(if hot.is_capable() {
        Mode::Hot
    } else {
        Mode::None
    });
    // While a database server runs on (hot mode), what is read for it (its dump, or its
    // files and those of its other mounts) is paced when the host is busy, unless the backup
    // runs at normal priority. Not in pause or stop mode: that would make the outage longer.
    let pacer = (mode == Mode::Hot && crate::tuning::is_lowered()).then(Pacer::new);
    let backup_id = BackupId::new(&details.name, started_at, &req.hostname);
    let base_tags = base_tags(&details, &backup_id, req);

    let mut written: Vec<String> = Vec::new();
    let staging = crate::hot::Staging::new(&req.state_dir, &details.name, &backup_id.0);
    // The compose project's files come along: without them a lost host gives back the
    // containers but nothing to manage them with.
    let mut compose = details.compose.clone();
    if let Some(info) = &mut compose {
        let found = crate::compose::discover(info, &req.host_root);
        info.depends_on = found.depends_on;
        if !found.files.is_empty() {
            let dir = staging.path().join("compose");
            crate::compose::stage(info, &found.files, &req.host_root, &dir)?;
            note(&format!(
                "{}: compose project files: {}",
                details.name,
                found.files.join(", ")
            ));
            capture.add_compose(dir);
        }
    }
    let result = capture_consistently(&details, mode, &hooks, &req.state_dir, engine, note, || {
        let mut base_backup = None;
        if mode == Mode::Hot {
            base_backup = hot.prepare(engine, &details, &mut capture, &staging, note)?;
        }
        let parts = &capture.parts;
        capture_parts(
            engine,
            repo,
            &details,
            parts,
            (&base_tags, req.run_parts.as_ref()),
            (
                &mut Reading {
                    pacer: pacer.clone(),
                    base_backup,
                },
                &mut written,
            ),
            note,
        )
    })
    .and_then(|(parts, mut problems)| {
        ensure_same_container(engine, &details)?;
        problems.extend(gone);
        let manifest = Manifest {
            schema_version: SCHEMA_VERSION,
            lifeboat_version: env!("CARGO_PKG_VERSION").to_string(),
            backup_id: backup_id.clone(),
            started_at,
            finished_at: Timestamp::now(),
            host: req.hostname.clone(),
            engine_version: info.version.clone(),
            engine_api_version: info.api_version.clone(),
            container_name: details.name.clone(),
            container_id: details.id.clone(),
            compose,
            config_sha256: details.config.fingerprint(),
            config: details.config.clone(),
            consistency: mode.as_str().to_string(),
            partial: !problems.is_empty(),
            problems,
            parts,
            policy_sha256: req.policy_sha256.clone(),
            run_id: req.run_id.clone(),
        };
        let id = commit_manifest(repo, &manifest, &base_tags)?;
        // Committed: later backups of the run may refer to its volume parts.
        if let Some(run) = &req.run_parts
            && let Ok(mut done) = run.lock()
        {
            for p in manifest
                .parts
                .iter()
                .filter(|p| of_volume(p.kind, p.belongs_to))
            {
                done.entry((p.kind, p.name.clone()))
                    .or_insert_with(|| p.clone());
            }
        }
        Ok((id, manifest))
    });
    match result {
        Ok((manifest_snapshot, manifest)) => Ok(BackupOutcome {
            manifest_snapshot,
            manifest,
            skipped: capture.skipped,
            cleaned_orphans,
        }),
        Err(e) => {
            if !written.is_empty() {
                note(&format!(
                    "backup failed; deleting {} stored part(s)",
                    written.len()
                ));
                if let Err(del) = repo.delete(&written) {
                    note(&format!("could not delete parts {written:?}: {del}"));
                }
            }
            Err(e)
        }
    }
}

/// Tags every snapshot of this backup carries.
fn base_tags(details: &ContainerDetails, backup_id: &BackupId, req: &BackupRequest) -> Vec<String> {
    let mut out = vec![
        tags::LIFEBOAT.to_string(),
        tags::container(&details.name),
        tags::backup(&backup_id.0),
        tags::host(&req.hostname),
    ];
    if let Some(c) = &details.compose {
        out.push(tags::project(&c.project));
    }
    if let Some(run) = &req.run_id {
        out.push(tags::run(run));
    }
    out.extend(req.extra_tags.iter().cloned());
    out
}

/// Writes the manifest snapshot, which commits the backup; returns its id.
fn commit_manifest(
    repo: &dyn Repository,
    manifest: &Manifest,
    base_tags: &[String],
) -> Result<String, CoreError> {
    let mut manifest_tags = base_tags.to_vec();
    manifest_tags.push(tags::MANIFEST.to_string());
    let json = manifest.to_json();
    let req = StreamBackup {
        path: MANIFEST_SNAPSHOT_PATH,
        tags: &manifest_tags,
        description: Some(json.clone()),
        time: None,
    };
    Ok(repo
        .backup_stream(&req, &mut BytesSource(json.into_bytes()))?
        .snapshot_id)
}

/// What stays open while a backup's parts are read: the pacing shared by its readers, and
/// the server's base backup that the `wal` part ends.
struct Reading {
    pacer: Option<Arc<Pacer>>,
    base_backup: Option<BaseBackup>,
}

fn capture_parts(
    engine: &dyn Engine,
    repo: &dyn Repository,
    details: &ContainerDetails,
    parts: &[PlannedPart],
    (base_tags, run_parts): (&[String], Option<&RunParts>),
    (reading, written): (&mut Reading, &mut Vec<String>),
    note: Note<'_>,
) -> Result<(Vec<Part>, Vec<String>), CoreError> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for part in parts {
        if of_volume(part.kind, part.belongs_to)
            && let Some(done) =
                run_parts.and_then(|r| r.lock().ok()?.get(&(part.kind, part.name.clone())).cloned())
        {
            note(&format!(
                "{} {}: {} (stored once for the run, by an earlier backup)",
                details.name,
                part.kind.as_str(),
                part.name
            ));
            out.push(done);
            continue;
        }
        note(&format!(
            "{} {}: {}",
            details.name,
            part.kind.as_str(),
            part.name
        ));
        let mut tags = base_tags.to_vec();
        tags.push(tags::part(part.kind));
        let mut recorded_name = part.name.clone();
        let report: PartReport = match part.kind {
            PartKind::Layer if part.read_path.as_os_str().is_empty() => {
                let (image, report) = layer_by_commit(engine, repo, details, part, &tags, note)?;
                recorded_name = format!("{}:{image}", lifeboat_capture::LAYER_BY_COMMIT);
                report
            }
            PartKind::Sqlite => crate::hot::store_databases(repo, part, &tags, note)?,
            PartKind::Wal => {
                let backup = reading.base_backup.as_mut().ok_or_else(|| {
                    CoreError::Hot(format!("no base backup open for the {} part", part.name))
                })?;
                crate::base_copy::store(repo, part, backup, &tags, note)?
            }
            PartKind::Volume
            | PartKind::Bind
            | PartKind::Settings
            | PartKind::Compose
            | PartKind::Layer => repo.backup_dir(&DirBackup {
                source: &part.read_path,
                as_path: &part.snapshot_path,
                tags: &tags,
                description: None,
                exclude: &part.exclude,
                // The files of a running service's mounts; not its image or settings.
                pace: reading
                    .pacer
                    .as_ref()
                    .filter(|_| matches!(part.kind, PartKind::Volume | PartKind::Bind))
                    .map(|p| p.clone() as Arc<dyn lifeboat_repo::Pace>),
            })?,
            PartKind::Dump => crate::dump::store(
                engine,
                repo,
                details,
                part,
                &tags,
                reading.pacer.as_ref(),
                note,
            )?,
            PartKind::Image => {
                // Export by reference so that loading restores the tag; by ID when the tag
                // has since moved to another image.
                let cfg = &details.config;
                let by_name = engine
                    .image_id(&cfg.image)?
                    .is_some_and(|id| id == cfg.image_id);
                let reader =
                    engine.export_image(if by_name { &cfg.image } else { &cfg.image_id })?;
                repo.backup_stream(
                    &StreamBackup {
                        path: &part.snapshot_path,
                        tags: &tags,
                        description: Some(details.config.image.clone()),
                        time: None,
                    },
                    &mut ReaderSource(Some(reader)),
                )?
            }
        };
        written.push(report.snapshot_id.clone());
        problems.extend(
            report
                .unreadable
                .iter()
                .map(|p| format!("{}: {p}", part.name)),
        );
        out.push(Part {
            kind: part.kind,
            name: recorded_name,
            belongs_to: part.belongs_to,
            snapshot_path: part.snapshot_path.clone(),
            snapshot_id: report.snapshot_id,
            files: report.files,
            dirs: report.dirs,
            bytes: report.bytes,
            added_bytes: report.added_bytes,
        });
    }
    Ok((out, problems))
}

/// A backup of a container that was removed (or replaced) while its data was read is not a
/// backup of anything that exists: refuse to commit it.
fn ensure_same_container(engine: &dyn Engine, details: &ContainerDetails) -> Result<(), CoreError> {
    match engine.container(&details.id)? {
        Some(now) if now.id == details.id => Ok(()),
        _ => Err(CoreError::ContainerVanished {
            name: details.name.clone(),
        }),
    }
}

/// The writable layer where the storage driver shows no upper directory: committed as an
/// image through the engine, saved into the repository, and the image removed again.
/// Returns the committed image's id (the restore creates the container from it).
fn layer_by_commit(
    engine: &dyn Engine,
    repo: &dyn Repository,
    details: &ContainerDetails,
    part: &PlannedPart,
    tags: &[String],
    note: Note<'_>,
) -> Result<(String, PartReport), CoreError> {
    note(&format!(
        "{}: the storage driver shows no writable layer; capturing it through the engine \
         (docker commit, then save: the image's own layers come along, deduplicated)",
        details.name
    ));
    let image = engine.commit_container(&details.id)?;
    let stored = engine
        .export_image(&image)
        .map_err(CoreError::from)
        .and_then(|reader| {
            Ok(repo.backup_stream(
                &StreamBackup {
                    path: &part.snapshot_path,
                    tags,
                    description: Some(image.clone()),
                    time: None,
                },
                &mut ReaderSource(Some(reader)),
            )?)
        });
    if let Err(e) = engine.remove_image(&image) {
        note(&format!(
            "could not remove the committed image {image}: {e}"
        ));
    }
    Ok((image, stored?))
}

/// Deletes parts of earlier runs on this host that never got a manifest (killed runs).
/// Safe because the caller holds the container's lock: no live run of it can own them.
fn delete_orphans(repo: &dyn Repository, container: &str, host: &str) -> Result<usize, CoreError> {
    let want = [
        tags::LIFEBOAT.to_string(),
        tags::container(container),
        tags::host(host),
    ];
    let snaps = repo.snapshots(&want)?;
    let committed: BTreeSet<&str> = snaps
        .iter()
        .filter(|s| s.tags.iter().any(|t| t == tags::MANIFEST))
        .filter_map(|s| tags::value(&s.tags, "backup"))
        .collect();
    let candidates: Vec<String> = snaps
        .iter()
        .filter(|s| tags::value(&s.tags, "backup").is_some_and(|b| !committed.contains(b)))
        .map(|s| s.id.clone())
        .collect();
    if candidates.is_empty() {
        return Ok(0);
    }
    // A part a committed backup refers to is never an orphan, whichever backup it is
    // tagged with (a volume shared in a run). Read only when there are candidates: it lists
    // every manifest of the repository.
    let referenced = crate::catalog::referenced_parts(repo)?;
    let orphans: Vec<String> = candidates
        .into_iter()
        .filter(|id| !referenced.contains(id))
        .collect();
    if !orphans.is_empty() {
        repo.delete(&orphans)?;
    }
    Ok(orphans.len())
}
