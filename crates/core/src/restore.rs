//! `restore`: rebuild a container, its volumes and bind mounts from a backup. Refuses to
//! overwrite anything unless forced, and then only after a safety backup of what it replaces.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use lifeboat_capture::{IMAGE_SNAPSHOT_PATH, under_root};
use lifeboat_docker::Engine;
use lifeboat_model::{ContainerConfig, Manifest, MountKind, Part, PartKind};
use lifeboat_repo::Repository;

use crate::backup::{BackupRequest, backup_container};
use crate::catalog::find_backup;
use crate::{CoreError, Note};

#[derive(Debug, Clone)]
pub struct RestoreRequest {
    pub snapshot: Option<String>,
    pub at: Option<Timestamp>,
    /// Restore side by side under this name (volumes and bind paths renamed too).
    pub as_name: Option<String>,
    pub force: bool,
    /// How long to wait for a healthcheck to pass.
    pub health_timeout: Duration,
    /// Used for the safety backup taken by `--force`.
    pub backup: BackupRequest,
}

#[derive(Debug, Clone)]
pub struct RestoreOutcome {
    pub container: String,
    pub container_id: String,
    pub from_snapshot: String,
    pub backup_id: String,
    /// Manifest snapshot of the safety backup taken before replacing things (`--force`).
    pub safety_snapshot: Option<String>,
    pub volumes: Vec<String>,
    pub binds: Vec<String>,
    pub image_loaded: bool,
    pub started: bool,
    pub health: Option<String>,
    pub seconds: f64,
}

/// Where each part goes on this host.
struct Target {
    part: Part,
    /// Volume name or bind host path after `--as` renaming.
    name: String,
}

fn renamed_volume(volume: &str, as_name: Option<&str>) -> String {
    match as_name {
        Some(n) => format!("{n}_{volume}"),
        None => volume.to_string(),
    }
}

fn renamed_bind(path: &str, as_name: Option<&str>) -> String {
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

/// Restores container `name` as described by `req`.
pub fn restore_container(
    engine: &dyn Engine,
    repo: &dyn Repository,
    name: &str,
    req: &RestoreRequest,
    note: Note<'_>,
) -> Result<RestoreOutcome, CoreError> {
    let t0 = Instant::now();
    let entry = find_backup(repo, name, req.snapshot.as_deref(), req.at)?;
    let manifest = entry.manifest;
    let as_name = req.as_name.as_deref();
    let target_name = as_name.unwrap_or(&manifest.container_name).to_string();
    let targets: Vec<Target> = manifest
        .parts
        .iter()
        .filter(|p| p.kind != PartKind::Image)
        .map(|p| Target {
            part: p.clone(),
            name: match p.kind {
                PartKind::Bind => renamed_bind(&p.name, as_name),
                _ => renamed_volume(&p.name, as_name),
            },
        })
        .collect();
    let host_root = &req.backup.host_root;

    // Everything that would be overwritten, found before anything is touched.
    let mut occupied = Vec::new();
    let existing = engine.container(&target_name)?;
    if existing.is_some() {
        occupied.push(format!("container `{target_name}` exists"));
    }
    for t in &targets {
        let path = host_path_of(engine, t, host_root)?;
        if let Some(path) = path.filter(|p| !dir_is_empty(p)) {
            occupied.push(format!(
                "{} `{}` is not empty ({})",
                t.part.kind.as_str(),
                t.name,
                path.display()
            ));
        }
    }
    let image_part = manifest.parts.iter().find(|p| p.kind == PartKind::Image);
    let image_present = engine.image_present(&manifest.config.image)?;
    // Without the tag and without a saved image, the same image by ID still does.
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

    let mut safety_snapshot = None;
    if !occupied.is_empty() {
        safety_snapshot = safety_backup(
            engine,
            repo,
            &target_name,
            existing.is_some(),
            &targets,
            req,
            note,
        )?;
        if existing.is_some() {
            note(&format!("removing container {target_name}"));
            engine.remove_container(&target_name)?;
        }
    }

    let mut volumes = Vec::new();
    let mut binds = Vec::new();
    for t in &targets {
        let dest = prepare_destination(engine, t, &manifest, host_root, req.force)?;
        note(&format!(
            "restoring {} {} ({} bytes)",
            t.part.kind.as_str(),
            t.name,
            t.part.bytes
        ));
        repo.restore_dir(&t.part.snapshot_id, &t.part.snapshot_path, &dest)?;
        match t.part.kind {
            PartKind::Bind => binds.push(t.name.clone()),
            _ => volumes.push(t.name.clone()),
        }
    }

    let mut image_loaded = false;
    if !image_present && let Some(part) = image_part {
        note(&format!(
            "loading image {} from the backup",
            manifest.config.image
        ));
        load_image(engine, repo, part)?;
        image_loaded = true;
    }

    let mut config = restored_config(&manifest, as_name);
    if use_image_id {
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
    note(&format!("creating container {target_name}"));
    let container_id = engine.create_container(&target_name, &config)?;
    for net in config.networks.iter().skip(1) {
        engine.connect_network(&target_name, net)?;
    }
    let mut health = None;
    if config.was_running {
        engine.start_container(&target_name)?;
        if config.healthcheck.is_some() {
            note(&format!("waiting for {target_name} to become healthy"));
            health = Some(wait_healthy(engine, &target_name, req.health_timeout)?);
        }
    }
    Ok(RestoreOutcome {
        container: target_name,
        container_id,
        from_snapshot: entry.snapshot_id,
        backup_id: manifest.backup_id.0.clone(),
        safety_snapshot,
        volumes,
        binds,
        image_loaded,
        started: config.was_running,
        health,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

fn is_builtin_network(name: &str) -> bool {
    matches!(name, "bridge" | "host" | "none") || name.starts_with("container:")
}

/// The host path holding a target's data now, if the volume or path exists.
fn host_path_of(
    engine: &dyn Engine,
    t: &Target,
    host_root: &Path,
) -> Result<Option<PathBuf>, CoreError> {
    Ok(match t.part.kind {
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
    target_name: &str,
    container_exists: bool,
    targets: &[Target],
    req: &RestoreRequest,
    note: Note<'_>,
) -> Result<Option<String>, CoreError> {
    let mut backup = req.backup.clone();
    backup.extra_tags.push("safety".into());
    backup.with_image = false;
    if container_exists {
        note(&format!(
            "taking a safety backup of {target_name} before replacing it"
        ));
        let out = backup_container(engine, repo, target_name, &backup, note)?;
        return Ok(Some(out.manifest_snapshot));
    }
    for t in targets {
        if let Some(path) =
            host_path_of(engine, t, &req.backup.host_root)?.filter(|p| !dir_is_empty(p))
        {
            note(&format!(
                "taking a safety snapshot of {} before replacing it",
                t.name
            ));
            let mut tags = vec![
                lifeboat_model::tags::LIFEBOAT.to_string(),
                "safety".to_string(),
                lifeboat_model::tags::part(t.part.kind),
            ];
            tags.push(format!("replaced={}", t.name));
            repo.backup_dir(&lifeboat_repo::DirBackup {
                source: &path,
                as_path: &t.part.snapshot_path,
                tags: &tags,
                description: None,
            })?;
        }
    }
    Ok(None)
}

/// The configuration to create: the saved one, with `--as` renames applied. A side-by-side
/// copy must not steal the original's traffic or names: its published ports get free host
/// ports, its network aliases and compose labels are dropped.
fn restored_config(manifest: &Manifest, as_name: Option<&str>) -> ContainerConfig {
    let mut config = manifest.config.clone();
    for m in &mut config.mounts {
        match m.kind {
            MountKind::Volume => m.source = renamed_volume(&m.source, as_name),
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

fn load_image(engine: &dyn Engine, repo: &dyn Repository, part: &Part) -> Result<(), CoreError> {
    let (reader, mut writer) = std::io::pipe().map_err(CoreError::io("creating pipe", "image"))?;
    std::thread::scope(|s| {
        let dump = s.spawn(move || {
            let r = repo.dump(&part.snapshot_id, IMAGE_SNAPSHOT_PATH, &mut writer);
            drop(writer);
            r
        });
        let loaded = engine.import_image(Box::new(reader));
        let dumped = dump.join().unwrap_or_else(|_| {
            Err(lifeboat_repo::RepoError::StreamFailed {
                path: IMAGE_SNAPSHOT_PATH.into(),
                reason: "the reader thread failed".into(),
            })
        });
        dumped?;
        loaded?;
        Ok(())
    })
}

/// Polls the container's health with exponential backoff (0.25 s doubling to 5 s).
fn wait_healthy(engine: &dyn Engine, name: &str, timeout: Duration) -> Result<String, CoreError> {
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(250);
    let mut status = String::from("unknown");
    loop {
        if let Some(c) = engine.container(name)? {
            status = c
                .state
                .health
                .clone()
                .unwrap_or_else(|| c.state.status.clone());
            if status == "healthy" {
                return Ok(status);
            }
        }
        if Instant::now() >= deadline {
            return Err(CoreError::Unhealthy {
                name: name.to_string(),
                seconds: timeout.as_secs(),
                status,
            });
        }
        std::thread::sleep(delay.min(deadline.saturating_duration_since(Instant::now())));
        delay = (delay * 2).min(Duration::from_secs(5));
    }
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
