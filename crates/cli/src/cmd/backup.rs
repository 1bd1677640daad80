//! `lifeboat backup NAME... | --all | --project P`: one backup per container, one run id for
//! several. Translates flags into a `BackupRequest`; never reads data or talks to the engine
//! itself (that is `lifeboat-core`).

use anyhow::bail;
use lifeboat_consistency::Mode;
use lifeboat_core::{UnhealthyPolicy, backup_container};
use serde_json::json;

use crate::context::GlobalArgs;
use crate::exit::{Code, code_of};
use crate::output::{human_bytes, note};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Containers to back up
    pub names: Vec<String>,
    /// Back up every container (except those labelled lifeboat.enable=false)
    #[arg(long, conflicts_with_all = ["names", "project"])]
    pub all: bool,
    /// Back up every container of this compose project, in one run (one run id, so the
    /// stack can be restored from one moment)
    #[arg(long, conflicts_with = "names")]
    pub project: Option<String>,
    /// Also store the image (`docker save`), to restore on a host without a registry
    #[arg(long)]
    pub with_image: bool,
    /// How to get a consistent copy: hot (SQLite online backup while it runs), pause
    /// (freeze its processes), stop (cold backup, started again after) or none (plain copy).
    /// Overrides the lifeboat.mode label; the default is hot when SQLite databases are
    /// found, else none.
    #[arg(long, value_parser = mode_arg)]
    pub mode: Option<Mode>,
    /// What to do with an unhealthy, restarting or dead container: skip it (and fail), wait
    /// for it (--wait-healthy seconds), or force the backup anyway
    #[arg(long, default_value = "skip", value_parser = ["skip", "wait", "force"])]
    pub unhealthy: String,
    /// With --unhealthy=wait: how long to wait
    #[arg(long, default_value_t = 60)]
    pub wait_healthy: u64,
    /// Run at normal CPU and I/O priority, unpaced (by default a backup runs at nice 10 and
    /// the lowest best-effort I/O priority, and a hot dump reads in short bursts while other
    /// work keeps the host's CPUs busy, so the services it protects come first)
    #[arg(long)]
    pub normal_priority: bool,
    /// Read and write only when the disk is otherwise idle (the smallest stall for the
    /// service; a backup on a disk that is never idle may not finish)
    #[arg(long, conflicts_with = "normal_priority")]
    pub idle_io: bool,
}

pub fn run(g: &GlobalArgs, a: &Args) -> anyhow::Result<Code> {
    if a.names.is_empty() && !a.all && a.project.is_none() {
        bail!("name the containers to back up, or pass --project NAME or --all");
    }
    let engine = g.engine()?;
    if g.from.is_some() {
        anyhow::bail!(
            "backups go to the primary repository; copy them to a region with `lifeboat copy \
             --to REGION`"
        );
    }
    let repo = g.open_repo()?;
    let names = if a.all || a.project.is_some() {
        lifeboat_core::containers_in_scope(&engine, a.project.as_deref())?
    } else {
        a.names.clone()
    };
    if let Some(p) = &a.project
        && names.is_empty()
    {
        bail!(
            "no container belongs to compose project `{p}` (label com.docker.compose.project); \
             list projects with `docker ps -a --format '{{{{.Label \"com.docker.compose.project\"}}}}'`"
        );
    }
    let mut req = g.backup_request(a.with_image);
    req.priority = match (a.normal_priority, a.idle_io) {
        (true, _) => lifeboat_core::Priority::Normal,
        (_, true) => lifeboat_core::Priority::IdleIo,
        _ => lifeboat_core::Priority::Lowered,
    };
    if names.len() > 1 || a.project.is_some() {
        req.run_id = Some(lifeboat_model::new_run_id(
            jiff::Timestamp::now(),
            &req.hostname,
        ));
        // A volume several of the run's containers mount is read and stored once.
        req.run_parts = Some(Default::default());
    }
    req.mode = a.mode;
    req.unhealthy = match a.unhealthy.as_str() {
        "force" => UnhealthyPolicy::Force,
        "wait" => UnhealthyPolicy::Wait(std::time::Duration::from_secs(a.wait_healthy)),
        _ => UnhealthyPolicy::Skip,
    };
    let mut worst = Code::Ok;
    let mut results = Vec::new();
    for name in &names {
        let t0 = std::time::Instant::now();
        match backup_container(&engine, &repo, name, &req, &note) {
            Ok(out) => {
                let m = &out.manifest;
                let added: u64 = m.parts.iter().map(|p| p.added_bytes).sum();
                if m.partial {
                    worst = worst.max(Code::Partial);
                    for p in &m.problems {
                        eprintln!("  unreadable: {p}");
                    }
                }
                if !g.json {
                    println!(
                        "{name}: backup {} (snapshot {}) {} read, {} new, {:.1}s{}",
                        m.backup_id,
                        &out.manifest_snapshot[..8],
                        human_bytes(m.total_bytes()),
                        human_bytes(added),
                        t0.elapsed().as_secs_f64(),
                        if m.partial {
                            " [PARTIAL: some files could not be read]"
                        } else {
                            ""
                        }
                    );
                }
                results.push(json!({
                    "container": name, "ok": true, "partial": m.partial,
                    "snapshot": out.manifest_snapshot, "backup_id": m.backup_id,
                    "bytes": m.total_bytes(), "added_bytes": added, "parts": m.parts,
                    "skipped": out.skipped, "problems": m.problems,
                    "seconds": t0.elapsed().as_secs_f64(),
                }));
            }
            Err(e) => {
                let e = anyhow::Error::from(e);
                let code = code_of(&e);
                worst = worst.max(code);
                let text = lifeboat_docker::secrets::redact(&format!("{e:#}"));
                eprintln!("lifeboat: error: {name}: {text}");
                results.push(json!({"container": name, "ok": false, "error": text, "exit_code": code.value()}));
            }
        }
    }
    if g.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"run_id": req.run_id, "backups": results}))?
        );
    }
    Ok(worst)
}

/// `--mode`: one of the consistency modes (a bad one is a usage error, exit 2).
fn mode_arg(text: &str) -> Result<Mode, String> {
    Mode::parse(text).map_err(|e| e.to_string())
}
