//! Recovery of a failed service from its newest good backup: by hand (`lifeboat recover`)
//! and by the daemon (`lifeboat.recover=auto`), against real containers.

use std::time::Duration;

use lifeboat_testkit::http::Receiver;

use crate::common::*;
use crate::daemon::{Daemon, managed};

/// A new volume (registered for cleanup) whose `state` file says `good`: its host path.
fn good_volume(c: &mut Cleanup, vol: &str) -> std::path::PathBuf {
    let path = new_volume(c, vol);
    std::fs::write(path.join("state"), "good").unwrap();
    path
}

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
    let path = good_volume(&mut c, &vol);
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

#[test]
fn a_recovered_service_that_fails_its_probes_is_a_failed_recovery() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("lbt-recprobe"), unique("lbt-recprobe-vol"));
    new_volume(&mut c, &vol);
    let mount = format!("{vol}:/data");
    // Its probe needs a file its backups never held.
    run_sleeper(
        &mut c,
        &name,
        &["-v", &mount, "-l", "lifeboat.probe=test -f /data/ready"],
    );
    lb.run(&["backup", &name]).ok();
    let r = lb.run(&["recover", &name]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stderr.contains("fails its probes") && r.stderr.contains("lifeboat.probe"),
        "{}",
        r.stderr
    );
    // Left as recovered, running, for the operator to look at.
    assert_eq!(inspect(&name, "{{.State.Running}}"), "true");
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
    let path = good_volume(&mut c, &vol);
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
fn a_failed_recovery_is_tried_again_after_a_backoff_then_left_alone_until_started_again() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let hook = Receiver::start();
    let scope = unique("lbt-retry");
    let (name, vol) = (unique("lbt-retry-svc"), unique("lbt-retry-vol"));
    let path = good_volume(&mut c, &vol);
    // Its probe needs a file no backup holds: every recovery of it fails.
    let labels = [
        "lifeboat.schedule=1h",
        "lifeboat.recover=auto",
        "lifeboat.recover-after=1s",
        "lifeboat.recover-attempts=2",
        "lifeboat.probe=test -f /data/ready",
    ];
    crashable(&mut c, &scope, &name, &vol, "no", &labels);
    let d = Daemon::start(&lb, &scope, &format!("webhook_url = \"{}/hook\"", hook.url));
    d.wait_until("the first backup", Duration::from_secs(60), || {
        crate::daemon::succeeded(&d.jobs(&name)) >= 1
    });
    std::fs::write(path.join("crash"), "").unwrap();

    let event = |needle: &str| -> serde_json::Value {
        let body = hook
            .wait_for(needle, Duration::from_secs(60))
            .unwrap_or_else(|| panic!("no {needle}\n{}", d.log_text()));
        serde_json::from_str(&body).unwrap()
    };
    let first = event("\"service_failed\"");
    assert_eq!(
        (first["attempt"].as_u64(), &first["failure"]),
        (Some(1), &"died".into())
    );
    event("\"recovery_failed\"");
    let failed_at = std::time::Instant::now();
    // Tried again after recover-after doubled once (2 s), as a failure of its own.
    let second = event("\"service_failed\"");
    let gap = failed_at.elapsed();
    assert_eq!(second["attempt"].as_u64(), Some(2), "{second}");
    assert_eq!(second["failure"], "recovery-failed", "{second}");
    assert!(gap >= Duration::from_millis(1500), "retried after {gap:?}");
    event("\"recovery_failed\"");
    // Out of attempts: left alone, and the webhook says why.
    let skipped = event("\"recovery_skipped\"");
    let why = skipped["message"].as_str().unwrap_or_default();
    assert!(
        why.contains("2 automatic recoveries") && why.contains("lifeboat.recover-attempts"),
        "{skipped}"
    );
    std::thread::sleep(Duration::from_secs(6));
    let recoveries: Vec<_> = d
        .jobs(&name)
        .into_iter()
        .filter(|j| j["kind"] == "recover")
        .collect();
    let triggers: Vec<_> = recoveries.iter().map(|j| j["trigger"].clone()).collect();
    assert_eq!(triggers, ["retry", "failure"], "{recoveries:#?}");
    assert!(
        recoveries.iter().all(|j| j["state"] == "failed"),
        "{recoveries:#?}"
    );
    assert!(
        hook.received()
            .iter()
            .all(|e| !e.contains("service_failed")),
        "a third attempt"
    );
    // Its backups wait while it is broken; an operator who mends and restarts it lets them
    // run again.
    assert_eq!(d.service(&name)["paused"], true, "{}", d.service(&name));
    std::fs::write(path.join("ready"), "").unwrap();
    docker(&["restart", "-t", "1", &name]);
    d.wait_until("its schedules resumed", Duration::from_secs(20), || {
        d.service(&name)["paused"] == false
    });
    let metric = |m: &str| d.metric(&format!("{m}{{service=\"{name}\"}}"));
    assert_eq!(metric("lifeboat_recovery_failures_total"), Some(2.0));
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
    let lpath = good_volume(&mut c, &lvol);
    crashable(&mut c, &scope, &looping, &lvol, "always", &labels);
    let scope_label = format!("lifeboat.test={scope}");
    // Turns unhealthy once /data/bad exists (and keeps running).
    let (sick, svol) = (unique("lbt-sick-svc"), unique("lbt-sick-vol"));
    let spath = good_volume(&mut c, &svol);
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

/// A sleeper that stops at once on SIGTERM, depending on `on` (`lifeboat.depends-on`), with
/// more `flags`.
fn dependent(c: &mut Cleanup, scope: &str, name: &str, on: &str, flags: &[&str]) {
    let scope = format!("lifeboat.test={scope}");
    let dep = format!("lifeboat.depends-on={on}");
    c.containers.push(name.to_string());
    let mut args = vec![
        "run",
        "-d",
        "--name",
        name,
        "-l",
        "lifeboat.enable=true",
        "-l",
        &scope,
        "-l",
        &dep,
        "-l",
        "lifeboat.schedule=1h",
    ];
    args.extend_from_slice(flags);
    args.extend([
        BUSYBOX_IMAGE,
        "sh",
        "-c",
        "trap 'exit 0' TERM; while :; do sleep 0.2; done",
    ]);
    docker(&args);
}

/// Every webhook body up to the first that contains `needle` (which is last).
fn events_until(hook: &Receiver, needle: &str, timeout: Duration) -> Vec<String> {
    let t0 = std::time::Instant::now();
    let mut seen = Vec::new();
    while t0.elapsed() < timeout {
        seen.extend(hook.received());
        if seen.iter().any(|e| e.contains(needle)) {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no `{needle}` within {timeout:?}; received {seen:#?}");
}

fn started_at(name: &str) -> String {
    inspect(name, "{{.State.StartedAt}}")
}

fn steps(job: &serde_json::Value) -> Vec<String> {
    job["progress"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["step"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn position(steps: &[String], prefix: &str) -> usize {
    steps
        .iter()
        .position(|s| s.starts_with(prefix))
        .unwrap_or_else(|| panic!("no step `{prefix}…` in {steps:#?}"))
}

#[test]
fn a_stack_whose_database_fails_pauses_its_dependents_and_restarts_them_in_order() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let hook = Receiver::start();
    let scope = unique("lbt-stack");
    let (db, vol) = (unique("lbt-stack-db"), unique("lbt-stack-vol"));
    let (agent, web) = (unique("lbt-stack-agent"), unique("lbt-stack-web"));
    let path = good_volume(&mut c, &vol);
    let labels = [
        "lifeboat.schedule=1h",
        "lifeboat.recover=auto",
        "lifeboat.recover-after=1s",
    ];
    let net = unique("lbt-stack-net");
    docker(&["network", "create", &net]);
    c.networks.push(net.clone());
    // The database answers over HTTP until it crashes.
    let scope_label = format!("lifeboat.test={scope}");
    let mount = format!("{vol}:/data");
    c.containers.push(db.clone());
    let mut args = vec![
        "run",
        "-d",
        "--name",
        &db,
        "--restart",
        "no",
        "--network",
        &net,
    ];
    for l in ["lifeboat.enable=true", &scope_label]
        .into_iter()
        .chain(labels)
    {
        args.extend(["-l", l]);
    }
    args.extend(["-v", &mount, BUSYBOX_IMAGE, "sh", "-c"]);
    args.push("httpd -p 8080 -h /data; while [ ! -f /data/crash ]; do sleep 0.2; done; exit 3");
    docker(&args);
    // The agent's health needs the database, and it would be recovered by itself: its failure
    // is the database's, so only the database is recovered.
    let probe = format!("wget -qO- http://{db}:8080/state");
    let agent_flags = [
        "--network",
        &net,
        "--health-cmd",
        &probe,
        "--health-interval",
        "1s",
        "--health-retries",
        "1",
        "-l",
        "lifeboat.recover=auto",
        "-l",
        "lifeboat.recover-after=1s",
    ];
    dependent(&mut c, &scope, &agent, &db, &agent_flags);
    dependent(&mut c, &scope, &web, &agent, &[]);
    let d = Daemon::start(&lb, &scope, &format!("webhook_url = \"{}/hook\"", hook.url));
    d.wait_until("three first backups", Duration::from_secs(90), || {
        [&db, &agent, &web]
            .iter()
            .all(|n| crate::daemon::succeeded(&d.jobs(n)) >= 1)
    });
    let before = (started_at(&agent), started_at(&web));

    std::fs::write(path.join("state"), "corrupt").unwrap();
    std::fs::write(path.join("crash"), "").unwrap();
    // While it runs, the API shows the recovery's steps and the dependents paused.
    let (mut saw_steps, mut saw_paused) = (false, false);
    d.wait_until("the recovery", Duration::from_secs(90), || {
        let s = d.service(&db);
        if s["status"] == "recovering" && !steps(&s["recovery"]).is_empty() {
            saw_steps = true;
        }
        if d.service(&web)["paused"] == true && d.service(&agent)["paused"] == true {
            saw_paused = true;
        }
        hook.received()
            .iter()
            .any(|e| e.contains("service_recovered") || e.contains("recovery_failed"))
    });
    let job = d
        .jobs(&db)
        .into_iter()
        .find(|j| j["kind"] == "recover")
        .expect("a recover job");
    assert_eq!(job["state"], "succeeded", "{job:#}\n{}", d.log_text());
    assert_eq!(job["trigger"], "failure");
    assert!(
        saw_steps,
        "the recovery's steps were never shown while it ran"
    );
    assert!(saw_paused, "the dependents' schedules were never paused");
    let s = steps(&job);
    let pause = position(
        &s,
        &format!("pausing the schedules of {db}, {agent}, {web}"),
    );
    let restored = position(&s, &format!("restoring volume {vol}"));
    let first = position(&s, &format!("restarting {agent}"));
    let second = position(&s, &format!("restarting {web}"));
    let resume = position(&s, "resuming the schedules");
    assert!(pause < restored && restored < first && first < second && second < resume);
    assert_eq!(job["detail"]["restarted"], serde_json::json!([agent, web]));
    // Restarted in dependency order, after the database was back.
    let after = (started_at(&agent), started_at(&web));
    assert!(after.0 != before.0 && after.1 != before.1, "not restarted");
    assert!(
        started_at(&db) <= after.0 && after.0 <= after.1,
        "{after:?}"
    );
    assert_eq!(std::fs::read_to_string(path.join("state")).unwrap(), "good");
    assert!(
        d.jobs(&agent).iter().all(|j| j["kind"] != "recover"),
        "the agent was recovered for its dependency's failure: {:#?}",
        d.jobs(&agent)
    );
    assert_eq!(inspect(&agent, "{{.State.Health.Status}}"), "healthy");
    for n in [&db, &agent, &web] {
        assert_eq!(d.service(n)["paused"], false, "{n} still paused");
        assert_eq!(inspect(n, "{{.State.Running}}"), "true");
    }
}

#[test]
fn a_daemon_killed_mid_recovery_finishes_it_at_its_next_start() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let scope = unique("lbt-killrec");
    let (name, vol) = (unique("lbt-killrec-svc"), unique("lbt-killrec-vol"));
    let path = good_volume(&mut c, &vol);
    // Enough data that the restore takes a while.
    let big = path.join("big");
    let made = std::process::Command::new("dd")
        .args(["if=/dev/urandom", "bs=1M", "count=400", "status=none"])
        .arg(format!("of={}", big.display()))
        .status()
        .unwrap();
    assert!(made.success());
    let digest = |p: &std::path::Path| {
        let out = std::process::Command::new("sha256sum")
            .arg(p)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split(' ')
            .next()
            .unwrap()
            .to_string()
    };
    let good = digest(&big);
    managed(&mut c, &scope, &name, Some(&vol), &["lifeboat.schedule=1h"]);
    let d = Daemon::start(&lb, &scope, "");
    d.wait_until("the first backup", Duration::from_secs(120), || {
        crate::daemon::succeeded(&d.jobs(&name)) >= 1
    });
    std::fs::write(path.join("state"), "corrupt").unwrap();
    let r = d.post(&format!("/api/v1/services/{name}/recover"), None);
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.json()["job_id"].as_i64().unwrap();
    // Killed while the volume is being restored: the container is gone, the data half there.
    d.wait_until(
        "the restore of the volume",
        Duration::from_secs(120),
        || {
            let job = d.get(&format!("/api/v1/jobs/{id}")).json();
            steps(&job)
                .iter()
                .any(|s| s.starts_with(&format!("restoring volume {vol}")))
        },
    );
    d.signal("KILL");
    let intent = lb
        .state
        .path()
        .join("recoveries")
        .join(format!("{name}.json"));
    assert!(intent.exists(), "no record of the recovery under way");

    let d2 = Daemon::start(&lb, &scope, "");
    let mut resumed = serde_json::Value::Null;
    d2.wait_until("the resumed recovery", Duration::from_secs(180), || {
        resumed = d2
            .jobs(&name)
            .into_iter()
            .find(|j| j["trigger"] == "resume")
            .unwrap_or_default();
        ["succeeded", "failed"].contains(&resumed["state"].as_str().unwrap_or(""))
    });
    assert_eq!(
        resumed["state"],
        "succeeded",
        "{resumed:#}\n{}",
        d2.log_text()
    );
    let cut = d2.get(&format!("/api/v1/jobs/{id}")).json();
    assert_eq!(cut["state"], "aborted");
    assert!(!steps(&cut).is_empty(), "the cut job's steps were not kept");
    assert_eq!(inspect(&name, "{{.State.Running}}"), "true");
    assert_eq!(std::fs::read_to_string(path.join("state")).unwrap(), "good");
    assert_eq!(digest(&big), good, "the big file is not the backup's");
    assert!(!intent.exists(), "the recovery record was left");
    let stopped = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=lifeboat.test={scope}"),
        "--filter",
        "status=exited",
        "-q",
    ]);
    assert_eq!(stopped, "", "containers left stopped");
}

#[test]
fn a_removed_container_is_recovered_only_with_recover_removed() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let hook = Receiver::start();
    let scope = unique("lbt-removed");
    let (kept, kvol) = (unique("lbt-removed-back"), unique("lbt-removed-bvol"));
    let (gone, gvol) = (unique("lbt-removed-gone"), unique("lbt-removed-gvol"));
    let kpath = good_volume(&mut c, &kvol);
    new_volume(&mut c, &gvol);
    let labels = [
        "lifeboat.schedule=1h",
        "lifeboat.recover=auto",
        "lifeboat.recover-after=1s",
    ];
    let mut with_removed = labels.to_vec();
    with_removed.push("lifeboat.recover-removed=true");
    managed(&mut c, &scope, &kept, Some(&kvol), &with_removed);
    managed(&mut c, &scope, &gone, Some(&gvol), &labels);
    let d = Daemon::start(&lb, &scope, &format!("webhook_url = \"{}/hook\"", hook.url));
    d.wait_until("both first backups", Duration::from_secs(60), || {
        crate::daemon::succeeded(&d.jobs(&kept)) >= 1
            && crate::daemon::succeeded(&d.jobs(&gone)) >= 1
    });
    std::fs::write(kpath.join("state"), "after the backup").unwrap();
    docker(&["rm", "-f", &kept, &gone]);
    let mut events = events_until(&hook, "service_recovered", Duration::from_secs(60));
    assert!(events.last().unwrap().contains(kept.as_str()), "{events:?}");
    assert_eq!(inspect(&kept, "{{.State.Running}}"), "true");
    assert_eq!(
        std::fs::read_to_string(kpath.join("state")).unwrap(),
        "good"
    );
    // The other one stays removed, and was reported as missing only.
    std::thread::sleep(Duration::from_secs(3));
    assert!(d.jobs(&gone).iter().all(|j| j["kind"] != "recover"));
    let listed = docker(&["ps", "-a", "--filter", &format!("name=^{gone}$"), "-q"]);
    assert_eq!(listed, "", "{gone} was brought back");
    events.extend(hook.received());
    assert!(
        !events
            .iter()
            .any(|e| e.contains("service_failed") && e.contains(gone.as_str())),
        "{events:?}"
    );
}

#[test]
fn a_service_whose_bind_source_disappears_is_recovered() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let hook = Receiver::start();
    let scope = unique("lbt-bindgone");
    let name = unique("lbt-bindgone-svc");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("state"), "good").unwrap();
    let bind = format!("{}:/data", data.display());
    let scope_label = format!("lifeboat.test={scope}");
    run_sleeper(
        &mut c,
        &name,
        &[
            "-l",
            "lifeboat.enable=true",
            "-l",
            &scope_label,
            "-l",
            "lifeboat.schedule=1h",
            "-l",
            "lifeboat.recover=auto",
            "-l",
            "lifeboat.recover-after=1s",
            "-v",
            &bind,
        ],
    );
    let d = Daemon::start(&lb, &scope, &format!("webhook_url = \"{}/hook\"", hook.url));
    d.wait_until("the first backup", Duration::from_secs(60), || {
        crate::daemon::succeeded(&d.jobs(&name)) >= 1
    });
    // The disk holding it is gone.
    std::fs::remove_dir_all(&data).unwrap();
    let failed = events_until(&hook, "service_recovered", Duration::from_secs(60));
    assert!(failed.last().unwrap().contains(name.as_str()), "{failed:?}");
    assert!(
        failed
            .iter()
            .any(|e| e.contains("service_failed") && e.contains("volume-missing")),
        "{failed:?}"
    );
    assert_eq!(std::fs::read_to_string(data.join("state")).unwrap(), "good");
    assert_eq!(inspect(&name, "{{.State.Running}}"), "true");
}

#[test]
fn a_compose_project_stopped_or_taken_down_is_not_recovered() {
    let lb = Lb::new();
    let hook = Receiver::start();
    let scope = unique("lbt-cdown");
    let project = unique("lbtcdown").replace('-', "");
    let dir = tempfile::tempdir().unwrap();
    let service = |svc: &str| {
        format!(
            "  {svc}:\n    image: {BUSYBOX_IMAGE}\n    command: [\"sh\", \"-c\", \"trap 'exit 0' \
             TERM; while :; do sleep 0.2; done\"]\n    labels:\n      lifeboat.enable: \"true\"\n      \
             lifeboat.test: \"{scope}\"\n      lifeboat.schedule: 1h\n      lifeboat.recover: \
             auto\n      lifeboat.recover-after: 1s\n"
        )
    };
    let file = format!(
        "version: \"3\"\nservices:\n{}{}",
        service("a"),
        service("b")
    );
    std::fs::write(dir.path().join("docker-compose.yml"), file).unwrap();
    let mut c = Cleanup::default();
    let names: Vec<String> = ["a", "b"]
        .iter()
        .map(|s| format!("{project}_{s}_1"))
        .collect();
    c.containers.extend(names.iter().cloned());
    crate::compose::compose(dir.path(), &project, &["up", "-d"]);
    let d = Daemon::start(&lb, &scope, &format!("webhook_url = \"{}/hook\"", hook.url));
    d.wait_until("both first backups", Duration::from_secs(60), || {
        names
            .iter()
            .all(|n| crate::daemon::succeeded(&d.jobs(n)) >= 1)
    });
    crate::compose::compose(dir.path(), &project, &["stop"]);
    std::thread::sleep(Duration::from_secs(4));
    crate::compose::compose(dir.path(), &project, &["start"]);
    crate::compose::compose(dir.path(), &project, &["down"]);
    std::thread::sleep(Duration::from_secs(4));
    let events = hook.received();
    assert!(
        !events.iter().any(|e| e.contains("service_failed")),
        "{events:?}"
    );
    for n in &names {
        assert!(d.jobs(n).iter().all(|j| j["kind"] != "recover"));
        assert_eq!(
            docker(&["ps", "-a", "--filter", &format!("name=^{n}$"), "-q"]),
            "",
            "{n} came back"
        );
    }
}
