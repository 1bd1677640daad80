//! Bad clocks: backups, retention and restores run with this host's clock an hour ahead or
//! behind (libfaketime, preloaded into that one process). Retention deletes nothing younger
//! than it can judge and never the real newest backup; `--at` picks by the backups' own times.

use std::path::Path;
use std::time::Duration;

use crate::common::*;
use crate::daemon::{Daemon, succeeded};

const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The environment that sets one process's clock `offset` (`+1h`, `-1h`) from the real one.
fn clock(offset: &str) -> Vec<(&'static str, String)> {
    assert!(
        Path::new(FAKETIME).exists(),
        "libfaketime is installed (scripts/setup-engine)"
    );
    vec![
        ("LD_PRELOAD", FAKETIME.to_string()),
        ("FAKETIME", offset.to_string()),
        // Timers and timeouts keep the real pace.
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_string()),
        ("FAKETIME_NO_CACHE", "1".to_string()),
    ]
}

fn refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The backup `restore NAME --at AT` picks, with this host's clock `offset` from the real one.
fn picked_at(lb: &Lb, name: &str, at: &str, offset: &str) -> String {
    let out = lb
        .run_env(
            &refs(&clock(offset)),
            &[
                "restore",
                name,
                "--at",
                at,
                "--as",
                "lbt-clock-never",
                "--dry-run",
                "--json",
            ],
        )
        .ok()
        .json();
    out["backup_id"].as_str().unwrap_or_default().to_string()
}

fn backup(lb: &Lb, name: &str, env: &[(&'static str, String)]) -> String {
    let out = lb
        .run_env(&refs(env), &["backup", name, "--json"])
        .ok()
        .json();
    out["backups"][0]["backup_id"].as_str().unwrap().to_string()
}

/// The listed backups and the time each is dated.
fn dated(lb: &Lb, name: &str) -> Vec<(String, jiff::Timestamp)> {
    lb.backups(name)
        .iter()
        .map(|b| {
            (
                b["backup_id"].as_str().unwrap().to_string(),
                b["time"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

fn listed(lb: &Lb, name: &str) -> Vec<String> {
    dated(lb, name).into_iter().map(|(id, _)| id).collect()
}

#[test]
fn with_the_clock_an_hour_off_retention_keeps_the_newest_and_at_still_picks_right() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let scope = unique("lbt-clock");
    let (name, vol) = (unique("lbt-clock"), unique("lbt-clock-vol"));
    let path = new_volume(&mut c, &vol);
    crate::daemon::managed(
        &mut c,
        &scope,
        &name,
        Some(&vol),
        &["lifeboat.retention=last=1", "lifeboat.schedule=1h"],
    );
    let right = Vec::new();
    std::fs::write(path.join("state"), "first").unwrap();
    let first = backup(&lb, &name, &right);
    let first_tree = snapshot_tree(&path);
    std::thread::sleep(Duration::from_millis(1100));
    let between = jiff::Timestamp::now();
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(path.join("state"), "second").unwrap();
    backup(&lb, &name, &right);
    // One backup with the clock an hour ahead, one an hour behind, then the real newest.
    std::fs::write(path.join("state"), "ahead").unwrap();
    let ahead = backup(&lb, &name, &clock("+1h"));
    let ahead_at = dated(&lb, &name)
        .into_iter()
        .find(|(id, _)| *id == ahead)
        .unwrap()
        .1;
    assert!(
        ahead_at.duration_since(jiff::Timestamp::now()) > jiff::SignedDuration::from_mins(50),
        "the preloaded clock was not ahead: {ahead_at}"
    );
    std::fs::write(path.join("state"), "behind").unwrap();
    backup(&lb, &name, &clock("-1h"));
    std::fs::write(path.join("state"), "newest").unwrap();
    let newest = backup(&lb, &name, &right);
    let all = listed(&lb, &name);
    assert_eq!(all.len(), 5);

    // `--at` picks by the backups' own times, whatever this host's clock says.
    let copy = unique("lbt-clock-at");
    c.containers.push(copy.clone());
    c.volumes.push(format!("{copy}_{vol}"));
    let at = between.to_string();
    for offset in ["+1h", "-1h"] {
        assert_eq!(picked_at(&lb, &name, &at, offset), first, "clock {offset}");
    }
    lb.run_env(
        &refs(&clock("+1h")),
        &["restore", &name, "--at", &at, "--as", &copy],
    )
    .ok();
    let restored = snapshot_tree(&volume_path(&format!("{copy}_{vol}")));
    assert_eq!(tree_diff(first_tree, restored), Vec::<String>::new());

    // The daemon, its clock an hour behind, is asked to prune, forced: nothing is deleted. The
    // backups taken with the right clock are in its future; the one taken with the clock
    // behind, and its own start-up backup, are younger than the safety margin (1 h, the default).
    let prune = |d: &Daemon| {
        let r = d.post(
            &format!("/api/v1/services/{name}/prune"),
            Some("{\"force\": true}"),
        );
        d.wait_job(
            r.json()["job_id"].as_i64().unwrap(),
            Duration::from_secs(60),
        )
    };
    let unforced = |d: &Daemon| {
        let r = d.post(
            &format!("/api/v1/services/{name}/prune"),
            Some("{\"force\": false}"),
        );
        d.wait_job(
            r.json()["job_id"].as_i64().unwrap(),
            Duration::from_secs(60),
        )
    };
    {
        let d = Daemon::start_env(
            &lb,
            &scope,
            "retention_margin = \"1h\"",
            &refs(&clock("-1h")),
        );
        // Its start-up backup (its history is empty) is dated an hour back: older than all.
        d.wait_until("the start-up backup", Duration::from_secs(60), || {
            succeeded(&d.jobs(&name)) >= 1
        });
        let job = prune(&d);
        assert_eq!(job["state"], "succeeded", "{job}");
        let after = listed(&lb, &name);
        for id in &all {
            assert!(
                after.contains(id),
                "{id} deleted with the clock behind: {job}"
            );
        }
    }
    // The clock right again (and no margin, to see the rules' order): the backup dated an
    // hour ahead stops the unforced retention and names the clock; forced, the rules apply to
    // the others and keep the real newest.
    let d = Daemon::start(&lb, &scope, "retention_margin = \"0s\"");
    d.wait_for_service(&name);
    let job = unforced(&d);
    let refused = job["detail"]["refused"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(refused.contains("after this host's clock"), "{job}");
    // (This daemon may have backed up at its start: its history's last backup is dated an
    // hour back. Then that one is the real newest.)
    let before = dated(&lb, &name);
    assert!(
        before.len() >= 6,
        "the refusal deleted something: {before:?}"
    );
    let tolerance = jiff::Timestamp::now() + jiff::SignedDuration::from_mins(1);
    let real_newest = before
        .iter()
        .filter(|(_, t)| *t <= tolerance)
        .max_by_key(|(_, t)| *t)
        .unwrap()
        .0
        .clone();
    assert!(real_newest == newest || before.len() == 7, "{before:?}");
    let job = prune(&d);
    assert_eq!(job["state"], "succeeded", "{job}");
    let mut left = listed(&lb, &name);
    left.sort();
    let mut want = vec![ahead.clone(), real_newest.clone()];
    want.sort();
    assert_eq!(
        left, want,
        "forced, last=1 keeps the backup dated ahead and the real newest"
    );
    drop(d);

    // The newest by the backups' own times, with the clock either way: not the one dated ahead.
    let now = jiff::Timestamp::now().to_string();
    for offset in ["+1h", "-1h"] {
        assert_eq!(
            picked_at(&lb, &name, &now, offset),
            real_newest,
            "clock {offset}"
        );
    }
}
