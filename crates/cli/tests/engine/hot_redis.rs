//! Hot mode on Redis: a BGSAVE under a continuous writer yields an RDB that Redis loads
//! back with every acknowledged write.

use std::time::{Duration, Instant};

use crate::common::*;
use crate::services::*;

/// Redis with automatic saves and AOF off (the only RDB is the one Lifeboat asks for), and a
/// writer incrementing a counter, printing each acknowledged value.
const SERVER_AND_WRITER: &str = "redis-server --dir /data --save '' --appendonly no --daemonize yes >/dev/null; \
    until redis-cli ping >/dev/null 2>&1; do sleep 0.1; done; \
    while true; do n=$(redis-cli INCR counter) && echo \"ack $n\"; done";

#[test]
fn hot_backup_of_redis_under_writes_restores_every_acknowledged_increment() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("redis"), unique("redis-vol"));
    new_volume(&mut c, &vol);
    c.containers.push(name.clone());
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "-v",
        &format!("{vol}:/data"),
        SERVICES_IMAGE,
        "bash",
        "-c",
        SERVER_AND_WRITER,
    ]);
    wait_until("writer", Duration::from_secs(60), 300, || {
        acked_in_logs(&name)
    });
    let acked_before = acked_in_logs(&name);
    let out = lb.run(&["backup", &name]).ok();
    assert!(out.stderr.contains("Redis BGSAVE"), "{}", out.stderr);
    let listed = lb.run(&["snapshots", &name, "--json"]).ok().json();
    assert_eq!(listed[0]["consistency"], "hot");

    let (copy, restored) = lb.restore_copy(&mut c, &name, &vol);
    restored.ok();
    let restored_vol = format!("{copy}_{vol}");
    docker(&["rm", "-f", &copy]);
    // A plain Redis on the restored volume, without the writer: does it load the RDB?
    let checker = unique("redis-check");
    c.containers.push(checker.clone());
    docker(&[
        "run",
        "-d",
        "--name",
        &checker,
        "-v",
        &format!("{restored_vol}:/data"),
        SERVICES_IMAGE,
        "redis-server",
        "--dir",
        "/data",
        "--save",
        "",
        "--appendonly",
        "no",
    ]);
    let t0 = Instant::now();
    while !docker_ok(&["exec", &checker, "redis-cli", "ping"]) {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "restored Redis did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let value: u64 = docker(&["exec", &checker, "redis-cli", "GET", "counter"])
        .parse()
        .unwrap_or(0);
    assert!(
        value >= acked_before,
        "restored counter {value} < acknowledged {acked_before}"
    );
}
