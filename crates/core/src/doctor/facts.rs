//! What doctor looks at: engine state, memory use, and the data of each mount on the host.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use lifeboat_capture::under_root;
use lifeboat_docker::{ContainerDetails, Engine, MemoryUsage};
use lifeboat_model::MountKind;

use super::DoctorRequest;
use crate::CoreError;

/// Everything the checks need about one container.
#[derive(Debug, Clone)]
pub struct ContainerFacts {
    /// The container as the engine shows it.
    pub details: ContainerDetails,
    /// Its memory use now, when running.
    pub memory: Option<MemoryUsage>,
    /// The kernel killed it for memory at its last exit.
    pub oom_killed: bool,
    /// How often the engine restarted it.
    pub restart_count: u64,
    /// The uid and gid the container's process runs as, when known.
    pub user: Option<(u32, u32)>,
    /// Config-looking files in the container's writable layer (not captured by a backup).
    pub layer_configs: Vec<String>,
    /// What was found in each mount.
    pub mounts: Vec<MountFacts>,
    /// Why its data directory cannot be copied as files, when it is labelled for that
    /// (`lifeboat.strategy=postgres-files`).
    pub files_copy_refused: Option<String>,
}

/// What doctor found in one mount.
#[derive(Debug, Clone, Default)]
pub struct MountFacts {
    /// Volume or bind.
    pub kind: Option<MountKind>,
    /// Volume name or host path.
    pub name: String,
    /// Where the container sees it.
    pub destination: String,
    /// Mounted read-only.
    pub read_only: bool,
    /// Its data is reachable from here.
    pub exists: bool,
    /// The mount root's owner.
    pub uid: u32,
    /// The mount root's group.
    pub gid: u32,
    /// The mount root's permission bits.
    pub mode: u32,
    /// Bytes seen (up to the walk limit).
    pub bytes: u64,
    /// Entries seen.
    pub entries: usize,
    /// False when the walk stopped at the limit (sizes are then lower bounds).
    pub walked_all: bool,
    /// Regular files the container's user cannot read (first ones, relative paths).
    pub unreadable: Vec<String>,
    /// Entries the container user could not read.
    pub unreadable_count: usize,
    /// Databases detected by their files, e.g. `SQLite (WAL) at agent.db`.
    pub databases: Vec<String>,
}

pub(crate) fn gather(
    engine: &dyn Engine,
    name: &str,
    req: &DoctorRequest,
) -> Result<ContainerFacts, CoreError> {
    let details = engine
        .container(name)?
        .ok_or_else(|| CoreError::NoSuchContainer(name.to_string()))?;
    let memory = if details.state.running {
        engine.memory_usage(&details.id)?
    } else {
        None
    };
    let merged = details.layer.as_ref().map(|l| l.merged.as_str());
    let upper = details.layer.as_ref().map(|l| l.upper.as_str());
    let user = resolve_user(
        &details.config.user,
        merged.map(|m| under_root(&req.host_root, m)),
    );
    let mount_points: Vec<String> = details
        .mounts
        .iter()
        .map(|m| m.destination.trim_end_matches('/').to_string())
        .collect();
    let layer_configs = upper
        .map(|u| config_files_in_layer(&under_root(&req.host_root, u), &mount_points))
        .unwrap_or_default();
    let mounts = details
        .mounts
        .iter()
        .map(|m| {
            let spec = details
                .config
                .mounts
                .iter()
                .find(|s| s.destination == m.destination);
            let mut f = examine_mount(
                &under_root(&req.host_root, &m.host_path),
                user,
                req.walk_limit,
            );
            f.kind = Some(m.kind);
            f.name = m.name.clone();
            f.destination = m.destination.clone();
            f.read_only = spec.is_some_and(|s| s.read_only);
            f
        })
        .collect();
    let files_copy_refused = if crate::dump::by_files(&details.config) {
        let paths: Vec<std::path::PathBuf> = details
            .mounts
            .iter()
            .filter(|m| matches!(m.kind, MountKind::Volume | MountKind::Bind))
            .map(|m| under_root(&req.host_root, &m.host_path))
            .collect();
        crate::base_copy::data_dir(paths.iter().map(|p| p.as_path()).enumerate()).err()
    } else {
        None
    };
    Ok(ContainerFacts {
        files_copy_refused,
        oom_killed: details.oom_killed,
        restart_count: details.restart_count,
        memory,
        user,
        layer_configs,
        mounts,
        details,
    })
}

/// `uid[:gid]` or a user name looked up in the container's own `/etc/passwd`.
fn resolve_user(user: &str, rootfs: Option<std::path::PathBuf>) -> Option<(u32, u32)> {
    let (u, g) = user
        .split_once(':')
        .map_or((user, None), |(u, g)| (u, Some(g)));
    let passwd = rootfs.and_then(|r| std::fs::read_to_string(r.join("etc/passwd")).ok());
    let lookup = |name: &str| -> Option<(u32, u32)> {
        passwd.as_deref()?.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 3 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
        })
    };
    let (uid, default_gid) = match u {
        "" | "root" => (0, 0),
        _ => match u.parse::<u32>() {
            Ok(uid) => (
                uid,
                lookup_gid_of_uid(passwd.as_deref(), uid).unwrap_or(uid),
            ),
            Err(_) => lookup(u)?,
        },
    };
    let gid = match g {
        None => default_gid,
        Some(g) => g.parse().unwrap_or(default_gid),
    };
    Some((uid, gid))
}

fn lookup_gid_of_uid(passwd: Option<&str>, uid: u32) -> Option<u32> {
    passwd?.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[3].parse().ok())?
    })
}

/// Whether `uid:gid` may access a file with this owner and mode (`want`: 4 read, 2 write,
/// 1 execute). Root may do anything.
pub(crate) fn permits(user: (u32, u32), owner: (u32, u32), mode: u32, want: u32) -> bool {
    let bits = if user.0 == 0 {
        return true;
    } else if user.0 == owner.0 {
        mode >> 6
    } else if user.1 == owner.1 {
        mode >> 3
    } else {
        mode
    };
    bits & want == want
}

fn examine_mount(path: &Path, user: Option<(u32, u32)>, limit: usize) -> MountFacts {
    let mut f = MountFacts {
        walked_all: true,
        ..Default::default()
    };
    let Ok(meta) = std::fs::metadata(path) else {
        return f;
    };
    f.exists = true;
    (f.uid, f.gid, f.mode) = (meta.uid(), meta.gid(), meta.mode() & 0o7777);
    if !meta.is_dir() {
        f.bytes = meta.len();
        f.entries = 1;
        return f;
    }
    for entry in walkdir::WalkDir::new(path)
        .into_iter()
        .filter_map(Result::ok)
    {
        if f.entries >= limit {
            f.walked_all = false;
            break;
        }
        f.entries += 1;
        let Ok(m) = entry.metadata() else { continue };
        let rel = entry.path().strip_prefix(path).unwrap_or(entry.path());
        let name = entry.file_name().to_string_lossy();
        if m.is_file() {
            f.bytes += m.len();
            if let Some(u) = user
                && !permits(u, (m.uid(), m.gid()), m.mode(), 4)
            {
                f.unreadable_count += 1;
                if f.unreadable.len() < 3 {
                    f.unreadable.push(rel.display().to_string());
                }
            }
            if let Some(db) = detect_file_database(entry.path(), &name) {
                f.databases.push(format!("{db} at {}", rel.display()));
            }
        } else if m.is_dir() && name == "appendonlydir" {
            f.databases
                .push(format!("Redis (AOF) at {}", rel.display()));
        }
    }
    f
}

/// A database recognised by one of its files.
fn detect_file_database(path: &Path, name: &str) -> Option<&'static str> {
    match name {
        "PG_VERSION" if path.parent().is_some_and(|p| p.join("global").is_dir()) => {
            return Some("PostgreSQL data directory");
        }
        "ibdata1" | "aria_log_control" => return Some("MySQL/MariaDB data directory"),
        "dump.rdb" => return Some("Redis (RDB)"),
        "appendonly.aof" => return Some("Redis (AOF)"),
        _ => {}
    }
    let mut header = [0u8; 20];
    let mut file = std::fs::File::open(path).ok()?;
    file.read_exact(&mut header).ok()?;
    if &header[..16] != b"SQLite format 3\0" {
        return None;
    }
    // Bytes 18 and 19 are the write and read format versions: 2 means WAL mode.
    Some(if header[18] == 2 {
        "SQLite (WAL)"
    } else {
        "SQLite"
    })
}

/// Config and secret files written into the container's writable layer.
/// Config-looking files in the writable layer `upper`, leaving out the placeholders Docker
/// creates there for mount points (a single-file bind mount leaves an empty file at its
/// destination; its data is the bind's, which is captured).
fn config_files_in_layer(upper: &Path, mount_points: &[String]) -> Vec<String> {
    const NAMES: [&str; 3] = [".env", "config.yaml", "config.yml"];
    const SUFFIXES: [&str; 6] = [".env", ".yaml", ".yml", ".toml", ".pem", ".key"];
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(upper)
        .max_depth(6)
        .into_iter()
        .filter_map(Result::ok)
        .take(20_000)
    {
        let name = entry.file_name().to_string_lossy();
        let looks = NAMES.contains(&name.as_ref()) || SUFFIXES.iter().any(|s| name.ends_with(s));
        if entry.file_type().is_file() && looks {
            let rel = entry.path().strip_prefix(upper).unwrap_or(entry.path());
            let shown = format!("/{}", rel.display());
            if !mount_points.contains(&shown) {
                out.push(shown);
            }
        }
    }
    out
}

pub use lifeboat_safepath::free_bytes;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_follow_owner_group_other_and_root() {
        assert!(permits((0, 0), (5, 5), 0o000, 4), "root reads anything");
        assert!(permits((1001, 1001), (1001, 0), 0o600, 6));
        assert!(
            !permits((1001, 1001), (0, 0), 0o755, 2),
            "others cannot write 755"
        );
        assert!(
            permits((1001, 50), (0, 50), 0o770, 2),
            "group member writes 770"
        );
        assert!(!permits((1001, 1001), (0, 0), 0o750, 4));
    }

    #[test]
    fn users_resolve_from_numbers_names_and_passwd() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0::/:/bin/sh\napp:x:1001:1002::/:/bin/sh\n",
        )
        .unwrap();
        let r = Some(root.path().to_path_buf());
        assert_eq!(resolve_user("", r.clone()), Some((0, 0)));
        assert_eq!(resolve_user("app", r.clone()), Some((1001, 1002)));
        assert_eq!(resolve_user("1001", r.clone()), Some((1001, 1002)));
        assert_eq!(resolve_user("1001:7", r.clone()), Some((1001, 7)));
        assert_eq!(resolve_user("4000", None), Some((4000, 4000)));
        assert_eq!(resolve_user("ghost", r), None);
    }

    #[test]
    fn sqlite_wal_databases_are_recognised_by_their_header() {
        let dir = tempfile::tempdir().unwrap();
        let mut header = b"SQLite format 3\0".to_vec();
        header.extend_from_slice(&[0x10, 0x00, 2, 2]);
        std::fs::write(dir.path().join("a.db"), &header).unwrap();
        header[18] = 1;
        std::fs::write(dir.path().join("b.db"), &header).unwrap();
        std::fs::write(dir.path().join("c.txt"), "not a database at all").unwrap();
        let d = |n: &str| detect_file_database(&dir.path().join(n), n);
        assert_eq!(d("a.db"), Some("SQLite (WAL)"));
        assert_eq!(d("b.db"), Some("SQLite"));
        assert_eq!(d("c.txt"), None);
    }
}
