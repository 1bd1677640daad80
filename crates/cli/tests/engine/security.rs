//! Security, end to end with the real binary, engine and containers: a restore never writes
//! outside its target, a container's files never lead Lifeboat to the host's, names are
//! checked at the boundary, and secrets stay out of everything Lifeboat prints or stores.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lifeboat_repo::craft::{CraftedEntry, CraftedKind};
use lifeboat_repo::{RepoLocation, Repository, RusticRepository, StreamBackup, StreamSource};
use lifeboat_testkit::http::{self, Receiver};

use crate::common::*;
use crate::daemon::{Daemon, TOKEN, managed};

/// A host directory outside every target, with files that must never change.
struct Sentinel {
    dir: PathBuf,
}

impl Sentinel {
    fn new(tag: &str) -> Sentinel {
        let dir = PathBuf::from(format!("/tmp/{}", unique(tag)));
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::write(dir.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").unwrap();
        std::fs::write(dir.join("secret"), b"HOST SECRET\n").unwrap();
        Sentinel { dir }
    }

    fn state(&self) -> impl PartialEq + std::fmt::Debug {
        snapshot_tree(&self.dir)
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn open_repo(lb: &Lb) -> RusticRepository {
    let password = std::fs::read_to_string(lb.key_file()).unwrap();
    let loc = RepoLocation(lb.repo().display().to_string());
    RusticRepository::open(&loc, password.trim(), None).unwrap()
}

/// A sleeper with volume `vol` on /data, backed up once; returns the backup's JSON row.
fn backed_up_sleeper(lb: &Lb, c: &mut Cleanup, name: &str, vol: &str) -> serde_json::Value {
    let path = new_volume(c, vol);
    std::fs::write(path.join("state"), "v1").unwrap();
    run_sleeper(c, name, &["-v", &format!("{vol}:/data")]);
    lb.run(&["backup", name]).ok();
    lb.backups(name).pop().expect("one backup")
}

struct Bytes(Vec<u8>);

impl StreamSource for Bytes {
    fn reader(&mut self) -> Box<dyn std::io::Read + Send> {
        Box::new(std::io::Cursor::new(std::mem::take(&mut self.0)))
    }
    fn finish(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// Stores `manifest` (any text) as a new manifest snapshot of container `name`, the way
/// someone holding the repository key could.
fn store_manifest(repo: &RusticRepository, name: &str, manifest: &str) {
    let tags = [
        "lifeboat".to_string(),
        "lifeboat-manifest".to_string(),
        format!("container={name}"),
    ];
    repo.backup_stream(
        &StreamBackup {
            path: "/lifeboat/manifest.json",
            tags: &tags,
            description: Some(manifest.to_string()),
            time: None,
        },
        &mut Bytes(manifest.as_bytes().to_vec()),
    )
    .unwrap();
}

/// The newest manifest of `name` as JSON, read from the repository.
fn manifest_of(repo: &RusticRepository, name: &str) -> serde_json::Value {
    let tags = ["lifeboat-manifest".to_string(), format!("container={name}")];
    let snaps = repo.snapshots(&tags).unwrap();
    let text = snaps.last().unwrap().description.clone().unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn a_hostile_snapshot_fails_the_restore_loudly_and_writes_nothing_outside() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("hostile"), unique("hostile-vol"));
    backed_up_sleeper(&lb, &mut c, &name, &vol);
    let sentinel = Sentinel::new("sentinel");
    let repo = open_repo(&lb);
    // A volume part whose tree climbs out of the volume to the sentinel (enough `..` to
    // reach `/` from /var/lib/docker/volumes/NAME/_data), with a sibling after it.
    let climb = format!("../../../../../../..{}/etc/passwd", sentinel.dir.display());
    let evil = repo
        .craft_snapshot(
            &format!("/volumes/{vol}"),
            vec![
                CraftedEntry::new(
                    &format!("/volumes/{vol}/a"),
                    climb.as_bytes(),
                    CraftedKind::File(b"pwned\n".to_vec()),
                ),
                CraftedEntry::new(
                    &format!("/volumes/{vol}/b"),
                    b"later",
                    CraftedKind::File(b"after the escape".to_vec()),
                ),
            ],
            &[],
            None,
        )
        .unwrap();
    let mut manifest = manifest_of(&repo, &name);
    for part in manifest["parts"].as_array_mut().unwrap() {
        if part["kind"] == "volume" {
            part["snapshot_id"] = evil.clone().into();
        }
    }
    store_manifest(&repo, &name, &manifest.to_string());
    drop(repo);

    let before = sentinel.state();
    let copy = unique("hostile-copy");
    c.containers.push(copy.clone());
    c.volumes.push(format!("{copy}_{vol}"));
    let out = lb.run(&["restore", &name, "--as", &copy]);
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert!(
        out.stderr.contains("outside the restore target"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("etc/passwd"),
        "names the entry: {}",
        out.stderr
    );
    assert_eq!(
        sentinel.state(),
        before,
        "nothing outside the target changed"
    );
    assert!(
        !docker_ok(&["inspect", &copy]),
        "no container is created from a hostile backup"
    );
    // The volume the failed restore created is removed again; nothing was written into it.
    assert!(
        !docker_ok(&["volume", "inspect", &format!("{copy}_{vol}")]),
        "the failed restore's volume is left behind"
    );
}

#[test]
fn names_are_checked_at_the_command_line_before_anything_is_touched() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("names"), unique("names-vol"));
    backed_up_sleeper(&lb, &mut c, &name, &vol);
    for (args, what) in [
        (vec!["--as", "x/../../../victim"], "container name"),
        (vec!["--as", ""], "container name"),
        (vec!["--snapshot", ""], "snapshot"),
        (vec!["--at", "garbage"], "timestamp"),
    ] {
        let mut full = vec!["restore", name.as_str()];
        full.extend(args.iter().copied());
        let out = lb.run(&full);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.to_lowercase().contains(what),
            "{args:?}: {}",
            out.stderr
        );
    }
    let out = lb.run(&["drill", &name, "--at", "garbage"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(!Path::new("/tmp/victim").exists());
}

#[test]
fn the_api_refuses_a_restore_as_a_path_and_deletes_nothing() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let name = unique("lbt-apias");
    let vol = unique("lbt-apias-data");
    let path = new_volume(&mut c, &vol);
    std::fs::write(path.join("records"), "1000 records\n").unwrap();
    let bind = PathBuf::from(format!("/tmp/{}", unique("apias-bind")));
    std::fs::create_dir_all(&bind).unwrap();
    std::fs::write(bind.join("conf"), "kept").unwrap();
    let sentinel = Sentinel::new("victim");
    let bind_flag = format!("{}:/conf", bind.display());
    managed(&mut c, &name, &name, Some(&vol), &["lifeboat.schedule=1h"]);
    // The bind mount is on a second container of the same scope, backed up by the CLI.
    let with_bind = unique("lbt-apias-bind");
    run_sleeper(&mut c, &with_bind, &["-v", &bind_flag]);
    lb.run(&["backup", &with_bind]).ok();
    let d = Daemon::start(&lb, &name, "");
    let before = sentinel.state();
    let hostile = format!("x/../../../..{}", sentinel.dir.display());
    for target in [&name, &with_bind] {
        let r = d.post(
            &format!("/api/v1/services/{target}/restore"),
            Some(&format!("{{\"as\": \"{hostile}\", \"force\": true}}")),
        );
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(r.body.contains("container name"), "{}", r.body);
        let r = d.post(
            &format!("/api/v1/services/{target}/restore"),
            Some("{\"snapshot\": \"\"}"),
        );
        assert_eq!(r.status, 400, "{}", r.body);
    }
    assert_eq!(sentinel.state(), before);
    assert_eq!(std::fs::read_to_string(bind.join("conf")).unwrap(), "kept");
    // The scheme of the Authorization header is case-insensitive.
    let r = http::request(
        "GET",
        &format!("{}/api/v1/services", d.base),
        &[("Authorization", &format!("bearer {TOKEN}"))],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let _ = std::fs::remove_dir_all(&bind);
}

/// Every file restic restores from every snapshot of the repository, searched for `needle`.
fn repository_contains(lb: &Lb, needle: &str) -> bool {
    let out = tempfile::tempdir().unwrap();
    let listed = lb.restic(&["snapshots", "--json"]).ok().json();
    for snap in listed.as_array().unwrap() {
        let id = snap["short_id"].as_str().unwrap();
        let dir = out.path().join(id);
        lb.restic(&["restore", id, "--target", dir.to_str().unwrap()]);
    }
    let hit = std::process::Command::new("grep")
        .args(["-r", "-l", "-F", needle])
        .arg(out.path())
        .output()
        .unwrap();
    !hit.stdout.is_empty()
}

#[test]
fn a_container_swapping_a_directory_for_a_host_symlink_mid_backup_gets_nothing_of_the_host() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("swap"), unique("swap-vol"));
    let sentinel = Sentinel::new("swap-host");
    for i in 0..200 {
        std::fs::write(sentinel.dir.join(format!("f{i:03}")), "HOST SECRET\n").unwrap();
    }
    let path = new_volume(&mut c, &vol);
    std::fs::create_dir_all(path.join("real")).unwrap();
    for i in 0..200 {
        std::fs::write(path.join(format!("real/f{i:03}")), "container data\n").unwrap();
    }
    // Inside the container, `sub` flips between a real directory and a symlink whose target
    // is a host path (meaningless to the container, followed by a naive host-side reader).
    let script = format!(
        "while true; do busybox mv /data/real /data/sub; busybox mv /data/sub /data/parked; \
         busybox ln -s {} /data/sub; busybox rm /data/sub; busybox mv /data/parked /data/real; \
         done",
        sentinel.dir.display()
    );
    c.containers.push(name.clone());
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "-v",
        &format!("{vol}:/data"),
        BUSYBOX_IMAGE,
        "sh",
        "-c",
        &script,
    ]);
    let before = sentinel.state();
    let mut raced = 0;
    for _ in 0..8 {
        let out = lb.run(&["backup", &name, "--mode", "none"]);
        assert!([0, 3].contains(&out.code), "{}", out.stderr);
        // Entries that moved under the walk are reported, and the backup marked partial.
        raced += usize::from(out.code == 3);
    }
    assert!(raced > 0, "the swaps raced at least one backup");
    docker(&["rm", "-f", &name]);
    assert_eq!(sentinel.state(), before);
    assert!(
        !repository_contains(&lb, "HOST SECRET"),
        "a host file was stored in the backup"
    );
}

#[test]
fn a_database_that_is_a_symlink_to_a_host_database_is_never_opened() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("dblink"), unique("dblink-vol"));
    let sentinel = Sentinel::new("hostdb");
    let host_db = sentinel.dir.join("secrets.db");
    let made = std::process::Command::new("sqlite3")
        .arg(&host_db)
        .arg("PRAGMA journal_mode=WAL; CREATE TABLE s(v); INSERT INTO s VALUES ('HOST SECRET');")
        .status()
        .unwrap();
    assert!(made.success());
    let path = new_volume(&mut c, &vol);
    std::os::unix::fs::symlink(&host_db, path.join("app.db")).unwrap();
    run_sleeper(&mut c, &name, &["-v", &format!("{vol}:/data")]);
    let before = sentinel.state();
    let out = lb.run(&["backup", &name, "--mode", "hot", "--json"]);
    assert_eq!(
        sentinel.state(),
        before,
        "the host database was not touched"
    );
    assert!(
        !sentinel.dir.join("secrets.db-shm").exists(),
        "not even opened"
    );
    let parts = out.json()["backups"][0]["parts"].clone();
    assert!(
        !parts.to_string().contains("\"sqlite\""),
        "no database copy was made: {parts}"
    );
    assert!(!repository_contains(&lb, "HOST SECRET"));
}

#[test]
fn secrets_printed_by_a_failing_hook_stay_out_of_output_history_and_webhooks() {
    const SECRET: &str = "pw-very-secret-9876";
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let hook = Receiver::start();
    let name = unique("lbt-hooksecret");
    let env = format!("DB_PASSWORD={SECRET}");
    let scope = format!("lifeboat.test={name}");
    run_sleeper(
        &mut c,
        &name,
        &[
            "-e",
            &env,
            "-l",
            "lifeboat.enable=true",
            "-l",
            &scope,
            "-l",
            "lifeboat.schedule=1h",
            "-l",
            "lifeboat.pre=echo login with $DB_PASSWORD; exit 1",
        ],
    );
    let mut printed = String::new();
    for args in [
        vec!["backup", name.as_str(), "--json"],
        vec!["-vv", "backup", name.as_str()],
    ] {
        let out = lb.run(&args);
        assert_ne!(out.code, 0);
        printed.push_str(&out.stdout);
        printed.push_str(&out.stderr);
    }
    assert!(
        printed.contains("hook"),
        "the failure is reported: {printed}"
    );
    assert!(
        !printed.contains(SECRET),
        "secret in CLI output:\n{printed}"
    );

    let d = Daemon::start(&lb, &name, &format!("webhook_url = \"{}/hook\"", hook.url));
    let failed = hook
        .wait_for("backup_failed", Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no failure webhook\n{}", d.log_text()));
    assert!(failed.contains("hook"), "{failed}");
    let jobs = d.get(&format!("/api/v1/jobs?service={name}")).body;
    let service = d.get(&format!("/api/v1/services/{name}")).body;
    for (what, text) in [
        ("webhook", failed.as_str()),
        ("job history", jobs.as_str()),
        ("service API", service.as_str()),
        ("daemon log", &d.log_text()),
    ] {
        assert!(!text.contains(SECRET), "secret in the {what}:\n{text}");
    }
    assert!(
        jobs.contains("redacted"),
        "the hook output is kept, scrubbed: {jobs}"
    );
}

#[test]
fn after_a_forced_restore_the_next_restore_never_picks_the_safety_backup() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("safety"), unique("safety-vol"));
    backed_up_sleeper(&lb, &mut c, &name, &vol);
    std::fs::write(volume_path(&vol).join("state"), "v2").unwrap();
    lb.run(&["restore", &name, "--force"]).ok();
    assert_eq!(
        std::fs::read_to_string(volume_path(&vol).join("state")).unwrap(),
        "v1"
    );
    // The user goes on; the next plain forced restore must bring back v1 again, not the
    // safety backup holding v2 (the state they chose to leave).
    std::fs::write(volume_path(&vol).join("state"), "v3").unwrap();
    lb.run(&["restore", &name, "--force"]).ok();
    assert_eq!(
        std::fs::read_to_string(volume_path(&vol).join("state")).unwrap(),
        "v1"
    );
    let rows = lb.backups(&name);
    assert_eq!(rows.iter().filter(|r| r["safety"] == true).count(), 2);
    assert_eq!(rows.iter().filter(|r| r["safety"] == false).count(), 1);
    let listed = lb.run(&["snapshots", &name]).ok().stdout;
    assert_eq!(listed.matches("[SAFETY").count(), 2, "{listed}");
}

#[test]
fn an_unreadable_manifest_is_skipped_with_a_warning_and_reported_by_check() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("badman"), unique("badman-vol"));
    backed_up_sleeper(&lb, &mut c, &name, &vol);
    let repo = open_repo(&lb);
    let mut newer = manifest_of(&repo, &name);
    newer["schema_version"] = 999.into();
    store_manifest(&repo, &name, "{ this is not a manifest");
    store_manifest(&repo, &name, &newer.to_string());
    drop(repo);

    let listed = lb.run(&["snapshots", &name]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert_eq!(listed.stdout.matches(&name).count(), 1, "{}", listed.stdout);
    assert_eq!(
        listed.stderr.matches("skipping backup").count(),
        2,
        "each bad manifest is named: {}",
        listed.stderr
    );
    let copy = unique("badman-copy");
    c.containers.push(copy.clone());
    c.volumes.push(format!("{copy}_{vol}"));
    lb.run(&["restore", &name, "--as", &copy]).ok();
    let check = lb.run(&["check", "--json"]);
    assert_eq!(check.code, 5, "{}", check.stdout);
    let report = check.json();
    let errors = report["errors"].to_string();
    let warnings = report["warnings"].to_string();
    assert!(errors.contains("cannot be read"), "{errors}");
    assert!(warnings.contains("newer"), "{warnings}");
}
