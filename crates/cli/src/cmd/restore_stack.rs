//! `restore --project NAME | --all | NAME NAME...`: a whole stack, in dependency order.

use std::time::{Duration, Instant};

use anyhow::bail;
use lifeboat_core::RestoreRequest;
use lifeboat_core::stack::{Selection, StackPlan, plan_stack, restore_stack};
use serde_json::json;

use super::restore::Args;
use crate::context::GlobalArgs;
use crate::exit::Code;
use crate::output::note;

pub fn selection(project: Option<&str>, all: bool, names: &[String]) -> Selection {
    match (project, all) {
        (Some(p), _) => Selection::Project(p.to_string()),
        (None, true) => Selection::All,
        _ => Selection::Names(names.to_vec()),
    }
}

pub fn print_plan(plan: &StackPlan) {
    match &plan.run_id {
        Some(r) => println!("backup run {r} (one consistent moment for every service)"),
        None => println!("no single backup run covers every service"),
    }
    for n in &plan.notes {
        println!("note: {n}");
    }
    for (i, level) in plan.levels.iter().enumerate() {
        println!("step {}:", i + 1);
        for s in level {
            let b = &plan.backups[s];
            let deps = &plan.depends_on[s];
            println!(
                "  {s}  from backup {} ({}){}",
                b.backup_id,
                b.started_at,
                if deps.is_empty() {
                    String::new()
                } else {
                    format!(", after {} is healthy", deps.join(", "))
                }
            );
        }
    }
}

pub fn run(g: &GlobalArgs, a: &Args) -> anyhow::Result<Code> {
    if a.as_name.is_some() {
        bail!(
            "--as restores one container; for a side-by-side copy of a stack use `lifeboat drill`"
        );
    }
    if a.snapshot.is_some() {
        bail!(
            "--snapshot names one backup; for a stack use --at TIME (each service's newest backup then)"
        );
    }
    let at = a.at;
    let engine = g.engine()?;
    let repo = g.open_repo()?;
    let sel = selection(a.project.as_deref(), a.all, &a.names);
    let plan = plan_stack(&engine, &repo, &sel, at)?;
    if a.plan || a.dry_run {
        if g.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({"plan": plan, "dry_run": true}))?
            );
        } else {
            println!("plan: nothing was changed. `lifeboat restore` would restore, in this order:");
            print_plan(&plan);
        }
        return Ok(Code::Ok);
    }
    let req = RestoreRequest {
        force: a.force,
        health_timeout: Duration::from_secs(a.health_timeout),
        // A stack puts the project's files back once, itself.
        compose_files: false,
        files_to: a.files_to.clone(),
        ..RestoreRequest::new(g.backup_request(false))
    };
    let t0 = Instant::now();
    let results = restore_stack(
        &engine,
        &repo,
        &plan,
        &req,
        &|_| None,
        Duration::from_secs(a.timeout),
        &note,
    );
    let seconds = t0.elapsed().as_secs_f64();
    let ok = results.iter().all(|r| r.ok);
    if g.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "ok": ok, "run_id": plan.run_id, "levels": plan.levels, "services": results,
                "seconds": seconds,
            }))?
        );
    } else {
        for r in &results {
            match &r.error {
                None => println!(
                    "restored {} in {:.1}s{}",
                    r.service,
                    r.seconds,
                    r.health
                        .as_ref()
                        .map(|h| format!(", {h}"))
                        .unwrap_or_default()
                ),
                Some(e) => println!("FAILED {}: {e}", r.service),
            }
        }
        println!(
            "stack restore {} in {seconds:.1}s",
            if ok { "complete" } else { "incomplete" }
        );
    }
    Ok(if ok {
        Code::Ok
    } else if results.iter().any(|r| {
        r.error
            .as_deref()
            .is_some_and(|e| e.starts_with("refusing to overwrite"))
    }) {
        Code::Refused
    } else {
        Code::Error
    })
}
