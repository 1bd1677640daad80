//! `lifeboat daemon` against the real engine: schedules, retention, failure metrics and
//! webhooks, the token, the event stream, and a daemon killed or stopped mid-job.

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use lifeboat_testkit::http::{self, Receiver, Response, free_port};

use crate::common::*;

pub const TOKEN: &str = "test-token-0123456789";

/// A running daemon on its own port; stopped when dropped (SIGTERM, SIGKILL after 30 s).
pub struct Daemon {
    pub child: Child,
    pub base: String,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts a daemon that manages only containers labelled `lifeboat.test=<scope>` (the
    /// engine is shared with other tests), with more `[daemon]` settings.
    pub fn start(lb: &Lb, scope: &str, settings: &str) -> Daemon {
        Daemon::start_env(lb, scope, settings, &[])
    }

    /// [`Daemon::start`] with more environment variables.
    pub fn start_env(lb: &Lb, scope: &str, settings: &str, env: &[(&str, &str)]) -> Daemon {
        let cfg = lb.state.path().join("lifeboat.toml");
        // Retention acts at once unless a test sets the margin (its default is 1 h).
        let margin = if settings.contains("retention_margin") {
            ""
        } else {
            "retention_margin = \"0s\"\n"
        };
        let config = format!(
            "[daemon]\nscope = \"lifeboat.test={scope}\"\njitter = \"0s\"\n{margin}{settings}\n"
        );
        std::fs::write(&cfg, config).unwrap();
        let port = free_port();
        let log = lb.state.path().join(format!("daemon-{port}.log"));
        let child = lb
            .command()
            .envs(env.iter().copied())
            .env("LIFEBOAT_API_TOKEN", TOKEN)
            .args(["daemon", "--config"])
            .arg(&cfg)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start the daemon");
        let d = Daemon {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        d.wait_until(
            "the daemon answers /healthz",
            Duration::from_secs(20),
            || std::net::TcpStream::connect(d.base.trim_start_matches("http://")).is_ok(),
        );
        d
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> Response {
        http::request(
            "GET",
            &format!("{}{path}", self.base),
            &[("Authorization", &format!("Bearer {TOKEN}"))],
            None,
        )
    }

    pub fn post(&self, path: &str, body: Option<&str>) -> Response {
        http::request(
            "POST",
            &format!("{}{path}", self.base),
            &[("Authorization", &format!("Bearer {TOKEN}"))],
            body,
        )
    }

    pub fn service(&self, name: &str) -> serde_json::Value {
        let r = self.get(&format!("/api/v1/services/{name}"));
        if r.status == 200 {
            r.json()
        } else {
            serde_json::Value::Null
        }
    }

    /// Waits until the daemon has discovered service `name` (it answers before that).
    pub fn wait_for_service(&self, name: &str) {
        self.wait_until(
            &format!("the daemon to discover {name}"),
            Duration::from_secs(30),
            || !self.service(name).is_null(),
        );
    }

    pub fn jobs(&self, name: &str) -> Vec<serde_json::Value> {
        self.get(&format!("/api/v1/jobs?service={name}")).json()["jobs"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn metric(&self, line_prefix: &str) -> Option<f64> {
        self.get("/metrics")
            .body
            .lines()
            .find(|l| l.starts_with(line_prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[track_caller]
    pub fn wait_until(&self, what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            if ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "timed out after {timeout:?} waiting for {what}\ndaemon log:\n{}",
            self.log_text()
        );
    }

    /// Waits for job `id` to end; returns it.
    pub fn wait_job(&self, id: i64, timeout: Duration) -> serde_json::Value {
        let mut job = serde_json::Value::Null;
        self.wait_until(&format!("job {id} to end"), timeout, || {
            job = self.get(&format!("/api/v1/jobs/{id}")).json();
            ["succeeded", "failed", "aborted"].contains(&job["state"].as_str().unwrap_or(""))
        });
        job
    }

    pub fn signal(&self, sig: &str) {
        assert!(
            std::process::Command::new("kill")
                .args([&format!("-{sig}"), &self.child.id().to_string()])
                .status()
                .unwrap()
                .success()
        );
    }
}

impl Drop for Daemon {
    /// SIGTERM first, so a job in flight (a drill's sandbox) is finished and cleaned up.
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a sleeper the test's daemon manages: `lifeboat.enable=true` and the daemon's scope
/// label `lifeboat.test=<scope>`, volume `vol` on /data if given, and more `labels`.
pub fn managed(c: &mut Cleanup, scope: &str, name: &str, vol: Option<&str>, labels: &[&str]) {
    let mount = vol.map(|v| format!("{v}:/data"));
    let scope = format!("lifeboat.test={scope}");
    let mut flags = vec!["-l", "lifeboat.enable=true", "-l", &scope];
    if let Some(m) = &mount {
        flags.extend(["-v", m]);
    }
    for l in labels {
        flags.extend(["-l", l]);
    }
    run_sleeper(c, name, &flags);
}

pub fn succeeded(jobs: &[serde_json::Value]) -> usize {
    jobs.iter().filter(|j| j["state"] == "succeeded").count()
}

#[test]
fn a_ten_second_schedule_backs_up_three_times_and_retention_keeps_two() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let name = unique("lbt-sched");
    let vol = unique("lbt-sched-data");
    new_volume(&mut c, &vol);
    managed(
        &mut c,
        &name,
        &name,
        Some(&vol),
        &["lifeboat.schedule=10s", "lifeboat.retention=last=2"],
    );
    let d = Daemon::start(&lb, &name, "");
    let t0 = Instant::now();
    d.wait_until(
        "three successful scheduled backups",
        Duration::from_secs(60),
        || succeeded(&d.jobs(&name)) >= 3,
    );
    let elapsed = t0.elapsed().as_secs_f64();
    // First at start, then every 10 s: the third lands about 20 s in, never much sooner.
    assert!(
        (18.0..45.0).contains(&elapsed),
        "three backups took {elapsed:.1}s"
    );
    let jobs = d.jobs(&name);
    assert!(
        jobs.iter()
            .all(|j| j["trigger"] == "schedule" && j["kind"] == "backup"),
        "{jobs:?}"
    );
    d.wait_until(
        "retention after the third backup",
        Duration::from_secs(20),
        || lb.backups(&name).len() == 2,
    );
    let newest = jobs.iter().find(|j| j["state"] == "succeeded").unwrap();
    let retention = &newest["detail"]["retention"];
    assert_eq!(
        retention["kept"].as_array().unwrap().len(),
        2,
        "{retention}"
    );
    // The policy fingerprint is the service's, recorded in the manifest and the policy log.
    let sha = d.service(&name)["policy_sha256"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(sha.len(), 64);
    let snaps = d.get(&format!("/api/v1/snapshots?service={name}")).json();
    let rows = snaps["snapshots"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter().all(|r| r["policy_sha256"] == sha.as_str()),
        "{rows:?}"
    );
    let log = lb.run(&["policy", "log", &name, "--json"]).ok().json();
    assert_eq!(log["policy_log"][0]["sha256"], sha.as_str());
    assert_eq!(
        d.metric(&format!("lifeboat_snapshots{{service=\"{name}\"}}")),
        Some(2.0)
    );
    assert_eq!(
        d.metric(&format!("lifeboat_rpo_breached{{service=\"{name}\"}}")),
        Some(0.0)
    );
    assert!(
        d.metric(&format!(
            "lifeboat_last_success_timestamp_seconds{{service=\"{name}\"}}"
        ))
        .unwrap()
            > 1.7e9
    );
}

/// The retention outcome of `name`'s newest backup that deleted one.
fn retention_that_deleted(d: &Daemon, name: &str) -> Option<serde_json::Value> {
    d.jobs(name)
        .into_iter()
        .map(|j| j["detail"]["retention"].clone())
        .find(|r| r["deleted"].as_array().is_some_and(|a| !a.is_empty()))
}

#[test]
fn retention_prunes_at_once_on_a_daemon_alone_and_leaves_it_to_a_scheduled_prune() {
    for (settings, prunes) in [("", true), ("prune = \"1d\"", false)] {
        let lb = Lb::new();
        let mut c = Cleanup::default();
        let name = unique("lbt-prune");
        managed(
            &mut c,
            &name,
            &name,
            None,
            &["lifeboat.schedule=3s", "lifeboat.retention=last=1"],
        );
        let d = Daemon::start(&lb, &name, settings);
        let mut deleted = None;
        d.wait_until(
            "a retention run that deleted a backup",
            Duration::from_secs(60),
            || {
                deleted = retention_that_deleted(&d, &name);
                deleted.is_some()
            },
        );
        let retention = deleted.unwrap();
        assert_eq!(
            !retention["prune"].is_null(),
            prunes,
            "settings `{settings}`: {retention}"
        );
    }
}

#[test]
fn a_failing_service_raises_the_failure_metric_and_calls_the_webhook_then_recovers() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let hook = Receiver::start();
    let pings = Receiver::start();
    let name = unique("lbt-fail");
    // The pre hook fails until /ok exists: a broken service, then a fixed one.
    managed(
        &mut c,
        &name,
        &name,
        None,
        &[
            "lifeboat.schedule=1h",
            "lifeboat.pre=test -f /ok",
            &format!("lifeboat.ping-url={}/ping/abc", pings.url),
        ],
    );
    let d = Daemon::start(&lb, &name, &format!("webhook_url = \"{}/hook\"", hook.url));
    let failed = hook
        .wait_for("backup_failed", Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no failure webhook\n{}", d.log_text()));
    let event: serde_json::Value = serde_json::from_str(&failed).unwrap();
    assert_eq!(event["service"], name.as_str());
    assert!(event["error"].as_str().unwrap().contains("hook"), "{event}");
    let failures = format!("lifeboat_backup_failures_total{{service=\"{name}\"}}");
    assert_eq!(d.metric(&failures), Some(1.0));
    assert_eq!(
        d.metric(&format!(
            "lifeboat_last_backup_failed{{service=\"{name}\"}}"
        )),
        Some(1.0)
    );
    assert_eq!(d.service(&name)["status"], "failing");
    assert!(lb.backups(&name).is_empty());
    let fail_ping = pings.wait_for("GET /ping/abc/fail HTTP", Duration::from_secs(20));
    assert!(fail_ping.is_some(), "no failure ping");

    docker(&["exec", &name, "sh", "-c", "touch /ok"]);
    let r = d.post(&format!("/api/v1/services/{name}/backup"), None);
    assert_eq!(r.status, 202, "{}", r.body);
    let job = d.wait_job(
        r.json()["job_id"].as_i64().unwrap(),
        Duration::from_secs(60),
    );
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["trigger"], "api");
    let ok_ping = pings.wait_for("GET /ping/abc HTTP", Duration::from_secs(20));
    assert!(ok_ping.is_some(), "no success ping");
    let recovered = hook.wait_for("backup_recovered", Duration::from_secs(20));
    assert!(recovered.is_some(), "no recovery webhook\n{}", d.log_text());
    assert_eq!(
        d.metric(&format!(
            "lifeboat_last_backup_failed{{service=\"{name}\"}}"
        )),
        Some(0.0)
    );
    assert_eq!(
        d.metric(&failures),
        Some(1.0),
        "the counter keeps the past failure"
    );
}

#[test]
fn the_api_refuses_requests_without_the_token() {
    let lb = Lb::new();
    let d = Daemon::start(&lb, "none", "");
    let url = |p: &str| format!("{}{p}", d.base);
    for path in [
        "/api/v1/services",
        "/api/v1/jobs",
        "/metrics",
        "/api/v1/snapshots",
    ] {
        let none = http::request("GET", &url(path), &[], None);
        assert_eq!(none.status, 401, "{path}: {}", none.body);
        assert!(none.body.contains("Bearer"), "{}", none.body);
        let wrong = http::request("GET", &url(path), &[("Authorization", "Bearer nope")], None);
        assert_eq!(wrong.status, 401, "{path}");
        assert_eq!(d.get(path).status, 200, "{path} with the token");
    }
    let post = http::request("POST", &url("/api/v1/services/x/backup"), &[], None);
    assert_eq!(post.status, 401);
    assert_eq!(
        http::request("GET", &url("/healthz"), &[], None).status,
        200
    );
    // With the token, bad requests are named.
    assert_eq!(
        d.post("/api/v1/services/no-such-service/backup", None)
            .status,
        404
    );
    assert_eq!(d.get("/api/v1/jobs/abc").status, 400);
    assert_eq!(d.get("/api/v1/jobs/999999").status, 404);
    let bad = d.post("/api/v1/services/x/restore", Some("{\"forse\": true}"));
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("forse"), "{}", bad.body);
}

#[test]
fn a_label_change_and_a_new_container_are_picked_up_from_the_event_stream() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let name = unique("lbt-events");
    managed(&mut c, &name, &name, None, &["lifeboat.schedule=1h"]);
    let d = Daemon::start(&lb, &name, "");
    d.wait_until(
        "the service with its 1h schedule",
        Duration::from_secs(20),
        || d.service(&name)["policy"]["schedule"] == "1h",
    );
    let first = d.service(&name)["policy_sha256"]
        .as_str()
        .unwrap()
        .to_string();
    // Compose applies a label change by recreating the container.
    docker(&["rm", "-f", &name]);
    d.wait_until(
        "the service marked missing",
        Duration::from_secs(20),
        || d.service(&name)["status"] == "missing",
    );
    managed(
        &mut c,
        &name,
        &name,
        None,
        &["lifeboat.schedule=2h", "lifeboat.retention=7d"],
    );
    d.wait_until("the new schedule", Duration::from_secs(20), || {
        d.service(&name)["policy"]["schedule"] == "2h"
    });
    let second = d.service(&name)["policy_sha256"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(first, second);
    let log = d.get(&format!("/api/v1/policy/log?service={name}")).json();
    let shas: Vec<&str> = log["policy_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sha256"].as_str().unwrap())
        .collect();
    assert_eq!(shas, [first.as_str(), second.as_str()]);
    // A container created after the start, with a bad label: listed as not protected.
    let other = unique("lbt-events-new");
    managed(&mut c, &name, &other, None, &["lifeboat.schedule=often"]);
    d.wait_until("the new container", Duration::from_secs(20), || {
        d.service(&other)["status"] == "invalid"
    });
    assert!(
        d.service(&other)["policy_error"]
            .as_str()
            .unwrap()
            .contains("often")
    );
    assert!(!d.log_text().contains("poll"), "discovery must not poll");
}

/// A volume holding `mb` MiB of incompressible data, so that reading it takes a while.
fn big_volume(c: &mut Cleanup, name: &str, mb: usize) {
    crate::stack::fill(&new_volume(c, name).join("blob"), mb);
}

fn paused(name: &str) -> bool {
    inspect(name, "{{.State.Paused}}") == "true"
}

#[test]
fn a_daemon_killed_mid_backup_leaves_no_container_paused_after_restart() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let name = unique("lbt-kill");
    let vol = unique("lbt-kill-data");
    big_volume(&mut c, &vol, 400);
    managed(
        &mut c,
        &name,
        &name,
        Some(&vol),
        &["lifeboat.schedule=1h", "lifeboat.mode=pause"],
    );
    let mut d = Daemon::start(&lb, &name, "");
    d.wait_until(
        "the container paused by the backup",
        Duration::from_secs(30),
        || paused(&name),
    );
    d.signal("KILL");
    let _ = d.child.wait();
    assert!(
        paused(&name),
        "a SIGKILLed daemon cannot undo its pause: the next start must"
    );
    let d2 = Daemon::start(&lb, &name, "");
    d2.wait_until(
        "the container unpaused by the restarted daemon",
        Duration::from_secs(20),
        || !paused(&name),
    );
    assert_eq!(inspect(&name, "{{.State.Running}}"), "true");
    let jobs = d2.jobs(&name);
    let first = jobs.iter().min_by_key(|j| j["id"].as_i64()).unwrap();
    assert_eq!(first["state"], "aborted", "{first}");
    // The interrupted slot is run again, once, and it completes.
    d2.wait_until(
        "a complete backup after the restart",
        Duration::from_secs(90),
        || succeeded(&d2.jobs(&name)) == 1,
    );
    assert_eq!(lb.backups(&name).len(), 1);
    assert!(!paused(&name));
}

#[test]
fn sigterm_mid_backup_lets_the_job_finish_and_unpauses() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let name = unique("lbt-term");
    let vol = unique("lbt-term-data");
    big_volume(&mut c, &vol, 300);
    managed(
        &mut c,
        &name,
        &name,
        Some(&vol),
        &["lifeboat.schedule=1h", "lifeboat.mode=pause"],
    );
    let mut d = Daemon::start(&lb, &name, "");
    d.wait_until(
        "the container paused by the backup",
        Duration::from_secs(30),
        || paused(&name),
    );
    d.signal("TERM");
    let status = d.child.wait().unwrap();
    assert!(status.success(), "daemon exit {status:?}\n{}", d.log_text());
    assert!(!paused(&name));
    assert_eq!(inspect(&name, "{{.State.Running}}"), "true");
    assert_eq!(
        lb.backups(&name).len(),
        1,
        "the running job finished before exit"
    );
    assert!(d.log_text().contains("daemon stopped"));
}

#[test]
fn a_restore_requested_through_the_api_rebuilds_a_side_by_side_copy() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let name = unique("lbt-apirest");
    let vol = unique("lbt-apirest-data");
    let path = new_volume(&mut c, &vol);
    std::fs::write(path.join("records"), "1000 records\n").unwrap();
    managed(&mut c, &name, &name, Some(&vol), &["lifeboat.schedule=1h"]);
    let d = Daemon::start(&lb, &name, "");
    d.wait_until("the first backup", Duration::from_secs(30), || {
        succeeded(&d.jobs(&name)) == 1
    });
    let copy = format!("{name}-copy");
    c.containers.push(copy.clone());
    c.volumes.push(format!("{copy}_{vol}"));
    // Without --force the running original is never overwritten: the job fails, says why.
    let refused = d.post(&format!("/api/v1/services/{name}/restore"), None);
    assert_eq!(refused.status, 202);
    let job = d.wait_job(
        refused.json()["job_id"].as_i64().unwrap(),
        Duration::from_secs(60),
    );
    assert_eq!(job["state"], "failed");
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .contains("refusing to overwrite"),
        "{job}"
    );
    let r = d.post(
        &format!("/api/v1/services/{name}/restore"),
        Some(&format!("{{\"as\": \"{copy}\"}}")),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let job = d.wait_job(
        r.json()["job_id"].as_i64().unwrap(),
        Duration::from_secs(60),
    );
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["kind"], "restore");
    assert_eq!(inspect(&copy, "{{.State.Running}}"), "true");
    let restored = docker(&["exec", &copy, "sh", "-c", "cat /data/records"]);
    assert_eq!(restored.trim(), "1000 records");
}

#[test]
fn retention_refuses_to_delete_after_a_suspiciously_small_backup() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let hook = Receiver::start();
    let name = unique("lbt-shrink");
    let vol = unique("lbt-shrink-data");
    let path = new_volume(&mut c, &vol);
    std::fs::write(path.join("table"), vec![7u8; 2 << 20]).unwrap();
    managed(
        &mut c,
        &name,
        &name,
        Some(&vol),
        &["lifeboat.schedule=1h", "lifeboat.retention=last=1"],
    );
    let d = Daemon::start(&lb, &name, &format!("webhook_url = \"{}/hook\"", hook.url));
    d.wait_until("the first backup", Duration::from_secs(30), || {
        succeeded(&d.jobs(&name)) == 1
    });
    // The service loses its data; the next backup is tiny.
    std::fs::remove_file(path.join("table")).unwrap();
    let r = d.post(&format!("/api/v1/services/{name}/backup"), None);
    let job = d.wait_job(
        r.json()["job_id"].as_i64().unwrap(),
        Duration::from_secs(60),
    );
    assert_eq!(job["state"], "succeeded");
    let refused = job["detail"]["retention"]["refused"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(refused.contains("suspiciously small"), "{job}");
    assert_eq!(lb.backups(&name).len(), 2, "the good backup is kept");
    assert!(
        hook.wait_for("retention_refused", Duration::from_secs(20))
            .is_some()
    );
    // Forced, the prune applies the policy.
    let r = d.post(
        &format!("/api/v1/services/{name}/prune"),
        Some("{\"force\": true}"),
    );
    let job = d.wait_job(
        r.json()["job_id"].as_i64().unwrap(),
        Duration::from_secs(60),
    );
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(lb.backups(&name).len(), 1);
}

#[test]
fn without_a_token_variable_a_token_file_is_generated_once_and_metrics_can_listen_apart() {
    let lb = Lb::new();
    let token_file = lb.state.path().join("api.token");
    let api = free_port();
    let metrics = free_port();
    let config = lb.state.path().join("lifeboat.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nscope = \"lifeboat.test=none\"\nmetrics_listen = \"127.0.0.1:{metrics}\"\n"
        ),
    )
    .unwrap();
    let start = || {
        lb.command()
            .env_remove("LIFEBOAT_API_TOKEN")
            .args([
                "daemon",
                "--listen",
                &format!("127.0.0.1:{api}"),
                "--config",
            ])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let wait_port = |port: u16| {
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "port {port} never opened"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let stop = |mut child: Child| {
        assert!(
            std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .unwrap()
                .success()
        );
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert!(child.wait().unwrap().success(), "{err}");
        err
    };
    let first = start();
    wait_port(api);
    wait_port(metrics);
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(token.len(), 64);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let auth = format!("Bearer {token}");
    let m = http::request(
        "GET",
        &format!("http://127.0.0.1:{metrics}/metrics"),
        &[("Authorization", &auth)],
        None,
    );
    assert_eq!(m.status, 200);
    assert!(m.body.contains("lifeboat_jobs_running 0"), "{}", m.body);
    assert_eq!(
        http::request(
            "GET",
            &format!("http://127.0.0.1:{metrics}/metrics"),
            &[],
            None
        )
        .status,
        401
    );
    assert_eq!(
        http::request(
            "GET",
            &format!("http://127.0.0.1:{metrics}/healthz"),
            &[],
            None
        )
        .status,
        200
    );
    assert_eq!(
        http::request(
            "GET",
            &format!("http://127.0.0.1:{api}/api/v1/services"),
            &[("Authorization", &auth)],
            None
        )
        .status,
        200
    );
    let err = stop(first);
    assert!(err.contains(&token), "the new token is printed once: {err}");
    let second = start();
    wait_port(api);
    let err = stop(second);
    assert!(
        !err.contains(&token),
        "a kept token is never printed again: {err}"
    );
    assert_eq!(std::fs::read_to_string(&token_file).unwrap().trim(), token);
}

#[test]
fn with_drills_the_first_backup_is_verified_and_retention_keeps_the_newest_verified_one() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let name = unique("lbt-drilld");
    let vol = unique("lbt-drilld-data");
    let path = new_volume(&mut c, &vol);
    std::fs::write(path.join("data"), vec![3u8; 1 << 20]).unwrap();
    managed(
        &mut c,
        &name,
        &name,
        Some(&vol),
        &[
            "lifeboat.schedule=1h",
            "lifeboat.retention=last=1",
            "lifeboat.drill=1d",
        ],
    );
    let d = Daemon::start(&lb, &name, "");
    let drilled = |d: &Daemon| {
        d.jobs(&name)
            .into_iter()
            .filter(|j| j["kind"] == "drill" && j["state"] == "succeeded")
            .count()
    };
    d.wait_until("the first backup's drill", Duration::from_secs(60), || {
        drilled(&d) == 1
    });
    let first = lb.backups(&name)[0]["backup_id"]
        .as_str()
        .unwrap()
        .to_string();
    let svc = d.service(&name);
    assert_eq!(svc["last_verified_backup"], first.as_str(), "{svc}");
    assert!(
        d.metric(&format!(
            "lifeboat_last_verified_timestamp_seconds{{service=\"{name}\"}}"
        ))
        .unwrap()
            > 1.7e9
    );
    assert_eq!(
        d.metric(&format!("lifeboat_last_drill_failed{{service=\"{name}\"}}")),
        Some(0.0)
    );

    // A second backup is not verified yet: `last=1` must still keep the verified first one.
    let r = d.post(&format!("/api/v1/services/{name}/backup"), None);
    let job = d.wait_job(
        r.json()["job_id"].as_i64().unwrap(),
        Duration::from_secs(60),
    );
    assert_eq!(job["state"], "succeeded");
    let kept: Vec<String> = lb
        .backups(&name)
        .iter()
        .map(|b| b["backup_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kept.len(),
        2,
        "the newest verified backup is kept: {kept:?}"
    );
    assert!(kept.contains(&first));
    // Once a drill verifies the second, the first may go.
    let r = d.post(&format!("/api/v1/services/{name}/drill"), None);
    let job = d.wait_job(
        r.json()["job_id"].as_i64().unwrap(),
        Duration::from_secs(60),
    );
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_ne!(job["backup_id"], first.as_str());
    let r = d.post(&format!("/api/v1/services/{name}/prune"), None);
    let job = d.wait_job(
        r.json()["job_id"].as_i64().unwrap(),
        Duration::from_secs(60),
    );
    assert_eq!(job["state"], "succeeded", "{job}");
    let left = lb.backups(&name);
    assert_eq!(left.len(), 1);
    assert_ne!(left[0]["backup_id"], first.as_str());
    // The drills' sandbox copies carried the service's labels: never managed themselves.
    let services = d.get("/api/v1/services").json()["services"].clone();
    assert_eq!(services.as_array().unwrap().len(), 1, "{services}");
}

/// (thread id, nice, I/O priority class) of every thread of process `pid`.
fn thread_priorities(pid: u32) -> Vec<(String, i64, String)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let tid = t.file_name().to_string_lossy().to_string();
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        // Fields after the command name (which may hold spaces) start at ")".
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        let nice = fields.get(16).and_then(|n| n.parse().ok()).unwrap_or(0);
        let io = std::process::Command::new("ionice")
            .args(["-p", &tid])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        out.push((tid, nice, io));
    }
    out
}

#[test]
fn backups_run_by_the_daemon_run_at_the_lowered_priority_and_its_api_does_not() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let name = unique("lbt-prio");
    let vol = unique("lbt-prio-data");
    big_volume(&mut c, &vol, 400);
    managed(&mut c, &name, &name, Some(&vol), &["lifeboat.schedule=1h"]);
    let d = Daemon::start(&lb, &name, "");
    let pid = d.child.id();
    let mut lowered = Vec::new();
    let mut main_nice = None;
    d.wait_until("the first backup", Duration::from_secs(120), || {
        for (tid, nice, io) in thread_priorities(pid) {
            if tid == pid.to_string() {
                main_nice = Some(nice);
            }
            if nice == 10 {
                lowered.push(io);
            }
        }
        succeeded(&d.jobs(&name)) == 1
    });
    assert!(
        !lowered.is_empty(),
        "no thread ran at nice 10 during the backup"
    );
    assert!(
        lowered
            .iter()
            .any(|io| io.contains("best-effort") && io.contains('7')),
        "the backup threads run at best-effort level 7: {lowered:?}"
    );
    assert_eq!(main_nice, Some(0), "the daemon itself keeps its priority");
    let r = d.get("/api/v1/services");
    assert_eq!(r.status, 200);
}

#[test]
fn lifeboat_jobs_lists_the_daemons_history_by_service_kind_and_time() {
    let lb = Lb::new();
    // Before any daemon ran here: a named error, not an empty list.
    let none = lb.run(&["jobs"]);
    assert_eq!(none.code, 1, "{}", none.stderr);
    assert!(none.stderr.contains("no job history at"), "{}", none.stderr);
    let mut c = Cleanup::default();
    let scope = unique("lbt-jobs");
    let good = format!("{scope}-good");
    let failing = format!("{scope}-failing");
    managed(&mut c, &scope, &good, None, &["lifeboat.schedule=1h"]);
    managed(
        &mut c,
        &scope,
        &failing,
        None,
        &["lifeboat.schedule=1h", "lifeboat.pre=exit 3"],
    );
    let d = Daemon::start(&lb, &scope, "");
    d.wait_until("both first backups ended", Duration::from_secs(60), || {
        succeeded(&d.jobs(&good)) == 1 && d.jobs(&failing).iter().any(|j| j["state"] == "failed")
    });
    let listed = lb.run(&["jobs", &failing, "--json"]).ok().json();
    let jobs = listed.as_array().unwrap();
    assert!(!jobs.is_empty());
    assert!(
        jobs.iter().all(|j| j["service"] == failing.as_str()),
        "{listed}"
    );
    let failed = jobs.iter().find(|j| j["state"] == "failed").unwrap();
    assert!(
        failed["error"].as_str().unwrap().contains("exit"),
        "{failed}"
    );
    // The same as the API's.
    assert_eq!(failed["id"], d.jobs(&failing)[0]["id"]);

    let all = lb.run(&["jobs", "--since", "1h", "--json"]).ok().json();
    let services: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["service"].as_str().unwrap())
        .collect();
    assert!(services.contains(&good.as_str()) && services.contains(&failing.as_str()));
    let future = lb
        .run(&["jobs", "--since", "2099-01-01T00:00:00Z", "--json"])
        .ok()
        .json();
    assert_eq!(future, serde_json::json!([]));
    let drills = lb.run(&["jobs", "--kind", "drill", "--json"]).ok().json();
    assert_eq!(drills, serde_json::json!([]));
    let one = lb.run(&["jobs", "--limit", "1", "--json"]).ok().json();
    assert_eq!(one.as_array().unwrap().len(), 1);

    let table = lb.run(&["jobs", &failing]).ok().stdout;
    assert!(table.starts_with("    ID KIND"), "{table}");
    assert!(
        table.contains("failed") && table.contains(&failing),
        "{table}"
    );
    // Bad filters are named, before anything is read.
    let bad = lb.run(&["jobs", "--kind", "nope"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("use one of backup"), "{}", bad.stderr);
    let bad = lb.run(&["jobs", "--since", "yesterday"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("duration such as 2h"), "{}", bad.stderr);
    // `snapshots --since` filters the same way.
    let snaps = lb
        .run(&["snapshots", &good, "--since", "1h", "--json"])
        .ok()
        .json();
    assert_eq!(snaps.as_array().unwrap().len(), 1);
    let snaps = lb
        .run(&[
            "snapshots",
            &good,
            "--since",
            "2099-01-01T00:00:00Z",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(snaps, serde_json::json!([]));
}
