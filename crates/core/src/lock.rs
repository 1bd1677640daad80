//! One Lifeboat run per container at a time, across processes: an exclusive `flock` on a
//! file in the state directory. The kernel drops the lock when the process dies, so a
//! killed run never blocks the next one.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::CoreError;

pub(crate) struct ContainerLock {
    _file: File,
}

impl ContainerLock {
    pub(crate) fn acquire(state_dir: &Path, container: &str) -> Result<Self, CoreError> {
        let dir = state_dir.join("locks");
        std::fs::create_dir_all(&dir)
            .map_err(CoreError::io("creating lock directory", dir.display()))?;
        let path: PathBuf = dir.join(format!("{container}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(CoreError::io("opening lock file", path.display()))?;
        if file.try_lock().is_err() {
            return Err(CoreError::Busy(
                container.to_string(),
                path.display().to_string(),
            ));
        }
        Ok(ContainerLock { _file: file })
    }
}
