//! `lifeboat copy --to REGION`: copies every committed backup the region lacks (of the named
//! containers, or all), parts first and manifest last, sending only the data it lacks.
//! Idempotent; a copy cut short is finished by the next one.

use anyhow::Context;
use lifeboat_core::{CopyRequest, copy_backups};

use super::restore::container_arg;
use crate::context::GlobalArgs;
use crate::exit::Code;
use crate::output::note;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The region to copy to ([regions.NAME] of the config file)
    #[arg(long, value_name = "REGION")]
    pub to: String,
    /// Only these containers' backups
    #[arg(value_parser = container_arg, required_unless_present = "all", conflicts_with = "all")]
    pub names: Vec<String>,
    /// Every container's backups
    #[arg(long)]
    pub all: bool,
    /// Only the backups this host took (--host); without it, every host's
    #[arg(long)]
    pub this_host: bool,
    /// Say what would be copied; copy nothing
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(g: &GlobalArgs, a: &Args) -> anyhow::Result<Code> {
    if g.from.as_deref() == Some(a.to.as_str()) {
        anyhow::bail!("--from and --to name the same region `{}`", a.to);
    }
    let src = g.open_repo()?;
    let t = g.target(Some(&a.to))?;
    let dest = g.open_target(&t).with_context(|| {
        format!(
            "create it first with `lifeboat init --region {}` (same chunker as the primary)",
            a.to
        )
    })?;
    if src.chunker()? != dest.chunker()? {
        eprintln!(
            "lifeboat: region `{}` cuts files differently from its source (it was not created \
             with `lifeboat init --region`): copies are whole, but will not deduplicate with \
             backups taken there",
            a.to
        );
    }
    let req = CopyRequest {
        names: a.names.clone(),
        host: a.this_host.then(|| g.host_name()),
        dry_run: a.dry_run,
    };
    let copier = |ids: &[String]| src.copy_to(&dest, ids);
    let out = copy_backups(&src, &dest, &copier, &|| Ok(()), &req, &note)?;
    if g.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for c in &out.copied {
            println!(
                "{} {} {} ({}): {} part(s) sent, {} there already",
                if out.dry_run { "would copy" } else { "copied" },
                c.service,
                c.backup_id,
                c.time,
                c.parts_sent,
                c.parts_present
            );
        }
        for f in &out.failed {
            eprintln!("lifeboat: backup {} not copied: {}", f.backup_id, f.error);
        }
        println!(
            "{} backup(s) {}, {} already in {}, {} failed; {:.1} MB sent in {:.1}s",
            out.copied.len(),
            if out.dry_run { "to copy" } else { "copied" },
            out.already_there,
            a.to,
            out.failed.len(),
            out.bytes_added as f64 / 1e6,
            out.seconds
        );
    }
    Ok(if out.failed.is_empty() {
        Code::Ok
    } else {
        Code::Error
    })
}
