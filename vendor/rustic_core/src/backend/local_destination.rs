use std::os::unix::fs::FileExt;

use std::{
    fs::{self, File},
    num::TryFromIntError,
    path::{Path, PathBuf},
};

use bytes::Bytes;
#[cfg(not(windows))]
use log::warn;
#[cfg(not(windows))]
use nix::errno::Errno;
#[cfg(not(windows))]
use nix::sys::stat::{FchmodatFlags, Mode, SFlag, UtimensatFlags, fchmodat, mknodat, utimensat};
#[cfg(not(windows))]
use nix::sys::time::TimeSpec;
#[cfg(not(windows))]
use nix::{
    fcntl::AtFlags,
    unistd::{Gid, Uid, UnlinkatFlags, fchownat, linkat, symlinkat, unlinkat},
};

use lifeboat_safepath::{Access, Beneath, Located};

#[cfg(not(windows))]
use crate::backend::ignore::mapper::nix_mapper::map_mode_from_go;
#[cfg(not(windows))]
use crate::backend::node::NodeType;
use crate::{
    backend::node::{ExtendedAttribute, Metadata, Node},
    error::{ErrorKind, RusticError, RusticResult},
};

#[cfg(not(windows))]
mod helpers {
    // Helper function to cache mapping user name -> uid
    #![allow(clippy::needless_pass_by_value)]

    use cached::macros::cached;
    use log::warn;
    use nix::unistd::{Gid, Group, Uid, User};

    #[cached]
    pub(super) fn uid_from_name(name: String) -> Option<Uid> {
        User::from_name(&name)
            .inspect_err(|err| warn!("Cannot determine UID from name {name}: {err}. Using UID 0."))
            .unwrap_or_default()
            .map(|u| u.uid)
    }

    // Helper function to cache mapping group name -> gid
    #[cached]
    pub(super) fn gid_from_name(name: String) -> Option<Gid> {
        Group::from_name(&name)
            .inspect_err(|err| warn!("Cannot determine GID from name {name}: {err}. Using UID 0."))
            .unwrap_or_default()
            .map(|g| g.gid)
    }
}

/// [`LocalDestinationErrorKind`] describes the errors that can be returned by an action on the filesystem in Backends
#[derive(thiserror::Error, Debug, displaydoc::Display)]
pub enum LocalDestinationErrorKind {
    /// directory creation failed: `{0:?}`
    DirectoryCreationFailed(std::io::Error),
    #[cfg(any(
        target_os = "macos",
        target_os = "openbsd",
        all(target_os = "android", target_pointer_width = "32")
    ))]
    /// `DeviceID` could not be converted to other type `{target}` of device `{device}`: `{source}`
    DeviceIdConversionFailed {
        target: String,
        device: u64,
        source: TryFromIntError,
    },
    /// Length conversion failed for `{target}` of length `{length}`: `{source}`
    LengthConversionFailed {
        target: String,
        length: u64,
        source: TryFromIntError,
    },
    /// `{0}`
    #[error(transparent)]
    #[cfg(not(windows))]
    FromErrnoError(Errno),
    /// listing xattrs on `{path:?}`: `{source:?}`
    #[cfg(not(any(windows, target_os = "openbsd")))]
    ListingXattrsFailed {
        path: PathBuf,
        source: std::io::Error,
    },
    /// setting xattr `{name}` on `{filename:?}` with `{source:?}`
    #[cfg(not(any(windows, target_os = "openbsd")))]
    SettingXattrFailed {
        name: String,
        filename: PathBuf,
        source: std::io::Error,
    },
    /// getting xattr `{name}` on `{filename:?}` with `{source:?}`
    #[cfg(not(any(windows, target_os = "openbsd")))]
    GettingXattrFailed {
        name: String,
        filename: PathBuf,
        source: std::io::Error,
    },
    /// removing directories failed: `{0:?}`
    DirectoryRemovalFailed(std::io::Error),
    /// removing file failed: `{0:?}`
    FileRemovalFailed(std::io::Error),
    /// setting time metadata failed: `{0:?}`
    SettingTimeMetadataFailed(std::io::Error),
    /// opening file failed: `{0:?}`
    OpeningFileFailed(std::io::Error),
    /// setting file length failed: `{0:?}`
    SettingFileLengthFailed(std::io::Error),
    /// couldn't write to buffer: `{0:?}`
    CouldNotWriteToBuffer(std::io::Error),
    /// reading exact length of file contents failed: `{0:?}`
    ReadingExactLengthOfFileFailed(std::io::Error),
    /// setting file permissions failed: `{0:?}`
    #[cfg(not(windows))]
    SettingFilePermissionsFailed(std::io::Error),
    /// failed to symlink target `{linktarget:?}` from `{filename:?}` with `{source:?}`
    #[cfg(not(windows))]
    SymlinkingFailed {
        linktarget: PathBuf,
        filename: PathBuf,
        source: std::io::Error,
    },
    /// failed to create hardlink from `{source_path:?}` to `{filename:?}` with `{source:?}`
    HardLinkingFailed {
        source_path: PathBuf,
        filename: PathBuf,
        source: std::io::Error,
    },
}

pub(crate) type LocalDestinationResult<T> = Result<T, LocalDestinationErrorKind>;

#[derive(Clone, Debug)]
/// Local destination, used when restoring.
pub struct LocalDestination {
    /// The base path of the destination.
    path: PathBuf,
    /// Whether we expect a single file as destination.
    is_file: bool,
    /// Lifeboat patch: the target directory (for a single file: its parent), held open;
    /// every item is reached beneath it without following symlinks.
    beneath: std::sync::Arc<Beneath>,
}

impl LocalDestination {
    /// Create a new [`LocalDestination`]
    ///
    /// # Arguments
    ///
    /// * `path` - The base path of the destination
    /// * `create` - If `create` is true, create the base path if it doesn't exist.
    /// * `expect_file` - Whether we expect a single file as destination.
    ///
    /// # Errors
    ///
    /// * If the directory could not be created.
    // TODO: We should use `impl Into<Path/PathBuf>` here. we even use it in the body!
    pub fn new(path: &str, create: bool, expect_file: bool) -> RusticResult<Self> {
        let is_dir = path.ends_with('/');
        let path: PathBuf = path.into();
        let is_file = path.is_file() || (!path.is_dir() && !is_dir && expect_file);

        // FIXME: Refactor logic to avoid duplication
        if create {
            if is_file {
                if let Some(path) = path.parent() {
                    fs::create_dir_all(path).map_err(|err| {
                        RusticError::with_source(
                            ErrorKind::InputOutput,
                            "The directory `{path}` could not be created.",
                            err,
                        )
                        .attach_context("path", path.display().to_string())
                    })?;
                }
            } else {
                fs::create_dir_all(&path).map_err(|err| {
                    RusticError::with_source(
                        ErrorKind::InputOutput,
                        "The directory `{path}` could not be created.",
                        err,
                    )
                    .attach_context("path", path.display().to_string())
                })?;
            }
        }

        let root = if is_file {
            path.parent()
                .map_or_else(|| PathBuf::from("/"), Path::to_path_buf)
        } else {
            path.clone()
        };
        let beneath = Beneath::open(&root).map_err(|err| {
            RusticError::with_source(
                ErrorKind::InputOutput,
                "The restore target `{path}` could not be opened.",
                err,
            )
            .attach_context("path", root.display().to_string())
        })?;
        Ok(Self {
            path,
            is_file,
            beneath: std::sync::Arc::new(beneath),
        })
    }

    /// Lifeboat patch: `item` reached beneath the target without following symlinks.
    fn locate(&self, item: impl AsRef<Path>, create_parents: bool) -> std::io::Result<Located> {
        let item = self.relative(item.as_ref())?;
        if create_parents {
            self.beneath.locate_creating_parents(&item)
        } else {
            self.beneath.locate(&item)
        }
    }

    /// Lifeboat patch: `item` reached once for several metadata calls (each `*_at` method
    /// below takes what this returns instead of resolving the path again).
    pub(crate) fn locate_item(&self, item: impl AsRef<Path>) -> LocalDestinationResult<Located> {
        self.locate(item, false)
            .map_err(|e| LocalDestinationErrorKind::FromErrnoError(io_errno(&e)))
    }

    /// The item relative to the target: a single-file target is its own file name; the
    /// walker hands some items as full paths below the base path.
    fn relative(&self, item: &Path) -> std::io::Result<PathBuf> {
        if self.is_file {
            return Ok(self.path.file_name().map(PathBuf::from).unwrap_or_default());
        }
        if item.is_absolute() {
            return item
                .strip_prefix(&self.path)
                .map(Path::to_path_buf)
                .map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!(
                            "refusing `{}`: it is outside the restore target",
                            item.display()
                        ),
                    )
                });
        }
        Ok(item.to_path_buf())
    }

    /// Path to the given item (relative to the base path)
    ///
    /// # Arguments
    ///
    /// * `item` - The item to get the path for
    ///
    /// # Returns
    ///
    /// The path to the item.
    ///
    /// # Notes
    ///
    /// * If the destination is a file, this will return the base path.
    /// * If the destination is a directory, this will return the base path joined with the item.
    pub(crate) fn path(&self, item: impl AsRef<Path>) -> PathBuf {
        if self.is_file {
            self.path.clone()
        } else {
            self.path.join(item)
        }
    }

    /// Remove the given directory (relative to the base path)
    ///
    /// # Arguments
    ///
    /// * `dirname` - The directory to remove
    ///
    /// # Errors
    ///
    /// * If the directory could not be removed.
    ///
    /// # Notes
    ///
    /// This will remove the directory recursively.
    #[allow(clippy::unused_self)]
    pub(crate) fn remove_dir(&self, dirname: impl AsRef<Path>) -> LocalDestinationResult<()> {
        let loc = self
            .locate(dirname, false)
            .map_err(LocalDestinationErrorKind::DirectoryRemovalFailed)?;
        // std's remove_dir_all never follows symlinks below the path it is given.
        fs::remove_dir_all(loc.proc_path())
            .map_err(LocalDestinationErrorKind::DirectoryRemovalFailed)
    }

    /// Remove the given file (relative to the base path)
    ///
    /// # Arguments
    ///
    /// * `filename` - The file to remove
    ///
    /// # Errors
    ///
    /// * If the file could not be removed.
    ///
    /// # Notes
    ///
    /// This will remove the file.
    ///
    /// * If the file is a symlink, the symlink will be removed, not the file it points to.
    /// * If the file is a directory or device, this will fail.
    #[allow(clippy::unused_self)]
    pub(crate) fn remove_file(&self, filename: impl AsRef<Path>) -> LocalDestinationResult<()> {
        let loc = self
            .locate(filename, false)
            .map_err(LocalDestinationErrorKind::FileRemovalFailed)?;
        unlinkat(&loc.dir, loc.name.as_os_str(), UnlinkatFlags::NoRemoveDir)
            .map_err(|e| LocalDestinationErrorKind::FileRemovalFailed(e.into()))
    }

    /// Create the given directory (relative to the base path)
    ///
    /// # Arguments
    ///
    /// * `item` - The directory to create
    ///
    /// # Errors
    ///
    /// * If the directory could not be created.
    ///
    /// # Notes
    ///
    /// This will create the directory structure recursively.
    pub(crate) fn create_dir(&self, item: impl AsRef<Path>) -> LocalDestinationResult<()> {
        let item = self
            .relative(item.as_ref())
            .map_err(LocalDestinationErrorKind::DirectoryCreationFailed)?;
        self.beneath
            .create_dir_all(&item)
            .map_err(LocalDestinationErrorKind::DirectoryCreationFailed)
    }

    /// Set changed and modified times for `item` (relative to the base path) utilizing the file metadata
    ///
    /// # Arguments
    ///
    /// * `item` - The item to set the times for
    /// * `meta` - The metadata to get the times from
    ///
    /// # Errors
    ///
    /// * If the times could not be set
    pub(crate) fn set_times(&self, loc: &Located, meta: &Metadata) -> LocalDestinationResult<()> {
        if let Some(mtime) = meta.mtime {
            let atime = meta.atime.unwrap_or(mtime);
            let spec =
                |t: jiff::Timestamp| TimeSpec::new(t.as_second(), i64::from(t.subsec_nanosecond()));
            utimensat(
                &loc.dir,
                loc.name.as_os_str(),
                &spec(atime),
                &spec(mtime),
                UtimensatFlags::NoFollowSymlink,
            )
            .map_err(|e| LocalDestinationErrorKind::SettingTimeMetadataFailed(e.into()))?;
        }
        Ok(())
    }

    #[cfg(windows)]
    // TODO: Windows support
    /// Set user/group for `item` (relative to the base path) utilizing the file metadata
    ///
    /// # Arguments
    ///
    /// * `item` - The item to set the user/group for
    /// * `meta` - The metadata to get the user/group from
    ///
    /// # Errors
    ///
    /// * If the user/group could not be set.
    #[allow(clippy::unused_self, clippy::unnecessary_wraps)]
    pub(crate) fn set_user_group(
        &self,
        _item: impl AsRef<Path>,
        _meta: &Metadata,
    ) -> LocalDestinationResult<()> {
        // https://learn.microsoft.com/en-us/windows/win32/fileio/file-security-and-access-rights
        // https://microsoft.github.io/windows-docs-rs/doc/windows/Win32/Security/struct.SECURITY_ATTRIBUTES.html
        // https://microsoft.github.io/windows-docs-rs/doc/windows/Win32/Storage/FileSystem/struct.CREATEFILE2_EXTENDED_PARAMETERS.html#structfield.lpSecurityAttributes
        Ok(())
    }

    #[cfg(not(windows))]
    /// Set user/group for `item` (relative to the base path) utilizing the file metadata
    ///
    /// # Arguments
    ///
    /// * `item` - The item to set the user/group for
    /// * `meta` - The metadata to get the user/group from
    ///
    /// # Errors
    ///
    /// * If the user/group could not be set.
    #[allow(clippy::similar_names)]
    pub(crate) fn set_user_group(
        &self,
        loc: &Located,
        meta: &Metadata,
    ) -> LocalDestinationResult<()> {
        let user = meta.user.clone().and_then(helpers::uid_from_name);
        // use uid from user if valid, else from saved uid (if saved)
        let uid = user.or_else(|| meta.uid.map(Uid::from_raw));

        let group = meta.group.clone().and_then(helpers::gid_from_name);
        // use gid from group if valid, else from saved gid (if saved)
        let gid = group.or_else(|| meta.gid.map(Gid::from_raw));
        Self::chown(loc, uid, gid)
    }

    /// Lifeboat patch: owner change beneath the target, never through a symlink.
    fn chown(loc: &Located, uid: Option<Uid>, gid: Option<Gid>) -> LocalDestinationResult<()> {
        fchownat(
            &loc.dir,
            loc.name.as_os_str(),
            uid,
            gid,
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(LocalDestinationErrorKind::FromErrnoError)?;
        Ok(())
    }

    #[cfg(windows)]
    // TODO: Windows support
    /// Set uid/gid for `item` (relative to the base path) utilizing the file metadata
    ///
    /// # Arguments
    ///
    /// * `item` - The item to set the uid/gid for
    /// * `meta` - The metadata to get the uid/gid from
    ///
    /// # Errors
    ///
    /// * If the uid/gid could not be set.
    #[allow(clippy::unused_self, clippy::unnecessary_wraps)]
    pub(crate) fn set_uid_gid(
        &self,
        _item: impl AsRef<Path>,
        _meta: &Metadata,
    ) -> LocalDestinationResult<()> {
        Ok(())
    }

    #[cfg(not(windows))]
    /// Set uid/gid for `item` (relative to the base path) utilizing the file metadata
    ///
    /// # Arguments
    ///
    /// * `item` - The item to set the uid/gid for
    /// * `meta` - The metadata to get the uid/gid from
    ///
    /// # Errors
    ///
    /// * If the uid/gid could not be set.
    #[allow(clippy::similar_names)]
    pub(crate) fn set_uid_gid(&self, loc: &Located, meta: &Metadata) -> LocalDestinationResult<()> {
        Self::chown(
            loc,
            meta.uid.map(Uid::from_raw),
            meta.gid.map(Gid::from_raw),
        )
    }

    #[cfg(windows)]
    // TODO: Windows support
    /// Set permissions for `item` (relative to the base path) from `node`
    ///
    /// # Arguments
    ///
    /// * `item` - The item to set the permissions for
    /// * `node` - The node to get the permissions from
    ///
    /// # Errors
    ///
    /// * If the permissions could not be set.
    #[allow(clippy::unused_self, clippy::unnecessary_wraps)]
    pub(crate) fn set_permission(
        &self,
        _item: impl AsRef<Path>,
        _node: &Node,
    ) -> LocalDestinationResult<()> {
        Ok(())
    }

    #[cfg(not(windows))]
    /// Set permissions for `item` (relative to the base path) from `node`
    ///
    /// # Arguments
    ///
    /// * `item` - The item to set the permissions for
    /// * `node` - The node to get the permissions from
    ///
    /// # Errors
    ///
    /// * If the permissions could not be set.
    #[allow(clippy::similar_names)]
    pub(crate) fn set_permission(&self, loc: &Located, node: &Node) -> LocalDestinationResult<()> {
        if node.is_symlink() {
            return Ok(());
        }
        if let Some(mode) = node.meta.mode {
            let mode = map_mode_from_go(mode);
            // A symlink found here (planted, or raced in) is refused, never followed.
            fchmodat(
                &loc.dir,
                loc.name.as_os_str(),
                Mode::from_bits_truncate(mode),
                FchmodatFlags::NoFollowSymlink,
            )
            .map_err(|e| LocalDestinationErrorKind::SettingFilePermissionsFailed(e.into()))?;
        }
        Ok(())
    }

    #[cfg(any(windows, target_os = "openbsd"))]
    // TODO: Windows support
    // TODO: openbsd support
    /// Set extended attributes for `item` (relative to the base path)
    ///
    /// # Arguments
    ///
    /// * `item` - The item to set the extended attributes for
    /// * `extended_attributes` - The extended attributes to set
    ///
    /// # Errors
    ///
    /// * If the extended attributes could not be set.
    #[allow(clippy::unused_self, clippy::unnecessary_wraps)]
    pub(crate) fn set_extended_attributes(
        &self,
        _item: impl AsRef<Path>,
        _extended_attributes: &[ExtendedAttribute],
    ) -> LocalDestinationResult<()> {
        Ok(())
    }

    #[cfg(not(any(windows, target_os = "openbsd")))]
    /// Set extended attributes for `item` (relative to the base path)
    ///
    /// # Arguments
    ///
    /// * `item` - The item to set the extended attributes for
    /// * `extended_attributes` - The extended attributes to set
    ///
    /// # Errors
    ///
    /// * If listing the extended attributes failed.
    /// * If getting an extended attribute failed.
    /// * If setting an extended attribute failed.
    ///
    /// # Returns
    ///
    /// Ok if the extended attributes were set.
    ///
    /// # Panics
    ///
    /// * If the extended attributes could not be set.
    pub(crate) fn set_extended_attributes(
        &self,
        loc: &Located,
        extended_attributes: &[ExtendedAttribute],
    ) -> LocalDestinationResult<()> {
        // The xattr crate's calls do not follow the final name; the directory is the one
        // held open (see `Located::proc_path`).
        let filename = loc.proc_path();
        let mut done = vec![false; extended_attributes.len()];

        for curr_name in xattr::list(&filename).map_err(|err| {
            LocalDestinationErrorKind::ListingXattrsFailed {
                source: err,
                path: filename.clone(),
            }
        })? {
            match extended_attributes.iter().enumerate().find(
                |(_, ExtendedAttribute { name, .. })| name == curr_name.to_string_lossy().as_ref(),
            ) {
                Some((index, ExtendedAttribute { name, value })) => {
                    let curr_value = xattr::get(&filename, name).map_err(|err| {
                        LocalDestinationErrorKind::GettingXattrFailed {
                            name: name.clone(),
                            filename: filename.clone(),
                            source: err,
                        }
                    })?;
                    if value != &curr_value {
                        xattr::set(&filename, name, value.as_ref().unwrap_or(&Vec::new()))
                            .map_err(|err| LocalDestinationErrorKind::SettingXattrFailed {
                                name: name.clone(),
                                filename: filename.clone(),
                                source: err,
                            })?;
                    }
                    done[index] = true;
                }
                None => {
                    if let Err(err) = xattr::remove(&filename, &curr_name) {
                        warn!(
                            "error removing xattr {} on {}: {err}",
                            curr_name.display(),
                            filename.display()
                        );
                    }
                }
            }
        }

        for (index, ExtendedAttribute { name, value }) in extended_attributes.iter().enumerate() {
            if !done[index] {
                xattr::set(&filename, name, value.as_ref().unwrap_or(&Vec::new())).map_err(
                    |err| LocalDestinationErrorKind::SettingXattrFailed {
                        name: name.clone(),
                        filename: filename.clone(),
                        source: err,
                    },
                )?;
            }
        }

        Ok(())
    }

    /// Set length of `item` (relative to the base path)
    ///
    /// # Arguments
    ///
    /// * `item` - The item to set the length for
    /// * `size` - The size to set the length to
    ///
    /// # Errors
    ///
    /// * If the file does not have a parent.
    /// * If the directory could not be created.
    /// * If the file could not be opened.
    /// * If the length of the file could not be set.
    ///
    /// # Notes
    ///
    /// If the file exists, truncate it to the given length. (TODO: check if this is correct)
    /// If it doesn't exist, create a new (empty) one with given length.
    pub(crate) fn set_length(
        &self,
        item: impl AsRef<Path>,
        size: u64,
    ) -> LocalDestinationResult<()> {
        let loc = self
            .locate(item, true)
            .map_err(LocalDestinationErrorKind::DirectoryCreationFailed)?;
        loc.open_file(Access::Write, true)
            .map_err(LocalDestinationErrorKind::OpeningFileFailed)?
            .set_len(size)
            .map_err(LocalDestinationErrorKind::SettingFileLengthFailed)?;
        Ok(())
    }

    #[cfg(windows)]
    // TODO: Windows support
    /// Create a special file (relative to the base path)
    ///
    /// # Arguments
    ///
    /// * `item` - The item to create
    /// * `node` - The node to get the type from
    ///
    /// # Errors
    ///
    /// * If the special file could not be created.
    ///
    /// # Returns
    ///
    /// Ok if the special file was created.
    #[allow(clippy::unused_self, clippy::unnecessary_wraps)]
    pub(crate) fn create_special(
        &self,
        _item: impl AsRef<Path>,
        _node: &Node,
    ) -> LocalDestinationResult<()> {
        Ok(())
    }

    #[cfg(not(windows))]
    /// Create a special file (relative to the base path)
    ///
    /// # Arguments
    ///
    /// * `item` - The item to create
    /// * `node` - The node to get the type from
    ///
    /// # Errors
    ///
    /// * If the symlink could not be created.
    /// * If the device could not be converted to the correct type.
    /// * If the device could not be created.
    pub(crate) fn create_special(
        &self,
        item: impl AsRef<Path>,
        loc: &Located,
        node: &Node,
    ) -> LocalDestinationResult<()> {
        if !node.is_special() {
            return Ok(());
        }
        let filename = self.path(&item);
        let (dir, name) = (&loc.dir, loc.name.as_os_str());
        let node_at = |kind: SFlag, device: u64| {
            mknodat(dir, name, kind, Mode::empty(), device)
                .map_err(LocalDestinationErrorKind::FromErrnoError)
        };
        match &node.node_type {
            NodeType::Symlink { .. } => {
                let linktarget = node.node_type.to_link();
                symlinkat(linktarget, dir, name).map_err(|err| {
                    LocalDestinationErrorKind::SymlinkingFailed {
                        linktarget: linktarget.to_path_buf(),
                        filename,
                        source: err.into(),
                    }
                })?;
            }
            NodeType::Dev { device } => node_at(SFlag::S_IFBLK, *device)?,
            NodeType::Chardev { device } => node_at(SFlag::S_IFCHR, *device)?,
            NodeType::Fifo => node_at(SFlag::S_IFIFO, 0)?,
            NodeType::Socket => node_at(SFlag::S_IFSOCK, 0)?,
            _ => {}
        }
        Ok(())
    }

    /// Read the given item (relative to the base path)
    ///
    /// # Arguments
    ///
    /// * `item` - The item to read
    /// * `offset` - The offset to read from
    /// * `length` - The length to read
    ///
    /// # Errors
    ///
    /// * If the file could not be opened.
    /// * If the file could not be sought to the given position.
    /// * If the length of the file could not be converted to u32.
    /// * If the length of the file could not be read.
    pub(crate) fn read_at(
        &self,
        item: impl AsRef<Path>,
        offset: u64,
        length: u64,
    ) -> LocalDestinationResult<Bytes> {
        let loc = self
            .locate(item, false)
            .map_err(LocalDestinationErrorKind::OpeningFileFailed)?;
        let file = loc
            .open_file(Access::Read, false)
            .map_err(LocalDestinationErrorKind::OpeningFileFailed)?;
        let mut vec = vec![
            0;
            length.try_into().map_err(|err| {
                LocalDestinationErrorKind::LengthConversionFailed {
                    target: "u8".to_string(),
                    length,
                    source: err,
                }
            })?
        ];
        file.read_exact_at(&mut vec, offset)
            .map_err(LocalDestinationErrorKind::ReadingExactLengthOfFileFailed)?;
        Ok(vec.into())
    }

    /// Check if a matching file exists.
    ///
    /// # Arguments
    ///
    /// * `item` - The item to check
    /// * `size` - The size to check
    ///
    /// # Returns
    ///
    /// If a file exists and size matches, this returns a `File` open for reading.
    /// In all other cases, returns `None`
    pub fn get_matching_file(&self, item: impl AsRef<Path>, size: u64) -> Option<File> {
        let loc = self.locate(item, false).ok()?;
        let file = loc.open_file(Access::Read, false).ok()?;
        (file.metadata().ok()?.len() == size).then_some(file)
    }

    /// Write `data` to given item (relative to the base path) at `offset`
    ///
    /// # Arguments
    ///
    /// * `item` - The item to write to
    /// * `length` - The file's length, set first (the first write into the file)
    /// * `offset` - The offset to write at
    /// * `data` - The data to write (none: a sparse part, only the length is set)
    ///
    /// # Errors
    ///
    /// * If the file could not be opened.
    /// * If the file could not be sought to the given position.
    /// * If the bytes could not be written to the file.
    ///
    /// # Notes
    ///
    /// This will create the file if it doesn't exist.
    pub(crate) fn write_at(
        &self,
        item: impl AsRef<Path>,
        length: Option<u64>,
        offset: u64,
        data: Option<&[u8]>,
    ) -> LocalDestinationResult<()> {
        let loc = self
            .locate(item, true)
            .map_err(LocalDestinationErrorKind::OpeningFileFailed)?;
        let file = loc
            .open_file(Access::Write, true)
            .map_err(LocalDestinationErrorKind::OpeningFileFailed)?;
        // Lifeboat patch: the file's first write also sets its length (one open, not two).
        if let Some(length) = length {
            file.set_len(length)
                .map_err(LocalDestinationErrorKind::SettingFileLengthFailed)?;
        }
        if let Some(data) = data {
            file.write_all_at(data, offset)
                .map_err(LocalDestinationErrorKind::CouldNotWriteToBuffer)?;
        }
        Ok(())
    }

    /// Create a hardlink `item` pointing to `source_item`, both relative to the base path.
    ///
    /// # Arguments
    ///
    /// * `source_item` - The already-restored file to link to
    /// * `item` - The path to create as a hardlink
    ///
    /// # Errors
    ///
    /// * If the new hardlink does not have a parent directory.
    /// * If the directory could not be created.
    /// * If the hardlink could not be created.
    pub(crate) fn hard_link(
        &self,
        source_item: impl AsRef<Path>,
        item: impl AsRef<Path>,
    ) -> LocalDestinationResult<()> {
        let source_path = self.path(&source_item);
        let filename = self.path(&item);
        let failed = |source: std::io::Error| LocalDestinationErrorKind::HardLinkingFailed {
            source_path: source_path.clone(),
            filename: filename.clone(),
            source,
        };
        // Both ends beneath the target: a hard link can only join two restored files.
        let from = self.locate(source_item, false).map_err(failed)?;
        let to = self.locate(item, true).map_err(failed)?;
        linkat(
            &from.dir,
            from.name.as_os_str(),
            &to.dir,
            to.name.as_os_str(),
            AtFlags::empty(),
        )
        .map_err(|e| failed(e.into()))?;
        Ok(())
    }
}

/// The errno behind an I/O error, for the variants that carry one.
fn io_errno(e: &std::io::Error) -> Errno {
    e.raw_os_error().map_or(Errno::EINVAL, Errno::from_raw)
}
