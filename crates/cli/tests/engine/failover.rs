//! Host failover on real simulated hosts: two extra Docker engines, each in its own network
//! namespace, a real 3-member etcd, one daemon per host sharing one repository. A whole host
//! killed (its engine, containers and daemon) has its `lifeboat.failover=auto` stack back on
//! the other host, healthy, with the newest backup's data; the host started again stops its
//! stale copies, so no service runs twice.

use std::time::{Duration, Instant};

use lifeboat_testkit::etcd::Etcd;

use crate::cluster::cluster;
use crate::common::*;
use crate::daemon::Daemon;
use crate::hosts::TestHost;

/// The member settings of `host`: the shared repository of `first`, etcd, a short lease and
/// failover delay.
fn settings(first: &Lb, etcd: &Etcd, host: &str) -> String {
    format!(
        "[cluster]\netcd = {}\nhost = \"{host}\"\nlease_ttl = \"2s\"\nfailover_after = \"3s\"\n\n\
         [repository]\nlocation = \"{}\"\npassword_file = \"{}\"\n",
        etcd.toml_list(),
        first.repo().display(),
        first.key_file().display()
    )
}

/// Where the cluster says `service` lives, and in which state.
fn owner(d: &Daemon, service: &str) -> Option<(String, String)> {
    cluster(d)["services"]
        .as_array()?
        .iter()
        .find(|o| o["service"] == service)
        .map(|o| {
            (
                o["host"].as_str().unwrap_or("").to_string(),
                o["state"].as_str().unwrap_or("").to_string(),
            )
        })
}

/// One service of the stack: busybox with its data in volume `<name>_data`, healthy once its
/// data is there, restarted by its engine unless stopped.
fn run_service(host: &TestHost, scope: &str, name: &str, depends_on: Option<&str>) {
    let mut args = vec![
        "run".to_string(),
        "-d".into(),
        "--name".into(),
        name.into(),
        "--restart".into(),
        "unless-stopped".into(),
        "-v".into(),
        format!("{name}_data:/data"),
        "--health-cmd".into(),
        "test -f /data/v".into(),
        "--health-interval".into(),
        "1s".into(),
    ];
    for l in [
        "lifeboat.enable=true".to_string(),
        format!("lifeboat.test={scope}"),
        "lifeboat.schedule=1h".into(),
        "lifeboat.failover=auto".into(),
        "lifeboat.failover-hosts=h2".into(),
        "com.docker.compose.project=shop".into(),
        format!("com.docker.compose.service={name}"),
    ] {
        args.extend(["-l".into(), l]);
    }
    if let Some(d) = depends_on {
        args.extend(["-l".into(), format!("lifeboat.depends-on={d}")]);
    }
    args.extend([
        BUSYBOX_IMAGE.into(),
        "sh".into(),
        "-c".into(),
        "[ -f /data/v ] || echo v0 > /data/v; exec sleep 86400".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    host.docker(&args);
}

/// `MB` megabytes of random data and a version mark in each service's volume.
fn write_data(host: &TestHost, name: &str, version: &str, mb: u64) {
    host.docker(&[
        "exec",
        name,
        "sh",
        "-c",
        &format!(
            "dd if=/dev/urandom of=/data/blob bs=1M count={} 2>/dev/null && echo {version} > /data/v && sync",
            mb.max(1)
        ),
    ]);
    let t0 = Instant::now();
    while !state_of(host, name).starts_with("true healthy") {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{name} never healthy"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn back_up(d: &Daemon, name: &str) {
    let r = d.post(&format!("/api/v1/services/{name}/backup"), None);
    assert_eq!(r.status, 202, "{}", r.body);
    let job = d.wait_job(
        r.json()["job_id"].as_i64().unwrap(),
        Duration::from_secs(300),
    );
    assert_eq!(job["state"], "succeeded", "{job}");
}

/// Running, health and restart policy of the container `name`; empty while there is none (it
/// may be removed and created again by a restore between two looks).
fn state_of(host: &TestHost, name: &str) -> String {
    host.docker_try(&[
        "inspect",
        // Only the container counts: while the restore ran, `inspect db` once found an
        // object without a State.
        "--type",
        "container",
        "-f",
        "{{.State.Running}} {{if .State.Health}}{{.State.Health.Status}}{{end}} {{.HostConfig.RestartPolicy.Name}}",
        name,
    ])
    .unwrap_or_default()
}

/// The benchmark's reference: restic restores the same three volume snapshots (the newest
/// backup of each service) from the same repository, one after the other.
fn restic_side_by_side(lb: &Lb, cold: bool) {
    let target = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    for (name, _) in STACK {
        let listed = lb
            .run(&["snapshots", name, "--all-hosts", "--json"])
            .ok()
            .json();
        let newest = listed.as_array().and_then(|a| a.last()).cloned().unwrap();
        for p in newest["parts"].as_array().unwrap() {
            if p["kind"] == "volume" {
                ids.push(p["snapshot_id"].as_str().unwrap().to_string());
            }
        }
    }
    if cold {
        assert!(crate::hosts::sh("sync; echo 3 > /proc/sys/vm/drop_caches"));
    }
    let t0 = Instant::now();
    for (i, id) in ids.iter().enumerate() {
        let to = target.path().join(i.to_string());
        let r = lb.restic(&["restore", id, "--target", to.to_str().unwrap()]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    eprintln!(
        "failover: restic restores the same {} volume snapshots in {:.1}s",
        ids.len(),
        t0.elapsed().as_secs_f64()
    );
}

const STACK: [(&str, Option<&str>); 3] = [("db", None), ("cache", None), ("web", Some("db"))];

#[test]
fn a_dead_hosts_failover_stack_comes_back_healthy_elsewhere_and_never_runs_twice() {
    // LIFEBOAT_FAILOVER_MB per service: bench/failover.sh sets it for the 1 GB stack.
    let mb: u64 = std::env::var("LIFEBOAT_FAILOVER_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let etcd = Etcd::start();
    let mut h1 = TestHost::start("h1", &[]);
    let h2 = TestHost::start("h2", &[]);
    let lbs = [Lb::new(), Lb::uninitialised()];
    let scope = unique("lbt-failover");
    let start = |i: usize, host: &TestHost| {
        let name = format!("h{}", i + 1);
        let dh = host.docker_host();
        Daemon::start_env(
            &lbs[i],
            &scope,
            &settings(&lbs[0], &etcd, &name),
            &[("DOCKER_HOST", dh.as_str())],
        )
    };
    for (name, dep) in STACK {
        run_service(&h1, &scope, name, dep);
    }
    let mut d1 = start(0, &h1);
    let d2 = start(1, &h2);
    for (name, _) in STACK {
        write_data(&h1, name, "v1", mb);
        back_up(&d1, name);
    }
    // The newest backup: what must come back. v3 is never backed up.
    for (name, _) in STACK {
        write_data(&h1, name, "v2", mb);
        back_up(&d1, name);
        write_data(&h1, name, "v3", 1);
    }
    d2.wait_until(
        "both hosts registered and the stack owned by h1",
        Duration::from_secs(20),
        || {
            cluster(&d2)["hosts"]
                .as_array()
                .is_some_and(|h| h.len() == 2)
                && STACK
                    .iter()
                    .all(|(n, _)| owner(&d2, n) == Some(("h1".into(), "running".into())))
        },
    );

    // bench/failover.sh: the cold row starts with the page cache dropped.
    let cold = std::env::var("LIFEBOAT_FAILOVER_COLD").is_ok_and(|v| v == "1");
    if cold {
        assert!(crate::hosts::sh("sync; echo 3 > /proc/sys/vm/drop_caches"));
    }
    // The whole host dies: its containers, its engine, its daemon.
    d1.child.kill().unwrap();
    d1.child.wait().unwrap();
    h1.kill();
    let t0 = Instant::now();
    d2.wait_until("the stack healthy on h2", Duration::from_secs(120), || {
        STACK
            .iter()
            .all(|(n, _)| state_of(&h2, n).starts_with("true healthy"))
    });
    let failover_s = t0.elapsed().as_secs_f64();
    eprintln!("failover: host killed to its 3-service stack healthy on h2 in {failover_s:.1}s");
    assert!(failover_s < 120.0);
    for (name, _) in STACK {
        assert_eq!(h2.docker(&["exec", name, "cat", "/data/v"]), "v2", "{name}");
        assert_eq!(
            h2.docker(&["exec", name, "sh", "-c", "wc -c < /data/blob"]),
            (mb.max(1) * 1024 * 1024).to_string()
        );
    }
    d2.wait_until(
        "the cluster records the stack on h2",
        Duration::from_secs(20),
        || {
            STACK
                .iter()
                .all(|(n, _)| owner(&d2, n) == Some(("h2".into(), "running".into())))
        },
    );
    assert_eq!(
        d2.metric(
            "lifeboat_cluster_failover_service{service=\"db\",host=\"h2\",state=\"running\"}"
        ),
        Some(1.0)
    );
    let cfg = lbs[1].state.path().join("lifeboat.toml");
    let status = lbs[1].run(&["--config", cfg.to_str().unwrap(), "cluster", "status"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()[..] == ["web", "h2", "running"]),
        "{}",
        status.stdout
    );
    let jobs = d2.jobs("failover%23shop");
    assert_eq!(jobs.len(), 1, "one failover job: {jobs:?}");
    assert_eq!(jobs[0]["state"], "succeeded", "{}", jobs[0]);
    assert_eq!(jobs[0]["detail"]["from"], "h1");
    let restore_s = jobs[0]["detail"]["seconds"].as_f64().unwrap();
    eprintln!("failover: of which the stack restore on h2 took {restore_s:.1}s");
    if std::env::var("LIFEBOAT_FAILOVER_BENCH").is_ok_and(|v| v == "1") {
        restic_side_by_side(&lbs[0], cold);
    }
    // Dependency order: db and cache first, web once db was healthy.
    assert_eq!(
        jobs[0]["detail"]["levels"],
        serde_json::json!([["cache", "db"], ["web"]])
    );

    // The host comes back: its engine restarts the stale copies by itself...
    h1.start_engine();
    let t1 = Instant::now();
    while !state_of(&h1, "db").starts_with("true") && t1.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        state_of(&h1, "db").starts_with("true"),
        "the engine restarted its copy"
    );
    // ...and its daemon stops them before anything else, for good.
    d1 = start(0, &h1);
    d1.wait_until("h1's stale copies stopped", Duration::from_secs(20), || {
        STACK.iter().all(|(n, _)| {
            state_of(&h1, n).starts_with("false") && state_of(&h1, n).ends_with(" no")
        })
    });
    std::thread::sleep(Duration::from_secs(5));
    for (name, _) in STACK {
        assert!(
            state_of(&h1, name).starts_with("false"),
            "{name} stays stopped on h1"
        );
        assert!(
            state_of(&h2, name).starts_with("true healthy"),
            "{name} runs on h2"
        );
        assert_eq!(owner(&d1, name), Some(("h2".into(), "running".into())));
        // h1 no longer manages it: no backup of the stale copy, no recovery.
        assert_eq!(d1.get(&format!("/api/v1/services/{name}")).status, 404);
    }
    assert!(
        d1.log_text()
            .contains("copy of a service that moved was stopped"),
        "{}",
        d1.log_text()
    );
    // h2 backs the moved stack up as its own now.
    back_up(&d2, "db");
    drop((d1, d2));
}
