//! Simulated Docker hosts: one extra `dockerd` per host, each in its own network namespace
//! with its own data root, exec root, socket and pidfile, as `../shared/docs/test-hosts.md`
//! verified. Packets for the test range (10.250.0.0/16) never leave this machine. A host can
//! be killed hard (its engine, containerd, shims and containers, like a power cut) and
//! started again on the same data root.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::BUSYBOX_IMAGE;

/// An engine, its namespace and its files; all removed when dropped.
pub struct TestHost {
    ns: String,
    veth: String,
    /// The engine's socket path.
    pub sock: String,
    pub data_root: PathBuf,
    exec_root: PathBuf,
    pidfile: String,
    flags: Vec<String>,
    dockerd: Option<Child>,
}

pub fn sh(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", cmd])
        .status()
        .unwrap()
        .success()
}

/// A number for `tag` unique among this process's hosts and unlikely to clash with other
/// test processes (it picks the host's /24 in the test range).
fn slot(tag: &str) -> u32 {
    let h = tag.bytes().fold(std::process::id(), |a, b| {
        a.wrapping_mul(31).wrapping_add(b as u32)
    });
    h % 200 + 20
}

impl TestHost {
    /// Starts host `tag` with more dockerd `flags` (e.g. a storage driver), with the test
    /// busybox image loaded.
    pub fn start(tag: &str, flags: &[&str]) -> TestHost {
        let n = slot(tag);
        let (ns, veth) = (format!("lbt-{tag}{n}"), format!("lb{tag}{n}"));
        let _ = sh("ip route add unreachable 10.250.0.0/16 metric 4000 2>/dev/null");
        let _ = sh(&format!(
            "ip netns del {ns} 2>/dev/null; ip link del {veth}o 2>/dev/null"
        ));
        assert!(sh(&format!(
            "ip netns add {ns} && ip link add {veth}o type veth peer name {veth}i && \
             ip link set {veth}i netns {ns} && ip addr add 10.250.{n}.1/24 dev {veth}o && \
             ip link set {veth}o up && ip netns exec {ns} sh -c 'ip addr add 10.250.{n}.2/24 \
             dev {veth}i && ip link set {veth}i up && ip link set lo up && \
             ip route add default via 10.250.{n}.1'"
        )));
        let mut host = TestHost {
            sock: format!("/run/lbt-{tag}-{n}.sock"),
            data_root: PathBuf::from(format!("/var/lib/lbt-{tag}-{n}")),
            exec_root: PathBuf::from(format!("/run/lbt-{tag}-{n}")),
            pidfile: format!("/run/lbt-{tag}-{n}.pid"),
            flags: flags.iter().map(|f| f.to_string()).collect(),
            ns,
            veth,
            dockerd: None,
        };
        host.start_engine();
        // No registry: the busybox image is exported from the main engine and loaded here.
        assert!(sh(&format!(
            "docker save {BUSYBOX_IMAGE} | docker -H unix://{} load -q >/dev/null",
            host.sock
        )));
        host
    }

    /// Starts (again) the engine on its data root and waits until it answers.
    pub fn start_engine(&mut self) {
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns))
            .arg("dockerd")
            .args(&self.flags)
            .arg("--data-root")
            .arg(&self.data_root)
            .arg("--exec-root")
            .arg(&self.exec_root)
            .args(["-H", &format!("unix://{}", self.sock)])
            .args(["--pidfile", &self.pidfile])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a test dockerd");
        self.dockerd = Some(child);
        let t0 = Instant::now();
        while !self.docker_ok(&["info"]) {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "the test engine did not start"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `DOCKER_HOST` for this engine.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.sock)
    }

    fn docker_output(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .args(["-H", &self.docker_host()])
            .args(args)
            .output()
            .unwrap()
    }

    pub fn docker_ok(&self, args: &[&str]) -> bool {
        self.docker_output(args).status.success()
    }

    /// The output of a docker command that may fail (an object not there yet): `None` then.
    pub fn docker_try(&self, args: &[&str]) -> Option<String> {
        let out = self.docker_output(args);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    #[track_caller]
    pub fn docker(&self, args: &[&str]) -> String {
        let out = self.docker_output(args);
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The host dies at once: its containers' processes, then the engine, its containerd and
    /// its shims (every process in its namespace) get SIGKILL. Nothing is cleaned up.
    pub fn kill(&mut self) {
        let pids = self.docker(&["ps", "-q"]);
        for id in pids.lines() {
            let pid = self.docker(&["inspect", "-f", "{{.State.Pid}}", id]);
            let _ = sh(&format!("kill -9 {pid} 2>/dev/null"));
        }
        let _ = sh(&format!(
            "ip netns pids {} | xargs -r kill -9 2>/dev/null",
            self.ns
        ));
        if let Some(mut c) = self.dockerd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let t0 = Instant::now();
        while self.docker_ok(&["info"]) && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            !self.docker_ok(&["info"]),
            "the killed engine still answers"
        );
        let _ = std::fs::remove_file(&self.pidfile);
    }

    fn stop(&mut self) {
        let Some(mut c) = self.dockerd.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = c.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        self.stop();
        let _ = sh(&format!(
            "ip netns pids {} | xargs -r kill -9 2>/dev/null",
            self.ns
        ));
        let _ = sh(&format!(
            "ip link del {}o 2>/dev/null; ip netns del {} 2>/dev/null",
            self.veth, self.ns
        ));
        // Mounts a killed engine left behind (container rootfs, shm) are let go first.
        let _ = sh(&format!(
            "grep -oE ' ({}|{})[^ ]*' /proc/self/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null",
            self.data_root.display(),
            self.exec_root.display()
        ));
        let _ = std::fs::remove_dir_all(&self.data_root);
        let _ = std::fs::remove_dir_all(&self.exec_root);
        let _ = std::fs::remove_file(&self.sock);
        let _ = std::fs::remove_file(&self.pidfile);
    }
}
