//! The repository behaviour suite, against the real engine and the in-memory stand-in: both
//! must behave the same for the stand-in to be trusted in unit tests.

use lifeboat_repo::{RepoLocation, RusticRepository};
use lifeboat_testkit::MemoryRepository;

#[test]
fn the_real_repository_passes_the_repository_contract() {
    let dir = tempfile::tempdir().unwrap();
    let loc = RepoLocation(dir.path().join("repo").display().to_string());
    let repo = RusticRepository::init(&loc, "pw", None).unwrap();
    lifeboat_testkit::contract::repository(&repo, dir.path());
}

#[test]
fn the_in_memory_repository_passes_the_same_contract() {
    let dir = tempfile::tempdir().unwrap();
    lifeboat_testkit::contract::repository(&MemoryRepository::new(), dir.path());
}

/// A produced file announces no size: the engine records the bytes it read, and restic
/// restores the file whole (its restore sizes files by the recorded size).
#[test]
fn restic_restores_a_produced_file_whole_with_the_size_recorded_from_its_bytes() {
    use lifeboat_repo::{EntryMeta, FileProducer, Repository, TreeBackup};
    struct Bytes(Vec<u8>);
    impl FileProducer for Bytes {
        fn start(&mut self) -> Result<Box<dyn std::io::Read + Send>, String> {
            Ok(Box::new(std::io::Cursor::new(std::mem::take(&mut self.0))))
        }
        fn finish(&mut self) -> Result<(), String> {
            Ok(())
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let loc = RepoLocation(dir.path().join("repo").display().to_string());
    let repo = RusticRepository::init(&loc, "pw", None).unwrap();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let meta = EntryMeta {
        uid: 0,
        gid: 0,
        mode: 0o640,
        mtime: None,
    };
    let tags = vec!["lifeboat".to_string()];
    let part = repo
        .backup_tree(TreeBackup {
            as_path: "/sqlite/volumes/v",
            tags: &tags,
            root: EntryMeta {
                mode: 0o755,
                ..meta
            },
            dirs: Vec::new(),
            files: vec![("app.db".into(), meta, Box::new(Bytes(data.clone())))],
        })
        .unwrap();
    let restic = |args: &[&str]| lifeboat_testkit::restic(&loc.0, "pw", args);
    let listed = restic(&[
        "ls",
        "--json",
        &part.snapshot_id,
        "/sqlite/volumes/v/app.db",
    ]);
    assert!(
        listed.contains(&format!("\"size\":{}", data.len())),
        "{listed}"
    );
    let target = dir.path().join("restored");
    restic(&[
        "restore",
        &part.snapshot_id,
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(target.join("sqlite/volumes/v/app.db")).unwrap(),
        data
    );
}
