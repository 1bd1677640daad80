//! `lifeboat daemon`: loads and validates the config, then hands over to `lifeboat-daemon`.
//! Owns nothing of the daemon's behaviour.

use std::sync::Arc;

use anyhow::Context;
use lifeboat_daemon::RunEnv;
use lifeboat_docker::DockerEngine;

use crate::context::GlobalArgs;
use crate::exit::Code;

/// The config file (`--config`, global): [daemon] settings, [defaults] and
/// [policies.NAME], the repositories (see deploy/lifeboat.toml). Without one, services need
/// their own lifeboat.schedule label.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address for the API, dashboard, /metrics and /healthz [default: 127.0.0.1:9187]
    #[arg(long)]
    pub listen: Option<String>,
    /// Check the config file and print the resolved settings, then exit
    #[arg(long)]
    pub check_config: bool,
}

pub fn run(g: &GlobalArgs, a: &Args) -> anyhow::Result<Code> {
    if g.from.is_some() {
        anyhow::bail!("the daemon backs up into the primary repository: drop --from");
    }
    let options = g.options()?.unwrap_or_default();
    if let (Some(flag), Some(member)) = (g.host.as_deref(), g.cluster_host())
        && flag != member
    {
        anyhow::bail!(
            "--host / LIFEBOAT_HOST says `{flag}` but the config's [cluster] host is `{member}`: \
             a cluster member has one identity; drop one of the two"
        );
    }
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
            plan.webhook
                .as_ref()
                .map_or("none".to_string(), |w| format!(
                    "{} ({})",
                    lifeboat_daemon::notify::shown_url(&w.url),
                    w.format.as_str()
                ))
        );
        return Ok(Code::Ok);
    }
    // The config's [repositories.primary] / [repository] wins over --repo /
    // LIFEBOAT_REPOSITORY and the environment.
    let target = g.target(None)?;
    let mut regions = std::collections::BTreeMap::new();
    for r in &plan.regions {
        let t = g.target(Some(&r.name))?;
        regions.insert(
            r.name.clone(),
            lifeboat_daemon::RegionAccess {
                location: t.location,
                password: t.password,
                settings: t.settings,
            },
        );
    }
    let env = RunEnv {
        state_dir: g.state_dir.clone(),
        host_root: g.host_root.clone(),
        hostname: g.host_name(),
        repo: target.location,
        password: target.password,
        settings: target.settings,
        regions,
    };
    // Fail now, not at the first scheduled backup, when the repository is missing, the
    // storage refuses, or the password is wrong.
    env.open_repo()
        .context("the daemon needs an initialised repository")?;
    let engine = DockerEngine::connect()?;
    lifeboat_daemon::run(plan, env, Arc::new(engine))?;
    Ok(Code::Ok)
}
