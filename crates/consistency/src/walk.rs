//! The regular files of a tree on the host, listed on several threads in walk order. A cold
//! tree is read one inode at a time by a single walker, each waiting for the disk; several
//! walkers keep several reads in flight (a no-change backup of a million files spent a third
//! of its time in the single-threaded walk of database detection).

use std::ffi::OsString;
use std::fs::Metadata;
use std::path::Path;

use rayon::prelude::*;

/// Files of one directory read in one go by one walker (a chunk of the result).
const RUN: usize = 256;

/// What a walker does with one directory entry.
enum Run {
    /// Consecutive files (at most [`RUN`]).
    Files(Vec<OsString>),
    /// A directory, walked on its own.
    Dir(OsString),
}

/// Lists the regular files below `dir` on `threads` walkers, in walk order: each directory's
/// names sorted by their bytes, the files below a directory where its name sorts (the order
/// of [`Path`]'s comparison, component by component). Symlinks are neither followed nor
/// listed, and entries that cannot be read are left out. `visit` appends what it keeps of a
/// file (its path relative to `dir`, its own metadata) to a chunk; the chunks come back in
/// walk order.
pub fn files<F>(dir: &Path, threads: usize, visit: F) -> Vec<Vec<u8>>
where
    F: Fn(&mut Vec<u8>, &Path, &Metadata) + Sync,
{
    let walk = || list(dir, Path::new(""), &visit);
    match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(pool) => pool.install(walk),
        Err(_) => walk(),
    }
}

fn list<F>(abs: &Path, rel: &Path, visit: &F) -> Vec<Vec<u8>>
where
    F: Fn(&mut Vec<u8>, &Path, &Metadata) + Sync,
{
    let Ok(read) = std::fs::read_dir(abs) else {
        return Vec::new();
    };
    // The entry's own type: a symlink is neither a file nor a directory here.
    let mut entries: Vec<(OsString, bool)> = read
        .filter_map(Result::ok)
        .filter_map(|e| {
            let kind = e.file_type().ok()?;
            (kind.is_dir() || kind.is_file()).then(|| (e.file_name(), kind.is_dir()))
        })
        .collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut runs: Vec<Run> = Vec::new();
    for (name, is_dir) in entries {
        match runs.last_mut() {
            _ if is_dir => runs.push(Run::Dir(name)),
            Some(Run::Files(names)) if names.len() < RUN => names.push(name),
            _ => runs.push(Run::Files(vec![name])),
        }
    }
    let chunks: Vec<Vec<Vec<u8>>> = runs
        .into_par_iter()
        .map(|run| match run {
            Run::Files(names) => {
                let mut chunk = Vec::new();
                for name in names {
                    // Not followed if it became a symlink since it was listed.
                    match std::fs::symlink_metadata(abs.join(&name)) {
                        Ok(meta) if meta.is_file() => visit(&mut chunk, &rel.join(&name), &meta),
                        _ => {}
                    }
                }
                // Kept until the walk ends: no room to spare.
                chunk.shrink_to_fit();
                vec![chunk]
            }
            Run::Dir(name) => list(&abs.join(&name), &rel.join(&name), visit),
        })
        .collect();
    chunks
        .into_iter()
        .flatten()
        .filter(|c| !c.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn files_come_in_walk_order_from_every_walker_and_symlinks_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let mut want = Vec::new();
        for i in 0..700 {
            // Flat runs longer than one walker's share, nested directories, and names whose
            // bytes sort unlike their paths (`a/x` before `a-b`).
            let rel = match i % 4 {
                0 => format!("flat/f{i:04}"),
                1 => format!("a/{}/x{i}", i % 9),
                2 => format!("a-b{i}"),
                _ => format!("z/{}/{}/y{i}", i % 3, i % 5),
            };
            let path = dir.path().join(&rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, i.to_string()).unwrap();
            want.push(std::path::PathBuf::from(rel));
        }
        std::os::unix::fs::symlink("/etc", dir.path().join("a/etc")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("flat/host")).unwrap();
        want.sort();
        let chunks = files(dir.path(), 4, |chunk, rel, meta| {
            assert!(meta.is_file());
            chunk.extend_from_slice(rel.as_os_str().as_bytes());
            chunk.push(b'\n');
        });
        assert!(chunks.len() > 1, "several chunks");
        let got: Vec<std::path::PathBuf> = chunks
            .concat()
            .split(|b| *b == b'\n')
            .filter(|p| !p.is_empty())
            .map(|p| std::path::PathBuf::from(std::ffi::OsStr::from_bytes(p)))
            .collect();
        assert_eq!(got, want);
    }
}
