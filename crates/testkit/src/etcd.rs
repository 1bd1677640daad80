//! A real 3-member etcd cluster per test (`scripts/etcd`, about 2 s to start).

use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};

static NEXT_BASE: AtomicU16 = AtomicU16::new(24200);

/// A running cluster; stopped and removed when dropped.
pub struct Etcd {
    dir: tempfile::TempDir,
    /// The members' client URLs.
    pub endpoints: Vec<String>,
}

impl Etcd {
    /// Starts three fresh members on free ports.
    pub fn start() -> Etcd {
        let base = loop {
            let b = NEXT_BASE.fetch_add(10, Ordering::SeqCst);
            if (0..6).all(|o| TcpListener::bind(("127.0.0.1", b + o)).is_ok()) {
                break b;
            }
        };
        let dir = tempfile::Builder::new()
            .prefix("lifeboat-etcd-")
            .tempdir()
            .unwrap();
        let mut e = Etcd {
            endpoints: Vec::new(),
            dir,
        };
        e.script(&["start", &base.to_string()]);
        e.endpoints = std::fs::read_to_string(e.dir.path().join("endpoints"))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        e
    }

    /// `etcd = [...]` for a `[cluster]` section.
    pub fn toml_list(&self) -> String {
        let quoted: Vec<String> = self.endpoints.iter().map(|e| format!("\"{e}\"")).collect();
        format!("[{}]", quoted.join(", "))
    }

    /// Kills member `n` (1-3) with SIGKILL.
    pub fn kill_member(&self, n: u8) {
        self.script(&["member-stop", &n.to_string()]);
    }

    /// Starts member `n` again on its data.
    pub fn start_member(&self, n: u8) {
        self.script(&["member-start", &n.to_string()]);
    }

    fn script(&self, args: &[&str]) {
        crate::cluster_script("etcd", self.dir.path(), args);
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.script(&["stop"]);
    }
}
