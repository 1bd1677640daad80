//! Read sources handed to the engine's archiver.
//!
//! The archiver logs and drops every error it meets while walking or reading (and still
//! returns Ok). These wrappers record each such error first, so the caller can tell a
//! complete snapshot from a partial one.

use std::ffi::OsStr;
use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustic_core::{
    LocalSource, ReadSource, ReadSourceEntry, ReadSourceOpen, RusticResult,
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
        self.0.lock().map(|mut l| std::mem::take(&mut *l)).unwrap_or_default()
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
            self.problems.push(format!("{}: read failed: {e}", self.path));
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

/// A local directory walk that records what the archiver would silently drop.
pub(crate) struct RecordingSource {
    pub(crate) inner: LocalSource,
    pub(crate) problems: Problems,
}

impl ReadSource for RecordingSource {
    type Open = RecordingOpen<<LocalSource as ReadSource>::Open>;
    type Iter = Box<dyn Iterator<Item = RusticResult<ReadSourceEntry<Self::Open>>> + Send>;

    fn size(&self) -> RusticResult<Option<u64>> {
        self.inner.size()
    }

    fn entries(&self) -> Self::Iter {
        let problems = self.problems.clone();
        Box::new(self.inner.entries().map(move |item| match item {
            Ok(ReadSourceEntry { path, node, open }) => {
                let open = open.map(|inner| RecordingOpen {
                    inner,
                    path: path.display().to_string(),
                    problems: problems.clone(),
                });
                Ok(ReadSourceEntry { path, node, open })
            }
            Err(err) => {
                problems.push(format!("cannot read entry: {}", err.display_log()));
                Err(err)
            }
        }))
    }
}

/// A single-file source over a stream, read through a large buffer: without it the chunker
/// sees a pipe's small reads and slows down about twentyfold.
pub(crate) struct StreamReadSource {
    pub(crate) path: PathBuf,
    pub(crate) reader: Mutex<Option<RecordingReader<BufReader<Box<dyn Read + Send>>>>>,
}

pub(crate) const STREAM_BUFFER: usize = 1 << 20;

impl StreamReadSource {
    pub(crate) fn new(path: &str, reader: Box<dyn Read + Send>, problems: Problems) -> Self {
        StreamReadSource {
            path: PathBuf::from(path),
            reader: Mutex::new(Some(RecordingReader {
                inner: BufReader::with_capacity(STREAM_BUFFER, reader),
                path: path.to_string(),
                problems,
            })),
        }
    }
}

impl ReadSource for StreamReadSource {
    type Open = RecordingReader<BufReader<Box<dyn Read + Send>>>;
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
