//! Lifeboat as a container: the Dockerfile's runtime with this build's binary, started by the
//! shipped `deploy/compose.example.yml` next to a PostgreSQL neighbour, which it backs up hot
//! through the engine socket and the read-only host root; the backup restores on the host.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use crate::daemon::TOKEN;
use lifeboat_testkit::http::{self, free_port};

/// Debian root of the runtime stage, made by `scripts/image base` (and `scripts/fixtures`).
const BASE_IMAGE: &str = "lifeboat/debian:bookworm";
/// The name the compose file gives the daemon's host (`LIFEBOAT_HOST`).
const HOST: &str = "prod-test";

fn source_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `docker build` that panics with the builder's output when it fails.
fn build(args: &[&str]) {
    // --force-rm: a failed step leaves no intermediate container behind.
    let out = Command::new("docker")
        .args(["build", "--force-rm"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker build {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Dockerfile's runtime stage with this build's binary added, as the Dockerfile's last
/// stage adds the release build: returns the image's tag. `LIFEBOAT_TEST_IMAGE` names an
/// image to test instead (e.g. `lifeboat:latest` from `scripts/image release`).
fn image(c: &mut Cleanup) -> String {
    if let Ok(given) = std::env::var("LIFEBOAT_TEST_IMAGE") {
        return given;
    }
    assert!(
        docker_ok(&["image", "inspect", BASE_IMAGE]),
        "{BASE_IMAGE} is missing: run scripts/image base (scripts/fixtures builds it)"
    );
    let tag = unique("image");
    let runtime = format!("{tag}-runtime");
    let empty = tempfile::tempdir().unwrap();
    let dockerfile = source_root().join("Dockerfile");
    build(&[
        "--target",
        "runtime",
        "-q",
        "-t",
        &runtime,
        "-f",
        dockerfile.to_str().unwrap(),
        empty.path().to_str().unwrap(),
    ]);
    c.images.push(runtime.clone());
    let ctx = tempfile::tempdir().unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_lifeboat"), ctx.path().join("lifeboat")).unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {runtime}\nCOPY lifeboat /usr/local/bin/lifeboat\n\
             RUN [\"/usr/local/bin/lifeboat\", \"--version\"]\n"
        ),
    )
    .unwrap();
    build(&["-q", "-t", &tag, ctx.path().to_str().unwrap()]);
    c.images.push(tag.clone());
    tag
}

/// PostgreSQL in the compose example's volume path, initialised when empty.
const SERVER: &str = r#"PGBIN=$(ls -d /usr/lib/postgresql/*/bin | head -n1); export PGDATA=/var/lib/postgresql/data/pg
mkdir -p /var/run/postgresql && chown postgres /var/run/postgresql
if [ ! -s $PGDATA/PG_VERSION ]; then mkdir -p $PGDATA && chown postgres $PGDATA && su postgres -c "$PGBIN/initdb -D $PGDATA --auth=trust" >/dev/null; fi
su postgres -c "$PGBIN/pg_ctl -D $PGDATA -l /tmp/pg.log -o '-c listen_addresses=' -w start" >/dev/null
exec sleep infinity"#;

#[test]
fn the_image_run_by_the_shipped_compose_file_backs_up_its_postgres_neighbour() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let tag = image(&mut c);
    // What `docker run --version` says is what the binary says.
    let version = docker(&["run", "--rm", &tag, "--version"]);
    assert!(version.starts_with("lifeboat "), "{version}");
    assert_eq!(
        inspect(&tag, "{{index .Config.Labels \"lifeboat.enable\"}}"),
        "false"
    );

    let project = unique("compose").replace('-', "");
    let scope = project.clone();
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("lifeboat.toml"),
        format!("[daemon]\nscope = \"lifeboat.test={scope}\"\njitter = \"0s\"\n"),
    )
    .unwrap();
    std::fs::write(dir.path().join("db_password.txt"), "unused").unwrap();
    std::fs::copy(lb.key_file(), dir.path().join("lifeboat_password.txt")).unwrap();
    // The test's own images, scope, repository and state over the example (compose merges
    // mounts by their path in the container).
    let override_file = dir.path().join("override.yml");
    let repo = lb.repo();
    let overrides = serde_json::json!({
        "services": {
            "db": {
                "image": "lifeboat-test/debian-services:1",
                // `$$` is compose's escape of `$`.
                "command": ["bash", "-c", SERVER.replace('$', "$$")],
                "labels": {"lifeboat.test": scope},
                "healthcheck": {"test": ["CMD", "pg_isready", "-U", "postgres"], "interval": "1s"},
            },
            "lifeboat": {
                "environment": {"LIFEBOAT_API_TOKEN": TOKEN},
                "volumes": [
                    format!("{}:/var/lib/lifeboat", state.path().display()),
                    format!("{}:/repo", repo.display()),
                ],
            },
        },
    });
    std::fs::write(&override_file, overrides.to_string()).unwrap();
    let example = source_root().join("deploy/compose.example.yml");
    let port = free_port();
    let compose = |args: &[&str]| {
        let out = Command::new("docker-compose")
            .args(["-p", &project, "--project-directory"])
            .arg(dir.path())
            .arg("-f")
            .arg(&example)
            .arg("-f")
            .arg(&override_file)
            .args(args)
            .env("LIFEBOAT_IMAGE", &tag)
            .env("LIFEBOAT_PORT", port.to_string())
            .env("LIFEBOAT_HOST", HOST)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker-compose {args:?}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let (db, daemon) = (format!("{project}_db_1"), format!("{project}_lifeboat_1"));
    let pgdata = format!("{project}_pgdata");
    c.containers.extend([daemon.clone(), db.clone()]);
    c.volumes.push(pgdata.clone());
    c.networks.push(format!("{project}_default"));

    compose(&["up", "-d", "db"]);
    wait_for_health(&db);
    psql(&db, "postgres", "CREATE DATABASE shop");
    psql(
        &db,
        "shop",
        "CREATE TABLE orders(id int PRIMARY KEY); INSERT INTO orders SELECT generate_series(1, 500)",
    );
    compose(&["up", "-d", "lifeboat"]);
    let base = format!("http://127.0.0.1:{port}");
    let get = |path: &str| {
        http::request(
            "GET",
            &format!("{base}{path}"),
            &[("Authorization", &format!("Bearer {TOKEN}"))],
            None,
        )
    };
    let logs = || docker_ok_output(&["logs", &daemon]);
    let t0 = std::time::Instant::now();
    // Its scheduled first backup, or one asked for once it knows the service.
    let mut asked = false;
    let job = loop {
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "no backup of {db} by the containerised daemon\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(500));
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            continue;
        }
        let jobs = get(&format!("/api/v1/jobs?service={db}"));
        if jobs.status != 200 {
            continue;
        }
        let jobs = jobs.json()["jobs"].as_array().cloned().unwrap_or_default();
        if let Some(ok) = jobs.iter().find(|j| j["state"] == "succeeded") {
            break ok.clone();
        }
        if !asked && jobs.iter().all(|j| j["state"] == "failed") {
            asked = http::request(
                "POST",
                &format!("{base}/api/v1/services/{db}/backup"),
                &[("Authorization", &format!("Bearer {TOKEN}"))],
                None,
            )
            .status
                == 202;
        }
    };
    assert_eq!(job["kind"], "backup", "{job}");
    // The engine's events and data reached through the socket and /host: the service is
    // known with its policy from the compose file's labels.
    let service = get(&format!("/api/v1/services/{db}")).json();
    assert_eq!(service["interval_seconds"], 300, "{service}");

    // On the host, the backup is this compose host's, holds the dump, and restores.
    let listed = lb
        .run(&["--host", HOST, "snapshots", &db, "--json"])
        .ok()
        .json();
    let backup = &listed.as_array().unwrap()[0];
    assert_eq!(backup["host"], HOST, "{backup}");
    let parts = backup["parts"].to_string();
    assert!(parts.contains("\"dump\""), "a hot dump was stored: {parts}");
    let copy = unique("compose-db-copy");
    c.containers.push(copy.clone());
    c.volumes.push(format!("{copy}_{pgdata}"));
    lb.run(&["--host", HOST, "restore", &db, "--as", &copy])
        .ok();
    wait_for_health(&copy);
    let rows = psql(&copy, "shop", "SELECT count(*) FROM orders");
    assert_eq!(rows.trim(), "500");

    // SIGTERM from `docker stop` ends the daemon cleanly.
    compose(&["stop", "-t", "20", "lifeboat"]);
    assert_eq!(inspect(&daemon, "{{.State.ExitCode}}"), "0", "{}", logs());
    // The restored copy joined the project's network: it goes first.
    docker(&["rm", "-f", &copy]);
    compose(&["down", "-v"]);
}

/// `sql` run by psql in `container`'s database `db` (stops at the first error): its output.
fn psql(container: &str, db: &str, sql: &str) -> String {
    docker(&[
        "exec",
        container,
        "psql",
        "-U",
        "postgres",
        "-d",
        db,
        "-v",
        "ON_ERROR_STOP=1",
        "-Atc",
        sql,
    ])
}

/// `docker args` output (stdout and stderr), whatever its exit code.
fn docker_ok_output(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
