//! The data Lifeboat writes and reads: the snapshot manifest, the captured container
//! configuration and the schema-version rule that keeps old snapshots readable.
//!
//! This crate owns serde types and pure functions only. It must never do I/O, talk to the
//! engine or the repository: every other crate depends on it, so it stays small and stable.

#![warn(missing_docs)]

mod config;
pub mod labels;
mod manifest;
pub mod names;
pub mod policy;
mod time;
pub mod vocab;

pub use config::{
    ContainerConfig, Healthcheck, MountKind, MountSpec, NetworkAttachment, PortBinding,
    RestartPolicy, redact_env,
};
pub use manifest::{
    BackupId, ComposeInfo, Manifest, ManifestError, Part, PartKind, SCHEMA_VERSION, new_run_id,
    tags,
};
pub use time::{format_timestamp, parse_timestamp};
pub use vocab::{
    ContainerStatus, Health, JobKind, JobState, Mode, ModeError, RecoverMode, Strategy,
};
