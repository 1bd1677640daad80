//! `lifeboat jobs [NAME]`: the daemon's job history (`<state-dir>/daemon.db`), newest first,
//! filtered by service, kind and time. Read-only; works while the daemon runs.

use jiff::Timestamp;
use lifeboat_daemon::store::Store;
use lifeboat_model::JobKind;

use crate::context::GlobalArgs;
use crate::exit::Code;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only jobs of this service (or a repository-wide entry such as `repository#check`)
    pub service: Option<String>,
    /// Only jobs of this kind: backup, restore, prune, drill, recover, copy, check, failover
    #[arg(long, value_parser = kind_arg)]
    pub kind: Option<JobKind>,
    /// Only jobs queued since TIME (RFC 3339) or this long ago (`90m`, `2h`, `7d`)
    #[arg(long, value_parser = crate::cmd::restore::since_arg)]
    pub since: Option<Timestamp>,
    /// At most this many, newest first
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
}

fn kind_arg(text: &str) -> Result<JobKind, String> {
    JobKind::from_word(text).ok_or_else(|| {
        format!(
            "`{text}` is not a job kind; use one of {}",
            JobKind::words()
        )
    })
}

pub fn run(g: &GlobalArgs, a: &Args) -> anyhow::Result<Code> {
    let path = g.state_dir.join("daemon.db");
    if !path.exists() {
        anyhow::bail!(
            "no job history at {}: the daemon has not run with this state directory \
             (pass the daemon's --state-dir or LIFEBOAT_STATE_DIR)",
            path.display()
        );
    }
    let store = Store::open(&path)?;
    let jobs = store.history(a.service.as_deref(), a.kind, a.since, a.limit)?;
    if g.json {
        println!("{}", serde_json::to_string_pretty(&jobs)?);
        return Ok(Code::Ok);
    }
    if jobs.is_empty() {
        println!("no jobs");
        return Ok(Code::Ok);
    }
    println!(
        "{:>6} {:<9} {:<28} {:<10} {:<20} {:>8}  TRIGGER / ERROR",
        "ID", "KIND", "SERVICE", "STATE", "QUEUED (UTC)", "SECONDS"
    );
    for j in &jobs {
        let queued = j
            .queued_at
            .parse::<Timestamp>()
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_else(|_| j.queued_at.clone());
        let seconds = j
            .duration_seconds
            .map(|s| format!("{s:.1}"))
            .unwrap_or_else(|| "-".into());
        let error: String = j
            .error
            .as_deref()
            .map(|e| format!(": {}", e.lines().next().unwrap_or("")))
            .unwrap_or_default()
            .chars()
            .take(100)
            .collect();
        println!(
            "{:>6} {:<9} {:<28} {:<10} {:<20} {:>8}  {}{error}",
            j.id,
            j.kind.as_str(),
            j.service,
            j.state.as_str(),
            queued,
            seconds,
            j.trigger
        );
    }
    Ok(Code::Ok)
}
