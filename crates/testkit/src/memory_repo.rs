//! An in-memory [`Repository`] for unit tests of core logic: snapshots are kept as trees of
//! files in memory (content, mode, symlinks), with tags, times and descriptions. It honours
//! the trait's contracts (a failed stream leaves no snapshot, unknown ids are
//! `SnapshotNotFound`), proven by the same behaviour suite as the real engine
//! ([`crate::contract::repository`]). Never a proof that a feature works end to end.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use lifeboat_repo::{
    CheckReport, DirBackup, PartReport, PruneReport, RepoError, Repository, RestoreReport,
    SnapshotInfo, StreamBackup, StreamSource, TreeBackup,
};

#[derive(Debug, Clone)]
enum Entry {
    Dir { mode: u32 },
    File { mode: u32, content: Vec<u8> },
    Symlink { target: PathBuf },
}

#[derive(Debug, Clone)]
struct Snapshot {
    info: SnapshotInfo,
    /// Paths relative to the snapshot's root path (`""` is the root itself).
    tree: BTreeMap<PathBuf, Entry>,
}

/// Snapshots in memory; ids are sequential hex.
#[derive(Debug, Default)]
pub struct MemoryRepository {
    snapshots: Mutex<Vec<Snapshot>>,
    next: Mutex<u64>,
}

impl MemoryRepository {
    /// An empty repository.
    pub fn new() -> MemoryRepository {
        MemoryRepository::default()
    }

    fn store(
        &self,
        path: &str,
        req_tags: &[String],
        description: Option<String>,
        tree: BTreeMap<PathBuf, Entry>,
    ) -> String {
        let mut next = self.next.lock().unwrap();
        *next += 1;
        let id = format!("{:064x}", *next);
        let mut list = self.snapshots.lock().unwrap();
        // Keep times strictly increasing, as a real repository's sort would.
        let now = jiff::Timestamp::now();
        let time = list
            .last()
            .map(|s| s.info.time)
            .filter(|t| *t >= now)
            .map_or(now, |t| t + jiff::SignedDuration::from_nanos(1));
        list.push(Snapshot {
            info: SnapshotInfo {
                id: id.clone(),
                time,
                hostname: "memory".into(),
                tags: req_tags.to_vec(),
                paths: vec![path.to_string()],
                description,
            },
            tree,
        });
        id
    }

    /// Stores `tree` as a snapshot and reports what it holds.
    fn keep(
        &self,
        path: &str,
        tags: &[String],
        description: Option<String>,
        tree: BTreeMap<PathBuf, Entry>,
    ) -> PartReport {
        let (files, dirs, bytes) = tree.values().fold((0, 0, 0), |(f, d, b), e| match e {
            Entry::File { content, .. } => (f + 1, d, b + content.len() as u64),
            Entry::Dir { .. } => (f, d + 1, b),
            Entry::Symlink { .. } => (f + 1, d, b),
        });
        PartReport {
            snapshot_id: self.store(path, tags, description, tree),
            files,
            dirs,
            bytes,
            added_bytes: bytes,
            unreadable: Vec::new(),
        }
    }

    fn find(&self, id: &str) -> Result<Snapshot, RepoError> {
        self.snapshots
            .lock()
            .unwrap()
            .iter()
            .find(|s| !id.is_empty() && s.info.id.starts_with(id))
            .cloned()
            .ok_or_else(|| RepoError::SnapshotNotFound {
                id: id.to_string(),
                location: self.location().to_string(),
            })
    }
}

fn read_tree(source: &Path, exclude: &[PathBuf]) -> std::io::Result<BTreeMap<PathBuf, Entry>> {
    let mut tree = BTreeMap::new();
    for item in walkdir::WalkDir::new(source).sort_by_file_name() {
        let item = item.map_err(std::io::Error::other)?;
        if exclude.iter().any(|x| item.path().starts_with(x)) {
            continue;
        }
        let rel = item.path().strip_prefix(source).unwrap().to_path_buf();
        let m = item.path().symlink_metadata()?;
        let mode = m.mode() & 0o7777;
        let entry = if m.is_dir() {
            Entry::Dir { mode }
        } else if m.file_type().is_symlink() {
            Entry::Symlink {
                target: std::fs::read_link(item.path())?,
            }
        } else {
            Entry::File {
                mode,
                content: std::fs::read(item.path())?,
            }
        };
        tree.insert(rel, entry);
    }
    Ok(tree)
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl Fn(std::io::Error) -> RepoError + 'a {
    move |source| RepoError::Io {
        op,
        path: path.display().to_string(),
        source,
    }
}

impl Repository for MemoryRepository {
    fn backup_dir(&self, req: &DirBackup<'_>) -> Result<PartReport, RepoError> {
        let tree = read_tree(req.source, req.exclude).map_err(io("reading", req.source))?;
        Ok(self.keep(req.as_path, req.tags, req.description.clone(), tree))
    }

    fn backup_stream(
        &self,
        req: &StreamBackup<'_>,
        source: &mut dyn StreamSource,
    ) -> Result<PartReport, RepoError> {
        let mut content = Vec::new();
        let read = source.reader().read_to_end(&mut content);
        let finished = source.finish();
        let failed = |reason: String| RepoError::StreamFailed {
            path: req.path.to_string(),
            reason,
        };
        read.map_err(|e| failed(e.to_string()))?;
        finished.map_err(failed)?;
        let file = Entry::File {
            mode: 0o600,
            content,
        };
        let tree = BTreeMap::from([(PathBuf::new(), file)]);
        Ok(self.keep(req.path, req.tags, req.description.clone(), tree))
    }

    fn backup_tree(&self, req: TreeBackup<'_>) -> Result<PartReport, RepoError> {
        let failed = |reason: String| RepoError::StreamFailed {
            path: req.as_path.to_string(),
            reason,
        };
        let mut tree = BTreeMap::new();
        tree.insert(
            PathBuf::new(),
            Entry::Dir {
                mode: req.root.mode,
            },
        );
        for (rel, meta) in &req.dirs {
            tree.insert(rel.clone(), Entry::Dir { mode: meta.mode });
        }
        for (rel, meta, mut producer) in req.files {
            for parent in rel.ancestors().skip(1) {
                tree.entry(parent.to_path_buf()).or_insert(Entry::Dir {
                    mode: req.root.mode,
                });
            }
            let mut content = Vec::new();
            let read = producer
                .start()
                .and_then(|mut r| r.read_to_end(&mut content).map_err(|e| e.to_string()));
            let finished = producer.finish();
            read.and(finished).map_err(failed)?;
            tree.insert(
                rel,
                Entry::File {
                    mode: meta.mode,
                    content,
                },
            );
        }
        Ok(self.keep(req.as_path, req.tags, None, tree))
    }

    fn snapshots(&self, tags: &[String]) -> Result<Vec<SnapshotInfo>, RepoError> {
        Ok(self
            .snapshots
            .lock()
            .unwrap()
            .iter()
            .filter(|s| tags.iter().all(|t| s.info.tags.contains(t)))
            .map(|s| s.info.clone())
            .collect())
    }

    fn delete(&self, ids: &[String]) -> Result<(), RepoError> {
        self.snapshots
            .lock()
            .unwrap()
            .retain(|s| !ids.iter().any(|id| s.info.id.starts_with(id.as_str())));
        Ok(())
    }

    fn restore_dir(&self, id: &str, path: &str, target: &Path) -> Result<RestoreReport, RepoError> {
        let snap = self.find(id)?;
        let root = Path::new(path)
            .strip_prefix(snap.info.paths[0].as_str())
            .map_err(|_| RepoError::SnapshotNotFound {
                id: format!("{id}:{path}"),
                location: self.location().to_string(),
            })?
            .to_path_buf();
        let mut report = RestoreReport::default();
        for (rel, entry) in snap.tree.iter().filter(|(p, _)| p.starts_with(&root)) {
            let inner = rel.strip_prefix(&root).unwrap();
            let dest = if inner.as_os_str().is_empty() {
                target.to_path_buf()
            } else {
                target.join(inner)
            };
            match entry {
                Entry::Dir { mode } => {
                    std::fs::create_dir_all(&dest).map_err(io("creating", &dest))?;
                    std::fs::set_permissions(&dest, PermissionsExt::from_mode(*mode))
                        .map_err(io("chmod", &dest))?;
                    report.dirs += 1;
                }
                Entry::File { mode, content } => {
                    if let Some(p) = dest.parent() {
                        std::fs::create_dir_all(p).map_err(io("creating", p))?;
                    }
                    std::fs::write(&dest, content).map_err(io("writing", &dest))?;
                    std::fs::set_permissions(&dest, PermissionsExt::from_mode(*mode))
                        .map_err(io("chmod", &dest))?;
                    report.files += 1;
                    report.bytes += content.len() as u64;
                }
                Entry::Symlink { target: link } => {
                    std::os::unix::fs::symlink(link, &dest).map_err(io("linking", &dest))?;
                    report.files += 1;
                }
            }
        }
        Ok(report)
    }

    fn dump(&self, id: &str, path: &str, out: &mut dyn Write) -> Result<u64, RepoError> {
        let snap = self.find(id)?;
        let rel = Path::new(path)
            .strip_prefix(snap.info.paths[0].as_str())
            .unwrap_or(Path::new(""));
        match snap.tree.get(rel) {
            Some(Entry::File { content, .. }) => {
                out.write_all(content)
                    .map_err(io("writing", Path::new(path)))?;
                Ok(content.len() as u64)
            }
            _ => Err(RepoError::SnapshotNotFound {
                id: format!("{id}:{path}"),
                location: self.location().to_string(),
            }),
        }
    }

    fn prune_if(&self, go_ahead: lifeboat_repo::GoAhead<'_>) -> Result<PruneReport, RepoError> {
        go_ahead().map_err(|why| RepoError::Withdrawn {
            step: "pruning".into(),
            why,
        })?;
        Ok(PruneReport::default())
    }

    fn check(&self, _read_data: bool) -> Result<CheckReport, RepoError> {
        Ok(CheckReport::default())
    }

    fn location(&self) -> &str {
        "memory:"
    }

    fn id(&self) -> &str {
        "memory"
    }
}
