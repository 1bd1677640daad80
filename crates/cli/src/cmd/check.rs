//! `lifeboat check [--read-data]`: the repository's structure (and every byte), plus the
//! backups whose manifest cannot be read. Reports; never repairs or deletes anything.

use lifeboat_repo::Repository;
use serde_json::json;

use crate::context::GlobalArgs;
use crate::exit::Code;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Also read and verify every pack (slow: reads the whole repository)
    #[arg(long)]
    pub read_data: bool,
}

pub fn run(g: &GlobalArgs, a: &Args) -> anyhow::Result<Code> {
    let repo = g.open_repo()?;
    let mut report = repo.check(a.read_data)?;
    // Backups whose manifest cannot be read are skipped by every listing; name them here.
    let (_, unreadable) = lifeboat_core::scan_backups(&repo, None, None)?;
    for u in unreadable {
        let line = format!(
            "backup with manifest snapshot {} ({}) cannot be read: {}",
            u.snapshot_id,
            lifeboat_model::format_timestamp(u.time),
            u.reason
        );
        if u.newer_schema {
            report.warnings.push(line);
        } else {
            report.errors.push(line);
        }
    }
    let ok = report.errors.is_empty();
    if g.json {
        println!(
            "{}",
            json!({"ok": ok, "read_data": a.read_data, "errors": report.errors, "warnings": report.warnings})
        );
    } else {
        for w in &report.warnings {
            println!("warning: {w}");
        }
        for e in &report.errors {
            println!("error: {e}");
        }
        if ok {
            println!(
                "no errors found{}",
                if a.read_data { " (all data read)" } else { "" }
            );
        } else {
            println!(
                "{} error(s) found: the repository is damaged",
                report.errors.len()
            );
        }
    }
    Ok(if ok { Code::Ok } else { Code::Damaged })
}
