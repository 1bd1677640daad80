//! The engine's storage interface over [`S3Client`], in restic's object layout
//! (`config`, `keys/ID`, `snapshots/ID`, `index/ID`, `data/ab/ID`), so restic reads the
//! same bucket.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend,
};

use super::client::{S3Client, S3Failure};

/// The object name of a file of the repository.
pub(crate) fn object_name(tpe: FileType, id: &Id) -> String {
    let hex = id.to_hex();
    match tpe {
        FileType::Config => "config".into(),
        FileType::Pack => format!("data/{}/{}", &hex[..2], hex.as_str()),
        other => format!("{}/{}", other.dirname(), hex.as_str()),
    }
}

/// [`S3Client`] as the engine's backend. The first failure that ended an operation is kept,
/// so the caller can tell the user what really happened (the engine's own message wraps it in
/// layers of context).
pub struct S3Backend {
    client: S3Client,
    failure: Arc<Mutex<Option<S3Failure>>>,
}

impl S3Backend {
    /// The backend; its first failure is kept in `failure`.
    pub fn new(client: S3Client, failure: Arc<Mutex<Option<S3Failure>>>) -> Self {
        S3Backend { client, failure }
    }

    fn fail(&self, f: S3Failure) -> Box<RusticError> {
        let text = f.to_string();
        let mut slot = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() && !matches!(f, S3Failure::NotFound { .. }) {
            *slot = Some(f);
        }
        RusticError::new(ErrorKind::Backend, "S3: {reason}").attach_context("reason", text)
    }
}

impl ReadBackend for S3Backend {
    fn location(&self) -> String {
        self.client.location().display()
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        if tpe == FileType::Config {
            return match self.client.size("config").map_err(|f| self.fail(f))? {
                Some(size) => Ok(vec![(Id::default(), size as u32)]),
                None => Ok(Vec::new()),
            };
        }
        let objects = self.client.list(tpe.dirname()).map_err(|f| self.fail(f))?;
        let mut out = Vec::with_capacity(objects.len());
        for (name, size) in objects {
            let Some(file) = name.rsplit('/').next() else {
                continue;
            };
            // Anything that is not named by an id (a stray upload) is not part of the repository.
            if let Ok(id) = file.parse::<Id>() {
                let size = u32::try_from(size).map_err(|_| {
                    self.fail(S3Failure::Malformed {
                        what: format!("LIST {}", tpe.dirname()),
                        reason: format!("`{name}` is larger than 4 GiB"),
                    })
                })?;
                out.push((id, size));
            }
        }
        Ok(out)
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        self.client
            .get(&object_name(tpe, id), None)
            .map(Bytes::from)
            .map_err(|f| self.fail(f))
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        self.client
            .get(
                &object_name(tpe, id),
                Some((u64::from(offset), u64::from(length))),
            )
            .map(Bytes::from)
            .map_err(|f| self.fail(f))
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.client.location().key(&object_name(tpe, id))
    }
}

impl WriteBackend for S3Backend {
    fn create(&self) -> RusticResult<()> {
        self.client.check_bucket().map_err(|f| self.fail(f))
    }

    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        let body: Vec<u8> = content.into_vec().concat();
        self.client
            .put(&object_name(tpe, id), &body)
            .map_err(|f| self.fail(f))
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        self.client
            .delete(&object_name(tpe, id))
            .map_err(|f| self.fail(f))
    }
}
