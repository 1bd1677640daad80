//! A restore sets every entry's metadata (the engine sets it in parallel batches, directories
//! last): against a real repository on disk, no Docker needed.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use lifeboat_repo::{RepoLocation, Repository, RusticRepository};

/// More entries than the engine hands to its metadata threads at once (4,096).
const FILES: u32 = 5_000;

fn set_mtime(path: &Path, secs: u64) {
    let when = UNIX_EPOCH + Duration::from_secs(secs);
    let times = std::fs::FileTimes::new()
        .set_modified(when)
        .set_accessed(when);
    std::fs::File::open(path).unwrap().set_times(times).unwrap();
}

fn mtime(path: &Path) -> i64 {
    std::fs::symlink_metadata(path).unwrap().mtime()
}

#[test]
fn a_restore_sets_every_files_mode_and_time_and_every_directorys_time_after_its_entries() {
    let dir = tempfile::tempdir().unwrap();
    let repo = RusticRepository::init(
        &RepoLocation(dir.path().join("repo").display().to_string()),
        "test-password",
        None,
    )
    .unwrap();
    let src = dir.path().join("src");
    let many = src.join("many");
    let links = src.join("links");
    let deep = src.join("a/b/c");
    for d in [&many, &links, &deep] {
        std::fs::create_dir_all(d).unwrap();
    }
    for i in 0..FILES {
        let f = many.join(format!("f{i:05}"));
        std::fs::write(&f, format!("file {i}")).unwrap();
        let mode = if i % 2 == 0 { 0o640 } else { 0o604 };
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
        set_mtime(&f, 1_600_000_000 + u64::from(i));
    }
    // Entries the restore creates while it sets metadata: a symlink and a second hard link.
    std::fs::write(links.join("file"), "linked").unwrap();
    std::fs::hard_link(links.join("file"), links.join("again")).unwrap();
    std::os::unix::fs::symlink("file", links.join("symlink")).unwrap();
    std::fs::write(deep.join("leaf"), "leaf").unwrap();
    std::fs::set_permissions(src.join("a/b"), std::fs::Permissions::from_mode(0o750)).unwrap();
    // Directory times last, each its own.
    let dirs = ["many", "links", "a/b/c", "a/b", "a", ""];
    for (n, d) in dirs.iter().enumerate() {
        set_mtime(&src.join(d), 1_500_000_000 + n as u64 * 1_000);
    }

    let part = lifeboat_testkit::backup_volume(&repo, &src);
    let target = dir.path().join("target");
    let report = repo
        .restore_dir(&part.snapshot_id, "/volumes/v", &target)
        .unwrap();
    // The second hard link and the symlink are made while metadata is set, not counted.
    assert_eq!(report.files, u64::from(FILES) + 2);

    for i in 0..FILES {
        let f = target.join(format!("many/f{i:05}"));
        let meta = std::fs::metadata(&f).unwrap();
        let mode = if i % 2 == 0 { 0o640 } else { 0o604 };
        assert_eq!(meta.mode() & 0o7777, mode, "mode of {}", f.display());
        assert_eq!(
            meta.mtime(),
            1_600_000_000 + i64::from(i),
            "{}",
            f.display()
        );
        assert_eq!(std::fs::read_to_string(&f).unwrap(), format!("file {i}"));
    }
    let (file, again) = (
        std::fs::metadata(target.join("links/file")).unwrap(),
        std::fs::metadata(target.join("links/again")).unwrap(),
    );
    assert_eq!((file.ino(), file.nlink()), (again.ino(), 2));
    assert_eq!(
        std::fs::read_link(target.join("links/symlink")).unwrap(),
        Path::new("file")
    );
    assert_eq!(
        std::fs::metadata(target.join("a/b")).unwrap().mode() & 0o7777,
        0o750
    );
    for d in dirs {
        assert_eq!(
            mtime(&target.join(d)),
            mtime(&src.join(d)),
            "directory `{d}`"
        );
    }
}
