//! `restore`: rebuild a container, its volumes and bind mounts from a backup. Refuses to
//! overwrite anything unless forced, and then only after a safety backup of what it replaces.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use lifeboat_capture::{IMAGE_SNAPSHOT_PATH, under_root};
use lifeboat_docker::Engine;
use lifeboat_model::{ContainerConfig, Manifest, MountKind, Part, PartKind, names};
use lifeboat_repo::Repository;

use crate::backup::{BackupRequest, backup_container};
use crate::catalog::find_backup;
use crate::{CoreError, Note};

/// What the user asked a restore to do.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    /// This backup (snapshot or backup id, a prefix is enough).
    pub snapshot: Option<String>,
    /// The newest backup at or before this time.
    pub at: Option<Timestamp>,
    /// Restore side by side under this name (volumes and bind paths renamed too).
    pub as_name: Option<String>,
    /// Replace what exists, after a safety backup of it.
    pub force: bool,
    /// A drill's sandbox: with `as_name`, the copy joins only this (internal) network, under
    /// its original name and compose service as aliases, with no published ports.
    pub sandbox_network: Option<String>,
    /// Check and describe, change nothing.
    pub dry_run: bool,
    /// How long to wait for a healthcheck to pass.
    pub health_timeout: Duration,
    /// Used for the safety backup taken by `--force`.
    pub backup: BackupRequest,
    /// Named volumes another restore of the same stack restores (by original name, with the
    /// name they are restored under): this restore mounts them and restores nothing of them.
    pub shared_volumes: BTreeMap<String, String>,
    /// Put the compose project's files back (a stack does it once for all its services; a
    /// drill never does).
    pub compose_files: bool,
    /// Write the compose project's files under this directory instead of their own paths.
    pub files_to: Option<PathBuf>,
    /// Asked before each container is started (a cluster's fence).
    pub gate: Gate,
    /// Choose among every host's backups, not only this host's (a failover restores what
    /// the dead host backed up).
    pub any_host: bool,
}

/// A check asked before an irreversible step, such as starting a container a cluster's
/// leader assigned here; an `Err` (why) stops the restore before that step.
#[derive(Clone, Default)]
pub struct Gate(Option<std::sync::Arc<dyn Fn() -> Result<(), String> + Send + Sync>>);

impl Gate {
    /// A gate asking `check`.
    pub fn new(check: impl Fn() -> Result<(), String> + Send + Sync + 'static) -> Gate {
        Gate(Some(std::sync::Arc::new(check)))
    }

    /// Ok to take `step`, else why not.
    pub fn check(&self, step: &str) -> Result<(), CoreError> {
        match &self.0 {
            Some(check) => check().map_err(|why| {
                CoreError::Repo(lifeboat_repo::RepoError::Withdrawn {
                    step: step.to_string(),
                    why,
                })
            }),
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Gate(set)"
        } else {
            "Gate(none)"
        })
    }
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreOutcome {
    /// The container restored (its new name with `--as`).
    pub container: String,
    /// Its id.
    pub container_id: String,
    /// The manifest snapshot restored.
    pub from_snapshot: String,
    /// The backup restored.
    pub backup_id: String,
    /// Manifest snapshot of the safety backup taken before replacing things (`--force`).
    pub safety_snapshot: Option<String>,
    /// Volumes restored.
    pub volumes: Vec<String>,
    /// Bind paths restored.
    pub binds: Vec<String>,
    /// The image came from the backup.
    pub image_loaded: bool,
    /// The container was started.
    pub started: bool,
    /// Its health at the end, when it has a healthcheck.
    pub health: Option<String>,
    /// How long it took.
    pub seconds: f64,
    /// True when nothing was changed (`--dry-run`); `actions` says what would happen.
    pub dry_run: bool,
    /// What a dry run would do, step by step.
    pub actions: Vec<String>,
}

/// Where each part goes on this host.
struct Target {
    part: Part,
    /// Volume name or bind host path after `--as` renaming.
    name: String,
}

impl RestoreRequest {
    /// The newest backup, in place, nothing forced, the compose files put back, a 120 s
    /// health wait. Callers change what their user asked for.
    pub fn new(backup: BackupRequest) -> RestoreRequest {
        RestoreRequest {
            snapshot: None,
            at: None,
            as_name: None,
            force: false,
            sandbox_network: None,
            dry_run: false,
            health_timeout: Duration::from_secs(120),
            backup,
            shared_volumes: BTreeMap::new(),
            compose_files: true,
            files_to: None,
            gate: Gate::default(),
            any_host: false,
        }
    }
}

/// A volume's name in a copy restored `--as` (or into a drill's sandbox).
pub(crate) fn renamed_volume(volume: &str, as_name: Option<&str>) -> String {
    match as_name {
        Some(n) => format!("{n}_{volume}"),
        None => volume.to_string(),
    }
}

/// A bind path's host path in a copy restored `--as` (or into a drill's sandbox).
pub(crate) fn renamed_bind(path: &str, as_name: Option<&str>) -> String {
    match as_name {
        Some(n) => format!("{}-{n}", path.trim_end_matches('/')),
        None => path.to_string(),
    }
}

fn dir_is_empty(path: &Path) -> bool {
    match std::fs::symlink_metadata(path) {
        Err(_) => true,
        Ok(m) if m.is_dir() => std::fs::read_dir(path)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false),
        Ok(_) => false,
    }
}

/// What a restore will do, checked before anything is touched.
struct Plan {
    snapshot_id: String,
    manifest: Manifest,
    target_name: String,
    targets: Vec<Target>,
    container_exists: bool,
    /// What would be overwritten (empty when nothing is).
    occupied: Vec<String>,
    image_part: Option<Part>,
    image_present: bool,
    /// The image is missing by name and not saved, but present by ID: create from the ID.
    use_image_id: bool,
    /// Volumes mounted from another restore of the stack (see [`RestoreRequest`]).
    shared_volumes: BTreeMap<String, String>,
    /// Where the host's root is mounted here.
    host_root: PathBuf,
}

impl Plan {
    /// The steps, in order, for `--dry-run`.
    fn actions(&self, as_name: Option<&str>) -> Vec<String> {
        let mut out = Vec::new();
        if !self.occupied.is_empty() {
            out.push(format!(
                "take a safety backup of what is replaced: {}",
                self.occupied.join("; ")
            ));
        }
        if self.container_exists {
            out.push(format!("remove container {}", self.target_name));
        }
        for t in &self.targets {
            out.push(format!(
                "restore {} {} ({} bytes)",
                t.part.kind.as_str(),
                t.name,
                t.part.bytes
            ));
        }
        if !self.image_present && self.image_part.is_some() {
            out.push(format!(
                "load image {} from the backup",
                self.manifest.config.image
            ));
        }
        let config = restored_config(&self.manifest, as_name, &self.shared_volumes);
        out.push(format!(
            "create container {} from image {}",
            self.target_name, config.image
        ));
        if config.was_running {
            out.push(format!(
                "start {} and wait for its healthcheck",
                self.target_name
            ));
        }
        out
    }
}

fn plan(
    engine: &dyn Engine,
    repo: &dyn Repository,
    name: &str,
    req: &RestoreRequest,
) -> Result<Plan, CoreError> {
    names::container_name(name)?;
    if let Some(s) = &req.snapshot {
        names::snapshot_selector(s)?;
    }
    if let Some(a) = &req.as_name {
        names::container_name(a)?;
    }
    let entry = find_backup(
        repo,
        name,
        (!req.any_host).then_some(req.backup.hostname.as_str()),
        req.snapshot.as_deref(),
        req.at,
    )?;
    check_manifest_names(&entry.manifest).map_err(|error| CoreError::HostileManifest {
        snapshot: entry.snapshot_id.clone(),
        error,
    })?;
    let manifest = entry.manifest;
    let as_name = req.as_name.as_deref();
    let target_name = as_name.unwrap_or(&manifest.container_name).to_string();
    let shared = |p: &Part| {
        p.belongs_to.unwrap_or(p.kind) == PartKind::Volume
            && req.shared_volumes.contains_key(&p.name)
    };
    let targets: Vec<Target> = manifest
        .parts
        .iter()
        .filter(|p| {
            !matches!(
                p.kind,
                PartKind::Image
                    | PartKind::Dump
                    | PartKind::Settings
                    | PartKind::Compose
                    | PartKind::Layer
            ) && !shared(p)
        })
        .map(|p| Target {
            part: p.clone(),
            name: match p.belongs_to.unwrap_or(p.kind) {
                PartKind::Bind => renamed_bind(&p.name, as_name),
                _ => renamed_volume(&p.name, as_name),
            },
        })
        .collect();
    // Database copies and a data directory's log go in after the files of their mount.
    let mut targets = targets;
    targets.sort_by_key(|t| t.part.kind.is_overlay());
    let mut occupied = Vec::new();
    let container_exists = engine.container(&target_name)?.is_some();
    if container_exists {
        occupied.push(format!("container `{target_name}` exists"));
    }
    for t in targets.iter().filter(|t| !t.part.kind.is_overlay()) {
        let path = host_path_of(engine, t, &req.backup.host_root)?;
        if let Some(path) = path.filter(|p| !dir_is_empty(p)) {
            let kind = t.part.kind.as_str();
            occupied.push(format!(
                "{kind} `{}` is not empty ({})",
                t.name,
                path.display()
            ));
        }
    }
    let image_part = manifest
        .parts
        .iter()
        .find(|p| p.kind == PartKind::Image)
        .cloned();
    let image_present = engine.image_present(&manifest.config.image)?;
    let use_image_id = !image_present
        && image_part.is_none()
        && !manifest.config.image_id.is_empty()
        && engine.image_present(&manifest.config.image_id)?;
    if !image_present && image_part.is_none() && !use_image_id {
        return Err(CoreError::ImageMissing {
            image: manifest.config.image.clone(),
        });
    }
    if !occupied.is_empty() && !req.force {
        return Err(CoreError::Refused {
            what: occupied.join("; "),
            hint: format!(
                "restore side by side with `--as {target_name}-restored`, or replace with \
                 `--force` (a safety backup of what is replaced is taken first)"
            ),
        });
    }
    Ok(Plan {
        snapshot_id: entry.snapshot_id,
        manifest,
        target_name,
        targets,
        container_exists,
        occupied,
        image_part,
        image_present,
        use_image_id,
        shared_volumes: req.shared_volumes.clone(),
        host_root: req.backup.host_root.clone(),
    })
}

/// Every name in a manifest that becomes an engine object or a host path: a manifest is
/// read from the repository, so it is checked like any other input before it is used.
fn check_manifest_names(m: &Manifest) -> Result<(), names::NameError> {
    names::container_name(&m.container_name)?;
    for p in &m.parts {
        match p.belongs_to.unwrap_or(p.kind) {
            PartKind::Bind => names::bind_path(&p.name)?,
            PartKind::Volume => names::volume_name(&p.name)?,
            _ => {}
        }
    }
    for mount in &m.config.mounts {
        match mount.kind {
            MountKind::Bind => names::bind_path(&mount.source)?,
            MountKind::Volume => names::volume_name(&mount.source)?,
            MountKind::Tmpfs => {}
        }
    }
    Ok(())
}

/// Restores container `name` as described by `req`. Refusals happen before any change.
pub fn restore_container(
    engine: &dyn Engine,
    repo: &dyn Repository,
    name: &str,
    req: &RestoreRequest,
    note: Note<'_>,
) -> Result<RestoreOutcome, CoreError> {
    let t0 = Instant::now();
    // One restore to a name at a time; what a killed one left half done there is removed
    // first (drills restore into sandboxes of their own, torn down by the next drill).
    let state_dir = &req.backup.state_dir;
    let target = req.as_name.as_deref().unwrap_or(name);
    let guarded = !req.dry_run && req.sandbox_network.is_none();
    let _lock = guarded
        .then(|| crate::restore_intent::lock(state_dir, target))
        .transpose()?;
    if guarded {
        crate::restore_intent::finish_interrupted(engine, state_dir, target, note)?;
    }
    let plan = plan(engine, repo, name, req)?;
    let mut outcome = RestoreOutcome {
        container: plan.target_name.clone(),
        container_id: String::new(),
        from_snapshot: plan.snapshot_id.clone(),
        backup_id: plan.manifest.backup_id.0.clone(),
        safety_snapshot: None,
        volumes: Vec::new(),
        binds: Vec::new(),
        image_loaded: false,
        started: false,
        health: None,
        seconds: 0.0,
        dry_run: req.dry_run,
        actions: plan.actions(req.as_name.as_deref()),
    };
    if req.dry_run {
        return Ok(outcome);
    }
    if !plan.occupied.is_empty() {
        outcome.safety_snapshot = safety_backup(engine, repo, &plan, req, note)?;
        if plan.container_exists {
            note(&format!("removing container {}", plan.target_name));
            engine.remove_container(&plan.target_name)?;
        }
    }
    if req.compose_files
        && let Some(part) = plan
            .manifest
            .parts
            .iter()
            .find(|p| p.kind == PartKind::Compose)
    {
        let host_root = &req.backup.host_root;
        let to = req.files_to.as_deref();
        let info = plan.manifest.compose.as_ref();
        crate::compose::put_back(repo, part, info, host_root, to, req.force, note)?;
    }
    // The volumes this run creates: removed again, with the container, when it fails before
    // the container starts (damaged data, a tree no index lists, a full disk), so nothing
    // half-restored stands under the target's name.
    let mut fresh = Vec::new();
    for t in plan
        .targets
        .iter()
        .filter(|t| t.part.kind == PartKind::Volume)
    {
        if engine.volume(&t.name)?.is_none() && !fresh.contains(&t.name) {
            fresh.push(t.name.clone());
        }
    }
    let intent = guarded
        .then(|| crate::restore_intent::record(state_dir, &plan.target_name, &fresh))
        .transpose()?;
    let done = restore_data(engine, repo, &plan, req, &mut outcome, note)
        .and_then(|()| create_and_start(engine, repo, &plan, req, &mut outcome, note));
    if done.is_err() && !outcome.started {
        let created = !outcome.container_id.is_empty();
        crate::restore_intent::remove_created(engine, &plan.target_name, created, &fresh, note);
    }
    if let Some(path) = intent {
        crate::restore_intent::clear(&path);
    }
    done?;
    outcome.seconds = t0.elapsed().as_secs_f64();
    Ok(outcome)
}

fn restore_data(
    engine: &dyn Engine,
    repo: &dyn Repository,
    plan: &Plan,
    req: &RestoreRequest,
    outcome: &mut RestoreOutcome,
    note: Note<'_>,
) -> Result<(), CoreError> {
    for t in &plan.targets {
        let dest = if t.part.kind.is_overlay() {
            // Into the mount restored just before (its live database files were left out).
            host_path_of(engine, t, &req.backup.host_root)?.ok_or_else(|| CoreError::Refused {
                what: format!("volume `{}` for the database copies is missing", t.name),
                hint: "the backup is incomplete; restore an earlier one".into(),
            })?
        } else {
            prepare_destination(engine, t, &plan.manifest, &req.backup.host_root, req.force)?
        };
        note(&format!(
            "restoring {} {} ({} bytes)",
            t.part.kind.as_str(),
            t.name,
            t.part.bytes
        ));
        repo.restore_dir(&t.part.snapshot_id, &t.part.snapshot_path, &dest)?;
        match t.part.kind {
            PartKind::Bind => outcome.binds.push(t.name.clone()),
            PartKind::Volume => outcome.volumes.push(t.name.clone()),
            _ => {}
        }
    }
    if !plan.image_present
        && let Some(part) = &plan.image_part
    {
        note(&format!(
            "loading image {} from the backup",
            plan.manifest.config.image
        ));
        load_image(engine, repo, part)?;
        outcome.image_loaded = true;
    }
    Ok(())
}

fn create_and_start(
    engine: &dyn Engine,
    repo: &dyn Repository,
    plan: &Plan,
    req: &RestoreRequest,
    outcome: &mut RestoreOutcome,
    note: Note<'_>,
) -> Result<(), CoreError> {
    let name = &plan.target_name;
    let mut config = restored_config(&plan.manifest, req.as_name.as_deref(), &req.shared_volumes);
    if let Some(net) = &req.sandbox_network {
        sandbox_config(&mut config, &plan.manifest, net);
    }
    if plan.use_image_id {
        note(&format!(
            "image {} not found by name; using it by ID {}",
            config.image, config.image_id
        ));
        config.image = config.image_id.clone();
    }
    for net in &config.networks {
        if !is_builtin_network(&net.name) && engine.network_driver(&net.name)?.is_none() {
            note(&format!("creating network {}", net.name));
            engine.create_network(&net.name, &net.driver)?;
        }
    }
    if let Some(image) = load_committed_layer(engine, repo, plan, note)? {
        // The committed image holds the layer; the configuration keeps its image name as
        // a label for the record.
        note(&format!(
            "{name}: created from its committed layer {image} (image {})",
            config.image
        ));
        config.image = image;
    }
    note(&format!("creating container {name}"));
    outcome.container_id = engine.create_container(name, &config)?;
    for net in config.networks.iter().skip(1) {
        engine.connect_network(name, net)?;
    }
    restore_layer(engine, repo, plan, name, note)?;
    if config.was_running {
        req.gate.check(&format!("starting {name}"))?;
        engine.start_container(name)?;
        outcome.started = true;
        let parts = &plan.manifest.parts;
        crate::dump::load(engine, repo, name, &config, parts, req.health_timeout, note)?;
        apply_settings(engine, repo, plan, req, name, &config, note)?;
        if config.healthcheck.is_some() {
            note(&format!("waiting for {name} to become healthy"));
            outcome.health = Some(wait_healthy(engine, name, req.health_timeout)?);
        }
    }
    Ok(())
}

/// A layer captured through the engine (`docker commit`): restored as the image the new
/// container is created from.
fn is_commit(p: &Part) -> bool {
    p.name
        .starts_with(&format!("{}:", lifeboat_capture::LAYER_BY_COMMIT))
}

/// Loads a committed layer's image before the container is created; returns its id.
fn load_committed_layer(
    engine: &dyn Engine,
    repo: &dyn Repository,
    plan: &Plan,
    note: Note<'_>,
) -> Result<Option<String>, CoreError> {
    let Some(part) = plan
        .manifest
        .parts
        .iter()
        .find(|p| p.kind == PartKind::Layer && is_commit(p))
    else {
        return Ok(None);
    };
    let image = part
        .name
        .split_once(':')
        .map(|(_, id)| id.to_string())
        .unwrap_or_default();
    if !engine.image_present(&image)? {
        note(&format!(
            "loading the committed writable layer ({} bytes)",
            part.bytes
        ));
        crate::stream::from_repository(repo, &part.snapshot_id, &part.snapshot_path, |tar| {
            engine.import_image(tar)
        })?;
    }
    Ok(Some(image))
}

/// Fills the new container's writable layer from the backup, before it first starts (the
/// layer is only mounted while the container runs).
fn restore_layer(
    engine: &dyn Engine,
    repo: &dyn Repository,
    plan: &Plan,
    name: &str,
    note: Note<'_>,
) -> Result<(), CoreError> {
    let Some(part) = plan
        .manifest
        .parts
        .iter()
        .find(|p| p.kind == PartKind::Layer && !is_commit(p))
    else {
        return Ok(());
    };
    let created = engine
        .container(name)?
        .ok_or_else(|| CoreError::ContainerVanished {
            name: name.to_string(),
        })?;
    let Some(layer) = created.layer else {
        note(&format!(
            "{name}: this engine's storage driver exposes no writable layer; the layer of the \
             backup is not restored"
        ));
        return Ok(());
    };
    note(&format!(
        "{name}: restoring its writable layer ({} bytes)",
        part.bytes
    ));
    let upper = lifeboat_capture::under_root(&plan.host_root, &layer.upper);
    repo.restore_dir(&part.snapshot_id, &part.snapshot_path, &upper)?;
    Ok(())
}

/// Puts a hot database server's settings files back into its restored data directory, once
/// its dump is loaded (a fresh data directory must be empty when the server initialises it),
/// then restarts the container so every setting and access rule applies.
fn apply_settings(
    engine: &dyn Engine,
    repo: &dyn Repository,
    plan: &Plan,
    req: &RestoreRequest,
    name: &str,
    config: &ContainerConfig,
    note: Note<'_>,
) -> Result<(), CoreError> {
    let settings: Vec<&Part> = plan
        .manifest
        .parts
        .iter()
        .filter(|p| p.kind == PartKind::Settings)
        .collect();
    if settings.is_empty() {
        return Ok(());
    }
    let as_name = req.as_name.as_deref();
    for part in settings {
        let t = Target {
            part: part.clone(),
            name: match part.belongs_to.unwrap_or(PartKind::Volume) {
                PartKind::Bind => renamed_bind(&part.name, as_name),
                _ => req
                    .shared_volumes
                    .get(&part.name)
                    .cloned()
                    .unwrap_or_else(|| renamed_volume(&part.name, as_name)),
            },
        };
        let dest =
            host_path_of(engine, &t, &req.backup.host_root)?.ok_or_else(|| CoreError::Refused {
                what: format!("the mount `{}` for the server settings is missing", t.name),
                hint: "the backup is incomplete; restore an earlier one".into(),
            })?;
        note(&format!("putting back the server settings in {}", t.name));
        repo.restore_dir(&part.snapshot_id, &part.snapshot_path, &dest)?;
    }
    note(&format!("restarting {name} with its own settings"));
    engine.stop_container(name, 10)?;
    engine.start_container(name)?;
    crate::dump::wait_for_server(engine, name, config, req.health_timeout, note)
}

pub(crate) fn is_builtin_network(name: &str) -> bool {
    matches!(name, "bridge" | "host" | "none") || name.starts_with("container:")
}

/// The host path holding a target's data now, if the volume or path exists.
fn host_path_of(
    engine: &dyn Engine,
    t: &Target,
    host_root: &Path,
) -> Result<Option<PathBuf>, CoreError> {
    Ok(match t.part.belongs_to.unwrap_or(t.part.kind) {
        PartKind::Bind => Some(under_root(host_root, &t.name)),
        _ => engine
            .volume(&t.name)?
            .map(|v| under_root(host_root, &v.mountpoint)),
    })
}

/// Makes the target empty and ready (creating the volume), returning the directory (or file
/// path, for a single-file bind) to restore into.
fn prepare_destination(
    engine: &dyn Engine,
    t: &Target,
    manifest: &Manifest,
    host_root: &Path,
    force: bool,
) -> Result<PathBuf, CoreError> {
    match t.part.kind {
        PartKind::Bind => {
            let path = under_root(host_root, &t.name);
            if force && !dir_is_empty(&path) {
                remove_path(&path)?;
            }
            Ok(path)
        }
        _ => {
            let spec = manifest
                .config
                .mounts
                .iter()
                .find(|m| m.kind == MountKind::Volume && m.source == t.part.name);
            let (driver, labels) = spec
                .map(|m| (m.driver.clone(), m.volume_labels.clone()))
                .unwrap_or_default();
            if let Some(v) = engine.volume(&t.name)? {
                let path = under_root(host_root, &v.mountpoint);
                if dir_is_empty(&path) {
                    return Ok(path);
                }
                if !force {
                    return Err(CoreError::Refused {
                        what: format!("volume `{}` is not empty", t.name),
                        hint: "use --force or --as".into(),
                    });
                }
                engine.remove_volume(&t.name)?;
            }
            let v = engine.create_volume(&t.name, &driver, &labels)?;
            Ok(under_root(host_root, &v.mountpoint))
        }
    }
}

fn remove_path(path: &Path) -> Result<(), CoreError> {
    let meta =
        std::fs::symlink_metadata(path).map_err(CoreError::io("inspecting", path.display()))?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(CoreError::io("listing", path.display()))? {
            let p = entry
                .map_err(CoreError::io("listing", path.display()))?
                .path();
            let m =
                std::fs::symlink_metadata(&p).map_err(CoreError::io("inspecting", p.display()))?;
            if m.is_dir() {
                std::fs::remove_dir_all(&p).map_err(CoreError::io("removing", p.display()))?;
            } else {
                std::fs::remove_file(&p).map_err(CoreError::io("removing", p.display()))?;
            }
        }
        Ok(())
    } else {
        std::fs::remove_file(path).map_err(CoreError::io("removing", path.display()))
    }
}

/// Backs up what `--force` is about to replace. Returns the manifest snapshot id when the
/// replaced container was backed up.
fn safety_backup(
    engine: &dyn Engine,
    repo: &dyn Repository,
    plan: &Plan,
    req: &RestoreRequest,
    note: Note<'_>,
) -> Result<Option<String>, CoreError> {
    let mut backup = req.backup.clone();
    backup.extra_tags.push(lifeboat_model::tags::SAFETY.into());
    backup.with_image = false;
    // What is about to be replaced is captured as it is, healthy or not.
    backup.unhealthy = crate::UnhealthyPolicy::Force;
    if plan.container_exists {
        note(&format!(
            "taking a safety backup of {} before replacing it",
            plan.target_name
        ));
        let out = backup_container(engine, repo, &plan.target_name, &backup, note)?;
        return Ok(Some(out.manifest_snapshot));
    }
    for t in plan.targets.iter().filter(|t| !t.part.kind.is_overlay()) {
        let Some(path) =
            host_path_of(engine, t, &req.backup.host_root)?.filter(|p| !dir_is_empty(p))
        else {
            continue;
        };
        note(&format!(
            "taking a safety snapshot of {} before replacing it",
            t.name
        ));
        let tags = vec![
            lifeboat_model::tags::LIFEBOAT.to_string(),
            lifeboat_model::tags::SAFETY.to_string(),
            lifeboat_model::tags::part(t.part.kind),
            format!("replaced={}", t.name),
        ];
        repo.backup_dir(&lifeboat_repo::DirBackup {
            source: &path,
            as_path: &t.part.snapshot_path,
            tags: &tags,
            description: None,
            exclude: &[],
            pace: None,
        })?;
    }
    Ok(None)
}

/// The configuration to create: the saved one, with `--as` renames applied. A side-by-side
/// copy must not steal the original's traffic or names: its published ports get free host
/// ports, its network aliases and compose labels are dropped.
fn restored_config(
    manifest: &Manifest,
    as_name: Option<&str>,
    shared: &BTreeMap<String, String>,
) -> ContainerConfig {
    let mut config = manifest.config.clone();
    for m in &mut config.mounts {
        match m.kind {
            MountKind::Volume => {
                m.source = shared
                    .get(&m.source)
                    .cloned()
                    .unwrap_or_else(|| renamed_volume(&m.source, as_name))
            }
            MountKind::Bind => m.source = renamed_bind(&m.source, as_name),
            MountKind::Tmpfs => {}
        }
    }
    if as_name.is_some() {
        config.hostname.clear();
        for bindings in config.port_bindings.values_mut() {
            for b in bindings.iter_mut() {
                b.host_port.clear();
            }
        }
        for net in &mut config.networks {
            net.aliases.clear();
        }
        config
            .labels
            .retain(|k, _| !k.starts_with("com.docker.compose."));
    }
    config
}

/// Confines a drill's copy: one internal network where it answers to its production names
/// (so its dependents find it), no published ports, no restart policy, and labels that keep
/// daemons away from it.
fn sandbox_config(config: &mut ContainerConfig, manifest: &Manifest, network: &str) {
    let mut aliases = vec![manifest.container_name.clone()];
    if let Some(c) = &manifest.compose {
        aliases.push(c.service.clone());
    }
    config.networks = vec![lifeboat_model::NetworkAttachment {
        name: network.to_string(),
        aliases,
        driver: "bridge".into(),
    }];
    config.port_bindings.clear();
    config.restart_policy = Default::default();
    // Links point at production containers; the sandbox's aliases stand in for them.
    config.links.clear();
    // A daemon must never manage (back up, drill, alert on) a drill's copy.
    config
        .labels
        .insert(lifeboat_model::labels::ENABLE.into(), "false".into());
    config
        .labels
        .insert(lifeboat_model::labels::SANDBOX.into(), network.to_string());
}

fn load_image(engine: &dyn Engine, repo: &dyn Repository, part: &Part) -> Result<(), CoreError> {
    crate::stream::from_repository(repo, &part.snapshot_id, IMAGE_SNAPSHOT_PATH, |tar| {
        engine.import_image(tar)
    })
}

/// Polls the container's health with exponential backoff (0.25 s doubling to 5 s).
fn wait_healthy(engine: &dyn Engine, name: &str, timeout: Duration) -> Result<String, CoreError> {
    use crate::wait::{Backoff, Poll, poll_until};
    let backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
    let waited = poll_until(Instant::now() + timeout, backoff, || {
        let found = engine.container(name)?;
        if let Some(c) = &found {
            crate::wait::unless_ended(engine, c)?;
        }
        Ok::<_, CoreError>(match found {
            Some(c) if c.state.health == Some(lifeboat_model::Health::Healthy) => {
                Poll::Ready(c.state.describe().to_string())
            }
            Some(c) => Poll::Pending(c.state.describe().to_string()),
            None => Poll::Pending("unknown".to_string()),
        })
    })?;
    waited.map_err(|status| CoreError::Unhealthy {
        name: name.to_string(),
        seconds: timeout.as_secs(),
        status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_by_side_names_never_collide_with_the_original() {
        assert_eq!(renamed_volume("data", Some("web2")), "web2_data");
        assert_eq!(renamed_volume("data", None), "data");
        assert_eq!(renamed_bind("/srv/conf/", Some("web2")), "/srv/conf-web2");
        assert_eq!(renamed_bind("/srv/conf", None), "/srv/conf");
    }
}
