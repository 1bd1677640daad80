//! The mission's freeze pattern: a session holding `FLUSH TABLES WITH READ LOCK` while files
//! are read, released right after, and released by the next run if Lifeboat is killed.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::services::*;

const FREEZE: &str = "lifeboat.freeze=mariadb -n -N -e \"FLUSH TABLES WITH READ LOCK; SELECT 'frozen'; SELECT SLEEP(600)\"";
const THAW: &str = "lifeboat.thaw=mariadb -N -e \"SELECT id FROM information_schema.processlist WHERE info LIKE 'SELECT SLEEP(600)%'\" | xargs -r -I{} mariadb -e 'KILL {}'";

fn lock_sessions(name: &str) -> u64 {
    let q =
        "SELECT count(*) FROM information_schema.processlist WHERE info LIKE 'SELECT SLEEP(600)%'";
    docker(&["exec", name, "mariadb", "-N", "-e", q])
        .parse()
        .unwrap_or(0)
}

fn start(c: &mut Cleanup, prefix: &str, big_mib: usize) -> String {
    let (name, vol) = (unique(prefix), unique(&format!("{prefix}-vol")));
    let path = new_volume(c, &vol);
    if big_mib > 0 {
        let cmd = format!(
            "head -c {big_mib}M /dev/urandom > '{}'",
            path.join("big.bin").display()
        );
        assert!(
            Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .status()
                .unwrap()
                .success()
        );
    }
    let labels = [
        "--label",
        "lifeboat.strategy=none",
        "--label",
        "lifeboat.mode=none",
    ];
    let hooks = ["--label", FREEZE, "--label", THAW];
    start_mariadb(c, &name, &vol, &[&labels[..], &hooks[..]].concat());
    name
}

#[test]
fn freeze_hook_holds_its_lock_during_the_read_and_thaw_releases_it() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let name = start(&mut c, "ftwrl", 0);
    let out = lb.run(&["backup", &name]).ok();
    assert!(
        out.stderr.contains("freeze hook") && out.stderr.contains("thaw hook"),
        "{}",
        out.stderr
    );
    assert_eq!(lock_sessions(&name), 0, "the lock session is gone");
    assert!(
        progresses(&name, Duration::from_secs(10)),
        "writes go on after the thaw"
    );
}

#[test]
fn kill_9_while_frozen_is_thawed_by_the_next_command() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let name = start(&mut c, "ftwrl-kill", 300);
    let mut child = lb.command().args(["backup", &name]).spawn().unwrap();
    let t0 = Instant::now();
    while lock_sessions(&name) == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the freeze never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL while the read lock is held
    child.wait().unwrap();
    let blocked = !progresses(&name, Duration::from_millis(1500));
    assert!(blocked, "writes are blocked by the lock left behind");

    lb.run(&["snapshots"]).ok();
    assert_eq!(lock_sessions(&name), 0);
    assert!(
        progresses(&name, Duration::from_secs(10)),
        "writes resume after the recovery thaw"
    );
}
