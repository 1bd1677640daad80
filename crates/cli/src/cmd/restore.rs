//! `lifeboat restore NAME`: one container from its backup (several or `--project` go to
//! `restore_stack`). Validates names and times at the boundary (exit 2); never writes itself.

use std::time::Duration;

use anyhow::bail;
use lifeboat_core::{RestoreRequest, restore_container};
use lifeboat_model::{names, parse_timestamp};
use serde_json::json;

use crate::context::GlobalArgs;
use crate::exit::Code;
use crate::output::note;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The containers whose backups to restore (one: a single restore; several: a stack)
    #[arg(required_unless_present_any = ["project", "all"])]
    pub names: Vec<String>,
    /// Restore every service of this compose project, in dependency order
    #[arg(long, conflicts_with_all = ["names", "all"])]
    pub project: Option<String>,
    /// Restore every container that has a backup, in dependency order
    #[arg(long, conflicts_with = "names")]
    pub all: bool,
    /// Print the stack plan (backups chosen, dependency order) and change nothing
    #[arg(long)]
    pub plan: bool,
    /// For a stack: seconds for the whole restore, dependencies' health included
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Restore this backup (snapshot id or backup id, prefixes accepted)
    #[arg(long, conflicts_with = "at", value_parser = snapshot_arg)]
    pub snapshot: Option<String>,
    /// Restore the newest backup taken at or before this RFC 3339 time
    #[arg(long, value_parser = at_arg)]
    pub at: Option<jiff::Timestamp>,
    /// Restore side by side under a new name (volumes become NEWNAME_VOLUME, bind paths
    /// PATH-NEWNAME, published ports get free host ports)
    #[arg(long = "as", value_name = "NEWNAME", value_parser = container_arg)]
    pub as_name: Option<String>,
    /// Replace an existing container and non-empty volumes, after a safety backup of them
    #[arg(long)]
    pub force: bool,
    /// Check and print what would be done; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Write the compose project's files (compose files, .env, env files) under this
    /// directory instead of putting missing ones back at their own paths
    #[arg(long, value_name = "DIR")]
    pub files_to: Option<std::path::PathBuf>,
    /// Seconds to wait for the restored container's healthcheck to pass
    #[arg(long, default_value_t = 120)]
    pub health_timeout: u64,
}

pub fn run(g: &GlobalArgs, a: &Args) -> anyhow::Result<Code> {
    if a.names.len() != 1 || a.project.is_some() || a.all || a.plan {
        return super::restore_stack::run(g, a);
    }
    let name = &a.names[0];
    if a.as_name.as_deref() == Some(name.as_str()) {
        bail!("--as names the same container; drop --as to restore in place");
    }
    let at = a.at;
    let engine = g.engine()?;
    let repo = g.open_repo().map_err(|e| offer_region(g, name, e))?;
    let req = RestoreRequest {
        snapshot: a.snapshot.clone(),
        at,
        as_name: a.as_name.clone(),
        force: a.force,
        dry_run: a.dry_run,
        health_timeout: Duration::from_secs(a.health_timeout),
        files_to: a.files_to.clone(),
        ..RestoreRequest::new(g.backup_request(false))
    };
    let out = restore_container(&engine, &repo, name, &req, &note)?;
    if g.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "container": out.container, "container_id": out.container_id,
                "snapshot": out.from_snapshot, "backup_id": out.backup_id,
                "safety_snapshot": out.safety_snapshot, "volumes": out.volumes, "binds": out.binds,
                "image_loaded": out.image_loaded, "started": out.started, "health": out.health,
                "seconds": out.seconds, "dry_run": out.dry_run, "actions": out.actions,
            }))?
        );
    } else if out.dry_run {
        println!("dry run: nothing was changed. `lifeboat restore` would:");
        for a in &out.actions {
            println!("  - {a}");
        }
    } else {
        if let Some(s) = &out.safety_snapshot {
            println!(
                "safety backup of the replaced container: snapshot {}",
                &s[..8]
            );
        }
        println!(
            "restored {} from backup {} in {:.1}s{}{}",
            out.container,
            out.backup_id,
            out.seconds,
            if out.started {
                ", started"
            } else {
                ", not started (it was stopped)"
            },
            out.health
                .as_ref()
                .map(|h| format!(", {h}"))
                .unwrap_or_default()
        );
    }
    Ok(Code::Ok)
}

/// `--at`: an RFC 3339 time (a bad one is a usage error, exit 2).
pub fn at_arg(text: &str) -> Result<jiff::Timestamp, String> {
    parse_timestamp(text)
}

/// `--since`: an RFC 3339 time, or a duration meaning that long ago (`90m`, `2h`, `7d`).
pub fn since_arg(text: &str) -> Result<jiff::Timestamp, String> {
    if let Ok(ago) = lifeboat_model::policy::parse_duration(text) {
        let ago = jiff::SignedDuration::try_from(ago).map_err(|e| e.to_string())?;
        return jiff::Timestamp::now()
            .checked_sub(ago)
            .map_err(|_| format!("`{text}` reaches back before any time Lifeboat can name"));
    }
    parse_timestamp(text).map_err(|e| format!("{e}, or a duration such as 2h or 7d"))
}

/// `--as` and container names: Docker's rule, checked before any path is derived.
pub fn container_arg(text: &str) -> Result<String, String> {
    names::container_name(text)
        .map(|()| text.to_string())
        .map_err(|e| e.to_string())
}

/// `--snapshot`: an id or prefix; empty is an error, not "the newest".
pub fn snapshot_arg(text: &str) -> Result<String, String> {
    names::snapshot_selector(text)
        .map(|()| text.to_string())
        .map_err(|e| e.to_string())
}

/// The primary cannot be opened: the error names the region holding the newest backup of
/// `name` (a region is used only when asked for with `--from`, never silently).
fn offer_region(g: &GlobalArgs, name: &str, e: anyhow::Error) -> anyhow::Error {
    if g.from.is_some() {
        return e;
    }
    let Ok(Some(options)) = g.options() else {
        return e;
    };
    let host = g.host_name();
    // Drills from each region (the daemon's history) tell which copies are proven.
    let history = lifeboat_daemon::store::Store::open(&g.state_dir.join("daemon.db")).ok();
    // (verified by a drill there, taken at) orders the candidates.
    let mut best: Option<(bool, String, lifeboat_core::BackupEntry)> = None;
    for region in options.regions.keys() {
        let Ok(repo) = g.target(Some(region)).and_then(|t| g.open_target(&t)) else {
            continue;
        };
        let Ok(list) = lifeboat_core::list_host_backups(&repo, Some(name), Some(&host)) else {
            continue;
        };
        let verified = history
            .as_ref()
            .and_then(|h| h.region_verified(name, region).ok())
            .unwrap_or_default();
        let good = list.iter().rev().filter(|b| !b.safety);
        let candidate = good
            .clone()
            .find(|b| verified.contains(&b.manifest.backup_id.0))
            .map(|b| (true, b))
            .or_else(|| good.clone().next().map(|b| (false, b)));
        let Some((proven, b)) = candidate else {
            continue;
        };
        let better = best.as_ref().is_none_or(|(p, _, old)| {
            (proven, b.manifest.started_at) > (*p, old.manifest.started_at)
        });
        if better {
            best = Some((proven, region.clone(), b.clone()));
        }
    }
    match best {
        Some((proven, region, b)) => e.context(format!(
            "the primary repository cannot be opened; region `{region}` holds the newest {} \
             copy of {name} (backup {}, taken {}): restore it with `lifeboat --from {region} \
             restore {name}{}`",
            if proven {
                "drill-verified"
            } else {
                "(not yet drill-verified)"
            },
            b.manifest.backup_id.0,
            lifeboat_model::format_timestamp(b.manifest.started_at),
            format_args!(" --snapshot {}", b.snapshot_id),
        )),
        None => e,
    }
}
