//! Hot mode on MariaDB: `mariadb-dump --single-transaction` inside the container under a
//! concurrent writer; at restore the dump fills a freshly initialised server.

use std::time::{Duration, Instant};

use crate::common::*;

const SERVICES_IMAGE: &str = "lifeboat-test/debian-services:1";

const SERVER: &str = r#"mkdir -p /run/mysqld && chown mysql /run/mysqld
if [ ! -d /data/mysql/mysql ]; then mariadb-install-db --user=mysql --datadir=/data/mysql >/dev/null 2>&1; fi
exec mariadbd --user=mysql --datadir=/data/mysql --skip-networking"#;

const WRITER: &str = r#"mariadb -e "CREATE DATABASE agent; CREATE TABLE agent.records(seq INT PRIMARY KEY) ENGINE=InnoDB"
i=0; while true; do i=$((i+1)); mariadb -e "INSERT INTO agent.records VALUES($i)" && echo $i > /tmp/acked; done"#;

fn acked(name: &str) -> u64 {
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

#[test]
fn hot_backup_of_mariadb_under_writes_restores_every_acknowledged_row() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("maria"), unique("maria-vol"));
    new_volume(&mut c, &vol);
    c.containers.push(name.clone());
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "-v",
        &format!("{vol}:/data"),
        "--health-cmd",
        "mariadb-admin ping",
        "--health-interval",
        "1s",
        SERVICES_IMAGE,
        "bash",
        "-c",
        SERVER,
    ]);
    wait_for_health(&name);
    docker(&["exec", "-d", &name, "bash", "-c", WRITER]);
    let t0 = Instant::now();
    while acked(&name) < 100 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the writer did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let acked_before = acked(&name);
    let out = lb.run(&["backup", &name, "--json"]).ok().json();
    assert!(
        out["backups"][0]["parts"].to_string().contains("\"dump\""),
        "{out}"
    );

    let copy = unique("maria-copy");
    c.containers.push(copy.clone());
    c.volumes.push(format!("{copy}_{vol}"));
    lb.run(&["restore", &name, "--as", &copy]).ok();
    let check = docker(&["exec", &copy, "mariadb-check", "--all-databases"]);
    assert!(
        !check.to_lowercase().contains("error"),
        "mariadb-check: {check}"
    );
    let row = docker(&[
        "exec",
        &copy,
        "mariadb",
        "-N",
        "-e",
        "SELECT CONCAT(COUNT(*), ' ', MAX(seq)) FROM agent.records",
    ]);
    let (count, max) = row
        .split_once(' ')
        .map(|(a, b)| (a.parse::<u64>().unwrap(), b.parse::<u64>().unwrap()))
        .unwrap();
    assert_eq!(count, max, "rows 1..={max} are all there");
    assert!(
        max >= acked_before,
        "every row acknowledged before the backup is present ({max} < {acked_before})"
    );
}
