//! A snapshot's tree checked before a restore writes anything: every entry must be a plain
//! name (no `/`, not `.` or `..`, not empty, no NUL) and unique in its directory. A snapshot
//! is input from whoever holds the repository key; restic refuses the same names ("invalid
//! child node name"), and the engine would otherwise join them onto the target as they are.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use lifeboat_safepath::is_plain_name;
use rustic_core::{RusticResult, repofile::Node};

/// Why a tree is refused: which entry (its directory and its name, escaped) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) entry: String,
    pub(crate) reason: &'static str,
}

fn shown(dir: &Path, name: &std::ffi::OsStr) -> String {
    let dir = if dir.as_os_str().is_empty() {
        "/".to_string()
    } else {
        format!("/{}/", dir.display())
    };
    format!("{dir}{:?}", name.to_string_lossy())
}

/// Walks the depth-first listing `nodes` (paths relative to the restored node) and returns
/// the first entry that must not be restored. Listing errors pass through.
pub(crate) fn first_refusal(
    nodes: impl Iterator<Item = RusticResult<(PathBuf, Node)>>,
) -> RusticResult<Option<Refusal>> {
    // The directories on the path to the current entry, each with the names seen in it.
    let mut open: Vec<(PathBuf, HashSet<OsString>)> = vec![(PathBuf::new(), HashSet::new())];
    for item in nodes {
        let (path, node) = item?;
        let name = node.name();
        let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
        if !is_plain_name(&name) {
            return Ok(Some(Refusal {
                entry: shown(&dir, &name),
                reason: "its name is not a plain file name (empty, `.`, `..`, or holding `/` \
                         or NUL)",
            }));
        }
        while open.last().is_some_and(|(d, _)| *d != dir) {
            let _ = open.pop();
        }
        let Some((_, names)) = open.last_mut() else {
            return Ok(Some(Refusal {
                entry: shown(&dir, &name),
                reason: "it is listed outside its directory",
            }));
        };
        if !names.insert(name.to_os_string()) {
            return Ok(Some(Refusal {
                entry: shown(&dir, &name),
                reason: "its name appears twice in one directory",
            }));
        }
        if node.is_dir() {
            open.push((path, HashSet::new()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustic_core::repofile::{Metadata, NodeType};
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    fn node(name: &[u8], dir: bool) -> Node {
        let kind = if dir { NodeType::Dir } else { NodeType::File };
        Node::new_node(OsStr::from_bytes(name), kind, Metadata::default())
    }

    fn listing(items: &[(&str, &[u8], bool)]) -> Vec<RusticResult<(PathBuf, Node)>> {
        items
            .iter()
            .map(|(dir, name, is_dir)| {
                let path = Path::new(dir).join(OsStr::from_bytes(name));
                Ok((path, node(name, *is_dir)))
            })
            .collect()
    }

    #[test]
    fn a_plain_tree_passes() {
        let l = listing(&[
            ("", b"a", true),
            ("a", b"x", false),
            ("a", b"y", false),
            ("", b"b", false),
            ("", b"\xff-not-utf8", false),
        ]);
        assert_eq!(first_refusal(l.into_iter()).unwrap(), None);
    }

    #[test]
    fn hostile_names_are_refused_with_the_entry_named() {
        for bad in [
            &b".."[..],
            b".",
            b"",
            b"a/b",
            b"/tmp/x/abs",
            b"../../../../tmp/x/f",
            b"n\0ul",
        ] {
            let l = listing(&[("", b"ok", false), ("", bad, false)]);
            let r = first_refusal(l.into_iter()).unwrap().expect("refused");
            assert!(r.reason.contains("plain file name"), "{bad:?}: {r:?}");
        }
    }

    #[test]
    fn a_name_twice_in_one_directory_is_refused_even_after_a_subtree() {
        let l = listing(&[
            ("", b"sub", true),
            ("sub", b"authorized_keys", false),
            ("", b"sub", false),
        ]);
        let r = first_refusal(l.into_iter()).unwrap().expect("refused");
        assert_eq!(r.entry, "/\"sub\"");
        assert!(r.reason.contains("twice"));
    }

    #[test]
    fn equal_names_in_different_directories_are_fine() {
        let l = listing(&[
            ("", b"a", true),
            ("a", b"same", false),
            ("", b"b", true),
            ("b", b"same", false),
        ]);
        assert_eq!(first_refusal(l.into_iter()).unwrap(), None);
    }
}
