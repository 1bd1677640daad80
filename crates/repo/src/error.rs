use thiserror::Error;

#[derive(Debug, Error)]
pub enum RepoError {
    #[error(
        "no repository at `{location}`: run `lifeboat init` to create one, or point \
         LIFEBOAT_REPOSITORY / --repo at the right place"
    )]
    NotFound { location: String },

    #[error(
        "wrong password for the repository at `{location}`: check LIFEBOAT_PASSWORD, \
         LIFEBOAT_PASSWORD_FILE or --password-file"
    )]
    WrongPassword { location: String },

    #[error("a repository already exists at `{location}`; nothing was changed")]
    AlreadyExists { location: String },

    #[error("snapshot `{id}` not found in `{location}`: list them with `lifeboat snapshots`")]
    SnapshotNotFound { id: String, location: String },

    #[error(
        "the stream for `{path}` failed: {reason}; the incomplete snapshot was deleted and \
         nothing was stored"
    )]
    StreamFailed { path: String, reason: String },

    #[error(
        "restore of `{path}` from snapshot {id} failed for {} file(s) (first: {}); the data in \
         the repository may be damaged: run `lifeboat check --read-data`",
        files.len(),
        files.first().map(String::as_str).unwrap_or("?")
    )]
    RestoreIncomplete {
        id: String,
        path: String,
        files: Vec<String>,
    },

    #[error(
        "refusing to restore snapshot {id}: entry {entry} would be written outside the restore \
         target ({reason}); nothing was restored. Restic refuses such snapshots too: someone \
         with the repository key may have tampered with it; restore an earlier backup and run \
         `lifeboat check`"
    )]
    HostileSnapshot {
        id: String,
        entry: String,
        reason: String,
    },

    #[error(
        "restore of {what} could not write into the target: {reason}{}; the repository is \
         fine, the restore target is not",
        free_space_hint(*free)
    )]
    TargetWrite {
        /// Which part, from which snapshot, into which directory.
        what: String,
        reason: String,
        /// Free space left on the target's file system and what the restore needed in all,
        /// when the disk is full.
        free: Option<(u64, u64)>,
        /// The target's file system is full (`ENOSPC` or `EDQUOT`).
        no_space: bool,
    },

    #[error("{op} failed on the repository at `{location}`: {message}")]
    Engine {
        op: &'static str,
        location: String,
        message: String,
    },

    #[error("{op}: {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
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
