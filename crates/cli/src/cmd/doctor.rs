//! `lifeboat doctor [NAME...]`: prints the findings of `lifeboat-core`'s doctor, with its own
//! exit contract (0 clear, 1 warnings, 2 errors). Changes nothing.

use std::path::PathBuf;
use std::time::Duration;

use lifeboat_core::Repository;
use lifeboat_core::doctor::{
    DoctorReport, DoctorRequest, Finding, RepoUnavailable, Severity, doctor,
};
use lifeboat_repo::RepoError;

use crate::context::GlobalArgs;
use crate::exit::Code;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Containers to examine (when none is named: every container not labelled
    /// lifeboat.enable=false, 0 or no, the rule `backup --all` uses)
    pub names: Vec<String>,
    /// Examine every container
    #[arg(long, conflicts_with = "names")]
    pub all: bool,
    /// Report containers whose newest backup is older than this many hours
    #[arg(long, default_value_t = 26)]
    pub max_age_hours: u64,
}

/// Exit status: 0 all clear (information only), 1 warnings, 2 errors.
pub fn run(g: &GlobalArgs, a: &Args) -> anyhow::Result<Code> {
    let engine = g.engine()?;
    let repo = g.open_repo().map_err(|e| RepoUnavailable {
        why: format!("{e:#}"),
        storage: match e.downcast_ref::<RepoError>() {
            Some(RepoError::StorageUnreachable { .. }) => Some("unreachable"),
            Some(RepoError::StorageDenied { .. }) => Some("credentials"),
            Some(RepoError::NoBucket { .. }) => Some("bucket"),
            _ => None,
        },
    });
    let location = g.location().0;
    let req = DoctorRequest {
        host_root: g.host_root.clone(),
        repo_dir: (!location.contains("://") && !location.starts_with("s3:"))
            .then(|| PathBuf::from(&location)),
        repo_location: location.clone(),
        max_age: Duration::from_secs(a.max_age_hours * 3600),
        walk_limit: 50_000,
    };
    let repo_ref = repo
        .as_ref()
        .map(|r| r as &dyn Repository)
        .map_err(Clone::clone);
    let report = doctor(&engine, repo_ref, &a.names, &req)?;
    if g.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_human(&report);
    }
    Ok(match report.worst() {
        Some(Severity::Error) => Code::DoctorErrors,
        Some(Severity::Warning) => Code::DoctorWarnings,
        _ => Code::Ok,
    })
}

fn print_finding(f: &Finding) {
    let tag = match f.severity {
        Severity::Error => "ERROR",
        Severity::Warning => "warn ",
        Severity::Info => "info ",
    };
    println!("  {tag} {}: {}", f.check, f.message);
    println!("        fix: {}", f.fix);
}

fn print_human(report: &DoctorReport) {
    if !report.general.is_empty() {
        println!("repository and host:");
        report.general.iter().for_each(print_finding);
    }
    for c in &report.containers {
        if c.findings.is_empty() {
            println!("{}: all clear", c.container);
        } else {
            println!("{}:", c.container);
            c.findings.iter().for_each(print_finding);
        }
    }
    let count = |s| {
        report
            .general
            .iter()
            .chain(report.containers.iter().flat_map(|c| c.findings.iter()))
            .filter(|f| f.severity == s)
            .count()
    };
    println!(
        "{} container(s): {} error(s), {} warning(s)",
        report.containers.len(),
        count(Severity::Error),
        count(Severity::Warning)
    );
}
