//! What goes into a container snapshot: its volumes, bind mounts and (on request) its image,
//! each as one repository part with a fixed place inside the snapshot.
//!
//! This crate only decides; it never reads data or calls the engine. `core` executes the
//! plan against the engine and the repository.

#![warn(missing_docs)]

use std::path::{Path, PathBuf};

use lifeboat_docker::ContainerDetails;
use lifeboat_model::{MountKind, PartKind};

/// One source to store as its own repository snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedPart {
    /// What the part holds.
    pub kind: PartKind,
    /// Volume name, bind host path or image reference.
    pub name: String,
    /// Where the data is readable by this process (host path under the host root).
    pub read_path: PathBuf,
    /// Where the data goes inside the snapshot.
    pub snapshot_path: String,
    /// Paths under `read_path` to leave out (live database files captured another way).
    pub exclude: Vec<PathBuf>,
    /// For `sqlite` and `wal` parts: the kind of mount the databases belong to.
    pub belongs_to: Option<PartKind>,
    /// For `sqlite` parts: the databases below `read_path` (the mount), each copied
    /// consistently to its own path; for a `wal` part, the data directory.
    pub databases: Vec<PathBuf>,
}

/// Everything to capture for one container, in order (data first, image last).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CapturePlan {
    /// The parts, data first.
    pub parts: Vec<PlannedPart>,
    /// Mounts deliberately left out, with the reason (for the report).
    pub skipped: Vec<String>,
}

/// Why a container cannot be captured from here.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(
        "volume `{volume}` of container `{container}` has no local mountpoint (driver \
         `{driver}`): Lifeboat reads volume data from the host; back this volume up with its \
         driver's own tools or exclude it with the label lifeboat.exclude={volume}"
    )]
    /// A volume whose driver keeps no data on this host.
    NoMountpoint {
        /// The container.
        container: String,
        /// The volume.
        volume: String,
        /// Its driver.
        driver: String,
    },
    #[error(
        "cannot read `{path}` (mount `{mount}` of container `{container}`): {reason}. Run \
         Lifeboat as root on the Docker host, or mount the engine's data root and set \
         LIFEBOAT_HOST_ROOT"
    )]
    /// A mount's data cannot be read from this process.
    Unreadable {
        /// The container.
        container: String,
        /// The mount's destination in the container.
        mount: String,
        /// The host path tried.
        path: String,
        /// What the system said.
        reason: String,
    },
}

/// The snapshot path of a volume's data.
pub fn volume_snapshot_path(volume: &str) -> String {
    format!("/volumes/{volume}")
}

/// The snapshot path of a bind mount's data: its host path under `/binds`.
pub fn bind_snapshot_path(host_path: &str) -> String {
    format!("/binds/{}", host_path.trim_start_matches('/'))
}

/// The snapshot path of a saved image.
pub const IMAGE_SNAPSHOT_PATH: &str = "/image/image.tar";

/// The snapshot path of the consistent database copies of a mount stored at `mount_path`.
pub fn sqlite_snapshot_path(mount_snapshot_path: &str) -> String {
    format!("/sqlite{mount_snapshot_path}")
}
/// The snapshot path of the manifest.
pub const MANIFEST_SNAPSHOT_PATH: &str = "/lifeboat/manifest.json";

/// The snapshot path of the container's writable layer.
pub const LAYER_SNAPSHOT_PATH: &str = "/layer";

/// The name of a layer part captured through the engine (`docker commit`, then saved).
pub const LAYER_BY_COMMIT: &str = "commit";

/// The snapshot path of a layer captured through the engine: a `docker save` stream of the
/// committed image.
pub const LAYER_COMMIT_SNAPSHOT_PATH: &str = "/layer/commit.tar";

/// Paths of a writable layer left out of its capture: scratch space, not state.
pub const LAYER_LEFT_OUT: [&str; 4] = ["/tmp", "/var/tmp", "/var/cache", "/run"];

/// Whether the container's writable layer is captured (label `lifeboat.layer`, on by default).
pub fn layer_wanted(details: &ContainerDetails) -> bool {
    !matches!(
        details
            .config
            .label(lifeboat_model::labels::LAYER)
            .map(str::trim),
        Some("false" | "0" | "no")
    )
}

/// The snapshot path of the compose project's files (each under its own host path).
pub const COMPOSE_SNAPSHOT_PATH: &str = "/compose";

/// The snapshot path of the settings files kept from the data directories in a mount.
pub fn settings_snapshot_path(mount_snapshot_path: &str) -> String {
    format!("/settings{mount_snapshot_path}")
}

/// The snapshot path of the log and label that make the data directory in a mount consistent.
pub fn wal_snapshot_path(mount_snapshot_path: &str) -> String {
    format!("/wal{mount_snapshot_path}")
}

/// The snapshot path of a database server's dump (`postgres`, `mariadb`).
pub fn dump_snapshot_path(server: &str) -> String {
    format!("/dumps/{server}.sql")
}

impl CapturePlan {
    /// Mount `index`'s `databases` (relative paths) are captured as consistent copies: their
    /// `live_files` leave the mount's file copy, and a `sqlite` part holds the copies.
    pub fn add_sqlite_copies(
        &mut self,
        index: usize,
        databases: Vec<PathBuf>,
        live_files: Vec<PathBuf>,
    ) {
        let mount = &mut self.parts[index];
        mount.exclude.extend(live_files);
        let sqlite = PlannedPart {
            kind: PartKind::Sqlite,
            name: mount.name.clone(),
            read_path: mount.read_path.clone(),
            databases,
            snapshot_path: sqlite_snapshot_path(&mount.snapshot_path),
            exclude: Vec::new(),
            belongs_to: Some(mount.kind),
        };
        self.parts.push(sqlite);
    }

    /// Mount `index`'s server settings files, staged in `staged` under their paths relative
    /// to the mount, become a `settings` part (restored after the server loads its dump).
    pub fn add_settings(&mut self, index: usize, staged: PathBuf) {
        let mount = &self.parts[index];
        let settings = PlannedPart {
            kind: PartKind::Settings,
            name: mount.name.clone(),
            read_path: staged,
            snapshot_path: settings_snapshot_path(&mount.snapshot_path),
            exclude: Vec::new(),
            belongs_to: Some(mount.kind),
            databases: Vec::new(),
        };
        self.parts.push(settings);
    }

    /// The compose project's files, staged in `staged` under their host paths.
    pub fn add_compose(&mut self, staged: PathBuf) {
        self.parts.push(PlannedPart {
            kind: PartKind::Compose,
            name: "compose".into(),
            read_path: staged,
            snapshot_path: COMPOSE_SNAPSHOT_PATH.into(),
            exclude: Vec::new(),
            belongs_to: None,
            databases: Vec::new(),
        });
    }

    /// The data directory at `data_dir` (relative to mount `index`) is copied with its mount
    /// during a base backup, leaving out `exclude` (its run-time files); a `wal` part, right
    /// after the mount, holds what makes the copy consistent.
    pub fn add_wal(&mut self, index: usize, data_dir: PathBuf, exclude: Vec<PathBuf>) {
        let mount = &mut self.parts[index];
        mount.exclude.extend(exclude);
        let wal = PlannedPart {
            kind: PartKind::Wal,
            name: mount.name.clone(),
            read_path: mount.read_path.clone(),
            snapshot_path: wal_snapshot_path(&mount.snapshot_path),
            exclude: Vec::new(),
            belongs_to: Some(mount.kind),
            databases: vec![data_dir],
        };
        self.parts.insert(index + 1, wal);
    }

    /// A server's dump replaces the file copy of its data directories (`data_dirs`, each
    /// under the read path of the mount part with that index).
    pub fn add_dump(&mut self, server: &str, data_dirs: Vec<(usize, PathBuf)>) {
        for (index, dir) in data_dirs {
            self.parts[index].exclude.push(dir);
        }
        self.parts.push(PlannedPart {
            kind: PartKind::Dump,
            name: server.to_string(),
            read_path: PathBuf::new(),
            snapshot_path: dump_snapshot_path(server),
            exclude: Vec::new(),
            belongs_to: None,
            databases: Vec::new(),
        });
    }
}

/// `path` (an absolute host path) as seen from this process when the host's root is mounted
/// at `host_root`.
pub fn under_root(host_root: &Path, path: &str) -> PathBuf {
    host_root.join(path.trim_start_matches('/'))
}

fn excluded(details: &ContainerDetails) -> Vec<String> {
    details
        .config
        .label(lifeboat_model::labels::EXCLUDE)
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Plans the capture of `details`. Fails when a mount's data cannot be reached from here.
pub fn plan(
    details: &ContainerDetails,
    host_root: &Path,
    with_image: bool,
) -> Result<CapturePlan, CaptureError> {
    let excluded = excluded(details);
    let mut plan = CapturePlan::default();
    for mount in &details.mounts {
        if excluded
            .iter()
            .any(|e| *e == mount.name || *e == mount.destination)
        {
            plan.skipped.push(format!(
                "{} (excluded by label lifeboat.exclude)",
                mount.name
            ));
            continue;
        }
        let (kind, snapshot_path) = match mount.kind {
            MountKind::Volume => (PartKind::Volume, volume_snapshot_path(&mount.name)),
            MountKind::Bind => (PartKind::Bind, bind_snapshot_path(&mount.host_path)),
            MountKind::Tmpfs => {
                plan.skipped.push(format!(
                    "{} (tmpfs holds no persistent data)",
                    mount.destination
                ));
                continue;
            }
        };
        if mount.host_path.is_empty() {
            let driver = details
                .config
                .mounts
                .iter()
                .find(|m| m.source == mount.name)
                .map(|m| m.driver.clone())
                .unwrap_or_default();
            return Err(CaptureError::NoMountpoint {
                container: details.name.clone(),
                volume: mount.name.clone(),
                driver,
            });
        }
        let read_path = under_root(host_root, &mount.host_path);
        match std::fs::symlink_metadata(&read_path) {
            Ok(meta) if is_special(&meta) => {
                plan.skipped.push(format!(
                    "{} (a socket or device, not data)",
                    mount.host_path
                ));
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                return Err(CaptureError::Unreadable {
                    container: details.name.clone(),
                    mount: mount.destination.clone(),
                    path: read_path.display().to_string(),
                    reason: e.to_string(),
                });
            }
        }
        plan.parts.push(PlannedPart {
            kind,
            name: mount.name.clone(),
            read_path,
            snapshot_path,
            exclude: Vec::new(),
            belongs_to: None,
            databases: Vec::new(),
        });
    }
    if layer_wanted(details) {
        match &details.layer {
            Some(layer) => {
                let upper = under_root(host_root, &layer.upper);
                // The mounts' data is captured as their own parts; Docker leaves empty
                // placeholders for them in the layer.
                let exclude = details
                    .mounts
                    .iter()
                    .map(|m| m.destination.as_str())
                    .chain(LAYER_LEFT_OUT)
                    .map(|d| upper.join(d.trim_start_matches('/')))
                    .collect();
                plan.parts.push(PlannedPart {
                    kind: PartKind::Layer,
                    name: "layer".into(),
                    read_path: upper,
                    snapshot_path: LAYER_SNAPSHOT_PATH.into(),
                    exclude,
                    belongs_to: None,
                    databases: Vec::new(),
                });
            }
            // No upper directory to read (another storage driver, the containerd image
            // store): the layer is committed and saved through the engine instead.
            None => plan.parts.push(PlannedPart {
                kind: PartKind::Layer,
                name: LAYER_BY_COMMIT.into(),
                read_path: PathBuf::new(),
                snapshot_path: LAYER_COMMIT_SNAPSHOT_PATH.into(),
                exclude: Vec::new(),
                belongs_to: None,
                databases: Vec::new(),
            }),
        }
    }
    if with_image {
        plan.parts.push(PlannedPart {
            kind: PartKind::Image,
            name: details.config.image.clone(),
            read_path: PathBuf::new(),
            snapshot_path: IMAGE_SNAPSHOT_PATH.to_string(),
            exclude: Vec::new(),
            belongs_to: None,
            databases: Vec::new(),
        });
    }
    Ok(plan)
}

fn is_special(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    t.is_socket() || t.is_block_device() || t.is_char_device()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeboat_docker::{ContainerState, MountSource};
    use lifeboat_model::ContainerConfig;

    fn details(dir: &Path, labels: &[(&str, &str)]) -> ContainerDetails {
        let mut config = ContainerConfig {
            image: "web:1".into(),
            ..Default::default()
        };
        for (k, v) in labels {
            config.labels.insert(k.to_string(), v.to_string());
        }
        let mount = |kind, name: &str, host: &str, dest: &str| MountSource {
            kind,
            name: name.into(),
            host_path: host.into(),
            destination: dest.into(),
        };
        ContainerDetails {
            id: "id".into(),
            name: "web".into(),
            state: ContainerState::default(),
            config,
            mounts: vec![
                mount(
                    MountKind::Volume,
                    "data",
                    &format!("{}/vol", dir.display()),
                    "/data",
                ),
                mount(
                    MountKind::Bind,
                    "/conf",
                    &format!("{}/conf", dir.display()),
                    "/conf",
                ),
                mount(MountKind::Tmpfs, "", "", "/tmp"),
            ],
            compose: None,
            layer: None,
            oom_killed: false,
            restart_count: 0,
        }
    }

    #[test]
    fn plan_captures_volumes_and_binds_and_skips_tmpfs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("vol")).unwrap();
        std::fs::create_dir(dir.path().join("conf")).unwrap();
        let p = plan(&details(dir.path(), &[]), Path::new("/"), true).unwrap();
        let kinds: Vec<_> = p.parts.iter().map(|p| p.kind).collect();
        assert_eq!(
            kinds,
            vec![
                PartKind::Volume,
                PartKind::Bind,
                PartKind::Layer,
                PartKind::Image
            ]
        );
        assert_eq!(p.parts[0].snapshot_path, "/volumes/data");
        assert!(p.parts[1].snapshot_path.starts_with("/binds/"));
        // This driver shows no upper directory: the layer goes through the engine.
        assert_eq!(p.parts[2].name, LAYER_BY_COMMIT);
        assert_eq!(p.parts[2].snapshot_path, LAYER_COMMIT_SNAPSHOT_PATH);
        assert_eq!(p.skipped.len(), 1, "{:?}", p.skipped);
        assert!(p.skipped[0].contains("tmpfs"));
    }

    #[test]
    fn the_writable_layer_is_a_part_without_its_mount_placeholders_unless_left_out() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("vol")).unwrap();
        std::fs::create_dir(dir.path().join("conf")).unwrap();
        let mut d = details(dir.path(), &[]);
        d.layer = Some(lifeboat_docker::LayerDirs {
            upper: "/var/lib/docker/overlay2/abc/diff".into(),
            merged: "/var/lib/docker/overlay2/abc/merged".into(),
        });
        let p = plan(&d, Path::new("/"), false).unwrap();
        let layer = p.parts.iter().find(|p| p.kind == PartKind::Layer).unwrap();
        assert_eq!(layer.snapshot_path, LAYER_SNAPSHOT_PATH);
        let upper = Path::new("/var/lib/docker/overlay2/abc/diff");
        for left_out in ["data", "conf", "tmp", "run"] {
            assert!(layer.exclude.contains(&upper.join(left_out)), "{left_out}");
        }
        d.config
            .labels
            .insert("lifeboat.layer".into(), "false".into());
        let p = plan(&d, Path::new("/"), false).unwrap();
        assert!(p.parts.iter().all(|p| p.kind != PartKind::Layer));
    }

    #[test]
    fn excluded_volume_is_skipped_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("conf")).unwrap();
        let p = plan(
            &details(dir.path(), &[(lifeboat_model::labels::EXCLUDE, "data")]),
            Path::new("/"),
            false,
        )
        .unwrap();
        let data: Vec<_> = p
            .parts
            .iter()
            .filter(|p| p.kind != PartKind::Layer)
            .collect();
        assert_eq!(data.len(), 1);
        assert!(p.skipped[0].contains("excluded"));
    }

    #[test]
    fn unreachable_mount_data_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = plan(&details(dir.path(), &[]), Path::new("/"), false).unwrap_err();
        assert!(err.to_string().contains("/vol"), "{err}");
    }

    #[test]
    fn host_root_prefixes_host_paths() {
        assert_eq!(
            under_root(Path::new("/host"), "/var/lib/x"),
            PathBuf::from("/host/var/lib/x")
        );
        assert_eq!(
            under_root(Path::new("/"), "/var/lib/x"),
            PathBuf::from("/var/lib/x")
        );
    }
}
