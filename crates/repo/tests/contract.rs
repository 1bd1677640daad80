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
