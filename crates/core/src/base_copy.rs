//! Hot mode for PostgreSQL by files (`lifeboat.strategy=postgres-files`): the server's data
//! directory is read with the rest of its mount while a base backup is open on the server
//! ([`lifeboat_consistency::base_backup`]), and a `wal` part holds what makes that copy
//! consistent: the backup label and the write-ahead log written while it was read. Restored
//! over the mount's files, they make the server replay that log when it starts, to the
//! moment the backup ended.
//!
//! Unlike a dump, the server holds no transaction open for the copy, so its writers do not
//! keep every row version they replace; the restore loads nothing (the files are the
//! database). The files are those of the server's major version: the restored image runs
//! the same one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lifeboat_capture::{CapturePlan, PlannedPart};
use lifeboat_consistency::base_backup::{self, BaseBackup};
use lifeboat_docker::{ContainerDetails, Engine};
use lifeboat_model::PartKind;
use lifeboat_repo::{EntryMeta, FileProducer, PartReport, Repository, TreeBackup};
use lifeboat_safepath::Beneath;

use crate::hot::{entry_meta, tree_dirs};
use crate::{CoreError, Note};

/// Files of a live data directory the copy leaves out (as the server's own base backup
/// does): the running server's lock and options, a label or map left by an earlier backup
/// (the `wal` part brings this one's), and the log directory (the `wal` part holds the
/// segments the copy needs, and the directory with them).
const LEFT_OUT: [&str; 5] = [
    "postmaster.pid",
    "postmaster.opts",
    "backup_label",
    "tablespace_map",
    "pg_wal",
];

/// Directories of a live data directory copied empty: replication slots (they would hold
/// the restored server's log forever; the backup's own temporary slot is one) and temporary
/// statistics.
const EMPTIED: [&str; 2] = ["pg_replslot", "pg_stat_tmp"];

/// How long the server may take to answer a step (the start waits for a checkpoint).
const ANSWER: Duration = Duration::from_secs(600);

fn refused(what: String) -> CoreError {
    CoreError::Hot(format!(
        "{what} (lifeboat.strategy=postgres-files); use lifeboat.strategy=postgres to back \
         it up by its dump"
    ))
}

/// The data directory a files copy reads (the index of its mount among `mounts`, its host
/// path), or why there is none it can copy: a directory holding `PG_VERSION` and `global`,
/// at most three levels below one of `mounts`, with its log (`pg_wal`) inside it and no
/// tablespace elsewhere.
pub(crate) fn data_dir<'a>(
    mounts: impl IntoIterator<Item = (usize, &'a Path)>,
) -> Result<(usize, PathBuf), String> {
    // Never through a symlink: the container owns these files.
    let is = |p: &Path, name: &str, dir: bool| {
        std::fs::symlink_metadata(p.join(name))
            .is_ok_and(|m| if dir { m.is_dir() } else { m.is_file() })
    };
    let mut found = Vec::new();
    for (index, mount) in mounts {
        let dirs = walkdir::WalkDir::new(mount)
            .max_depth(3)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_dir())
            .filter(|e| is(e.path(), "PG_VERSION", false) && is(e.path(), "global", true));
        found.extend(dirs.map(|d| (index, d.into_path())));
    }
    // A tablespace is a link in `pg_tblspc` to a directory elsewhere.
    let has_tablespaces = |dir: &Path| {
        is(dir, "pg_tblspc", true)
            && std::fs::read_dir(dir.join("pg_tblspc")).is_ok_and(|mut d| d.next().is_some())
    };
    match found.len() {
        1 if !is(&found[0].1, "pg_wal", true) => Err(format!(
            "{}/pg_wal is not a directory of the mount (a server made with `initdb --waldir` \
             keeps its log elsewhere, which a copy of the mount does not hold)",
            found[0].1.display()
        )),
        1 if has_tablespaces(&found[0].1) => Err(format!(
            "{} has tablespaces (pg_tblspc), kept outside the data directory, which a copy of \
             the mount does not hold",
            found[0].1.display()
        )),
        1 => Ok(found.remove(0)),
        0 => Err(
            "no PostgreSQL data directory (PG_VERSION, global/) in the container's volumes or \
             bind mounts: the files can only be copied from a mount"
                .into(),
        ),
        n => Err(format!(
            "{n} PostgreSQL data directories in the mounts: {}",
            found
                .iter()
                .map(|(_, d)| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Opens a base backup on the server (a checkpoint first), leaves the data directory's
/// run-time files out of its mount's copy and plans the `wal` part right after that mount.
/// The backup stays open until the returned session is dropped.
pub(crate) fn open(
    engine: &dyn Engine,
    details: &ContainerDetails,
    plan: &mut CapturePlan,
    note: Note<'_>,
) -> Result<BaseBackup, CoreError> {
    let mounts = plan.parts.iter().enumerate().filter_map(|(index, p)| {
        matches!(p.kind, PartKind::Volume | PartKind::Bind)
            .then_some((index, p.read_path.as_path()))
    });
    let (index, dir) = data_dir(mounts).map_err(refused)?;
    let s = crate::dump::strategy(&details.config)
        .ok_or_else(|| refused(format!("`{}` is not a PostgreSQL server", details.name)))?;
    let mount = &plan.parts[index];
    note(&format!(
        "{}: data directory {} copied as files during a base backup",
        mount.name,
        dir.display()
    ));
    note(&format!(
        "{}: starting a base backup (checkpoint)",
        details.name
    ));
    let backup = base_backup::start(engine, &details.id, &s.client, &s.env, ANSWER)
        .map_err(|e| refused(e.to_string()))?;
    note(&format!(
        "{}: base backup open from WAL segment {}",
        details.name, backup.start_wal
    ));
    // Listed once the backup is open: its own slot is among them.
    let mut exclude: Vec<PathBuf> = LEFT_OUT.iter().map(|f| dir.join(f)).collect();
    let rel = dir
        .strip_prefix(&mount.read_path)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    if let Ok(root) = Beneath::open(&mount.read_path) {
        for emptied in EMPTIED {
            let names = root.list_dir(&rel.join(emptied)).unwrap_or_default();
            exclude.extend(names.iter().map(|n| dir.join(emptied).join(n)));
        }
    }
    plan.add_wal(index, rel, exclude);
    Ok(backup)
}

/// Ends the base backup and stores the `wal` part: the backup label and the log segments
/// the copy needs, under their paths in the mount. The session (and the slot that keeps the
/// segments) ends when `backup` is dropped, after they are stored.
pub(crate) fn store(
    repo: &dyn Repository,
    part: &PlannedPart,
    backup: &mut BaseBackup,
    tags: &[String],
    note: Note<'_>,
) -> Result<PartReport, CoreError> {
    let end = backup.stop().map_err(|e| CoreError::Hot(e.to_string()))?;
    if !end.tablespace_map.is_empty() {
        return Err(refused(
            "the server has tablespaces outside its data directory, which a copy of the \
             mount does not hold"
                .into(),
        ));
    }
    let mount = &part.read_path;
    let data_dir = part.databases.first().cloned().unwrap_or_default();
    let root = Arc::new(Beneath::open(mount).map_err(CoreError::io("opening", mount.display()))?);
    let wal_dir = data_dir.join("pg_wal");
    let wal_shown = mount.join(&wal_dir);
    let listing = root
        .list_dir(&wal_dir)
        .map_err(CoreError::io("listing", wal_shown.display()))?;
    let first = root
        .open_file(&wal_dir.join(&end.start_wal))
        .and_then(|f| f.metadata())
        .map_err(CoreError::io(
            "reading",
            wal_shown.join(&end.start_wal).display(),
        ))?;
    let segments = end.needed_segments(first.len()).map_err(CoreError::Hot)?;
    let present: std::collections::HashSet<&std::ffi::OsStr> =
        listing.iter().map(|n| n.as_os_str()).collect();
    let missing: Vec<&String> = segments
        .iter()
        .filter(|s| !present.contains(std::ffi::OsStr::new(s.as_str())))
        .collect();
    if !missing.is_empty() {
        return Err(CoreError::Hot(format!(
            "{} of the {} WAL segments from {} to {} are gone from {} (first: {}): the \
             server removed them before they were copied (is max_slot_wal_keep_size set too \
             low for the time a copy takes?)",
            missing.len(),
            segments.len(),
            end.start_wal,
            end.stop_wal,
            wal_shown.display(),
            missing[0]
        )));
    }
    note(&format!(
        "{}: base backup ended; storing its label and {} WAL segment(s) ({} to {})",
        part.name,
        segments.len(),
        end.start_wal,
        end.stop_wal
    ));
    let owner = root
        .locate(&data_dir.join("PG_VERSION"))
        .and_then(|l| l.open_file(lifeboat_safepath::Access::Read, false))
        .and_then(|f| f.metadata())
        .map_err(CoreError::io("reading", mount.join(&data_dir).display()))?;
    let label_meta = EntryMeta {
        mode: 0o600,
        mtime: None,
        ..entry_meta(&owner)
    };
    let mut files: Vec<(PathBuf, EntryMeta, Box<dyn FileProducer>)> = vec![(
        data_dir.join("backup_label"),
        label_meta,
        Box::new(Ready(Some(Box::new(std::io::Cursor::new(end.label))))),
    )];
    for name in &segments {
        let rel = wal_dir.join(name);
        let meta = root
            .open_file(&rel)
            .and_then(|f| f.metadata())
            .map_err(CoreError::io("reading", mount.join(&rel).display()))?;
        files.push((
            rel.clone(),
            entry_meta(&meta),
            Box::new(Segment {
                root: root.clone(),
                rel,
            }),
        ));
    }
    let paths: Vec<PathBuf> = files.iter().map(|(p, _, _)| p.clone()).collect();
    let (root_meta, dirs) = tree_dirs(&root, mount, &paths)?;
    repo.backup_tree(TreeBackup {
        as_path: &part.snapshot_path,
        tags,
        root: root_meta,
        dirs,
        files,
    })
    .map_err(CoreError::from)
}

/// A file whose bytes are ready.
struct Ready(Option<Box<dyn std::io::Read + Send>>);

impl FileProducer for Ready {
    fn start(&mut self) -> Result<Box<dyn std::io::Read + Send>, String> {
        self.0.take().ok_or_else(|| "read twice".to_string())
    }

    fn finish(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// A log segment, opened beneath the mount when the backup reaches it.
struct Segment {
    root: Arc<Beneath>,
    rel: PathBuf,
}

impl FileProducer for Segment {
    fn start(&mut self) -> Result<Box<dyn std::io::Read + Send>, String> {
        let file = self
            .root
            .open_file(&self.rel)
            .map_err(|e| format!("{}: {e}", self.rel.display()))?;
        Ok(Box::new(file))
    }

    fn finish(&mut self) -> Result<(), String> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data directory's markers at `dir`.
    fn cluster(dir: &Path) {
        std::fs::create_dir_all(dir.join("global")).unwrap();
        std::fs::create_dir_all(dir.join("pg_tblspc")).unwrap();
        std::fs::write(dir.join("PG_VERSION"), "15\n").unwrap();
    }

    #[test]
    fn the_data_directory_is_found_once_with_its_log_and_no_tablespace() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mounts = || [(0, a.path()), (3, b.path())];
        assert!(
            data_dir(mounts())
                .unwrap_err()
                .contains("no PostgreSQL data directory")
        );
        let dir = b.path().join("pgdata/15");
        cluster(&dir);
        // Its log elsewhere (`initdb --waldir`): a symlink, never followed.
        std::os::unix::fs::symlink(a.path(), dir.join("pg_wal")).unwrap();
        assert!(
            data_dir(mounts())
                .unwrap_err()
                .contains("pg_wal is not a directory")
        );
        std::fs::remove_file(dir.join("pg_wal")).unwrap();
        std::fs::create_dir(dir.join("pg_wal")).unwrap();
        assert_eq!(data_dir(mounts()).unwrap(), (3, dir.clone()));
        std::os::unix::fs::symlink(a.path(), dir.join("pg_tblspc/16384")).unwrap();
        assert!(data_dir(mounts()).unwrap_err().contains("has tablespaces"));
        std::fs::remove_file(dir.join("pg_tblspc/16384")).unwrap();
        // A data directory reached through a symlink is not one.
        std::os::unix::fs::symlink(&dir, a.path().join("linked")).unwrap();
        assert_eq!(data_dir(mounts()).unwrap(), (3, dir.clone()));
        cluster(&a.path().join("other"));
        assert!(
            data_dir(mounts())
                .unwrap_err()
                .contains("2 PostgreSQL data directories")
        );
    }
}
