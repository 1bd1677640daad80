//! Pause and stop modes, hooks and the health gate: whatever Lifeboat pauses or stops is put
//! back, on success, on error, on Ctrl-C and after kill -9.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

fn random_mib(path: &std::path::Path, mib: usize) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "head -c {mib}M /dev/urandom > '{}'",
            path.display()
        ))
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// A running container with a volume big enough that a backup takes a few seconds.
fn slow_container(c: &mut Cleanup, prefix: &str, flags: &[&str]) -> String {
    let (name, vol) = (unique(prefix), unique(&format!("{prefix}-vol")));
    let path = new_volume(c, &vol);
    for i in 0..3 {
        random_mib(&path.join(format!("blob{i}")), 100);
    }
    let mut all = vec!["-v".to_string(), format!("{vol}:/data")];
    all.extend(flags.iter().map(|f| f.to_string()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    run_sleeper(c, &name, &refs);
    name
}

fn wait_until(name: &str, format: &str, want: &str) {
    let t0 = Instant::now();
    while inspect(name, format) != want {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{name}: {format} never became {want}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn pause_mode_pauses_during_the_read_and_unpauses_after() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let name = slow_container(&mut c, "pause", &["--label", "lifeboat.mode=pause"]);
    let child = lb
        .command()
        .args(["backup", &name, "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(&name, "{{.State.Paused}}", "true");
    let out = Run::from(child.wait_with_output().unwrap()).ok();
    assert_eq!(inspect(&name, "{{.State.Status}}"), "running");
    assert_eq!(out.json()["backups"][0]["ok"], true);
    let listed = lb.run(&["snapshots", &name, "--json"]).ok().json();
    assert_eq!(listed[0]["consistency"], "pause");
}

#[test]
fn stop_mode_restarts_the_container_and_a_stopped_one_stays_stopped() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let name = unique("stop");
    run_sleeper(
        &mut c,
        &name,
        &["--label", "lifeboat.mode=stop", "--stop-timeout", "1"],
    );
    let started = inspect(&name, "{{.State.StartedAt}}");
    lb.run(&["backup", &name]).ok();
    assert_eq!(inspect(&name, "{{.State.Running}}"), "true");
    assert_ne!(
        inspect(&name, "{{.State.StartedAt}}"),
        started,
        "it was stopped and started again"
    );

    docker(&["stop", "-t", "0", &name]);
    lb.run(&["backup", &name]).ok();
    assert_eq!(
        inspect(&name, "{{.State.Running}}"),
        "false",
        "a stopped container stays stopped"
    );
}

fn killed_mid_freeze_is_undone_by_the_next_command(mode: &str, frozen_format: &str, frozen: &str) {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let name = slow_container(
        &mut c,
        &format!("kill-{mode}"),
        &[
            "--label",
            &format!("lifeboat.mode={mode}"),
            "--stop-timeout",
            "1",
        ],
    );
    let mut child = lb.command().args(["backup", &name]).spawn().unwrap();
    wait_until(&name, frozen_format, frozen);
    std::thread::sleep(Duration::from_millis(200));
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    assert_eq!(
        inspect(&name, frozen_format),
        frozen,
        "still frozen after kill -9"
    );

    // Any next command puts it back, even one that does not need the engine.
    lb.run(&["snapshots"]).ok();
    assert_eq!(inspect(&name, "{{.State.Status}}"), "running");
    assert!(lb.backups(&name).is_empty());
}

#[test]
fn kill_9_during_pause_is_undone_by_the_next_command() {
    killed_mid_freeze_is_undone_by_the_next_command("pause", "{{.State.Paused}}", "true");
}

#[test]
fn kill_9_during_stop_is_undone_by_the_next_command() {
    killed_mid_freeze_is_undone_by_the_next_command("stop", "{{.State.Running}}", "false");
}

#[test]
fn ctrl_c_during_pause_unpauses_at_once() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let name = slow_container(&mut c, "sigint", &["--label", "lifeboat.mode=pause"]);
    let child = lb.command().args(["backup", &name]).spawn().unwrap();
    wait_until(&name, "{{.State.Paused}}", "true");
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    assert_eq!(
        inspect(&name, "{{.State.Status}}"),
        "running",
        "unpaused by the handler itself"
    );
}

#[test]
fn failing_pre_hook_aborts_the_backup_and_still_undoes() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("prehook"), unique("prehook-vol"));
    let path = new_volume(&mut c, &vol);
    run_sleeper(
        &mut c,
        &name,
        &[
            "-v",
            &format!("{vol}:/data"),
            "--label",
            "lifeboat.mode=pause",
            "--label",
            "lifeboat.pre=echo flushing; exit 3",
            "--label",
            "lifeboat.post=touch /data/post-ran",
        ],
    );
    let out = lb.run(&["backup", &name]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("pre hook") && out.stderr.contains("exit code 3"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("flushing"),
        "hook output is shown: {}",
        out.stderr
    );
    assert_eq!(inspect(&name, "{{.State.Status}}"), "running");
    assert!(
        path.join("post-ran").exists(),
        "the post hook (the undo) ran"
    );
    assert!(lb.backups(&name).is_empty());
}

#[test]
fn hooks_run_around_the_read_and_time_out() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("hooks"), unique("hooks-vol"));
    let path = new_volume(&mut c, &vol);
    run_sleeper(
        &mut c,
        &name,
        &[
            "-v",
            &format!("{vol}:/data"),
            "--label",
            "lifeboat.pre=echo frozen > /data/marker",
        ],
    );
    lb.run(&["backup", &name]).ok();
    let (restored, run) = lb.restore_copy(&mut c, &name, &vol);
    run.ok();
    assert_eq!(
        docker(&["exec", &restored, "cat", "/data/marker"]),
        "frozen",
        "pre hook ran before the read"
    );
    let _ = path;

    let slow = unique("slowhook");
    run_sleeper(
        &mut c,
        &slow,
        &[
            "--label",
            "lifeboat.pre=sleep 30",
            "--label",
            "lifeboat.hook-timeout=1",
        ],
    );
    let t0 = Instant::now();
    let out = lb.run(&["backup", &slow]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("did not finish within 1 s"),
        "{}",
        out.stderr
    );
    assert!(t0.elapsed() < Duration::from_secs(20));
}

#[test]
fn unhealthy_container_is_not_backed_up_unless_forced() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let name = unique("gate");
    run_unhealthy(&mut c, &name);
    let out = lb.run(&["backup", &name]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("is unhealthy") && out.stderr.contains("--unhealthy=force"),
        "{}",
        out.stderr
    );
    lb.run(&["backup", &name, "--unhealthy", "force"]).ok();
    let out = lb.run(&[
        "backup",
        &name,
        "--unhealthy",
        "wait",
        "--wait-healthy",
        "2",
    ]);
    assert_eq!(out.code, 1, "still unhealthy after waiting");
}
