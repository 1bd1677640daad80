//! Backup, restore and preflight diagnosis (`doctor`) of whole services, written against the [`Engine`] and [`Repository`]
//! traits only: no Docker client, no repository engine, no CLI types here.
//!
//! A backup is a set of repository snapshots tagged with one backup id: one per volume, bind
//! mount and (optionally) image, then a manifest snapshot written last. The manifest commits
//! the backup: a backup without one (killed mid-way) is never listed, and its parts are
//! deleted by the next backup of that container.

#![warn(missing_docs)]

mod backup;
mod base_copy;
mod catalog;
mod compose;
mod consistent;
mod copy;
pub mod doctor;
pub mod drill;
mod dump;
mod error;
mod hot;
mod recover;
mod restore;
mod restore_intent;
mod retention;
mod scope;
pub mod secret;
pub mod stack;
mod stream;
pub mod tuning;
pub mod wait;

pub use backup::{BackupOutcome, BackupRequest, RunParts, UnhealthyPolicy, backup_container};
pub use catalog::{
    BackupEntry, UnreadableBackup, find_backup, foreign_note, list_backups, list_host_backups,
    scan_backups,
};
pub use copy::{CopiedBackup, Copier, CopyFailure, CopyOutcome, CopyRequest, copy_backups};
pub use error::CoreError;
pub use recover::{
    RecoverOutcome, RecoverRequest, RecoveryIntent, dependents, dependents_of,
    interrupted_recoveries, missing_mounts, newest_good_backup, recover_container,
};
pub use restore::{Gate, RestoreOutcome, RestoreRequest, restore_container};
pub use retention::{RetentionOutcome, RetentionRequest, apply_retention, prune_gate};
pub use scope::containers_in_scope;
pub use tuning::Priority;

pub use lifeboat_docker::Engine;
pub use lifeboat_repo::Repository;

/// Receives one line of human progress ("backing up volume pgdata").
pub type Note<'a> = &'a dyn Fn(&str);
