//! One file per command: each parses its flags, calls `lifeboat-core` or the daemon crate,
//! and prints (text or `--json`). No command holds domain logic.

pub mod backup;
pub mod check;
pub mod cluster;
pub mod copy;
pub mod daemon;
pub mod docs;
pub mod doctor;
pub mod drill;
pub mod init;
pub mod jobs;
pub mod key;
pub mod policy;
pub mod recover;
pub mod restore;
pub mod restore_stack;
pub mod snapshots;
