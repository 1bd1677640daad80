//! A real 3-node Garage cluster per test (`scripts/garage`, replication factor 3, about a
//! second to start), and a fault-injecting HTTP proxy in front of it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

static NEXT_BASE: AtomicU16 = AtomicU16::new(39100);

fn port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A running cluster; stopped and removed when dropped.
pub struct Garage {
    dir: tempfile::TempDir,
    /// Its S3 port on node 1.
    pub port: u16,
    /// `AWS_*` variables and `LIFEBOAT_TEST_S3`.
    pub env: BTreeMap<String, String>,
}

impl Garage {
    /// Starts a fresh cluster on free ports (node 1 serves S3 on the first).
    pub fn start() -> Garage {
        let base = loop {
            let b = NEXT_BASE.fetch_add(30, Ordering::SeqCst);
            if [0, 1, 10, 11, 20, 21].iter().all(|o| port_free(b + o)) {
                break b;
            }
        };
        let dir = tempfile::Builder::new()
            .prefix("lifeboat-garage-")
            .tempdir()
            .unwrap();
        crate::cluster_script("garage", dir.path(), &["start", &base.to_string()]);
        let env = std::fs::read_to_string(dir.path().join("env"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Garage {
            dir,
            port: base,
            env,
        }
    }

    /// `s3:http://127.0.0.1:PORT/lifeboat/NAME`, a repository location in the bucket.
    pub fn location(&self, name: &str) -> String {
        format!("{}/{name}", self.env["LIFEBOAT_TEST_S3"])
    }

    /// The same location reached through `proxy`.
    pub fn location_via(&self, proxy: &FaultProxy, name: &str) -> String {
        format!("s3:http://127.0.0.1:{}/lifeboat/{name}", proxy.port)
    }

    /// Kills node `n` (1-3) with SIGKILL.
    pub fn kill_node(&self, n: u8) {
        self.script(&["node-stop", &n.to_string()]);
    }

    /// Starts node `n` again.
    pub fn start_node(&self, n: u8) {
        self.script(&["node-start", &n.to_string()]);
    }

    /// Creates another bucket the test key may use.
    pub fn create_bucket(&self, name: &str) {
        self.script(&["bucket", name]);
    }

    fn script(&self, args: &[&str]) {
        crate::cluster_script("garage", self.dir.path(), args);
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.script(&["stop"]);
    }
}

/// What the proxy does to a request it is not told to pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer `503 SlowDown` without forwarding.
    SlowDown,
    /// Close the connection without an answer.
    Reset,
}

/// An HTTP proxy on 127.0.0.1 that fails a share of the requests (alternating 503 SlowDown
/// and connection resets) and forwards the rest to the upstream port.
pub struct FaultProxy {
    /// Where it listens.
    pub port: u16,
    /// Per mille of requests that fail (0-1000); changeable while it runs.
    pub failure_permille: Arc<AtomicU64>,
    /// Requests seen, and how many of them were failed.
    pub counts: Arc<Mutex<(u64, u64)>>,
    /// Every request line seen (`GET /lifeboat/r/index/ab...`).
    pub requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` failing `permille`/1000 of the requests.
    pub fn start(upstream: u16, permille: u64) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let failure_permille = Arc::new(AtomicU64::new(permille));
        let counts = Arc::new(Mutex::new((0, 0)));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (failure_permille, counts, stop, requests) = (
                failure_permille.clone(),
                counts.clone(),
                stop.clone(),
                requests.clone(),
            );
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (failure_permille, counts, requests) =
                        (failure_permille.clone(), counts.clone(), requests.clone());
                    std::thread::spawn(move || {
                        serve(conn, upstream, &failure_permille, &counts, &requests)
                    });
                }
            });
        }
        FaultProxy {
            port,
            failure_permille,
            counts,
            requests,
            stop,
        }
    }

    /// (requests seen, requests failed).
    pub fn counts(&self) -> (u64, u64) {
        *self.counts.lock().unwrap()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Deterministic spread of failures: request k fails when its slot in a repeating pattern
/// of 1000 is below the share (so 20% really is every fifth request on average).
fn decide(k: u64, permille: u64) -> Option<Fault> {
    let slot = (k.wrapping_mul(7919)) % 1000;
    (slot < permille).then_some(if k.is_multiple_of(2) {
        Fault::SlowDown
    } else {
        Fault::Reset
    })
}

fn serve(
    conn: TcpStream,
    upstream: u16,
    permille: &AtomicU64,
    counts: &Mutex<(u64, u64)>,
    requests: &Mutex<Vec<String>>,
) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut client = conn;
    loop {
        // The request head.
        let mut head = Vec::new();
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if head.is_empty() {
                requests.lock().unwrap().push(line.trim_end().to_string());
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                content_length = v.trim().parse().unwrap_or(0);
            }
            if lower.starts_with("connection:") {
                continue;
            }
            if line == "\r\n" {
                head.extend_from_slice(b"connection: close\r\n\r\n");
                break;
            }
            head.extend_from_slice(line.as_bytes());
        }
        let mut body = vec![0u8; content_length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let k = {
            let mut c = counts.lock().unwrap();
            c.0 += 1;
            c.0
        };
        match decide(k, permille.load(Ordering::SeqCst)) {
            Some(fault) => {
                counts.lock().unwrap().1 += 1;
                match fault {
                    Fault::Reset => return,
                    Fault::SlowDown => {
                        let xml = "<?xml version=\"1.0\"?><Error><Code>SlowDown</Code>\
                                   <Message>Please reduce your request rate.</Message></Error>";
                        let answer = format!(
                            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/xml\r\n\
                             content-length: {}\r\n\r\n{xml}",
                            xml.len()
                        );
                        if client.write_all(answer.as_bytes()).is_err() {
                            return;
                        }
                    }
                }
            }
            None => {
                let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    return;
                };
                if up.write_all(&head).is_err() || up.write_all(&body).is_err() {
                    return;
                }
                let mut answer = Vec::new();
                if up.read_to_end(&mut answer).is_err() {
                    return;
                }
                // The upstream closed after its answer; so does the proxy, which the
                // `connection: close` it forwarded tells the client.
                let _ = client.write_all(&answer);
                return;
            }
        }
    }
}
