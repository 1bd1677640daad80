use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

/// A tiny image built locally from the static busybox binary (no registry needed).
pub const BUSYBOX_IMAGE: &str = "lifeboat-test/busybox:1";

/// Runs `docker ARGS` and returns stdout; panics with stderr when it fails.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI present");
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs `docker ARGS`, ignoring failure (for cleanup).
pub fn docker_ok(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

static BUILT: Mutex<bool> = Mutex::new(false);

/// Builds `BUSYBOX_IMAGE` from `/bin/busybox` (Debian's busybox-static) unless present.
pub fn ensure_busybox_image() {
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if *built || docker_ok(&["image", "inspect", BUSYBOX_IMAGE]) {
        *built = true;
        return;
    }
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "set -e; d=$(mktemp -d); mkdir -p $d/bin $d/tmp $d/etc; cp /bin/busybox $d/bin/; \
             for c in sh sleep httpd ls cat echo mkdir true false chown stat wget nc; do \
             ln -s busybox $d/bin/$c; done; echo 'root:x:0:0:root:/:/bin/sh' > $d/etc/passwd; \
             tar -C $d -c . | docker import -c 'ENV PATH=/bin' -c 'CMD [\"/bin/sh\"]' - {BUSYBOX_IMAGE}; \
             rm -rf $d"
        ))
        .status()
        .expect("sh present");
    assert!(
        status.success(),
        "building {BUSYBOX_IMAGE} failed (is busybox-static installed?)"
    );
    *built = true;
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this test process and call: `lbt-<prefix>-<pid>-<n>`.
pub fn unique(prefix: &str) -> String {
    format!(
        "lbt-{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The host directory holding a volume's data.
pub fn volume_path(volume: &str) -> PathBuf {
    PathBuf::from(docker(&[
        "volume",
        "inspect",
        "-f",
        "{{.Mountpoint}}",
        volume,
    ]))
}

/// Removes the containers, volumes, networks and images it was given when dropped.
#[derive(Default)]
pub struct Cleanup {
    /// Containers to remove.
    pub containers: Vec<String>,
    /// Volumes to remove.
    pub volumes: Vec<String>,
    /// Networks to remove.
    pub networks: Vec<String>,
    /// Images to remove.
    pub images: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            docker_ok(&["rm", "-f", c]);
        }
        for v in &self.volumes {
            docker_ok(&["volume", "rm", "-f", v]);
        }
        for n in &self.networks {
            docker_ok(&["network", "rm", n]);
        }
        for i in &self.images {
            docker_ok(&["rmi", "-f", i]);
        }
    }
}
