//! `lifeboat drill`: restores into a sandbox, probes, times and tears down (all in
//! `lifeboat-core`), then records one job-history line per service. Never touches production.

use std::time::Duration;

use anyhow::bail;
use lifeboat_core::drill::{DrillReport, DrillRequest, run_drill};
use lifeboat_daemon::store::{JobEnd, Store};
use serde_json::json;

use super::restore::at_arg;
use super::restore_stack::selection;
use crate::context::GlobalArgs;
use crate::exit::Code;
use crate::output::note;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Containers to drill (with their dependencies given too, they restore in order)
    pub names: Vec<String>,
    /// Drill every service of this compose project
    #[arg(long, conflicts_with_all = ["names", "all"])]
    pub project: Option<String>,
    /// Drill every container that has a backup
    #[arg(long, conflicts_with = "names")]
    pub all: bool,
    /// Drill the backups as of this RFC 3339 time (newest at or before it)
    #[arg(long, value_parser = at_arg)]
    pub at: Option<jiff::Timestamp>,
    /// Seconds for the whole drill: restores, health checks and probes
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

pub fn run(g: &GlobalArgs, a: &Args) -> anyhow::Result<Code> {
    if a.names.is_empty() && a.project.is_none() && !a.all {
        bail!("name the containers to drill, or pass --project NAME or --all");
    }
    let engine = g.engine()?;
    let repo = g.open_repo()?;
    let req = DrillRequest {
        selection: selection(a.project.as_deref(), a.all, &a.names),
        at: a.at,
        timeout: Duration::from_secs(a.timeout),
        backup: g.backup_request(false),
    };
    let report = run_drill(&engine, &repo, &req, &note)?;
    record(g, &report);
    if g.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for s in &report.services {
            println!(
                "{} {} (backup {}){}",
                if s.ok { "PASS" } else { "FAIL" },
                s.service,
                s.backup_id,
                s.error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            );
            for p in &s.probes {
                println!(
                    "    {} {}: {}",
                    if p.ok { "ok  " } else { "FAIL" },
                    p.name,
                    p.output.lines().next().unwrap_or("")
                );
            }
        }
        for p in &report.teardown_problems {
            println!("teardown left: {p}");
        }
        println!(
            "drill {} {}: recovery time {:.1}s (restored, healthy and probed)",
            report.drill_id,
            if report.ok { "passed" } else { "FAILED" },
            report.recovery_seconds
        );
    }
    Ok(if report.ok { Code::Ok } else { Code::Error })
}

/// One line per service in the job history that the daemon and its dashboard read.
fn record(g: &GlobalArgs, report: &DrillReport) {
    let Ok(store) = Store::open(&g.state_dir.join("daemon.db")) else {
        eprintln!("lifeboat: warning: the drill could not be recorded in the job history");
        return;
    };
    for s in &report.services {
        let detail = json!({
            "drill_id": report.drill_id, "recovery_seconds": report.recovery_seconds,
            "probes": s.probes, "sandbox_container": s.sandbox_container,
        });
        let end = JobEnd {
            ok: s.ok,
            snapshot_id: Some(s.snapshot_id.clone()),
            backup_id: Some(s.backup_id.clone()),
            error: s.error.clone(),
            detail: Some(detail),
            ..Default::default()
        };
        let r = store
            .queue(lifeboat_model::JobKind::Drill, &s.service, "cli", None)
            .and_then(|id| store.start(id, None).map(|_| id))
            .and_then(|id| store.finish(id, report.recovery_seconds, &end));
        if let Err(e) = r {
            eprintln!("lifeboat: warning: drill not recorded: {e}");
        }
    }
}
