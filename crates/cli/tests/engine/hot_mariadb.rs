//! Hot mode on MariaDB: `mariadb-dump --single-transaction` inside the container under a
//! concurrent writer; at restore the dump fills a freshly initialised server.

use std::time::Duration;

use crate::common::*;
use crate::services::*;

#[test]
fn hot_backup_of_mariadb_under_writes_restores_every_acknowledged_row() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("maria"), unique("maria-vol"));
    new_volume(&mut c, &vol);
    start_mariadb(&mut c, &name, &vol, &[]);
    wait_until("writer", Duration::from_secs(60), 100, || acked(&name));
    let acked_before = acked(&name);
    let out = lb.run(&["backup", &name, "--json"]).ok().json();
    assert!(
        out["backups"][0]["parts"].to_string().contains("\"dump\""),
        "{out}"
    );

    let (copy, restored) = lb.restore_copy(&mut c, &name, &vol);
    restored.ok();
    let check = docker(&["exec", &copy, "mariadb-check", "--all-databases"]);
    assert!(
        !check.to_lowercase().contains("error"),
        "mariadb-check: {check}"
    );
    let query = "SELECT CONCAT(COUNT(*), ' ', MAX(seq)) FROM agent.records";
    let row = docker(&["exec", &copy, "mariadb", "-N", "-e", query]);
    let (count, max) = parse_pair(&row);
    assert_eq!(count, max, "rows 1..={max} are all there");
    assert!(
        max >= acked_before,
        "every acknowledged row is present ({max} < {acked_before})"
    );
}
