//! The web dashboard in a real headless Chromium (Debian's), driven through ChromeDriver:
//! it signs in with the token, shows the service with its RPO colour, backs up on a click,
//! and a screenshot of the rendered page is kept in `test-artifacts/dashboard.png`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lifeboat_testkit::http::{self, base64_decode, free_port};
use serde_json::{Value, json};

use crate::common::*;
use crate::daemon::{Daemon, TOKEN, managed};

struct Browser {
    driver: Child,
    base: String,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (scripts/setup-engine installs chromium-driver)");
        let base = format!("http://127.0.0.1:{port}");
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync",
                         "--window-size=1400,900",
                         format!("--user-data-dir={}", profile.path().display())],
            }
        }}});
        let r = http::request(
            "POST",
            &format!("{base}/session"),
            &[],
            Some(&caps.to_string()),
        );
        assert_eq!(r.status, 200, "new session: {}", r.body);
        let session = r.json()["value"]["sessionId"].as_str().unwrap().to_string();
        Browser {
            driver,
            base,
            session,
            _profile: profile,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let body = body.map(|b| b.to_string());
        let r = http::request(method, &url, &[], body.as_deref());
        assert_eq!(r.status, 200, "{method} {path}: {}", r.body);
        r.json()["value"].clone()
    }

    fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body) in the page and returns its value.
    fn js(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    #[track_caller]
    fn wait_js(&self, what: &str, script: &str, timeout: Duration) -> Value {
        let t0 = Instant::now();
        loop {
            let v = self.js(script);
            if !v.is_null() && v != Value::Bool(false) {
                return v;
            }
            assert!(
                t0.elapsed() < timeout,
                "timed out waiting for {what}; page text:\n{}",
                self.js("return document.body.innerText")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn click(&self, css: &str) {
        let el = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        let id = el
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap()
            .to_string();
        self.call("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    fn screenshot(&self, to: &PathBuf) {
        let png = base64_decode(self.call("GET", "/screenshot", None).as_str().unwrap());
        assert_eq!(&png[1..4], b"PNG");
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http::request(
            "DELETE",
            &format!("{}/session/{}", self.base, self.session),
            &[],
            None,
        );
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn the_dashboard_shows_services_and_backs_up_on_click_in_chromium() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let name = unique("lbt-dash");
    let vol = unique("lbt-dash-data");
    new_volume(&mut c, &vol);
    managed(
        &mut c,
        &name,
        &name,
        Some(&vol),
        &[
            "lifeboat.schedule=1h",
            "lifeboat.retention=last=5",
            "lifeboat.drill=1d",
        ],
    );
    let failing = format!("{name}-failing");
    managed(
        &mut c,
        &name,
        &failing,
        None,
        &["lifeboat.schedule=1h", "lifeboat.pre=exit 3"],
    );
    // A region the daemon copies to, shown with the service's newest copy there.
    let region_dir = tempfile::tempdir().unwrap();
    let region = format!(
        "[regions.east]\nlocation = \"{}\"\nschedule = \"2s\"\nrto = \"5m\"\n",
        region_dir.path().join("east").display()
    );
    let pre = lb.state.path().join("region.toml");
    std::fs::write(&pre, &region).unwrap();
    lb.run(&[
        "--config",
        pre.to_str().unwrap(),
        "init",
        "--region",
        "east",
    ])
    .ok();
    let d = Daemon::start(&lb, &name, &region);
    d.wait_until(
        "the first backups and the first drill",
        Duration::from_secs(90),
        || {
            let jobs = d.jobs(&name);
            let done = |kind: &str| {
                jobs.iter()
                    .any(|j| j["kind"] == kind && j["state"] == "succeeded")
            };
            done("backup")
                && done("drill")
                && d.jobs(&failing).iter().any(|j| j["state"] == "failed")
        },
    );

    let b = Browser::start();
    // Without the token the page holds no data and asks for it.
    b.goto(&format!("{}/", d.base));
    b.wait_js(
        "the sign-in form",
        "return !document.getElementById('login').hidden",
        Duration::from_secs(20),
    );
    assert_eq!(
        b.js("return document.getElementById('services').children.length"),
        json!(0)
    );

    b.goto(&format!("{}/#token={TOKEN}", d.base));
    let row = format!("tr[data-service='{name}']");
    b.wait_js(
        "the service row",
        &format!("return document.querySelector(\"{row}\") !== null"),
        Duration::from_secs(20),
    );
    // A scheduled backup may be running at this moment ("running"); the
    // page refreshes itself, so wait for the service to be idle again.
    b.wait_js(
        "the service's status to be ok",
        &format!(
            "return document.querySelector(\"{row} [data-field=status]\").textContent.startsWith('ok')"
        ),
        Duration::from_secs(60),
    );
    let rpo = b.js(&format!(
        "return document.querySelector(\"{row} [data-field=rpo]\").className"
    ));
    assert!(rpo.as_str().unwrap().contains("green"), "{rpo}");
    let bad = b.js(&format!(
        "return document.querySelector(\"tr[data-service='{failing}']\").innerText"
    ));
    assert!(
        bad.as_str().unwrap().contains("failing") && bad.as_str().unwrap().contains("hook"),
        "{bad}"
    );
    b.wait_js(
        "the snapshot list",
        &format!("return document.getElementById('snapshots').innerText.includes('{name}')"),
        Duration::from_secs(20),
    );

    let before = d.jobs(&name).len();
    b.click(&format!("{row} button.backup-now"));
    d.wait_until("the job the button queued", Duration::from_secs(30), || {
        let jobs = d.jobs(&name);
        jobs.len() > before && jobs[0]["trigger"] == "api" && jobs[0]["state"] == "succeeded"
    });
    b.wait_js(
        "the button to report success",
        &format!("return document.querySelector(\"{row} button\").textContent === 'succeeded'"),
        Duration::from_secs(20),
    );
    b.wait_js(
        "two backups listed",
        &format!("return document.querySelector(\"{row}\").children[6].textContent === '2'"),
        Duration::from_secs(20),
    );
    b.wait_js(
        "both backups in the snapshot list",
        &format!(
            "return document.getElementById('snapshots').innerText.split('{name}-20').length === 3"
        ),
        Duration::from_secs(20),
    );
    b.wait_js(
        "the first backup verified by its drill",
        &format!("return document.querySelector(\"{row} [data-field=verified]\").textContent.includes('ago')"),
        Duration::from_secs(60),
    );
    b.wait_js(
        "the region with the service's newest copy",
        &format!(
            "const r = document.querySelector(\"tr[data-region='east'][data-service='{name}']\"); \
             return r !== null && r.querySelector('[data-field=lag]').textContent.includes('ago')"
        ),
        Duration::from_secs(30),
    );
    let attention = b.js("return document.getElementById('status').textContent");
    assert!(
        attention.as_str().unwrap().contains("1 need attention"),
        "{attention}"
    );
    let shot = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../test-artifacts/dashboard.png");
    b.screenshot(&shot);
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
}
