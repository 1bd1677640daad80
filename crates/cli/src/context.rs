//! Resolving where the repository is and how to unlock it, from flags and environment.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use lifeboat_core::BackupRequest;
use lifeboat_daemon::DaemonOptions;
use lifeboat_daemon::config::RepositorySection;
use lifeboat_docker::DockerEngine;
use lifeboat_repo::{ProgressSink, RepoLocation, RepoSettings, RusticRepository};

use crate::output::Progress;

/// One repository, resolved: where, its password, how to reach it.
#[derive(Debug, Clone)]
pub struct Target {
    /// `primary` or the region's name.
    pub name: String,
    /// Where it is.
    pub location: RepoLocation,
    /// Its password.
    pub password: String,
    /// How it is reached.
    pub settings: RepoSettings,
}

#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Repository location: a local directory, or s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]
    /// (credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or their *_FILE forms)
    /// [default: $LIFEBOAT_STATE_DIR/repository]
    #[arg(long = "repo", env = "LIFEBOAT_REPOSITORY", global = true)]
    pub repo: Option<String>,
    /// File holding the repository password (or set LIFEBOAT_PASSWORD)
    #[arg(long, env = "LIFEBOAT_PASSWORD_FILE", global = true)]
    pub password_file: Option<PathBuf>,
    /// Lifeboat's own state: locks, default repository and key file
    #[arg(
        long,
        env = "LIFEBOAT_STATE_DIR",
        default_value = "/var/lib/lifeboat",
        global = true
    )]
    pub state_dir: PathBuf,
    /// Where the Docker host's root filesystem is visible (when Lifeboat runs in a container)
    #[arg(long, env = "LIFEBOAT_HOST_ROOT", default_value = "/", global = true)]
    pub host_root: PathBuf,
    /// This host's name in a shared repository: backups are tagged with it, and `snapshots`
    /// and `restore` look at its backups (pass another host's name to restore its services
    /// here) [default: the kernel's host name]
    #[arg(long = "host", env = "LIFEBOAT_HOST", global = true)]
    pub host: Option<String>,
    /// Config file (TOML): the daemon's settings, and where the repositories are
    /// ([repositories.primary] or [repository], [regions.NAME]); see deploy/lifeboat.toml
    #[arg(long, env = "LIFEBOAT_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Work with this region's repository (a [regions.NAME] of the config file) instead of
    /// the primary: restore, drill, snapshots and check from a copy
    #[arg(long = "from", global = true, value_name = "REGION")]
    pub from: Option<String>,
    /// Machine-readable output on stdout (secrets are never included)
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output (-v: engine info, -vv: debug)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

impl GlobalArgs {
    pub fn location(&self) -> RepoLocation {
        RepoLocation(
            self.repo
                .clone()
                .unwrap_or_else(|| self.state_dir.join("repository").display().to_string()),
        )
    }

    pub fn default_key_file(&self) -> PathBuf {
        self.state_dir.join("repository.key")
    }

    /// The password: from the password file, `LIFEBOAT_PASSWORD`, or the default key file.
    pub fn password(&self) -> anyhow::Result<String> {
        if let Some(file) = &self.password_file {
            return read_password_file(file);
        }
        if let Ok(pw) = std::env::var("LIFEBOAT_PASSWORD")
            && !pw.is_empty()
        {
            return Ok(pw);
        }
        let key = self.default_key_file();
        if key.exists() {
            return read_password_file(&key);
        }
        bail!(
            "no repository password: set LIFEBOAT_PASSWORD or LIFEBOAT_PASSWORD_FILE, pass \
             --password-file, or run `lifeboat init` without them to generate {}",
            key.display()
        )
    }

    pub fn progress(&self) -> Option<Arc<dyn ProgressSink>> {
        (!self.json).then(|| Arc::new(Progress::new()) as Arc<dyn ProgressSink>)
    }

    /// The config file, when one is given.
    pub fn options(&self) -> anyhow::Result<Option<DaemonOptions>> {
        self.config
            .as_deref()
            .map(DaemonOptions::load)
            .transpose()
            .map_err(Into::into)
    }

    /// Where the repository named `region` (the primary for `None`) is and how to unlock it:
    /// the config file's sections, else (for the primary) `--repo`, the environment and the
    /// default key file.
    pub fn target(&self, region: Option<&str>) -> anyhow::Result<Target> {
        let section = self.section(region)?;
        let password = match &section.password_file {
            Some(path) => lifeboat_repo::s3::read_secret_file(path).map_err(|why| {
                anyhow::anyhow!(
                    "password_file of {}: {why}",
                    region.unwrap_or("the repository")
                )
            })?,
            None => self.password()?,
        };
        let settings = self.settings_for(&section)?;
        Ok(Target {
            name: region.unwrap_or("primary").to_string(),
            location: section
                .location
                .clone()
                .map(RepoLocation)
                .unwrap_or_else(|| self.location()),
            password,
            settings,
        })
    }

    /// The config file's section for `region` (the primary for `None`; empty without a
    /// config file).
    pub fn section(&self, region: Option<&str>) -> anyhow::Result<RepositorySection> {
        Ok(match (region, self.options()?) {
            (None, None) => RepositorySection::default(),
            (None, Some(o)) => o.primary()?,
            (Some(r), Some(o)) => o.region(r)?.repository(),
            (Some(r), None) => bail!(
                "region `{r}` needs a config file naming it: pass --config FILE (or set \
                 LIFEBOAT_CONFIG) with a [regions.{r}] section"
            ),
        })
    }

    /// [`GlobalArgs::repo_settings`] with the S3 account and region a section names.
    pub fn settings_for(&self, section: &RepositorySection) -> anyhow::Result<RepoSettings> {
        let mut settings = self.repo_settings();
        if let Some(credentials) = section.credentials()? {
            settings.s3.credentials = Some(credentials);
        }
        if section.region.is_some() {
            settings.s3.region = section.region.clone();
        }
        Ok(settings)
    }

    /// Opens a repository.
    pub fn open_target(&self, t: &Target) -> anyhow::Result<RusticRepository> {
        RusticRepository::open_with(
            &t.location,
            &t.password,
            self.progress(),
            t.settings.clone(),
        )
        .with_context(|| match t.name.as_str() {
            "primary" => "cannot open the repository".to_string(),
            region => format!("cannot open region `{region}`"),
        })
    }

    /// The repository the command works with: the primary, or `--from REGION`.
    pub fn open_repo(&self) -> anyhow::Result<RusticRepository> {
        self.open_target(&self.target(self.from.as_deref())?)
    }

    /// This host's name: `--host`, `LIFEBOAT_HOST`, else the kernel's host name.
    pub fn host_name(&self) -> String {
        self.host
            .clone()
            .filter(|h| !h.is_empty())
            .or_else(|| self.cluster_host())
            .unwrap_or_else(hostname)
    }

    /// The config file's `[cluster] host`: a cluster member's identity, on its backups too.
    pub fn cluster_host(&self) -> Option<String> {
        let options = self.options().ok().flatten()?;
        options.cluster?.host.filter(|h| !h.is_empty())
    }

    /// How the repository is reached: S3 account from the environment, the cache under the
    /// state directory, this host's name in locks, and `LIFEBOAT_LOCK_WAIT` (seconds to wait
    /// for another host's conflicting lock, default 120).
    pub fn repo_settings(&self) -> RepoSettings {
        let mut settings = RepoSettings {
            cache_dir: Some(self.state_dir.join("cache")),
            host: self.host_name(),
            ..RepoSettings::default()
        };
        if let Some(wait) = std::env::var("LIFEBOAT_LOCK_WAIT")
            .ok()
            .and_then(|w| w.parse::<u64>().ok())
        {
            settings.locks.wait = std::time::Duration::from_secs(wait);
        }
        settings
    }

    /// Connects to the engine and arms the Ctrl-C / SIGTERM handler that undoes this run's
    /// freezes. (What earlier killed runs left behind was put back by [`recover_leftovers`].)
    pub fn engine(&self) -> anyhow::Result<DockerEngine> {
        let engine = DockerEngine::connect()?;
        let state_dir = self.state_dir.clone();
        let _ = ctrlc::set_handler(move || {
            eprintln!("lifeboat: interrupted; putting back what this run paused or stopped");
            if let Ok(engine) = DockerEngine::connect() {
                for done in
                    lifeboat_consistency::recover(&engine, &state_dir, Some(std::process::id()))
                {
                    eprintln!("lifeboat: {done}");
                }
                // A drill's sandbox goes too: an interrupted drill leaves nothing behind.
                for done in lifeboat_core::drill::tear_down_interrupted(&engine) {
                    eprintln!("lifeboat: {done}");
                }
            }
            std::process::exit(130);
        });
        Ok(engine)
    }

    pub fn backup_request(&self, with_image: bool) -> BackupRequest {
        BackupRequest {
            with_image,
            ..BackupRequest::new(
                self.host_root.clone(),
                self.state_dir.clone(),
                self.host_name(),
            )
        }
    }
}

fn read_password_file(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read password file {}", path.display()))?;
    let pw = text.lines().next().unwrap_or_default().to_string();
    if pw.is_empty() {
        bail!("password file {} is empty", path.display());
    }
    Ok(pw)
}

/// Writes a new random key file readable only by its owner. Refuses to replace one.
pub fn generate_key_file(path: &Path) -> anyhow::Result<String> {
    lifeboat_core::secret::generate_secret_file(path).with_context(|| {
        format!(
            "cannot create key file {} (does it exist already?)",
            path.display()
        )
    })
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Any command first puts back containers that a killed run left paused or stopped (cheap when
/// there is nothing to do: one directory listing; silent when the engine is unreachable).
pub fn recover_leftovers(g: &GlobalArgs) {
    let dir = lifeboat_consistency::intents_dir(&g.state_dir);
    let pending = std::fs::read_dir(&dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if !pending {
        return;
    }
    if let Ok(engine) = DockerEngine::connect() {
        for done in lifeboat_consistency::recover(&engine, &g.state_dir, None) {
            eprintln!("lifeboat: recovered: {done}");
        }
    }
}
