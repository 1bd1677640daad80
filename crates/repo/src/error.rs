use thiserror::Error;

/// What went wrong with the repository; every message says what to do.
#[derive(Debug, Error)]
pub enum RepoError {
    /// No repository there (exit 10).
    #[error(
        "no repository at `{location}`: run `lifeboat init` to create one, or point \
         LIFEBOAT_REPOSITORY / --repo at the right place"
    )]
    NotFound {
        /// Where the repository is.
        location: String,
    },

    /// The password does not open it (exit 12).
    #[error(
        "wrong password for the repository at `{location}`: check LIFEBOAT_PASSWORD, \
         LIFEBOAT_PASSWORD_FILE or --password-file"
    )]
    WrongPassword {
        /// Where the repository is.
        location: String,
    },

    /// `init` over an existing repository (exit 14).
    #[error("a repository already exists at `{location}`; nothing was changed")]
    AlreadyExists {
        /// Where the repository is.
        location: String,
    },

    /// No such snapshot (exit 15).
    #[error("snapshot `{id}` not found in `{location}`: list them with `lifeboat snapshots`")]
    SnapshotNotFound {
        /// The snapshot.
        id: String,
        /// Where the repository is.
        location: String,
    },

    /// A stream backup whose producer failed; nothing was stored.
    #[error(
        "the stream for `{path}` failed: {reason}; the incomplete snapshot was deleted and \
         nothing was stored"
    )]
    StreamFailed {
        /// The path (in the snapshot or on disk).
        path: String,
        /// Why.
        reason: String,
    },

    /// Restored files differ from the repository: damage (exit 5).
    #[error(
        "restore of `{path}` from snapshot {id} failed for {} file(s) (first: {}); the data in \
         the repository may be damaged: run `lifeboat check --read-data`",
        files.len(),
        files.first().map(String::as_str).unwrap_or("?")
    )]
    RestoreIncomplete {
        /// The snapshot.
        id: String,
        /// The path (in the snapshot or on disk).
        path: String,
        /// The files that are missing or wrong.
        files: Vec<String>,
    },

    /// Snapshot files that cannot be read (damaged): deletions and prunes refuse while they
    /// exist, since their data would look unused (exit 5).
    #[error(
        "{op}: {} snapshot file(s) of `{location}` cannot be read (damaged: {}); nothing is \
         deleted until they are mended: see `lifeboat check`, then remove each damaged file \
         (`snapshots/ID` in the repository) or restore what it held with restic",
        ids.len(),
        ids.join(", ")
    )]
    UnreadableSnapshots {
        /// What was refused.
        op: &'static str,
        /// The repository.
        location: String,
        /// The snapshot files' ids.
        ids: Vec<String>,
    },

    /// A tree that would write outside its target; nothing was restored (exit 5).
    #[error(
        "refusing to restore snapshot {id}: entry {entry} would be written outside the restore \
         target ({reason}); nothing was restored. Restic refuses such snapshots too: someone \
         with the repository key may have tampered with it; restore an earlier backup and run \
         `lifeboat check`"
    )]
    HostileSnapshot {
        /// The snapshot.
        id: String,
        /// The refused entry: its directory and name.
        entry: String,
        /// Why.
        reason: String,
    },

    /// The restore target could not be written (exit 16).
    #[error(
        "restore of {what} could not write into the target: {reason}{}; the repository is \
         fine, the restore target is not",
        free_space_hint(*free)
    )]
    TargetWrite {
        /// Which part, from which snapshot, into which directory.
        what: String,
        /// Why.
        reason: String,
        /// Free space left on the target's file system and what the restore needed in all,
        /// when the disk is full.
        free: Option<(u64, u64)>,
        /// The target's file system is full (`ENOSPC` or `EDQUOT`).
        no_space: bool,
    },

    /// The location string is malformed (exit 2).
    #[error("{reason}")]
    BadLocation {
        /// What is wrong, with the expected form.
        reason: String,
    },

    /// The object store did not answer within the retry budget (exit 17).
    #[error(
        "the repository storage at `{location}` is unreachable: {reason}. Check that the \
         endpoint is up and reachable from this host (`lifeboat doctor` tests it); nothing was \
         committed"
    )]
    StorageUnreachable {
        /// Where the repository is.
        location: String,
        /// The last error, attempts and time spent.
        reason: String,
    },

    /// The object store refused the credentials (exit 18).
    #[error(
        "the repository storage at `{location}` refused the credentials: {reason}. Check \
         AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or their *_FILE forms) and the key's \
         permissions on the bucket"
    )]
    StorageDenied {
        /// Where the repository is.
        location: String,
        /// The store's error code and message.
        reason: String,
    },

    /// The bucket does not exist (exit 19).
    #[error(
        "the bucket of `{location}` does not exist: create it first (Garage: `garage bucket \
         create NAME` and `garage bucket allow --read --write NAME --key KEY`; AWS: `aws s3 mb`), \
         then run `lifeboat init`"
    )]
    NoBucket {
        /// Where the repository is.
        location: String,
    },

    /// Any other failure of the object store, after retries where they apply.
    #[error("the repository storage at `{location}` failed: {reason}")]
    Storage {
        /// Where the repository is.
        location: String,
        /// What failed.
        reason: String,
    },

    /// Another process (on any host, Lifeboat or restic) holds a conflicting lock (exit 11).
    #[error(
        "the repository at `{location}` is locked: {holder}. Try again when it is done; if that \
         process is gone, its lock turns stale at {stale_at} (or remove it with `restic \
         unlock` once you are sure)"
    )]
    Locked {
        /// Where the repository is.
        location: String,
        /// Who holds the lock.
        holder: String,
        /// When it turns stale.
        stale_at: String,
    },

    /// The lock of a running operation went stale; nothing was committed (exit 11).
    #[error(
        "{op} on `{location}` was aborted before committing: {reason}. Another host may have \
         started a prune meanwhile; the data uploaded so far is reused by the next backup"
    )]
    LockLost {
        /// The operation.
        op: &'static str,
        /// Where the repository is.
        location: String,
        /// Why the lock cannot be trusted.
        reason: String,
    },

    /// A key change that would lock everyone out, or is ambiguous (exit 14).
    #[error("{what}; nothing was changed")]
    KeyRefused {
        /// What was refused, and what to do instead.
        what: String,
    },

    /// The caller's go-ahead was withdrawn before an irreversible step (a daemon that no
    /// longer leads its cluster); nothing of that step was done.
    #[error("stopped before {step}: {why}")]
    Withdrawn {
        /// The step not taken.
        step: String,
        /// Why the go-ahead was withdrawn.
        why: String,
    },

    /// No key matches (exit 15).
    #[error("no key `{id}` in `{location}`: list them with `lifeboat key list`")]
    NoSuchKey {
        /// The id (or prefix) asked for.
        id: String,
        /// Where the repository is.
        location: String,
    },

    /// An object the operation needs is damaged or missing (a MAC that does not match, a
    /// tree or blob no index lists): the repository itself is damaged (exit 5).
    #[error(
        "{op} found damage in the repository at `{location}`: {message}; run `lifeboat check \
         --read-data` to see what is damaged, and see \"Repairing a damaged repository\" in \
         the README"
    )]
    Damaged {
        /// The operation.
        op: &'static str,
        /// Where the repository is.
        location: String,
        /// What the engine said.
        message: String,
    },

    /// Any other failure of the engine.
    #[error("{op} failed on the repository at `{location}`: {message}")]
    Engine {
        /// The operation.
        op: &'static str,
        /// Where the repository is.
        location: String,
        /// What the engine said.
        message: String,
    },

    /// A local I/O failure.
    #[error("{op}: {path}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The path (in the snapshot or on disk).
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl RepoError {
    pub(crate) fn engine(op: &'static str, location: &str, err: impl std::fmt::Display) -> Self {
        RepoError::Engine {
            op,
            location: location.to_string(),
            message: err.to_string(),
        }
    }
}

fn free_space_hint(free: Option<(u64, u64)>) -> String {
    match free {
        Some((free, needed)) => format!(
            " ({} free on that file system, {} needed: free space there, or restore \
             elsewhere with `--as`)",
            bytesize::ByteSize::b(free),
            bytesize::ByteSize::b(needed)
        ),
        None => String::new(),
    }
}
