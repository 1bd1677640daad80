//! `doctor`: find what will make a backup or a restore fail, before the night it matters.
//! Read-only: it inspects the engine, the host filesystem and the repository, and changes
//! nothing. Each finding has a severity, one line of explanation and the fix.

mod checks;
mod facts;

use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;
use lifeboat_docker::Engine;
use serde::Serialize;

use crate::catalog::BackupEntry;
use crate::{CoreError, list_backups};
pub use facts::{ContainerFacts, MountFacts, free_bytes};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; nothing to fix.
    Info,
    /// Will likely make a backup or restore incomplete.
    Warning,
    /// Will make a backup or restore fail.
    Error,
}

/// One thing doctor found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// How bad it is.
    pub severity: Severity,
    /// Stable identifier for scripts, e.g. `resources.no_memory_limit`.
    pub check: &'static str,
    /// What it found.
    pub message: String,
    /// What to do about it.
    pub fix: String,
}

/// One container's findings.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerReport {
    /// The container.
    pub container: String,
    /// Its findings.
    pub findings: Vec<Finding>,
}

/// Everything doctor found.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    /// Findings about the repository, the engine and the host, not one container.
    pub general: Vec<Finding>,
    /// Per container.
    pub containers: Vec<ContainerReport>,
}

impl DoctorReport {
    /// The most severe finding, if any.
    pub fn worst(&self) -> Option<Severity> {
        self.general
            .iter()
            .chain(self.containers.iter().flat_map(|c| c.findings.iter()))
            .map(|f| f.severity)
            .max()
    }
}

/// Why the repository could not be opened.
#[derive(Debug, Clone)]
pub struct RepoUnavailable {
    /// The error, as the user would see it.
    pub why: String,
    /// Set when the storage itself refused: `unreachable`, `credentials` or `bucket`.
    pub storage: Option<&'static str>,
}

/// What doctor looks at and how far.
#[derive(Debug, Clone)]
pub struct DoctorRequest {
    /// Where the host's root is mounted here.
    pub host_root: PathBuf,
    /// The local repository directory, for the free-space and writability checks.
    pub repo_dir: Option<PathBuf>,
    /// Where the repository is, as configured (a local path or an S3 location).
    pub repo_location: String,
    /// A backup older than this is reported.
    pub max_age: Duration,
    /// Entries walked per mount at most (ownership and database checks sample beyond it).
    pub walk_limit: usize,
}

/// Examines `names` (all containers when empty). `repo` is the opened repository, or why it
/// could not be opened (reported as a finding, not an error).
pub fn doctor(
    engine: &dyn Engine,
    repo: Result<&dyn crate::Repository, RepoUnavailable>,
    names: &[String],
    req: &DoctorRequest,
) -> Result<DoctorReport, CoreError> {
    let now = Timestamp::now();
    let info = engine.info()?;
    let names = if names.is_empty() {
        crate::containers_in_scope(engine, None)?
    } else {
        names.to_vec()
    };
    let mut general = checks::engine_findings(&info);
    let backups: Vec<BackupEntry> = match repo {
        Ok(repo) => match list_backups(repo, None) {
            Ok(b) => b,
            Err(e) => {
                general.push(checks::repo_unreadable(&e.to_string()));
                Vec::new()
            }
        },
        Err(RepoUnavailable { why, storage: None }) => {
            general.push(checks::repo_unreadable(&why));
            Vec::new()
        }
        Err(RepoUnavailable {
            why,
            storage: Some(what),
        }) => {
            general.push(checks::storage_refused(what, &why));
            Vec::new()
        }
    };
    general.extend(checks::placement_findings(&req.repo_location));
    general.extend(checks::repository_findings(&backups, now));
    let facts: Vec<ContainerFacts> = std::thread::scope(|s| {
        let handles: Vec<_> = names
            .iter()
            .map(|name| s.spawn(move || facts::gather(engine, name, req)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("fact gathering does not panic"))
            .collect::<Vec<_>>()
    })
    .into_iter()
    .collect::<Result<_, _>>()?;
    let mut estimate = 0u64;
    let mut containers = Vec::new();
    for f in &facts {
        estimate += f.mounts.iter().map(|m| m.bytes).sum::<u64>();
        containers.push(ContainerReport {
            container: f.details.name.clone(),
            findings: checks::container_findings(f, &facts, &backups, req, now),
        });
    }
    if let Some(dir) = &req.repo_dir {
        general.extend(checks::destination_findings(dir, estimate));
    }
    Ok(DoctorReport {
        general,
        containers,
    })
}
