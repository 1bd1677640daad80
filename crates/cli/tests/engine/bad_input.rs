//! Bad input gets a clear error, a distinct exit code, and loses nothing.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

fn random_file(path: &Path, mib: usize) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "head -c {}M /dev/urandom > '{}'",
            mib,
            path.display()
        ))
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
fn unreachable_engine_exits_13_and_names_the_engine() {
    let lb = Lb::new();
    let out = lb
        .command()
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .args(["backup", "anything"])
        .output()
        .unwrap();
    let out = Run::from(out);
    assert_eq!(out.code, 13, "{}", out.stderr);
    assert!(out.stderr.contains("Docker engine"), "{}", out.stderr);
}

#[test]
fn unknown_container_exits_15() {
    let lb = Lb::new();
    let out = lb.run(&["backup", "lbt-no-such-container"]);
    assert_eq!(out.code, 15, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("no container named `lbt-no-such-container`"),
        "{}",
        out.stderr
    );
    let out = lb.run(&["restore", "lbt-no-such-container"]);
    assert_eq!(out.code, 15, "{}", out.stderr);
}

#[test]
fn wrong_password_exits_12_without_a_crash_trace() {
    let lb = Lb::new();
    let out = lb.run_env(&[("LIFEBOAT_PASSWORD", "wrong")], &["snapshots"]);
    assert_eq!(out.code, 12, "{}", out.stderr);
    assert!(out.stderr.contains("wrong password"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("panicked") && !out.stderr.contains("backtrace"),
        "{}",
        out.stderr
    );
}

#[test]
fn missing_repository_exits_10_and_says_to_init() {
    let lb = Lb::uninitialised();
    let out = lb.run_env(&[("LIFEBOAT_PASSWORD", "x")], &["snapshots"]);
    assert_eq!(out.code, 10, "{}", out.stderr);
    assert!(out.stderr.contains("lifeboat init"), "{}", out.stderr);
}

#[test]
fn init_refuses_an_existing_repository_and_key_file_is_private() {
    let lb = Lb::new();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(lb.key_file())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let out = lb.run(&["init"]);
    assert_eq!(out.code, 14, "{}", out.stderr);
}

#[test]
fn corrupted_pack_is_found_by_check_and_restore_fails_loudly() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("corrupt"), unique("corrupt-vol"));
    let path = new_volume(&mut c, &vol);
    random_file(&path.join("blob.bin"), 3);
    run_sleeper(&mut c, &name, &["-v", &format!("{vol}:/data")]);
    lb.run(&["backup", &name]).ok();
    lb.run(&["check", "--read-data"]).ok();

    let largest = corrupt_largest_pack(&lb.repo(), 0.5);

    let check = lb.run(&["check", "--read-data"]);
    assert_eq!(check.code, 5, "{}\n{}", check.stdout, check.stderr);
    let pack = largest.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        check.stdout.contains(&pack[..8]),
        "names the pack {pack}: {}",
        check.stdout
    );

    let (copy, out) = lb.restore_copy(&mut c, &name, &vol);
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert!(
        out.stderr.contains("blob.bin"),
        "names the damaged file: {}",
        out.stderr
    );
    assert!(
        !docker_ok(&["inspect", &copy]),
        "no container created from damaged data"
    );
}

/// Two running services, `kept` and `hit`, each with 1 MiB of random data in its own volume:
/// their names, volumes and the volumes' host paths.
fn kept_and_hit(c: &mut Cleanup, prefix: &str) -> Vec<(String, String, std::path::PathBuf)> {
    ["kept", "hit"]
        .iter()
        .map(|n| {
            let name = unique(&format!("{prefix}-{n}"));
            let vol = unique(&format!("{prefix}-{n}-vol"));
            let path = new_volume(c, &vol);
            random_file(&path.join("blob.bin"), 1);
            run_sleeper(c, &name, &["-v", &format!("{vol}:/data")]);
            (name, vol, path)
        })
        .collect()
}

#[test]
fn a_damaged_index_fails_only_the_backups_it_indexes_and_check_names_it() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let index_files = || -> std::collections::BTreeSet<std::path::PathBuf> {
        std::fs::read_dir(lb.repo().join("index"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    };
    let services = kept_and_hit(&mut c, "index");
    lb.run(&["backup", &services[0].0]).ok();
    let before = index_files();
    lb.run(&["backup", &services[1].0]).ok();
    // Every index file the second backup wrote gets one byte flipped.
    let damaged: Vec<_> = index_files().difference(&before).cloned().collect();
    assert!(!damaged.is_empty());
    for f in &damaged {
        flip_byte(f, 0.5);
    }

    let check = lb.run(&["check", "--read-data"]);
    assert_ne!(check.code, 0, "{}", check.stdout);
    let said = format!("{}{}", check.stdout, check.stderr);
    assert!(
        damaged
            .iter()
            .any(|f| said.contains(&f.file_name().unwrap().to_string_lossy()[..8])),
        "check names a damaged index file: {said}"
    );
    // The backup the damaged files index fails loudly and creates nothing...
    let (name, vol, _) = &services[1];
    let (copy, out) = lb.restore_copy(&mut c, name, vol);
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(
        !docker_ok(&["inspect", &copy]),
        "no container from damaged data"
    );
    // ...and the other still restores identical.
    let (name, vol, path) = &services[0];
    let (copy, out) = lb.restore_copy(&mut c, name, vol);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_same_tree(path, &volume_path(&format!("{copy}_{vol}")));
    // The repair: restic's rebuild-index (0.14) indexes the packs again; then check is
    // clean and the damaged backup restores identical too.
    let repair = lb.restic(&["rebuild-index"]);
    assert_eq!(repair.code, 0, "{}", repair.stderr);
    lb.run(&["check", "--read-data"]).ok();
    let (name, vol, path) = &services[1];
    let (copy, out) = lb.restore_copy(&mut c, name, vol);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_same_tree(path, &volume_path(&format!("{copy}_{vol}")));
}

#[test]
fn a_damaged_manifest_hides_only_its_backup_and_nothing_is_deleted_until_it_is_mended() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let services = kept_and_hit(&mut c, "manifest");
    for (name, ..) in &services {
        lb.run(&["backup", name]).ok();
    }
    let snapshot_files = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(lb.repo().join("snapshots"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        v.sort();
        v
    };
    let hit = &services[1];
    let manifest = lb.backups(&hit.0)[0]["snapshot"]
        .as_str()
        .unwrap()
        .to_string();
    let file = lb.repo().join("snapshots").join(&manifest);
    assert!(file.exists(), "{manifest} is a snapshot file");
    flip_byte(&file, 0.5);
    let before = snapshot_files();

    // Listed: every other backup, and a warning naming the damaged file.
    let listed = lb.run(&["snapshots", "--json"]).ok();
    let names: Vec<_> = listed
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["container"].clone())
        .collect();
    assert_eq!(names, [services[0].0.as_str()], "{}", listed.stdout);
    assert!(
        listed.stderr.contains("cannot be read") && listed.stderr.contains(&manifest),
        "{}",
        listed.stderr
    );
    let check = lb.run(&["check"]);
    assert_eq!(check.code, 5, "{}{}", check.stdout, check.stderr);
    assert!(check.stdout.contains(&manifest), "{}", check.stdout);
    // The other service restores identical.
    let (name, vol, path) = &services[0];
    let (copy, out) = lb.restore_copy(&mut c, name, vol);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_same_tree(path, &volume_path(&format!("{copy}_{vol}")));
    // A new backup of the damaged one works, and leaves the parts the damaged manifest
    // named (they look orphaned) in place.
    lb.run(&["backup", &hit.0]).ok();
    let after = snapshot_files();
    assert!(
        before.iter().all(|f| after.contains(f)),
        "a snapshot was deleted"
    );
    assert!(after.len() > before.len());
    // Mended by removing the damaged file: check is clean, and the next backup cleans up.
    std::fs::remove_file(&file).unwrap();
    lb.run(&["check"]).ok();
    lb.run(&["backup", &hit.0]).ok();
    assert!(
        snapshot_files().len() < after.len() + 2,
        "the orphaned parts stayed"
    );
}

#[test]
fn full_destination_disk_fails_and_lists_no_snapshot() {
    let lb = Lb::uninitialised();
    let mnt = lb.state.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let _mount = TmpfsMount::new(&mnt, "6m");
    ensure_busybox_image();
    let repo = mnt.join("repo");
    let run = |args: &[&str]| -> Run {
        lb.command()
            .env("LIFEBOAT_REPOSITORY", &repo)
            .env("LIFEBOAT_PASSWORD", "pw")
            .args(args)
            .output()
            .unwrap()
            .into()
    };
    run(&["init"]).ok();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("full"), unique("full-vol"));
    let path = new_volume(&mut c, &vol);
    random_file(&path.join("big.bin"), 20);
    run_sleeper(&mut c, &name, &["-v", &format!("{vol}:/data")]);
    let out = run(&["backup", &name]);
    assert_ne!(
        out.code, 0,
        "backup to a full disk must fail: {}",
        out.stdout
    );
    assert!(
        out.stderr.to_lowercase().contains("space"),
        "says the disk is full: {}",
        out.stderr
    );
    let list = run(&["snapshots", "--json"]).ok().json();
    assert_eq!(
        list.as_array().unwrap().len(),
        0,
        "no snapshot listed: {list}"
    );
    assert_eq!(
        inspect(&name, "{{.State.Running}}"),
        "true",
        "container untouched"
    );
}

/// Starts a backup of `name` in the background and waits until it holds its lock (it has
/// started reading data).
fn start_backup(lb: &Lb, name: &str) -> std::process::Child {
    let child = lb.command().args(["backup", name]).spawn().unwrap();
    let lock = lb.state.path().join("locks").join(format!("{name}.lock"));
    let t0 = Instant::now();
    while !lock.exists() && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    child
}

fn big_volume_container(c: &mut Cleanup, prefix: &str) -> String {
    let (name, vol) = (unique(prefix), unique(&format!("{prefix}-vol")));
    let path = new_volume(c, &vol);
    for i in 0..4 {
        random_file(&path.join(format!("chunk{i}.bin")), 100);
    }
    run_sleeper(c, &name, &["-v", &format!("{vol}:/data")]);
    name
}

#[test]
fn container_removed_mid_backup_stores_nothing() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let name = big_volume_container(&mut c, "vanish");
    let child = start_backup(&lb, &name);
    docker(&["rm", "-f", &name]);
    let out = Run::from(child.wait_with_output().unwrap());
    assert_ne!(out.code, 0);
    assert!(lb.backups(&name).is_empty());
    let parts = lb.restic(&["snapshots", "--json"]).ok();
    assert_eq!(
        parts.stdout.trim(),
        "[]",
        "parts were deleted: {}",
        parts.stdout
    );
}

#[test]
fn kill_9_mid_backup_leaves_nothing_listed_and_the_next_backup_works() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let name = big_volume_container(&mut c, "kill9");
    let mut child = start_backup(&lb, &name);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(lb.backups(&name).is_empty(), "no partial backup listed");
    lb.run(&["check"]).ok();

    let out = lb.run(&["backup", &name]).ok();
    assert!(out.stdout.contains(&name));
    assert_eq!(lb.backups(&name).len(), 1);
    lb.run(&["check", "--read-data"]).ok();
    let snaps: serde_json::Value =
        serde_json::from_str(&lb.restic(&["snapshots", "--json"]).ok().stdout).unwrap();
    let committed_backup = lb.backups(&name)[0]["backup_id"]
        .as_str()
        .unwrap()
        .to_string();
    for s in snaps.as_array().unwrap() {
        assert!(
            s["tags"].to_string().contains(&committed_backup),
            "orphan left behind: {s}"
        );
    }
}

#[test]
fn unreadable_file_marks_the_backup_partial_with_exit_3() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("partial"), unique("partial-vol"));
    let path = new_volume(&mut c, &vol);
    std::fs::write(path.join("readable"), "fine").unwrap();
    std::fs::write(path.join("locked"), "cannot read me").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path.join("locked"), std::fs::Permissions::from_mode(0o000)).unwrap();
    run_sleeper(&mut c, &name, &["-v", &format!("{vol}:/data")]);
    // Root reads everything; without CAP_DAC_OVERRIDE the mode-000 file is unreadable.
    let out: Run = Command::new("setpriv")
        .args([
            "--inh-caps=-dac_override,-dac_read_search",
            "--bounding-set=-dac_override,-dac_read_search",
        ])
        .arg(env!("CARGO_BIN_EXE_lifeboat"))
        .args(["backup", &name, "--json"])
        .env("LIFEBOAT_STATE_DIR", lb.state.path())
        .output()
        .unwrap()
        .into();
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    let json = out.json();
    assert_eq!(json["backups"][0]["partial"], true);
    assert!(
        json["backups"][0]["problems"]
            .to_string()
            .contains("locked"),
        "{json}"
    );
    let listed = lb.backups(&name);
    assert_eq!(listed[0]["partial"], true, "the listing marks it partial");
    assert!(
        lb.run(&["snapshots", &name])
            .ok()
            .stdout
            .contains("PARTIAL")
    );
}
