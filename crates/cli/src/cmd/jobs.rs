//! `lifeboat jobs [NAME]`: the daemon's job history (`<state-dir>/daemon.db`), newest first,
//! filtered by service, kind and time. Read-only; works while the daemon runs. In a cluster
//! (`--config` with `[cluster]`), `--host H` asks H's daemon through its API instead.

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
    let jobs = match other_host(g)? {
        Some((host, api)) => {
            let token = std::env::var("LIFEBOAT_API_TOKEN")
                .ok()
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "host `{host}`'s history is asked from its daemon: set \
                         LIFEBOAT_API_TOKEN to its API token"
                    )
                })?;
            let query = lifeboat_daemon::peer::JobsQuery {
                service: a.service.clone(),
                kind: a.kind.map(|k| k.as_str().to_string()),
                since: a.since.map(lifeboat_model::format_timestamp),
                limit: a.limit,
            };
            lifeboat_daemon::peer::jobs(&host, &api, &token, &query).map_err(anyhow::Error::msg)?
        }
        None => {
            let path = g.state_dir.join("daemon.db");
            if !path.exists() {
                anyhow::bail!(
                    "no job history at {}: the daemon has not run with this state directory \
                     (pass the daemon's --state-dir or LIFEBOAT_STATE_DIR)",
                    path.display()
                );
            }
            Store::open(&path)?.history(a.service.as_deref(), a.kind, a.since, a.limit)?
        }
    };
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

/// The host `--host` names, and its daemon's API address, when it is another member of the
/// config's cluster (else the history is this host's, read from the state directory).
fn other_host(g: &GlobalArgs) -> anyhow::Result<Option<(String, String)>> {
    let Some(host) = g.host.as_deref() else {
        return Ok(None);
    };
    let Some(section) = g.options()?.and_then(|o| o.cluster) else {
        return Ok(None);
    };
    if section.host.as_deref() == Some(host) {
        return Ok(None);
    }
    let view = lifeboat_daemon::cluster::Cluster::new(section.plan()?).observe()?;
    match view.hosts.iter().find(|h| h.record.host == host) {
        Some(h) => Ok(Some((host.to_string(), h.record.api.clone()))),
        None => {
            let live: Vec<&str> = view.hosts.iter().map(|h| h.record.host.as_str()).collect();
            anyhow::bail!(
                "host `{host}` has no live daemon in the cluster (live: {}); its history is \
                 in its own state directory",
                if live.is_empty() {
                    "none".to_string()
                } else {
                    live.join(", ")
                }
            )
        }
    }
}
