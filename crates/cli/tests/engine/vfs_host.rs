//! A second Docker engine with the `vfs` storage driver (no overlay upper directory), in its
//! own network namespace as `../shared/docs/test-hosts.md` verified: the writable layer is
//! then captured through the engine (`docker commit`) and comes back all the same.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::common::*;

/// The engine, its namespace and its files; all removed when dropped.
struct VfsHost {
    ns: String,
    veth: String,
    sock: String,
    data_root: PathBuf,
    exec_root: PathBuf,
    dockerd: Child,
}

fn sh(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", cmd])
        .status()
        .unwrap()
        .success()
}

impl VfsHost {
    fn start() -> VfsHost {
        let n = std::process::id() % 200 + 20;
        let (ns, veth) = (format!("lbt-vfs{n}"), format!("lbv{n}"));
        // Packets for the test range never leave this machine, even with a veth down.
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
        let data_root = PathBuf::from(format!("/var/lib/lbt-vfs-{n}"));
        let exec_root = PathBuf::from(format!("/run/lbt-vfs-{n}"));
        let sock = format!("/run/lbt-vfs-{n}.sock");
        let dockerd = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ns}"))
            .args(["dockerd", "--storage-driver", "vfs", "--data-root"])
            .arg(&data_root)
            .arg("--exec-root")
            .arg(&exec_root)
            .args(["-H", &format!("unix://{sock}")])
            .args(["--pidfile", &format!("/run/lbt-vfs-{n}.pid")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start a second dockerd");
        let host = VfsHost {
            ns,
            veth,
            sock,
            data_root,
            exec_root,
            dockerd,
        };
        let t0 = Instant::now();
        while !host.docker_ok(&["info"]) {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "the vfs engine did not start"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        // No registry: the busybox image is exported from the main engine and loaded here.
        assert!(sh(&format!(
            "docker save {BUSYBOX_IMAGE} | docker -H unix://{} load -q >/dev/null",
            host.sock
        )));
        host
    }

    fn docker_ok(&self, args: &[&str]) -> bool {
        Command::new("docker")
            .args(["-H", &format!("unix://{}", self.sock)])
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    }

    fn docker(&self, args: &[&str]) -> String {
        let out = Command::new("docker")
            .args(["-H", &format!("unix://{}", self.sock)])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for VfsHost {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.dockerd.id().to_string()])
            .status();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.dockerd.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.dockerd.kill();
        let _ = self.dockerd.wait();
        let _ = sh(&format!(
            "ip link del {}o 2>/dev/null; ip netns del {} 2>/dev/null",
            self.veth, self.ns
        ));
        let _ = std::fs::remove_dir_all(&self.data_root);
        let _ = std::fs::remove_dir_all(&self.exec_root);
        let _ = std::fs::remove_file(&self.sock);
    }
}

#[test]
fn on_a_storage_driver_without_an_upper_directory_the_layer_is_captured_through_the_engine() {
    let host = VfsHost::start();
    let lb = Lb::new();
    let env = [("DOCKER_HOST", format!("unix://{}", host.sock))];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let name = unique("vfs");
    host.docker(&[
        "run",
        "-d",
        "--name",
        &name,
        BUSYBOX_IMAGE,
        "sleep",
        "86400",
    ]);
    host.docker(&[
        "exec",
        &name,
        "sh",
        "-c",
        "mkdir -p /etc/agent && echo 'level: debug' > /etc/agent/config.yaml && busybox rm /etc/passwd",
    ]);
    let backup = lb.run_env(&env, &["backup", &name, "--json"]);
    assert_eq!(backup.code, 0, "{}", backup.stderr);
    assert!(
        backup.stderr.contains("capturing it through the engine"),
        "it says so: {}",
        backup.stderr
    );
    let images_after_backup = host.docker(&["images", "-q"]);
    host.docker(&["rm", "-f", &name]);
    let restored = lb.run_env(&env, &["restore", &name]);
    assert_eq!(restored.code, 0, "{}", restored.stderr);
    assert_eq!(
        host.docker(&["exec", &name, "cat", "/etc/agent/config.yaml"]),
        "level: debug"
    );
    assert!(
        !host.docker_ok(&["exec", &name, "cat", "/etc/passwd"]),
        "the deletion holds"
    );
    // The committed image was removed after the backup: only busybox was left.
    assert_eq!(
        images_after_backup.lines().count(),
        1,
        "{images_after_backup}"
    );
}
