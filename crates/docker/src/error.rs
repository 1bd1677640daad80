use thiserror::Error;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error(
        "cannot reach the Docker engine ({detail}): is dockerd running and is DOCKER_HOST \
         right? Lifeboat needs the engine's socket (usually /var/run/docker.sock)"
    )]
    Unreachable { detail: String },

    #[error("no {what} named `{name}` on this engine: check the name with `docker ps -a`")]
    NotFound { what: &'static str, name: String },

    #[error("{what} `{name}` already exists: {message}")]
    Conflict {
        what: &'static str,
        name: String,
        message: String,
    },

    #[error("the Docker engine refused to {op} `{name}`: {message}")]
    Api {
        op: &'static str,
        name: String,
        message: String,
    },
}
