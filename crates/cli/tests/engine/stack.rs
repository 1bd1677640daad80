//! Whole-stack restore: a three-service compose-style stack (a Redis database, an agent
//! writing to it and answering over HTTP, a web front whose health depends on the agent)
//! restored from scratch in dependency order, point-in-time run selection, and clear errors
//! for cycles and missing dependencies.

use std::time::Duration;

use crate::common::*;
use crate::services::SERVICES_IMAGE;

/// The agent: counts writes in Redis (`db`) and answers the count on :8080/cgi-bin/count.
const AGENT: &str = r#"mkdir -p /www/cgi-bin /state
printf '#!/bin/sh\necho Content-Type: text/plain\necho\nprintf "GET writes\\r\\nQUIT\\r\\n" | nc db 6379 | sed -n 2p\n' > /www/cgi-bin/count
chmod +x /www/cgi-bin/count
httpd -p 8080 -h /www
while true; do printf 'INCR writes\r\nQUIT\r\n' | nc db 6379 >> /state/replies; sleep 0.2; done"#;

pub struct Stack {
    pub project: String,
    pub network: String,
    pub db: String,
    pub agent: String,
    pub web: String,
    pub volumes: [String; 3],
}

fn label(k: &str, v: &str) -> String {
    format!("{k}={v}")
}

impl Stack {
    /// Creates and starts the stack; `site_mb` MiB of static files in the web volume.
    pub fn start(c: &mut Cleanup, site_mb: usize) -> Stack {
        ensure_busybox_image();
        let project = unique("lbtstack");
        let s = Stack {
            network: format!("{project}_default"),
            db: format!("{project}-db-1"),
            agent: format!("{project}-agent-1"),
            web: format!("{project}-web-1"),
            volumes: [
                format!("{project}_dbdata"),
                format!("{project}_agentstate"),
                format!("{project}_site"),
            ],
            project,
        };
        c.networks.push(s.network.clone());
        docker(&["network", "create", &s.network]);
        for v in &s.volumes {
            new_volume(c, v);
        }
        let site = volume_path(&s.volumes[2]);
        std::fs::write(site.join("index.html"), "<h1>front</h1>\n").unwrap();
        if site_mb > 0 {
            fill(&site.join("assets.bin"), site_mb);
        }
        s.start_db(c);
        s.start_agent(c);
        s.start_web(c);
        for n in [&s.db, &s.agent, &s.web] {
            wait_for_health(n);
        }
        s
    }

    fn run(
        &self,
        c: &mut Cleanup,
        name: &str,
        service: &str,
        depends: Option<&str>,
        extra: &[&str],
    ) {
        c.containers.push(name.to_string());
        let mut args: Vec<String> = [
            "run",
            "-d",
            "--name",
            name,
            "--network",
            &self.network,
            "--network-alias",
            service,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for l in [
            label("com.docker.compose.project", &self.project),
            label("com.docker.compose.service", service),
        ]
        .into_iter()
        .chain(depends.map(|d| {
            label(
                "com.docker.compose.depends_on",
                &format!("{d}:service_healthy:false"),
            )
        })) {
            args.push("-l".into());
            args.push(l);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&args);
    }

    fn start_db(&self, c: &mut Cleanup) {
        let vol = format!("{}:/data", self.volumes[0]);
        self.run(
            c,
            &self.db,
            "db",
            None,
            &[
                "-v",
                &vol,
                "--health-cmd",
                "redis-cli ping | grep -q PONG",
                "--health-interval",
                "1s",
                SERVICES_IMAGE,
                "redis-server",
                "--dir",
                "/data",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ],
        );
    }

    fn start_agent(&self, c: &mut Cleanup) {
        let vol = format!("{}:/state", self.volumes[1]);
        self.run(
            c,
            &self.agent,
            "agent",
            Some("db"),
            &[
                "-v",
                &vol,
                "--health-cmd",
                "wget -qO- http://127.0.0.1:8080/cgi-bin/count | grep -q '[0-9]'",
                "--health-interval",
                "1s",
                BUSYBOX_IMAGE,
                "sh",
                "-c",
                AGENT,
            ],
        );
    }

    fn start_web(&self, c: &mut Cleanup) {
        let vol = format!("{}:/site", self.volumes[2]);
        self.run(
            c,
            &self.web,
            "web",
            Some("agent"),
            &[
                "-v",
                &vol,
                "--health-cmd",
                "wget -qO- http://agent:8080/cgi-bin/count | grep -q '[0-9]'",
                "--health-interval",
                "1s",
                "-l",
                "lifeboat.probe=wget -qO- http://127.0.0.1/index.html | grep -q front",
                BUSYBOX_IMAGE,
                "httpd",
                "-f",
                "-p",
                "80",
                "-h",
                "/site",
            ],
        );
    }

    /// The write count the agent reports, asked from the web front over the stack's network.
    pub fn count_via_web(&self) -> u64 {
        docker(&[
            "exec",
            &self.web,
            "sh",
            "-c",
            "wget -qO- http://agent:8080/cgi-bin/count",
        ])
        .trim()
        .trim_start_matches(':')
        .parse()
        .unwrap_or(0)
    }

    /// Removes containers, volumes and the network: a lost host.
    pub fn destroy(&self) {
        docker(&["rm", "-f", &self.web, &self.agent, &self.db]);
        for v in &self.volumes {
            docker(&["volume", "rm", v]);
        }
        docker(&["network", "rm", &self.network]);
    }
}

/// Writes `mb` MiB of incompressible data to `path`.
pub fn fill(path: &std::path::Path, mb: usize) {
    let mut f = std::fs::File::create(path).unwrap();
    let mut urandom = std::fs::File::open("/dev/urandom").unwrap();
    std::io::copy(
        &mut std::io::Read::take(&mut urandom, (mb as u64) << 20),
        &mut f,
    )
    .unwrap();
}

/// When the container's healthcheck first passed (RFC 3339), from its health log.
/// When `name` first turned healthy since `since`, from the engine's event log (its health
/// log keeps only the last five checks, too few once a restore takes a while).
fn first_healthy(name: &str, since: jiff::Timestamp) -> jiff::Timestamp {
    let until = jiff::Timestamp::now().as_second() + 1;
    let events = docker(&[
        "events",
        "--since",
        &since.as_second().to_string(),
        "--until",
        &until.to_string(),
        "--filter",
        &format!("container={name}"),
        "--filter",
        "event=health_status",
        "--format",
        "{{.TimeNano}} {{.Action}}",
    ]);
    events
        .lines()
        .find(|l| l.ends_with("health_status: healthy"))
        .and_then(|l| l.split(' ').next()?.parse::<i128>().ok())
        .map(|ns| jiff::Timestamp::from_nanosecond(ns).unwrap())
        .unwrap_or_else(|| panic!("{name} never healthy since {since}: {events}"))
}

fn ts(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

#[test]
fn a_three_service_stack_is_restored_from_scratch_in_dependency_order() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let s = Stack::start(&mut c, 0);
    std::thread::sleep(Duration::from_secs(2));
    let before = s.count_via_web();
    assert!(before > 0, "the stack works before the backup");
    let backup = lb
        .run(&["backup", "--project", &s.project, "--json"])
        .ok()
        .json();
    let run = backup["run_id"].as_str().unwrap().to_string();
    assert_eq!(backup["backups"].as_array().unwrap().len(), 3);
    s.destroy();

    let plan = lb
        .run(&["restore", "--project", &s.project, "--plan", "--json"])
        .ok()
        .json();
    assert_eq!(plan["plan"]["run_id"], run.as_str());
    assert_eq!(
        plan["plan"]["levels"],
        serde_json::json!([[s.db], [s.agent], [s.web]])
    );
    assert!(!docker_ok(&["inspect", &s.db]), "--plan created nothing");

    let restore_began = jiff::Timestamp::now();
    let out = lb
        .run(&["restore", "--project", &s.project, "--json"])
        .ok()
        .json();
    assert_eq!(out["ok"], true, "{out}");
    for n in [&s.db, &s.agent, &s.web] {
        assert_eq!(inspect(n, "{{.State.Health.Status}}"), "healthy", "{n}");
    }
    // Each service started only once what it depends on was healthy.
    let agent_started = ts(&inspect(&s.agent, "{{.State.StartedAt}}"));
    let web_started = ts(&inspect(&s.web, "{{.State.StartedAt}}"));
    assert!(
        agent_started >= first_healthy(&s.db, restore_began),
        "the agent started before the database was healthy"
    );
    assert!(
        web_started >= first_healthy(&s.agent, restore_began),
        "the web front started before the agent was healthy"
    );
    // The data came back (Redis' snapshot of the moment of the backup), and the chain works.
    let after = s.count_via_web();
    assert!(after > 0, "the web front gets an answer through the agent");
    assert!(
        inspect(
            &s.db,
            "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}"
        )
        .contains(&s.network)
    );
}

#[test]
fn at_picks_the_complete_run_of_that_moment() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let s = Stack::start(&mut c, 0);
    let run1 = lb
        .run(&["backup", "--project", &s.project, "--json"])
        .ok()
        .json()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    std::thread::sleep(Duration::from_millis(1100));
    let between = jiff::Timestamp::now().to_string();
    std::thread::sleep(Duration::from_millis(1100));
    let run2 = lb
        .run(&["backup", "--project", &s.project, "--json"])
        .ok()
        .json()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    // A later backup of the database alone is not a complete run.
    lb.run(&["backup", &s.db]).ok();
    let plan = |at: Option<&str>| {
        let mut args = vec!["restore", "--project", &s.project, "--plan", "--json"];
        if let Some(at) = at {
            args.extend(["--at", at]);
        }
        lb.run(&args).ok().json()["plan"].clone()
    };
    let p = plan(Some(&between));
    assert_eq!(p["run_id"], run1.as_str());
    for svc in [&s.db, &s.agent, &s.web] {
        assert_eq!(p["backups"][svc]["run_id"], run1.as_str(), "{svc}");
    }
    let p = plan(None);
    assert_eq!(
        p["run_id"],
        run2.as_str(),
        "the newest complete run wins over a newer single backup"
    );
    let early = lb.run(&[
        "restore",
        "--project",
        &s.project,
        "--plan",
        "--at",
        "2001-01-01T00:00:00Z",
    ]);
    assert_eq!(early.code, 15, "{}", early.stderr);
    assert!(early.stderr.contains("2001-01-01"), "{}", early.stderr);
}

#[test]
fn cycles_and_missing_dependencies_are_named_before_anything_is_touched() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let a = unique("lbt-cyc-a");
    let b = unique("lbt-cyc-b");
    let lonely = unique("lbt-needy");
    run_sleeper(&mut c, &a, &["-l", &format!("lifeboat.depends-on={b}")]);
    run_sleeper(&mut c, &b, &["-l", &format!("lifeboat.depends-on={a}")]);
    run_sleeper(
        &mut c,
        &lonely,
        &["-l", "lifeboat.depends-on=ghost-service"],
    );
    lb.run(&["backup", &a, &b, &lonely]).ok();
    let cyc = lb.run(&["restore", &a, &b, "--plan"]);
    assert_eq!(cyc.code, 1, "{}", cyc.stderr);
    assert!(
        cyc.stderr.contains("dependency cycle")
            && cyc.stderr.contains(&a)
            && cyc.stderr.contains(&b),
        "{}",
        cyc.stderr
    );
    let missing = lb.run(&["restore", &lonely, "--plan"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("ghost-service")
            && missing
                .stderr
                .contains("neither in the restore nor running"),
        "{}",
        missing.stderr
    );
    // Refused without --force: the containers exist; nothing was replaced.
    let refused = lb.run(&["restore", &a, &b]);
    assert_ne!(refused.code, 0);
    assert_eq!(inspect(&a, "{{.State.Running}}"), "true");
}

#[test]
fn legacy_links_are_restored_and_order_the_stack() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let db = unique("lbt-linkdb");
    let web = unique("lbt-linkweb");
    run_sleeper(&mut c, &db, &[]);
    run_sleeper(&mut c, &web, &["--link", &format!("{db}:database")]);
    lb.run(&["backup", &db, &web]).ok();
    docker(&["rm", "-f", &web, &db]);
    let plan = lb
        .run(&["restore", &web, &db, "--plan", "--json"])
        .ok()
        .json();
    assert_eq!(plan["plan"]["levels"], serde_json::json!([[db], [web]]));
    lb.run(&["restore", &web, &db]).ok();
    let links = inspect(&web, "{{json .HostConfig.Links}}");
    assert!(links.contains(&format!("/{db}:/{web}/database")), "{links}");
    let resolved = docker(&["exec", &web, "sh", "-c", "cat /etc/hosts"]);
    assert!(resolved.contains("database"), "{resolved}");
}

#[test]
fn a_volume_shared_by_two_services_is_restored_once_and_both_mount_it() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let project = unique("shared");
    let vol = unique("shared-spool");
    let path = new_volume(&mut c, &vol);
    std::fs::write(path.join("queue"), "42 records\n").unwrap();
    let (agent, web) = (format!("{project}-agent"), format!("{project}-web"));
    for (name, service) in [(&agent, "agent"), (&web, "web")] {
        run_sleeper(
            &mut c,
            name,
            &[
                "-l",
                &label("com.docker.compose.project", &project),
                "-l",
                &label("com.docker.compose.service", service),
                "-v",
                &format!("{vol}:/data"),
            ],
        );
    }
    lb.run(&["backup", "--project", &project]).ok();
    // Read and stored once for the run: both manifests refer to one part.
    let volume_part = |name: &str| {
        let row = lb.backups(name).pop().unwrap();
        row["parts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["kind"] == "volume")
            .map(|p| p["snapshot_id"].clone())
            .unwrap()
    };
    assert_eq!(volume_part(&agent), volume_part(&web));
    for name in [&agent, &web] {
        docker(&["rm", "-f", name]);
    }
    docker(&["volume", "rm", &vol]);
    let plan = lb
        .run(&["restore", "--project", &project, "--plan", "--json"])
        .ok();
    let levels = plan.json()["plan"]["levels"].clone();
    assert_eq!(
        levels,
        serde_json::json!([[agent.clone()], [web.clone()]]),
        "{}",
        plan.stdout
    );
    let out = lb.run(&["restore", "--project", &project]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    for name in [&agent, &web] {
        assert_eq!(
            docker(&["exec", name, "cat", "/data/queue"]).trim(),
            "42 records",
            "{name} sees the shared data"
        );
        assert_eq!(inspect(name, "{{range .Mounts}}{{.Name}}{{end}}"), vol);
    }
    // The drill keeps it shared too, and passes.
    let drill = lb.run(&["drill", "--project", &project, "--json"]);
    assert_eq!(drill.code, 0, "{}\n{}", drill.stdout, drill.stderr);
}
