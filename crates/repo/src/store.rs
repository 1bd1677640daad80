//! Where a repository's objects live (a local directory or an S3 bucket), the engine's
//! backends over it, and the files the engine has no type for (locks).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rustic_backend::BackendOptions;
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RepositoryBackends, RusticError, RusticResult,
    WriteBackend,
};

use crate::RepoError;
use crate::parallel::ParallelPacks;
use crate::s3::{S3Backend, S3Client, S3Failure, S3Location, S3Settings};

/// The storage of one repository.
pub(crate) enum Store {
    Local(PathBuf),
    S3 {
        client: Box<S3Client>,
        /// The first failure of an engine operation (see [`S3Backend`]).
        failure: Arc<Mutex<Option<S3Failure>>>,
    },
}

impl Store {
    /// The store `location` names (an S3 location or a local directory).
    pub(crate) fn at(location: &str, s3: &S3Settings) -> Result<Store, RepoError> {
        match S3Location::parse(location) {
            Some(parsed) => {
                let parsed = parsed.map_err(|reason| RepoError::BadLocation { reason })?;
                let credentials = s3
                    .credentials()
                    .map_err(|reason| RepoError::StorageDenied {
                        location: location.to_string(),
                        reason,
                    })?;
                Ok(Store::S3 {
                    client: Box::new(S3Client::new(
                        parsed,
                        s3.region(),
                        credentials,
                        s3.retry.clone(),
                    )),
                    failure: Arc::new(Mutex::new(None)),
                })
            }
            None if location.contains("://") || location.starts_with("opendal:") => {
                Err(RepoError::BadLocation {
                    reason: format!(
                        "`{location}` is neither a local directory nor an S3 location \
                         (s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX])"
                    ),
                })
            }
            None => Ok(Store::Local(PathBuf::from(location))),
        }
    }

    pub(crate) fn is_remote(&self) -> bool {
        matches!(self, Store::S3 { .. })
    }

    /// Whether a repository exists here (its `config` object). For S3 this also proves the
    /// endpoint, the credentials and the bucket.
    pub(crate) fn has_config(&self, location: &str) -> Result<bool, RepoError> {
        match self {
            Store::Local(dir) => Ok(dir.join("config").is_file()),
            Store::S3 { client, .. } => match client.size("config") {
                Ok(found) => Ok(found.is_some()),
                Err(f) => Err(storage_error(location, f)),
            },
        }
    }

    /// The engine's backends, with snapshot writes gated by `may_commit`.
    pub(crate) fn backends(
        &self,
        location: &str,
        may_commit: Arc<dyn Fn() -> Result<(), String> + Send + Sync>,
        written: Arc<std::sync::atomic::AtomicU64>,
    ) -> Result<RepositoryBackends, RepoError> {
        let inner: Arc<dyn WriteBackend> = match self {
            Store::Local(root) => Arc::new(Gated {
                inner: BackendOptions::default()
                    .repository(location)
                    .to_backends()
                    .map_err(|e| RepoError::engine("opening", location, e.display_log()))?
                    .repository(),
                may_commit: None,
                tidy: Some(root.clone()),
            }),
            Store::S3 { client, failure } => {
                Arc::new(S3Backend::new((**client).clone(), failure.clone()))
            }
        };
        let inner: Arc<dyn WriteBackend> = Arc::new(ParallelPacks::new(inner, written));
        Ok(RepositoryBackends::new(
            Arc::new(Gated {
                inner,
                may_commit: Some(may_commit),
                tidy: None,
            }),
            None,
        ))
    }

    /// The S3 failure that ended the last operation, taken (so each is reported once).
    pub(crate) fn take_failure(&self) -> Option<S3Failure> {
        match self {
            Store::Local(_) => None,
            Store::S3 { failure, .. } => failure.lock().unwrap_or_else(|p| p.into_inner()).take(),
        }
    }

    pub(crate) fn put(&self, name: &str, data: &[u8]) -> Result<(), String> {
        match self {
            Store::Local(dir) => {
                let path = dir.join(name);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                }
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, data)
                    .and_then(|_| std::fs::rename(&tmp, &path))
                    .map_err(|e| format!("{}: {e}", path.display()))
            }
            Store::S3 { client, .. } => client.put(name, data).map_err(|f| f.to_string()),
        }
    }

    pub(crate) fn get(&self, name: &str) -> Result<Option<Vec<u8>>, String> {
        match self {
            Store::Local(dir) => match std::fs::read(dir.join(name)) {
                Ok(d) => Ok(Some(d)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.to_string()),
            },
            Store::S3 { client, .. } => match client.get(name, None) {
                Ok(d) => Ok(Some(d)),
                Err(S3Failure::NotFound { .. }) => Ok(None),
                Err(f) => Err(f.to_string()),
            },
        }
    }

    /// The file names directly in `dir` (an error, never a partial list, when listing fails).
    pub(crate) fn list(&self, dir: &str) -> Result<Vec<String>, String> {
        match self {
            Store::Local(root) => match std::fs::read_dir(root.join(dir)) {
                Ok(entries) => entries
                    .map(|e| {
                        e.map(|e| e.file_name().to_string_lossy().into_owned())
                            .map_err(|e| e.to_string())
                    })
                    .filter(|n| !n.as_ref().is_ok_and(|n| n.ends_with(".tmp")))
                    .collect(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(e.to_string()),
            },
            Store::S3 { client, .. } => client
                .list(dir)
                .map(|objs| {
                    objs.into_iter()
                        .filter_map(|(n, _)| n.rsplit('/').next().map(str::to_string))
                        .collect()
                })
                .map_err(|f| f.to_string()),
        }
    }

    /// The file names directly in `dir`, each with when the store last wrote it by the
    /// store's own clock (a local file's mtime, set by the kernel of the machine that holds
    /// it; S3's `LastModified`, set by the server): comparable across hosts whose clocks
    /// disagree. `None` where the store gives no time.
    pub(crate) fn list_dated(
        &self,
        dir: &str,
    ) -> Result<Vec<(String, Option<jiff::Timestamp>)>, String> {
        match self {
            Store::Local(root) => {
                let mut out = Vec::new();
                for name in self.list(dir)? {
                    let modified = std::fs::metadata(root.join(dir).join(&name))
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| jiff::Timestamp::try_from(t).ok());
                    out.push((name, modified));
                }
                Ok(out)
            }
            Store::S3 { client, .. } => client
                .list_objects(dir)
                .map(|objs| {
                    objs.into_iter()
                        .filter_map(|o| {
                            let name = o.key.rsplit('/').next()?.to_string();
                            Some((name, o.modified))
                        })
                        .collect()
                })
                .map_err(|f| f.to_string()),
        }
    }

    /// Test support: moves a local file's time back by `by` (S3 keeps its own times).
    #[cfg(feature = "craft")]
    pub(crate) fn backdate(&self, name: &str, by: std::time::Duration) -> Result<(), String> {
        let Store::Local(root) = self else {
            return Ok(());
        };
        let file = std::fs::File::options()
            .write(true)
            .open(root.join(name))
            .map_err(|e| e.to_string())?;
        let then = std::time::SystemTime::now()
            .checked_sub(by)
            .ok_or("a time before the epoch")?;
        file.set_modified(then).map_err(|e| e.to_string())
    }

    pub(crate) fn delete(&self, name: &str) -> Result<(), String> {
        match self {
            Store::Local(dir) => match std::fs::remove_file(dir.join(name)) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e.to_string()),
            },
            Store::S3 { client, .. } => client.delete(name).map_err(|f| f.to_string()),
        }
    }

    /// Checks the bucket (S3 only): reachable, credentials accepted, bucket present.
    pub(crate) fn probe(&self, location: &str) -> Result<(), RepoError> {
        match self {
            Store::Local(dir) => {
                if dir.is_dir() || !dir.exists() {
                    Ok(())
                } else {
                    Err(RepoError::BadLocation {
                        reason: format!("{} exists and is not a directory", dir.display()),
                    })
                }
            }
            Store::S3 { client, .. } => client
                .check_bucket()
                .map_err(|f| storage_error(location, f)),
        }
    }
}

/// The user-facing error for an S3 failure.
pub(crate) fn storage_error(location: &str, f: S3Failure) -> RepoError {
    let location = location.to_string();
    match f {
        S3Failure::GaveUp {
            unreachable: true,
            last,
            attempts,
            elapsed,
            ..
        } => RepoError::StorageUnreachable {
            location,
            reason: format!(
                "{last} ({attempts} attempts in {:.1}s)",
                elapsed.as_secs_f64()
            ),
        },
        S3Failure::Denied { reason } => RepoError::StorageDenied { location, reason },
        S3Failure::NoBucket => RepoError::NoBucket { location },
        other => RepoError::Storage {
            location,
            reason: other.to_string(),
        },
    }
}

/// A backend with Lifeboat's guards around its writes.
struct Gated {
    inner: Arc<dyn WriteBackend>,
    /// Refuses to write a snapshot file unless the repository lock is still held: a backup
    /// whose lock went stale (a prune elsewhere may have started) aborts before it commits.
    may_commit: Option<Arc<dyn Fn() -> Result<(), String> + Send + Sync>>,
    /// A local repository's root: the engine writes each object to `NAME-tmp-` and renames
    /// it, and leaves that file behind when the write, its sync or the rename fails (EIO,
    /// ENOSPC); it is removed here, so no object is ever stored under a name that is not its
    /// hash.
    tidy: Option<PathBuf>,
}

impl Gated {
    fn tidy_after_failed_write(&self, tpe: FileType, id: &Id) {
        let Some(root) = &self.tidy else { return };
        let hex = id.to_hex();
        let dir = match tpe {
            FileType::Pack => root.join(tpe.dirname()).join(&hex[..2]),
            FileType::Config => root.clone(),
            _ => root.join(tpe.dirname()),
        };
        let name = if tpe == FileType::Config {
            "config".to_string()
        } else {
            hex.to_string()
        };
        let _ = std::fs::remove_file(dir.join(format!("{name}-tmp-")));
    }
}

impl ReadBackend for Gated {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        self.inner.list_with_size(tpe)
    }
    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        self.inner.read_full(tpe, id)
    }
    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        self.inner.read_partial(tpe, id, cacheable, offset, length)
    }
    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.inner.warmup_path(tpe, id)
    }
}

/// The marker of a refused commit in the engine's error text.
pub(crate) const LOCK_LOST_MARK: &str = "Lifeboat refused to commit the snapshot";

impl WriteBackend for Gated {
    fn create(&self) -> RusticResult<()> {
        self.inner.create()
    }
    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        if tpe == FileType::Snapshot
            && let Some(may_commit) = &self.may_commit
            && let Err(why) = may_commit()
        {
            return Err(RusticError::new(
                ErrorKind::Backend,
                "Lifeboat refused to commit the snapshot: {why}",
            )
            .attach_context("why", why));
        }
        let written = self.inner.write_bytes(tpe, id, cacheable, content);
        if written.is_err() {
            self.tidy_after_failed_write(tpe, id);
        }
        written
    }
    fn remove(&self, tpe: FileType, id: &Id, cacheable: bool) -> RusticResult<()> {
        self.inner.remove(tpe, id, cacheable)
    }
}
