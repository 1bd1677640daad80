//! Cluster mode against a real 3-member etcd: several real daemons sharing one repository,
//! one leader, repository-wide jobs once per slot, takeover after SIGKILL, a frozen
//! (SIGSTOP) leader fenced off, and etcd members lost.

use std::path::Path;
use std::time::{Duration, Instant};

use lifeboat_testkit::etcd::Etcd;

use crate::common::*;
use crate::daemon::{Daemon, managed, succeeded};

/// The settings of member `host`: the shared repository of `first`, etcd, and `more`
/// `[daemon]` settings (written first).
fn member_settings(first: &Lb, etcd: &Etcd, host: &str, more: &str) -> String {
    format!(
        "{more}\n[cluster]\netcd = {}\nhost = \"{host}\"\nlease_ttl = \"3s\"\n\n[repository]\n\
         location = \"{}\"\npassword_file = \"{}\"\n",
        etcd.toml_list(),
        first.repo().display(),
        first.key_file().display()
    )
}

/// `GET /api/v1/cluster` of `d` (null outside a cluster or when it does not answer).
pub fn cluster(d: &Daemon) -> serde_json::Value {
    let r = d.get("/api/v1/cluster");
    if r.status == 200 {
        r.json()
    } else {
        serde_json::Value::Null
    }
}

fn leading(d: &Daemon) -> bool {
    cluster(d)["leading"] == true
}

/// The repository-wide jobs of `service` (`repository#check`...) in `d`'s history.
fn wide_jobs(d: &Daemon, service: &str) -> Vec<serde_json::Value> {
    d.jobs(&service.replace('#', "%23"))
}

/// Slots of those jobs, each job once.
fn slots(jobs: &[serde_json::Value]) -> Vec<i64> {
    jobs.iter()
        .filter_map(|j| j["detail"]["slot"].as_i64())
        .collect()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().strip_prefix(dir).unwrap().display().to_string())
        .collect();
    out.sort();
    out
}

#[test]
fn the_leader_killed_with_sigkill_hands_over_within_ten_seconds_and_each_slot_runs_once() {
    let etcd = Etcd::start();
    let first = Lb::new();
    let scope = unique("lbt-cluster");
    // A region copied to every 10 s, the repository checked and pruned every 10 s.
    let region = first.state.path().join("near");
    let pre = first.state.path().join("pre.toml");
    let region_section = format!(
        "[regions.near]\nlocation = \"{}\"\npassword_file = \"{}\"\nschedule = \"10s\"\n",
        region.display(),
        first.key_file().display()
    );
    std::fs::write(&pre, &region_section).unwrap();
    first
        .run(&[
            "--config",
            pre.to_str().unwrap(),
            "init",
            "--region",
            "near",
        ])
        .ok();
    let lbs = [first, Lb::uninitialised(), Lb::uninitialised()];
    let settings = |host: &str| {
        format!(
            "{}\n{region_section}",
            member_settings(&lbs[0], &etcd, host, "check = \"10s\"\nprune = \"10s\"")
        )
    };
    let mut daemons: Vec<Option<Daemon>> = ["h1", "h2", "h3"]
        .iter()
        .zip(&lbs)
        .map(|(h, lb)| Some(Daemon::start(lb, &format!("{scope}-{h}"), &settings(h))))
        .collect();
    let any = |ds: &[Option<Daemon>]| ds.iter().flatten().next().map(cluster);
    let d0 = daemons[0].as_ref().unwrap();
    d0.wait_until(
        "three hosts registered and one leader",
        Duration::from_secs(20),
        || {
            let v = cluster(d0);
            v["hosts"].as_array().is_some_and(|h| h.len() == 3) && v["leader"].is_string()
        },
    );
    let count_leading = |ds: &[Option<Daemon>]| ds.iter().flatten().filter(|d| leading(d)).count();
    assert_eq!(count_leading(&daemons), 1, "{:?}", any(&daemons));
    std::thread::sleep(Duration::from_secs(22));
    let leader = daemons
        .iter()
        .position(|d| d.as_ref().is_some_and(leading))
        .expect("a leader");
    let old_host = format!("h{}", leader + 1);
    let mut killed = daemons[leader].take().unwrap();
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    let t0 = Instant::now();
    let survivor = daemons.iter().flatten().next().unwrap();
    survivor.wait_until("a standby leads", Duration::from_secs(15), || {
        count_leading(&daemons) == 1
    });
    let takeover = t0.elapsed().as_secs_f64();
    assert!(takeover < 10.0, "takeover took {takeover:.1}s");
    let new_leader = daemons.iter().flatten().find(|d| leading(d)).unwrap();
    let new_host = cluster(new_leader)["host"].as_str().unwrap().to_string();
    assert_ne!(new_host, old_host);
    assert_eq!(
        new_leader.metric(&format!("lifeboat_cluster_leader{{host=\"{new_host}\"}}")),
        Some(1.0)
    );
    std::thread::sleep(Duration::from_secs(22));
    // The killed daemon's history is read back by starting it again: it rejoins as a
    // standby and does not take the lead from the new leader.
    drop(killed);
    daemons[leader] = Some(Daemon::start(
        &lbs[leader],
        &format!("{scope}-{old_host}"),
        &settings(&old_host),
    ));
    let back = daemons[leader].as_ref().unwrap();
    back.wait_until(
        "the returning host registers",
        Duration::from_secs(10),
        || {
            cluster(back)["hosts"]
                .as_array()
                .is_some_and(|h| h.len() == 3)
        },
    );
    assert!(!leading(back), "the returning daemon took the lead back");
    assert_eq!(cluster(back)["leader"], new_host.as_str());
    let services = ["repository#check", "repository#prune", "region#near"];
    let recorded = |service: &str| -> Vec<i64> {
        daemons
            .iter()
            .flatten()
            .flat_map(|d| slots(&wide_jobs(d, service)))
            .collect()
    };
    // A loaded machine runs fewer slots in the fixed sleeps: wait (a bounded while) for
    // four of each to have ended before judging them.
    let t1 = Instant::now();
    while !services.iter().all(|s| recorded(s).len() >= 4) {
        assert!(
            t1.elapsed() < Duration::from_secs(60),
            "fewer than four ended slots of a repository-wide job: {:?}",
            services.map(|s| (s, recorded(s)))
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    for service in services {
        let mut all = recorded(service);
        all.sort();
        let n = all.len();
        all.dedup();
        assert_eq!(all.len(), n, "{service}: a slot ran twice: {all:?}");
        assert!(n >= 4, "{service}: only {n} slots ran: {all:?}");
        let (lo, hi) = (all[0], all[n - 1]);
        assert_eq!(
            (hi - lo + 1) as usize,
            n,
            "{service}: a slot was skipped across the takeover: {all:?}"
        );
    }
    // Every claim is under a lease of its own: etcd forgets it once its window is long past.
    let claims = lifeboat_daemon::etcd::Etcd::new(&etcd.endpoints, Duration::from_secs(2))
        .list("/lifeboat/claims/")
        .unwrap();
    assert!(claims.len() >= 12, "{} claims", claims.len());
    assert!(
        claims.iter().all(|k| k.lease != 0),
        "a claim without a lease: {claims:?}"
    );
    // Both leaders ran repository-wide jobs; standbys never did.
    let ran_on: Vec<usize> = daemons
        .iter()
        .flatten()
        .map(|d| wide_jobs(d, "repository#check").len())
        .collect();
    assert_eq!(
        ran_on.iter().filter(|n| **n > 0).count(),
        2,
        "check jobs per daemon: {ran_on:?}"
    );
}

#[test]
fn a_leader_frozen_past_its_lease_never_deletes_and_does_not_lead_again() {
    let etcd = Etcd::start();
    let first = Lb::new();
    let mut c = Cleanup::default();
    let scope = unique("lbt-frozen");
    // Data for the prune to remove: a backup, forgotten behind Lifeboat's back.
    let name = unique("lbt-frozen-svc");
    let vol = unique("lbt-frozen-data");
    let data = new_volume(&mut c, &vol);
    std::fs::write(data.join("blob"), vec![7u8; 3 << 20]).unwrap();
    run_sleeper(&mut c, &name, &["-v", &format!("{vol}:/data")]);
    first.run(&["backup", &name]).ok();
    let snaps = first.restic(&["snapshots", "--json"]).ok().json();
    let ids: Vec<&str> = snaps
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert!(!ids.is_empty());
    let mut forget = vec!["forget"];
    forget.extend(&ids);
    first.restic(&forget).ok();
    let lbs = [first, Lb::uninitialised()];
    // The prune's slot is an hour long: only the first leader's claim exists.
    let settings = |host: &str| member_settings(&lbs[0], &etcd, host, "prune = \"1h\"");
    let pause = [("LIFEBOAT_TEST_PRUNE_PAUSE_MS", "8000")];
    let h1 = Daemon::start_env(&lbs[0], &format!("{scope}-1"), &settings("h1"), &pause);
    h1.wait_until("h1 leads", Duration::from_secs(15), || leading(&h1));
    let h2 = Daemon::start_env(&lbs[1], &format!("{scope}-2"), &settings("h2"), &pause);
    let prune = || wide_jobs(&h1, "repository#prune");
    h1.wait_until("h1's prune is planned", Duration::from_secs(30), || {
        prune().iter().any(|j| {
            j["progress"].as_array().is_some_and(|p| {
                p.iter()
                    .any(|s| s["step"].as_str().unwrap_or("").contains("pausing"))
            })
        })
    });
    let repo = lbs[0].repo();
    let content = || ["index", "data", "snapshots"].map(|d| listing(&repo.join(d)));
    let before = content();
    h1.signal("STOP");
    h2.wait_until(
        "h2 takes over from the frozen leader",
        Duration::from_secs(15),
        || leading(&h2),
    );
    h1.signal("CONT");
    let id = prune()[0]["id"].as_i64().unwrap();
    let job = h1.wait_job(id, Duration::from_secs(30));
    assert_eq!(job["state"], "failed", "{job}");
    let error = job["error"].as_str().unwrap_or("");
    assert!(error.contains("no longer leads"), "{error}");
    assert_eq!(
        content(),
        before,
        "the fenced-off prune changed the repository"
    );
    assert!(
        !leading(&h1),
        "the resumed daemon still counts itself leader"
    );
    h1.wait_until("h1 sees h2 as leader", Duration::from_secs(10), || {
        cluster(&h1)["leader"] == "h2"
    });
    assert_eq!(h1.metric("lifeboat_cluster_leader{host=\"h1\"}"), Some(0.0));
    // The new leader finds the slot claimed but never finished: it runs that prune, once,
    // to its end.
    let h1_slot = slots(std::slice::from_ref(&job));
    assert_eq!(h1_slot.len(), 1, "{job}");
    h2.wait_until(
        "h2 runs the prune h1 left unfinished",
        Duration::from_secs(60),
        || slots(&wide_jobs(&h2, "repository#prune")).contains(&h1_slot[0]),
    );
    // A run that crosses the hour also prunes the next hour's slot: wait for every prune to
    // end, then h1's slot must have been pruned once, and no slot before it.
    h2.wait_until("h2's prunes end", Duration::from_secs(60), || {
        wide_jobs(&h2, "repository#prune")
            .iter()
            .all(|j| j["finished_at"].is_string())
    });
    let h2_prunes = wide_jobs(&h2, "repository#prune");
    assert!(
        h2_prunes.iter().all(|j| j["state"] == "succeeded"),
        "{h2_prunes:?}"
    );
    let h2_slots = slots(&h2_prunes);
    assert_eq!(h2_slots.len(), h2_prunes.len(), "{h2_prunes:?}");
    assert_eq!(
        h2_slots.iter().filter(|s| **s == h1_slot[0]).count(),
        1,
        "h1's slot pruned once: {h2_prunes:?}"
    );
    assert!(
        h2_slots.iter().all(|s| *s >= h1_slot[0]),
        "h2 ran an earlier window's prune: {h2_prunes:?}"
    );
    // (A first prune marks unused packs for deletion in a new index; they go later.)
    assert_ne!(
        content(),
        before,
        "h2's prune changed nothing: {h2_prunes:?}"
    );
}

#[test]
fn with_etcd_gone_backups_go_on_and_no_repository_wide_job_runs_until_it_returns() {
    let etcd = Etcd::start();
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let scope = unique("lbt-etcd-gone");
    managed(&mut c, &scope, &scope, None, &["lifeboat.schedule=3s"]);
    let settings = member_settings(&lb, &etcd, "h1", "check = \"2s\"");
    let d = Daemon::start(&lb, &scope, &settings);
    d.wait_until("it leads and checks", Duration::from_secs(20), || {
        !wide_jobs(&d, "repository#check").is_empty()
    });
    // One member lost: the cluster goes on.
    etcd.kill_member(1);
    let checks = wide_jobs(&d, "repository#check").len();
    d.wait_until(
        "checks go on with two members",
        Duration::from_secs(15),
        || wide_jobs(&d, "repository#check").len() >= checks + 2,
    );
    assert!(leading(&d));
    // All lost: backups go on, repository-wide jobs stop.
    etcd.kill_member(2);
    etcd.kill_member(3);
    d.wait_until("the daemon sees etcd gone", Duration::from_secs(15), || {
        d.metric("lifeboat_cluster_etcd_up") == Some(0.0) && !leading(&d)
    });
    let checks = wide_jobs(&d, "repository#check").len();
    let backups = succeeded(&d.jobs(&scope));
    std::thread::sleep(Duration::from_secs(10));
    assert!(
        succeeded(&d.jobs(&scope)) >= backups + 2,
        "backups stopped without etcd"
    );
    assert_eq!(
        wide_jobs(&d, "repository#check").len(),
        checks,
        "a repository-wide job ran without etcd"
    );
    for n in 1..=3 {
        etcd.start_member(n);
    }
    d.wait_until("it leads and checks again", Duration::from_secs(30), || {
        wide_jobs(&d, "repository#check").len() > checks
    });
    assert_eq!(d.metric("lifeboat_cluster_etcd_up"), Some(1.0));
    let out = lb.run(&[
        "--config",
        lb.state.path().join("lifeboat.toml").to_str().unwrap(),
        "cluster",
        "status",
        "--json",
    ]);
    let v = out.ok().json();
    assert_eq!(v["leader"], "h1");
    assert!(
        v["hosts"][0]["services"]
            .as_array()
            .is_some_and(|s| s.iter().any(|n| n == scope.as_str())),
        "{v}"
    );
}

/// The ids of `name`'s backups in the repository (any host's), oldest first.
fn backup_ids(lb: &Lb, name: &str) -> Vec<String> {
    let listed = lb
        .run(&["snapshots", name, "--all-hosts", "--json"])
        .ok()
        .json();
    let mut b = listed.as_array().cloned().unwrap_or_default();
    b.sort_by(|x, y| x["time"].as_str().cmp(&y["time"].as_str()));
    b.iter()
        .map(|b| b["backup_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_leader_drills_every_hosts_services_and_their_own_host_counts_the_result() {
    let etcd = Etcd::start();
    let lbs = [Lb::new(), Lb::uninitialised()];
    let mut c = Cleanup::default();
    let scope = unique("lbt-cdrill");
    // h1 leads (it starts alone); the service runs on h2.
    let mut h1 = Daemon::start(
        &lbs[0],
        &format!("{scope}-h1"),
        &member_settings(&lbs[0], &etcd, "h1", ""),
    );
    h1.wait_until("h1 leads", Duration::from_secs(20), || leading(&h1));
    let name = format!("{scope}-svc");
    let vol = unique("lbt-cdrill-data");
    new_volume(&mut c, &vol);
    managed(
        &mut c,
        &format!("{scope}-h2"),
        &name,
        Some(&vol),
        &[
            "lifeboat.schedule=1h",
            "lifeboat.retention=last=1",
            "lifeboat.drill=10s",
        ],
    );
    let h2 = Daemon::start(
        &lbs[1],
        &format!("{scope}-h2"),
        &member_settings(&lbs[0], &etcd, "h2", ""),
    );
    let drills = |d: &Daemon| -> Vec<serde_json::Value> {
        d.jobs(&name)
            .into_iter()
            .filter(|j| j["kind"] == "drill")
            .collect()
    };
    // The first backup is drilled by the leader, and h2 records that drill as its own.
    h2.wait_until(
        "h2 counts the leader's drill of its first backup",
        Duration::from_secs(90),
        || h2.service(&name)["last_verified_backup"].is_string(),
    );
    let first = backup_ids(&lbs[0], &name);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(h2.service(&name)["last_verified_backup"], first[0].as_str());
    let ran_on_h1 = drills(&h1);
    assert!(
        ran_on_h1
            .iter()
            .any(|j| j["state"] == "succeeded" && j["backup_id"] == first[0].as_str()),
        "{ran_on_h1:?}"
    );
    let recorded = drills(&h2);
    assert!(
        recorded.iter().all(|j| j["trigger"]
            .as_str()
            .unwrap()
            .starts_with("drill on h1, job ")),
        "h2 ran a drill itself: {recorded:?}"
    );

    // A second backup; once the leader's drill verifies it, h2's third backup lets
    // `last=1` delete the first and keep the verified second.
    let r = h2.post(&format!("/api/v1/services/{name}/backup"), None);
    let job = h2.wait_job(
        r.json()["job_id"].as_i64().unwrap(),
        Duration::from_secs(60),
    );
    assert_eq!(job["state"], "succeeded", "{job}");
    let second = job["backup_id"].as_str().unwrap().to_string();
    h2.wait_until(
        "h2 counts the leader's drill of its second backup",
        Duration::from_secs(60),
        || h2.service(&name)["last_verified_backup"] == second.as_str(),
    );
    let r = h2.post(&format!("/api/v1/services/{name}/backup"), None);
    let job = h2.wait_job(
        r.json()["job_id"].as_i64().unwrap(),
        Duration::from_secs(60),
    );
    assert_eq!(job["state"], "succeeded", "{job}");
    let third = job["backup_id"].as_str().unwrap().to_string();
    let kept = backup_ids(&lbs[0], &name);
    // (A leader's drill may have verified the third in between: then only it is kept.)
    assert!(
        kept == [second.clone(), third.clone()] || kept == [third.clone()],
        "h2's retention did not count the leader's verification: kept {kept:?}, \
         backups {first:?} {second} {third}"
    );
    assert!(!kept.contains(&first[0]));

    // h2's history read on h1's side, through h2's API (`--host h2 jobs`).
    let cfg = lbs[0].state.path().join("lifeboat.toml");
    let cfg = cfg.to_str().unwrap();
    let token = [("LIFEBOAT_API_TOKEN", crate::daemon::TOKEN)];
    let ids = |jobs: &[serde_json::Value]| -> Vec<i64> {
        jobs.iter().filter_map(|j| j["id"].as_i64()).collect()
    };
    let args = [
        "--config", cfg, "--host", "h2", "jobs", &name, "--kind", "backup",
    ];
    let remote = lbs[0]
        .run_env(&token, &[&args[..], &["--json"]].concat())
        .ok()
        .json();
    let on_h2: Vec<_> = h2
        .jobs(&name)
        .into_iter()
        .filter(|j| j["kind"] == "backup")
        .collect();
    assert_eq!(ids(remote.as_array().unwrap()), ids(&on_h2), "{remote}");
    assert!(on_h2.len() >= 3, "{on_h2:?}");
    let table = lbs[0].run_env(&token, &args).ok().stdout;
    assert!(
        table.contains(&name) && table.contains("succeeded"),
        "{table}"
    );
    let refused = lbs[0].run(&args);
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("LIFEBOAT_API_TOKEN"),
        "{}",
        refused.stderr
    );
    let unknown = lbs[0].run_env(&token, &["--config", cfg, "--host", "h9", "jobs"]);
    assert_ne!(unknown.code, 0);
    assert!(
        unknown.stderr.contains("`h9`")
            && unknown.stderr.contains("h1")
            && unknown.stderr.contains("h2"),
        "{}",
        unknown.stderr
    );

    // The leader killed: h2 leads and drills its own service, never in a slot h1 ran.
    let ran_on_h1 = drills(&h1);
    h1.child.kill().unwrap();
    h1.child.wait().unwrap();
    h2.wait_until("h2 leads and drills", Duration::from_secs(60), || {
        drills(&h2)
            .iter()
            .any(|j| j["trigger"] == "schedule" && j["state"] == "succeeded")
    });
    let mut all = slots(&ran_on_h1);
    let h1_slots = all.len();
    all.extend(slots(
        &drills(&h2)
            .into_iter()
            .filter(|j| j["trigger"] == "schedule")
            .collect::<Vec<_>>(),
    ));
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "a drill slot ran twice: {all:?}");
    assert!(h1_slots >= 1 && n > h1_slots);
}

#[test]
fn a_slot_whose_leader_died_mid_job_is_run_by_the_next_leader_and_a_finished_one_is_not() {
    use lifeboat_daemon::cluster::{Claim, Cluster, HostRecord};
    let etcd = Etcd::start();
    let member = |host: &str| {
        Cluster::new(lifeboat_daemon::config::ClusterPlan {
            etcd: etcd.endpoints.clone(),
            host: host.into(),
            lease_ttl: Duration::from_secs(3),
            failover_after: Duration::from_secs(30),
        })
    };
    let (h1, h2) = (member("h1"), member("h2"));
    let keep = Duration::from_secs(120);
    let none = serde_json::json!({});
    assert!(h1.beat(HostRecord::default()), "h1 leads");
    assert!(!h2.beat(HostRecord::default()));
    // Slot 1: h1 claims it and dies mid-job. Slot 2: h1 runs it to its end.
    assert_eq!(h1.claim("repository#check", 1, keep, &none), Claim::Won);
    assert_eq!(h1.claim("repository#check", 2, keep, &none), Claim::Won);
    h1.finish_claim("repository#check", 2);
    assert_eq!(
        h2.claim("repository#check", 1, keep, &none),
        Claim::NotLeader
    );
    // h1 stops renewing (killed): h2 leads once its lease is gone.
    let t0 = Instant::now();
    while !h2.beat(HostRecord::default()) {
        assert!(t0.elapsed() < Duration::from_secs(20), "h2 never led");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(
        h2.claim("repository#check", 1, keep, &none),
        Claim::Won,
        "the slot h1 left unfinished is h2's"
    );
    assert!(
        matches!(
            h2.claim("repository#check", 2, keep, &none),
            Claim::Taken(_)
        ),
        "a finished slot ran twice"
    );
    assert!(
        matches!(
            h2.claim("repository#check", 1, keep, &none),
            Claim::Taken(_)
        ),
        "a slot claimed twice in one term"
    );
}
