//! Consistency: how a container is held still while its data is read, and the guarantee that
//! whatever Lifeboat pauses or stops is put back.
//!
//! Every freeze is recorded on disk (an intent file) before it happens and removed after the
//! undo, and each container's runs are serialised by a lock the kernel drops when a process
//! dies. So a run killed with `kill -9` leaves an intent whose lock is free, and the next
//! Lifeboat process undoes it: every entry point (the CLI, later the daemon) calls
//! [`recover`] once at start, before taking any container lock. This crate must never leave a container paused
//! or stopped on any path it controls.

#![warn(missing_docs)]

pub mod base_backup;
pub mod dumps;
mod hooks;
mod journal;
mod lock;
mod mode;
pub mod redis;
pub mod session;
pub mod sqlite;
mod walk;

pub use hooks::{HookError, Hooks, run_hook};
pub use journal::{Frozen, Intent, IntentAction, freeze, recover, write_durably};
pub use lock::{ContainerLock, LockError, RepoGate, TransientLock};
pub use mode::{Mode, ModeError};
pub use session::{FreezeSession, start_freeze};

use std::path::{Path, PathBuf};

/// Where intents and locks live under Lifeboat's state directory.
pub fn intents_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("intents")
}
