//! `lifeboat cluster status`: the cluster as etcd holds it (hosts, heartbeat ages, the
//! leader, services per host), read without joining it.

use crate::context::GlobalArgs;
use crate::exit::Code;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Hosts, their heartbeat age and services, the leader, and where each failover service
    /// lives (from the config's [cluster])
    Status,
}

pub fn run(g: &GlobalArgs, c: &Command) -> anyhow::Result<Code> {
    let Command::Status = c;
    let section = g.options()?.and_then(|o| o.cluster).ok_or_else(|| {
        anyhow::anyhow!(
            "no [cluster] section in the config file: pass --config (or LIFEBOAT_CONFIG) with \
             the daemons' config, whose [cluster] names etcd"
        )
    })?;
    let cluster = lifeboat_daemon::cluster::Cluster::new(section.plan()?);
    let view = cluster.observe()?;
    if g.json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(Code::Ok);
    }
    println!(
        "leader: {}",
        view.leader
            .as_deref()
            .unwrap_or("none (no daemon leads: repository-wide jobs wait)")
    );
    println!("{:<2} {:<20} {:>10}  SERVICES", "", "HOST", "HEARTBEAT");
    for h in &view.hosts {
        println!(
            "{:<2} {:<20} {:>9.1}s  {}",
            if h.leader { "*" } else { "" },
            h.record.host,
            h.heartbeat_age_seconds,
            if h.record.services.is_empty() {
                "-".to_string()
            } else {
                h.record.services.join(", ")
            }
        );
    }
    if view.hosts.is_empty() {
        println!("(no host registered: no daemon of this cluster runs)");
    }
    if !view.services.is_empty() {
        println!();
        println!(
            "{:<24} {:<20} {:<8}  NOTE",
            "FAILOVER SERVICE", "HOST", "STATE"
        );
        for o in &view.services {
            let state = serde_json::to_value(o.state)?;
            println!(
                "{:<24} {:<20} {:<8}  {}",
                o.service,
                o.host,
                state.as_str().unwrap_or(""),
                o.detail.as_deref().unwrap_or("")
            );
        }
    }
    Ok(Code::Ok)
}
