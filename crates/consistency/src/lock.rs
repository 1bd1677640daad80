//! One Lifeboat run per container at a time, across processes: an exclusive `flock` on a
//! file in the state directory. The kernel drops the lock when the process dies, so a killed
//! run never blocks the next one, and a free lock proves its intents are orphaned.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another Lifeboat run is working on `{0}` right now; wait for it to finish (lock: {1})"
    )]
    /// Another live run holds it (exit 11): the name and the lock file.
    Busy(String, String),
    /// The lock file could not be used: its path and the cause.
    #[error("cannot use lock file {0}: {1}")]
    Io(String, std::io::Error),
}

/// An exclusive lock on one container (or any name), held until dropped.
pub struct ContainerLock {
    _file: File,
}

impl ContainerLock {
    /// The lock file of `container` under `state_dir`.
    pub fn path(state_dir: &Path, container: &str) -> PathBuf {
        state_dir.join("locks").join(format!("{container}.lock"))
    }

    /// Takes the lock, or `Busy` at once when a live process holds it.
    pub fn acquire(state_dir: &Path, container: &str) -> Result<Self, LockError> {
        let path = Self::path(state_dir, container);
        let io = |e| LockError::Io(path.display().to_string(), e);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        if file.try_lock().is_err() {
            return Err(LockError::Busy(
                container.to_string(),
                path.display().to_string(),
            ));
        }
        Ok(ContainerLock { _file: file })
    }
}

/// A lock on a name that is used once (a drill's id): like [`ContainerLock`], and its file is
/// removed when the lock is let go, so finished drills leave nothing under the lock directory.
pub struct TransientLock {
    _lock: ContainerLock,
    path: PathBuf,
}

impl TransientLock {
    /// Takes the lock on `name` in `dir`, or `Busy` when a live process holds it.
    pub fn acquire(dir: &Path, name: &str) -> Result<Self, LockError> {
        let lock = ContainerLock::acquire(dir, name)?;
        Ok(TransientLock {
            _lock: lock,
            path: ContainerLock::path(dir, name),
        })
    }
}

impl Drop for TransientLock {
    fn drop(&mut self) {
        // Removed while still held: nobody can take a lock on a file that is being deleted
        // and then find it gone.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Backups and prunes of one repository, across processes: backups hold it shared, a prune
/// holds it exclusively, so a prune never deletes packs a running backup is about to
/// reference. Both wait for the other side rather than fail.
pub struct RepoGate {
    _file: File,
}

impl RepoGate {
    /// The gate's file, named by the repository's own id (hex, from its `config`): stable
    /// across builds and shared by every spelling of the repository's location.
    fn open(state_dir: &Path, repo_id: &str) -> Result<(File, String), LockError> {
        let safe: String = repo_id
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(64)
            .collect();
        let path = state_dir
            .join("locks")
            .join(format!("repository-{safe}.lock"));
        let shown = path.display().to_string();
        let io = |e| LockError::Io(shown.clone(), e);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        Ok((file, shown))
    }

    /// Waits until no prune runs on the repository with id `repo_id`.
    pub fn shared(state_dir: &Path, repo_id: &str) -> Result<Self, LockError> {
        let (file, shown) = Self::open(state_dir, repo_id)?;
        file.lock_shared().map_err(|e| LockError::Io(shown, e))?;
        Ok(RepoGate { _file: file })
    }

    /// Waits until no backup writes to the repository with id `repo_id`.
    pub fn exclusive(state_dir: &Path, repo_id: &str) -> Result<Self, LockError> {
        let (file, shown) = Self::open(state_dir, repo_id)?;
        file.lock().map_err(|e| LockError::Io(shown, e))?;
        Ok(RepoGate { _file: file })
    }
}

#[cfg(test)]
mod gate_tests {
    use super::*;

    #[test]
    fn a_prune_waits_for_running_backups_and_backups_share() {
        let dir = tempfile::tempdir().unwrap();
        let a = RepoGate::shared(dir.path(), "0a1b").unwrap();
        let _b = RepoGate::shared(dir.path(), "0a1b").unwrap();
        let (file, _) = RepoGate::open(dir.path(), "0a1b").unwrap();
        assert!(file.try_lock().is_err(), "exclusive while backups run");
        let (other, _) = RepoGate::open(dir.path(), "9f9f").unwrap();
        assert!(
            other.try_lock().is_ok(),
            "another repository is independent"
        );
        drop(a);
        drop(_b);
        assert!(file.try_lock().is_ok());
    }

    #[test]
    fn a_transient_lock_is_exclusive_and_leaves_no_file_behind() {
        let dir = tempfile::tempdir().unwrap();
        let held = TransientLock::acquire(dir.path(), "lbdrill-1").unwrap();
        assert!(matches!(
            TransientLock::acquire(dir.path(), "lbdrill-1"),
            Err(LockError::Busy(..))
        ));
        assert!(ContainerLock::path(dir.path(), "lbdrill-1").exists());
        drop(held);
        assert!(!ContainerLock::path(dir.path(), "lbdrill-1").exists());
        drop(TransientLock::acquire(dir.path(), "lbdrill-1").unwrap());
        assert!(!ContainerLock::path(dir.path(), "lbdrill-1").exists());
    }

    #[test]
    fn the_gate_file_is_named_by_the_repository_id_not_a_hash_of_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let (_, shown) = RepoGate::open(dir.path(), "5e1f00d").unwrap();
        assert!(shown.ends_with("locks/repository-5e1f00d.lock"), "{shown}");
        let (_, hostile) = RepoGate::open(dir.path(), "../../x").unwrap();
        assert!(hostile.ends_with("locks/repository-x.lock"), "{hostile}");
    }
}
