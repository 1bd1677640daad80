//! Docker access: the only crate that uses `bollard`.
//!
//! It offers a narrow, synchronous [`Engine`] trait with exactly the API calls Lifeboat
//! needs (documented in the README, because the Docker socket is root-equivalent), and
//! translates between the engine's JSON and Lifeboat's model types. Calls block on a small
//! private runtime: never call them from inside an async task (use `spawn_blocking`).
//!
//! It must never decide policy (what to back up, when to refuse): that is `core`'s job.

#![warn(missing_docs)]

mod convert;
mod engine;
mod error;
mod events;
pub mod secrets;

use std::collections::BTreeMap;
use std::io::{Read, Write};

use lifeboat_model::{ComposeInfo, ContainerConfig, MountKind, NetworkAttachment};

pub use convert::{compose_info, config_from_inspect, create_body};
pub use engine::DockerEngine;

pub use error::EngineError;
pub use lifeboat_model::{ContainerStatus, Health};

/// Facts about the engine, recorded in every manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
/// What the engine says about itself.
pub struct EngineInfo {
    /// The engine's version (`28.2.2`).
    pub version: String,
    /// The API version negotiated with it.
    pub api_version: String,
    /// The engine's data root (`/var/lib/docker`).
    pub data_root: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
/// A container's state, typed.
pub struct ContainerState {
    /// What the engine says; `None` for a word this build does not know.
    pub status: Option<ContainerStatus>,
    /// Running (or paused): its processes exist.
    pub running: bool,
    /// The healthcheck's verdict, or `None` without a healthcheck.
    pub health: Option<Health>,
    /// The exit code of its last run, once it has exited.
    pub exit_code: Option<i64>,
    /// Its main process on this host's kernel while it runs (`/proc/PID/root` is its file
    /// system as its processes see it).
    pub pid: Option<u32>,
}

impl ContainerState {
    /// The state's word for messages ("running", "unhealthy"): health when there is one.
    pub fn describe(&self) -> &'static str {
        match (self.health, self.status) {
            (Some(h), _) => h.as_str(),
            (None, Some(s)) => s.as_str(),
            (None, None) => "unknown",
        }
    }

    /// Whether the container is paused.
    pub fn is_paused(&self) -> bool {
        self.status == Some(ContainerStatus::Paused)
    }

    /// Whether it has stopped for good: exited or dead, and the engine is not restarting it
    /// (a container its restart policy brings back is `restarting`, not `exited`).
    pub fn has_ended(&self) -> bool {
        matches!(
            self.status,
            Some(ContainerStatus::Exited | ContainerStatus::Dead)
        )
    }
}

/// Where a mount's data lives on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
/// One mount of a container and where its data is on the host.
pub struct MountSource {
    /// Volume, bind or tmpfs.
    pub kind: MountKind,
    /// Volume name, or host path for binds.
    pub name: String,
    /// The directory (or file) on this host holding the data.
    pub host_path: String,
    /// The path inside the container.
    pub destination: String,
}

/// A container as Lifeboat sees it.
#[derive(Debug, Clone)]
pub struct ContainerDetails {
    /// The full container id.
    pub id: String,
    /// Its name, without the leading `/`.
    pub name: String,
    /// Its state now.
    pub state: ContainerState,
    /// Everything needed to create it again (holds env: secrets).
    pub config: ContainerConfig,
    /// Its mounts with their host paths, in the order of `config.mounts` (tmpfs included).
    pub mounts: Vec<MountSource>,
    /// Its compose project and service, from compose's labels.
    pub compose: Option<ComposeInfo>,
    /// The container's writable layer, where the storage driver exposes it (overlay2).
    pub layer: Option<LayerDirs>,
    /// The kernel killed it for memory at its last exit.
    pub oom_killed: bool,
    /// How often the engine restarted it.
    pub restart_count: u64,
}

/// The directories of a container's writable layer on the host (overlay2's `GraphDriver`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDirs {
    /// The container's own changes (what `docker commit` would hold).
    pub upper: String,
    /// The merged view the container sees.
    pub merged: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// A named volume.
pub struct VolumeInfo {
    /// Its name.
    pub name: String,
    /// Its driver (`local`).
    pub driver: String,
    /// The host directory holding the volume's data.
    pub mountpoint: String,
    /// Its labels (compose's among them), recreated at restore.
    pub labels: BTreeMap<String, String>,
}

/// Memory use of a running container, as the engine's stats report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Bytes in use, page cache that can be reclaimed excluded (as `docker stats` shows it).
    pub used: u64,
    /// The limit in force (the host's memory when the container has none).
    pub limit: u64,
}

/// How a command run inside a container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// `None` when the command did not finish within its timeout.
    pub exit_code: Option<i64>,
    /// Combined stdout and stderr, at most 64 KiB (the tail is kept).
    pub output: String,
}

/// A command's stdout as a byte stream; how it ended once the stream is read to its end.
pub trait ExecStream: Read + Send {
    /// Waits for the command to end: its exit code and the tail of its stderr.
    fn finish(&mut self) -> Result<ExecOutput, EngineError>;
}

/// A command's stdin (closing it closes the command's) and its streamed stdout
/// ([`Engine::exec_session`]).
pub type ExecSession = (Box<dyn Write + Send>, Box<dyn ExecStream>);

/// A change to a container, from the engine's event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    /// `create`, `start`, `die`, `destroy`, `rename`, `update`...
    pub action: String,
    /// The container's id.
    pub id: String,
    /// The container's name at the time of the event.
    pub name: String,
}

/// The engine operations Lifeboat uses. Every method is synchronous. `Ok(None)` means "does
/// not exist"; errors name the object and say what to do.
pub trait Engine: Send + Sync {
    /// The engine's version and data root; `Unreachable` when it does not answer.
    fn info(&self) -> Result<EngineInfo, EngineError>;
    /// Names of all containers (running or not).
    fn container_names(&self) -> Result<Vec<String>, EngineError>;
    /// A container by name or id, `None` when there is none.
    fn container(&self, name: &str) -> Result<Option<ContainerDetails>, EngineError>;
    /// A volume by name, `None` when there is none.
    fn volume(&self, name: &str) -> Result<Option<VolumeInfo>, EngineError>;
    /// Creates a volume; `Conflict` when one of that name exists.
    fn create_volume(
        &self,
        name: &str,
        driver: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<VolumeInfo, EngineError>;
    /// Removes a volume and its data; `NotFound` when there is none.
    fn remove_volume(&self, name: &str) -> Result<(), EngineError>;
    /// Whether an image reference (name or id) is on this engine.
    fn image_present(&self, reference: &str) -> Result<bool, EngineError> {
        Ok(self.image_id(reference)?.is_some())
    }
    /// The content ID (`sha256:...`) of an image reference, `None` when absent.
    fn image_id(&self, reference: &str) -> Result<Option<String>, EngineError>;
    /// A `docker save` stream of the image; a failure mid-stream surfaces as a read error.
    fn export_image(&self, reference: &str) -> Result<Box<dyn Read + Send>, EngineError>;
    /// Loads a `docker save` stream.
    fn import_image(&self, tar: Box<dyn Read + Send>) -> Result<(), EngineError>;
    /// Commits a container's writable layer as a new, untagged image (`docker commit`, the
    /// container paused meanwhile) and returns the image's id.
    fn commit_container(&self, name: &str) -> Result<String, EngineError>;
    /// Removes an image by id or reference; `NotFound` when there is none.
    fn remove_image(&self, reference: &str) -> Result<(), EngineError>;
    /// The driver of a network, `None` when it does not exist.
    fn network_driver(&self, name: &str) -> Result<Option<String>, EngineError>;
    /// Creates a network with `driver`.
    fn create_network(&self, name: &str, driver: &str) -> Result<(), EngineError>;
    /// Creates an internal bridge network (no route out of the host), labelled.
    fn create_internal_network(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), EngineError>;
    /// Removes a network; `NotFound` when there is none.
    fn remove_network(&self, name: &str) -> Result<(), EngineError>;
    /// Names of every volume and every network on the engine.
    fn volume_names(&self) -> Result<Vec<String>, EngineError>;
    /// Names of every network on the engine.
    fn network_names(&self) -> Result<Vec<String>, EngineError>;
    /// Creates (does not start) a container; the first network in `config.networks` is
    /// attached at creation, the others must be connected with [`Engine::connect_network`].
    fn create_container(&self, name: &str, config: &ContainerConfig)
    -> Result<String, EngineError>;
    /// Connects a container to one more network, with its aliases.
    fn connect_network(&self, container: &str, net: &NetworkAttachment) -> Result<(), EngineError>;
    /// Starts a created or stopped container.
    fn start_container(&self, name: &str) -> Result<(), EngineError>;
    /// Stops a container: SIGTERM, then SIGKILL after `timeout_s` seconds.
    fn stop_container(&self, name: &str, timeout_s: i32) -> Result<(), EngineError>;
    /// Removes a container (forcibly, keeping its volumes).
    fn remove_container(&self, name: &str) -> Result<(), EngineError>;
    /// Sets a container's restart policy to `no`: the engine never starts it again by
    /// itself (not even when the engine restarts).
    fn never_restart(&self, name: &str) -> Result<(), EngineError>;
    /// Freezes every process of a running container (cgroup freezer).
    fn pause_container(&self, name: &str) -> Result<(), EngineError>;
    /// Thaws a paused container.
    fn unpause_container(&self, name: &str) -> Result<(), EngineError>;
    /// Runs `cmd` inside a running container and waits at most `timeout` for it.
    fn exec(
        &self,
        name: &str,
        cmd: &[String],
        timeout: std::time::Duration,
    ) -> Result<ExecOutput, EngineError>;
    /// Starts `cmd` (with extra `KEY=value` env) inside a running container and streams its
    /// stdout; stderr is kept for [`ExecStream::finish`].
    fn exec_stream(
        &self,
        name: &str,
        cmd: &[String],
        env: &[String],
    ) -> Result<Box<dyn ExecStream>, EngineError>;
    /// Starts `cmd` inside a running container as a session: what is written to the returned
    /// writer reaches its stdin as it is written (closing the writer closes its stdin), and
    /// its stdout streams back. For a conversation with a client (`psql`) that must keep
    /// its server session open between two steps of a backup.
    fn exec_session(
        &self,
        name: &str,
        cmd: &[String],
        env: &[String],
    ) -> Result<ExecSession, EngineError> {
        let _ = (cmd, env);
        Err(EngineError::Api {
            op: "hold a session in",
            name: name.to_string(),
            message: "this engine cannot hold a session".into(),
        })
    }
    /// Runs `cmd` inside a running container with `input` as its stdin, waiting at most
    /// `timeout` for it to end.
    fn exec_with_input(
        &self,
        name: &str,
        cmd: &[String],
        env: &[String],
        input: Box<dyn Read + Send>,
        timeout: std::time::Duration,
    ) -> Result<ExecOutput, EngineError>;
    /// Container lifecycle events from now on, as they happen (no polling). The channel
    /// closes when the engine connection drops: re-read the state and subscribe again.
    fn container_events(&self) -> Result<std::sync::mpsc::Receiver<ContainerEvent>, EngineError> {
        Err(EngineError::Unreachable {
            detail: "this engine has no event stream".into(),
        })
    }

    /// One sample of a running container's memory use; `None` when it is not running.
    fn memory_usage(&self, name: &str) -> Result<Option<MemoryUsage>, EngineError>;

    /// The last `lines` lines of a container's log (stdout and stderr), for error messages.
    fn log_tail(&self, name: &str, lines: usize) -> Result<String, EngineError>;
}
