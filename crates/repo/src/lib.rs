//! The repository engine: the only crate that uses `rustic_core`.
//!
//! It exposes a narrow [`Repository`] trait (back up a directory, back up a stream, list,
//! restore, dump, delete, check) over restic's repository format v2, and hides the engine's
//! rough edges measured on this machine:
//! - reader and walk errors that the engine logs and drops are counted, so a backup that
//!   missed files is reported as partial instead of silently complete;
//! - a failed stream producer (a dump or `docker save` that exits non-zero) never leaves a
//!   snapshot behind: the truncated snapshot is deleted before the error is returned;
//! - a panic inside the engine's restore (it `unwrap`s pack read errors) is contained and the
//!   restored files are verified chunk by chunk, so the caller learns exactly which files are
//!   wrong;
//! - packs are kept small at `init` so restore memory stays bounded (the engine reads whole
//!   pack ranges on 20 threads);
//! - every call is synchronous and must run on a plain or blocking thread, never inside an
//!   async runtime (the object-store backend starts its own).
//!
//! Error policy: every error names the operation and the repository location, and says what
//! to do; wrong password and missing repository are distinct variants because the CLI maps
//! them to distinct exit codes.

#![warn(missing_docs)]

#[cfg(feature = "craft")]
pub mod craft;
mod error;
mod lock;
mod parallel;
mod progress;
mod rustic;
pub mod s3;
mod source;
mod store;
mod tree_check;
mod verify;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use error::RepoError;
pub use lock::{HeldLock, LockTimings};
pub use progress::{ProgressEvent, ProgressSink};
pub use rustic::{RepoLocation, RepoSettings, RusticRepository};

/// One snapshot as stored in the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The snapshot id, hex.
    pub id: String,
    /// When it was taken.
    pub time: jiff::Timestamp,
    /// The host that took it.
    pub hostname: String,
    /// Its tags (`lifeboat`, `container=NAME`, `backup=ID`, ...).
    pub tags: Vec<String>,
    /// The paths it holds.
    pub paths: Vec<String>,
    /// Free text stored encrypted with the snapshot (Lifeboat keeps the manifest here).
    pub description: Option<String>,
}

/// What a backup of one source stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartReport {
    /// The new snapshot's id.
    pub snapshot_id: String,
    /// Files read.
    pub files: u64,
    /// Directories read.
    pub dirs: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Bytes the repository grew by (after deduplication and compression).
    pub added_bytes: u64,
    /// Entries that could not be read (path and reason). Non-empty means the snapshot lacks them.
    pub unreadable: Vec<String>,
}

/// What one restore wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Files written (or found identical).
    pub files: u64,
    /// Directories created (or found).
    pub dirs: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// A producer of a byte stream (a dump, an image export) and the verdict on how it ended.
pub trait StreamSource: Send {
    /// The bytes to store. Read errors fail the backup.
    fn reader(&mut self) -> Box<dyn Read + Send>;
    /// Called after the stream hit end-of-file: `Err` when the producer failed (non-zero exit,
    /// truncated output), in which case the snapshot is deleted.
    fn finish(&mut self) -> Result<(), String>;
}

/// A request to back up a directory tree.
#[derive(Debug, Clone)]
pub struct DirBackup<'a> {
    /// The directory on this host to read.
    pub source: &'a Path,
    /// The path the data gets inside the snapshot, e.g. `/volumes/pgdata`.
    pub as_path: &'a str,
    /// Tags for the snapshot.
    pub tags: &'a [String],
    /// Free text stored (encrypted) with the snapshot.
    pub description: Option<String>,
    /// Paths under `source` to leave out, each with everything below it.
    pub exclude: &'a [PathBuf],
    /// Called before every read of a file's data (by every reading thread): it may hold the
    /// read back while the host is busy.
    pub pace: Option<Arc<dyn Pace>>,
}

/// Holds reads back while the host is busy (see `lifeboat-core`'s tuning).
pub trait Pace: Send + Sync + std::fmt::Debug {
    /// Returns when the next read may go ahead.
    fn pace(&self);
}

/// A request to back up a stream as one file.
pub struct StreamBackup<'a> {
    /// The file path inside the snapshot, e.g. `/image/web.tar`.
    pub path: &'a str,
    /// Tags for the snapshot.
    pub tags: &'a [String],
    /// Free text stored (encrypted) with the snapshot.
    pub description: Option<String>,
    /// The snapshot's time (default: now); a copy keeps its original's.
    pub time: Option<jiff::Timestamp>,
}

/// Owner, mode and modification time of an entry of a [`TreeBackup`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryMeta {
    /// Owner's numeric id.
    pub uid: u32,
    /// Group's numeric id.
    pub gid: u32,
    /// Unix permission bits (with setuid, setgid and sticky).
    pub mode: u32,
    /// Modification time.
    pub mtime: Option<jiff::Timestamp>,
}

/// A file of a [`TreeBackup`] whose bytes are produced only when the backup reads it (a
/// database's pages read inside one transaction), so nothing is staged on disk and only as
/// many producers run at once as the backup has reading threads.
pub trait FileProducer: Send {
    /// Starts producing: the file's bytes (its size is what they come to).
    fn start(&mut self) -> Result<Box<dyn Read + Send>, String>;
    /// Called once the bytes were read (or the backup gave up): `Err` when they are not
    /// whole, in which case the snapshot is deleted. Never started: `Ok`.
    fn finish(&mut self) -> Result<(), String>;
}

/// A request to back up a directory tree whose files are produced on the fly.
pub struct TreeBackup<'a> {
    /// The tree's path inside the snapshot, e.g. `/sqlite/volumes/app`.
    pub as_path: &'a str,
    /// Tags for the snapshot.
    pub tags: &'a [String],
    /// The root directory's owner and mode.
    pub root: EntryMeta,
    /// Directories below the root (relative paths); missing parents of files get `root`'s.
    pub dirs: Vec<(PathBuf, EntryMeta)>,
    /// The files (relative paths), each produced when the backup reaches it.
    pub files: Vec<(PathBuf, EntryMeta, Box<dyn FileProducer>)>,
}

/// One key (password) that opens the repository.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyInfo {
    /// Its id (the name of its file under `keys/`).
    pub id: String,
    /// It is the key this process opened the repository with.
    pub current: bool,
    /// Where and by whom it was made (as restic records it).
    pub hostname: Option<String>,
    /// The user who made it.
    pub username: Option<String>,
    /// When (RFC 3339).
    pub created: Option<String>,
}

/// What a copy of snapshots into another repository added there.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CopyReport {
    /// Snapshots written there.
    pub snapshots: usize,
    /// Bytes of pack files written there: only the data it lacked.
    pub bytes_added: u64,
}

/// What a prune found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PruneReport {
    /// Packs removed or marked for removal.
    pub packs_removed: u64,
    /// Bytes of unused blobs dropped.
    pub bytes_removed: u64,
}

/// Outcome of `check`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Damage found (each names the object).
    pub errors: Vec<String>,
    /// Findings that are not damage (unused data, say).
    pub warnings: Vec<String>,
}

/// Asked right before an irreversible step; `Err(why)` means: do not take it.
pub type GoAhead<'a> = &'a dyn Fn() -> Result<(), String>;

/// The repository operations Lifeboat needs. Implementations are synchronous; call them from
/// a plain thread (or `spawn_blocking`), never from inside an async task.
pub trait Repository: Send + Sync {
    /// Stores `req.source` as a new snapshot. On `Err` no snapshot exists. On `Ok` with a
    /// non-empty `unreadable`, the snapshot exists but lacks those entries.
    fn backup_dir(&self, req: &DirBackup<'_>) -> Result<PartReport, RepoError>;

    /// Stores the stream as a single file snapshot. On `Err` (read error or the producer's
    /// `finish` failing) no snapshot exists.
    fn backup_stream(
        &self,
        req: &StreamBackup<'_>,
        source: &mut dyn StreamSource,
    ) -> Result<PartReport, RepoError>;

    /// Stores a tree of produced files as a new snapshot. Every file is read whole: none is
    /// taken from a parent snapshot. On `Err` (a producer that failed to start or finished
    /// with an error) no snapshot exists.
    fn backup_tree(&self, req: TreeBackup<'_>) -> Result<PartReport, RepoError>;

    /// Every snapshot carrying all of `tags`, oldest first.
    fn snapshots(&self, tags: &[String]) -> Result<Vec<SnapshotInfo>, RepoError>;

    /// Deletes snapshots (their data stays until a prune). A snapshot already gone is not an
    /// error: a backup's orphan clean-up and a retention run may race to delete the same
    /// parts. Refused ([`RepoError::UnreadableSnapshots`]) while a snapshot file cannot be read.
    fn delete(&self, ids: &[String]) -> Result<(), RepoError>;

    /// The ids of snapshot files that cannot be read (damaged): [`Repository::snapshots`]
    /// leaves them out.
    fn unreadable_snapshots(&self) -> Result<Vec<String>, RepoError> {
        Ok(Vec::new())
    }

    /// Restores `path` of snapshot `id` into `target` with numeric ownership, modes, times,
    /// xattrs, links and holes. On `Err` the target may hold some files; the error names the
    /// files that are missing or wrong.
    fn restore_dir(&self, id: &str, path: &str, target: &Path) -> Result<RestoreReport, RepoError>;

    /// Writes the content of file `path` in snapshot `id` to `out`.
    fn dump(&self, id: &str, path: &str, out: &mut dyn Write) -> Result<u64, RepoError>;

    /// Removes data no snapshot references any more (after [`Repository::delete`]). Packs
    /// are marked first and deleted by a later prune at least 23 hours on (restic's two-phase
    /// delete), so a backup from another host that started before is never broken. The
    /// caller must make sure no backup writes meanwhile (Lifeboat's `RepoGate`).
    fn prune(&self) -> Result<PruneReport, RepoError> {
        self.prune_if(&|| Ok(()))
    }

    /// [`Repository::prune`], asking `go_ahead` once the plan is made and right before the
    /// first deletion: an `Err` there stops it with [`RepoError::Withdrawn`], nothing deleted.
    fn prune_if(&self, go_ahead: GoAhead<'_>) -> Result<PruneReport, RepoError>;

    /// Checks the repository structure, and every pack's content with `read_data`.
    fn check(&self, read_data: bool) -> Result<CheckReport, RepoError>;

    /// Holds a repository lock (restic's format, seen by every host and by restic) until the
    /// handle is dropped, so a run's parts and manifest are all written under one lock.
    /// `None` where the store has no locks (test doubles).
    fn lock_run(&self, exclusive: bool) -> Result<Option<std::sync::Arc<HeldLock>>, RepoError> {
        let _ = exclusive;
        Ok(None)
    }

    /// Where the repository lives, for messages.
    fn location(&self) -> &str;

    /// The repository's own id (from its `config`): one repository has one id however its
    /// location is spelled, so it keys everything shared between processes (the prune gate).
    fn id(&self) -> &str;
}
