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
    pub repo_digests: Vec<String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    /// `KEY=value` pairs. May hold secrets: print only through [`redact_env`].
    pub env: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub user: String,
    pub working_dir: String,
    pub hostname: String,
    pub domainname: String,
    pub tty: bool,
    pub open_stdin: bool,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<i64>,
    /// Exposed ports as `80/tcp`.
    pub exposed_ports: Vec<String>,
    /// Published ports: container port (`80/tcp`) to host bindings.
    pub port_bindings: BTreeMap<String, Vec<PortBinding>>,
    /// `bridge`, `host`, `none`, `container:ID` or a user network name.
    pub network_mode: String,
    pub networks: Vec<NetworkAttachment>,
    pub restart_policy: RestartPolicy,
    pub healthcheck: Option<Healthcheck>,
    /// Memory limit in bytes, 0 when unlimited.
    pub memory: i64,
    pub memory_swap: i64,
    pub memory_reservation: i64,
    /// CPU limit in units of 1e-9 CPUs, 0 when unlimited.
    pub nano_cpus: i64,
    pub cpu_shares: i64,
    pub mounts: Vec<MountSpec>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub extra_hosts: Vec<String>,
    /// Legacy `--link`s as `container:alias`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    pub privileged: bool,
    pub init: Option<bool>,
    /// Whether the container was running when captured; restore starts it only then.
    pub was_running: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PortBinding {
    pub host_ip: String,
    pub host_port: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NetworkAttachment {
    pub name: String,
    /// Aliases the user gave (the engine's automatic short-ID alias is left out).
    pub aliases: Vec<String>,
    /// The network's driver, so a missing network can be recreated (`bridge`, `overlay`...).
    pub driver: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RestartPolicy {
    /// `no`, `always`, `unless-stopped`, `on-failure` (empty means `no`).
    pub name: String,
    pub maximum_retry_count: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Healthcheck {
    pub test: Vec<String>,
    pub interval_ns: i64,
    pub timeout_ns: i64,
    pub start_period_ns: i64,
    pub retries: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    Volume,
    Bind,
    Tmpfs,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    pub kind: MountKind,
    /// The volume name for volumes, the host path for binds, empty for tmpfs.
    pub source: String,
    /// The path inside the container.
    pub destination: String,
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
