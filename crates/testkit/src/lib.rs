//! Test fixtures shared by the integration tests: the real Docker engine and locally built
//! images, uniquely named containers and volumes that clean up after themselves, a metadata
//! corpus, and a tree comparison that checks everything a restore must keep.
//!
//! Fixtures use the `docker` CLI on purpose: they prove Lifeboat against the engine through a
//! second, independent client.

#![warn(missing_docs)]

pub mod contract;
mod corpus;
mod docker;
pub mod etcd;
mod fake_engine;
pub mod garage;
pub mod http;
mod memory_repo;
mod tree;

pub use corpus::{PseudoRandom, write_corpus};

/// Runs `scripts/NAME CMD DIR ARGS...` (the cluster scripts: garage, etcd); panics with
/// what it printed when it fails.
pub(crate) fn cluster_script(name: &str, dir: &std::path::Path, args: &[&str]) {
    // The crate cargo runs the tests of (a crate two levels below the workspace, like this
    // one), else this one as it was built: a build cache shared by checkouts in other
    // directories keeps the path of the checkout that built it.
    let crate_dir =
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    let script = std::path::PathBuf::from(crate_dir).join(format!("../../scripts/{name}"));
    let out = std::process::Command::new(&script)
        .arg(args[0])
        .arg(dir)
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("scripts/{name} runs: {e}"));
    assert!(
        out.status.success(),
        "scripts/{name} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
pub use docker::{
    BUSYBOX_IMAGE, Cleanup, docker, docker_ok, ensure_busybox_image, unique, volume_path,
};
pub use fake_engine::FakeEngine;
pub use memory_repo::MemoryRepository;
pub use tree::{
    Entry, compare_trees, compare_trees_ignoring_sparseness, diff as tree_diff, snapshot_tree,
};

/// Flips one byte in the largest pack file under `repo/data` (a bit-rot fixture) and returns
/// the pack's path.
pub fn corrupt_largest_pack(repo: &std::path::Path, offset_fraction: f64) -> std::path::PathBuf {
    let largest = walkdir::WalkDir::new(repo.join("data"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .max_by_key(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .expect("the repository has a pack")
        .into_path();
    flip_byte(&largest, offset_fraction);
    largest
}

/// Flips the bits of one byte of `file`, `offset_fraction` of the way in (bit rot).
pub fn flip_byte(file: &std::path::Path, offset_fraction: f64) {
    let mut bytes = std::fs::read(file).unwrap();
    let at = (bytes.len() as f64 * offset_fraction) as usize;
    bytes[at] ^= 0xff;
    std::fs::write(file, bytes).unwrap();
}

/// Runs restic (0.14, from `scripts/setup-engine`) on the repository at `repo` opened with
/// `password`; its standard output. Panics with restic's error when it fails.
pub fn restic(repo: &str, password: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("restic")
        .args(["-r", repo])
        .args(args)
        .env("RESTIC_PASSWORD", password)
        .output()
        .expect("restic is installed (scripts/setup-engine)");
    assert!(
        out.status.success(),
        "restic {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("restic prints UTF-8")
}

/// `src` backed up into `repo` as the volume part `/volumes/v` (no tags, nothing excluded).
pub fn backup_volume(
    repo: &dyn lifeboat_repo::Repository,
    src: &std::path::Path,
) -> lifeboat_repo::PartReport {
    repo.backup_dir(&lifeboat_repo::DirBackup {
        source: src,
        as_path: "/volumes/v",
        tags: &[],
        description: None,
        exclude: &[],
        pace: None,
    })
    .unwrap()
}
