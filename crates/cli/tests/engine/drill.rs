//! `lifeboat drill`: a sandboxed restore that must pass on a good backup, fail clearly on a
//! damaged one, and leave nothing behind nor touch production.

use std::process::Command;

use crate::common::*;
use crate::stack::Stack;

/// Containers, volumes and networks named after drill `id` (tests run in parallel: other
/// drills may be running).
fn drill_leftovers(id: &serde_json::Value) -> Vec<String> {
    let id = id.as_str().expect("a drill id");
    let mut out = Vec::new();
    for args in [
        vec!["ps", "-a", "--format", "{{.Names}}"],
        vec!["volume", "ls", "--format", "{{.Name}}"],
        vec!["network", "ls", "--format", "{{.Name}}"],
    ] {
        out.extend(
            docker(&args)
                .lines()
                .filter(|l| l.contains(id))
                .map(String::from),
        );
    }
    out
}

/// What production looks like: container ids and states, volume file listings.
fn production(names: &[&String], volumes: &[String]) -> Vec<String> {
    let mut out: Vec<String> = names
        .iter()
        .map(|n| inspect(n, "{{.Id}} {{.State.Status}} {{.RestartCount}}"))
        .collect();
    for v in volumes {
        let mut files: Vec<String> = walkdir::WalkDir::new(volume_path(v))
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file() && e.file_name() != "replies")
            .map(|e| format!("{} {}", e.path().display(), e.metadata().unwrap().len()))
            .collect();
        files.sort();
        out.extend(files);
    }
    out
}

fn drill_jobs(lb: &Lb) -> String {
    let db = lb.state.path().join("daemon.db");
    let out = Command::new("sqlite3")
        .arg(&db)
        .arg("SELECT service || ' ' || state FROM jobs WHERE kind = 'drill' ORDER BY id")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn a_stack_drill_passes_in_a_sandbox_and_leaves_nothing_behind() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let s = Stack::start(&mut c, 0);
    lb.run(&["backup", "--project", &s.project]).ok();
    let names = [&s.db, &s.agent, &s.web];
    let before = production(&names, &[s.volumes[0].clone(), s.volumes[2].clone()]);
    let report = lb
        .run(&["drill", "--project", &s.project, "--json"])
        .ok()
        .json();
    assert_eq!(report["ok"], true, "{report:#}");
    let services = report["services"].as_array().unwrap();
    assert_eq!(services.len(), 3);
    let probes = |svc: &str| -> Vec<(String, bool)> {
        services.iter().find(|x| x["service"] == svc).unwrap()["probes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_string(),
                    p["ok"].as_bool().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        probes(&s.db),
        [("redis ping and key count".to_string(), true)]
    );
    assert_eq!(probes(&s.web), [("lifeboat.probe".to_string(), true)]);
    let secs = report["recovery_seconds"].as_f64().unwrap();
    assert!(secs > 0.5 && secs < 120.0, "recovery {secs}");
    assert!(report["teardown_problems"].as_array().unwrap().is_empty());
    assert!(
        drill_leftovers(&report["drill_id"]).is_empty(),
        "left behind: {:?}",
        drill_leftovers(&report["drill_id"])
    );
    assert_eq!(
        production(&names, &[s.volumes[0].clone(), s.volumes[2].clone()]),
        before,
        "production was touched"
    );
    for n in names {
        assert_eq!(inspect(n, "{{.State.Health.Status}}"), "healthy");
    }
    let jobs = drill_jobs(&lb);
    for n in names {
        assert!(jobs.contains(&format!("{n} succeeded")), "{jobs}");
    }
    // Drilling the web front alone brings what it needs along: the agent and the database.
    let report = lb.run(&["drill", &s.web, "--json"]).ok().json();
    let drilled: Vec<&str> = report["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["service"].as_str().unwrap())
        .collect();
    assert_eq!(drilled.len(), 3, "{drilled:?}");
    assert_eq!(report["ok"], true, "{report:#}");
    assert!(drill_leftovers(&report["drill_id"]).is_empty());
}

#[test]
fn a_drill_fails_clearly_on_a_damaged_snapshot_and_still_cleans_up() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let name = unique("lbt-drillbad");
    let vol = unique("lbt-drillbad-data");
    let path = new_volume(&mut c, &vol);
    crate::stack::fill(&path.join("blob"), 8);
    run_sleeper(&mut c, &name, &["-v", &format!("{vol}:/data")]);
    lb.run(&["backup", &name]).ok();
    corrupt_largest_pack(&lb.repo(), 0.5);
    let run = lb.run(&["drill", &name, "--json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let report = run.json();
    assert_eq!(report["ok"], false);
    let svc = &report["services"][0];
    assert_eq!(svc["restored"], false);
    let error = svc["error"].as_str().unwrap();
    assert!(error.contains("blob"), "the damaged file is named: {error}");
    assert!(
        drill_leftovers(&report["drill_id"]).is_empty(),
        "left behind: {:?}",
        drill_leftovers(&report["drill_id"])
    );
    assert_eq!(inspect(&name, "{{.State.Running}}"), "true");
    assert!(drill_jobs(&lb).contains(&format!("{name} failed")));
}

#[test]
fn a_drill_checks_sqlite_integrity() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let name = unique("lbt-drillsql");
    let vol = unique("lbt-drillsql-data");
    let path = new_volume(&mut c, &vol);
    let db = path.join("app.db");
    let ok = Command::new("sqlite3")
        .arg(&db)
        .arg("PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1),(2),(3);")
        .status()
        .unwrap();
    assert!(ok.success());
    run_sleeper(&mut c, &name, &["-v", &format!("{vol}:/data")]);
    lb.run(&["backup", &name]).ok();
    let report = lb.run(&["drill", &name, "--json"]).ok().json();
    let probes = report["services"][0]["probes"].as_array().unwrap().clone();
    assert_eq!(probes.len(), 1, "{probes:?}");
    assert_eq!(probes[0]["name"], "sqlite integrity /data/app.db");
    assert_eq!(probes[0]["output"], "ok");
    assert!(drill_leftovers(&report["drill_id"]).is_empty());
}

#[test]
fn the_next_drill_removes_the_sandbox_a_killed_drill_left() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    // What a drill killed with SIGKILL leaves: a sandbox network, container and volume.
    let dead = format!("lbdrill-{:08x}", std::process::id() ^ 0xdead_0000);
    let early = format!("lbdrill-{:08x}", std::process::id() ^ 0xbeef_0000);
    // Held while the fake sandboxes are built, as a live drill would: drills running in
    // parallel tests must not clean them up half-made.
    let hold = |id: &str| {
        std::fs::create_dir_all("/run/lifeboat/locks").unwrap();
        let f = std::fs::File::create(format!("/run/lifeboat/locks/{id}.lock")).unwrap();
        f.lock().unwrap();
        f
    };
    let locks = (hold(&dead), hold(&early));
    let net = format!("{dead}-net");
    let stale = format!("{dead}-svc");
    let stale_vol = format!("{stale}_data");
    c.networks.push(net.clone());
    c.containers.push(stale.clone());
    c.volumes.push(stale_vol.clone());
    docker(&["network", "create", "--internal", &net]);
    docker(&[
        "run",
        "-d",
        "--name",
        &stale,
        "--network",
        &net,
        "-l",
        &format!("lifeboat.sandbox={net}"),
        "-v",
        &format!("{stale_vol}:/data"),
        BUSYBOX_IMAGE,
        "sleep",
        "86400",
    ]);
    // Killed earlier still: before any container existed.
    let (early_net, early_vol) = (format!("{early}-net"), format!("{early}-svc_data"));
    c.networks.push(early_net.clone());
    c.volumes.push(early_vol.clone());
    docker(&["network", "create", "--internal", &early_net]);
    docker(&["volume", "create", &early_vol]);
    drop(locks); // the "drills" die
    let name = unique("lbt-drillnext");
    run_sleeper(&mut c, &name, &[]);
    lb.run(&["backup", &name]).ok();
    lb.run(&["drill", &name]).ok();
    // Tests run in parallel: another test's drill may have done the cleaning; either way
    // nothing of the killed drills may remain once a drill ran.
    assert!(!docker_ok(&["inspect", &stale]));
    assert!(!docker_ok(&["volume", "inspect", &stale_vol]));
    assert!(!docker_ok(&["network", "inspect", &net]));
    assert!(!docker_ok(&["volume", "inspect", &early_vol]));
    assert!(!docker_ok(&["network", "inspect", &early_net]));
}

#[test]
fn a_drill_queries_restored_postgres_and_mariadb_servers() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let pg = unique("lbt-drillpg");
    let pg_vol = unique("lbt-drillpg-data");
    new_volume(&mut c, &pg_vol);
    crate::hot_postgres::start_server(&mut c, &pg, &pg_vol);
    docker(&["exec", "-d", &pg, "bash", "-c", crate::hot_postgres::WRITER]);
    let maria = unique("lbt-drillmaria");
    let maria_vol = unique("lbt-drillmaria-data");
    new_volume(&mut c, &maria_vol);
    crate::services::start_mariadb(&mut c, &maria, &maria_vol, &[]);
    crate::services::wait_until(
        "postgres rows",
        std::time::Duration::from_secs(30),
        20,
        || crate::services::acked(&pg),
    );
    lb.run(&["backup", &pg, &maria]).ok();
    let report = lb.run(&["drill", &pg, &maria, "--json"]).ok().json();
    assert_eq!(report["ok"], true, "{report:#}");
    let probe = |svc: &str| {
        report["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["service"] == svc)
            .unwrap()["probes"][0]
            .clone()
    };
    let p = probe(&pg);
    assert_eq!(
        (p["name"].as_str(), p["ok"].as_bool()),
        (Some("postgres query"), Some(true)),
        "{p}"
    );
    assert!(
        p["output"].as_str().unwrap().contains("agent"),
        "the restored cluster holds the agent database: {p}"
    );
    let m = probe(&maria);
    assert_eq!(
        (m["name"].as_str(), m["ok"].as_bool()),
        (Some("mariadb query"), Some(true)),
        "{m}"
    );
    assert!(
        m["output"].as_str().unwrap().trim().parse::<u64>().unwrap() >= 1,
        "user tables: {m}"
    );
    assert!(drill_leftovers(&report["drill_id"]).is_empty());
}

#[test]
fn a_drill_stopped_with_sigterm_leaves_no_sandbox_and_no_lock_file() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let name = unique("lbt-drillterm");
    let vol = unique("lbt-drillterm-data");
    crate::stack::fill(&new_volume(&mut c, &vol).join("blob"), 300);
    run_sleeper(&mut c, &name, &["-v", &format!("{vol}:/data")]);
    lb.run(&["backup", &name]).ok();
    let child = lb
        .command()
        .args(["drill", &name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // As soon as the sandbox copy of the volume exists, the drill is mid-restore.
    let t0 = std::time::Instant::now();
    let sandbox_vol = loop {
        let listed = docker(&["volume", "ls", "-q", "--filter", "name=lbdrill-"]);
        if let Some(v) = listed.lines().find(|v| v.ends_with(&format!("_{vol}"))) {
            break v.to_string();
        }
        assert!(
            t0.elapsed().as_secs() < 120,
            "the drill never created its sandbox"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let drill_id = sandbox_vol[..16].to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The signal handler tears the sandbox down; the drill's own teardown may get there
    // first when the interrupted restore fails at once. Either way nothing may remain.
    assert!(
        stderr.contains("removed the sandbox of interrupted drill")
            || stderr.contains("tearing down the sandbox"),
        "{stderr}"
    );
    assert!(
        !out.status.success(),
        "an interrupted drill does not report success"
    );
    for listing in [
        vec!["ps", "-aq", "--filter", "label=lifeboat.sandbox"],
        vec!["volume", "ls", "-q"],
        vec!["network", "ls", "-q", "--format", "{{.Name}}"],
    ] {
        let all = docker(&listing);
        assert!(
            !all.contains(&drill_id),
            "{listing:?} still lists {drill_id}: {all}"
        );
    }
    let lock = format!("/run/lifeboat/locks/{drill_id}.lock");
    assert!(!std::path::Path::new(&lock).exists(), "{lock} is left");
}
