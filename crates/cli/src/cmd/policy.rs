//! `lifeboat policy log [NAME]`: every version of each service's policy, from the daemon's
//! history. Read-only.

use anyhow::Context;
use lifeboat_daemon::store::Store;
use serde_json::json;

use crate::context::GlobalArgs;
use crate::exit::Code;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Every version of each service's effective policy, oldest first, with its SHA-256
    /// fingerprint (the one recorded in the manifests of the backups it made)
    Log(LogArgs),
}

#[derive(clap::Args, Debug)]
pub struct LogArgs {
    /// Only this service
    pub service: Option<String>,
}

pub fn run(g: &GlobalArgs, c: &Command) -> anyhow::Result<Code> {
    let Command::Log(a) = c;
    let path = g.state_dir.join("daemon.db");
    if !path.exists() {
        anyhow::bail!(
            "no daemon history at {}: the daemon has not run with this --state-dir yet",
            path.display()
        );
    }
    let store = Store::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let log = store.policy_log(a.service.as_deref())?;
    if g.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"policy_log": log}))?
        );
        return Ok(Code::Ok);
    }
    if log.is_empty() {
        println!("no policy recorded yet");
    }
    for c in &log {
        let p = &c.policy;
        println!(
            "{}  {:<20} {}  schedule={} retention={}{}{}",
            c.recorded_at,
            c.service,
            &c.sha256[..12],
            p["schedule"].as_str().unwrap_or("-"),
            p["retention"].as_str().unwrap_or("none"),
            p["mode"]
                .as_str()
                .map(|m| format!(" mode={m}"))
                .unwrap_or_default(),
            p["name"]
                .as_str()
                .map(|n| format!(" policy={n}"))
                .unwrap_or_default(),
        );
    }
    Ok(Code::Ok)
}
