//! Hot mode: consistent copies of the SQLite databases found in a container's mounts, each
//! streamed page by page from one read transaction straight into the repository as a
//! `sqlite` part (nothing staged on disk); the live database files are left out of the
//! plain file copy.

use std::path::{Path, PathBuf};

use std::os::unix::fs::MetadataExt;

use lifeboat_capture::{CapturePlan, PlannedPart};
use lifeboat_consistency::Mode;
use lifeboat_consistency::base_backup::BaseBackup;
use lifeboat_consistency::sqlite::{
    DetectionCache, PageStream, find_databases_cached, side_files, stream_pages,
};
use lifeboat_docker::{ContainerDetails, Engine};
use lifeboat_model::PartKind;
use lifeboat_repo::{EntryMeta, FileProducer, PartReport, Repository, TreeBackup};
use lifeboat_safepath::Beneath;

use crate::{CoreError, Note};

/// Databases (relative paths) per data part, by index into the plan's parts.
/// The databases of each volume and bind directory. What was found is kept per mount in the
/// state directory, so files unchanged since the last backup are not opened again.
fn find(parts: &[PlannedPart], state_dir: &Path) -> Vec<(usize, Vec<PathBuf>)> {
    parts
        .iter()
        .enumerate()
        .filter(|(_, p)| {
            matches!(p.kind, PartKind::Volume | PartKind::Bind) && p.read_path.is_dir()
        })
        .map(|(i, p)| {
            // One file per mount, named by the mount's path on this host.
            let key = hex::encode(p.read_path.as_os_str().as_encoded_bytes());
            let key = if key.len() > 200 {
                &key[key.len() - 200..]
            } else {
                &key
            };
            let path = state_dir.join("detect").join(format!("{key}.bin"));
            // The cache's former format, a JSON file (200 MB for a million files).
            let _ = std::fs::remove_file(path.with_extension("json"));
            let mut cache = DetectionCache::load(&path);
            let found = find_databases_cached(&p.read_path, &mut cache);
            cache.save(&path);
            (i, found)
        })
        .filter(|(_, dbs)| !dbs.is_empty())
        .collect()
}

/// What hot mode can do for one container: SQLite copies, a Redis BGSAVE, a server dump.
pub(crate) struct HotPlan {
    databases: Vec<(usize, Vec<PathBuf>)>,
    redis: bool,
    dump: Option<lifeboat_consistency::dumps::DumpStrategy>,
    /// The server's data directory is copied as files during a base backup, not dumped.
    by_files: bool,
}

impl HotPlan {
    /// Detects the strategies (honouring the `lifeboat.strategy` label) for the planned parts.
    /// With `mode` chosen already and not hot, nothing is looked for (a forensic backup of
    /// a large volume does not open every file for a SQLite header it will not use).
    pub(crate) fn detect(
        details: &ContainerDetails,
        parts: &[PlannedPart],
        state_dir: &Path,
        mode: Option<Mode>,
    ) -> Result<HotPlan, CoreError> {
        let label = crate::dump::strategy_label(&details.config)?;
        if mode.is_some_and(|m| m != Mode::Hot) {
            return Ok(HotPlan {
                databases: Vec::new(),
                redis: false,
                dump: None,
                by_files: false,
            });
        }
        Ok(HotPlan {
            databases: if label == lifeboat_model::Strategy::None {
                Vec::new()
            } else {
                find(parts, state_dir)
            },
            redis: crate::dump::is_redis(&details.config),
            dump: crate::dump::strategy(&details.config),
            by_files: crate::dump::by_files(&details.config),
        })
    }

    /// Whether hot mode has anything to do (the automatic mode then chooses it).
    pub(crate) fn is_capable(&self) -> bool {
        !self.databases.is_empty() || self.redis || self.dump.is_some()
    }

    /// Runs what must happen before the read: a Redis BGSAVE, the SQLite copies, and the
    /// dump part or the base backup (the servers must be running for all of them). The base
    /// backup is returned: open until it is dropped, ended by the `wal` part.
    pub(crate) fn prepare(
        &self,
        engine: &dyn Engine,
        details: &ContainerDetails,
        plan: &mut CapturePlan,
        staging: &Staging,
        note: Note<'_>,
    ) -> Result<Option<BaseBackup>, CoreError> {
        let running = details.state.running;
        if self.redis && running {
            note(&format!("{}: Redis BGSAVE", details.name));
            let timeout = std::time::Duration::from_secs(300);
            lifeboat_consistency::redis::snapshot(
                engine,
                &details.id,
                &details.config.env,
                timeout,
            )
            .map_err(|e| CoreError::Hot(e.to_string()))?;
        }
        for (index, dbs) in &self.databases {
            let live = &plan.parts[*index].read_path;
            let live_files = dbs
                .iter()
                .flat_map(|rel| {
                    side_files(&live.join(rel))
                        .into_iter()
                        .chain([live.join(rel)])
                })
                .collect();
            plan.add_sqlite_copies(*index, dbs.clone(), live_files);
        }
        if self.by_files && running {
            // Last: the `wal` part goes right after its mount, which moves the parts after it.
            return crate::base_copy::open(engine, details, plan, note).map(Some);
        }
        if let Some(s) = self.dump.as_ref().filter(|_| running) {
            let data_dirs = crate::dump::plan(plan, s, note);
            stage_settings(plan, &data_dirs, s.settings, staging, note)?;
        }
        Ok(None)
    }
}

/// A scratch directory under the state directory, removed when dropped.
pub(crate) struct Staging(PathBuf);

impl Staging {
    /// The caller holds the container's lock, so leftovers of its killed runs can go.
    pub(crate) fn new(state_dir: &Path, container: &str, backup_id: &str) -> Staging {
        let parent = state_dir.join("staging").join(container);
        let _ = std::fs::remove_dir_all(&parent);
        // A name no container can guess: the copies are written while SQLite runs confined
        // to the container's mount, where a planted file at a guessable path could pose as
        // the copy's journal.
        Staging(parent.join(format!("{backup_id}-{}", unguessable())))
    }
}

impl Staging {
    /// The scratch directory (created by whoever writes into it).
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Stores the consistent copies of a `sqlite` part's databases: each one's pages are read
/// inside one read transaction, started only when the backup reaches it, into a tree that
/// mirrors the mount (directories keep their owners and modes).
pub(crate) fn store_databases(
    repo: &dyn Repository,
    part: &PlannedPart,
    tags: &[String],
    note: Note<'_>,
) -> Result<PartReport, CoreError> {
    let mount = &part.read_path;
    let root = Beneath::open(mount).map_err(CoreError::io("opening", mount.display()))?;
    let mut files = Vec::new();
    for rel in &part.databases {
        note(&format!(
            "{}: consistent copy of SQLite database {}",
            part.name,
            rel.display()
        ));
        let meta = root
            .open_file(rel)
            .and_then(|f| f.metadata())
            .map_err(CoreError::io("reading", mount.join(rel).display()))?;
        let pages = Pages {
            mount: mount.clone(),
            rel: rel.clone(),
            stream: None,
        };
        files.push((
            rel.clone(),
            entry_meta(&meta),
            Box::new(pages) as Box<dyn FileProducer>,
        ));
    }
    let (root_meta, dirs) = tree_dirs(&root, mount, &part.databases)?;
    let req = TreeBackup {
        as_path: &part.snapshot_path,
        tags,
        root: root_meta,
        dirs,
        files,
    };
    repo.backup_tree(req).map_err(|e| match e {
        // A database that could not be copied whole: hot mode failed, not the repository.
        lifeboat_repo::RepoError::StreamFailed { reason, .. } => CoreError::Hot(reason),
        e => e.into(),
    })
}

/// A file's or directory's owner, mode and modification time, as a produced tree keeps them.
pub(crate) fn entry_meta(m: &std::fs::Metadata) -> EntryMeta {
    EntryMeta {
        uid: m.uid(),
        gid: m.gid(),
        mode: m.mode() & 0o7777,
        mtime: jiff::Timestamp::new(m.mtime(), m.mtime_nsec() as i32).ok(),
    }
}

/// The metadata of the mount's root and of every parent directory of `files` (paths
/// relative to the mount), read beneath it: a produced tree mirrors the mount.
pub(crate) fn tree_dirs(
    root: &Beneath,
    mount: &Path,
    files: &[PathBuf],
) -> Result<(EntryMeta, Vec<(PathBuf, EntryMeta)>), CoreError> {
    let dir_meta = |rel: &Path| {
        let dir = if rel.as_os_str().is_empty() {
            root.root().try_clone()
        } else {
            root.locate(rel).and_then(|l| l.open_dir())
        };
        dir.and_then(|fd| std::fs::File::from(fd).metadata())
            .map(|m| entry_meta(&m))
            .map_err(CoreError::io("reading", mount.join(rel).display()))
    };
    let mut dirs = std::collections::BTreeMap::new();
    for rel in files {
        for parent in rel.ancestors().skip(1) {
            if !parent.as_os_str().is_empty() && !dirs.contains_key(parent) {
                dirs.insert(parent.to_path_buf(), dir_meta(parent)?);
            }
        }
    }
    Ok((dir_meta(Path::new(""))?, dirs.into_iter().collect()))
}

/// One database's pages, streamed when the backup reads it ([`stream_pages`]).
struct Pages {
    mount: PathBuf,
    rel: PathBuf,
    stream: Option<PageStream>,
}

impl FileProducer for Pages {
    fn start(&mut self) -> Result<Box<dyn std::io::Read + Send>, String> {
        let mut stream = stream_pages(&self.mount, &self.rel).map_err(|e| e.to_string())?;
        let reader = stream.reader();
        self.stream = Some(stream);
        Ok(reader)
    }

    fn finish(&mut self) -> Result<(), String> {
        self.stream.as_mut().map_or(Ok(()), PageStream::finish)
    }
}

/// Copies the server's settings files out of each data directory into staging (read-only,
/// never through a symlink, owner and mode kept) and adds them as `settings` parts.
fn stage_settings(
    plan: &mut CapturePlan,
    data_dirs: &[(usize, PathBuf)],
    files: &[&str],
    staging: &Staging,
    note: Note<'_>,
) -> Result<(), CoreError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut by_mount: std::collections::BTreeMap<usize, Vec<PathBuf>> = Default::default();
    for (index, dir) in data_dirs {
        let Ok(rel) = dir.strip_prefix(&plan.parts[*index].read_path) else {
            continue;
        };
        by_mount.entry(*index).or_default().push(rel.to_path_buf());
    }
    for (index, rels) in by_mount {
        let mount = &plan.parts[index];
        let root = lifeboat_safepath::Beneath::open(&mount.read_path)
            .map_err(CoreError::io("opening", mount.read_path.display()))?;
        let staged = staging.0.join(format!("settings-{index}"));
        let mut any = false;
        for rel in rels {
            for name in files {
                let from = rel.join(name);
                // A file that is not there (or not a plain file) is simply not kept.
                let Ok(mut src) = root.open_file(&from) else {
                    continue;
                };
                let dest = staged.join(&from);
                if let Some(p) = dest.parent() {
                    std::fs::create_dir_all(p)
                        .map_err(CoreError::io("creating staging directory", p.display()))?;
                }
                let mut out = std::fs::File::create(&dest)
                    .map_err(CoreError::io("staging", dest.display()))?;
                std::io::copy(&mut src, &mut out)
                    .map_err(CoreError::io("copying", from.display()))?;
                let m = src
                    .metadata()
                    .map_err(CoreError::io("reading", from.display()))?;
                let _ = std::os::unix::fs::fchown(&out, Some(m.uid()), Some(m.gid()));
                let _ = out.set_permissions(std::fs::Permissions::from_mode(m.mode() & 0o7777));
                any = true;
            }
        }
        if any {
            note(&format!(
                "{}: server settings files kept with the dump",
                mount.name
            ));
            copy_dir_owners(&mount.read_path, &staged);
            plan.add_settings(index, staged);
        }
    }
    Ok(())
}

/// 128 random bits, hex.
pub(crate) fn unguessable() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    hex::encode(bytes)
}

/// Directories inside the staging tree take the owner and mode of their originals, reached
/// beneath the mount without following symlinks.
fn copy_dir_owners(original: &Path, staged: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(original) = lifeboat_safepath::Beneath::open(original) else {
        return;
    };
    for entry in walkdir::WalkDir::new(staged)
        .into_iter()
        .filter_map(Result::ok)
    {
        if !entry.file_type().is_dir() {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(staged) else {
            continue;
        };
        let dir = original.locate(rel).and_then(|l| l.open_dir());
        if let Ok(m) = dir.and_then(|fd| std::fs::File::from(fd).metadata()) {
            let _ = std::os::unix::fs::chown(entry.path(), Some(m.uid()), Some(m.gid()));
            let _ = std::fs::set_permissions(entry.path(), m.permissions());
        }
    }
}
