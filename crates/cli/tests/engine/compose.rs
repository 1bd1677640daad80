//! A real compose project, brought up with Debian's docker-compose (1.29, which writes no
//! depends_on label): backed up with --project, taken down with `down -v`, its directory
//! deleted, and restored with its files, in order, healthy, and manageable by compose again.

use std::path::Path;
use std::process::Command;

use crate::common::*;

const COMPOSE: &str = r#"version: "2.4"
services:
  db:
    image: lifeboat-test/busybox:1
    env_file: db.env
    secrets: [db_password]
    command: sh -c 'mkdir -p /www && echo ok > /www/ready && httpd -f -p 8080 -h /www'
    volumes: [dbdata:/data]
    healthcheck: {test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/ready"], interval: 1s, retries: 30}
  agent:
    image: lifeboat-test/busybox:1
    env_file: [agent.env]
    depends_on:
      db: {condition: service_healthy}
    # Started before the database answers, it exits for good (a crash loop without restarts).
    command: sh -c 'wget -q -O- http://db:8080/ready || exit 3; echo "$$AGENT_LEVEL" > /spool/state; exec sleep 86400'
    volumes: [spool:/spool, ./config.yaml:/etc/agent/config.yaml:ro]
    healthcheck: {test: ["CMD", "sh", "-c", "test -s /spool/state"], interval: 1s, retries: 30}
  web:
    image: lifeboat-test/busybox:1
    depends_on: [agent]
    command: sleep 86400
    volumes: [spool:/spool]
    healthcheck: {test: ["CMD", "cat", "/spool/state"], interval: 1s, retries: 30}
volumes:
  dbdata: {}
  spool: {}
secrets:
  db_password: {file: ./db_password.txt}
"#;

pub fn compose(dir: &Path, project: &str, args: &[&str]) -> String {
    let out = Command::new("docker-compose")
        .current_dir(dir)
        .args(["-p", project])
        .args(args)
        .output()
        .expect("docker-compose is installed (scripts/setup-engine)");
    assert!(
        out.status.success(),
        "docker-compose {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn ids(names: &[String]) -> Vec<String> {
    names.iter().map(|n| inspect(n, "{{.Id}}")).collect()
}

#[test]
fn a_compose_project_comes_back_with_its_files_in_order_and_compose_still_manages_it() {
    ensure_busybox_image();
    let lb = Lb::new();
    let project = unique("cmp").replace('-', "");
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join(&project);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("docker-compose.yml"), COMPOSE).unwrap();
    std::fs::write(dir.join(".env"), "COMPOSE_HTTP_TIMEOUT=120\n").unwrap();
    std::fs::write(dir.join("db.env"), "DB_PASSWORD=db-secret-1234\n").unwrap();
    std::fs::write(dir.join("agent.env"), "AGENT_LEVEL=debug\n").unwrap();
    std::fs::write(dir.join("config.yaml"), "level: debug\n").unwrap();
    let secret = dir.join("db_password.txt");
    std::fs::write(&secret, "pw-from-a-secret\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&secret, Some(999), Some(999)).unwrap();
    let mut c = Cleanup::default();
    let names: Vec<String> = ["db", "agent", "web"]
        .iter()
        .map(|s| format!("{project}_{s}_1"))
        .collect();
    c.containers.extend(names.iter().cloned());
    c.volumes
        .extend([format!("{project}_dbdata"), format!("{project}_spool")]);
    c.networks.push(format!("{project}_default"));
    compose(&dir, &project, &["up", "-d"]);
    for n in &names {
        wait_for_health(n);
    }
    lb.run(&["backup", "--project", &project]).ok();
    let reference = tempfile::tempdir().unwrap();
    copy_tree(&dir, reference.path());

    // Disaster: containers, volumes, network and the project directory are gone.
    compose(&dir, &project, &["down", "-v"]);
    std::fs::remove_dir_all(&dir).unwrap();

    let plan = lb
        .run(&["restore", "--project", &project, "--plan", "--json"])
        .ok()
        .json();
    assert_eq!(
        plan["plan"]["levels"],
        serde_json::json!([[names[0]], [names[1]], [names[2]]]),
        "compose v1's depends_on, read from the captured compose file, orders the stack"
    );
    let out = lb.run(&["restore", "--project", &project]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_same_tree(reference.path(), &dir);
    for n in &names {
        wait_for_health(n);
    }
    assert_eq!(
        docker(&["exec", &names[2], "cat", "/spool/state"]),
        "debug",
        "the web front reads the agent's shared volume"
    );
    // The compose secret (a bind-mounted file) is back, with its owner and mode.
    assert_eq!(
        docker(&["exec", &names[0], "cat", "/run/secrets/db_password"]),
        "pw-from-a-secret"
    );
    assert_eq!(
        docker(&[
            "exec",
            &names[0],
            "stat",
            "-c",
            "%u %a",
            "/run/secrets/db_password"
        ]),
        "999 600"
    );
    let listed = compose(&dir, &project, &["ps"]);
    for n in &names {
        assert!(listed.contains(n.as_str()), "compose lists {n}: {listed}");
    }
    let before = ids(&names);
    compose(&dir, &project, &["up", "-d"]);
    assert_eq!(ids(&names), before, "compose recreates nothing");

    // A drill of the project passes, in its sandbox, without touching the project's files.
    let drill = lb.run(&["drill", "--project", &project, "--json"]);
    assert_eq!(drill.code, 0, "{}\n{}", drill.stdout, drill.stderr);
    assert_same_tree(reference.path(), &dir);

    // --files-to writes the files elsewhere and touches nothing at their own paths.
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::remove_file(dir.join("agent.env")).unwrap();
    let copy = unique("cmp-copy");
    c.containers.push(copy.clone());
    c.volumes.push(format!("{copy}_{project}_spool"));
    lb.run(&[
        "restore",
        &names[2],
        "--as",
        &copy,
        "--files-to",
        elsewhere.path().to_str().unwrap(),
    ])
    .ok();
    let moved = elsewhere.path().join(dir.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read_to_string(moved.join("agent.env")).unwrap(),
        "AGENT_LEVEL=debug\n"
    );
    assert!(!dir.join("agent.env").exists());

    // The env file's secret never shows in plain text outside the repository.
    let printed = lb.run(&["snapshots", "--json"]).ok().stdout;
    assert!(!printed.contains("db-secret-1234"));
    std::fs::copy(moved.join("agent.env"), dir.join("agent.env")).unwrap();
    docker(&["rm", "-f", &copy]);
    compose(&dir, &project, &["down", "-v"]);
}
