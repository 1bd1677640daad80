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
