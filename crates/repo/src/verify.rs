//! After a failed restore: which files are wrong? Each restored file is compared, chunk by
//! chunk, with the data in the repository; a chunk that cannot be read counts as wrong.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};

use lifeboat_safepath::Beneath;
use std::path::{Path, PathBuf};

use rustic_core::{
    BlobId, IndexedFull, Repository, RusticResult,
    repofile::{BlobType, Node},
};

/// Paths (relative to `target`) of files whose restored content differs from the snapshot.
/// Files are reached beneath `target` without following symlinks.
pub(crate) fn bad_files<S: IndexedFull>(
    repo: &Repository<S>,
    nodes: impl Iterator<Item = RusticResult<(PathBuf, Node)>>,
    target: &Path,
) -> Vec<String> {
    let beneath = Beneath::open(target).ok();
    let mut bad = Vec::new();
    for item in nodes {
        match item {
            Ok((path, node)) if node.is_file() => {
                let file = match &beneath {
                    Some(b) if !path.as_os_str().is_empty() => b.open_file(&path),
                    // A single-file target is the file itself.
                    _ => open_nofollow(target, false),
                };
                if !file.is_ok_and(|f| file_matches(repo, &node, &f)) {
                    bad.push(path.display().to_string());
                }
            }
            Ok(_) => {}
            Err(e) => bad.push(format!("(listing failed) {}", e.display_log())),
        }
    }
    bad
}

fn file_matches<S: IndexedFull>(repo: &Repository<S>, node: &Node, file: &File) -> bool {
    let mut offset = 0u64;
    for id in node.content.iter().flatten() {
        let Ok(expected) = repo.get_blob_cached(&BlobId::from(*id), BlobType::Data) else {
            return false;
        };
        let mut actual = vec![0u8; expected.len()];
        if file.read_exact_at(&mut actual, offset).is_err() || actual[..] != expected[..] {
            return false;
        }
        offset += expected.len() as u64;
    }
    file.metadata().is_ok_and(|m| m.len() == offset)
}

/// Opens `path` itself, refusing a symlink (and, with `dir`, anything but a directory).
fn open_nofollow(path: &Path, dir: bool) -> io::Result<File> {
    let mut flags = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
    if dir {
        flags |= libc::O_DIRECTORY;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)?;
    if !dir && !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    Ok(file)
}

/// The engine restores the children of a directory but leaves the directory it restores
/// into as it found it; a volume's root owner and mode matter (postgres refuses to start
/// on a data directory with the wrong owner), so they are applied here, through a descriptor
/// of the directory itself: a target replaced by a symlink meanwhile is refused, not followed.
pub(crate) fn apply_root_metadata(node: &Node, target: &Path) -> io::Result<()> {
    if !node.is_dir() {
        return Ok(());
    }
    let dir = open_nofollow(target, true)?;
    let meta = &node.meta;
    if meta.uid.is_some() || meta.gid.is_some() {
        std::os::unix::fs::fchown(&dir, meta.uid, meta.gid)?;
    }
    if let Some(go_mode) = meta.mode {
        dir.set_permissions(std::fs::Permissions::from_mode(unix_mode(go_mode)))?;
    }
    if let Some(mtime) = meta.mtime {
        dir.set_times(std::fs::FileTimes::new().set_modified(mtime.into()))?;
    }
    Ok(())
}

/// Permission bits (with setuid, setgid, sticky) from the Go `FileMode` that restic's format
/// stores.
pub(crate) fn unix_mode(go_mode: u32) -> u32 {
    const GO_SETUID: u32 = 1 << 23;
    const GO_SETGID: u32 = 1 << 22;
    const GO_STICKY: u32 = 1 << 20;
    let mut mode = go_mode & 0o777;
    for (go, unix) in [
        (GO_SETUID, 0o4000),
        (GO_SETGID, 0o2000),
        (GO_STICKY, 0o1000),
    ] {
        if go_mode & go != 0 {
            mode |= unix;
        }
    }
    mode
}

#[cfg(test)]
mod tests {
    use super::unix_mode;

    #[test]
    fn go_file_modes_map_to_unix_permission_bits() {
        assert_eq!(unix_mode(0o755 | 1 << 31), 0o755);
        assert_eq!(unix_mode(0o777 | 1 << 31 | 1 << 20), 0o1777);
        assert_eq!(unix_mode(0o755 | 1 << 23 | 1 << 22), 0o6755);
    }
}
