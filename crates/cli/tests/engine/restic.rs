//! No lock-in: the restic CLI reads a Lifeboat repository.

use crate::common::*;

#[test]
fn restic_lists_and_restores_a_lifeboat_volume() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("restic"), unique("restic-vol"));
    let path = new_volume(&mut c, &vol);
    write_corpus(&path);
    run_sleeper(&mut c, &name, &["-v", &format!("{vol}:/data")]);
    let out = lb.run(&["backup", &name, "--json"]).ok().json();
    let part = out["backups"][0]["parts"][0]["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();

    let listed = lb.restic(&["snapshots", "--json"]).ok();
    assert!(
        listed.stdout.contains(&part),
        "restic lists the part: {}",
        listed.stdout
    );
    let target = tempfile::tempdir().unwrap();
    // restic 0.14 cannot restore holes (no --sparse yet): compare everything else.
    lb.restic(&[
        "restore",
        &part,
        "--target",
        target.path().to_str().unwrap(),
    ])
    .ok();
    let diffs = compare_trees_ignoring_sparseness(&path, &target.path().join("volumes").join(&vol));
    assert!(
        diffs.is_empty(),
        "restic's restore differs:\n{}",
        diffs.join("\n")
    );
    lb.restic(&["check", "--read-data"]).ok();
}
