//! Read sources handed to the engine's archiver.
//!
//! The archiver logs and drops every error it meets while walking or reading (and still
//! returns Ok). These wrappers record each such error first, so the caller can tell a
//! complete snapshot from a partial one.

use std::ffi::OsStr;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use lifeboat_safepath::{Access, Beneath, Located};
use rustic_core::{
    ErrorKind, LocalSource, ReadSource, ReadSourceEntry, ReadSourceOpen, RusticError, RusticResult,
    repofile::{Metadata, Node, NodeType},
};

/// Shared list of problems met while reading (path and reason).
#[derive(Debug, Default, Clone)]
pub(crate) struct Problems(Arc<Mutex<Vec<String>>>);

impl Problems {
    pub(crate) fn push(&self, problem: String) {
        if let Ok(mut list) = self.0.lock() {
            list.push(problem);
        }
    }
    pub(crate) fn take(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }
}

/// A reader that records its errors before passing them on.
pub(crate) struct RecordingReader<R> {
    inner: R,
    path: String,
    problems: Problems,
}

impl<R: Read> Read for RecordingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            self.problems
                .push(format!("{}: read failed: {e}", self.path));
        })
    }
}

/// Opens an entry, recording a failure to open.
pub(crate) struct RecordingOpen<O> {
    inner: O,
    path: String,
    problems: Problems,
}

impl<O: ReadSourceOpen> ReadSourceOpen for RecordingOpen<O> {
    type Reader = RecordingReader<O::Reader>;

    fn open(self) -> RusticResult<Self::Reader> {
        match self.inner.open() {
            Ok(inner) => Ok(RecordingReader {
                inner,
                path: self.path,
                problems: self.problems,
            }),
            Err(err) => {
                self.problems
                    .push(format!("{}: cannot open: {}", self.path, err.display_log()));
                Err(err)
            }
        }
    }
}

/// A local directory walk that records what the archiver would silently drop, and files
/// its entries under `as_path` itself (the engine's own `as_path` replaces the root
/// directory's metadata with a synthetic node, losing the volume root's owner and mode).
pub(crate) struct RecordingSource {
    pub(crate) inner: LocalSource,
    pub(crate) problems: Problems,
    pub(crate) source: PathBuf,
    pub(crate) as_path: PathBuf,
    pub(crate) exclude: Vec<PathBuf>,
    pub(crate) pace: Option<Arc<dyn crate::Pace>>,
}

/// Opens a walked file again beneath the source root, never through a symlink, and only if
/// it is still the file the walk saw (same device and inode): a container that swaps a
/// directory for a symlink to a host path mid-backup gets an error, not the host's file.
pub(crate) struct SafeOpen {
    root: Arc<Beneath>,
    rel: PathBuf,
    identity: (u64, u64),
    pace: Option<Arc<dyn crate::Pace>>,
}

/// A file of the source, each read held back by the backup's pace (if any).
pub(crate) struct SourceFile {
    file: std::fs::File,
    pace: Option<Arc<dyn crate::Pace>>,
}

impl Read for SourceFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(pace) = &self.pace {
            pace.pace();
        }
        self.file.read(buf)
    }
}

impl ReadSourceOpen for SafeOpen {
    type Reader = SourceFile;

    fn open(self) -> RusticResult<Self::Reader> {
        use std::os::unix::fs::MetadataExt;
        let opened = self
            .root
            .locate(&self.rel)
            .and_then(|l| l.open_file(Access::Read, false))
            .and_then(|f| {
                let m = f.metadata()?;
                if same_file(self.identity, (m.dev(), m.ino())) {
                    read_ahead(&f);
                    Ok(SourceFile {
                        file: f,
                        pace: self.pace.clone(),
                    })
                } else {
                    Err(std::io::Error::other(
                        "replaced during the backup (not the file the walk listed)",
                    ))
                }
            });
        opened.map_err(|e| {
            RusticError::with_source(
                ErrorKind::InputOutput,
                "`{path}` was not read: it must stay inside the mount.",
                e,
            )
            .attach_context("path", self.rel.display().to_string())
        })
    }
}

/// Tells the kernel the file is read from start to end once: it reads ahead twice as far
/// (fewer, larger reads from a cold disk). Only a hint; a failure changes nothing.
fn read_ahead(f: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: posix_fadvise only takes the descriptor (open, owned by `f`) and integers.
    #[allow(unsafe_code)]
    unsafe {
        libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL);
    }
}

/// The directory of the last entry checked, held open: entries come directory by directory,
/// so each directory is reached beneath the root (no symlink on the way) once, not once per
/// entry.
type LastDir = Option<(PathBuf, Located)>;

/// Whether the walked entry `rel` is reached beneath the root without a symlink and is
/// still what the walk described.
fn still_inside(root: &Beneath, rel: &Path, node: &Node, last: &mut LastDir) -> bool {
    let parent = rel.parent().unwrap_or(Path::new(""));
    match (last.as_mut(), rel.file_name()) {
        // The same directory as the last entry: only the name changes.
        (Some((dir, located)), Some(name)) if dir == parent => {
            located.name = name.to_os_string();
        }
        _ => match root.locate(rel) {
            Ok(located) => *last = Some((parent.to_path_buf(), located)),
            Err(_) => {
                *last = None;
                return false;
            }
        },
    }
    last.as_ref()
        .and_then(|(_, located)| located.identity().ok())
        .is_some_and(|id| same_file((node.meta.device_id, node.meta.inode), id))
}

/// The walk records the device only for hard-linked files; the inode always. Reaching the
/// file beneath the root without symlinks is what keeps it inside the mount; this only
/// tells that it is still the file the walk saw.
fn same_file(walked: (u64, u64), now: (u64, u64)) -> bool {
    walked.1 == now.1 && (walked.0 == 0 || walked.0 == now.0)
}

impl ReadSource for RecordingSource {
    type Open = RecordingOpen<SafeOpen>;
    type Iter = Box<dyn Iterator<Item = RusticResult<ReadSourceEntry<Self::Open>>> + Send>;

    fn size(&self) -> RusticResult<Option<u64>> {
        self.inner.size()
    }

    fn entries(&self) -> Self::Iter {
        let problems = self.problems.clone();
        let (source, as_path) = (self.source.clone(), self.as_path.clone());
        let exclude = self.exclude.clone();
        let pace = self.pace.clone();
        // The engine's walker skips the root directory itself; put it back with its real
        // metadata so the volume root keeps its owner, mode, times and xattrs.
        let root = match root_node(&source, &as_path) {
            Ok(None) => None,
            Ok(Some(node)) => Some(Ok(ReadSourceEntry {
                path: as_path.clone(),
                node,
                open: None,
            })),
            Err(e) => {
                problems.push(format!("{}: cannot read metadata: {e}", source.display()));
                None
            }
        };
        // Every entry is checked beneath the source root; a single-file source is its
        // parent directory's entry.
        let (root_dir, base) = match std::fs::symlink_metadata(&source) {
            Ok(m) if m.is_dir() => (source.clone(), PathBuf::new()),
            _ => (
                source.parent().map(Path::to_path_buf).unwrap_or_default(),
                source.file_name().map(PathBuf::from).unwrap_or_default(),
            ),
        };
        let beneath = match Beneath::open(&root_dir) {
            Ok(b) => Some(Arc::new(b)),
            Err(e) => {
                problems.push(format!("{}: cannot open: {e}", root_dir.display()));
                None
            }
        };
        let entries = self.inner.entries().filter(
            move |item| !matches!(item, Ok(ReadSourceEntry { path, .. }) if exclude.iter().any(|x| path.starts_with(x))),
        );
        let mut last_dir: LastDir = None;
        let checked = entries.filter_map(move |item| match item {
            Ok(ReadSourceEntry { path, node, open }) => {
                let Ok(rel) = path.strip_prefix(&source).map(Path::to_path_buf) else {
                    problems.push(format!("{}: left out: outside the source", path.display()));
                    return None;
                };
                let below_root = base.join(&rel);
                let shown = path.display().to_string();
                let beneath = beneath.as_ref()?;
                if !still_inside(beneath, &below_root, &node, &mut last_dir) {
                    problems.push(format!(
                        "{shown}: left out: it changed during the backup (moved, or reached \
                         through a symlink) and must stay inside the mount"
                    ));
                    return None;
                }
                let path = if rel.as_os_str().is_empty() {
                    as_path.clone()
                } else {
                    as_path.join(&rel)
                };
                let open = open.map(|_engine_open| RecordingOpen {
                    inner: SafeOpen {
                        root: beneath.clone(),
                        rel: below_root,
                        identity: (node.meta.device_id, node.meta.inode),
                        pace: pace.clone(),
                    },
                    path: path.display().to_string(),
                    problems: problems.clone(),
                });
                Some(Ok(ReadSourceEntry { path, node, open }))
            }
            Err(err) => {
                problems.push(format!("cannot read entry: {}", err.display_log()));
                Some(Err(err))
            }
        });
        Box::new(root.into_iter().chain(checked))
    }
}

/// The node of a directory `dir`, named after the last component of `as_path`; `None` when
/// `dir` is not a directory (the walker does yield a single file itself).
fn root_node(dir: &Path, as_path: &Path) -> std::io::Result<Option<Node>> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(dir)?;
    if !m.is_dir() {
        return Ok(None);
    }
    let ts = |secs: i64, nsecs: i64| jiff::Timestamp::new(secs, nsecs as i32).ok();
    let mut meta = Metadata {
        mode: Some(go_dir_mode(m.mode())),
        mtime: ts(m.mtime(), m.mtime_nsec()),
        atime: ts(m.atime(), m.atime_nsec()),
        ctime: ts(m.ctime(), m.ctime_nsec()),
        uid: Some(m.uid()),
        gid: Some(m.gid()),
        inode: m.ino(),
        device_id: m.dev(),
        links: m.nlink(),
        ..Default::default()
    };
    // The attribute type is not exported by the engine; build it through its serde form.
    let xattrs: Vec<serde_json::Value> = xattr::list(dir)?
        .filter_map(|name| {
            let value = xattr::get(dir, &name).ok().flatten()?;
            Some(serde_json::json!({"name": name.to_string_lossy(), "value": base64(&value)}))
        })
        .collect();
    meta.extended_attributes =
        serde_json::from_value(serde_json::Value::Array(xattrs)).unwrap_or_default();
    let name = as_path.file_name().unwrap_or(OsStr::new("root"));
    Ok(Some(Node::new_node(name, NodeType::Dir, meta)))
}

/// A directory's Unix mode as the Go `FileMode` restic's format stores.
pub(crate) fn go_dir_mode(unix: u32) -> u32 {
    go_file_mode(unix) | 1 << 31
}

/// A regular file's Unix mode as the Go `FileMode` restic's format stores.
fn go_file_mode(unix: u32) -> u32 {
    let mut go = unix & 0o777;
    for (u, g) in [(0o4000, 1 << 23), (0o2000, 1 << 22), (0o1000, 1 << 20)] {
        if unix & u != 0 {
            go |= g;
        }
    }
    go
}

fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A single-file source over a stream, read through a large buffer: without it the chunker
/// sees a pipe's small reads and slows down about twentyfold.
pub(crate) struct StreamReadSource {
    pub(crate) path: PathBuf,
    pub(crate) reader: Mutex<Option<StreamReader>>,
}

type StreamReader = RecordingReader<BufReader<Box<dyn Read + Send>>>;

pub(crate) const STREAM_BUFFER: usize = 1 << 20;

impl StreamReadSource {
    pub(crate) fn new(path: &str, reader: Box<dyn Read + Send>, problems: Problems) -> Self {
        StreamReadSource {
            path: PathBuf::from(path),
            reader: Mutex::new(Some(Self::reader(path, reader, problems))),
        }
    }

    /// `reader` behind the large buffer, its errors recorded under `path`.
    fn reader(path: &str, reader: Box<dyn Read + Send>, problems: Problems) -> StreamReader {
        RecordingReader {
            inner: BufReader::with_capacity(STREAM_BUFFER, reader),
            path: path.to_string(),
            problems,
        }
    }
}

impl ReadSource for StreamReadSource {
    type Open = StreamReader;
    type Iter = std::option::IntoIter<RusticResult<ReadSourceEntry<Self::Open>>>;

    fn size(&self) -> RusticResult<Option<u64>> {
        Ok(None)
    }

    fn entries(&self) -> Self::Iter {
        let reader = self.reader.lock().ok().and_then(|mut r| r.take());
        let name = self.path.file_name().unwrap_or(OsStr::new("stream"));
        let meta = Metadata {
            mode: Some(0o600),
            mtime: Some(jiff::Timestamp::now()),
            ..Default::default()
        };
        let node = Node::new_node(name, NodeType::File, meta);
        Some(Ok(ReadSourceEntry {
            path: self.path.clone(),
            node,
            open: reader,
        }))
        .into_iter()
    }
}

/// A tree whose files are produced when the engine reads them ([`crate::TreeBackup`]):
/// entries in the walk's order (by path); each file's producer starts when a reading thread
/// opens it, and the engine records the bytes read as its size.
pub(crate) struct CraftedSource {
    pub(crate) as_path: PathBuf,
    pub(crate) entries: Mutex<Vec<Crafted>>,
    pub(crate) problems: Problems,
}

/// A producer, held by its entry until the engine starts it and by the backup for its verdict.
pub(crate) type Shared = Arc<Mutex<Box<dyn crate::FileProducer>>>;

/// One entry of a [`CraftedSource`], relative to its root (`""` is the root).
pub(crate) struct Crafted {
    pub(crate) rel: PathBuf,
    pub(crate) meta: crate::EntryMeta,
    /// `None` for a directory.
    pub(crate) producer: Option<Shared>,
}

/// Starts a produced file when the engine opens it, recording a failure to start.
pub(crate) struct ProducedOpen {
    producer: Shared,
    path: String,
    problems: Problems,
}

impl ReadSourceOpen for ProducedOpen {
    type Reader = StreamReader;

    fn open(self) -> RusticResult<Self::Reader> {
        let started = self
            .producer
            .lock()
            .map_err(|_| "its producer failed before".to_string())
            .and_then(|mut p| p.start());
        match started {
            Ok(reader) => Ok(StreamReadSource::reader(&self.path, reader, self.problems)),
            Err(e) => {
                self.problems.push(format!("{}: {e}", self.path));
                Err(
                    RusticError::new(ErrorKind::InputOutput, "`{path}` was not produced.")
                        .attach_context("path", self.path),
                )
            }
        }
    }
}

impl CraftedSource {
    /// The source for `req`'s entries, sorted as a walk yields them; the producers are
    /// returned too, for their verdicts once the engine is done.
    pub(crate) fn new(
        req: crate::TreeBackup<'_>,
        problems: Problems,
    ) -> (CraftedSource, Vec<Shared>) {
        let mut entries: std::collections::BTreeMap<PathBuf, Crafted> = Default::default();
        let mut producers = Vec::new();
        for (rel, meta, producer) in req.files {
            let producer = Arc::new(Mutex::new(producer));
            producers.push(producer.clone());
            // Parents not described take the root's owner and mode.
            for parent in rel.ancestors().skip(1) {
                entries.entry(parent.to_path_buf()).or_insert(Crafted {
                    rel: parent.to_path_buf(),
                    meta: req.root,
                    producer: None,
                });
            }
            let producer = Some(producer);
            entries.insert(
                rel.clone(),
                Crafted {
                    rel,
                    meta,
                    producer,
                },
            );
        }
        for (rel, meta) in req.dirs.into_iter().chain([(PathBuf::new(), req.root)]) {
            entries.insert(
                rel.clone(),
                Crafted {
                    rel,
                    meta,
                    producer: None,
                },
            );
        }
        let source = CraftedSource {
            as_path: PathBuf::from(req.as_path),
            entries: Mutex::new(entries.into_values().collect()),
            problems,
        };
        (source, producers)
    }
}

impl ReadSource for CraftedSource {
    type Open = ProducedOpen;
    type Iter = Box<dyn Iterator<Item = RusticResult<ReadSourceEntry<Self::Open>>> + Send>;

    fn size(&self) -> RusticResult<Option<u64>> {
        Ok(None)
    }

    fn entries(&self) -> Self::Iter {
        let entries = self
            .entries
            .lock()
            .map(|mut e| std::mem::take(&mut *e))
            .unwrap_or_default();
        let (as_path, problems) = (self.as_path.clone(), self.problems.clone());
        Box::new(entries.into_iter().map(move |c| {
            let path = if c.rel.as_os_str().is_empty() {
                as_path.clone()
            } else {
                as_path.join(&c.rel)
            };
            let name = path.file_name().unwrap_or(OsStr::new("root")).to_owned();
            let ts = c.meta.mtime;
            let mut meta = Metadata {
                uid: Some(c.meta.uid),
                gid: Some(c.meta.gid),
                mtime: ts,
                atime: ts,
                ctime: ts,
                ..Default::default()
            };
            let Some(producer) = c.producer else {
                meta.mode = Some(go_dir_mode(c.meta.mode));
                let node = Node::new_node(&name, NodeType::Dir, meta);
                return Ok(ReadSourceEntry {
                    path,
                    node,
                    open: None,
                });
            };
            meta.mode = Some(go_file_mode(c.meta.mode));
            let node = Node::new_node(&name, NodeType::File, meta);
            let open = ProducedOpen {
                producer,
                path: path.display().to_string(),
                problems: problems.clone(),
            };
            Ok(ReadSourceEntry {
                path,
                node,
                open: Some(open),
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_with_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"kept"), "a2VwdA==");
    }

    #[test]
    fn directory_modes_map_to_go_file_modes_and_back() {
        for mode in [0o755, 0o1777, 0o2775, 0o4700] {
            assert_eq!(crate::verify::unix_mode(go_dir_mode(mode)), mode);
        }
    }
}
