//! Database service fixtures on the locally built Debian image, and their writers'
//! acknowledgements (kept outside the data that is backed up).

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

pub const SERVICES_IMAGE: &str = "lifeboat-test/debian-services:1";

pub const MARIADB_SERVER: &str = r#"mkdir -p /run/mysqld && chown mysql /run/mysqld
if [ ! -d /data/mysql/mysql ]; then mariadb-install-db --user=mysql --datadir=/data/mysql >/dev/null 2>&1; fi
exec mariadbd --user=mysql --datadir=/data/mysql --skip-networking"#;

pub const MARIADB_WRITER: &str = r#"mariadb -e "CREATE DATABASE agent; CREATE TABLE agent.records(seq INT PRIMARY KEY) ENGINE=InnoDB"
i=0; while true; do i=$((i+1)); mariadb -e "INSERT INTO agent.records VALUES($i)" && echo $i > /tmp/acked; done"#;

/// The last value a writer recorded in the container's /tmp/acked (its writable layer).
pub fn acked(name: &str) -> u64 {
    docker(&[
        "exec",
        name,
        "sh",
        "-c",
        "cat /tmp/acked 2>/dev/null || echo 0",
    ])
    .parse()
    .unwrap_or(0)
}

/// The highest `ack N` line a writer printed to the engine's log.
pub fn acked_in_logs(name: &str) -> u64 {
    let out = Command::new("docker")
        .args(["logs", name])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("ack ").and_then(|n| n.trim().parse().ok()))
        .max()
        .unwrap_or(0)
}

/// Waits until `read` reaches `at_least`; panics after `limit`.
pub fn wait_until(what: &str, limit: Duration, at_least: u64, read: impl Fn() -> u64) -> u64 {
    let t0 = Instant::now();
    loop {
        let n = read();
        if n >= at_least {
            return n;
        }
        assert!(t0.elapsed() < limit, "{what}: only {n} of {at_least}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether the writer acknowledges something new within `within`.
pub fn progresses(name: &str, within: Duration) -> bool {
    let before = acked(name);
    let t0 = Instant::now();
    while t0.elapsed() < within {
        if acked(name) > before {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// A healthy MariaDB server on volume `vol`, with its writer running.
pub fn start_mariadb(c: &mut Cleanup, name: &str, vol: &str, flags: &[&str]) {
    c.containers.push(name.to_string());
    let mount = format!("{vol}:/data");
    let mut args = vec!["run", "-d", "--name", name, "-v", &mount];
    args.extend_from_slice(flags);
    args.extend_from_slice(&[
        "--health-cmd",
        "mariadb-admin ping",
        "--health-interval",
        "1s",
    ]);
    args.extend_from_slice(&[SERVICES_IMAGE, "bash", "-c", MARIADB_SERVER]);
    docker(&args);
    wait_for_health(name);
    docker(&["exec", "-d", name, "bash", "-c", MARIADB_WRITER]);
    assert!(
        progresses(name, Duration::from_secs(30)),
        "the writer did not start"
    );
}
