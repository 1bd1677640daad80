//! A tree-compare helper: everything a restore must keep, per entry.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// One entry of a tree, as compared after a round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `dir`, `file`, `symlink`, `fifo` or `other`.
    pub kind: &'static str,
    /// Permission bits including setuid/setgid/sticky (not compared for symlinks).
    pub mode: u32,
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of a regular file's content.
    pub sha256: Option<String>,
    /// Modification time in nanoseconds (regular files and symlinks are compared).
    pub mtime_ns: i128,
    /// A symlink's target, raw.
    pub link_target: Option<Vec<u8>>,
    /// Extended attributes by name.
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// Index of the hard-link group (by first path), for files with more than one link.
    pub hardlink_group: Option<Vec<u8>>,
    /// True when the file occupies clearly fewer blocks than its size (a sparse file).
    pub sparse: bool,
}

fn kind(m: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    if t.is_dir() {
        "dir"
    } else if t.is_symlink() {
        "symlink"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_file() {
        "file"
    } else {
        "other"
    }
}

/// Every entry under `root` (the root itself as `.`), keyed by raw relative path.
pub fn snapshot_tree(root: &Path) -> BTreeMap<Vec<u8>, Entry> {
    let mut out = BTreeMap::new();
    let mut first_path_of_inode: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for item in walkdir::WalkDir::new(root).sort_by_file_name() {
        let item = item.expect("walk");
        let rel: PathBuf = item.path().strip_prefix(root).unwrap().to_path_buf();
        let key = if rel.as_os_str().is_empty() {
            b".".to_vec()
        } else {
            rel.as_os_str().as_bytes().to_vec()
        };
        let m = fs::symlink_metadata(item.path()).expect("lstat");
        let k = kind(&m);
        let sha256 = (k == "file").then(|| {
            let data = fs::read(item.path()).expect("read");
            hex::encode(Sha256::digest(&data))
        });
        let link_target = (k == "symlink").then(|| {
            fs::read_link(item.path())
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec()
        });
        let xattrs = if k == "symlink" {
            BTreeMap::new()
        } else {
            xattr::list(item.path())
                .map(|names| {
                    names
                        .filter_map(|n| {
                            let v = xattr::get(item.path(), &n).ok().flatten()?;
                            Some((n.to_string_lossy().to_string(), v))
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let hardlink_group = (k == "file" && m.nlink() > 1).then(|| {
            first_path_of_inode
                .entry(m.ino())
                .or_insert_with(|| key.clone())
                .clone()
        });
        out.insert(
            key,
            Entry {
                kind: k,
                mode: if k == "symlink" { 0 } else { m.mode() & 0o7777 },
                uid: m.uid(),
                gid: m.gid(),
                size: if k == "dir" { 0 } else { m.size() },
                sha256,
                mtime_ns: if k == "dir" {
                    0
                } else {
                    m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128
                },
                link_target,
                xattrs,
                hardlink_group,
                sparse: k == "file" && m.size() > (1 << 20) && m.blocks() * 512 < m.size() / 2,
            },
        );
    }
    out
}

/// Differences between two trees, one line each; empty when they match.
pub fn compare_trees(expected: &Path, actual: &Path) -> Vec<String> {
    diff(snapshot_tree(expected), snapshot_tree(actual))
}

/// Like [`compare_trees`], for restorers that write holes as zeros.
pub fn compare_trees_ignoring_sparseness(expected: &Path, actual: &Path) -> Vec<String> {
    let dense = |mut t: BTreeMap<Vec<u8>, Entry>| {
        t.values_mut().for_each(|e| e.sparse = false);
        t
    };
    diff(dense(snapshot_tree(expected)), dense(snapshot_tree(actual)))
}

/// Differences between two trees taken with [`snapshot_tree`], one line each.
pub fn diff(a: BTreeMap<Vec<u8>, Entry>, b: BTreeMap<Vec<u8>, Entry>) -> Vec<String> {
    let mut diffs = Vec::new();
    for (k, ea) in &a {
        let name = String::from_utf8_lossy(k);
        match b.get(k) {
            None => diffs.push(format!("missing: {name}")),
            Some(eb) if eb != ea => diffs.push(format!(
                "differs: {name}\n  expected {ea:?}\n  actual   {eb:?}"
            )),
            _ => {}
        }
    }
    for k in b.keys().filter(|k| !a.contains_key(*k)) {
        diffs.push(format!("unexpected: {}", String::from_utf8_lossy(k)));
    }
    diffs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_finds_content_mode_and_owner_differences() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        // Same content and the same mtime (two writes may land on different clock ticks).
        let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        for d in [a.path(), b.path()] {
            fs::write(d.join("f"), "same").unwrap();
            fs::File::options()
                .write(true)
                .open(d.join("f"))
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        assert!(
            compare_trees(a.path(), b.path()).is_empty(),
            "identical trees"
        );
        fs::write(b.path().join("f"), "diff").unwrap();
        let diffs = compare_trees(a.path(), b.path());
        assert_eq!(diffs.len(), 1, "{diffs:?}");
        fs::write(b.path().join("extra"), "").unwrap();
        assert_eq!(compare_trees(a.path(), b.path()).len(), 2);
    }

    #[test]
    fn corpus_entries_survive_a_plain_copy_check() {
        let a = tempfile::tempdir().unwrap();
        let n = crate::write_corpus(a.path());
        assert!(n > 10);
        let t = snapshot_tree(a.path());
        assert!(t.values().any(|e| e.sparse), "sparse file recognised");
        assert!(t.values().any(|e| e.kind == "fifo"));
        assert!(t.values().filter(|e| e.hardlink_group.is_some()).count() == 3);
    }
}
