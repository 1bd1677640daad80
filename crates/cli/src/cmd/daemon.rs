//! `lifeboat daemon`: loads and validates the config, then hands over to `lifeboat-daemon`.
//! Owns nothing of the daemon's behaviour.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use lifeboat_daemon::{DaemonOptions, RunEnv};
use lifeboat_docker::DockerEngine;
use lifeboat_repo::RepoLocation;

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
    let section = options.repository.clone();
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
    // The config's [repository] wins over --repo / LIFEBOAT_REPOSITORY and the environment.
    let password = match &section.password_file {
        Some(path) => lifeboat_repo::s3::read_secret_file(path)
            .map_err(|why| anyhow::anyhow!("repository.password_file: {why}"))?,
        None => g.password()?,
    };
    let repo = section
        .location
        .clone()
        .map(RepoLocation)
        .unwrap_or_else(|| g.location());
    let mut settings = g.repo_settings();
    if let Some(credentials) = section.credentials()? {
        settings.s3.credentials = Some(credentials);
    }
    if section.region.is_some() {
        settings.s3.region = section.region.clone();
    }
    let env = RunEnv {
        state_dir: g.state_dir.clone(),
        host_root: g.host_root.clone(),
        hostname: g.host_name(),
        repo,
        password,
        settings,
    };
    // Fail now, not at the first scheduled backup, when the repository is missing, the
    // storage refuses, or the password is wrong.
    env.open_repo()
        .context("the daemon needs an initialised repository")?;
    let engine = DockerEngine::connect()?;
    lifeboat_daemon::run(plan, env, Arc::new(engine))?;
    Ok(Code::Ok)
}
