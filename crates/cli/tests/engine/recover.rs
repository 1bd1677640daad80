//! Recovery of a failed service from its newest good backup: by hand (`lifeboat recover`)
//! and by the daemon (`lifeboat.recover=auto`), against real containers.

use std::time::Duration;

use lifeboat_testkit::http::Receiver;

use crate::common::*;
use crate::daemon::{Daemon, managed};

/// A service that runs until `/data/crash` exists, then exits 3 by itself (a crash: no
/// `docker kill` or `stop` is involved), under restart policy `restart`.
fn crashable(c: &mut Cleanup, scope: &str, name: &str, vol: &str, restart: &str, labels: &[&str]) {
    let scope = format!("lifeboat.test={scope}");
    let mount = format!("{vol}:/data");
    let mut args = vec![
        "run",
        "-d",
        "--name",
        name,
        "--restart",
        restart,
        "-l",
        "lifeboat.enable=true",
        "-l",
        &scope,
        "-v",
        &mount,
    ];
    for l in labels {
        args.extend(["-l", l]);
    }
    args.extend([
        BUSYBOX_IMAGE,
        "sh",
        "-c",
        "while [ ! -f /data/crash ]; do sleep 0.2; done; exit 3",
    ]);
    c.containers.push(name.to_string());
    docker(&args);
}

#[test]
fn recover_by_hand_brings_back_the_newest_good_backup_and_keeps_the_broken_state_as_forensic() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("lbt-rec"), unique("lbt-rec-vol"));
    let path = new_volume(&mut c, &vol);
    std::fs::write(path.join("state"), "good").unwrap();
    crashable(&mut c, "none", &name, &vol, "no", &[]);
    lb.run(&["backup", &name]).ok();
    // The data goes bad and the service dies.
    std::fs::write(path.join("state"), "corrupt").unwrap();
    std::fs::write(path.join("crash"), "").unwrap();
    wait_until_stopped(&name);

    // A dry run says what it would do and changes nothing.
    let plan = lb
        .run(&["recover", &name, "--dry-run", "--json"])
        .ok()
        .json();
    assert_eq!(plan["dry_run"], true);
    assert!(plan["steps"].as_array().unwrap().len() >= 2, "{plan}");
    assert_eq!(
        std::fs::read_to_string(path.join("state")).unwrap(),
        "corrupt"
    );

    let out = lb.run(&["recover", &name, "--json"]).ok().json();
    assert_eq!(std::fs::read_to_string(path.join("state")).unwrap(), "good");
    assert!(!path.join("crash").exists());
    assert_eq!(inspect(&name, "{{.State.Running}}"), "true");
    assert!(out["data_lost_seconds"].as_f64().unwrap() >= 0.0);
    // The broken state is kept, as a safety backup tagged forensic, and never chosen.
    let forensic = out["forensic_snapshot"]
        .as_str()
        .expect("a forensic backup");
    let rows = lb.backups(&name);
    let kept = rows
        .iter()
        .find(|r| r["snapshot"] == forensic)
        .expect("the forensic backup is listed");
    assert_eq!(kept["safety"], true);
    assert_eq!(kept["forensic"], true);
    let listed = lb
        .restic(&["snapshots", "--tag", "forensic", "--json"])
        .ok();
    assert!(listed.stdout.contains(&forensic[..8]), "{}", listed.stdout);
    // A second recovery still picks the good backup, never the forensic one.
    std::fs::write(path.join("state"), "corrupt again").unwrap();
    lb.run(&["recover", &name]).ok();
    assert_eq!(std::fs::read_to_string(path.join("state")).unwrap(), "good");
}

fn wait_until_stopped(name: &str) {
    let t0 = std::time::Instant::now();
    while inspect(name, "{{.State.Running}}") == "true" {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{name} did not stop"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_daemon_recovers_a_crashed_service_and_leaves_a_stopped_one_alone() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let hook = Receiver::start();
    let scope = unique("lbt-auto");
    let (name, vol) = (unique("lbt-auto-svc"), unique("lbt-auto-vol"));
    let path = new_volume(&mut c, &vol);
    std::fs::write(path.join("state"), "good").unwrap();
    let labels = [
        "lifeboat.schedule=1h",
        "lifeboat.recover=auto",
        "lifeboat.recover-after=2s",
    ];
    crashable(&mut c, &scope, &name, &vol, "no", &labels);
    let quiet = unique("lbt-auto-quiet");
    managed(&mut c, &scope, &quiet, None, &labels);
    let d = Daemon::start(&lb, &scope, &format!("webhook_url = \"{}/hook\"", hook.url));
    d.wait_until("both first backups", Duration::from_secs(60), || {
        crate::daemon::succeeded(&d.jobs(&name)) >= 1
            && crate::daemon::succeeded(&d.jobs(&quiet)) >= 1
    });

    // An operator's stop is not a failure.
    docker(&["stop", "-t", "1", &quiet]);
    // The service crashes by itself.
    std::fs::write(path.join("state"), "corrupt").unwrap();
    std::fs::write(path.join("crash"), "").unwrap();
    let crashed = std::time::Instant::now();
    let recovered = hook
        .wait_for("service_recovered", Duration::from_secs(60))
        .unwrap_or_else(|| panic!("no recovery\n{}", d.log_text()));
    let took = crashed.elapsed();
    let event: serde_json::Value = serde_json::from_str(&recovered).unwrap();
    assert_eq!(event["service"], name.as_str());
    assert!(event["forensic_snapshot"].is_string(), "{event}");
    assert!(event["data_lost_seconds"].as_f64().is_some(), "{event}");
    assert_eq!(std::fs::read_to_string(path.join("state")).unwrap(), "good");
    assert_eq!(inspect(&name, "{{.State.Running}}"), "true");
    assert!(took < Duration::from_secs(60), "recovered after {took:?}");
    let recover_jobs: Vec<_> = d
        .jobs(&name)
        .into_iter()
        .filter(|j| j["kind"] == "recover")
        .collect();
    assert_eq!(recover_jobs.len(), 1, "{recover_jobs:?}");
    assert_eq!(recover_jobs[0]["state"], "succeeded");
    let metric = |m: &str| d.metric(&format!("{m}{{service=\"{name}\"}}"));
    assert_eq!(metric("lifeboat_recoveries_total"), Some(1.0));
    assert_eq!(metric("lifeboat_recovery_failures_total"), Some(0.0));
    assert!(metric("lifeboat_last_recovery_seconds").is_some_and(|s| s > 0.0));

    // It fails again right away: left alone, and the webhook says so.
    std::fs::write(path.join("crash"), "").unwrap();
    hook.wait_for("recovery_skipped", Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no recovery_skipped\n{}", d.log_text()));
    // The stopped service was never recovered.
    assert!(
        d.jobs(&quiet).iter().all(|j| j["kind"] != "recover"),
        "a stopped service was recovered"
    );
    assert_eq!(inspect(&quiet, "{{.State.Running}}"), "false");
}

#[test]
fn the_daemon_recovers_a_crash_looping_service_and_an_unhealthy_one() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let hook = Receiver::start();
    let scope = unique("lbt-loop");
    let labels = [
        "lifeboat.schedule=1h",
        "lifeboat.recover=auto",
        "lifeboat.recover-after=2s",
    ];
    // Crash-loops under --restart=always once /data/crash exists.
    let (looping, lvol) = (unique("lbt-loop-svc"), unique("lbt-loop-vol"));
    let lpath = new_volume(&mut c, &lvol);
    std::fs::write(lpath.join("state"), "good").unwrap();
    crashable(&mut c, &scope, &looping, &lvol, "always", &labels);
    let scope_label = format!("lifeboat.test={scope}");
    // Turns unhealthy once /data/bad exists (and keeps running).
    let (sick, svol) = (unique("lbt-sick-svc"), unique("lbt-sick-vol"));
    let spath = new_volume(&mut c, &svol);
    std::fs::write(spath.join("state"), "good").unwrap();
    let smount = format!("{svol}:/data");
    let mut flags = vec![
        "--health-cmd",
        "test ! -f /data/bad",
        "--health-interval",
        "1s",
        "--health-retries",
        "1",
        "-l",
        "lifeboat.enable=true",
        "-l",
        &scope_label,
        "-v",
        &smount,
    ];
    for l in &labels {
        flags.extend(["-l", l]);
    }
    run_sleeper(&mut c, &sick, &flags);
    wait_for_health(&sick);

    let d = Daemon::start(&lb, &scope, &format!("webhook_url = \"{}/hook\"", hook.url));
    d.wait_until("both first backups", Duration::from_secs(60), || {
        crate::daemon::succeeded(&d.jobs(&looping)) >= 1
            && crate::daemon::succeeded(&d.jobs(&sick)) >= 1
    });
    std::fs::write(lpath.join("crash"), "").unwrap();
    std::fs::write(spath.join("bad"), "").unwrap();
    let recovered = |name: &str| {
        d.jobs(name)
            .iter()
            .any(|j| j["kind"] == "recover" && j["state"] == "succeeded")
    };
    d.wait_until("both recovered", Duration::from_secs(90), || {
        recovered(&looping) && recovered(&sick)
    });
    assert!(!lpath.join("crash").exists());
    assert!(!spath.join("bad").exists());
    assert_eq!(inspect(&looping, "{{.State.Running}}"), "true");
    wait_for_health(&sick);
    let events: Vec<String> = hook.received();
    for (name, failure) in [(&looping, "crash-loop"), (&sick, "unhealthy")] {
        assert!(
            events.iter().any(|e| e.contains("service_failed")
                && e.contains(name.as_str())
                && e.contains(failure)),
            "no service_failed/{failure} for {name}: {events:?}"
        );
    }
}

#[test]
fn a_corrupted_sqlite_database_is_recovered_and_the_forensic_backup_holds_the_corrupt_file() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let hook = Receiver::start();
    let scope = unique("lbt-corrupt");
    let (name, vol) = (unique("lbt-corrupt-svc"), unique("lbt-corrupt-vol"));
    let path = new_volume(&mut c, &vol);
    let db = path.join("app.db");
    let made = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); WITH RECURSIVE n(i) AS (SELECT 1 \
             UNION ALL SELECT i+1 FROM n WHERE i<2000) INSERT INTO t(v) SELECT hex(randomblob(64)) \
             FROM n; CREATE INDEX tv ON t(v);",
        )
        .status()
        .unwrap();
    assert!(made.success());
    let good = std::fs::read(&db).unwrap();
    managed(
        &mut c,
        &scope,
        &name,
        Some(&vol),
        &[
            "lifeboat.schedule=1h",
            "lifeboat.recover=auto",
            "lifeboat.recover-after=1s",
        ],
    );
    let d = Daemon::start(&lb, &scope, &format!("webhook_url = \"{}/hook\"", hook.url));
    d.wait_until("the first backup", Duration::from_secs(60), || {
        crate::daemon::succeeded(&d.jobs(&name)) >= 1
    });
    // Bit rot in the middle of the file: the database still opens, its integrity check fails.
    let mut bad = good.clone();
    for b in &mut bad[good.len() / 2..good.len() / 2 + 4096] {
        *b = !*b;
    }
    std::fs::write(&db, &bad).unwrap();
    let recovered = hook
        .wait_for("service_recovered", Duration::from_secs(120))
        .unwrap_or_else(|| panic!("no recovery\n{}", d.log_text()));
    let event: serde_json::Value = serde_json::from_str(&recovered).unwrap();
    let check = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg("PRAGMA integrity_check;")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&check.stdout).trim(), "ok");
    drop(d);
    // The forensic backup holds the corrupt bytes as they were.
    let forensic = event["forensic_snapshot"]
        .as_str()
        .expect("a forensic backup");
    let copy = unique("lbt-forensic");
    c.containers.push(copy.clone());
    c.volumes.push(format!("{copy}_{vol}"));
    lb.run(&["restore", &name, "--snapshot", forensic, "--as", &copy])
        .ok();
    let kept = std::fs::read(volume_path(&format!("{copy}_{vol}")).join("app.db")).unwrap();
    assert!(
        kept == bad,
        "the forensic backup does not hold the corrupt file"
    );
}
