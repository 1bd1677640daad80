//! The repository engine's measured rough edges, each pinned by a test against a real
//! repository on disk (no Docker needed).

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use lifeboat_repo::{
    DirBackup, RepoError, RepoLocation, Repository, RusticRepository, StreamBackup, StreamSource,
};

fn new_repo(dir: &Path) -> RusticRepository {
    let loc = RepoLocation(dir.join("repo").display().to_string());
    RusticRepository::init(&loc, "test-password", None).unwrap()
}

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    lifeboat_testkit::PseudoRandom::new(seed).bytes(n)
}

/// A producer that yields some bytes, then reports failure (like a dump exiting non-zero).
struct FailingProducer {
    data: Vec<u8>,
    read_error: bool,
}

struct ErrAfter {
    data: std::io::Cursor<Vec<u8>>,
    fail: bool,
}

impl Read for ErrAfter {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.data.read(buf)?;
        if n == 0 && self.fail {
            return Err(std::io::Error::other("connection reset mid-stream"));
        }
        Ok(n)
    }
}

impl StreamSource for FailingProducer {
    fn reader(&mut self) -> Box<dyn Read + Send> {
        Box::new(ErrAfter {
            data: std::io::Cursor::new(std::mem::take(&mut self.data)),
            fail: self.read_error,
        })
    }
    fn finish(&mut self) -> Result<(), String> {
        if self.read_error {
            Ok(())
        } else {
            Err("pg_dump exited with status 1".into())
        }
    }
}

#[test]
fn failed_stream_producer_leaves_no_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path());
    for read_error in [false, true] {
        let mut producer = FailingProducer {
            data: random_bytes(3 << 20, 1),
            read_error,
        };
        let req = StreamBackup {
            path: "/dump/db.sql",
            tags: &["t".into()],
            description: None,
            time: None,
        };
        let err = repo.backup_stream(&req, &mut producer).unwrap_err();
        assert!(matches!(err, RepoError::StreamFailed { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("status 1") || text.contains("reset"),
            "{text}"
        );
        assert!(
            repo.snapshots(&[]).unwrap().is_empty(),
            "truncated snapshot was deleted"
        );
    }
    assert!(repo.check(true).unwrap().errors.is_empty());
}

#[test]
fn stream_is_stored_and_dumped_back_identical() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path());
    struct Ok1(Vec<u8>);
    impl StreamSource for Ok1 {
        fn reader(&mut self) -> Box<dyn Read + Send> {
            Box::new(std::io::Cursor::new(self.0.clone()))
        }
        fn finish(&mut self) -> Result<(), String> {
            Ok(())
        }
    }
    let data = random_bytes(5 << 20, 2);
    let req = StreamBackup {
        path: "/image/image.tar",
        tags: &[],
        description: Some("d".into()),
        time: None,
    };
    let part = repo.backup_stream(&req, &mut Ok1(data.clone())).unwrap();
    assert_eq!(part.bytes, data.len() as u64);
    let mut out = Vec::new();
    repo.dump(&part.snapshot_id, "/image/image.tar", &mut out)
        .unwrap();
    assert!(out == data, "dumped stream differs");
    assert_eq!(
        repo.snapshots(&[]).unwrap()[0].description.as_deref(),
        Some("d")
    );
}

/// Root reads every file; without CAP_DAC_OVERRIDE a mode-000 file is unreadable. The test
/// re-runs itself under `setpriv` with those capabilities dropped.
#[test]
fn unreadable_file_is_reported_not_silently_dropped() {
    if std::env::var_os("LIFEBOAT_TEST_NO_DAC").is_none() {
        let exe = std::env::current_exe().unwrap();
        let status = std::process::Command::new("setpriv")
            .args([
                "--inh-caps=-dac_override,-dac_read_search",
                "--bounding-set=-dac_override,-dac_read_search",
            ])
            .arg(exe)
            .args([
                "--exact",
                "unreadable_file_is_reported_not_silently_dropped",
                "--nocapture",
            ])
            .env("LIFEBOAT_TEST_NO_DAC", "1")
            .status()
            .expect("setpriv (util-linux) is installed");
        assert!(status.success(), "the unprivileged run failed");
        return;
    }
    let (_dir, repo, src) = repo_and_source();
    std::fs::write(src.join("readable"), "ok").unwrap();
    std::fs::write(src.join("locked"), "secret").unwrap();
    std::fs::set_permissions(src.join("locked"), std::fs::Permissions::from_mode(0o000)).unwrap();
    assert!(
        std::fs::read(src.join("locked")).is_err(),
        "capabilities were not dropped"
    );
    let part = lifeboat_testkit::backup_volume(&repo, &src);
    assert_eq!(part.unreadable.len(), 1, "{:?}", part.unreadable);
    assert!(
        part.unreadable[0].contains("locked"),
        "{:?}",
        part.unreadable
    );
}

#[test]
fn restore_of_a_corrupted_pack_names_the_files_and_never_panics() {
    let (dir, repo, src) = repo_and_source();
    for i in 0..6 {
        std::fs::write(src.join(format!("f{i}")), random_bytes(3 << 20, 10 + i)).unwrap();
    }
    let part = lifeboat_testkit::backup_volume(&repo, &src);
    lifeboat_testkit::corrupt_largest_pack(&dir.path().join("repo"), 0.33);

    let target = dir.path().join("out");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        repo.restore_dir(&part.snapshot_id, "/volumes/v", &target)
    }));
    let err = result.expect("no panic escapes").unwrap_err();
    let RepoError::RestoreIncomplete { files, .. } = &err else {
        panic!("{err}")
    };
    assert!(
        !files.is_empty() && files.len() < 6,
        "some, not all, files are damaged: {files:?}"
    );
    // Every file not reported as damaged is byte-identical.
    for i in 0..6 {
        let name = format!("f{i}");
        if !files.iter().any(|f| f.ends_with(&name)) {
            assert_eq!(
                std::fs::read(target.join(&name)).unwrap(),
                std::fs::read(src.join(&name)).unwrap()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn repository_calls_work_from_an_async_runtime_via_blocking_threads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let ids = tokio::task::spawn_blocking(move || {
        let repo = new_repo(&path);
        let src = path.join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("a"), "a").unwrap();
        let req = DirBackup {
            source: &src,
            as_path: "/volumes/a",
            tags: &[],
            description: None,
            exclude: &[],
            pace: None,
        };
        repo.backup_dir(&req).unwrap();
        repo.snapshots(&[]).unwrap().len()
    })
    .await
    .unwrap();
    assert_eq!(ids, 1);
}

/// A new repository at `DIR/repo` and an empty source directory `DIR/src`.
fn repo_and_source() -> (tempfile::TempDir, RusticRepository, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path());
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    (dir, repo, src)
}

/// Every pack file under `data` (`data/XX/ID`) with its size.
fn files_under(data: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for sub in std::fs::read_dir(data).unwrap() {
        for f in std::fs::read_dir(sub.unwrap().path()).unwrap() {
            let f = f.unwrap();
            out.push((f.path().display().to_string(), f.metadata().unwrap().len()));
        }
    }
    out.sort();
    out
}

#[test]
fn a_prune_refuses_an_index_file_it_cannot_read_and_deletes_nothing() {
    let (dir, repo, src) = repo_and_source();
    std::fs::write(src.join("old"), random_bytes(2 << 20, 30)).unwrap();
    let first = lifeboat_testkit::backup_volume(&repo, &src);
    let index = dir.path().join("repo/index");
    let before: Vec<_> = std::fs::read_dir(&index)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    std::fs::remove_file(src.join("old")).unwrap();
    std::fs::write(src.join("new"), random_bytes(2 << 20, 31)).unwrap();
    lifeboat_testkit::backup_volume(&repo, &src);
    // The first backup's data becomes unused; the second's index file is damaged, so a prune
    // planning from the index it can read would take the second's packs for unused too.
    repo.delete(&[first.snapshot_id]).unwrap();
    let damaged = std::fs::read_dir(&index)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| !before.contains(p))
        .unwrap();
    lifeboat_testkit::flip_byte(&damaged, 0.5);
    let data = dir.path().join("repo/data");
    let kept = files_under(&data);
    let err = repo.prune().unwrap_err();
    assert!(err.to_string().contains("Index"), "{err}");
    assert_eq!(files_under(&data), kept, "a pack was deleted");
}

#[test]
fn a_damaged_snapshot_file_is_left_out_of_listings_and_stops_every_deletion() {
    let (dir, repo, src) = repo_and_source();
    std::fs::write(src.join("a"), random_bytes(1 << 20, 40)).unwrap();
    let kept = lifeboat_testkit::backup_volume(&repo, &src);
    std::fs::write(src.join("b"), random_bytes(1 << 20, 41)).unwrap();
    let hit = lifeboat_testkit::backup_volume(&repo, &src);
    lifeboat_testkit::flip_byte(
        &dir.path().join("repo/snapshots").join(&hit.snapshot_id),
        0.5,
    );

    let listed: Vec<String> = repo
        .snapshots(&[])
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed, std::slice::from_ref(&kept.snapshot_id));
    assert_eq!(
        repo.unreadable_snapshots().unwrap(),
        std::slice::from_ref(&hit.snapshot_id)
    );
    let data = dir.path().join("repo/data");
    let packs = files_under(&data);
    // A prune would take the damaged snapshot's data for unused: refused, nothing deleted.
    let err = repo.prune().unwrap_err();
    assert!(
        matches!(err, RepoError::UnreadableSnapshots { .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&hit.snapshot_id), "{err}");
    let err = repo
        .delete(std::slice::from_ref(&kept.snapshot_id))
        .unwrap_err();
    assert!(
        matches!(err, RepoError::UnreadableSnapshots { .. }),
        "{err}"
    );
    assert_eq!(files_under(&data), packs);
    assert_eq!(repo.snapshots(&[]).unwrap().len(), 1);
    let report = repo.check(false).unwrap();
    assert!(
        report.errors.iter().any(|e| e.contains(&hit.snapshot_id)),
        "{:?}",
        report.errors
    );
}

#[test]
fn the_parts_of_a_run_share_one_index_load_and_still_dedup_against_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path());
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for d in [&a, &b] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("same.bin"), random_bytes(3 << 20, 11)).unwrap();
    }
    // The second part stores nothing new: the first part's blobs reached the index it uses.
    assert!(lifeboat_testkit::backup_volume(&repo, &a).added_bytes > 3 << 20);
    let second = lifeboat_testkit::backup_volume(&repo, &b);
    assert!(second.added_bytes < 64 << 10, "stored again: {second:?}");
    // A part that stored nothing (not even a tree) leaves the index loaded for the next
    // one: with the index files gone from the disk, the part after it still finds every blob.
    // (The first repeat may store a tree: reading the directory set its access time.)
    lifeboat_testkit::backup_volume(&repo, &a);
    assert_eq!(lifeboat_testkit::backup_volume(&repo, &a).added_bytes, 0);
    let index = Path::new(&dir.path().join("repo")).join("index");
    for f in std::fs::read_dir(&index).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let fourth = lifeboat_testkit::backup_volume(&repo, &a);
    assert_eq!(fourth.added_bytes, 0, "loaded again: {fourth:?}");
    // A fresh handle loads the index anew (and now misses those blobs).
    let loc = RepoLocation(dir.path().join("repo").display().to_string());
    let fresh = RusticRepository::open(&loc, "test-password", None).unwrap();
    assert!(lifeboat_testkit::backup_volume(&fresh, &a).added_bytes > 3 << 20);
}

/// Snapshot files never change (a file's name is the hash of its content): a process lists
/// the directory and reads only the files it has not read before, and forgets those gone.
#[test]
fn a_listing_reads_only_the_snapshot_files_it_has_not_read_before() {
    let (dir, repo, src) = repo_and_source();
    std::fs::write(src.join("a"), random_bytes(1 << 16, 50)).unwrap();
    let first = lifeboat_testkit::backup_volume(&repo, &src);
    assert_eq!(repo.snapshots(&[]).unwrap().len(), 1);
    // Damaged after this process read it: the listing keeps what it read...
    lifeboat_testkit::flip_byte(
        &dir.path().join("repo/snapshots").join(&first.snapshot_id),
        0.5,
    );
    let listed = repo.snapshots(&[]).unwrap();
    assert_eq!(listed.len(), 1, "the kept file was read again");
    assert_eq!(listed[0].id, first.snapshot_id);
    // ...while the check before a prune reads every file again, and refuses.
    assert_eq!(
        repo.unreadable_snapshots().unwrap(),
        std::slice::from_ref(&first.snapshot_id)
    );
    let err = repo.prune().unwrap_err();
    assert!(
        matches!(err, RepoError::UnreadableSnapshots { .. }),
        "{err}"
    );

    // Another handle (as another process would) adds one and deletes it: both are seen.
    let loc = RepoLocation(dir.path().join("repo").display().to_string());
    let other = RusticRepository::open(&loc, "test-password", None).unwrap();
    std::fs::write(src.join("b"), random_bytes(1 << 16, 51)).unwrap();
    let second = lifeboat_testkit::backup_volume(&other, &src);
    let ids = |r: &RusticRepository| -> Vec<String> {
        r.snapshots(&[])
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect()
    };
    assert_eq!(
        ids(&repo),
        [first.snapshot_id.clone(), second.snapshot_id.clone()]
    );
    other
        .delete(std::slice::from_ref(&second.snapshot_id))
        .unwrap();
    assert_eq!(ids(&repo), std::slice::from_ref(&first.snapshot_id));
}

/// The parent of a backup is the newest snapshot of the same path (and host), found in the
/// kept listing: restic reads the same parent link.
#[test]
fn a_backup_takes_the_newest_snapshot_of_its_path_as_parent() {
    let (dir, repo, src) = repo_and_source();
    std::fs::write(src.join("a"), random_bytes(1 << 16, 60)).unwrap();
    let first = lifeboat_testkit::backup_volume(&repo, &src);
    let other_path = repo
        .backup_dir(&DirBackup {
            source: &src,
            as_path: "/volumes/w",
            tags: &[],
            description: None,
            exclude: &[],
            pace: None,
        })
        .unwrap();
    let second = lifeboat_testkit::backup_volume(&repo, &src);
    let parents = parents_per_restic(dir.path());
    assert_eq!(parents[&first.snapshot_id], None);
    assert_eq!(parents[&other_path.snapshot_id], None);
    assert_eq!(parents[&second.snapshot_id], Some(first.snapshot_id));
}

/// Index files never change either: loading the index again reads only the files added
/// since, and forgets those gone (a daemon loads it for every part of every backup).
#[test]
fn an_index_load_reads_only_the_index_files_it_has_not_read_before() {
    let (dir, repo, src) = repo_and_source();
    std::fs::write(src.join("a"), random_bytes(2 << 20, 70)).unwrap();
    lifeboat_testkit::backup_volume(&repo, &src);
    // The next backup loads the index, with the file the first one wrote.
    lifeboat_testkit::backup_volume(&repo, &src);
    let loc = RepoLocation(dir.path().join("repo").display().to_string());
    let index = dir.path().join("repo/index");
    let files = |d: &Path| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(d)
            .unwrap()
            .map(|f| f.unwrap().path())
            .collect()
    };
    // Damaged after this process read it: a new handle's backup still finds every blob in
    // what was read before, and stores nothing again...
    for f in files(&index) {
        lifeboat_testkit::flip_byte(&f, 0.5);
    }
    let again = RusticRepository::open(&loc, "test-password", None).unwrap();
    let second = lifeboat_testkit::backup_volume(&again, &src);
    assert!(second.added_bytes < 64 << 10, "stored again: {second:?}");
    // ...while a check reads every index file and finds the damage.
    assert!(!again.check(false).unwrap().errors.is_empty());
    // An index file gone is forgotten: a new handle no longer knows its blobs.
    for f in files(&index) {
        std::fs::remove_file(f).unwrap();
    }
    let fresh = RusticRepository::open(&loc, "test-password", None).unwrap();
    assert!(lifeboat_testkit::backup_volume(&fresh, &src).added_bytes > 2 << 20);
}

/// Several containers back up the same path (their writable layers, `/layer`): a backup's
/// parent is the newest of those sharing the most tags with it (its own container's), not
/// another container's newer one, whose files would all be read again.
#[test]
fn a_backup_takes_its_parent_from_the_snapshots_sharing_most_of_its_tags() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path());
    let layer = |name: &str| {
        let src = dir.path().join(name);
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("f"), name).unwrap();
        let tags = vec!["lifeboat".to_string(), format!("container={name}")];
        repo.backup_dir(&DirBackup {
            source: &src,
            as_path: "/layer",
            tags: &tags,
            description: None,
            exclude: &[],
            pace: None,
        })
        .unwrap()
        .snapshot_id
    };
    let (a1, b1, a2) = (layer("a"), layer("b"), layer("a"));
    let parents = parents_per_restic(dir.path());
    assert_eq!(parents[&b1], Some(a1.clone()), "the only one of its path");
    assert_eq!(parents[&a2], Some(a1));
}

/// Each snapshot of the repository at `DIR/repo` with its parent, as restic reads them.
fn parents_per_restic(dir: &Path) -> std::collections::BTreeMap<String, Option<String>> {
    let listed = lifeboat_testkit::restic(
        dir.join("repo").to_str().unwrap(),
        "test-password",
        &["snapshots", "--json"],
    );
    let snaps: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    snaps
        .iter()
        .map(|s| {
            let id = s["id"].as_str().unwrap_or_default().to_string();
            (id, s["parent"].as_str().map(str::to_string))
        })
        .collect()
}
