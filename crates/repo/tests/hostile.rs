//! Hostile snapshots and hostile restore targets, against a real repository on disk: a
//! restore writes only inside its target, whatever the snapshot holds and whatever the target
//! already contains. Each test hashes and stats a sentinel tree beside the target before and
//! after, and requires it unchanged.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use lifeboat_repo::craft::{CraftedEntry, CraftedKind};
use lifeboat_repo::{DirBackup, RepoError, RepoLocation, Repository, RusticRepository};
use lifeboat_testkit::snapshot_tree;

struct World {
    _dir: tempfile::TempDir,
    repo: RusticRepository,
    /// The restore target.
    target: PathBuf,
    /// Host files that must never change.
    sentinel: PathBuf,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let loc = RepoLocation(dir.path().join("repo").display().to_string());
    let repo = RusticRepository::init(&loc, "test-password", None).unwrap();
    // Deep enough that `../../../../` from the target lands inside the temp dir.
    let target = dir.path().join("a/b/c/target");
    let sentinel = dir.path().join("sentinel");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::create_dir_all(sentinel.join("etc")).unwrap();
    std::fs::write(sentinel.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").unwrap();
    std::fs::write(sentinel.join("authorized_keys"), b"ssh-ed25519 AAAA host\n").unwrap();
    World {
        _dir: dir,
        repo,
        target,
        sentinel,
    }
}

impl World {
    fn craft(&self, entries: Vec<CraftedEntry>) -> String {
        self.repo
            .craft_snapshot("/volumes/v", entries, &[], None)
            .unwrap()
    }

    /// The parent of everything: the sentinel and the target's ancestors.
    fn outside(&self) -> PathBuf {
        self.sentinel.parent().unwrap().to_path_buf()
    }

    fn sentinel_state(&self) -> impl PartialEq + std::fmt::Debug {
        // Anything created beside the target's ancestors counts too.
        let mut top: Vec<_> = std::fs::read_dir(self.outside())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        top.sort();
        (snapshot_tree(&self.sentinel), top)
    }

    fn target_is_empty(&self) -> bool {
        std::fs::read_dir(&self.target).unwrap().next().is_none()
    }
}

fn file(path: &str, name: &[u8], content: &[u8]) -> CraftedEntry {
    CraftedEntry::new(path, name, CraftedKind::File(content.to_vec()))
}

fn expect_hostile(w: &World, id: &str) -> String {
    let before = w.sentinel_state();
    let err = w
        .repo
        .restore_dir(id, "/volumes/v", &w.target)
        .expect_err("a hostile snapshot must not restore");
    assert_eq!(
        w.sentinel_state(),
        before,
        "nothing outside the target changed"
    );
    assert!(
        w.target_is_empty(),
        "nothing was written into the target either"
    );
    match &err {
        RepoError::HostileSnapshot { entry, .. } => entry.clone(),
        other => panic!("expected HostileSnapshot, got {other}"),
    }
}

#[test]
fn entries_named_with_parent_components_are_refused_before_anything_is_written() {
    let w = world();
    let id = w.craft(vec![
        file("/volumes/v/a-ok", b"ok", b"fine"),
        file(
            "/volumes/v/b-evil",
            b"../../../../sentinel/etc/passwd",
            b"pwned\n",
        ),
        file("/volumes/v/c-after", b"later", b"sibling after the escape"),
    ]);
    let entry = expect_hostile(&w, &id);
    assert!(
        entry.contains("sentinel/etc/passwd"),
        "names the entry: {entry}"
    );
}

#[test]
fn a_directory_named_dot_dot_is_refused() {
    let w = world();
    let id = w.craft(vec![
        CraftedEntry::new("/volumes/v/d", b"..", CraftedKind::Dir),
        file("/volumes/v/d/x", b"x", b"up one"),
    ]);
    expect_hostile(&w, &id);
}

#[test]
fn absolute_names_and_names_with_slashes_are_refused() {
    let w = world();
    let abs = format!("{}/abs", w.sentinel.display());
    for name in [abs.as_bytes(), b"sub/inner", b".", b""] {
        let id = w.craft(vec![file("/volumes/v/f", name, b"data")]);
        expect_hostile(&w, &id);
    }
    let id = w.craft(vec![CraftedEntry::new(
        "/volumes/v/l",
        abs.as_bytes(),
        CraftedKind::Symlink("/etc/passwd".into()),
    )]);
    expect_hostile(&w, &id);
}

#[test]
fn a_symlink_and_a_directory_of_the_same_name_are_refused() {
    // The borg CVE shape: `sub -> outside`, then `sub/authorized_keys` "through" it.
    let w = world();
    let id = w.craft(vec![
        CraftedEntry::new(
            "/volumes/v/a",
            b"sub",
            CraftedKind::Symlink(w.sentinel.display().to_string()),
        ),
        CraftedEntry::new("/volumes/v/b", b"sub", CraftedKind::Dir),
        file("/volumes/v/b/k", b"authorized_keys", b"ssh-ed25519 EVIL\n"),
    ]);
    let entry = expect_hostile(&w, &id);
    assert!(entry.contains("sub"), "{entry}");
}

#[test]
fn a_hard_link_to_a_file_outside_is_refused() {
    let w = world();
    let id = w.craft(vec![
        CraftedEntry::new(
            "/volumes/v/a",
            b"../../../../sentinel/etc/passwd",
            CraftedKind::HardLinked {
                content: b"pwned\n".to_vec(),
                inode: 7,
            },
        ),
        CraftedEntry::new(
            "/volumes/v/b",
            b"link",
            CraftedKind::HardLinked {
                content: b"pwned\n".to_vec(),
                inode: 7,
            },
        ),
    ]);
    expect_hostile(&w, &id);
}

#[test]
fn hard_links_inside_the_target_are_restored_as_links() {
    use std::os::unix::fs::MetadataExt;
    let w = world();
    let hl = |path: &str, name: &[u8]| {
        CraftedEntry::new(
            path,
            name,
            CraftedKind::HardLinked {
                content: b"same".to_vec(),
                inode: 9,
            },
        )
    };
    let id = w.craft(vec![hl("/volumes/v/a", b"a"), hl("/volumes/v/b", b"b")]);
    w.repo.restore_dir(&id, "/volumes/v", &w.target).unwrap();
    let (a, b) = (
        std::fs::metadata(w.target.join("a")).unwrap(),
        std::fs::metadata(w.target.join("b")).unwrap(),
    );
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
}

/// Backs up a real directory tree as a part.
fn backup(w: &World, src: &Path, as_path: &str) -> String {
    w.repo
        .backup_dir(&DirBackup {
            source: src,
            as_path,
            tags: &[],
            description: None,
            exclude: &[],
            pace: None,
        })
        .unwrap()
        .snapshot_id
}

#[test]
fn a_later_part_never_follows_a_symlink_an_earlier_part_restored() {
    // The volume part holds `sub -> outside`; the database part holds `sub/authorized_keys`.
    let w = world();
    let src = w.outside().join("src");
    std::fs::create_dir_all(src.join("vol")).unwrap();
    symlink(&w.sentinel, src.join("vol/sub")).unwrap();
    std::fs::create_dir_all(src.join("db/sub")).unwrap();
    std::fs::write(src.join("db/sub/authorized_keys"), b"SQLite format 3\0evil").unwrap();
    let vol = backup(&w, &src.join("vol"), "/volumes/v");
    let db = backup(&w, &src.join("db"), "/sqlite/volumes/v");
    let before = w.sentinel_state();
    w.repo.restore_dir(&vol, "/volumes/v", &w.target).unwrap();
    let err = w
        .repo
        .restore_dir(&db, "/sqlite/volumes/v", &w.target)
        .expect_err("the second part must refuse to write through the symlink");
    assert!(
        matches!(err, RepoError::TargetWrite { .. }),
        "reported as a target problem: {err}"
    );
    assert!(err.to_string().contains("refusing"), "{err}");
    assert_eq!(w.sentinel_state(), before);
    assert_eq!(
        std::fs::read(w.sentinel.join("authorized_keys")).unwrap(),
        b"ssh-ed25519 AAAA host\n"
    );
}

#[test]
fn symlinks_planted_in_the_target_are_never_written_through() {
    let w = world();
    let src = w.outside().join("src");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/passwd"), b"pwned\n").unwrap();
    std::fs::write(src.join("authorized_keys"), b"evil\n").unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    let id = backup(&w, &src, "/volumes/v");
    // Someone prepared the target: a directory symlink and file symlinks pointing outside.
    symlink(w.sentinel.join("etc"), w.target.join("etc")).unwrap();
    symlink(
        w.sentinel.join("authorized_keys"),
        w.target.join("authorized_keys"),
    )
    .unwrap();
    symlink(w.sentinel.join("etc/passwd"), w.target.join("empty")).unwrap();
    let before = w.sentinel_state();
    let result = w.repo.restore_dir(&id, "/volumes/v", &w.target);
    assert!(
        result.is_err(),
        "planted symlinks make the restore fail loudly"
    );
    assert_eq!(w.sentinel_state(), before);
}

#[test]
fn the_engine_itself_refuses_hostile_paths_when_lifeboat_checks_are_bypassed() {
    // Lifeboat checks names first; the patched engine must hold on its own too.
    use rustic_core::{
        Credentials, LocalDestination, LsOptions, Repository as Engine, RepositoryOptions,
        RestoreOptions,
    };
    let w = world();
    let id = w.craft(vec![
        file(
            "/volumes/v/a",
            b"../../../../sentinel/etc/passwd",
            b"pwned\n",
        ),
        CraftedEntry::new("/volumes/v/b", b"..", CraftedKind::Dir),
        file("/volumes/v/b/c", b"authorized_keys", b"evil\n"),
        file("/volumes/v/d", b"e/../../../../../sentinel/new", b"evil\n"),
    ]);
    let backends = rustic_backend::BackendOptions::default()
        .repository(w.outside().join("repo").display().to_string())
        .to_backends()
        .unwrap();
    let engine = Engine::new(&RepositoryOptions::default(), &backends)
        .unwrap()
        .open(&Credentials::password("test-password"))
        .unwrap()
        .to_indexed()
        .unwrap();
    let node = engine
        .node_from_snapshot_path(&format!("{id}:/volumes/v"), |_| true)
        .unwrap();
    let ls = engine.ls(&node, &LsOptions::default()).unwrap();
    let dest = LocalDestination::new(&format!("{}/", w.target.display()), true, false).unwrap();
    let opts = RestoreOptions::default().numeric_id(true);
    let before = w.sentinel_state();
    let outcome = engine
        .prepare_restore(&opts, ls.clone(), &dest, false)
        .and_then(|plan| engine.restore(plan, &opts, ls, &dest));
    assert!(
        outcome.is_err(),
        "the engine fails instead of writing outside"
    );
    assert_eq!(w.sentinel_state(), before);
}

#[test]
fn a_target_replaced_by_a_symlink_mid_restore_gets_no_byte_outside() {
    let w = world();
    let src = w.outside().join("src");
    for d in 0..40 {
        let dir = src.join(format!("d{d:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            let body = format!("{d}-{f}-").repeat(200 + f);
            std::fs::write(dir.join(format!("f{f:03}")), body).unwrap();
        }
    }
    let id = backup(&w, &src, "/volumes/v");
    let before = w.sentinel_state();
    let target = w.target.clone();
    let moved = w.outside().join("a/b/c/moved");
    let swapped = std::thread::scope(|s| {
        let restore = s.spawn(|| w.repo.restore_dir(&id, "/volumes/v", &target));
        // As soon as the restore has started writing, swap the target for a symlink.
        while std::fs::read_dir(&target).unwrap().next().is_none() && !restore.is_finished() {
            std::thread::yield_now();
        }
        let mid_restore = !restore.is_finished();
        std::fs::rename(&target, &moved).unwrap();
        symlink(&w.sentinel, &target).unwrap();
        let result = restore.join().unwrap();
        (mid_restore, result)
    });
    assert!(swapped.0, "the swap happened while the restore was running");
    std::fs::remove_file(&w.target).unwrap();
    assert_eq!(
        w.sentinel_state(),
        before,
        "no byte reached the symlink's target"
    );
    // The data went on into the directory first opened; the end is refused, not followed.
    assert!(moved.join("d00").is_dir());
    assert!(
        swapped.1.is_err(),
        "the final step refuses the replaced target"
    );
}

#[test]
fn a_full_restore_target_is_reported_as_a_full_disk_not_as_damage() {
    let w = world();
    let src = w.outside().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let noise: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(src.join("big"), &noise).unwrap();
    let id = backup(&w, &src, "/volumes/v");
    // A 1 MiB file system as the target: the restore needs 3 MiB.
    let status = std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=1m",
            "lifeboat-test",
            w.target.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(status.success(), "mounting a small tmpfs needs root");
    let result = w.repo.restore_dir(&id, "/volumes/v", &w.target);
    let _ = std::process::Command::new("umount").arg(&w.target).status();
    match result {
        Err(RepoError::TargetWrite {
            no_space: true,
            free: Some(_),
            ref reason,
            ..
        }) => assert!(
            reason.contains("no space left") && reason.contains("big"),
            "{reason}"
        ),
        other => panic!("expected a full-disk error, got {other:?}"),
    }
    let text = w
        .repo
        .restore_dir(&id, "/volumes/v", Path::new("/proc/1/nonexistent"))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(!text.contains("damaged"), "{text}");
}

/// Reads every file of snapshot `id` back and returns whether any holds `needle`.
fn restored_contains(w: &World, id: &str, needle: &[u8]) -> bool {
    let out = w.outside().join(format!("check-{id}"));
    let _ = w.repo.restore_dir(id, "/volumes/v", &out);
    walk_files(&out)
        .iter()
        .any(|f| std::fs::read(f).is_ok_and(|c| c.windows(needle.len()).any(|x| x == needle)))
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let t = e.file_type().unwrap();
        if t.is_dir() {
            out.extend(walk_files(&e.path()));
        } else if t.is_file() {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn a_directory_swapped_for_a_symlink_mid_backup_never_stores_host_files() {
    // A process in the container flips `sub` between a real directory and a symlink to a
    // host directory as fast as it can while backups run.
    let w = world();
    let vol = w.outside().join("vol");
    let real = w.outside().join("vol-real");
    std::fs::create_dir_all(&vol).unwrap();
    for dir in [&real, &w.sentinel] {
        std::fs::create_dir_all(dir).unwrap();
    }
    for i in 0..300 {
        std::fs::write(real.join(format!("f{i:03}")), b"container data").unwrap();
        std::fs::write(w.sentinel.join(format!("f{i:03}")), b"HOST SECRET").unwrap();
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let ids = std::thread::scope(|s| {
        s.spawn(|| {
            let sub = vol.join("sub");
            let parked = w.outside().join("parked");
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::fs::rename(&real, &sub).unwrap();
                std::thread::sleep(std::time::Duration::from_micros(300));
                std::fs::rename(&sub, &parked).unwrap();
                symlink(&w.sentinel, &sub).unwrap();
                std::thread::sleep(std::time::Duration::from_micros(300));
                std::fs::remove_file(&sub).unwrap();
                std::fs::rename(&parked, &real).unwrap();
            }
        });
        let ids: Vec<String> = (0..25).map(|_| backup(&w, &vol, "/volumes/v")).collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        ids
    });
    for id in &ids {
        assert!(
            !restored_contains(&w, id, b"HOST SECRET"),
            "snapshot {id} holds a host file"
        );
    }
}
