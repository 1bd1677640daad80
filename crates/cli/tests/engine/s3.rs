//! The `lifeboat` binary with its repository in a real 3-node Garage cluster: a container's
//! round trip that restic reads too, several hosts sharing one repository, and the exit codes
//! of a storage that refuses.

use crate::common::*;
use lifeboat_testkit::garage::Garage;

/// A host of the fleet: its own state directory and name, the shared repository.
struct Host<'a> {
    lb: Lb,
    name: &'a str,
    env: Vec<(String, String)>,
}

impl<'a> Host<'a> {
    fn new(g: &Garage, location: &str, name: &'a str) -> Host<'a> {
        let mut env: Vec<(String, String)> = g
            .env
            .iter()
            .filter(|(k, _)| k.starts_with("AWS_"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        env.push(("LIFEBOAT_REPOSITORY".into(), location.into()));
        env.push(("LIFEBOAT_PASSWORD".into(), "fleet-password".into()));
        env.push(("LIFEBOAT_HOST".into(), name.into()));
        Host {
            lb: Lb::uninitialised(),
            name,
            env,
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.lb.run_env(&env, args)
    }

    fn restic(&self, args: &[&str]) -> Run {
        let mut c = std::process::Command::new("restic");
        c.args(["--no-cache", "-r"]);
        for (k, v) in &self.env {
            c.env(k, v);
            if k == "LIFEBOAT_REPOSITORY" {
                c.arg(v);
            }
        }
        c.env("RESTIC_PASSWORD", "fleet-password")
            .args(args)
            .output()
            .unwrap()
            .into()
    }
}

#[test]
fn a_container_with_a_200_mb_volume_round_trips_through_s3_and_restic_reads_the_bucket() {
    ensure_busybox_image();
    let g = Garage::start();
    let h1 = Host::new(&g, &g.location("prod"), "h1");
    h1.run(&["init"]).ok();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("s3"), unique("s3-vol"));
    let path = new_volume(&mut c, &vol);
    write_corpus(&path);
    // 200 MB: mostly incompressible, some repetitive.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..20 {
        let data: Vec<u8> = (0..10 << 20)
            .map(|j| {
                if i % 4 == 0 {
                    (j % 251) as u8
                } else {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                }
            })
            .collect();
        std::fs::write(path.join(format!("blob{i:02}")), data).unwrap();
    }
    run_sleeper(&mut c, &name, &["-v", &format!("{vol}:/data")]);

    let out = h1.run(&["backup", &name, "--json"]).ok().json();
    let part = out["backups"][0]["parts"][0]["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    let copy = unique("s3-copy");
    c.containers.push(copy.clone());
    c.volumes.push(format!("{copy}_{vol}"));
    h1.run(&["restore", &name, "--as", &copy]).ok();
    assert_same_tree(&path, &volume_path(&format!("{copy}_{vol}")));

    // restic lists, checks and restores from the same bucket.
    let listed = h1.restic(&["snapshots", "--json"]).ok();
    assert!(listed.stdout.contains(&part), "{}", listed.stdout);
    h1.restic(&["check", "--read-data"]).ok();
    let target = tempfile::tempdir().unwrap();
    h1.restic(&[
        "restore",
        &part,
        "--target",
        target.path().to_str().unwrap(),
    ])
    .ok();
    let diffs = compare_trees_ignoring_sparseness(&path, &target.path().join("volumes").join(&vol));
    assert!(diffs.is_empty(), "restic's restore differs: {diffs:?}");
}

#[test]
fn hosts_sharing_a_repository_see_their_own_backups_and_can_restore_each_others() {
    ensure_busybox_image();
    let g = Garage::start();
    let loc = g.location("fleet");
    let (h1, h2) = (Host::new(&g, &loc, "h1"), Host::new(&g, &loc, "h2"));
    h1.run(&["init"]).ok();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("fleet"), unique("fleet-vol"));
    let path = new_volume(&mut c, &vol);
    write_corpus(&path);
    std::fs::write(path.join("owner"), "h1").unwrap();
    run_sleeper(&mut c, &name, &["-v", &format!("{vol}:/data")]);
    h1.run(&["backup", &name]).ok();
    std::fs::write(path.join("owner"), "h2").unwrap();
    h2.run(&["backup", &name]).ok();

    let all = h1.run(&["snapshots", "--all-hosts", "--json"]).ok().json();
    let hosts: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["h1", "h2"]);
    let text = h1.run(&["snapshots", "--all-hosts"]).ok().stdout;
    assert!(text.contains("HOST") && text.contains("h2"), "{text}");
    let mine = h1.run(&["snapshots", "--json"]).ok().json();
    assert_eq!(mine.as_array().unwrap().len(), 1, "{mine}");
    assert_eq!(mine[0]["host"], h1.name);

    // Each host restores its own backup by default; h1 restores h2's with --host.
    for (host, restore_as, expect) in [(&h1, None, "h1"), (&h1, Some("h2"), "h2")] {
        let copy = unique("fleet-copy");
        c.containers.push(copy.clone());
        c.volumes.push(format!("{copy}_{vol}"));
        let mut args = vec!["restore", &name, "--as", &copy];
        if let Some(h) = restore_as {
            args.splice(0..0, ["--host", h]);
        }
        host.run(&args).ok();
        let owner =
            std::fs::read_to_string(volume_path(&format!("{copy}_{vol}")).join("owner")).unwrap();
        assert_eq!(owner, expect, "restored from the wrong host's backup");
    }

    // A host without backups of it is told which hosts have them.
    let h3 = Host::new(&g, &loc, "h3");
    let none = h3.run(&["restore", &name, "--as", &unique("nope"), "--json"]);
    assert_eq!(none.code, 15, "{}", none.stderr);
    assert!(
        none.stderr.contains("h1, h2") && none.stderr.contains("--host"),
        "{}",
        none.stderr
    );
}

#[test]
fn a_refusing_storage_gets_its_own_exit_code_and_nothing_is_created() {
    let g = Garage::start();
    let h = Host::new(
        &g,
        &format!("s3:http://127.0.0.1:{}/missing-bucket/r", g.port),
        "h1",
    );
    let missing = h.run(&["init"]);
    assert_eq!(missing.code, 19, "{}", missing.stderr);
    assert!(
        missing.stderr.contains("garage bucket create"),
        "{}",
        missing.stderr
    );

    let mut wrong = Host::new(&g, &g.location("r"), "h1");
    for (k, v) in wrong.env.iter_mut() {
        if k == "AWS_SECRET_ACCESS_KEY" {
            *v = "0".repeat(64);
        }
    }
    let denied = wrong.run(&["init"]);
    assert_eq!(denied.code, 18, "{}", denied.stderr);
    assert!(
        !denied.stderr.contains(&"0".repeat(64)),
        "the secret was printed"
    );

    let bad = h.run(&["--repo", "s3:http://127.0.0.1:1/B", "snapshots"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("s3:http[s]://HOST"), "{}", bad.stderr);
    // Nothing was written: the right credentials find no repository there.
    let right = Host::new(&g, &g.location("r"), "h1");
    assert_eq!(right.run(&["snapshots"]).code, 10);

    // Doctor names each: refused credentials are an error, an object store on this very
    // host a warning.
    let general = |run: &Run| -> Vec<String> {
        run.json()["general"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["check"].as_str().unwrap().to_string())
            .collect()
    };
    let d = wrong.run(&["doctor", "--json", "--all"]);
    assert_eq!(d.code, 2, "{}", d.stdout);
    assert!(
        general(&d).contains(&"destination.credentials".to_string()),
        "{}",
        d.stdout
    );
    let d = h.run(&["doctor", "--json", "--all"]);
    assert!(
        general(&d).contains(&"destination.bucket".to_string()),
        "{}",
        d.stdout
    );
    right.run(&["init"]).ok();
    let d = right.run(&["doctor", "--json", "--all"]);
    assert!(
        d.stdout.contains("in an object store on this host"),
        "{}",
        d.stdout
    );
}

#[test]
fn the_daemon_backs_up_into_s3_with_the_account_and_password_from_its_config_file() {
    use crate::daemon::{Daemon, managed, succeeded};
    let g = Garage::start();
    let lb = Lb::uninitialised();
    let file = |name: &str, text: &str| {
        let p = lb.state.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let id = file("s3.id", &g.env["AWS_ACCESS_KEY_ID"]);
    let secret = file("s3.secret", &g.env["AWS_SECRET_ACCESS_KEY"]);
    let pw = file("repository.pw", "daemon-password");
    let loc = g.location("daemon");
    lb.run_env(
        &[
            ("AWS_ACCESS_KEY_ID_FILE", &id),
            ("AWS_SECRET_ACCESS_KEY_FILE", &secret),
            ("AWS_DEFAULT_REGION", "garage"),
            ("LIFEBOAT_PASSWORD_FILE", &pw),
        ],
        &["--repo", &loc, "init"],
    )
    .ok();
    let mut c = Cleanup::default();
    let name = unique("lbt-s3d");
    let vol = unique("lbt-s3d-data");
    new_volume(&mut c, &vol);
    managed(&mut c, &name, &name, Some(&vol), &["lifeboat.schedule=1h"]);
    let d = Daemon::start(
        &lb,
        &name,
        &format!(
            "[repository]\nlocation = \"{loc}\"\npassword_file = \"{pw}\"\n\
             access_key_id_file = \"{id}\"\nsecret_access_key_file = \"{secret}\"\n\
             region = \"garage\"\n"
        ),
    );
    d.wait_until(
        "a backup into S3",
        std::time::Duration::from_secs(60),
        || succeeded(&d.jobs(&name)) >= 1,
    );
    // The secret is in no log line, job record or API answer.
    let log = d.log_text();
    let jobs = d.get("/api/v1/jobs").body;
    for text in [
        &log,
        &jobs,
        &d.get(&format!("/api/v1/services/{name}")).body,
    ] {
        assert!(
            !text.contains(&g.env["AWS_SECRET_ACCESS_KEY"]),
            "secret leaked: {text}"
        );
    }
    drop(d);
    // restic finds the daemon's backup in the bucket.
    let out = std::process::Command::new("restic")
        .args(["--no-cache", "-r", &loc, "snapshots", "--json"])
        .env("RESTIC_PASSWORD", "daemon-password")
        .env("AWS_ACCESS_KEY_ID", &g.env["AWS_ACCESS_KEY_ID"])
        .env("AWS_SECRET_ACCESS_KEY", &g.env["AWS_SECRET_ACCESS_KEY"])
        .env("AWS_DEFAULT_REGION", "garage")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("container={name}")), "{text}");
}
