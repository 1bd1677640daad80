//! Regions: copies of every backup in other repositories (a local directory, a real Garage
//! cluster), restored from there when the primary is gone, read by restic too.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lifeboat_testkit::garage::Garage;

use crate::common::*;

/// A config file naming regions: `(name, location, password file)`.
fn config(lb: &Lb, regions: &[(&str, &str, &Path)]) -> PathBuf {
    let mut text = String::new();
    for (name, location, pw) in regions {
        text.push_str(&format!(
            "[regions.{name}]\nlocation = \"{location}\"\npassword_file = \"{}\"\nschedule = \
             \"30m\"\n\n",
            pw.display()
        ));
    }
    let path = lb.state.path().join("regions.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn password_file(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(format!("{name}.pw"));
    std::fs::write(&p, format!("{name}-password-0123\n")).unwrap();
    p
}

/// restic on a region's repository.
fn restic(location: &str, pw: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut c = std::process::Command::new("restic");
    c.args(["-r", location, "--password-file"])
        .arg(pw)
        .arg("--no-cache")
        .args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("restic installed").into()
}

/// `lifeboat --config CFG --from REGION snapshots NAME --json`, with more environment.
fn region_backups(lb: &Lb, env: &[(&str, &str)], cfg: &str, region: &str, name: &str) -> Run {
    lb.run_env(
        env,
        &[
            "--config",
            cfg,
            "--from",
            region,
            "snapshots",
            name,
            "--json",
        ],
    )
}

fn tree_digest(dir: &Path) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum")
        .current_dir(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn backups_copied_to_a_region_restore_from_it_and_a_second_copy_sends_nothing() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let dir = tempfile::tempdir().unwrap();
    let east = dir.path().join("east");
    let pw = password_file(dir.path(), "east");
    let cfg = config(&lb, &[("east", east.to_str().unwrap(), &pw)]);
    let cfg = cfg.to_str().unwrap();
    let (name, vol) = (unique("lbt-region"), unique("lbt-region-vol"));
    let path = new_volume(&mut c, &vol);
    std::fs::write(path.join("state"), "first").unwrap();
    for i in 0..50 {
        std::fs::write(path.join(format!("f{i}")), format!("{i}").repeat(10_000)).unwrap();
    }
    run_sleeper(&mut c, &name, &["-v", &format!("{vol}:/data")]);

    // A region made for copies cuts files as the primary does.
    let made = lb
        .run(&["--config", cfg, "init", "--region", "east", "--json"])
        .ok()
        .json();
    assert_eq!(made["region"], "east");
    lb.run(&["backup", &name]).ok();
    std::fs::write(path.join("state"), "second").unwrap();
    lb.run(&["backup", &name]).ok();
    let want = tree_digest(&path);

    // Nothing is listed there before the copy; a dry run copies nothing.
    let before = region_backups(&lb, &[], cfg, "east", &name);
    assert_eq!(before.ok().json(), serde_json::json!([]));
    let plan = lb
        .run(&[
            "--config",
            cfg,
            "copy",
            "--to",
            "east",
            &name,
            "--dry-run",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(plan["copied"].as_array().unwrap().len(), 2, "{plan}");
    assert!(!east.join("snapshots").read_dir().unwrap().any(|_| true));

    let first = lb
        .run(&["--config", cfg, "copy", "--to", "east", "--all", "--json"])
        .ok()
        .json();
    assert_eq!(first["copied"].as_array().unwrap().len(), 2, "{first}");
    assert!(first["bytes_added"].as_u64().unwrap() > 0, "{first}");
    let again = lb
        .run(&["--config", cfg, "copy", "--to", "east", "--all", "--json"])
        .ok()
        .json();
    assert_eq!(again["copied"], serde_json::json!([]), "{again}");
    assert_eq!(again["already_there"], 2);
    assert_eq!(again["bytes_added"], 0);

    let listed = region_backups(&lb, &[], cfg, "east", &name).ok().json();
    let primary = lb.backups(&name);
    let ids = |rows: &serde_json::Value| -> Vec<String> {
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| r["backup_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&listed), ids(&serde_json::Value::Array(primary)));

    // The primary is gone: the service comes back from the region.
    docker(&["rm", "-f", &name]);
    docker(&["volume", "rm", &vol]);
    std::fs::remove_dir_all(lb.repo()).unwrap();
    // Without --from the restore says which region to use, and restores nothing.
    let offered = lb.run(&["--config", cfg, "restore", &name]);
    assert_ne!(offered.code, 0);
    assert!(
        offered.stderr.contains("region `east` holds the newest")
            && offered.stderr.contains("--from east"),
        "{}",
        offered.stderr
    );
    assert!(docker(&["ps", "-a", "-q", "--filter", &format!("name=^{name}$")]).is_empty());
    lb.run(&["--config", cfg, "--from", "east", "restore", &name])
        .ok();
    assert_eq!(tree_digest(&volume_path(&vol)), want);
    assert_eq!(inspect(&name, "{{.State.Running}}"), "true");
    // restic reads the region and finds every byte in order.
    let checked = restic(east.to_str().unwrap(), &pw, &[], &["check", "--read-data"]);
    assert_eq!(checked.code, 0, "{}{}", checked.stdout, checked.stderr);
    // Backups are taken in the primary only.
    let refused = lb.run(&["--config", cfg, "--from", "east", "backup", &name]);
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("lifeboat copy"),
        "{}",
        refused.stderr
    );
}

#[test]
fn a_copy_killed_mid_way_is_finished_by_the_next_without_duplicates() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let g = Garage::start();
    let dir = tempfile::tempdir().unwrap();
    let pw = password_file(dir.path(), "far");
    let far = g.location("far");
    let cfg = config(&lb, &[("far", &far, &pw)]);
    let cfg = cfg.to_str().unwrap();
    let env: Vec<(&str, &str)> = g
        .env
        .iter()
        .filter(|(k, _)| k.starts_with("AWS_"))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (name, vol) = (unique("lbt-cpkill"), unique("lbt-cpkill-vol"));
    let path = new_volume(&mut c, &vol);
    let made = std::process::Command::new("dd")
        .args(["if=/dev/urandom", "bs=1M", "count=300", "status=none"])
        .arg(format!("of={}", path.join("big").display()))
        .status()
        .unwrap();
    assert!(made.success());
    run_sleeper(&mut c, &name, &["-v", &format!("{vol}:/data")]);
    lb.run(&["backup", &name]).ok();
    lb.run_env(&env, &["--config", cfg, "init", "--region", "far"])
        .ok();

    // Killed while the data goes out.
    let mut copy = lb.command();
    for (k, v) in &env {
        copy.env(k, v);
    }
    let mut child = copy
        .args(["--config", cfg, "copy", "--to", "far", "--all"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the copy ended before it could be killed"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let cut = region_backups(&lb, &env, cfg, "far", &name).ok().json();
    assert_eq!(cut, serde_json::json!([]), "a half-copied backup is listed");

    let done = lb
        .run_env(
            &env,
            &["--config", cfg, "copy", "--to", "far", "--all", "--json"],
        )
        .ok()
        .json();
    assert_eq!(done["copied"].as_array().unwrap().len(), 1, "{done}");
    let listed = region_backups(&lb, &env, cfg, "far", &name).ok().json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    // One snapshot per part and one manifest, as in the primary: nothing twice.
    let count = |r: Run| r.json().as_array().unwrap().len();
    let primary = count(lb.restic(&["snapshots", "--json"]).ok());
    let region = count(restic(&far, &pw, &env, &["snapshots", "--json"]).ok());
    assert_eq!(region, primary);
    let checked = restic(&far, &pw, &env, &["check", "--read-data"]);
    assert_eq!(checked.code, 0, "{}{}", checked.stdout, checked.stderr);
}

#[test]
fn the_daemon_copies_to_each_region_on_its_schedule_and_a_region_down_catches_up_later() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let hook = lifeboat_testkit::http::Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let (east, late) = (dir.path().join("east"), dir.path().join("late"));
    let scope = unique("lbt-dregion");
    let (name, vol) = (unique("lbt-dregion-svc"), unique("lbt-dregion-vol"));
    let path = new_volume(&mut c, &vol);
    std::fs::write(path.join("state"), "copied").unwrap();
    crate::daemon::managed(&mut c, &scope, &name, Some(&vol), &["lifeboat.schedule=1h"]);
    let settings = format!(
        "webhook_url = \"{}/hook\"\n\n[regions.east]\nlocation = \"{}\"\nschedule = \"2s\"\n\
         rto = \"5m\"\nretention = \"last=1\"\n\n[regions.late]\nlocation = \"{}\"\nschedule = \"1h\"\n",
        hook.url,
        east.display(),
        late.display()
    );
    let first = lb.state.path().join("east.toml");
    let east_only = format!("[regions.east]\nlocation = \"{}\"\n", east.display());
    std::fs::write(&first, east_only).unwrap();
    lb.run(&[
        "--config",
        first.to_str().unwrap(),
        "init",
        "--region",
        "east",
    ])
    .ok();
    let d = crate::daemon::Daemon::start(&lb, &scope, &settings);
    let cfg = lb.state.path().join("lifeboat.toml");
    let cfg = cfg.to_str().unwrap();
    d.wait_until("the first backup", Duration::from_secs(60), || {
        crate::daemon::succeeded(&d.jobs(&name)) >= 1
    });
    // East gets it on its own schedule; `late` has no repository yet: its copies fail,
    // reported, and the primary's backups do not wait for it.
    d.wait_until("the copy to east", Duration::from_secs(60), || {
        let r = d.get("/api/v1/regions").json();
        r["regions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "east" && r["newest"][name.as_str()].is_string())
    });
    let failed = hook
        .wait_for("copy_failed", Duration::from_secs(30))
        .expect("a copy_failed webhook for the region that is down");
    assert!(failed.contains("`late`"), "{failed}");
    let lag = d.metric(&format!(
        "lifeboat_region_lag_seconds{{region=\"east\",service=\"{name}\"}}"
    ));
    assert!(lag.is_some_and(|l| l >= 0.0), "{}", d.get("/metrics").body);
    assert_eq!(
        d.metric(&format!(
            "lifeboat_region_rpo_breached{{region=\"east\",service=\"{name}\"}}"
        )),
        Some(0.0)
    );
    assert!(
        d.metric("lifeboat_region_copy_failures{region=\"late\"}")
            .is_some_and(|f| f >= 1.0)
    );
    let r = d.post(&format!("/api/v1/services/{name}/backup"), None);
    assert_eq!(r.status, 202);
    let id = r.json()["job_id"].as_i64().unwrap();
    assert_eq!(
        d.wait_job(id, Duration::from_secs(60))["state"],
        "succeeded"
    );

    // The region comes up: a failing region is retried with backoff (10 s, 20 s, ...), long
    // before its hourly slot, and catches up.
    lb.run(&["--config", cfg, "init", "--region", "late"]).ok();
    d.wait_until("the copy to late", Duration::from_secs(60), || {
        let listed = region_backups(&lb, &[], cfg, "late", &name);
        listed.code == 0 && listed.json().as_array().is_some_and(|a| a.len() == 2)
    });
    // East keeps only its newest copy (its own retention); the primary keeps both.
    let newest = lb.backups(&name).last().unwrap()["backup_id"].clone();
    assert_eq!(lb.backups(&name).len(), 2);
    d.wait_until("east's retention", Duration::from_secs(60), || {
        let listed = region_backups(&lb, &[], cfg, "east", &name);
        listed.code == 0
            && listed
                .json()
                .as_array()
                .is_some_and(|a| a.len() == 1 && a[0]["backup_id"] == newest)
    });
    d.wait_until("the failures to clear", Duration::from_secs(10), || {
        d.metric("lifeboat_region_copy_failures{region=\"late\"}") == Some(0.0)
    });
}

#[test]
fn scheduled_drills_rotate_through_the_regions_and_measure_each_against_its_rto() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let dir = tempfile::tempdir().unwrap();
    let (east, tight) = (dir.path().join("east"), dir.path().join("tight"));
    let pre = lb.state.path().join("pre.toml");
    std::fs::write(
        &pre,
        format!(
            "[regions.east]\nlocation = \"{}\"\n\n[regions.tight]\nlocation = \"{}\"\n",
            east.display(),
            tight.display()
        ),
    )
    .unwrap();
    for r in ["east", "tight"] {
        lb.run(&["--config", pre.to_str().unwrap(), "init", "--region", r])
            .ok();
    }
    let scope = unique("lbt-rdrill");
    let (name, vol) = (unique("lbt-rdrill-svc"), unique("lbt-rdrill-vol"));
    new_volume(&mut c, &vol);
    // Healthy only two seconds after it starts: every recovery takes longer than 1 s.
    let scope_label = format!("lifeboat.test={scope}");
    let mount = format!("{vol}:/data");
    c.containers.push(name.clone());
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "-l",
        "lifeboat.enable=true",
        "-l",
        &scope_label,
        "-l",
        "lifeboat.schedule=1h",
        "-l",
        "lifeboat.drill=3s",
        "-v",
        &mount,
        "--health-cmd",
        "test -f /tmp/up",
        "--health-interval",
        "1s",
        BUSYBOX_IMAGE,
        "sh",
        "-c",
        "sleep 2; touch /tmp/up; sleep 86400",
    ]);
    let settings = format!(
        "[regions.east]\nlocation = \"{}\"\nschedule = \"2s\"\nrto = \"5m\"\n\n\
         [regions.tight]\nlocation = \"{}\"\nschedule = \"2s\"\nrto = \"1s\"\n",
        east.display(),
        tight.display()
    );
    let d = crate::daemon::Daemon::start(&lb, &scope, &settings);
    let drilled = |region: &str| {
        let r = d.get("/api/v1/regions").json();
        r["regions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == region)
            .map(|r| r["drills"][name.as_str()].clone())
            .unwrap_or_default()
    };
    d.wait_until("a drill from each region", Duration::from_secs(180), || {
        drilled("east").is_object() && drilled("tight").is_object()
    });
    for region in ["east", "tight"] {
        assert_eq!(drilled(region)["ok"], true, "{region}: {}", d.log_text());
        let secs = d
            .metric(&format!(
                "lifeboat_region_recovery_seconds{{region=\"{region}\",service=\"{name}\"}}"
            ))
            .expect("a recovery time per region");
        assert!(secs >= 2.0, "{region}: {secs}");
    }
    let breached = |region: &str| {
        d.metric(&format!(
            "lifeboat_region_rto_breached{{region=\"{region}\",service=\"{name}\"}}"
        ))
    };
    assert_eq!(breached("east"), Some(0.0));
    assert_eq!(breached("tight"), Some(1.0));
    // The primary's own drills still verify its backups.
    assert!(d.service(&name)["last_verified_backup"].is_string());
    let from_primary = d
        .jobs(&name)
        .iter()
        .filter(|j| j["kind"] == "drill" && j["detail"]["region"].is_null())
        .count();
    assert!(from_primary >= 1);
    // The primary lost: the restore points at a copy a drill has proven.
    drop(d);
    std::fs::remove_dir_all(lb.repo()).unwrap();
    let cfg = lb.state.path().join("lifeboat.toml");
    let offered = lb.run(&["--config", cfg.to_str().unwrap(), "restore", &name]);
    assert_ne!(offered.code, 0);
    assert!(
        offered.stderr.contains("drill-verified copy") && offered.stderr.contains("--from "),
        "{}",
        offered.stderr
    );
}

#[test]
fn a_stack_whose_primary_cluster_is_lost_comes_back_healthy_from_the_far_region() {
    let mut c = Cleanup::default();
    let (primary, far_cluster) = (Garage::start(), Garage::start());
    let lb = Lb::uninitialised();
    let dir = tempfile::tempdir().unwrap();
    let near = dir.path().join("near");
    let far = far_cluster.location("far");
    let cfg = lb.state.path().join("regions.toml");
    std::fs::write(
        &cfg,
        format!(
            "[regions.near]\nlocation = \"{}\"\nschedule = \"10m\"\nrto = \"2m\"\n\n\
             [regions.far]\nlocation = \"{far}\"\nschedule = \"1h\"\nrto = \"5m\"\n",
            near.display()
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    // Both clusters share the test account; the primary is a bucket of the first.
    let location = primary.location("primary");
    let account: Vec<(String, String)> = primary
        .env
        .iter()
        .filter(|(k, _)| k.starts_with("AWS_"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut env: Vec<(&str, &str)> = account
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    env.push(("LIFEBOAT_REPOSITORY", &location));
    env.push(("LIFEBOAT_PASSWORD", "stack-password-0123"));
    let run = |args: &[&str]| lb.run_env(&env, args);
    run(&["init"]).ok();
    run(&["--config", cfg, "init", "--region", "near"]).ok();
    run(&["--config", cfg, "init", "--region", "far"]).ok();

    let s = crate::stack::Stack::start(&mut c, 4);
    std::thread::sleep(Duration::from_secs(2));
    assert!(s.count_via_web() > 0);
    run(&["backup", "--project", &s.project]).ok();
    for region in ["near", "far"] {
        let copied = run(&["--config", cfg, "copy", "--to", region, "--all", "--json"])
            .ok()
            .json();
        assert_eq!(copied["copied"].as_array().unwrap().len(), 3, "{copied}");
    }

    // The host and the primary's whole cluster are lost.
    s.destroy();
    drop(primary);
    let lost = run(&["snapshots"]);
    assert_ne!(lost.code, 0, "the primary still answers");
    let out = run(&[
        "--config",
        cfg,
        "--from",
        "far",
        "restore",
        "--project",
        &s.project,
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(out["ok"], true, "{out}");
    for n in [&s.db, &s.agent, &s.web] {
        assert_eq!(inspect(n, "{{.State.Health.Status}}"), "healthy", "{n}");
    }
    assert!(s.count_via_web() > 0, "the chain answers again");
    // Its recovery time from the far region, against that region's objective (5 minutes).
    let drill = run(&[
        "--config",
        cfg,
        "--from",
        "far",
        "drill",
        "--project",
        &s.project,
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(drill["ok"], true, "{drill}");
    let seconds = drill["recovery_seconds"].as_f64().unwrap();
    assert!(
        seconds > 0.0 && seconds < 300.0,
        "recovery {seconds}s against an RTO of 300s"
    );
    eprintln!("recovery from the far region: {seconds:.1} s (RTO 300 s)");
    c.containers
        .extend([s.db.clone(), s.agent.clone(), s.web.clone()]);
    c.volumes.extend(s.volumes.iter().cloned());
    c.networks.push(s.network.clone());
}
