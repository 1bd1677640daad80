//! The manifest: one JSON document per container backup that names every part of it.
//!
//! Compatibility rule: `schema_version` is a single integer. A reader accepts every version
//! up to its own [`SCHEMA_VERSION`] (fields added later have defaults) and refuses a newer
//! one with both versions named, because silently dropping unknown data is how restores lie.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ContainerConfig;

/// The manifest schema this binary writes and the newest it reads.
/// 1: volumes, binds, image. 2: adds `sqlite` and `dump` parts and `consistency`.
pub const SCHEMA_VERSION: u32 = 3;

/// Tags put on repository snapshots so Lifeboat and `restic snapshots --tag` can find them.
pub mod tags {
    /// Every snapshot Lifeboat writes carries this tag.
    pub const LIFEBOAT: &str = "lifeboat";
    /// The manifest snapshot: written last, it commits a backup.
    pub const MANIFEST: &str = "lifeboat-manifest";
    /// A safety backup: what `restore --force` replaced. Listed as such, restorable by id,
    /// never chosen by default (it is the state the user wanted to leave).
    pub const SAFETY: &str = "safety";
    /// A forensic backup: the broken state a recovery replaced (also a safety backup, so
    /// never chosen by default and never counted as good).
    pub const FORENSIC: &str = "forensic";

    /// `container=NAME`.
    pub fn container(name: &str) -> String {
        format!("container={name}")
    }
    /// `backup=ID`: every snapshot of one backup.
    pub fn backup(id: &str) -> String {
        format!("backup={id}")
    }
    /// `part=KIND`.
    pub fn part(kind: super::PartKind) -> String {
        format!("part={}", kind.as_str())
    }
    /// `compose-project=P`.
    pub fn project(name: &str) -> String {
        format!("compose-project={name}")
    }
    /// `host=HOST`.
    pub fn host(name: &str) -> String {
        format!("host={name}")
    }
    /// `run=ID`: the backups of one multi-container run.
    pub fn run(id: &str) -> String {
        format!("run={id}")
    }

    /// The value of a `key=value` tag among `tags`.
    pub fn value<'a>(tags: &'a [String], key: &str) -> Option<&'a str> {
        tags.iter()
            .find_map(|t| t.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
    }
}

/// Identifies one backup run of one container; every part snapshot is tagged with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BackupId(pub String);

impl BackupId {
    /// `web-20261123T203434Z-1a2b3c4d`: sortable by time, unique across hosts and processes.
    pub fn new(container: &str, at: Timestamp, host: &str) -> BackupId {
        let seed = format!("{container}|{at}|{host}|{}", std::process::id());
        let digest = hex::encode(Sha256::digest(seed.as_bytes()));
        BackupId(format!(
            "{container}-{}-{}",
            at.strftime("%Y%m%dT%H%M%SZ"),
            &digest[..8]
        ))
    }
}

/// `run-20261123T203434Z-1a2b3c4d`: one id for the backups of several containers taken in
/// one run.
pub fn new_run_id(at: Timestamp, host: &str) -> String {
    let seed = format!("run|{at}|{host}|{}", std::process::id());
    let digest = hex::encode(Sha256::digest(seed.as_bytes()));
    format!("run-{}-{}", at.strftime("%Y%m%dT%H%M%SZ"), &digest[..8])
}

impl std::fmt::Display for BackupId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
/// What one part of a backup holds.
pub enum PartKind {
    /// A named volume's files.
    Volume,
    /// A bind mount's files.
    Bind,
    /// The image, a `docker save` stream.
    Image,
    /// Consistent copies of the SQLite databases of a volume or bind (hot mode).
    Sqlite,
    /// A database server's own dump, streamed (hot mode).
    Dump,
    /// A database server's settings files from its data directory (`postgresql.conf`,
    /// `pg_hba.conf`, ...), put back once the restored server has loaded its dump.
    Settings,
    /// The compose project's files (compose files, `.env`, env files), under their paths.
    Compose,
    /// The container's writable layer: what `docker commit` would hold (overlay2's upper
    /// directory, whiteouts and opaque directories kept as such).
    Layer,
    /// What makes a database server's data directory, copied as files while it ran,
    /// consistent: its backup label and the write-ahead log written during the copy
    /// (`lifeboat.strategy=postgres-files`), under their paths in the mount.
    Wal,
}

impl PartKind {
    /// The word for it (tags, messages).
    pub fn as_str(self) -> &'static str {
        match self {
            PartKind::Volume => "volume",
            PartKind::Bind => "bind",
            PartKind::Image => "image",
            PartKind::Sqlite => "sqlite",
            PartKind::Dump => "dump",
            PartKind::Settings => "settings",
            PartKind::Compose => "compose",
            PartKind::Layer => "layer",
            PartKind::Wal => "wal",
        }
    }

    /// Whether the part is restored into the mount it belongs to, over that mount's files
    /// (restored just before): SQLite copies and a data directory's log.
    pub fn is_overlay(self) -> bool {
        matches!(self, PartKind::Sqlite | PartKind::Wal)
    }
}

/// One repository snapshot that belongs to a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// What kind it is.
    pub kind: PartKind,
    /// Volume name, bind host path, or image reference.
    pub name: String,
    /// For `sqlite` parts: the volume or bind whose databases these are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub belongs_to: Option<PartKind>,
    /// Where the data sits inside the repository snapshot (`/volumes/pgdata`).
    pub snapshot_path: String,
    /// The repository snapshot holding it.
    pub snapshot_id: String,
    /// Files stored.
    pub files: u64,
    /// Directories stored.
    pub dirs: u64,
    /// Bytes of content read from the source.
    pub bytes: u64,
    /// Bytes newly added to the repository (after dedup, before compression).
    pub added_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
/// A container's compose project, from compose's labels and files.
pub struct ComposeInfo {
    /// The compose project.
    pub project: String,
    /// The compose service.
    pub service: String,
    /// Its working directory.
    pub working_dir: Option<String>,
    /// The compose files, as compose recorded them (comma-separated).
    pub config_files: Option<String>,
    /// The services this one depends on, as its compose files say (compose v1 writes no
    /// label for it); read at backup.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// What a backup is: written last, as its own snapshot, it commits the backup.
pub struct Manifest {
    /// The manifest format's version.
    pub schema_version: u32,
    /// The Lifeboat version that wrote it.
    pub lifeboat_version: String,
    /// The backup's id (every part is tagged with it).
    pub backup_id: BackupId,
    #[serde(with = "crate::time::serde_ns")]
    /// When the backup started (UTC, nanoseconds).
    pub started_at: Timestamp,
    #[serde(with = "crate::time::serde_ns")]
    /// When it ended (UTC, nanoseconds).
    pub finished_at: Timestamp,
    /// The host that took it.
    pub host: String,
    /// The Docker engine's version then.
    pub engine_version: String,
    /// The engine API version used.
    pub engine_api_version: String,
    /// The container's name.
    pub container_name: String,
    /// The container's id then.
    pub container_id: String,
    /// Its compose project and service, when compose made it.
    #[serde(default)]
    pub compose: Option<ComposeInfo>,
    /// The captured configuration (holds env: encrypted with the backup only).
    pub config: ContainerConfig,
    /// [`ContainerConfig::fingerprint`] of `config`.
    pub config_sha256: String,
    /// The parts, in capture order.
    pub parts: Vec<Part>,
    /// How the container was held still while read: `none`, `pause` or `stop`.
    #[serde(default = "default_consistency")]
    pub consistency: String,
    /// True when some files could not be read: the snapshot is usable but incomplete.
    #[serde(default)]
    pub partial: bool,
    /// What went wrong in a partial backup, one line per problem (paths, never contents).
    #[serde(default)]
    pub problems: Vec<String>,
    /// SHA-256 fingerprint of the daemon policy that made this backup (`lifeboat policy
    /// log` shows it); absent for backups run by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_sha256: Option<String>,
    /// Shared by every backup of one multi-container run (`backup --project`, `--all`), so a
    /// stack can be restored from one consistent moment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

fn default_consistency() -> String {
    "none".into()
}

#[derive(Debug, thiserror::Error)]
/// Why a manifest cannot be read.
pub enum ManifestError {
    #[error(
        "manifest schema version {found} is newer than this Lifeboat supports ({supported}); \
         upgrade Lifeboat to read this snapshot"
    )]
    /// Written by a newer Lifeboat.
    NewerSchema {
        /// Its schema version.
        found: u32,
        /// The newest this build reads.
        supported: u32,
    },
    #[error("manifest is not valid JSON of schema version {version}: {source}")]
    /// Not valid for its schema version.
    Invalid {
        /// The version it claims.
        version: u32,
        /// What the parser said.
        #[source]
        source: serde_json::Error,
    },
    #[error("manifest has no schema_version: {0}")]
    /// No schema version at all.
    NoVersion(serde_json::Error),
}

impl Manifest {
    /// Its JSON form, as stored.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("manifest always serialises")
    }

    /// Reads a manifest of this or any older schema version; refuses newer ones.
    pub fn from_json(text: &str) -> Result<Manifest, ManifestError> {
        #[derive(Deserialize)]
        struct Probe {
            schema_version: u32,
        }
        let probe: Probe = serde_json::from_str(text).map_err(ManifestError::NoVersion)?;
        if probe.schema_version > SCHEMA_VERSION {
            return Err(ManifestError::NewerSchema {
                found: probe.schema_version,
                supported: SCHEMA_VERSION,
            });
        }
        serde_json::from_str(text).map_err(|source| ManifestError::Invalid {
            version: probe.schema_version,
            source,
        })
    }

    /// A copy safe to print or send: secrets in env are redacted.
    pub fn redacted(&self) -> Manifest {
        Manifest {
            config: self.config.redacted(),
            ..self.clone()
        }
    }

    /// Bytes read for all its parts.
    pub fn total_bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Manifest {
        let config = ContainerConfig {
            image: "web:1".into(),
            env: vec!["TOKEN=s3cret".into()],
            ..Default::default()
        };
        Manifest {
            schema_version: SCHEMA_VERSION,
            lifeboat_version: "0.1.0".into(),
            backup_id: BackupId("web-1".into()),
            started_at: "2026-11-23T20:00:00.5Z".parse().unwrap(),
            finished_at: "2026-11-23T20:00:01Z".parse().unwrap(),
            host: "h".into(),
            engine_version: "20.10".into(),
            engine_api_version: "1.41".into(),
            container_name: "web".into(),
            container_id: "abc".into(),
            compose: None,
            config_sha256: config.fingerprint(),
            config,
            parts: vec![],
            consistency: "none".into(),
            partial: false,
            problems: vec![],
            policy_sha256: None,
            run_id: None,
        }
    }

    #[test]
    fn manifest_round_trips_through_json_with_ns_timestamps() {
        let m = sample();
        let json = m.to_json();
        assert!(
            json.contains("\"started_at\": \"2026-11-23T20:00:00.500000000Z\""),
            "{json}"
        );
        assert_eq!(Manifest::from_json(&json).unwrap(), m);
    }

    #[test]
    fn newer_schema_is_refused_naming_both_versions() {
        let json = sample().to_json().replace(
            &format!("\"schema_version\": {SCHEMA_VERSION}"),
            "\"schema_version\": 99",
        );
        let err = Manifest::from_json(&json).unwrap_err().to_string();
        assert!(
            err.contains("99") && err.contains(&SCHEMA_VERSION.to_string()),
            "{err}"
        );
    }

    #[test]
    fn older_schema_with_missing_optional_fields_is_read() {
        let mut v: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        let obj = v.as_object_mut().unwrap();
        obj.insert("schema_version".into(), 0.into());
        obj.remove("partial");
        obj.remove("problems");
        obj.remove("compose");
        let m = Manifest::from_json(&v.to_string()).unwrap();
        assert_eq!(m.schema_version, 0);
        assert!(!m.partial);
    }

    #[test]
    fn redacted_manifest_never_contains_env_values() {
        let json = sample().redacted().to_json();
        assert!(!json.contains("s3cret"));
        assert!(json.contains("TOKEN=<redacted>"));
    }

    #[test]
    fn tag_values_are_found_by_key() {
        let t = vec![tags::container("web"), tags::backup("web-1")];
        assert_eq!(tags::value(&t, "container"), Some("web"));
        assert_eq!(tags::value(&t, "backup"), Some("web-1"));
        assert_eq!(tags::value(&t, "host"), None);
    }

    #[test]
    fn backup_ids_sort_by_time() {
        let a = BackupId::new("web", "2026-01-01T00:00:00Z".parse().unwrap(), "h");
        let b = BackupId::new("web", "2026-01-02T00:00:00Z".parse().unwrap(), "h");
        assert!(a.0 < b.0 && a.0.starts_with("web-20260101T000000Z-"));
    }
}
