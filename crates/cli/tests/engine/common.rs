//! Running the real `lifeboat` binary against the real engine, each test with its own
//! repository and state directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use lifeboat_testkit::*;

pub struct Lb {
    pub state: tempfile::TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "lifeboat failed:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).to_string(),
            stderr: String::from_utf8_lossy(&o.stderr).to_string(),
        }
    }
}

impl Lb {
    /// A fresh state directory with an initialised repository (password from a key file).
    pub fn new() -> Lb {
        ensure_busybox_image();
        let lb = Lb::uninitialised();
        lb.run(&["init"]).ok();
        lb
    }

    pub fn uninitialised() -> Lb {
        Lb {
            state: tempfile::tempdir().unwrap(),
        }
    }

    pub fn repo(&self) -> PathBuf {
        self.state.path().join("repository")
    }

    pub fn key_file(&self) -> PathBuf {
        self.state.path().join("repository.key")
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(lifeboat_bin());
        c.env("LIFEBOAT_STATE_DIR", self.state.path())
            .env_remove("LIFEBOAT_REPOSITORY")
            .env_remove("LIFEBOAT_PASSWORD")
            .env_remove("LIFEBOAT_PASSWORD_FILE");
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_env(&[], args)
    }

    pub fn run_env(&self, env: &[(&str, &str)], args: &[&str]) -> Run {
        let mut c = self.command();
        for (k, v) in env {
            c.env(k, v);
        }
        c.args(args).output().expect("run lifeboat").into()
    }

    /// The backups of `name`, as `lifeboat snapshots NAME --json` lists them.
    pub fn backups(&self, name: &str) -> Vec<serde_json::Value> {
        let listed = self.run(&["snapshots", name, "--json"]).ok().json();
        listed.as_array().cloned().unwrap_or_default()
    }

    /// Restores `name` side by side under a new unique name, registering the copy and its
    /// renamed volume `vol` for cleanup. Returns the copy's name and the run.
    pub fn restore_copy(&self, c: &mut Cleanup, name: &str, vol: &str) -> (String, Run) {
        let copy = unique(&format!("{}-copy", name.trim_start_matches("lbt-")));
        c.containers.push(copy.clone());
        c.volumes.push(format!("{copy}_{vol}"));
        let run = self.run(&["restore", name, "--as", &copy]);
        (copy, run)
    }

    /// Runs `restic` on this repository with this repository's key.
    pub fn restic(&self, args: &[&str]) -> Run {
        Command::new("restic")
            .arg("-r")
            .arg(self.repo())
            .arg("--password-file")
            .arg(self.key_file())
            .arg("--no-cache")
            .args(args)
            .output()
            .expect("restic installed")
            .into()
    }
}

/// The binary under test: this build's, or `LIFEBOAT_BIN` (`scripts/trust` runs a frozen copy,
/// so the sources can change while its long run goes on).
pub fn lifeboat_bin() -> PathBuf {
    std::env::var_os("LIFEBOAT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_lifeboat")))
}

/// Starts a busybox container that sleeps, with extra `docker run` flags.
pub fn run_sleeper(cleanup: &mut Cleanup, name: &str, flags: &[&str]) {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(flags);
    args.extend_from_slice(&[BUSYBOX_IMAGE, "sleep", "86400"]);
    cleanup.containers.push(name.to_string());
    docker(&args);
}

/// Creates a named volume registered for cleanup and returns its host path.
pub fn new_volume(cleanup: &mut Cleanup, name: &str) -> PathBuf {
    docker(&["volume", "create", name]);
    cleanup.volumes.push(name.to_string());
    volume_path(name)
}

pub fn assert_same_tree(expected: &Path, actual: &Path) {
    let diffs = compare_trees(expected, actual);
    assert!(diffs.is_empty(), "trees differ:\n{}", diffs.join("\n"));
}

/// Copies a tree with `cp -a` (keeps everything), to compare against after the source is gone.
pub fn copy_tree(from: &Path, to: &Path) {
    let ok = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -a");
}

pub fn inspect(name: &str, format: &str) -> String {
    docker(&["inspect", "-f", format, name])
}

/// Waits (up to 30 s) until a container's healthcheck passes.
#[track_caller]
pub fn wait_for_health(name: &str) {
    let t0 = std::time::Instant::now();
    loop {
        let status = inspect(name, "{{.State.Health.Status}}");
        if status == "healthy" {
            return;
        }
        assert!(
            t0.elapsed().as_secs() < 30,
            "{name} is {status}, not healthy"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// A small tmpfs mounted for the life of the value (a "disk full" fixture).
pub struct TmpfsMount(PathBuf);

impl TmpfsMount {
    pub fn new(at: &Path, size: &str) -> TmpfsMount {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount a {size} tmpfs at {}", at.display());
        TmpfsMount(at.to_path_buf())
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Parses `"A B"` into two numbers (a count and a maximum, from a query).
pub fn parse_pair(text: &str) -> (u64, u64) {
    let (a, b) = text.trim().split_once(' ').unwrap_or(("0", "0"));
    (a.parse().unwrap_or(0), b.parse().unwrap_or(0))
}

/// Starts a sleeper whose healthcheck always fails and waits until the engine says unhealthy.
pub fn run_unhealthy(cleanup: &mut Cleanup, name: &str) {
    let flags = [
        "--health-cmd",
        "false",
        "--health-interval",
        "1s",
        "--health-retries",
        "1",
    ];
    run_sleeper(cleanup, name, &flags);
    let t0 = std::time::Instant::now();
    while inspect(name, "{{.State.Health.Status}}") != "unhealthy" {
        assert!(t0.elapsed().as_secs() < 30, "{name} never became unhealthy");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
