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
