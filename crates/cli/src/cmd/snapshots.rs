//! `lifeboat snapshots [NAME]`: the committed backups, newest last, safety backups marked.
//! Read-only.

use lifeboat_core::list_host_backups;
use lifeboat_model::{PartKind, format_timestamp};
use lifeboat_repo::Repository as _;
use serde_json::json;

use crate::context::GlobalArgs;
use crate::exit::Code;
use crate::output::human_bytes;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only backups of this container
    pub name: Option<String>,
    /// Backups of every host sharing the repository (default: this host's, see --host)
    #[arg(long)]
    pub all_hosts: bool,
    /// Only backups taken since TIME (RFC 3339) or this long ago (`90m`, `2h`, `7d`)
    #[arg(long, value_parser = crate::cmd::restore::since_arg)]
    pub since: Option<jiff::Timestamp>,
}

pub fn run(g: &GlobalArgs, a: &Args) -> anyhow::Result<Code> {
    let repo = g.open_repo()?;
    let host = g.host_name();
    let mut backups = list_host_backups(
        &repo,
        a.name.as_deref(),
        (!a.all_hosts).then_some(host.as_str()),
    )?;
    // A damaged snapshot file is left out of the listing, and said so.
    let unreadable = repo.unreadable_snapshots()?;
    if !unreadable.is_empty() {
        crate::output::note(&format!(
            "warning: {} snapshot file(s) cannot be read (damaged: {}); the backups they held \
             are not listed, and nothing is deleted until they are mended: run `lifeboat check`",
            unreadable.len(),
            unreadable.join(", ")
        ));
    }
    if let Some(since) = a.since {
        backups.retain(|b| b.manifest.started_at >= since);
    }
    if g.json {
        let list: Vec<_> = backups
            .iter()
            .map(|b| {
                let m = &b.manifest;
                json!({
                    "snapshot": b.snapshot_id,
                    "backup_id": m.backup_id,
                    "container": m.container_name,
                    "time": format_timestamp(m.started_at),
                    "host": m.host,
                    "image": m.config.image,
                    "with_image": m.parts.iter().any(|p| p.kind == PartKind::Image),
                    "partial": m.partial,
                    "safety": b.safety,
                    "forensic": b.forensic,
                    "consistency": m.consistency,
                    "bytes": m.total_bytes(),
                    "config_sha256": m.config_sha256,
                    "schema_version": m.schema_version,
                    "parts": m.parts,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(Code::Ok);
    }
    if backups.is_empty() {
        match lifeboat_core::foreign_note(&repo) {
            Some(note) => println!("{note}"),
            None => println!(
                "no backups{}",
                a.name
                    .as_ref()
                    .map(|n| format!(" of {n}"))
                    .unwrap_or_default()
            ),
        }
        return Ok(Code::Ok);
    }
    println!(
        "{:<10} {:<20} {:<16} {:<24} {:>10}  PARTS",
        "SNAPSHOT", "TIME (UTC)", "HOST", "CONTAINER", "SIZE"
    );
    for b in &backups {
        let m = &b.manifest;
        let parts: Vec<String> = m
            .parts
            .iter()
            .map(|p| format!("{}:{}", p.kind.as_str(), p.name))
            .collect();
        println!(
            "{:<10} {:<20} {:<16} {:<24} {:>10}  {}{}{}",
            &b.snapshot_id[..8.min(b.snapshot_id.len())],
            m.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            m.host,
            m.container_name,
            human_bytes(m.total_bytes()),
            parts.join(" "),
            if m.partial { "  [PARTIAL]" } else { "" },
            if b.safety {
                "  [SAFETY: taken by restore --force; restore it with --snapshot]"
            } else {
                ""
            }
        );
    }
    Ok(Code::Ok)
}
