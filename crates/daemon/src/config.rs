//! The daemon's config file (TOML) and command-line settings, validated into a
//! [`DaemonPlan`] once, at start. Every error names the file and the setting.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lifeboat_model::policy::{PolicyOptions, Retention, Schedule, parse_duration};
use serde::Deserialize;

/// Where the API listens without a setting.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9187";

/// The file as written. Example in `deploy/lifeboat.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonOptions {
    /// The `[daemon]` section.
    #[serde(default)]
    pub daemon: DaemonSection,
    /// `[defaults]`: the policy every service starts from.
    #[serde(default)]
    pub defaults: PolicyOptions,
    /// `[policies.NAME]`: named policies a label can pick.
    #[serde(default)]
    pub policies: BTreeMap<String, PolicyOptions>,
    /// `[repository]`: where backups go (overrides LIFEBOAT_REPOSITORY / --repo).
    #[serde(default)]
    pub repository: RepositorySection,
    /// `[repositories.primary]`: the same as `[repository]` (the only name allowed).
    #[serde(default)]
    pub repositories: BTreeMap<String, RepositorySection>,
    /// `[regions.NAME]`: repositories holding copies of every backup, each on its own
    /// schedule.
    #[serde(default)]
    pub regions: BTreeMap<String, RegionSection>,
    /// `[cluster]`: several daemons sharing the repository, one leader elected through etcd.
    pub cluster: Option<ClusterSection>,
}

/// The `[cluster]` section as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// etcd's client endpoints (`http://HOST:PORT`), one or more.
    #[serde(default)]
    pub etcd: Vec<String>,
    /// This daemon's host identity in the cluster (and on its backups).
    pub host: Option<String>,
    /// How long a silent daemon keeps its host registration and leadership (default 5s).
    pub lease_ttl: Option<String>,
    /// How long a host must stay gone before its failover services move (default 30s).
    pub failover_after: Option<String>,
}

/// The validated `[cluster]` section.
#[derive(Debug, Clone)]
pub struct ClusterPlan {
    /// etcd's client endpoints.
    pub etcd: Vec<String>,
    /// This host's identity.
    pub host: String,
    /// The lease (heartbeat) time to live.
    pub lease_ttl: Duration,
    /// How long a host's registration must stay gone before the leader moves its
    /// `lifeboat.failover=auto` services (a daemon restarting is back well within it).
    pub failover_after: Duration,
}

impl ClusterSection {
    /// Validates the section.
    pub fn plan(&self) -> Result<ClusterPlan, ConfigError> {
        let bad = |setting: &'static str, value: &str, why: &str| ConfigError::Setting {
            setting,
            value: value.to_string(),
            why: why.to_string(),
        };
        if self.etcd.is_empty() {
            return Err(bad(
                "cluster.etcd",
                "[]",
                "list etcd's client endpoints, e.g. [\"http://127.0.0.1:2379\"]",
            ));
        }
        for e in &self.etcd {
            if !e.starts_with("http://") {
                return Err(bad(
                    "cluster.etcd",
                    e,
                    "write http://HOST:PORT (etcd's client URL; TLS is not built in)",
                ));
            }
        }
        let host = self.host.as_deref().unwrap_or_default();
        lifeboat_model::names::container_name(host).map_err(|e| {
            bad(
                "cluster.host",
                host,
                &format!("name this host, e.g. host = \"h1\" ({e})"),
            )
        })?;
        let ttl = match self.lease_ttl.as_deref() {
            None => Duration::from_secs(5),
            Some(t) => {
                parse_duration(t).map_err(|e| bad("cluster.lease_ttl", t, &e.to_string()))?
            }
        };
        if ttl < Duration::from_secs(2) || ttl > Duration::from_secs(300) {
            return Err(bad(
                "cluster.lease_ttl",
                self.lease_ttl.as_deref().unwrap_or_default(),
                "between 2s and 5m",
            ));
        }
        let failover_after = match self.failover_after.as_deref() {
            None => Duration::from_secs(30),
            Some(t) => {
                parse_duration(t).map_err(|e| bad("cluster.failover_after", t, &e.to_string()))?
            }
        };
        if failover_after > Duration::from_secs(24 * 3600) {
            return Err(bad(
                "cluster.failover_after",
                self.failover_after.as_deref().unwrap_or_default(),
                "at most 24h (0s moves a host's services as soon as its lease expires)",
            ));
        }
        Ok(ClusterPlan {
            etcd: self.etcd.clone(),
            host: host.to_string(),
            lease_ttl: ttl,
            failover_after,
        })
    }
}

/// One `[regions.NAME]` section as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionSection {
    /// A local directory or `s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]`.
    pub location: String,
    /// The repository password's file (else the primary's password).
    pub password_file: Option<PathBuf>,
    /// The S3 access key id's file (else `AWS_ACCESS_KEY_ID[_FILE]`).
    pub access_key_id_file: Option<PathBuf>,
    /// The S3 secret key's file (else `AWS_SECRET_ACCESS_KEY[_FILE]`).
    pub secret_access_key_file: Option<PathBuf>,
    /// The S3 region requests are signed for.
    pub region: Option<String>,
    /// How often new backups are copied here (e.g. `30m`).
    pub schedule: Option<String>,
    /// This region's own retention (e.g. `daily=30`).
    pub retention: Option<String>,
    /// Its recovery objective, checked by drills from this region (e.g. `5m`).
    pub rto: Option<String>,
}

impl RegionSection {
    /// How to reach it, as a repository section.
    pub fn repository(&self) -> RepositorySection {
        RepositorySection {
            location: Some(self.location.clone()),
            password_file: self.password_file.clone(),
            access_key_id_file: self.access_key_id_file.clone(),
            secret_access_key_file: self.secret_access_key_file.clone(),
            region: self.region.clone(),
        }
    }
}

/// The `[repository]` section as written. Secrets are read from files, never written inline.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositorySection {
    /// A local directory or `s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]`.
    pub location: Option<String>,
    /// The repository password's file.
    pub password_file: Option<PathBuf>,
    /// The S3 access key id's file (else `AWS_ACCESS_KEY_ID[_FILE]`).
    pub access_key_id_file: Option<PathBuf>,
    /// The S3 secret key's file (else `AWS_SECRET_ACCESS_KEY[_FILE]`).
    pub secret_access_key_file: Option<PathBuf>,
    /// The S3 region requests are signed for (else `AWS_DEFAULT_REGION`, else us-east-1).
    pub region: Option<String>,
}

impl RepositorySection {
    /// The S3 account the section names, if it names one: both files or neither.
    pub fn credentials(&self) -> Result<Option<lifeboat_repo::s3::S3Credentials>, ConfigError> {
        let read = |setting: &'static str, path: &Path| {
            lifeboat_repo::s3::read_secret_file(path).map_err(|why| ConfigError::Setting {
                setting,
                value: path.display().to_string(),
                why,
            })
        };
        match (&self.access_key_id_file, &self.secret_access_key_file) {
            (None, None) => Ok(None),
            (Some(id), Some(secret)) => Ok(Some(lifeboat_repo::s3::S3Credentials {
                access_key_id: read("repository.access_key_id_file", id)?,
                secret_access_key: read("repository.secret_access_key_file", secret)?,
            })),
            (Some(p), None) | (None, Some(p)) => Err(ConfigError::Setting {
                setting: "repository.access_key_id_file",
                value: p.display().to_string(),
                why: "set both access_key_id_file and secret_access_key_file, or neither".into(),
            }),
        }
    }
}

/// The `[daemon]` section as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSection {
    /// Where the API listens.
    pub listen: Option<String>,
    /// Serve `/metrics` and `/healthz` on their own listener too.
    pub metrics_listen: Option<String>,
    /// Jobs running at once, across services (default 2).
    pub concurrency: Option<usize>,
    /// Spread of each scheduled start (default 30s).
    pub jitter: Option<String>,
    /// The RPO of a service is its schedule interval times this (default 1.5).
    pub rpo_tolerance: Option<f64>,
    /// Retention refuses to delete when the newest backup is smaller than this fraction of
    /// the previous one (default 0.5).
    pub shrink_ratio: Option<f64>,
    /// Retention never deletes a backup dated less than this before now (default `1h`; `0s`
    /// turns it off): a clock off by less than this loses nothing recent.
    pub retention_margin: Option<String>,
    /// Receives a POST on every failure and on recovery (`http://` or `https://`).
    pub webhook_url: Option<String>,
    /// How the webhook's body is written: `json` (default), `slack` or `ntfy`.
    pub webhook_format: Option<String>,
    /// Manage every container unless labelled `lifeboat.enable=false` (default: only those
    /// labelled `lifeboat.enable=true`).
    pub enable_all: Option<bool>,
    /// How long SIGTERM waits for running jobs before undoing their pauses and stops.
    pub shutdown_grace: Option<String>,
    /// Manage only containers carrying this label (`key=value`): several daemons with
    /// different repositories can share one host.
    pub scope: Option<String>,
    /// Where the API token is kept when LIFEBOAT_API_TOKEN is not set.
    pub token_file: Option<PathBuf>,
    /// How often the repository's structure is checked (e.g. `1d`; default never).
    pub check: Option<String>,
    /// How often data no backup references any more is removed from the repository (e.g.
    /// `7d`; default never).
    pub prune: Option<String>,
}

/// The validated settings the daemon runs with.
#[derive(Debug, Clone)]
pub struct DaemonPlan {
    /// Where the API listens.
    pub listen: SocketAddr,
    /// Where `/metrics` listens on its own, when set.
    pub metrics_listen: Option<SocketAddr>,
    /// Jobs at a time.
    pub concurrency: usize,
    /// The most a scheduled start is delayed (capped at a tenth of the interval).
    pub jitter: Duration,
    /// How late a backup may be, as a fraction of its interval, before the RPO counts as breached.
    pub rpo_tolerance: f64,
    /// A backup smaller than this fraction of the previous one stops retention.
    pub shrink_ratio: f64,
    /// Retention never deletes a backup younger than this.
    pub retention_margin: Duration,
    /// Where failure and recovery events are posted, and how.
    pub webhook: Option<crate::notify::Webhook>,
    /// Manage every container not labelled `lifeboat.enable=false`.
    pub enable_all: bool,
    /// How long running jobs get to finish at SIGTERM.
    pub shutdown_grace: Duration,
    /// Only containers with this label (key, value) are managed.
    pub scope: Option<(String, String)>,
    /// The API token file (generated when missing).
    pub token_file: PathBuf,
    /// `[defaults]`: the policy every service starts from.
    pub defaults: PolicyOptions,
    /// `[policies.NAME]`: named policies a label can pick.
    pub policies: BTreeMap<String, PolicyOptions>,
    /// `[regions.NAME]` with a `schedule`: copied to on it.
    pub regions: Vec<RegionPlan>,
    /// The repository-wide check's schedule.
    pub check: Option<Schedule>,
    /// The repository-wide prune's schedule.
    pub prune: Option<Schedule>,
    /// `[cluster]`: etcd and this host's identity.
    pub cluster: Option<ClusterPlan>,
}

/// A region the daemon copies to.
#[derive(Debug, Clone)]
pub struct RegionPlan {
    /// Its name.
    pub name: String,
    /// How often new backups are copied there.
    pub schedule: Schedule,
    /// Its own retention, applied after each copy.
    pub retention: Option<Retention>,
    /// Its recovery objective.
    pub rto: Option<Duration>,
}

/// Why the config file is refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {cause}")]
    /// It cannot be read.
    Read {
        /// The file.
        path: String,
        /// The cause.
        cause: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    /// It is not valid TOML for this config.
    Parse {
        /// The file.
        path: String,
        /// What the parser said.
        message: String,
    },
    /// A setting has a bad value.
    #[error("{setting} = `{value}` is not valid: {why}")]
    Setting {
        /// The setting.
        setting: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        why: String,
    },
}

impl DaemonOptions {
    /// Reads and parses the config file (validation comes with the plan).
    pub fn load(path: &Path) -> Result<DaemonOptions, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: path.display().to_string(),
            cause,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// Where backups are taken: `[repositories.primary]`, else `[repository]`. Any other
    /// name under `[repositories]` is refused.
    pub fn primary(&self) -> Result<RepositorySection, ConfigError> {
        if let Some(other) = self.repositories.keys().find(|k| *k != "primary") {
            return Err(ConfigError::Setting {
                setting: "repositories",
                value: other.clone(),
                why: "the only repository name is `primary`; copies go under [regions.NAME]".into(),
            });
        }
        match self.repositories.get("primary") {
            Some(p) if self.repository.location.is_some() => Err(ConfigError::Setting {
                setting: "repositories.primary",
                value: p.location.clone().unwrap_or_default(),
                why: "[repository] says where backups go too: keep one of the two".into(),
            }),
            Some(p) => Ok(p.clone()),
            None => Ok(self.repository.clone()),
        }
    }

    /// The region called `name`; the error lists the configured ones.
    pub fn region(&self, name: &str) -> Result<&RegionSection, ConfigError> {
        self.regions.get(name).ok_or_else(|| ConfigError::Setting {
            setting: "regions",
            value: name.to_string(),
            why: if self.regions.is_empty() {
                "the config file has no [regions.NAME] section".into()
            } else {
                format!(
                    "no such region; the config file has {}",
                    self.regions.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            },
        })
    }

    /// Validates; `listen` from the command line wins over the file.
    pub fn plan(self, listen: Option<&str>, state_dir: &Path) -> Result<DaemonPlan, ConfigError> {
        let d = self.daemon;
        let addr = |setting: &'static str, text: &str| -> Result<SocketAddr, ConfigError> {
            text.parse().map_err(|_| ConfigError::Setting {
                setting,
                value: text.to_string(),
                why: "write an address and port, e.g. 127.0.0.1:9187".into(),
            })
        };
        let duration = |setting: &'static str, text: Option<&str>, default: u64| match text {
            None => Ok(Duration::from_secs(default)),
            Some("0") | Some("0s") => Ok(Duration::ZERO),
            Some(t) => parse_duration(t).map_err(|e| ConfigError::Setting {
                setting,
                value: t.to_string(),
                why: e.to_string(),
            }),
        };
        let listen = addr(
            "listen",
            listen.or(d.listen.as_deref()).unwrap_or(DEFAULT_LISTEN),
        )?;
        let metrics_listen = d
            .metrics_listen
            .as_deref()
            .map(|t| addr("metrics_listen", t))
            .transpose()?;
        if let Some(url) = &d.webhook_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::Setting {
                setting: "webhook_url",
                value: crate::notify::shown_url(url),
                why: "use an http:// or https:// URL".into(),
            });
        }
        let format = match d.webhook_format.as_deref() {
            None => crate::notify::WebhookFormat::Json,
            Some(f) => {
                crate::notify::WebhookFormat::from_word(f).ok_or_else(|| ConfigError::Setting {
                    setting: "webhook_format",
                    value: f.to_string(),
                    why: "use json, slack or ntfy".into(),
                })?
            }
        };
        if d.webhook_format.is_some() && d.webhook_url.is_none() {
            return Err(ConfigError::Setting {
                setting: "webhook_format",
                value: d.webhook_format.clone().unwrap_or_default(),
                why: "it formats webhook_url's posts: set webhook_url too".into(),
            });
        }
        let ratio = |setting: &'static str, v: Option<f64>, default: f64, min: f64| {
            let v = v.unwrap_or(default);
            if v.is_finite() && v >= min {
                Ok(v)
            } else {
                Err(ConfigError::Setting {
                    setting,
                    value: v.to_string(),
                    why: format!("it must be a number of at least {min}"),
                })
            }
        };
        for (name, p) in std::iter::once(("[defaults]".to_string(), &self.defaults)).chain(
            self.policies
                .iter()
                .map(|(n, p)| (format!("[policies.{n}]"), p)),
        ) {
            // Checked here so a typo fails the start, not the first service that uses it.
            let named =
                |setting: &'static str, value: &str, e: lifeboat_model::policy::PolicyError| {
                    ConfigError::Setting {
                        setting,
                        value: format!("{value} (in {name})"),
                        why: e.to_string(),
                    }
                };
            if let Some(s) = &p.schedule {
                Schedule::parse(s).map_err(|e| named("schedule", s, e))?;
            }
            if let Some(r) = p.retention.as_deref().filter(|r| *r != "none") {
                Retention::parse(r).map_err(|e| named("retention", r, e))?;
            }
            if let Some(url) = &p.ping_url
                && !url.starts_with("http://")
            {
                return Err(ConfigError::Setting {
                    setting: "ping_url",
                    value: format!("{url} (in {name})"),
                    why: "only http:// URLs are supported".into(),
                });
            }
        }
        let mut regions = Vec::new();
        for (name, r) in &self.regions {
            lifeboat_model::names::container_name(name).map_err(|e| ConfigError::Setting {
                setting: "regions",
                value: name.clone(),
                why: e.to_string(),
            })?;
            let bad =
                |setting: &'static str, value: &str, e: lifeboat_model::policy::PolicyError| {
                    ConfigError::Setting {
                        setting,
                        value: format!("{value} (in [regions.{name}])"),
                        why: e.to_string(),
                    }
                };
            let retention = r
                .retention
                .as_deref()
                .map(|t| Retention::parse(t).map_err(|e| bad("retention", t, e)))
                .transpose()?;
            let rto = r
                .rto
                .as_deref()
                .map(|t| parse_duration(t).map_err(|e| bad("rto", t, e)))
                .transpose()?;
            if let Some(text) = &r.schedule {
                regions.push(RegionPlan {
                    name: name.clone(),
                    schedule: Schedule::parse(text).map_err(|e| bad("schedule", text, e))?,
                    retention,
                    rto,
                });
            }
        }
        let scope = match d.scope.as_deref().map(|s| s.split_once('=')) {
            None => None,
            Some(Some((k, v))) if !k.trim().is_empty() => {
                Some((k.trim().to_string(), v.trim().to_string()))
            }
            Some(_) => {
                return Err(ConfigError::Setting {
                    setting: "scope",
                    value: d.scope.clone().unwrap_or_default(),
                    why: "write a label as key=value, e.g. lifeboat.daemon=primary".into(),
                });
            }
        };
        let every = |setting: &'static str, text: Option<&str>| {
            text.map(|t| {
                Schedule::parse(t).map_err(|e| ConfigError::Setting {
                    setting,
                    value: t.to_string(),
                    why: e.to_string(),
                })
            })
            .transpose()
        };
        let cluster = self.cluster.as_ref().map(|c| c.plan()).transpose()?;
        // In a cluster the hosts' retention only forgets; the leader's prune frees the space.
        let prune_default = cluster.as_ref().map(|_| "@daily");
        Ok(DaemonPlan {
            check: every("check", d.check.as_deref())?,
            prune: every("prune", d.prune.as_deref().or(prune_default))?,
            cluster,
            scope,
            listen,
            metrics_listen,
            concurrency: d.concurrency.unwrap_or(2).max(1),
            jitter: duration("jitter", d.jitter.as_deref(), 30)?,
            rpo_tolerance: ratio("rpo_tolerance", d.rpo_tolerance, 1.5, 1.0)?,
            shrink_ratio: ratio("shrink_ratio", d.shrink_ratio, 0.5, 0.0)?,
            retention_margin: duration("retention_margin", d.retention_margin.as_deref(), 3600)?,
            webhook: d
                .webhook_url
                .map(|url| crate::notify::Webhook { url, format }),
            enable_all: d.enable_all.unwrap_or(false),
            shutdown_grace: duration("shutdown_grace", d.shutdown_grace.as_deref(), 300)?,
            token_file: d.token_file.unwrap_or_else(|| state_dir.join("api.token")),
            defaults: self.defaults,
            policies: self.policies,
            regions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_config_file_parses_into_a_plan() {
        let o: DaemonOptions = toml::from_str(
            r#"
            [daemon]
            listen = "127.0.0.1:9999"
            concurrency = 3
            jitter = "10s"
            webhook_url = "http://127.0.0.1:8000/hook"

            [defaults]
            schedule = "1h"
            retention = "last=24,daily=7"

            [policies.critical]
            schedule = "5m"
            retention = "7d"
            mode = "hot"
            recover = "auto"
            recover_attempts = 2
            "#,
        )
        .unwrap();
        let p = o.plan(None, Path::new("/var/lib/lifeboat")).unwrap();
        assert_eq!(p.listen.port(), 9999);
        assert_eq!(p.concurrency, 3);
        assert_eq!(
            p.retention_margin,
            Duration::from_secs(3600),
            "the safety margin by default"
        );
        assert_eq!(p.jitter, Duration::from_secs(10));
        assert_eq!(p.policies["critical"].schedule.as_deref(), Some("5m"));
        // A number in the file is read like the label's text.
        assert_eq!(
            p.policies["critical"].recover_attempts.as_deref(),
            Some("2")
        );
        assert_eq!(p.token_file, Path::new("/var/lib/lifeboat/api.token"));
    }

    #[test]
    fn unknown_settings_and_bad_values_are_named() {
        let e = toml::from_str::<DaemonOptions>("[daemon]\nlisten_port = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen_port"), "{e}");
        let o: DaemonOptions =
            toml::from_str("[daemon]\nwebhook_url = \"ftp://x/secret\"\n").unwrap();
        let e = o.plan(None, Path::new("/s")).unwrap_err().to_string();
        assert!(e.contains("webhook_url") && e.contains("https://"), "{e}");
        assert!(!e.contains("secret"), "the URL's path is shown: {e}");
        let o: DaemonOptions =
            toml::from_str("[daemon]\nwebhook_url = \"https://x/h\"\nwebhook_format = \"teams\"\n")
                .unwrap();
        let e = o.plan(None, Path::new("/s")).unwrap_err().to_string();
        assert!(e.contains("webhook_format") && e.contains("slack"), "{e}");
        let o: DaemonOptions = toml::from_str("[policies.gold]\nschedule = \"hourly\"\n").unwrap();
        let e = o.plan(None, Path::new("/s")).unwrap_err().to_string();
        assert!(e.contains("[policies.gold]") && e.contains("hourly"), "{e}");
        let e = DaemonOptions::default()
            .plan(Some("localhost"), Path::new("/s"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen") && e.contains("127.0.0.1:9187"), "{e}");
    }

    #[test]
    fn a_cluster_needs_etcd_endpoints_and_a_host_name() {
        let plan = |text: &str| {
            toml::from_str::<DaemonOptions>(text)
                .unwrap()
                .plan(None, Path::new("/s"))
        };
        let p = plan("[cluster]\netcd = [\"http://127.0.0.1:2379\"]\nhost = \"h1\"\n").unwrap();
        let c = p.cluster.unwrap();
        assert_eq!(
            (c.host.as_str(), c.lease_ttl, c.failover_after),
            ("h1", Duration::from_secs(5), Duration::from_secs(30))
        );
        for (text, names) in [
            ("[cluster]\nhost = \"h1\"\n", "cluster.etcd"),
            (
                "[cluster]\netcd = [\"127.0.0.1:2379\"]\nhost = \"h1\"\n",
                "http://",
            ),
            ("[cluster]\netcd = [\"http://e:1\"]\n", "cluster.host"),
            (
                "[cluster]\netcd = [\"http://e:1\"]\nhost = \"h1\"\nlease_ttl = \"1s\"\n",
                "2s",
            ),
            (
                "[cluster]\netcd = [\"http://e:1\"]\nhost = \"h1\"\nfailover_after = \"2d\"\n",
                "cluster.failover_after",
            ),
        ] {
            let e = plan(text).unwrap_err().to_string();
            assert!(e.contains(names), "{text}: {e}");
        }
    }
}
