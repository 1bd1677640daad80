//! The alert rules and Grafana dashboard shipped in `deploy/`, in a real Prometheus
//! (Debian's) scraping a real daemon: the rules pass `promtool`, and an alert fires when a
//! backup fails (and only for that service).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lifeboat_testkit::http::{self, free_port};

use crate::common::*;
use crate::daemon::{Daemon, TOKEN, managed};

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(path)
}

/// A Prometheus server, killed when dropped.
struct Prometheus {
    child: Child,
    base: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Scrapes `target` (host:port, with the API token) every second and evaluates the
    /// shipped rules every second.
    fn start(dir: &Path, target: &str) -> Prometheus {
        let token = dir.join("token");
        std::fs::write(&token, TOKEN).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: lifeboat\n    authorization:\n      \
                 type: Bearer\n      credentials_file: {}\n    static_configs:\n      \
                 - targets: ['{target}']\n",
                deploy("prometheus/lifeboat-rules.yml").display(),
                token.display()
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus (Debian's `prometheus` package: run scripts/setup-engine)");
        let p = Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let t0 = Instant::now();
        let addr = p.base.trim_start_matches("http://").to_string();
        let ready = || {
            std::net::TcpStream::connect(&addr).is_ok()
                && http::request("GET", &format!("{}/-/ready", p.base), &[], None).status == 200
        };
        while !ready() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "prometheus not ready"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    fn api(&self, path: &str) -> serde_json::Value {
        let r = http::request("GET", &format!("{}{path}", self.base), &[], None);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        r.json()
    }

    /// Evaluates `expr` now; panics unless Prometheus accepts it.
    fn query(&self, expr: &str) -> serde_json::Value {
        let v = self.api(&format!("/api/v1/query?query={}", encode(expr)));
        assert_eq!(v["status"], "success", "{expr}: {v}");
        v["data"]["result"].clone()
    }
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(deploy("prometheus"))
        .output()
        .expect("promtool (Debian's `prometheus` package: run scripts/setup-engine)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn the_shipped_alert_fires_in_prometheus_when_a_backup_fails_and_only_for_that_service() {
    let checked = promtool(&["check", "rules", "lifeboat-rules.yml"]);
    assert!(checked.contains("SUCCESS: 10 rules found"), "{checked}");
    promtool(&["test", "rules", "lifeboat-rules.test.yml"]);

    let lb = Lb::new();
    let mut c = Cleanup::default();
    let scope = unique("lbt-alerts");
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
    let dir = tempfile::tempdir().unwrap();
    let p = Prometheus::start(dir.path(), d.base.trim_start_matches("http://"));

    let firing = |p: &Prometheus| -> Vec<serde_json::Value> {
        p.api("/api/v1/alerts")["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a["state"] == "firing")
            .collect()
    };
    let t0 = Instant::now();
    let alerts = loop {
        let alerts = firing(&p);
        let backup_failed = alerts.iter().any(|a| {
            a["labels"]["alertname"] == "LifeboatBackupFailed"
                && a["labels"]["service"] == failing.as_str()
        });
        if backup_failed {
            break alerts;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "no LifeboatBackupFailed alert for {failing}; firing: {alerts:?}; targets: {}",
            p.api("/api/v1/targets")
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let about_good: Vec<_> = alerts
        .iter()
        .filter(|a| a["labels"]["service"] == good.as_str())
        .collect();
    assert!(
        about_good.is_empty(),
        "alerts for the healthy service: {about_good:?}"
    );
    let alert = alerts
        .iter()
        .find(|a| a["labels"]["alertname"] == "LifeboatBackupFailed")
        .unwrap();
    assert_eq!(
        alert["annotations"]["summary"],
        format!("Backup of {failing} failed"),
        "{alert}"
    );
    assert!(
        !alerts
            .iter()
            .any(|a| a["labels"]["alertname"] == "LifeboatDaemonDown"),
        "{alerts:?}"
    );

    // Every rule is healthy in the real server, and every dashboard query evaluates there.
    let groups = p.api("/api/v1/rules")["data"]["groups"].clone();
    let rules = groups[0]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 10);
    for r in rules {
        assert_eq!(r["health"], "ok", "{r}");
    }
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(deploy("grafana/lifeboat-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            p.query(t["expr"].as_str().unwrap());
            queries += 1;
        }
    }
    assert!(queries >= 14);
    // The backups the dashboard graphs are there, per service.
    let ages = p.query("lifeboat_rpo_seconds{job=\"lifeboat\"}");
    assert!(
        ages.as_array()
            .unwrap()
            .iter()
            .any(|s| s["metric"]["service"] == good.as_str()),
        "{ages}"
    );
}
