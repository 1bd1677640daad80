//! [`Repository`] over `rustic_core`: restic's repository format v2.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use rustic_core::{
    BackupOptions, CheckOptions, ConfigOptions, Credentials, KeyOptions, LocalDestination,
    LocalSource, LocalSourceFilterOptions, LocalSourceSaveOptions, LsOptions, OpenStatus,
    Repository as Engine, RepositoryOptions, RestoreOptions, RusticError, SnapshotOptions,
    repofile::{ConfigFile, KeyId, SnapshotFile, SnapshotId},
};

use crate::lock::{HeldLock, LockError, LockTimings, Locker};
use crate::progress::Bars;
use crate::s3::S3Settings;
use crate::source::{CraftedSource, Problems, RecordingSource, StreamReadSource};
use crate::store::{LOCK_LOST_MARK, Store, storage_error};
use crate::tree_check;
use crate::{
    CheckReport, CopyReport, DirBackup, KeyInfo, PartReport, ProgressSink, PruneReport, RepoError,
    Repository, RestoreReport, SnapshotInfo, StreamBackup, StreamSource, TreeBackup, verify,
};

/// Data packs are capped at this size (compressed). The engine's restore reads whole pack
/// ranges on 20 threads and decompresses every blob of a pack before writing any, so pack
/// size bounds restore memory; compressible data multiplies it. Measured on 1 GB of mixed
/// data (small files, random data, logs), peak restore RSS: 273 MiB with 4 MiB packs,
/// 193 MiB with 2 MiB, 149 MiB with 1 MiB (about 20% slower than 4 MiB); see `bench/`.
const DATAPACK_SIZE: u64 = 1 << 20;

/// Where a repository lives, as the user spelled it: a local directory, or
/// `s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]` (restic's form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoLocation(pub String);

/// How to reach and share a repository besides its location and password.
#[derive(Debug, Clone)]
pub struct RepoSettings {
    /// Account, region and retry policy for S3 locations.
    pub s3: S3Settings,
    /// Where index and snapshot files of a remote repository are cached (restic's cache
    /// model); `None` uses the engine's default (`~/.cache/rustic`). Local repositories are
    /// read directly.
    pub cache_dir: Option<PathBuf>,
    /// This host's name, as written into repository locks (never the engine's id: engines
    /// cloned from one image share it).
    pub host: String,
    /// Lock timings (restic's by default).
    pub locks: LockTimings,
}

impl Default for RepoSettings {
    fn default() -> Self {
        RepoSettings {
            s3: S3Settings::default(),
            cache_dir: None,
            host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "localhost".into()),
            locks: LockTimings::default(),
        }
    }
}

/// An open repository. Each operation loads the index it needs; operations are serialised.
pub struct RusticRepository {
    location: RepoLocation,
    /// The repository's own id (from its `config` file): the same for every spelling of
    /// its location.
    id: String,
    password: String,
    progress: Option<Arc<dyn ProgressSink>>,
    settings: RepoSettings,
    store: Arc<Store>,
    /// Takes restic-format locks; set once the repository is open (it needs the key).
    locker: Arc<OnceLock<Locker>>,
    /// The opened engine, taken out for an operation and put back after it (the engine's
    /// handle cannot be cloned and indexing consumes it).
    open: Mutex<Option<Slot>>,
    /// Bytes of pack files this handle wrote.
    written: Arc<AtomicU64>,
    /// The key file the password opened.
    key_id: Option<String>,
}

/// The error for a failed engine call: the store's own failure when there was one (it says
/// what really happened), else `fallback`.
fn storage_or(store: &Store, location: &str, fallback: impl FnOnce() -> RepoError) -> RepoError {
    match store.take_failure() {
        Some(f) => storage_error(location, f),
        None => fallback(),
    }
}

/// The engine's view of a store: its backends (snapshot writes gated by the lock) and options.
fn engine_for(
    location: &RepoLocation,
    store: &Store,
    settings: &RepoSettings,
    locker: &Arc<OnceLock<Locker>>,
    progress: Option<Arc<dyn ProgressSink>>,
    written: &Arc<AtomicU64>,
) -> Result<Engine<()>, RepoError> {
    let gate = {
        let locker = locker.clone();
        Arc::new(move || match locker.get() {
            Some(l) => l.may_commit(),
            None => Err("the repository is not open".to_string()),
        })
    };
    let backends = store.backends(&location.0, gate, written.clone())?;
    let mut opts = RepositoryOptions::default();
    if store.is_remote() {
        opts.cache_dir = settings.cache_dir.clone();
    } else {
        // The files are on this host's disks already: a cache would only copy them (and
        // could hide damage to them from the next reader).
        opts.no_cache = true;
    }
    Engine::new_with_progress(&opts, &backends, Bars(progress))
        .map_err(|e| RepoError::engine("opening", &location.0, e.display_log()))
}

/// A repository key derived from a password. Deriving one (scrypt) takes about 0.3 s of CPU;
/// a process keeps what it derived, so a daemon derives each repository's key once, not
/// once per job. A kept key opens the repository only while the key file it came from is
/// still there: a password whose key was removed stops opening it here too.
struct DerivedKey {
    location: String,
    password: [u8; 32],
    key_id: String,
    key: rustic_core::repofile::MasterKey,
}

static DERIVED: Mutex<Vec<DerivedKey>> = Mutex::new(Vec::new());

fn password_digest(password: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(password.as_bytes()).into()
}

/// The kept key for `password` at `location`, and its key file's id, when that file is
/// still in the store.
fn kept_key(
    location: &RepoLocation,
    store: &Store,
    password: &str,
) -> Option<(rustic_core::repofile::MasterKey, String)> {
    let digest = password_digest(password);
    let (key_id, key) = DERIVED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|k| k.location == location.0 && k.password == digest)
        .map(|k| (k.key_id.clone(), k.key.clone()))?;
    let keys = store.list("keys").ok()?;
    keys.contains(&key_id).then_some((key, key_id))
}

fn keep_key(location: &RepoLocation, password: &str, open: &Engine<OpenStatus>) {
    let Some(key_id) = open.key_id() else { return };
    let digest = password_digest(password);
    let mut derived = DERIVED.lock().unwrap_or_else(|p| p.into_inner());
    derived.retain(|k| !(k.location == location.0 && k.password == digest));
    derived.push(DerivedKey {
        location: location.0.clone(),
        password: digest,
        key_id: key_id.to_hex().to_string(),
        key: open.key(),
    });
}

fn open_engine(
    location: &RepoLocation,
    store: &Store,
    settings: &RepoSettings,
    locker: &Arc<OnceLock<Locker>>,
    password: &str,
    progress: Option<Arc<dyn ProgressSink>>,
    written: &Arc<AtomicU64>,
) -> Result<(Engine<OpenStatus>, Option<String>), RepoError> {
    let engine = engine_for(location, store, settings, locker, progress, written)?;
    if let Some((key, key_id)) = kept_key(location, store, password) {
        let open = engine.open(&Credentials::Masterkey(key)).map_err(|e| {
            storage_or(store, &location.0, || {
                RepoError::engine("opening", &location.0, e.display_log())
            })
        })?;
        return Ok((open, Some(key_id)));
    }
    let open = engine.open(&Credentials::password(password)).map_err(|e| {
        if e.is_incorrect_password() {
            RepoError::WrongPassword {
                location: location.0.clone(),
            }
        } else {
            storage_or(store, &location.0, || {
                RepoError::engine("opening", &location.0, e.display_log())
            })
        }
    })?;
    keep_key(location, password, &open);
    let key_id = open.key_id().as_ref().map(|k| k.to_hex().to_string());
    Ok((open, key_id))
}

/// Snapshot files this process has read, by repository (location and id). A snapshot file
/// never changes (its name is the hash of its content), so a listing reads only the files
/// added since the last one and forgets those that are gone: a daemon backing up hundreds of
/// services no longer decrypts every snapshot file of the repository several times per
/// backup. Beyond [`KEPT_SNAPSHOTS`] files a repository's listing is not kept (memory).
static SNAPSHOTS: Mutex<Vec<(RepoKey, Kept)>> = Mutex::new(Vec::new());

/// A repository as the kept listings know it: its location and its id.
type RepoKey = (String, String);

/// One repository's kept snapshot files, shared with the listings handed out (not copied).
type Kept = std::collections::BTreeMap<SnapshotId, Arc<SnapshotFile>>;

/// The most snapshot files kept for one repository (each a few KiB with its manifest).
const KEPT_SNAPSHOTS: usize = 20_000;

fn kept_snapshots(key: &RepoKey) -> Kept {
    SNAPSHOTS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, s)| s.clone())
        .unwrap_or_default()
}

fn keep_snapshots(key: RepoKey, snaps: Kept) {
    let mut kept = SNAPSHOTS.lock().unwrap_or_else(|p| p.into_inner());
    kept.retain(|(k, _)| k != &key);
    if snaps.len() <= KEPT_SNAPSHOTS {
        kept.push((key, snaps));
    }
}

/// The ids of the repository's snapshot files, and those of them not in `kept` read (an
/// unreadable one is left out).
fn listed_and_new<S: rustic_core::Open>(
    engine: &Engine<S>,
    kept: &Kept,
) -> Result<(Vec<SnapshotId>, Vec<SnapshotFile>), Box<RusticError>> {
    let listed: Vec<SnapshotId> = engine.list::<SnapshotId>()?.collect();
    let missing: Vec<String> = listed
        .iter()
        .filter(|id| !kept.contains_key(*id))
        .map(|id| id.to_hex().to_string())
        .collect();
    let read = if missing.is_empty() {
        Vec::new()
    } else {
        engine.get_snapshots(&missing)?
    };
    Ok((listed, read))
}

fn config_options() -> ConfigOptions {
    let mut opts = ConfigOptions::default();
    opts.set_datapack_size = Some(bytesize(DATAPACK_SIZE));
    opts.set_datapack_size_limit = Some(bytesize(DATAPACK_SIZE));
    opts.set_datapack_growfactor = Some(0);
    opts
}

fn bytesize(n: u64) -> bytesize::ByteSize {
    bytesize::ByteSize::b(n)
}

impl RusticRepository {
    /// [`RepoError::UnreadableSnapshots`] for `op` while a snapshot file cannot be read.
    /// `kept`: judged on this process's kept listing (a file it read before and that was
    /// damaged since still counts as read: what a deletion decided on was its real content);
    /// otherwise every file is read again (before a prune, which reads them itself).
    fn refuse_if_unreadable(&self, op: &'static str, kept: bool) -> Result<(), RepoError> {
        let ids = self.unreadable(kept)?;
        if ids.is_empty() {
            return Ok(());
        }
        Err(RepoError::UnreadableSnapshots {
            op,
            location: self.location.0.clone(),
            ids,
        })
    }
}

/// One line per check finding: what was found (its first line names the object) and the
/// engine's own message, without the multi-line report (and backtrace) its display carries.
fn check_finding(err: &(dyn std::error::Error + 'static)) -> String {
    let own = err.to_string();
    let head = own.lines().next().unwrap_or_default().trim().to_string();
    let source = err.source().and_then(|s| {
        s.downcast_ref::<Box<RusticError>>()
            .map(|b| &**b)
            .or_else(|| s.downcast_ref::<RusticError>())
    });
    match source {
        Some(src) => {
            let log = src.display_log();
            let guidance = log.trim_start_matches("Error: ");
            let guidance = guidance.split(" (kind:").next().unwrap_or(guidance).trim();
            format!("{head} {guidance}")
        }
        None => head,
    }
}

impl RusticRepository {
    /// Creates a new repository with the default settings (S3 credentials from the
    /// environment). Refuses when one exists at `location`.
    pub fn init(
        location: &RepoLocation,
        password: &str,
        progress: Option<Arc<dyn ProgressSink>>,
    ) -> Result<Self, RepoError> {
        Self::init_with(location, password, progress, RepoSettings::default())
    }

    /// Creates a new repository. Refuses when one exists at `location`; on S3 the bucket
    /// must exist (the error says how to create it).
    pub fn init_with(
        location: &RepoLocation,
        password: &str,
        progress: Option<Arc<dyn ProgressSink>>,
        settings: RepoSettings,
    ) -> Result<Self, RepoError> {
        Self::create(location, password, progress, settings, None)
    }

    /// Creates a new repository that cuts files into chunks exactly as `like` does (the same
    /// chunker polynomial), so that snapshots copied from `like` deduplicate against each
    /// other there instead of being cut anew. Refuses when one exists at `location`.
    pub fn init_like(
        location: &RepoLocation,
        password: &str,
        progress: Option<Arc<dyn ProgressSink>>,
        settings: RepoSettings,
        like: &RusticRepository,
    ) -> Result<Self, RepoError> {
        let poly = like.with_engine(|e| {
            e.config().poly().map_err(|err| {
                RepoError::engine("reading the chunker", &like.location.0, err.display_log())
            })
        })?;
        Self::create(location, password, progress, settings, Some(poly))
    }

    fn create(
        location: &RepoLocation,
        password: &str,
        progress: Option<Arc<dyn ProgressSink>>,
        settings: RepoSettings,
        poly: Option<u64>,
    ) -> Result<Self, RepoError> {
        let store = Arc::new(Store::at(&location.0, &settings.s3)?);
        store.probe(&location.0)?;
        if store.has_config(&location.0)? {
            return Err(RepoError::AlreadyExists {
                location: location.0.clone(),
            });
        }
        let locker = Arc::new(OnceLock::new());
        let written = Arc::new(AtomicU64::new(0));
        let engine = engine_for(
            location,
            &store,
            &settings,
            &locker,
            progress.clone(),
            &written,
        )?;
        let credentials = Credentials::password(password);
        let created = match poly {
            None => engine.init(&credentials, &KeyOptions::default(), &config_options()),
            Some(poly) => {
                // The engine keeps its id type private: the config file is built from its
                // own (restic's) JSON form.
                let mut config: ConfigFile = serde_json::from_value(serde_json::json!({
                    "version": 2,
                    "id": rustic_core::Id::random().to_hex().to_string(),
                    "chunker_polynomial": format!("{poly:x}"),
                }))
                .expect("a restic config file parses");
                config_options().apply(&mut config).and_then(|()| {
                    engine.init_with_config(&credentials, &KeyOptions::default(), config)
                })
            }
        };
        let open = created.map_err(|e| {
            storage_or(&store, &location.0, || {
                RepoError::engine("init", &location.0, e.display_log())
            })
        })?;
        let key_id = open.key_id().as_ref().map(|k| k.to_hex().to_string());
        Ok(Self::assemble(
            location,
            password,
            progress,
            settings,
            (store, written),
            locker,
            (open, key_id),
        ))
    }

    /// Every key of the repository, the one in use marked. The key files' public part (host,
    /// user, time) is read as restic writes it; an unreadable one is listed with nothing known.
    pub fn keys(&self) -> Result<Vec<KeyInfo>, RepoError> {
        let ids = self.with_engine(|e| {
            Ok(e.list::<KeyId>()
                .map_err(self.err("listing keys"))?
                .map(|id| id.to_hex().to_string())
                .collect::<Vec<String>>())
        })?;
        let current = self.key_id.clone();
        let mut out: Vec<KeyInfo> = ids
            .into_iter()
            .map(|id| {
                let public: serde_json::Value = self
                    .store
                    .get(&format!("keys/{id}"))
                    .ok()
                    .flatten()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default();
                let text = |k: &str| public[k].as_str().map(String::from);
                KeyInfo {
                    current: current.as_deref() == Some(id.as_str()),
                    hostname: text("hostname"),
                    username: text("username"),
                    created: text("created"),
                    id,
                }
            })
            .collect();
        out.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Adds a key opened by `password` (the data is not re-encrypted: every key unlocks the
    /// same master key). Returns its id.
    pub fn add_key(&self, password: &str) -> Result<String, RepoError> {
        if password.is_empty() {
            return Err(RepoError::KeyRefused {
                what: "an empty password is not a key".into(),
            });
        }
        let mut opts = KeyOptions::default();
        opts.hostname = Some(self.settings.host.clone());
        opts.username = std::env::var("USER").ok().or_else(|| Some("root".into()));
        self.with_engine(|e| {
            e.add_key(password, &opts)
                .map(|id| id.to_hex().to_string())
                .map_err(self.err("adding a key"))
        })
    }

    /// Removes the key `id` (a unique prefix is enough). Refuses the key in use and the last
    /// key: without a key nobody can read the backups again.
    pub fn remove_key(&self, id: &str) -> Result<String, RepoError> {
        let keys = self.keys()?;
        let matching: Vec<&KeyInfo> = keys.iter().filter(|k| k.id.starts_with(id)).collect();
        let key = match matching.as_slice() {
            [] => {
                return Err(RepoError::NoSuchKey {
                    id: id.to_string(),
                    location: self.location.0.clone(),
                });
            }
            [k] => *k,
            more => {
                return Err(RepoError::KeyRefused {
                    what: format!("`{id}` matches {} keys: give more of the id", more.len()),
                });
            }
        };
        if keys.len() == 1 {
            return Err(RepoError::KeyRefused {
                what: "it is the repository's last key: without a key nobody can read the \
                       backups again (add another first)"
                    .into(),
            });
        }
        if key.current {
            return Err(RepoError::KeyRefused {
                what: format!(
                    "key {} is the one this command opened the repository with: run with \
                     another key's password to remove it",
                    &key.id[..8.min(key.id.len())]
                ),
            });
        }
        let full = key.id.clone();
        self.with_engine(|e| {
            let kid = full
                .parse::<KeyId>()
                .map_err(|err| RepoError::engine("reading a key id", &self.location.0, err))?;
            e.delete_key(&kid).map_err(self.err("removing a key"))
        })?;
        Ok(full)
    }

    /// The chunker polynomial (hex), to tell whether two repositories cut files alike.
    pub fn chunker(&self) -> Result<String, RepoError> {
        self.with_engine(|e| Ok(e.config().chunker_polynomial.clone()))
    }

    /// Bytes of pack files written through this handle so far.
    pub fn bytes_written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Copies snapshots `ids` of this repository into `dest`: only the blobs `dest` lacks
    /// are sent; the copies keep their tags, paths, time and description, and get new ids
    /// (find them by their tags). Nothing is removed from either repository.
    pub fn copy_to(
        &self,
        dest: &RusticRepository,
        ids: &[String],
    ) -> Result<CopyReport, RepoError> {
        if ids.is_empty() {
            return Ok(CopyReport::default());
        }
        let _src_lock = self.hold_lock(false)?;
        let _dest_lock = dest.hold_lock(false)?;
        let before = dest.bytes_written();
        self.with_full_index(|src| {
            let snaps = ids
                .iter()
                .map(|id| {
                    src.get_snapshot_from_str(id, |_| true).map_err(|_| {
                        RepoError::SnapshotNotFound {
                            id: id.clone(),
                            location: self.location.0.clone(),
                        }
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            dest.with_ids_index(|to| {
                src.copy(to, snaps.iter()).map_err(|e| {
                    storage_or(&dest.store, &dest.location.0, || {
                        storage_or(&self.store, &self.location.0, || {
                            RepoError::engine("copy", &dest.location.0, e.display_log())
                        })
                    })
                })
            })
        })?;
        Ok(CopyReport {
            snapshots: ids.len(),
            bytes_added: dest.bytes_written() - before,
        })
    }

    /// Opens an existing repository with the default settings.
    pub fn open(
        location: &RepoLocation,
        password: &str,
        progress: Option<Arc<dyn ProgressSink>>,
    ) -> Result<Self, RepoError> {
        Self::open_with(location, password, progress, RepoSettings::default())
    }

    /// Opens an existing repository.
    pub fn open_with(
        location: &RepoLocation,
        password: &str,
        progress: Option<Arc<dyn ProgressSink>>,
        settings: RepoSettings,
    ) -> Result<Self, RepoError> {
        let store = Arc::new(Store::at(&location.0, &settings.s3)?);
        if !store.has_config(&location.0)? {
            // On S3 a missing bucket is its own error.
            store.probe(&location.0)?;
            return Err(RepoError::NotFound {
                location: location.0.clone(),
            });
        }
        let locker = Arc::new(OnceLock::new());
        let written = Arc::new(AtomicU64::new(0));
        let open = open_engine(
            location,
            &store,
            &settings,
            &locker,
            password,
            progress.clone(),
            &written,
        )?;
        Ok(Self::assemble(
            location,
            password,
            progress,
            settings,
            (store, written),
            locker,
            open,
        ))
    }

    fn assemble(
        location: &RepoLocation,
        password: &str,
        progress: Option<Arc<dyn ProgressSink>>,
        settings: RepoSettings,
        (store, written): (Arc<Store>, Arc<AtomicU64>),
        locker: Arc<OnceLock<Locker>>,
        (open, key_id): (Engine<OpenStatus>, Option<String>),
    ) -> Self {
        let _ = locker.set(Locker::new(
            store.clone(),
            open.file_cipher(),
            settings.host.clone(),
            settings.locks.clone(),
        ));
        RusticRepository {
            id: open.config().id.to_hex().to_string(),
            location: location.clone(),
            password: password.to_string(),
            progress,
            settings,
            store,
            locker,
            open: Mutex::new(Some(Slot::Open(open))),
            written,
            key_id,
        }
    }

    /// True when the repository is in object storage (not on this host's disks).
    pub fn is_remote(&self) -> bool {
        self.store.is_remote()
    }

    /// Holds a repository lock (shared, or exclusive) until the handle is dropped; the
    /// operations run meanwhile use it instead of taking their own. A backup run holds one
    /// across all its parts and its manifest.
    pub fn hold_lock(&self, exclusive: bool) -> Result<Arc<HeldLock>, RepoError> {
        self.locker
            .get()
            .expect("the locker is set when the repository is opened")
            .lock(exclusive)
            .map_err(|e| self.lock_error(e))
    }

    #[cfg(feature = "craft")]
    pub(crate) fn locker_for_craft(&self) -> &Locker {
        self.locker
            .get()
            .expect("the locker is set when the repository is opened")
    }

    fn lock_error(&self, e: LockError) -> RepoError {
        match e {
            LockError::Conflict(c) => RepoError::Locked {
                location: self.location.0.clone(),
                holder: c.holder,
                stale_at: c.stale_at,
            },
            LockError::Store(reason) => match self.store.take_failure() {
                Some(f) => storage_error(&self.location.0, f),
                None => RepoError::Storage {
                    location: self.location.0.clone(),
                    reason: format!("taking the repository lock: {reason}"),
                },
            },
        }
    }

    /// Runs `op` with the opened engine, reopening it if an earlier operation consumed it.
    fn with_open<T>(
        &self,
        op: impl FnOnce(Engine<OpenStatus>) -> (Option<Engine<OpenStatus>>, Result<T, RepoError>),
    ) -> Result<T, RepoError> {
        let mut slot = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let engine = self.opened(slot.take())?;
        let (back, result) = op(engine);
        *slot = back.map(Slot::Open);
        result
    }

    /// The opened engine from what the slot held: its index dropped, or opened again when an
    /// earlier operation consumed it.
    fn opened(&self, held: Option<Slot>) -> Result<Engine<OpenStatus>, RepoError> {
        match held {
            Some(Slot::Open(e)) => Ok(e),
            Some(Slot::Ids { engine, .. }) => Ok(engine.drop_index()),
            None => self.reopen(),
        }
    }

    fn reopen(&self) -> Result<Engine<OpenStatus>, RepoError> {
        Ok(open_engine(
            &self.location,
            &self.store,
            &self.settings,
            &self.locker,
            &self.password,
            self.progress.clone(),
            &self.written,
        )?
        .0)
    }

    fn with_engine<T>(
        &self,
        op: impl FnOnce(&Engine<OpenStatus>) -> Result<T, RepoError>,
    ) -> Result<T, RepoError> {
        self.with_open(|e| {
            let r = op(&e);
            (Some(e), r)
        })
    }

    pub(crate) fn err(&self, op: &'static str) -> impl Fn(Box<RusticError>) -> RepoError + '_ {
        move |e| {
            let message = e.display_log();
            if let Some(lost) = self.lock_lost(op, &message) {
                return lost;
            }
            if is_damage(&e) {
                return RepoError::Damaged {
                    op,
                    location: self.location.0.clone(),
                    message: first_line(&message),
                };
            }
            storage_or(&self.store, &self.location.0, || {
                RepoError::engine(op, &self.location.0, message)
            })
        }
    }

    /// The error for an engine failure that was the commit gate refusing a snapshot.
    fn lock_lost(&self, op: &'static str, message: &str) -> Option<RepoError> {
        let (_, why) = message.split_once(LOCK_LOST_MARK)?;
        let why = why.trim_start_matches(':').trim();
        let why = why.split(" (kind:").next().unwrap_or(why);
        Some(RepoError::LockLost {
            op,
            location: self.location.0.clone(),
            reason: why.lines().next().unwrap_or_default().to_string(),
        })
    }

    pub(crate) fn snapshot_template(
        &self,
        tags: &[String],
        description: Option<String>,
    ) -> Result<SnapshotFile, RepoError> {
        let mut opts = SnapshotOptions::default();
        for tag in tags {
            opts = opts.add_tags(tag).map_err(self.err("tagging"))?;
        }
        let mut snap = opts.to_snapshot().map_err(self.err("tagging"))?;
        snap.description = description;
        Ok(snap)
    }

    fn delete_quietly(&self, id: SnapshotId) {
        let r = self.with_engine(|e| e.delete_snapshots(&[id]).map_err(self.err("delete")));
        if let Err(e) = r {
            log::error!("could not delete incomplete snapshot {id}: {e}");
        }
    }

    /// The report of a backup of produced bytes when it is whole: `files` files stored, no
    /// producer failed (`finished`), no read failed. Otherwise the snapshot is deleted and the
    /// error names the first cause.
    fn keep_if_whole(
        &self,
        path: &str,
        result: Result<SnapshotFile, String>,
        finished: Vec<String>,
        problems: &Problems,
        files: u64,
    ) -> Result<PartReport, RepoError> {
        let snap = match result {
            Ok(snap) => snap,
            Err(e) => {
                if let Some(lost) = self.lock_lost("backup", &e) {
                    return Err(lost);
                }
                if let Some(f) = self.store.take_failure() {
                    return Err(storage_error(&self.location.0, f));
                }
                let reason = finished.into_iter().next().unwrap_or(e);
                return Err(RepoError::StreamFailed {
                    path: path.to_string(),
                    reason,
                });
            }
        };
        let mut failures = finished;
        failures.extend(problems.take());
        if failures.is_empty()
            && snap
                .summary
                .as_ref()
                .is_some_and(|s| s.total_files_processed == files)
        {
            return Ok(part_report(&snap, Vec::new()));
        }
        self.delete_quietly(snap.id);
        Err(RepoError::StreamFailed {
            path: path.to_string(),
            reason: if failures.is_empty() {
                "the stream was not stored".into()
            } else {
                failures.join("; ")
            },
        })
    }

    /// Every readable snapshot file of the repository, reading only those this process has
    /// not read before.
    fn all_snapshots(&self) -> Result<Vec<Arc<SnapshotFile>>, RepoError> {
        Ok(self.kept_listing()?.1)
    }

    /// The ids the snapshot directory lists now, and every readable snapshot file among
    /// them (see [`Self::all_snapshots`]): one listing serves both.
    fn kept_listing(&self) -> Result<(BTreeSet<SnapshotId>, Vec<Arc<SnapshotFile>>), RepoError> {
        let key = (self.location.0.clone(), self.id.clone());
        let mut kept = kept_snapshots(&key);
        let (listed, read) = {
            // Read beside a loaded index, which stays loaded for the run's next part.
            let slot = self.open.lock().unwrap_or_else(|p| p.into_inner());
            match &*slot {
                Some(Slot::Ids { engine, .. }) => listed_and_new(engine, &kept),
                Some(Slot::Open(engine)) => listed_and_new(engine, &kept),
                None => {
                    drop(slot);
                    self.with_engine(|e| Ok(listed_and_new(e, &kept)))?
                }
            }
        }
        .map_err(self.err("listing snapshots"))?;
        for snap in read {
            kept.insert(snap.id, Arc::new(snap));
        }
        let listed: BTreeSet<SnapshotId> = listed.into_iter().collect();
        kept.retain(|id, _| listed.contains(id));
        let all = kept.values().cloned().collect();
        keep_snapshots(key, kept);
        Ok((listed, all))
    }

    /// The parent of a backup of `as_path` made from `template`: among the snapshots of its
    /// group (host, label and paths, the engine's default), those sharing the most tags with
    /// it, and of those the newest; found in the kept listing so that the engine does not read
    /// every snapshot file for it. Several containers back up the same path (`/layer`): a
    /// parent from another container matches none of its files and every file is read again.
    fn parent_for(
        &self,
        template: &SnapshotFile,
        as_path: &str,
    ) -> Result<Option<SnapshotId>, RepoError> {
        let mut probe = template.clone();
        probe.paths = rustic_core::StringList::default();
        probe.paths.add(as_path.to_string());
        let group = rustic_core::SnapshotGroup::from_snapshot(&probe, Default::default());
        let shared = |s: &SnapshotFile| template.tags.iter().filter(|t| s.tags.contains(t)).count();
        Ok(self
            .all_snapshots()?
            .into_iter()
            .filter(|s| group.matches(s))
            .max_by_key(|s| (shared(s), s.time.timestamp()))
            .map(|s| s.id))
    }

    /// Snapshot files listed but not readable (damaged or truncated); `kept`: see
    /// [`Self::refuse_if_unreadable`].
    fn unreadable(&self, kept: bool) -> Result<Vec<String>, RepoError> {
        let list = || {
            self.with_engine(|e| {
                Ok(e.list::<SnapshotId>()
                    .map_err(self.err("listing snapshot files"))?
                    .collect::<BTreeSet<_>>())
            })
        };
        let (listed, read): (BTreeSet<SnapshotId>, BTreeSet<SnapshotId>) = if kept {
            let (listed, all) = self.kept_listing()?;
            (listed, all.iter().map(|s| s.id).collect())
        } else {
            let listed = list()?;
            let all =
                self.with_engine(|e| e.get_all_snapshots().map_err(self.err("listing snapshots")))?;
            (listed, all.iter().map(|s| s.id).collect())
        };
        let missed: Vec<SnapshotId> = listed.difference(&read).copied().collect();
        if missed.is_empty() {
            return Ok(Vec::new());
        }
        // A file listed but not read may have been deleted in between (a retention run or a
        // backup's orphan clean-up, under a shared lock): only one still there is damaged.
        let still = list()?;
        Ok(missed
            .into_iter()
            .filter(|id| still.contains(id))
            .map(|id| id.to_hex().to_string())
            .collect())
    }

    fn find_snapshot(&self, id: &str) -> Result<SnapshotFile, RepoError> {
        self.with_engine(|e| {
            e.get_snapshot_from_str(id, |_| true)
                .map_err(|_| RepoError::SnapshotNotFound {
                    id: id.to_string(),
                    location: self.location.0.clone(),
                })
        })
    }

    /// Runs `op` on the engine with its id index loaded (for backups). The index stays
    /// loaded for the next part of the run while no pack was written since it was loaded
    /// (then it still knows every blob this handle stored); otherwise it is loaded again.
    pub(crate) fn with_ids_index<T>(
        &self,
        op: impl FnOnce(&Engine<rustic_core::IndexedIdsStatus>) -> Result<T, RepoError>,
    ) -> Result<T, RepoError> {
        let mut slot = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let written = self.written.load(Ordering::SeqCst);
        let engine = match slot.take() {
            Some(Slot::Ids { engine, loaded_at }) if loaded_at == written => engine,
            held => self
                .opened(held)?
                .to_indexed_ids()
                .map_err(self.err("loading the index"))?,
        };
        let result = op(&engine);
        *slot = Some(Slot::Ids {
            engine,
            loaded_at: written,
        });
        result
    }

    /// Runs `op` on the engine with its full index loaded (for restores and dumps); the
    /// opened engine is kept for the next call.
    fn with_full_index<T>(
        &self,
        op: impl FnOnce(&Engine<rustic_core::IndexedFullStatus>) -> Result<T, RepoError>,
    ) -> Result<T, RepoError> {
        self.with_open(|e| match e.to_indexed() {
            Ok(indexed) => {
                let r = op(&indexed);
                (Some(indexed.drop_index()), r)
            }
            Err(err) => (None, Err(self.err("loading the index")(err))),
        })
    }
}

/// The engine between operations: opened, or opened with its id index loaded (kept between
/// the parts of a backup run).
enum Slot {
    Open(Engine<OpenStatus>),
    Ids {
        engine: Engine<rustic_core::IndexedIdsStatus>,
        /// This handle's pack bytes written when the index was loaded.
        loaded_at: u64,
    },
}

fn part_report(snap: &SnapshotFile, unreadable: Vec<String>) -> PartReport {
    let summary = snap.summary.clone().unwrap_or_default();
    PartReport {
        snapshot_id: snap.id.to_hex().to_string(),
        files: summary.total_files_processed,
        dirs: summary.total_dirs_processed,
        bytes: summary.total_bytes_processed,
        added_bytes: summary.data_added,
        unreadable,
    }
}

impl Repository for RusticRepository {
    fn backup_dir(&self, req: &DirBackup<'_>) -> Result<PartReport, RepoError> {
        let _lock = self.hold_lock(false)?;
        let problems = Problems::default();
        let paths = vec![req.source.to_path_buf()];
        let source = RecordingSource {
            inner: LocalSource::new(
                LocalSourceSaveOptions::default(),
                &Default::default(),
                &LocalSourceFilterOptions::default(),
                &paths,
            )
            .map_err(self.err("backup"))?,
            problems: problems.clone(),
            source: req.source.to_path_buf(),
            as_path: PathBuf::from(req.as_path),
            exclude: req.exclude.to_vec(),
            pace: req.pace.clone(),
        };
        let mut opts = BackupOptions::default();
        let snap = self.snapshot_template(req.tags, req.description.clone())?;
        match self.parent_for(&snap, req.as_path)? {
            Some(id) => opts.parent_opts.parents = vec![id.to_hex().to_string()],
            // No parent: every file is read (the engine would read every snapshot file to
            // find none).
            None => opts.parent_opts.force = true,
        }
        let snap = self.with_ids_index(|repo| {
            repo.archive(&opts, &source, snap, &[PathBuf::from(req.as_path)])
                .map_err(self.err("backup"))
        })?;
        Ok(part_report(&snap, problems.take()))
    }

    fn backup_stream(
        &self,
        req: &StreamBackup<'_>,
        source: &mut dyn StreamSource,
    ) -> Result<PartReport, RepoError> {
        let _lock = self.hold_lock(false)?;
        let problems = Problems::default();
        let src = StreamReadSource::new(req.path, source.reader(), problems.clone());
        let mut opts = BackupOptions::default();
        opts.parent_opts.force = true;
        let mut snap = self.snapshot_template(req.tags, req.description.clone())?;
        if let Some(t) = req.time {
            snap.time = t.to_zoned(jiff::tz::TimeZone::UTC);
        }
        let result = self.with_ids_index(|repo| {
            Ok(repo
                .archive(&opts, &src, snap, &[PathBuf::from(req.path)])
                .map_err(|e| e.display_log()))
        })?;
        drop(src);
        let finished = source.finish().err();
        self.keep_if_whole(
            req.path,
            result,
            finished.into_iter().collect(),
            &problems,
            1,
        )
    }

    fn backup_tree(&self, req: TreeBackup<'_>) -> Result<PartReport, RepoError> {
        let _lock = self.hold_lock(false)?;
        let problems = Problems::default();
        let as_path = req.as_path.to_string();
        let mut opts = BackupOptions::default();
        // Produced files have no identity to compare with a parent's: read every one.
        opts.parent_opts.force = true;
        let snap = self.snapshot_template(req.tags, None)?;
        let files = req.files.len() as u64;
        let (src, producers) = CraftedSource::new(req, problems.clone());
        let result = self.with_ids_index(|repo| {
            Ok(repo
                .archive(&opts, &src, snap, &[PathBuf::from(&as_path)])
                .map_err(|e| e.display_log()))
        })?;
        drop(src);
        let finished = producers
            .iter()
            .filter_map(|p| match p.lock() {
                Ok(mut p) => p.finish().err(),
                Err(_) => Some("a producer failed".into()),
            })
            .collect();
        self.keep_if_whole(&as_path, result, finished, &problems, files)
    }

    fn snapshots(&self, tags: &[String]) -> Result<Vec<SnapshotInfo>, RepoError> {
        let mut snaps = self.all_snapshots()?;
        snaps.sort_by(|a, b| a.time.cmp(&b.time));
        Ok(snaps
            .into_iter()
            .filter(|s| tags.iter().all(|t| s.tags.iter().any(|st| st == t)))
            .map(|s| SnapshotInfo {
                id: s.id.to_hex().to_string(),
                time: s.time.timestamp(),
                hostname: s.hostname.clone(),
                tags: s.tags.iter().cloned().collect(),
                paths: s.paths.iter().cloned().collect(),
                description: s.description.clone(),
            })
            .collect())
    }

    fn delete(&self, ids: &[String]) -> Result<(), RepoError> {
        // Shared, unlike restic's `forget`: it removes only snapshot files, which no
        // concurrent backup needs, so a host cleaning up its orphans never waits for (or fails
        // on) another host's backup. A prune elsewhere still excludes it.
        let _lock = self.hold_lock(false)?;
        self.refuse_if_unreadable("deleting snapshots", true)?;
        // Gone already (a concurrent run deleted it): nothing left to do for that one.
        let ids: Vec<_> = ids
            .iter()
            .filter_map(|id| self.find_snapshot(id).ok().map(|s| s.id))
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        self.with_engine(|e| {
            e.delete_snapshots(&ids)
                .map_err(self.err("deleting snapshots"))
        })
    }

    fn restore_dir(&self, id: &str, path: &str, target: &Path) -> Result<RestoreReport, RepoError> {
        let _lock = self.hold_lock(false)?;
        let snap = self.find_snapshot(id)?;
        self.with_full_index(|repo| self.restore_indexed(repo, &snap, id, path, target))
    }

    fn dump(&self, id: &str, path: &str, out: &mut dyn Write) -> Result<u64, RepoError> {
        let _lock = self.hold_lock(false)?;
        let snap = self.find_snapshot(id)?;
        self.with_full_index(|repo| {
            let node = repo
                .node_from_snapshot_path(&format!("{}:{path}", snap.id), |_| true)
                .map_err(self.err("dump"))?;
            let mut counting = CountingWriter {
                inner: out,
                written: 0,
            };
            repo.dump(&node, &mut counting).map_err(self.err("dump"))?;
            Ok(counting.written)
        })
    }

    fn unreadable_snapshots(&self) -> Result<Vec<String>, RepoError> {
        self.unreadable(false)
    }

    fn prune_if(&self, go_ahead: crate::GoAhead<'_>) -> Result<PruneReport, RepoError> {
        let _lock = self.hold_lock(true)?;
        // A damaged snapshot's data would look unused to the plan.
        self.refuse_if_unreadable("pruning", false)?;
        self.with_engine(|e| {
            let opts = rustic_core::PruneOptions::default();
            let plan = e
                .prune_plan(&opts)
                .map_err(self.err("planning the prune"))?;
            let report = PruneReport {
                packs_removed: plan.stats.packs_to_delete.remove,
                bytes_removed: plan.stats.size_to_delete.remove,
            };
            go_ahead().map_err(|why| RepoError::Withdrawn {
                step: format!("deleting {} pack(s)", report.packs_removed),
                why,
            })?;
            e.prune(&opts, plan).map_err(self.err("prune"))?;
            Ok(report)
        })
    }

    fn check(&self, read_data: bool) -> Result<CheckReport, RepoError> {
        let _lock = self.hold_lock(false)?;
        let mut report = CheckReport::default();
        // A check the engine abandons on a damaged object (an index file whose MAC fails) has
        // found damage: that is its finding, not a failure to check.
        let results = match self.with_engine(|e| {
            e.check(CheckOptions::default().read_data(read_data))
                .map_err(self.err("check"))
        }) {
            Err(RepoError::Damaged { message, .. }) => {
                report.errors.push(message);
                return Ok(report);
            }
            other => other?,
        };
        for id in self.unreadable_snapshots()? {
            report.errors.push(format!(
                "snapshot file {id} cannot be read (damaged or truncated)"
            ));
        }
        for (level, err) in results.0 {
            let text = check_finding(&err);
            match format!("{level:?}").as_str() {
                "Warn" => report.warnings.push(text),
                _ => report.errors.push(text),
            }
        }
        Ok(report)
    }

    fn lock_run(&self, exclusive: bool) -> Result<Option<Arc<HeldLock>>, RepoError> {
        self.hold_lock(exclusive).map(Some)
    }

    fn location(&self) -> &str {
        &self.location.0
    }

    fn id(&self) -> &str {
        &self.id
    }
}

/// Whether the engine failed on damaged data: a MAC that does not match (the engine keeps the
/// error's kind private; its text names it), or a tree or blob that no index lists.
fn is_damage(e: &RusticError) -> bool {
    let log = e.display_log();
    !e.is_incorrect_password()
        && (e.is_code("C001")
            || log.contains("related to cryptographic operations")
            || log.contains("not found in index"))
}

fn first_line(message: &str) -> String {
    message
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

impl RusticRepository {
    fn restore_indexed(
        &self,
        repo: &Engine<rustic_core::IndexedFullStatus>,
        snap: &SnapshotFile,
        id: &str,
        path: &str,
        target: &Path,
    ) -> Result<RestoreReport, RepoError> {
        let node = repo
            .node_from_snapshot_path(&format!("{}:{path}", snap.id), |_| true)
            .map_err(self.err("restore"))?;
        let ls = repo
            .ls(&node, &LsOptions::default())
            .map_err(self.err("restore"))?;
        // Every name is checked before anything is written: a snapshot is hostile input.
        if let Some(refusal) = tree_check::first_refusal(ls.clone()).map_err(self.err("restore"))? {
            return Err(RepoError::HostileSnapshot {
                id: id.to_string(),
                entry: refusal.entry,
                reason: refusal.reason.to_string(),
            });
        }
        // A directory is restored into `target`; a single file (a bind-mounted file) is
        // restored as `target` itself.
        let dir_to_create = if node.is_dir() {
            Some(target)
        } else {
            target.parent()
        };
        if let Some(dir) = dir_to_create {
            std::fs::create_dir_all(dir).map_err(|source| RepoError::Io {
                op: "creating restore target",
                path: dir.display().to_string(),
                source,
            })?;
        }
        // The engine first walks what the target holds; a missing single file makes it log
        // an error although nothing is wrong. It starts empty instead (never through a
        // symlink, never over an existing file).
        if !node.is_dir() {
            let created = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(target);
            match created {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(source) => {
                    return Err(RepoError::Io {
                        op: "creating the restored file",
                        path: target.display().to_string(),
                        source,
                    });
                }
            }
        }
        let dest_path = if node.is_dir() {
            format!("{}/", target.display())
        } else {
            target.display().to_string()
        };
        let dest =
            LocalDestination::new(&dest_path, true, !node.is_dir()).map_err(self.err("restore"))?;
        let mut opts = RestoreOptions::default().numeric_id(true);
        opts.sparse = serde_json::from_str("\"ByContent\"").ok();
        let target_error = |message: String, needed_bytes: u64| {
            target_write_error(id, path, target, message, needed_bytes)
        };
        let plan = repo
            .prepare_restore(&opts, ls.clone(), &dest, false)
            .map_err(|e| target_error(e.display_log(), 0))?;
        let report = RestoreReport {
            files: plan.stats.files.restore + plan.stats.files.unchanged,
            dirs: plan.stats.dirs.restore + plan.stats.dirs.unchanged,
            bytes: plan.restore_size,
        };
        // The engine unwraps pack read errors inside its worker threads: contain the panic,
        // then find out which files are wrong by comparing them with the repository.
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            repo.restore(plan, &opts, ls.clone(), &dest)
        }));
        let engine_error = match outcome {
            Ok(Ok(())) => None,
            // The patched engine returns write failures into the target as errors; only
            // reading the repository still panics.
            Ok(Err(e)) if e.display_log().contains(TARGET_WRITE_MARK) => {
                return Err(target_error(e.display_log(), report.bytes));
            }
            Ok(Err(e)) => Some(e.display_log()),
            Err(panic) => Some(panic_text(panic.as_ref())),
        };
        if let Some(engine_error) = engine_error {
            let mut failed = verify::bad_files(repo, ls, target);
            if failed.is_empty() {
                failed.push(format!("(no single file identified) {engine_error}"));
            }
            return Err(RepoError::RestoreIncomplete {
                id: id.to_string(),
                path: path.to_string(),
                files: failed,
            });
        }
        verify::apply_root_metadata(&node, target).map_err(|source| RepoError::Io {
            op: "setting owner and mode of the restore root",
            path: target.display().to_string(),
            source,
        })?;
        Ok(report)
    }
}

/// How the patched engine starts the message of a failed write into the restore target.
const TARGET_WRITE_MARK: &str = "Failed to write into the restore target";

/// A restore that could not write into its target (full disk, refused path): the error
/// names the target and, when the disk is full, the free space.
fn target_write_error(
    id: &str,
    path: &str,
    target: &Path,
    message: String,
    needed_bytes: u64,
) -> RepoError {
    // ENOSPC (28) and EDQUOT (122), as std displays and debug-prints them.
    let no_space = ["os error 28)", "os error 122)", "code: 28,", "code: 122,"]
        .iter()
        .any(|m| message.contains(m));
    let file = message
        .split_once("at `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(file, _)| file.to_string());
    let cause = if no_space {
        "no space left on the file system".to_string()
    } else {
        last_cause(&message)
    };
    RepoError::TargetWrite {
        what: format!("`{path}` from snapshot {id} into {}", target.display()),
        reason: match file {
            Some(f) if !f.is_empty() => format!("{cause} (writing `{f}`)"),
            _ => cause,
        },
        free: no_space
            .then(|| lifeboat_safepath::free_bytes(target))
            .flatten()
            .map(|free| (free, needed_bytes)),
        no_space,
    }
}

/// The innermost cause of an engine error, which says what really went wrong.
fn last_cause(message: &str) -> String {
    message
        .rsplit("caused by: ")
        .next()
        .unwrap_or(message)
        .trim()
        .to_string()
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    format!("the repository engine failed: {text}")
}

struct CountingWriter<'a> {
    inner: &'a mut dyn Write,
    written: u64,
}

impl Write for CountingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
