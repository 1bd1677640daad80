//! Notifications over HTTPS (rustls) to a real TLS receiver whose certificate a test CA
//! signed: delivered when `LIFEBOAT_CA_FILE` names that CA, refused when only the system's
//! store is trusted, in ntfy's format, with the hook's secret and the URL's path kept out.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::daemon::Daemon;

const SECRET: &str = "pw-tls-secret-4242";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`ca.pem`) and a certificate for 127.0.0.1 it signed (`server.pem`, `server.key`).
fn test_ca(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=Lifeboat test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
    );
}

/// A TLS receiver (Python's `http.server` wrapped in `ssl`) writing each request as one
/// JSON line to `requests.jsonl`; killed when dropped.
struct TlsReceiver {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Drop for TlsReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const RECEIVER: &str = r#"
import http.server, json, ssl, sys
out, cert, key = sys.argv[1], sys.argv[2], sys.argv[3]
class H(http.server.BaseHTTPRequestHandler):
    def handle_one(self):
        n = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(n).decode()
        with open(out, "a") as f:
            f.write(json.dumps({"method": self.command, "path": self.path,
                                "headers": {k.lower(): v for k, v in self.headers.items()},
                                "body": body}) + "\n")
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()
    do_POST = handle_one
    do_GET = handle_one
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;

impl TlsReceiver {
    fn start(dir: &Path) -> TlsReceiver {
        let log = dir.join("requests.jsonl");
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(RECEIVER)
            .arg(&log)
            .arg(dir.join("server.pem"))
            .arg(dir.join("server.key"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the receiver's port");
        TlsReceiver { child, port, log }
    }

    fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

#[test]
fn an_https_webhook_in_ntfy_format_reaches_a_receiver_signed_by_the_configured_ca_only() {
    let dir = tempfile::tempdir().unwrap();
    test_ca(dir.path());
    let receiver = TlsReceiver::start(dir.path());
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let name = unique("lbt-tls");
    let env = format!("DB_PASSWORD={SECRET}");
    let scope = format!("lifeboat.test={name}");
    run_sleeper(
        &mut c,
        &name,
        &[
            "-e",
            &env,
            "-l",
            "lifeboat.enable=true",
            "-l",
            &scope,
            "-l",
            "lifeboat.schedule=1h",
            "-l",
            "lifeboat.pre=echo login with $DB_PASSWORD; exit 3",
        ],
    );
    let hook_path = "/lifeboat-alerts-topic-tok3n";
    let settings = format!(
        "webhook_url = \"https://127.0.0.1:{}{hook_path}\"\nwebhook_format = \"ntfy\"",
        receiver.port
    );
    // Only the system's store: the test CA is not in it, so nothing is delivered.
    let untrusting = Daemon::start(&lb, &name, &settings);
    untrusting.wait_until(
        "the undeliverable webhook is counted",
        Duration::from_secs(60),
        || untrusting.metric("lifeboat_notifications_failed_total") == Some(1.0),
    );
    assert!(receiver.requests().is_empty(), "{:?}", receiver.requests());
    let log = untrusting.log_text();
    assert!(log.contains("notification not delivered"), "{log}");
    assert!(
        !log.contains(hook_path) && !log.contains(SECRET),
        "the log shows the URL's path or the secret:\n{log}"
    );
    drop(untrusting);

    let ca = dir.path().join("ca.pem");
    let d = Daemon::start_env(
        &lb,
        &name,
        &settings,
        &[("LIFEBOAT_CA_FILE", ca.to_str().unwrap())],
    );
    // The first daemon ran the scheduled backup: this one is asked for another, once it
    // manages the service.
    d.wait_until("the service is managed", Duration::from_secs(30), || {
        !d.service(&name).is_null()
    });
    let r = d.post(&format!("/api/v1/services/{name}/backup"), None);
    assert_eq!(r.status, 202, "{}", r.body);
    let t0 = Instant::now();
    let request = loop {
        if let Some(r) = receiver.requests().into_iter().next() {
            break r;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "nothing reached the TLS receiver; daemon log:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(request["method"], "POST");
    assert_eq!(request["path"], hook_path);
    assert_eq!(
        request["headers"]["title"], "Lifeboat: backup failed",
        "{request}"
    );
    assert_eq!(request["headers"]["priority"], "high");
    let body = request["body"].as_str().unwrap();
    assert!(
        body.contains(&format!("backup of `{name}` failed")),
        "{body}"
    );
    assert!(
        !body.contains(SECRET),
        "the secret reached the webhook: {body}"
    );
    d.wait_until("the delivery is counted", Duration::from_secs(10), || {
        d.metric("lifeboat_notifications_sent_total") >= Some(1.0)
    });

    // A CA file that holds no certificate stops the daemon at start, with what to do.
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let cfg = lb.state.path().join("lifeboat.toml");
    let out = lb
        .command()
        .env("LIFEBOAT_CA_FILE", &empty)
        .env("LIFEBOAT_API_TOKEN", crate::daemon::TOKEN)
        .args(["daemon", "--config"])
        .arg(&cfg)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no certificate in") && err.contains("LIFEBOAT_CA_FILE"),
        "{err}"
    );
}
