//! `lifeboat recover NAME`: what the daemon does for a failed service, by hand. A forensic
//! backup of the broken state first (kept, tagged `forensic`), then the newest good backup
//! (complete; drill-verified when drills have verified any) restored in place.

use lifeboat_core::{RecoverRequest, RestoreRequest, recover_container};
use lifeboat_daemon::store::Store;

use super::restore::{container_arg, snapshot_arg};
use crate::context::GlobalArgs;
use crate::exit::Code;
use crate::output::note;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The service (container) to recover
    #[arg(value_parser = container_arg)]
    pub name: String,
    /// Recover from this backup (snapshot or backup id) instead of the newest good one
    #[arg(long, value_parser = snapshot_arg)]
    pub snapshot: Option<String>,
    /// Say what would be done; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Seconds to wait for the recovered container to be healthy
    #[arg(long, default_value_t = 120)]
    pub health_timeout: u64,
}

pub fn run(g: &GlobalArgs, a: &Args) -> anyhow::Result<Code> {
    let engine = g.engine()?;
    let repo = g.open_repo()?;
    // Drill-verified backups count as the good ones once drills have verified any.
    let verified = Store::open(&g.state_dir.join("daemon.db"))
        .ok()
        .and_then(|s| s.verified_backups(&a.name).ok())
        .filter(|v| !v.is_empty());
    let req = RecoverRequest {
        restore: RestoreRequest {
            snapshot: a.snapshot.clone(),
            dry_run: a.dry_run,
            health_timeout: std::time::Duration::from_secs(a.health_timeout),
            ..RestoreRequest::new(g.backup_request(false))
        },
        verified,
    };
    let out = recover_container(&engine, &repo, &a.name, &req, &note)?;
    if g.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if out.dry_run {
        println!(
            "would recover {} from backup {}:",
            out.service, out.backup_id
        );
        for s in &out.steps {
            println!("  - {s}");
        }
    } else {
        println!(
            "recovered {} from backup {} ({}; {:.0}s of data since then lost) in {:.1}s{}{}",
            out.service,
            out.backup_id,
            out.backup_time,
            out.data_lost_seconds,
            out.seconds,
            out.health
                .as_ref()
                .map(|h| format!(", {h}"))
                .unwrap_or_default(),
            out.forensic_snapshot
                .as_ref()
                .map(|f| format!("; the broken state is kept as forensic backup {f}"))
                .unwrap_or_default()
        );
    }
    Ok(Code::Ok)
}
