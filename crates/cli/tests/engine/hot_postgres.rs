//! Hot mode on PostgreSQL: `pg_dumpall` run inside the container under a concurrent writer,
//! streamed into the repository, loaded back into a freshly initialised server at restore.

use std::time::Duration;

use crate::common::*;
use crate::services::*;

/// A PostgreSQL server on /data/pg (initialised when empty, local trust), in the foreground.
const SERVER: &str = r#"PGBIN=$(ls -d /usr/lib/postgresql/*/bin | head -n1); export PGDATA=/data/pg
mkdir -p /var/run/postgresql && chown postgres /var/run/postgresql
if [ ! -s $PGDATA/PG_VERSION ]; then mkdir -p $PGDATA && chown postgres $PGDATA && su postgres -c "$PGBIN/initdb -D $PGDATA --auth=trust" >/dev/null; fi
su postgres -c "$PGBIN/pg_ctl -D $PGDATA -l /tmp/pg.log -o '-c listen_addresses=' -w start" >/dev/null
exec sleep infinity"#;

pub const WRITER: &str = r#"psql -U postgres -qc "CREATE DATABASE agent" >/dev/null
psql -U postgres -d agent -qc "CREATE TABLE records(seq int PRIMARY KEY, at timestamptz DEFAULT now())"
i=0; while true; do i=$((i+1)); psql -U postgres -d agent -qAtc "INSERT INTO records(seq) VALUES($i)" >/dev/null && echo $i > /tmp/acked; done"#;

/// The server was never restarted by the backup (it still has the start time it had before,
/// `started_at`), and the [`WRITER`] acknowledges rows after it.
fn assert_server_ran_on(name: &str, started_at: &str, acked_before: u64) {
    assert_eq!(inspect(name, "{{.State.StartedAt}}"), started_at);
    wait_until(
        "writer after the backup",
        Duration::from_secs(20),
        acked_before + 1,
        || acked(name),
    );
}

/// The [`WRITER`]'s rows in the restored `copy`: 1..=max with no gap, and every row it had
/// acknowledged before the backup among them.
fn assert_every_acknowledged_row(copy: &str, acked_before: u64) {
    let row = docker(&[
        "exec",
        copy,
        "psql",
        "-U",
        "postgres",
        "-d",
        "agent",
        "-Atc",
        "SELECT count(*) || ' ' || max(seq) FROM records",
    ]);
    let (count, max) = parse_pair(&row);
    assert_eq!(count, max, "rows 1..={max} are all there");
    assert!(
        max >= acked_before,
        "every row acknowledged before the backup is present ({max} < {acked_before})"
    );
}

pub fn start_server(c: &mut Cleanup, name: &str, vol: &str) {
    start_server_labelled(c, name, vol, "lifeboat.test=1");
}

/// [`start_server`] with a label (`KEY=value`).
pub fn start_server_labelled(c: &mut Cleanup, name: &str, vol: &str, label: &str) {
    start_server_running(c, name, vol, label, SERVER);
}

/// [`start_server_labelled`] running `server` (a variant of [`SERVER`]).
fn start_server_running(c: &mut Cleanup, name: &str, vol: &str, label: &str, server: &str) {
    c.containers.push(name.to_string());
    docker(&[
        "run",
        "-d",
        "--name",
        name,
        "--label",
        label,
        "-v",
        &format!("{vol}:/data"),
        "--health-cmd",
        "pg_isready -U postgres",
        "--health-interval",
        "1s",
        SERVICES_IMAGE,
        "bash",
        "-c",
        server,
    ]);
    wait_for_health(name);
}

#[test]
fn hot_backup_of_postgres_under_writes_restores_every_acknowledged_row() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("pg"), unique("pg-vol"));
    new_volume(&mut c, &vol);
    start_server(&mut c, &name, &vol);
    docker(&["exec", "-d", &name, "bash", "-c", WRITER]);
    wait_until("writer", Duration::from_secs(60), 100, || acked(&name));
    let acked_before = acked(&name);
    let started_at = inspect(&name, "{{.State.StartedAt}}");
    let run = lb.run(&["backup", &name, "--json"]).ok();
    // The dump's bytes bypass the engine: a fifo in the container's /tmp, removed after.
    assert!(
        run.stderr
            .contains("postgres dump read through a fifo at /tmp/.lifeboat-dump-"),
        "{}",
        run.stderr
    );
    let left = docker(&["exec", &name, "sh", "-c", "ls -a /tmp"]);
    assert!(
        !left.contains(".lifeboat-dump-"),
        "fifo left behind: {left}"
    );
    let out = run.json();
    let parts = out["backups"][0]["parts"].to_string();
    assert!(
        parts.contains("\"dump\""),
        "a dump part was stored: {parts}"
    );
    assert_server_ran_on(&name, &started_at, acked_before);

    let (copy, restored) = lb.restore_copy(&mut c, &name, &vol);
    let restored = restored.ok();
    assert!(
        restored.stderr.contains("loading the postgres dump"),
        "{}",
        restored.stderr
    );
    assert_every_acknowledged_row(&copy, acked_before);
}

/// pgbench's tables balance: every transfer adds the same delta to one account, one teller
/// and one branch, and logs it in the history. Prints the four sums and the history's rows.
const BALANCES: &str = "SELECT (SELECT sum(abalance) FROM pgbench_accounts) || ' ' || \
    (SELECT sum(tbalance) FROM pgbench_tellers) || ' ' || \
    (SELECT sum(bbalance) FROM pgbench_branches) || ' ' || \
    (SELECT coalesce(sum(delta), 0) FROM pgbench_history) || ' ' || \
    (SELECT count(*) FROM pgbench_history)";

#[test]
fn a_files_copy_of_postgres_under_transfers_restores_a_consistent_server_without_reloading() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("pgfiles"), unique("pgfiles-vol"));
    new_volume(&mut c, &vol);
    start_server_labelled(&mut c, &name, &vol, "lifeboat.strategy=postgres-files");
    let pgbench = "$(ls -d /usr/lib/postgresql/*/bin | head -n1)/pgbench -U postgres";
    docker(&[
        "exec",
        &name,
        "sh",
        "-c",
        &format!("{pgbench} -i -q -s 2 postgres >/dev/null 2>&1"),
    ]);
    // Transfers and inserts go on during the whole backup.
    docker(&[
        "exec",
        "-d",
        &name,
        "sh",
        "-c",
        &format!("{pgbench} -c 2 -T 600 postgres"),
    ]);
    docker(&["exec", "-d", &name, "bash", "-c", WRITER]);
    wait_until("writer", Duration::from_secs(60), 100, || acked(&name));
    wait_until("transfers", Duration::from_secs(60), 100, || {
        psql(&name, "SELECT count(*) FROM pgbench_history")
            .trim()
            .parse()
            .unwrap_or(0)
    });
    let acked_before = acked(&name);
    let started_at = inspect(&name, "{{.State.StartedAt}}");
    let run = lb.run(&["backup", &name, "--json"]).ok();
    assert!(
        run.stderr.contains("copied as files during a base backup"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("base backup ended"), "{}", run.stderr);
    let parts = run.json()["backups"][0]["parts"].to_string();
    assert!(parts.contains("\"wal\""), "a wal part was stored: {parts}");
    assert!(!parts.contains("\"dump\""), "no dump: {parts}");
    // The backup left no slot (it would keep the log forever).
    assert_eq!(
        psql(&name, "SELECT count(*) FROM pg_replication_slots").trim(),
        "0"
    );
    assert_server_ran_on(&name, &started_at, acked_before);

    let (copy, restored) = lb.restore_copy(&mut c, &name, &vol);
    let restored = restored.ok();
    assert!(
        !restored.stderr.contains("loading the postgres dump"),
        "{}",
        restored.stderr
    );
    assert!(
        restored
            .stderr
            .contains("waiting for postgres to accept connections"),
        "{}",
        restored.stderr
    );
    // The server replayed the log to a consistent point: every transfer whole.
    let sums: Vec<i64> = psql(&copy, BALANCES)
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(sums.len(), 5, "{sums:?}");
    assert_eq!(
        (sums[0], sums[1], sums[2]),
        (sums[3], sums[3], sums[3]),
        "balances: {sums:?}"
    );
    assert!(
        sums[4] > 0,
        "transfers made before the backup are there: {sums:?}"
    );
    assert_every_acknowledged_row(&copy, acked_before);
    let log = docker(&["exec", &copy, "cat", "/tmp/pg.log"]);
    assert!(
        log.contains("redo done") || log.contains("consistent recovery state"),
        "{log}"
    );
}

#[test]
fn a_files_copy_of_a_server_not_wholly_in_one_mount_is_refused_by_doctor_and_backup_and_stores_nothing()
 {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let cases = [
        // The data directory in the container's own layer: no mount to copy it from.
        (
            unique("pgnomount"),
            SERVER.replace("/data/pg", "/var/lib/pgdata"),
            "",
            "no PostgreSQL data directory",
        ),
        // The data directory in a volume, its log outside it (`initdb --waldir`).
        (
            unique("pgwaldir"),
            SERVER.replace("--auth=trust", "--auth=trust --waldir=/tmp/pgwal"),
            "",
            "pg_wal is not a directory of the mount",
        ),
        // The data directory in a volume, a tablespace outside it.
        (
            unique("pgtblspc"),
            SERVER.to_string(),
            "mkdir -p /tmp/ts && chown postgres /tmp/ts && \
             psql -U postgres -qc \"CREATE TABLESPACE ts LOCATION '/tmp/ts'\"",
            "has tablespaces",
        ),
    ];
    for (name, server, setup, why) in &cases {
        let vol = format!("{name}-vol");
        new_volume(&mut c, &vol);
        start_server_running(
            &mut c,
            name,
            &vol,
            "lifeboat.strategy=postgres-files",
            server,
        );
        if !setup.is_empty() {
            docker(&["exec", name, "bash", "-c", setup]);
        }
        let doctor = lb.run(&["doctor", name, "--json"]);
        assert_ne!(doctor.code, 0, "{}", doctor.stdout);
        let finding = doctor.json()["containers"][0]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["check"] == "consistency.postgres_files")
            .cloned()
            .unwrap_or_else(|| panic!("doctor names the refusal: {}", doctor.stdout));
        assert_eq!(finding["severity"], "error");
        assert!(
            finding["message"].as_str().unwrap().contains(why),
            "{finding}"
        );
        let out = lb.run(&["backup", name, "--mode", "hot"]);
        assert_ne!(out.code, 0, "{}", out.stderr);
        assert!(out.stderr.contains(why), "{}", out.stderr);
        assert!(
            out.stderr.contains("lifeboat.strategy=postgres"),
            "{}",
            out.stderr
        );
        assert!(lb.backups(name).is_empty());
        assert_eq!(
            psql(name, "SELECT count(*) FROM pg_replication_slots").trim(),
            "0"
        );
        docker(&["rm", "-f", name]);
    }
    let parts = lb.restic(&["snapshots", "--json"]).ok();
    assert_eq!(
        parts.stdout.trim(),
        "[]",
        "nothing stored: {}",
        parts.stdout
    );
}

#[test]
fn a_container_tmp_that_is_a_symlink_to_the_host_root_gets_no_fifo_and_the_dump_still_works() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("pgtmp"), unique("pgtmp-vol"));
    new_volume(&mut c, &vol);
    start_server(&mut c, &name, &vol);
    psql(
        &name,
        "CREATE TABLE kept(v text); INSERT INTO kept VALUES ('row')",
    );
    // Followed from the host, /tmp would be the host's own root directory.
    docker(&[
        "exec",
        &name,
        "sh",
        "-c",
        "mv /tmp /tmp.real && ln -s / /tmp",
    ]);
    let before = host_root_names();
    let out = lb.run(&["backup", &name]).ok();
    assert!(
        out.stderr.contains("postgres dump read through the engine"),
        "{}",
        out.stderr
    );
    assert_eq!(
        host_root_names(),
        before,
        "nothing was made in the host's /"
    );
    let (copy, restored) = lb.restore_copy(&mut c, &name, &vol);
    restored.ok();
    assert_eq!(psql(&copy, "SELECT v FROM kept").trim(), "row");
}

/// The names in the host's root directory.
fn host_root_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn failing_dump_fails_the_backup_and_stores_nothing() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("pgfail"), unique("pgfail-vol"));
    new_volume(&mut c, &vol);
    start_server(&mut c, &name, &vol);
    // The server goes away; the container keeps running, so pg_dumpall cannot connect.
    docker(&[
        "exec",
        &name,
        "bash",
        "-c",
        "su postgres -c \"$(ls -d /usr/lib/postgresql/*/bin | head -n1)/pg_ctl -D /data/pg -m fast stop\"",
    ]);
    let out = lb.run(&["backup", &name, "--unhealthy", "force"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("dump"), "{}", out.stderr);
    assert!(lb.backups(&name).is_empty());
    let parts = lb.restic(&["snapshots", "--json"]).ok();
    assert_eq!(
        parts.stdout.trim(),
        "[]",
        "no part left behind: {}",
        parts.stdout
    );
}

fn psql(name: &str, sql: &str) -> String {
    docker(&["exec", name, "psql", "-U", "postgres", "-Atc", sql])
        .trim()
        .to_string()
}

#[test]
fn server_settings_and_access_rules_come_back_with_a_hot_restore() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("pgconf"), unique("pgconf-vol"));
    new_volume(&mut c, &vol);
    start_server(&mut c, &name, &vol);
    psql(&name, "ALTER SYSTEM SET work_mem = '77MB'");
    docker(&[
        "exec",
        &name,
        "bash",
        "-c",
        "echo \"statement_timeout = '12345'\" >> /data/pg/postgresql.conf && \
         echo 'host all all 10.99.0.0/16 reject' >> /data/pg/pg_hba.conf",
    ]);
    psql(&name, "SELECT pg_reload_conf()");
    assert_eq!(psql(&name, "SHOW work_mem"), "77MB");
    let out = lb.run(&["backup", &name, "--json"]).ok().json();
    let parts = out["backups"][0]["parts"].to_string();
    assert!(
        parts.contains("\"settings\""),
        "the settings were kept: {parts}"
    );

    let (copy, restored) = lb.restore_copy(&mut c, &name, &vol);
    restored.ok();
    wait_for_health(&copy);
    assert_eq!(
        psql(&copy, "SHOW work_mem"),
        "77MB",
        "ALTER SYSTEM survived"
    );
    assert_eq!(
        psql(&copy, "SHOW statement_timeout"),
        "12345ms",
        "postgresql.conf too"
    );
    assert_eq!(
        psql(
            &copy,
            "SELECT count(*) FROM pg_hba_file_rules WHERE address = '10.99.0.0' AND auth_method = 'reject'"
        ),
        "1",
        "the pg_hba.conf rule applies"
    );
}

#[test]
fn a_password_in_a_file_is_read_inside_the_container_for_the_dump() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("pgfile"), unique("pgfile-vol"));
    new_volume(&mut c, &vol);
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("pw"), "pw-from-file-4321\n").unwrap();
    c.containers.push(name.clone());
    // md5 authentication over TCP: the dump needs the password, which only the file holds.
    let server = SERVER
        .replace("--auth=trust", "--auth-local=trust --auth-host=md5")
        .replace(
            "-o '-c listen_addresses='",
            "-o '-c listen_addresses=127.0.0.1'",
        );
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "-v",
        &format!("{vol}:/data"),
        "-v",
        &format!("{}:/run/secrets:ro", secrets.path().display()),
        "-e",
        "POSTGRES_PASSWORD_FILE=/run/secrets/pw",
        "-e",
        "PGHOST=127.0.0.1",
        "--health-cmd",
        "pg_isready -h 127.0.0.1 -U postgres",
        "--health-interval",
        "1s",
        SERVICES_IMAGE,
        "bash",
        "-c",
        &server,
    ]);
    wait_for_health(&name);
    for sql in [
        "ALTER USER postgres PASSWORD 'pw-from-file-4321'",
        "CREATE DATABASE agent",
    ] {
        docker(&[
            "exec",
            &name,
            "psql",
            "-h",
            "/var/run/postgresql",
            "-U",
            "postgres",
            "-qc",
            sql,
        ]);
    }
    let out = lb.run(&["backup", &name, "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("\"dump\""), "{}", out.stdout);
    assert!(!out.stdout.contains("pw-from-file-4321") && !out.stderr.contains("pw-from-file-4321"));
    // The dump really went through the password: it lists the database made after it.
    let repo_dump = lb.restic(&[
        "dump",
        "--tag",
        "part=dump",
        "latest",
        "/dumps/postgres.sql",
    ]);
    assert!(
        repo_dump.stdout.contains("CREATE DATABASE agent"),
        "{}",
        &repo_dump.stdout[..repo_dump.stdout.len().min(400)]
    );
}

/// (host pid, nice, command line) of the processes whose command line matches `what`.
fn processes_like(what: &[&str]) -> Vec<(u32, i64, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        if !what.iter().any(|w| cmdline.contains(w)) {
            continue;
        }
        // The nice value is the 19th field of stat, counted after the command's `)`.
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let Some(nice) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(16)?.parse().ok())
        else {
            continue;
        };
        out.push((pid, nice, cmdline));
    }
    out
}

#[test]
fn the_dump_and_the_server_process_serving_it_run_at_the_backups_lowered_priority() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("pgnice"), unique("pgnice-vol"));
    new_volume(&mut c, &vol);
    start_server(&mut c, &name, &vol);
    // Enough rows that the dump runs for a while.
    docker(&[
        "exec",
        &name,
        "psql",
        "-U",
        "postgres",
        "-qc",
        "CREATE TABLE big AS SELECT g, md5(g::text) || md5((g * 7)::text) AS t \
         FROM generate_series(1, 3000000) g",
    ]);
    let mut backup = lb
        .command()
        .args(["backup", &name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (mut client, mut server) = (Vec::new(), Vec::new());
    while backup.try_wait().unwrap().is_none() {
        for (pid, nice, cmd) in processes_like(&["pg_dump", "[local] COPY"]) {
            if cmd.contains("COPY") {
                server.push((pid, nice));
            } else {
                client.push((pid, nice));
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(backup.wait().unwrap().success());
    assert!(!server.is_empty(), "the dump's COPY was never seen");
    assert!(
        client.iter().any(|&(_, nice)| nice >= 10),
        "pg_dumpall/pg_dump stayed at nice 0: {client:?}"
    );
    assert!(
        server.iter().any(|&(_, nice)| nice >= 10),
        "the server process serving the dump stayed at nice 0: {server:?}"
    );
    // The server's other processes keep their priority.
    let others = processes_like(&["postgres: checkpointer", "postgres: walwriter"]);
    assert!(!others.is_empty());
    assert!(others.iter().all(|&(_, nice, _)| nice == 0), "{others:?}");
}
