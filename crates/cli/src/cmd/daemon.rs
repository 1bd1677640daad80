//! `lifeboat daemon`: loads and validates the config, then hands over to `lifeboat-daemon`.
//! Owns nothing of the daemon's behaviour.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use lifeboat_daemon::{DaemonOptions, RunEnv};
use lifeboat_docker::DockerEngine;

use crate::context::GlobalArgs;
use crate::exit::Code;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Config file (TOML): [daemon] settings, [defaults] and [policies.NAME] (see
    /// deploy/lifeboat.toml). Without one, services need their own lifeboat.schedule label.
    #[arg(long, env = "LIFEBOAT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address for the API, dashboard, /metrics and /healthz [default: 127.0.0.1:9187]
    #[arg(long)]
    pub listen: Option<String>,
    /// Check the config file and print the resolved settings, then exit
    #[arg(long)]
    pub check_config: bool,
}

pub fn run(g: &GlobalArgs, a: &Args) -> anyhow::Result<Code> {
    let options = match &a.config {
        Some(path) => DaemonOptions::load(path)?,
        None => DaemonOptions::default(),
    };
    let plan = options.plan(a.listen.as_deref(), &g.state_dir)?;
    if a.check_config {
        println!(
            "config ok: listen {}, {} job(s) at once, jitter {}s, RPO tolerance {}, {} named \
             policies, webhook {}",
            plan.listen,
            plan.concurrency,
            plan.jitter.as_secs(),
            plan.rpo_tolerance,
            plan.policies.len(),
            plan.webhook_url.as_deref().unwrap_or("none")
        );
        return Ok(Code::Ok);
    }
    let password = g.password()?;
    // Fail now, not at the first scheduled backup, when the repository is missing or the
    // password is wrong.
    let repo = g
        .open_repo()
        .context("the daemon needs an initialised repository")?;
    drop(repo);
    let engine = DockerEngine::connect()?;
    let env = RunEnv {
        state_dir: g.state_dir.clone(),
        host_root: g.host_root.clone(),
        hostname: g.host_name(),
        repo: g.location(),
        password,
        settings: g.repo_settings(),
    };
    lifeboat_daemon::run(plan, env, Arc::new(engine))?;
    Ok(Code::Ok)
}
