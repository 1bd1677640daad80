//! Formats kept forever: repositories committed with the tests, made once (by
//! `make_the_fixture_repositories`, run with `--ignored`) by Lifeboat 0.1.0 with manifest
//! schema 3 and by restic 0.14 alone. Every later build must open, check and restore them
//! identical; restic must read Lifeboat's; a restic-only repository gets a clear answer.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// The password of every fixture repository (they hold nothing secret).
const PASSWORD: &str = "lifeboat fixture repository";
/// The container and volume the Lifeboat fixture backed up, and the host it was filed under.
const CONTAINER: &str = "lifeboat-fixture";
const VOLUME: &str = "lifeboat-fixture-data";
const HOST: &str = "fixture-host";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/repositories")
}

/// The tree every fixture holds: text, pseudo-random binary, an empty file, nested and empty
/// directories, a symlink, a private file and a non-ASCII name, with fixed times.
fn fixture_tree(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir.join("nested/deeper")).unwrap();
    std::fs::create_dir_all(dir.join("empty-dir")).unwrap();
    std::fs::write(dir.join("hello.txt"), "hello, later builds\n").unwrap();
    let random = PseudoRandom::new(1).bytes(96 * 1024);
    std::fs::write(dir.join("nested/random.bin"), random).unwrap();
    std::fs::write(dir.join("nested/deeper/empty"), "").unwrap();
    std::fs::write(dir.join("nested/deeper/naïve – ünïcode.txt"), "ü\n").unwrap();
    std::fs::write(dir.join("private.key"), "not a real key\n").unwrap();
    std::fs::set_permissions(
        dir.join("private.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::os::unix::fs::symlink("nested/random.bin", dir.join("link")).unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg("find . -exec touch -h -d '2026-01-01 00:00:00Z' {} +")
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success());
}

fn lifeboat(state: &Path, repo: &Path, args: &[&str]) -> Run {
    let pw = state.join("password");
    std::fs::write(&pw, PASSWORD).unwrap();
    Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .env("LIFEBOAT_STATE_DIR", state)
        .env_remove("LIFEBOAT_PASSWORD")
        .arg("--repo")
        .arg(repo)
        .arg("--password-file")
        .arg(&pw)
        .args(["--host", HOST])
        .args(args)
        .output()
        .unwrap()
        .into()
}

fn restic(repo: &Path, args: &[&str]) -> Run {
    Command::new("restic")
        .arg("-r")
        .arg(repo)
        .env("RESTIC_PASSWORD", PASSWORD)
        .arg("--no-cache")
        .args(args)
        .output()
        .expect("restic installed")
        .into()
}

/// A working copy of a committed fixture (commands write locks; the committed one stays as
/// it was made).
fn working_copy(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join(name);
    copy_tree(&fixtures().join(name), &repo);
    // git keeps no empty directory: the layout's are made again.
    for d in ["locks", "keys", "snapshots", "index"] {
        std::fs::create_dir_all(repo.join(d)).unwrap();
    }
    for i in 0..=255u8 {
        std::fs::create_dir_all(repo.join(format!("data/{i:02x}"))).unwrap();
    }
    (tmp, repo)
}

#[test]
#[ignore = "makes the committed fixtures; run once with --ignored when a format changes"]
fn make_the_fixture_repositories() {
    let out = fixtures();
    assert!(!out.exists(), "{} exists: remove it first", out.display());
    std::fs::create_dir_all(&out).unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut c = Cleanup::default();
    ensure_busybox_image();
    docker(&["volume", "create", VOLUME]);
    c.volumes.push(VOLUME.into());
    fixture_tree(&volume_path(VOLUME));
    run_sleeper(&mut c, CONTAINER, &["-v", &format!("{VOLUME}:/data")]);
    let repo = out.join("lifeboat-0.1.0-schema-3");
    lifeboat(state.path(), &repo, &["init"]).ok();
    lifeboat(state.path(), &repo, &["backup", CONTAINER]).ok();
    std::fs::remove_dir_all(repo.join("locks")).ok();
    std::fs::create_dir_all(repo.join("locks")).unwrap();

    let plain = state.path().join("plain");
    fixture_tree(&plain);
    let restic_repo = out.join("restic-0.14-only");
    restic(&restic_repo, &["init"]).ok();
    let r = Command::new("restic")
        .arg("-r")
        .arg(&restic_repo)
        .env("RESTIC_PASSWORD", PASSWORD)
        .args(["--no-cache", "backup", "."])
        .current_dir(&plain)
        .output()
        .unwrap();
    assert!(r.status.success());
}

#[test]
fn a_repository_made_by_lifeboat_0_1_0_opens_checks_and_restores_identical() {
    let (_tmp, repo) = working_copy("lifeboat-0.1.0-schema-3");
    let state = tempfile::tempdir().unwrap();
    let mut c = Cleanup::default();
    ensure_busybox_image();
    lifeboat(state.path(), &repo, &["check", "--read-data"]).ok();
    let listed = lifeboat(state.path(), &repo, &["snapshots", CONTAINER, "--json"])
        .ok()
        .json();
    let backup = &listed.as_array().unwrap()[0];
    assert_eq!(backup["schema_version"], 3, "{backup}");
    assert_eq!(backup["host"], HOST, "{backup}");
    let copy = unique("fixture-copy");
    c.containers.push(copy.clone());
    c.volumes.push(format!("{copy}_{VOLUME}"));
    lifeboat(state.path(), &repo, &["restore", CONTAINER, "--as", &copy]).ok();
    let expected = tempfile::tempdir().unwrap();
    fixture_tree(expected.path());
    assert_same_tree(expected.path(), &volume_path(&format!("{copy}_{VOLUME}")));
    // restic reads it too.
    restic(&repo, &["check", "--read-data"]).ok();
    let snapshots = restic(&repo, &["snapshots", "--json"]).ok().stdout;
    assert!(snapshots.contains("lifeboat"), "{snapshots}");
}

#[test]
fn a_repository_restic_made_alone_is_answered_no_lifeboat_backups_here() {
    let (_tmp, repo) = working_copy("restic-0.14-only");
    let state = tempfile::tempdir().unwrap();
    lifeboat(state.path(), &repo, &["check", "--read-data"]).ok();
    let listed = lifeboat(state.path(), &repo, &["snapshots"]).ok().stdout;
    assert!(
        listed.contains("no Lifeboat backups here") && listed.contains("1 snapshot another tool"),
        "{listed}"
    );
    let r = lifeboat(state.path(), &repo, &["restore", "web"]);
    assert_eq!(r.code, 15, "{}", r.stderr);
    assert!(
        r.stderr.contains("no Lifeboat backups here"),
        "{}",
        r.stderr
    );
}
