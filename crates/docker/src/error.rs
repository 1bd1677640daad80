//! The engine's errors: each names the object and says what to do.

use thiserror::Error;

/// What went wrong talking to the engine.
#[derive(Debug, Error)]
pub enum EngineError {
    /// The engine does not answer (exit code 13).
    #[error(
        "cannot reach the Docker engine ({detail}): is dockerd running and is DOCKER_HOST \
         right? Lifeboat needs the engine's socket (usually /var/run/docker.sock)"
    )]
    Unreachable {
        /// What the connection attempt said.
        detail: String,
    },

    /// No such container, volume, network or image.
    #[error("no {what} named `{name}` on this engine: check the name with `docker ps -a`")]
    NotFound {
        /// `container`, `volume`, `network` or `image`.
        what: &'static str,
        /// The name asked for.
        name: String,
    },

    /// An object of that name exists already.
    #[error("{what} `{name}` already exists: {message}")]
    Conflict {
        /// What kind of object.
        what: &'static str,
        /// Its name.
        name: String,
        /// What the engine said.
        message: String,
    },

    /// The engine refused a call.
    #[error("the Docker engine refused to {op} `{name}`: {message}")]
    Api {
        /// The operation (`start`, `create`, ...).
        op: &'static str,
        /// The object it was for.
        name: String,
        /// What the engine said.
        message: String,
    },
}
