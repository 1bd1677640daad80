//! One Lifeboat run per container at a time, across processes: an exclusive `flock` on a
//! file in the state directory. The kernel drops the lock when the process dies, so a killed
//! run never blocks the next one, and a free lock proves its intents are orphaned.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another Lifeboat run is working on `{0}` right now; wait for it to finish (lock: {1})"
    )]
    Busy(String, String),
    #[error("cannot use lock file {0}: {1}")]
    Io(String, std::io::Error),
}

pub struct ContainerLock {
    _file: File,
}

impl ContainerLock {
    pub fn path(state_dir: &Path, container: &str) -> PathBuf {
        state_dir.join("locks").join(format!("{container}.lock"))
    }

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
