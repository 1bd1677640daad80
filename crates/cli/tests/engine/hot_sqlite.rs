//! Hot mode on the mission's agent workload: a live SQLite database in WAL mode under a
//! continuous writer is captured consistently; a plain copy of the same files is shown torn.

use std::process::Command;
use std::time::Duration;

use crate::common::*;
use crate::services::*;

/// The agent: one long-lived sqlite3 session inserting sequenced records as fast as it can,
/// never checkpointing (every commit lives in the -wal file), and printing each sequence
/// number once its insert committed. Acks are read from the engine's log, outside the
/// container. On restart it continues after the highest record.
const AGENT: &str = r#"db=/data/agent.db
sqlite3 $db "PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS records(seq INTEGER PRIMARY KEY, payload BLOB);" >/dev/null
i=$(sqlite3 $db "SELECT coalesce(max(seq),0) FROM records")
(echo "PRAGMA wal_autocheckpoint=0;"; while true; do i=$((i+1)); echo "INSERT INTO records VALUES($i, randomblob(200)); SELECT 'ack ' || $i;"; done) | sqlite3 $db"#;

fn start_agent(c: &mut Cleanup, name: &str, vol: &str) {
    c.containers.push(name.to_string());
    docker(&[
        "run",
        "-d",
        "--name",
        name,
        "-v",
        &format!("{vol}:/data"),
        SERVICES_IMAGE,
        "bash",
        "-c",
        AGENT,
    ]);
}

fn acked(name: &str) -> u64 {
    acked_in_logs(name)
}

fn wait_for_acks(name: &str, at_least: u64) -> u64 {
    wait_until("agent", Duration::from_secs(60), at_least, || acked(name))
}

/// Integrity check, and the records 1..=max all present. Returns (integrity, count, max).
fn check_db(path: &std::path::Path) -> (String, u64, u64) {
    let out = Command::new("sqlite3")
        .arg(path)
        .arg("PRAGMA integrity_check; SELECT count(*) || ' ' || coalesce(max(seq),0) FROM records;")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = text.lines();
    let integrity = lines.next().unwrap_or("no answer").to_string();
    let (count, max) = lines
        .next()
        .and_then(|l| l.split_once(' '))
        .map(|(c, m)| (c.parse().unwrap_or(0), m.parse().unwrap_or(0)))
        .unwrap_or((0, 0));
    (integrity, count, max)
}

#[test]
fn hot_backup_of_a_live_wal_database_keeps_every_acknowledged_record() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("agent"), unique("agent-vol"));
    let path = new_volume(&mut c, &vol);
    std::fs::create_dir(path.join("rules")).unwrap();
    std::fs::write(path.join("rules/filter.lua"), "return true\n").unwrap();
    start_agent(&mut c, &name, &vol);
    wait_for_acks(&name, 2000);
    let acked_before = acked(&name);
    let out = lb.run(&["backup", &name, "--json"]).ok().json();
    let parts = out["backups"][0]["parts"].to_string();
    assert!(
        parts.contains("\"sqlite\""),
        "an sqlite part was stored: {parts}"
    );
    let listed = lb.run(&["snapshots", &name, "--json"]).ok().json();
    assert_eq!(listed[0]["consistency"], "hot", "automatic mode chose hot");
    // The agent was never stopped and goes on writing.
    wait_for_acks(&name, acked_before + 1);

    docker(&["stop", "-t", "1", &name]);
    let (copy, restored) = lb.restore_copy(&mut c, &name, &vol);
    restored.ok();
    docker(&["stop", "-t", "1", &copy]);
    let restored = volume_path(&format!("{copy}_{vol}"));
    assert_eq!(
        std::fs::read_to_string(restored.join("rules/filter.lua")).unwrap(),
        "return true\n"
    );
    let (integrity, count, max) = check_db(&restored.join("agent.db"));
    assert_eq!(integrity, "ok");
    assert_eq!(count, max, "records 1..={max} are all there, no gap");
    assert!(
        max >= acked_before,
        "every record acknowledged before the backup is present ({max} < {acked_before})"
    );
}

#[test]
fn control_a_plain_copy_of_the_db_file_is_caught_as_torn() {
    let mut c = Cleanup::default();
    ensure_busybox_image();
    let (name, vol) = (unique("torn"), unique("torn-vol"));
    let path = new_volume(&mut c, &vol);
    start_agent(&mut c, &name, &vol);
    wait_for_acks(&name, 2000);
    let acked_before = acked(&name);
    // What a naive backup does: copy the database file (here without its -wal).
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(path.join("agent.db"), copy.path().join("agent.db")).unwrap();
    let (integrity, count, max) = check_db(&copy.path().join("agent.db"));
    let complete = integrity == "ok" && count == max && max >= acked_before;
    assert!(
        !complete,
        "the checker must catch the torn copy: {integrity}, {count} rows, max {max}, acked {acked_before}"
    );
}

#[test]
fn strategy_label_turns_detection_off_and_unknown_values_are_named() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("nostrat"), unique("nostrat-vol"));
    let path = new_volume(&mut c, &vol);
    let made = Command::new("sqlite3")
        .arg(path.join("app.db"))
        .arg("CREATE TABLE t(a); INSERT INTO t VALUES (1);")
        .status()
        .unwrap()
        .success();
    assert!(made);
    run_sleeper(
        &mut c,
        &name,
        &[
            "-v",
            &format!("{vol}:/data"),
            "--label",
            "lifeboat.strategy=none",
        ],
    );
    let out = lb.run(&["backup", &name, "--json"]).ok().json();
    assert!(
        !out["backups"][0]["parts"]
            .to_string()
            .contains("\"sqlite\""),
        "{out}"
    );
    assert_eq!(
        lb.run(&["snapshots", &name, "--json"]).ok().json()[0]["consistency"],
        "none"
    );

    let odd = unique("badstrat");
    run_sleeper(&mut c, &odd, &["--label", "lifeboat.strategy=oracle"]);
    let out = lb.run(&["backup", &odd]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("lifeboat.strategy=`oracle`"),
        "{}",
        out.stderr
    );
}
