use lifeboat_capture::CaptureError;
use lifeboat_docker::EngineError;
use lifeboat_model::ManifestError;
use lifeboat_repo::RepoError;
use thiserror::Error;

/// What went wrong; every message says what to do.
#[derive(Debug, Error)]
pub enum CoreError {
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The repository failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The container's data cannot be read from here.
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// A manifest cannot be read.
    #[error("snapshot {snapshot}: {source}")]
    Manifest {
        /// The manifest snapshot.
        snapshot: String,
        /// The cause.
        #[source]
        source: ManifestError,
    },
    /// No container of that name (exit 15).
    #[error("no container named `{0}`: check the name with `docker ps -a`")]
    NoSuchContainer(String),
    #[error("no backup of `{name}` {detail}: list them with `lifeboat snapshots {name}`")]
    /// No backup of that container matches (exit 15).
    NoBackup {
        /// The container.
        name: String,
        /// What was asked for.
        detail: String,
    },
    #[error(
        "no backup of {what} {detail}: back it up with `lifeboat backup --project NAME` (or \
         --all), and list backups with `lifeboat snapshots`"
    )]
    /// No backup of that stack (exit 15).
    NoStackBackup {
        /// What was asked for.
        what: String,
        /// What was asked for.
        detail: String,
    },
    /// Another run holds the container (exit 11).
    #[error(transparent)]
    Lock(#[from] lifeboat_consistency::LockError),
    /// An unknown consistency mode.
    #[error(transparent)]
    Mode(#[from] lifeboat_consistency::ModeError),
    /// A hook failed.
    #[error(transparent)]
    Hook(#[from] lifeboat_consistency::HookError),
    /// A hot capture failed.
    #[error("{0}; nothing was stored")]
    Hot(String),
    /// A stack cannot be planned or restored.
    #[error("{0}")]
    Stack(String),
    #[error(
        "`{name}` is {status}: not backed up, its data may be mid-recovery. Fix it first, or \
         pass --unhealthy=wait to wait for it or --unhealthy=force to back it up anyway"
    )]
    /// The container is not healthy; not backed up.
    NotHealthy {
        /// The container.
        name: String,
        /// What it is.
        status: String,
    },
    #[error("container `{name}` was removed or replaced during the backup; nothing was stored")]
    /// The container was removed or replaced during the backup.
    ContainerVanished {
        /// The container.
        name: String,
    },
    #[error("refusing to overwrite: {what}. Nothing was changed; {hint}")]
    /// Would overwrite something (exit 14).
    Refused {
        /// What was asked for.
        what: String,
        /// What to do instead.
        hint: String,
    },
    #[error(
        "image `{image}` is not on this host and the backup does not contain it: load or \
         build the image first, or back up with --with-image next time"
    )]
    /// The image is neither here nor in the backup.
    ImageMissing {
        /// The image.
        image: String,
    },
    #[error(
        "container `{name}` was restored but did not become healthy within {seconds}s (last \
         status: {status}); inspect it with `docker logs {name}`"
    )]
    /// The restored container did not become healthy in time.
    Unhealthy {
        /// The container.
        name: String,
        /// How long it was given.
        seconds: u64,
        /// What it is.
        status: String,
    },
    #[error(
        "container `{name}` was recovered but fails its probes: {failed}; it is left as it is \
         (the broken state is in its forensic backup); look at it with `docker logs {name}`"
    )]
    /// The recovered container fails its probes.
    ProbesFailed {
        /// The container.
        name: String,
        /// The failed probes and their output.
        failed: String,
    },
    #[error(
        "container `{name}` exited with code {} and will not be restarted, so it will never \
         become ready; the end of its log:\n{log}\ninspect it with `docker logs {name}`",
        code.map_or("?".to_string(), |c| c.to_string())
    )]
    /// The restored container exited for good.
    Ended {
        /// The container.
        name: String,
        /// Its exit code.
        code: Option<i64>,
        /// The end of its log (secrets scrubbed).
        log: String,
    },
    /// A name given breaks its rule (exit 2).
    #[error("{0}; nothing was changed")]
    BadName(#[from] lifeboat_model::names::NameError),
    #[error(
        "refusing backup {snapshot}: its manifest holds an {error}; nothing was changed. The \
         repository may have been tampered with: restore an earlier backup"
    )]
    /// A manifest holds names that would lead elsewhere (exit 5).
    HostileManifest {
        /// The manifest snapshot.
        snapshot: String,
        /// The name and its rule.
        error: lifeboat_model::names::NameError,
    },
    /// A local I/O failure.
    #[error("{op} `{path}`: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The path.
        path: String,
        /// The cause.
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
