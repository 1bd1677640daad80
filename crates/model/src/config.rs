//! What Lifeboat records of a container's configuration: enough to recreate it identically
//! on a host that has never seen it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The container configuration captured from `inspect`, normalised and engine-independent.
///
/// Maps are `BTreeMap`s so the JSON form (and its fingerprint) is deterministic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ContainerConfig {
    /// The image reference the container was created from (`web:1.2`).
    pub image: String,
    /// The image's content ID (`sha256:...`), which identifies it even without a registry.
    pub image_id: String,
    /// The image's registry digests, when it has any.
    pub repo_digests: Vec<String>,
    /// The entrypoint, when set.
    pub entrypoint: Option<Vec<String>>,
    /// The command, when set.
    pub cmd: Option<Vec<String>>,
    /// `KEY=value` pairs. May hold secrets: print only through [`redact_env`].
    pub env: Vec<String>,
    /// The container's labels.
    pub labels: BTreeMap<String, String>,
    /// The user it runs as (`uid[:gid]` or a name).
    pub user: String,
    /// Its working directory.
    pub working_dir: String,
    /// Its hostname.
    pub hostname: String,
    /// Its domain name.
    pub domainname: String,
    /// Whether it has a terminal.
    pub tty: bool,
    /// Whether stdin stays open.
    pub open_stdin: bool,
    /// The signal that stops it, when not SIGTERM.
    pub stop_signal: Option<String>,
    /// Seconds it gets to stop, when set.
    pub stop_timeout: Option<i64>,
    /// Exposed ports as `80/tcp`.
    pub exposed_ports: Vec<String>,
    /// Published ports: container port (`80/tcp`) to host bindings.
    pub port_bindings: BTreeMap<String, Vec<PortBinding>>,
    /// `bridge`, `host`, `none`, `container:ID` or a user network name.
    pub network_mode: String,
    /// The networks it is attached to, with aliases.
    pub networks: Vec<NetworkAttachment>,
    /// Its restart policy.
    pub restart_policy: RestartPolicy,
    /// Its healthcheck, when it has one.
    pub healthcheck: Option<Healthcheck>,
    /// Memory limit in bytes, 0 when unlimited.
    pub memory: i64,
    /// Memory plus swap limit in bytes (0: none).
    pub memory_swap: i64,
    /// Soft memory limit in bytes (0: none).
    pub memory_reservation: i64,
    /// CPU limit in units of 1e-9 CPUs, 0 when unlimited.
    pub nano_cpus: i64,
    /// Relative CPU weight (0: default).
    pub cpu_shares: i64,
    /// Its mounts: volumes, binds, tmpfs.
    pub mounts: Vec<MountSpec>,
    /// Capabilities added.
    pub cap_add: Vec<String>,
    /// Capabilities dropped.
    pub cap_drop: Vec<String>,
    /// Extra `/etc/hosts` entries.
    pub extra_hosts: Vec<String>,
    /// Legacy `--link`s as `container:alias`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    /// Whether it runs privileged.
    pub privileged: bool,
    /// Whether an init process runs in it.
    pub init: Option<bool>,
    /// Whether the container was running when captured; restore starts it only then.
    pub was_running: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
/// Where a container port is published on the host.
pub struct PortBinding {
    /// The host address it is published on (empty: all).
    pub host_ip: String,
    /// The host port (empty: any free one).
    pub host_port: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
/// A network a container is attached to.
pub struct NetworkAttachment {
    /// Its name.
    pub name: String,
    /// Aliases the user gave (the engine's automatic short-ID alias is left out).
    pub aliases: Vec<String>,
    /// The network's driver, so a missing network can be recreated (`bridge`, `overlay`...).
    pub driver: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
/// When the engine restarts the container.
pub struct RestartPolicy {
    /// `no`, `always`, `unless-stopped`, `on-failure` (empty means `no`).
    pub name: String,
    /// How often `on-failure` restarts it at most.
    pub maximum_retry_count: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
/// The container's healthcheck, as Docker stores it.
pub struct Healthcheck {
    /// The check command, as Docker stores it (`CMD`, `CMD-SHELL`, `NONE`).
    pub test: Vec<String>,
    /// Time between checks, in nanoseconds.
    pub interval_ns: i64,
    /// How long one check may take, in nanoseconds.
    pub timeout_ns: i64,
    /// Grace period after start, in nanoseconds.
    pub start_period_ns: i64,
    /// Failures in a row that make it unhealthy.
    pub retries: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
/// What a mount is.
pub enum MountKind {
    /// A named (or anonymous) volume.
    Volume,
    /// A host path.
    Bind,
    /// Memory only: nothing to back up.
    Tmpfs,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
/// One mount of a container, as created.
pub struct MountSpec {
    /// What kind it is.
    pub kind: MountKind,
    /// The volume name for volumes, the host path for binds, empty for tmpfs.
    pub source: String,
    /// The path inside the container.
    pub destination: String,
    /// Mounted read-only.
    pub read_only: bool,
    /// Volume driver (`local`) for volumes.
    #[serde(default)]
    pub driver: String,
    /// Labels of the volume itself, recreated at restore.
    #[serde(default)]
    pub volume_labels: BTreeMap<String, String>,
}

impl ContainerConfig {
    /// SHA-256 over the canonical JSON form: the same configuration always gives the same
    /// fingerprint, any change gives another.
    pub fn fingerprint(&self) -> String {
        let json = serde_json::to_vec(self).expect("configuration always serialises");
        hex::encode(Sha256::digest(&json))
    }

    /// A copy safe to print: env values replaced, names kept so operators can see what is set.
    pub fn redacted(&self) -> ContainerConfig {
        ContainerConfig {
            env: redact_env(&self.env),
            ..self.clone()
        }
    }

    /// The value of label `key`, if set.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

/// Replaces the value of each `KEY=value` pair with `<redacted>`.
pub fn redact_env(env: &[String]) -> Vec<String> {
    env.iter()
        .map(|kv| match kv.split_once('=') {
            Some((key, _)) => format!("{key}=<redacted>"),
            None => kv.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ContainerConfig {
        ContainerConfig {
            image: "web:1".into(),
            env: vec![
                "PATH=/bin".into(),
                "DB_PASSWORD=hunter2".into(),
                "FLAG".into(),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn redaction_keeps_names_and_hides_every_value() {
        let red = sample().redacted();
        assert_eq!(
            red.env,
            vec!["PATH=<redacted>", "DB_PASSWORD=<redacted>", "FLAG"]
        );
        let json = serde_json::to_string(&red).unwrap();
        assert!(!json.contains("hunter2"));
    }

    #[test]
    fn fingerprint_is_stable_and_changes_with_the_config() {
        let a = sample();
        assert_eq!(a.fingerprint(), sample().fingerprint());
        assert_eq!(a.fingerprint().len(), 64);
        let mut b = sample();
        b.memory = 1 << 20;
        assert_ne!(a.fingerprint(), b.fingerprint());
    }
}
