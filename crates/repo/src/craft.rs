//! Test support (feature `craft`): snapshots written with the repository's key whose trees
//! hold whatever names and links a test asks for, through the engine's own archiver. This is
//! what someone holding the key can do, so restores are tested against exactly that.

use std::ffi::OsStr;
use std::io::Cursor;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustic_core::{
    BackupOptions, ReadSource, ReadSourceEntry, RusticResult,
    repofile::{Metadata, Node, NodeType},
};

use crate::{RepoError, Repository, RusticRepository};

/// What one crafted entry is.
#[derive(Debug, Clone)]
pub enum CraftedKind {
    /// A directory; its children follow with paths below it.
    Dir,
    /// A file with this content.
    File(Vec<u8>),
    /// A symlink to this target.
    Symlink(String),
    /// A file that claims to share inode `inode` with every other entry of that inode (the
    /// restore recreates them as hard links to the first one listed).
    HardLinked {
        /// The file's content.
        content: Vec<u8>,
        /// The inode the entries share.
        inode: u64,
    },
}

/// One entry: `path` gives its place in the tree (sorted, depth first, as the archiver
/// expects); `name` is the name stored for it, which need not match `path`.
#[derive(Debug, Clone)]
pub struct CraftedEntry {
    /// Its place in the tree (sorted, depth first).
    pub path: String,
    /// The name stored for it (raw bytes; may be hostile).
    pub name: Vec<u8>,
    /// What it is.
    pub kind: CraftedKind,
}

impl CraftedEntry {
    /// An entry at `path`, stored under `name`.
    pub fn new(path: &str, name: &[u8], kind: CraftedKind) -> Self {
        CraftedEntry {
            path: path.to_string(),
            name: name.to_vec(),
            kind,
        }
    }
}

struct Crafted {
    entries: Vec<CraftedEntry>,
}

impl ReadSource for Crafted {
    type Open = Cursor<Vec<u8>>;
    type Iter = std::vec::IntoIter<RusticResult<ReadSourceEntry<Self::Open>>>;

    fn size(&self) -> RusticResult<Option<u64>> {
        Ok(None)
    }

    fn entries(&self) -> Self::Iter {
        let mut out = Vec::new();
        for e in &self.entries {
            let mut meta = Metadata {
                mode: Some(0o644),
                mtime: Some(jiff::Timestamp::UNIX_EPOCH),
                uid: Some(0),
                gid: Some(0),
                ..Default::default()
            };
            let (kind, content) = match &e.kind {
                CraftedKind::Dir => {
                    meta.mode = Some(0o777 | 1 << 31);
                    (NodeType::Dir, None)
                }
                CraftedKind::File(c) => (NodeType::File, Some(c.clone())),
                CraftedKind::Symlink(t) => (NodeType::from_link(Path::new(t)), None),
                CraftedKind::HardLinked { content, inode } => {
                    meta.inode = *inode;
                    meta.device_id = 42;
                    meta.links = 2;
                    (NodeType::File, Some(content.clone()))
                }
            };
            if let Some(c) = &content {
                meta.size = c.len() as u64;
            }
            let node = Node::new_node(OsStr::from_bytes(&e.name), kind, meta);
            out.push(Ok(ReadSourceEntry {
                path: PathBuf::from(&e.path),
                node,
                open: content.map(Cursor::new),
            }));
        }
        out.into_iter()
    }
}

impl RusticRepository {
    /// Writes a snapshot of `entries` at `snapshot_path` (the entries' common root, e.g.
    /// `/volumes/v`) and returns its id.
    pub fn craft_snapshot(
        &self,
        snapshot_path: &str,
        entries: Vec<CraftedEntry>,
        tags: &[String],
        description: Option<String>,
    ) -> Result<String, RepoError> {
        let mut opts = BackupOptions::default();
        opts.parent_opts.force = true;
        let snap = self.snapshot_template(tags, description)?;
        let source = Crafted { entries };
        let _lock = self.hold_lock(false)?;
        let snap = self.with_ids_index(|repo| {
            repo.archive(&opts, &source, snap, &[PathBuf::from(snapshot_path)])
                .map_err(self.err("crafting a snapshot"))
        })?;
        Ok(snap.id.to_hex().to_string())
    }
}

/// Moves the time of every lock of `repo` back by `by` (re-encrypted under a new name), as
/// if its holder had stopped refreshing it that long ago.
pub fn age_locks(repo: &RusticRepository, by: std::time::Duration) -> Result<usize, RepoError> {
    repo.locker_for_craft()
        .age_all(by, true)
        .map_err(|reason| RepoError::Storage {
            location: repo.location().to_string(),
            reason,
        })
}

/// Moves the time written inside every lock of `repo` back by `by`, the files staying as
/// fresh as they are: what a holder whose clock is behind by `by` writes.
pub fn skew_locks(repo: &RusticRepository, by: std::time::Duration) -> Result<usize, RepoError> {
    repo.locker_for_craft()
        .age_all(by, false)
        .map_err(|reason| RepoError::Storage {
            location: repo.location().to_string(),
            reason,
        })
}
