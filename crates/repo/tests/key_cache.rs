//! A process derives a repository's key from its password once (a daemon opens the
//! repository for every job), and a kept key never outlives the key file it came from.

use std::path::Path;

use lifeboat_repo::{RepoError, RepoLocation, RusticRepository};

fn key_file(repo: &Path, id: &str) -> std::path::PathBuf {
    repo.join("keys").join(id)
}

/// A new repository in `dir` with `password`, opened again, and the id of its key.
fn opened(dir: &Path, password: &str) -> (RepoLocation, RusticRepository, String) {
    let loc = RepoLocation(dir.join("repo").display().to_string());
    RusticRepository::init(&loc, password, None).unwrap();
    let repo = RusticRepository::open(&loc, password, None).unwrap();
    let id = repo
        .keys()
        .unwrap()
        .into_iter()
        .find(|k| k.current)
        .unwrap()
        .id;
    (loc, repo, id)
}

#[test]
fn a_second_open_in_the_same_process_does_not_derive_the_key_again() {
    let dir = tempfile::tempdir().unwrap();
    let (loc, _repo, id) = opened(dir.path(), "first-password");
    // Another password is not taken for it.
    assert!(matches!(
        RusticRepository::open(&loc, "other-password", None),
        Err(RepoError::WrongPassword { .. })
    ));
    // The key file can no longer give the key: only the key this process derived opens it.
    std::fs::write(key_file(Path::new(&loc.0), &id), b"{}").unwrap();
    let again = RusticRepository::open(&loc, "first-password", None)
        .expect("the derived key is kept for the process");
    let current: Vec<_> = again
        .keys()
        .unwrap()
        .into_iter()
        .filter(|k| k.current)
        .collect();
    assert_eq!(current.len(), 1, "the key in use is still known");
    assert_eq!(current[0].id, id);
    // Without the kept key it would not open: the other password now fails on that file.
    assert!(RusticRepository::open(&loc, "other-password", None).is_err());
}

#[test]
fn a_removed_key_stops_opening_the_repository_in_the_process_that_derived_it() {
    let dir = tempfile::tempdir().unwrap();
    let (loc, old, old_id) = opened(dir.path(), "old-password");
    old.add_key("new-password").unwrap();
    let new = RusticRepository::open(&loc, "new-password", None).unwrap();
    new.remove_key(&old_id).unwrap();
    assert!(!key_file(Path::new(&loc.0), &old_id).exists());
    assert!(matches!(
        RusticRepository::open(&loc, "old-password", None),
        Err(RepoError::WrongPassword { .. })
    ));
    RusticRepository::open(&loc, "new-password", None).unwrap();
}

#[test]
fn a_new_key_is_derived_in_32_mib_with_the_work_of_upstreams() {
    let dir = tempfile::tempdir().unwrap();
    let loc = RepoLocation(dir.path().join("repo").display().to_string());
    let repo = RusticRepository::init(&loc, "a-password", None).unwrap();
    repo.add_key("another-password").unwrap();
    let keys: Vec<_> = std::fs::read_dir(Path::new(&loc.0).join("keys"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(keys.len(), 2);
    for key in keys {
        let key: serde_json::Value = serde_json::from_slice(&key).unwrap();
        // scrypt's memory is 128 * N * r bytes: 32 MiB; its work N * r * p, as 2^17 * 8 * 1.
        assert_eq!(
            (
                key["kdf"].as_str(),
                key["N"].as_u64(),
                key["r"].as_u64(),
                key["p"].as_u64()
            ),
            (Some("scrypt"), Some(1 << 15), Some(8), Some(4)),
            "{key}"
        );
    }
    RusticRepository::open(&loc, "another-password", None).unwrap();
}
