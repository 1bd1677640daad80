//! Paths resolved beneath a root, never through a symlink: the one place that decides how
//! Lifeboat (running as root) reaches files that someone else controls.
//!
//! A restore target, a volume being read, a container's bind mount: their contents belong to
//! a container or come from a snapshot, so every name in them is hostile input. A [`Beneath`]
//! holds the root directory open (replacing the root path by a symlink afterwards changes
//! nothing) and reaches each item from that descriptor: each component must be a plain name
//! (not empty, `.`, `..`, absolute, or containing NUL), and no component below the root is
//! followed if it is a symlink (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, or an
//! `O_NOFOLLOW` walk where `openat2` is missing). The final name is then used with `*at`
//! calls that do not follow it either.
//!
//! Used by the repository engine's restore destination (the vendored, patched
//! `rustic_core`), by the backup's file opener, and by the hot SQLite capture. It must never
//! follow a symlink below its root, and never open for writing what it was asked to read.

#![warn(missing_docs)]

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::{Mode, SFlag, fstat, mkdirat};

/// The restore target, held open for the whole restore: replacing the target path by a
/// symlink while the restore runs changes nothing about where data goes.
#[derive(Debug)]
pub struct Beneath {
    root: OwnedFd,
}

/// Where one item lives: an open directory and a plain name inside it (`.` for the
/// directory itself).
#[derive(Debug)]
pub struct Located {
    /// The item's directory, opened without following any symlink below the root.
    pub dir: OwnedFd,
    /// The item's name in `dir`; never followed by the calls that take it.
    pub name: OsString,
}

/// How [`Located::open_file`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read-only.
    Read,
    /// Write-only.
    Write,
}

impl Located {
    /// A path naming the item through the directory's descriptor, for calls that only
    /// take paths (extended attributes): the kernel resolves `/proc/self/fd/N` to exactly
    /// the directory held open, and the final name is not followed by the `l*` calls.
    pub fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.dir.as_raw_fd())).join(&self.name)
    }
}

fn errno(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

fn refused(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("refusing `{}`: {why}", path.display()),
    )
}

/// Whether `name` is usable as one entry of a directory: not empty, not `.` or `..`, no `/`,
/// no NUL. Restic refuses the same names ("invalid child node name").
#[must_use]
pub fn is_plain_name(name: &OsStr) -> bool {
    let b = name.as_bytes();
    !b.is_empty() && b != b"." && b != b".." && !b.contains(&b'/') && !b.contains(&0)
}

/// The components of a relative item path, each a plain name.
fn components(item: &Path) -> io::Result<Vec<&OsStr>> {
    let mut out = Vec::new();
    for c in item.components() {
        match c {
            Component::Normal(n) if is_plain_name(n) => out.push(n),
            Component::CurDir => {}
            _ => return Err(refused(item, "the path leaves the restore target")),
        }
    }
    Ok(out)
}

fn has_type(fd: &OwnedFd, kind: SFlag) -> io::Result<bool> {
    Ok(SFlag::from_bits_truncate(fstat(fd).map_err(errno)?.st_mode) & SFlag::S_IFMT == kind)
}

fn is_dir(fd: &OwnedFd) -> io::Result<bool> {
    has_type(fd, SFlag::S_IFDIR)
}

const DIR_FLAGS: OFlag = OFlag::O_PATH
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

impl Beneath {
    /// Opens the target directory `root` (which must exist).
    pub fn open(root: &Path) -> io::Result<Self> {
        let fd = File::open(root)?;
        let fd = OwnedFd::from(fd);
        if !is_dir(&fd)? {
            return Err(refused(root, "the restore target is not a directory"));
        }
        Ok(Self { root: fd })
    }

    /// One directory below the root, without following symlinks.
    fn open_child_dir(dir: &OwnedFd, name: &OsStr) -> io::Result<OwnedFd> {
        let fd = openat(dir, name, DIR_FLAGS, Mode::empty()).map_err(|e| match e {
            Errno::ELOOP | Errno::ENOTDIR => io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "refusing to follow `{}`: it is not a directory (a symlink or a file)",
                    name.to_string_lossy()
                ),
            ),
            e => errno(e),
        })?;
        // O_PATH | O_NOFOLLOW may hand back the symlink itself instead of failing.
        if !is_dir(&fd)? {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "refusing to follow `{}`: it is not a directory",
                    name.to_string_lossy()
                ),
            ));
        }
        Ok(fd)
    }

    /// The directory `parts` below the root, each component a real directory.
    fn open_dir(&self, item: &Path, parts: &[&OsStr]) -> io::Result<OwnedFd> {
        if parts.is_empty() {
            return self.root.try_clone();
        }
        let rel: PathBuf = parts.iter().collect();
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(
                ResolveFlag::RESOLVE_BENEATH
                    | ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_MAGICLINKS,
            );
        match openat2(&self.root, &rel, how) {
            Ok(fd) => Ok(fd),
            Err(Errno::ENOSYS | Errno::EPERM | Errno::EAGAIN) => {
                // No openat2 here (old kernel, seccomp): walk one component at a time.
                let mut cur = self.root.try_clone()?;
                for p in parts {
                    cur = Self::open_child_dir(&cur, p)?;
                }
                Ok(cur)
            }
            Err(Errno::ELOOP | Errno::EXDEV | Errno::ENOTDIR) => Err(refused(
                item,
                "a directory on the way is a symlink or not a directory",
            )),
            Err(e) => Err(errno(e)),
        }
    }

    /// The directory `parts` below the root, creating missing directories (mode 0700 until
    /// the restore sets the real one), never following a symlink.
    fn make_dir(&self, item: &Path, parts: &[&OsStr]) -> io::Result<OwnedFd> {
        match self.open_dir(item, parts) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => return other,
        }
        let mut cur = self.root.try_clone()?;
        for p in parts {
            match mkdirat(&cur, *p, Mode::from_bits_truncate(0o700)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(errno(e)),
            }
            cur = Self::open_child_dir(&cur, p).map_err(|e| refused(item, &e.to_string()))?;
        }
        Ok(cur)
    }

    /// The item `item` (relative to the root): its directory, opened safely, and its name.
    /// The empty path is the root itself.
    pub fn locate(&self, item: &Path) -> io::Result<Located> {
        self.locate_with(item, false)
    }

    /// As [`Self::locate`], creating the item's missing parent directories.
    pub fn locate_creating_parents(&self, item: &Path) -> io::Result<Located> {
        self.locate_with(item, true)
    }

    fn locate_with(&self, item: &Path, create: bool) -> io::Result<Located> {
        let parts = components(item)?;
        let Some((name, parents)) = parts.split_last() else {
            return Ok(Located {
                dir: self.root.try_clone()?,
                name: OsString::from("."),
            });
        };
        let dir = if create {
            self.make_dir(item, parents)?
        } else {
            self.open_dir(item, parents)?
        };
        Ok(Located {
            dir,
            name: (*name).to_os_string(),
        })
    }

    /// Creates the directory `item` and its parents; an existing directory is fine, an
    /// existing symlink is refused.
    pub fn create_dir_all(&self, item: &Path) -> io::Result<()> {
        let parts = components(item)?;
        let _ = self.make_dir(item, &parts)?;
        Ok(())
    }
}

impl Located {
    /// Opens the regular file at this place without following a symlink and without
    /// blocking on a fifo (`create`: a new file gets mode 0600 until its real mode is set);
    /// anything that is not a regular file is refused.
    pub fn open_file(&self, access: Access, create: bool) -> io::Result<File> {
        let mut flags = match access {
            Access::Read => OFlag::O_RDONLY,
            Access::Write => OFlag::O_WRONLY,
        } | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_CLOEXEC;
        if create {
            flags |= OFlag::O_CREAT;
        }
        let fd = openat(
            &self.dir,
            self.name.as_os_str(),
            flags,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| match e {
            Errno::ELOOP => io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "refusing to follow the symlink `{}`",
                    self.name.to_string_lossy()
                ),
            ),
            e => errno(e),
        })?;
        if !has_type(&fd, SFlag::S_IFREG)? {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{}` is not a regular file", self.name.to_string_lossy()),
            ));
        }
        // Regular files ignore O_NONBLOCK; it was only there so that a fifo cannot hang us.
        Ok(File::from(fd))
    }

    /// Creates a fifo at this place with exactly `mode` and opens it: its read end, and a
    /// write end for the caller to hold, so that the reader meets end-of-file only once
    /// the caller drops it (not while no other writer has opened the fifo yet). Whatever
    /// sits at the place by the time it is opened is refused unless it is a fifo, and it is
    /// never opened for reading or writing before its type is checked (a device node
    /// planted there is never opened).
    pub fn make_fifo(&self, mode: u32) -> io::Result<(File, File)> {
        nix::unistd::mkfifoat(&self.dir, self.name.as_os_str(), Mode::empty()).map_err(errno)?;
        let place = openat(
            &self.dir,
            self.name.as_os_str(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        if !has_type(&place, SFlag::S_IFIFO)? {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{}` is not the fifo made", self.name.to_string_lossy()),
            ));
        }
        // Reopened through the descriptor: exactly the fifo checked. The reader opens
        // without waiting for a writer; the writer then finds a reader.
        let again = |flags: OFlag| {
            let path = format!("/proc/self/fd/{}", place.as_raw_fd());
            nix::fcntl::open(path.as_str(), flags | OFlag::O_CLOEXEC, Mode::empty())
                .map(File::from)
                .map_err(errno)
        };
        let reader = again(OFlag::O_RDONLY | OFlag::O_NONBLOCK)?;
        let writer = again(OFlag::O_WRONLY | OFlag::O_NONBLOCK)?;
        nix::sys::stat::fchmod(&reader, Mode::from_bits_truncate(mode)).map_err(errno)?;
        // A larger buffer where the system allows (fewer wake-ups per MB); only a hint.
        let _ = nix::fcntl::fcntl(&reader, nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20));
        nix::fcntl::fcntl(&reader, nix::fcntl::FcntlArg::F_SETFL(OFlag::empty())).map_err(errno)?;
        Ok((reader, writer))
    }

    /// Removes the file (or fifo) at this place; a directory or a missing item is an error.
    pub fn remove_file(&self) -> io::Result<()> {
        nix::unistd::unlinkat(
            &self.dir,
            self.name.as_os_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        )
        .map_err(errno)
    }

    /// The device and inode of the item itself (a symlink is not followed).
    pub fn identity(&self) -> io::Result<(u64, u64)> {
        let st = nix::sys::stat::fstatat(
            &self.dir,
            self.name.as_os_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(errno)?;
        Ok((st.st_dev, st.st_ino))
    }

    /// Renames this item to `to` (both reached beneath their roots; neither followed).
    pub fn rename_to(&self, to: &Located) -> io::Result<()> {
        nix::fcntl::renameat(
            &self.dir,
            self.name.as_os_str(),
            &to.dir,
            to.name.as_os_str(),
        )
        .map_err(errno)
    }

    /// Opens the directory at this place, never through a symlink.
    pub fn open_dir(&self) -> io::Result<OwnedFd> {
        Beneath::open_child_dir(&self.dir, &self.name)
    }
}

/// Runs `f` on a thread of its own whose root directory is `root` (`unshare(CLONE_FS)`, then
/// `chroot`): every path `f` opens, and every symlink on the way, resolves inside `root`, as
/// it would for the container that owns the files. For libraries that only take paths and
/// follow symlinks themselves (SQLite). Other threads are not affected; the thread ends
/// with `f`. Needs `CAP_SYS_CHROOT` (root).
pub fn in_root<T: Send>(root: &Path, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    let dir = File::open(root)?;
    if !dir.metadata()?.is_dir() {
        return Err(refused(root, "not a directory"));
    }
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).map_err(errno)?;
            nix::unistd::fchdir(&dir).map_err(errno)?;
            nix::unistd::chroot(".").map_err(errno)?;
            nix::unistd::chdir("/").map_err(errno)?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the confined thread panicked")))
    })
}

/// Bytes free for unprivileged writers on the file system holding `path`, if it can be told.
pub fn free_bytes(path: &Path) -> Option<u64> {
    let mut p = path;
    loop {
        if let Ok(st) = nix::sys::statvfs::statvfs(p) {
            return Some(st.blocks_available() * st.fragment_size());
        }
        p = p.parent()?;
    }
}

impl Beneath {
    /// Opens the regular file `item` below the root for reading (see [`Located::open_file`]).
    pub fn open_file(&self, item: &Path) -> io::Result<File> {
        self.locate(item)?.open_file(Access::Read, false)
    }

    /// The names in the directory `item` below the root (the root itself for the empty
    /// path), reached without following a symlink.
    pub fn list_dir(&self, item: &Path) -> io::Result<Vec<OsString>> {
        let dir = self.locate(item)?.open_dir()?;
        // The kernel resolves the descriptor's link to exactly the directory held open.
        std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect()
    }

    /// The root directory, held open.
    pub fn root(&self) -> &OwnedFd {
        &self.root
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn plain_names_exclude_every_way_out() {
        for bad in ["", ".", "..", "a/b", "/abs", "x\0y", "../../etc"] {
            assert!(!is_plain_name(OsStr::new(bad)), "{bad:?}");
        }
        for good in ["a", "...", ".hidden", "a b", "ü"] {
            assert!(is_plain_name(OsStr::new(good)), "{good:?}");
        }
    }

    #[test]
    fn a_made_fifo_carries_a_writers_bytes_and_ends_only_when_the_held_writer_goes() {
        use std::io::{Read, Write};
        let (_dir, root, _) = setup();
        let place = Beneath::open(&root)
            .unwrap()
            .locate(Path::new("dump.fifo"))
            .unwrap();
        let (mut reader, held) = place.make_fifo(0o622).unwrap();
        let meta = std::fs::symlink_metadata(root.join("dump.fifo")).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(&meta.file_type()));
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
            0o622
        );
        // Another writer (the dump) comes and goes; the reader sees its bytes, and no
        // end-of-file while the held writer is open.
        let mut dump = std::fs::OpenOptions::new()
            .write(true)
            .open(root.join("dump.fifo"))
            .unwrap();
        dump.write_all(b"-- dump --").unwrap();
        drop(dump);
        let mut got = [0u8; 10];
        reader.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"-- dump --");
        drop(held);
        assert_eq!(reader.read(&mut got).unwrap(), 0, "end-of-file");
        place.remove_file().unwrap();
        assert!(!root.join("dump.fifo").exists());
    }

    #[test]
    fn a_fifo_is_never_made_through_a_symlink_or_over_an_existing_file() {
        let (_dir, root, outside) = setup();
        symlink(&outside, root.join("tmp")).unwrap();
        let beneath = Beneath::open(&root).unwrap();
        assert!(beneath.locate(Path::new("tmp/x.fifo")).is_err());
        symlink(outside.join("secret"), root.join("planted")).unwrap();
        let planted = beneath.locate(Path::new("planted")).unwrap();
        assert!(planted.make_fifo(0o622).is_err());
        assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"host");
        assert!(std::fs::read_dir(&outside).unwrap().count() == 1);
    }

    #[test]
    fn a_directory_is_listed_beneath_the_root_and_never_through_a_symlink() {
        let (_dir, root, outside) = setup();
        std::fs::create_dir_all(root.join("pg/pg_wal")).unwrap();
        std::fs::write(root.join("pg/pg_wal/000000010000000000000001"), b"").unwrap();
        symlink(&outside, root.join("pg/pg_replslot")).unwrap();
        let beneath = Beneath::open(&root).unwrap();
        assert_eq!(
            beneath.list_dir(Path::new("pg/pg_wal")).unwrap(),
            [OsString::from("000000010000000000000001")]
        );
        assert!(
            beneath.list_dir(Path::new("pg/pg_replslot")).is_err(),
            "the host directory behind the symlink is not listed"
        );
    }

    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"host").unwrap();
        (dir, root, outside)
    }

    #[test]
    fn a_symlinked_directory_below_the_root_is_never_followed() {
        let (_d, root, outside) = setup();
        symlink(&outside, root.join("sub")).unwrap();
        let b = Beneath::open(&root).unwrap();
        assert!(b.open_file(Path::new("sub/secret")).is_err());
        assert!(b.locate_creating_parents(Path::new("sub/new")).is_err());
        assert!(b.create_dir_all(Path::new("sub/deeper")).is_err());
        assert!(!outside.join("new").exists() && !outside.join("deeper").exists());
    }

    #[test]
    fn a_final_symlink_is_refused_for_reading_and_writing() {
        let (_d, root, outside) = setup();
        symlink(outside.join("secret"), root.join("link")).unwrap();
        let b = Beneath::open(&root).unwrap();
        assert!(b.open_file(Path::new("link")).is_err());
        let loc = b.locate(Path::new("link")).unwrap();
        assert!(loc.open_file(Access::Write, true).is_err());
        assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"host");
    }

    #[test]
    fn paths_with_parent_or_absolute_components_are_refused() {
        let (_d, root, _o) = setup();
        let b = Beneath::open(&root).unwrap();
        for bad in ["../outside/secret", "/etc/passwd", "a/../../outside/secret"] {
            assert!(b.locate(Path::new(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let (_d, root, _o) = setup();
        nix::unistd::mkfifo(&root.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        let b = Beneath::open(&root).unwrap();
        assert!(b.open_file(Path::new("fifo")).is_err());
        let loc = b.locate(Path::new("fifo")).unwrap();
        assert!(loc.open_file(Access::Write, false).is_err());
    }

    #[test]
    fn the_root_stays_the_directory_first_opened_when_its_path_is_replaced() {
        let (d, root, outside) = setup();
        let b = Beneath::open(&root).unwrap();
        let moved = d.path().join("moved");
        std::fs::rename(&root, &moved).unwrap();
        symlink(&outside, &root).unwrap();
        let loc = b.locate_creating_parents(Path::new("a/file")).unwrap();
        loc.open_file(Access::Write, true).unwrap();
        assert!(moved.join("a/file").is_file());
        assert!(!outside.join("a").exists());
    }

    #[test]
    fn inside_the_root_absolute_symlinks_resolve_within_it() {
        let (_d, root, outside) = setup();
        std::fs::write(root.join("mine"), b"inside").unwrap();
        let absolute_outside = outside.join("secret");
        symlink(&absolute_outside, root.join("up")).unwrap();
        symlink("../../../../../../mine", root.join("dotdot")).unwrap();
        let (up, dotdot, cwd) = in_root(&root, || {
            (
                std::fs::read(Path::new("/up")).ok(),
                std::fs::read(Path::new("/dotdot")).ok(),
                std::fs::read(Path::new("/mine")).ok(),
            )
        })
        .unwrap();
        assert_eq!(up, None, "the outside file is out of reach");
        assert_eq!(
            dotdot.as_deref(),
            Some(&b"inside"[..]),
            "`..` stops at the root"
        );
        assert_eq!(cwd.as_deref(), Some(&b"inside"[..]));
        // The calling thread's root is untouched.
        assert_eq!(std::fs::read(&absolute_outside).unwrap(), b"host");
    }

    #[test]
    fn missing_parents_are_created_as_real_directories() {
        let (_d, root, _o) = setup();
        let b = Beneath::open(&root).unwrap();
        let loc = b.locate_creating_parents(Path::new("x/y/z")).unwrap();
        std::io::Write::write_all(&mut loc.open_file(Access::Write, true).unwrap(), b"ok").unwrap();
        assert_eq!(std::fs::read(root.join("x/y/z")).unwrap(), b"ok");
    }
}
