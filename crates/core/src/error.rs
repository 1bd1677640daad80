use lifeboat_capture::CaptureError;
use lifeboat_docker::EngineError;
use lifeboat_model::ManifestError;
use lifeboat_repo::RepoError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CoreError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("snapshot {snapshot}: {source}")]
    Manifest {
        snapshot: String,
        #[source]
        source: ManifestError,
    },
    #[error("no container named `{0}`: check the name with `docker ps -a`")]
    NoSuchContainer(String),
    #[error("no backup of `{name}` {detail}: list them with `lifeboat snapshots {name}`")]
    NoBackup { name: String, detail: String },
    #[error(
        "no backup of {what} {detail}: back it up with `lifeboat backup --project NAME` (or \
         --all), and list backups with `lifeboat snapshots`"
    )]
    NoStackBackup { what: String, detail: String },
    #[error(transparent)]
    Lock(#[from] lifeboat_consistency::LockError),
    #[error(transparent)]
    Mode(#[from] lifeboat_consistency::ModeError),
    #[error(transparent)]
    Hook(#[from] lifeboat_consistency::HookError),
    #[error("{0}; nothing was stored")]
    Hot(String),
    #[error("{0}")]
    Stack(String),
    #[error(
        "`{name}` is {status}: not backed up, its data may be mid-recovery. Fix it first, or \
         pass --unhealthy=wait to wait for it or --unhealthy=force to back it up anyway"
    )]
    NotHealthy { name: String, status: String },
    #[error("container `{name}` was removed or replaced during the backup; nothing was stored")]
    ContainerVanished { name: String },
    #[error("refusing to overwrite: {what}. Nothing was changed; {hint}")]
    Refused { what: String, hint: String },
    #[error(
        "image `{image}` is not on this host and the backup does not contain it: load or \
         build the image first, or back up with --with-image next time"
    )]
    ImageMissing { image: String },
    #[error(
        "container `{name}` was restored but did not become healthy within {seconds}s (last \
         status: {status}); inspect it with `docker logs {name}`"
    )]
    Unhealthy {
        name: String,
        seconds: u64,
        status: String,
    },
    #[error(
        "container `{name}` exited with code {} and will not be restarted, so it will never \
         become ready; the end of its log:\n{log}\ninspect it with `docker logs {name}`",
        code.map_or("?".to_string(), |c| c.to_string())
    )]
    Ended {
        name: String,
        code: Option<i64>,
        log: String,
    },
    #[error("{0}; nothing was changed")]
    BadName(#[from] lifeboat_model::names::NameError),
    #[error(
        "refusing backup {snapshot}: its manifest holds an {error}; nothing was changed. The \
         repository may have been tampered with: restore an earlier backup"
    )]
    HostileManifest {
        snapshot: String,
        error: lifeboat_model::names::NameError,
    },
    #[error("{op} `{path}`: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl CoreError {
    pub(crate) fn io(
        op: &'static str,
        path: impl std::fmt::Display,
    ) -> impl FnOnce(std::io::Error) -> CoreError {
        let path = path.to_string();
        move |source| CoreError::Io { op, path, source }
    }
}
