//! The prune gate is keyed by the repository's own id: every spelling of one repository's
//! location (relative, absolute, through a symlink) and every build share one gate.

use lifeboat_consistency::RepoGate;
use lifeboat_repo::{RepoLocation, Repository, RusticRepository};

#[test]
fn two_spellings_of_one_repository_share_one_prune_gate() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("repo");
    let loc = RepoLocation(real.display().to_string());
    let a = RusticRepository::init(&loc, "pw", None).unwrap();
    let link = dir.path().join("link-to-repo");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let via_link =
        RusticRepository::open(&RepoLocation(link.display().to_string()), "pw", None).unwrap();
    std::env::set_current_dir(dir.path()).unwrap();
    let relative = RusticRepository::open(&RepoLocation("./repo".into()), "pw", None).unwrap();
    assert_ne!(a.location(), via_link.location());
    assert_eq!(a.id(), via_link.id());
    assert_eq!(a.id(), relative.id());

    let state = dir.path().join("state");
    let _g1 = RepoGate::shared(&state, a.id()).unwrap();
    let _g2 = RepoGate::shared(&state, via_link.id()).unwrap();
    let _g3 = RepoGate::shared(&state, relative.id()).unwrap();
    let gates: Vec<_> = std::fs::read_dir(state.join("locks"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(gates.len(), 1, "one gate for one repository: {gates:?}");
    assert!(
        gates[0].to_string_lossy().contains(&a.id()[..16]),
        "named by the id: {gates:?}"
    );
}
