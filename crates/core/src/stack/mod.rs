//! Whole stacks: which backup of each service to restore (one consistent run when there is
//! one), in which order (the dependency graph from compose `depends_on` and the
//! `lifeboat.depends-on` label), and restoring it level by level, independent services in
//! parallel, each only once its dependencies are healthy.

mod graph;
mod run;

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use lifeboat_docker::Engine;
use lifeboat_model::Manifest;
use lifeboat_repo::Repository;
use serde::Serialize;

use crate::CoreError;
use crate::catalog::{BackupEntry, list_backups};

pub use graph::{
    GraphError, declared_dependencies, levels, manifest_dependencies, with_dependencies,
};
pub use run::{ServiceResult, restore_stack, wait_ready};

/// Which services a stack operation covers.
#[derive(Debug, Clone)]
pub enum Selection {
    /// Every container of a compose project.
    Project(String),
    /// These containers.
    Names(Vec<String>),
    /// These containers and, transitively, what they depend on (drills: a service rarely
    /// answers alone).
    WithDependencies(Vec<String>),
    /// Every container with a backup.
    All,
}

/// The validated plan of a stack restore.
#[derive(Debug, Clone, Serialize)]
pub struct StackPlan {
    /// Services to restore, level by level: a level only needs earlier ones.
    pub levels: Vec<Vec<String>>,
    /// The backup each service comes from.
    pub backups: BTreeMap<String, StackBackup>,
    /// Dependencies of each service (container names).
    pub depends_on: BTreeMap<String, Vec<String>>,
    /// Dependencies outside the stack, already running on this host, per service.
    pub external: BTreeMap<String, Vec<String>>,
    /// Named volumes several services mount, by volume name: restored once, by their owner.
    pub shared_volumes: BTreeMap<String, SharedVolume>,
    /// The run every backup belongs to, when a complete run was found.
    pub run_id: Option<String>,
    /// Remarks on the choice of backups and the order.
    pub notes: Vec<String>,
}

/// A named volume several services of a stack mount.
#[derive(Debug, Clone, Serialize)]
pub struct SharedVolume {
    /// The service whose restore restores it.
    pub owner: String,
    /// The other services that mount it (restored after the owner).
    pub users: Vec<String>,
}

/// The backup a stack restores a service from.
#[derive(Debug, Clone, Serialize)]
pub struct StackBackup {
    /// Its manifest snapshot.
    pub snapshot_id: String,
    /// Its backup id.
    pub backup_id: String,
    /// When it was taken (RFC 3339, UTC).
    pub started_at: String,
    /// The run it belongs to.
    pub run_id: Option<String>,
    /// Its manifest.
    #[serde(skip)]
    pub manifest: Manifest,
}

/// The backup of each service, the run they all belong to (if one), and notes.
pub type Chosen = (BTreeMap<String, BackupEntry>, Option<String>, Vec<String>);

/// Backups to restore, one per service: from the newest complete run at or before `at`
/// when there is one, else each service's newest backup at or before `at`.
pub fn choose_backups(
    all: Vec<BackupEntry>,
    selection: &Selection,
    at: Option<Timestamp>,
) -> Result<Chosen, CoreError> {
    let mut notes = Vec::new();
    let wanted = |m: &Manifest| match selection {
        Selection::Project(p) => m.compose.as_ref().is_some_and(|c| &c.project == p),
        Selection::Names(n) | Selection::WithDependencies(n) => n.contains(&m.container_name),
        Selection::All => true,
    };
    let candidates: Vec<BackupEntry> = all
        .into_iter()
        .filter(|b| wanted(&b.manifest) && at.is_none_or(|at| b.manifest.started_at <= at))
        .collect();
    let services: BTreeSet<String> = match selection {
        Selection::Names(n) | Selection::WithDependencies(n) => n.iter().cloned().collect(),
        _ => candidates
            .iter()
            .map(|b| b.manifest.container_name.clone())
            .collect(),
    };
    if services.is_empty() {
        return Err(CoreError::NoStackBackup {
            what: match selection {
                Selection::Project(p) => format!("compose project `{p}`"),
                _ => "any container".into(),
            },
            detail: match at {
                Some(at) => format!("was taken at or before {at}"),
                None => "exists yet".into(),
            },
        });
    }
    // Runs that cover every service, newest first.
    let mut runs: BTreeMap<String, BTreeMap<String, BackupEntry>> = BTreeMap::new();
    for b in &candidates {
        if let Some(run) = &b.manifest.run_id {
            let e = runs.entry(run.clone()).or_default();
            let name = b.manifest.container_name.clone();
            if e.get(&name)
                .is_none_or(|o| o.manifest.started_at < b.manifest.started_at)
            {
                e.insert(name, b.clone());
            }
        }
    }
    let complete = runs
        .into_iter()
        .filter(|(_, m)| services.iter().all(|s| m.contains_key(s)))
        .max_by_key(|(_, m)| m.values().map(|b| b.manifest.started_at).max());
    if let Some((run, members)) = complete {
        let chosen = members
            .into_iter()
            .filter(|(n, _)| services.contains(n))
            .collect();
        return Ok((chosen, Some(run), notes));
    }
    let mut chosen = BTreeMap::new();
    for s in &services {
        let newest = candidates
            .iter()
            .filter(|b| &b.manifest.container_name == s)
            .max_by_key(|b| b.manifest.started_at)
            .cloned()
            .ok_or_else(|| CoreError::NoBackup {
                name: s.clone(),
                detail: match at {
                    Some(at) => format!("was taken at or before {at}"),
                    None => "exists yet".into(),
                },
            })?;
        chosen.insert(s.clone(), newest);
    }
    if services.len() > 1 {
        notes.push(
            "no single backup run covers every service: each comes from its own newest backup \
             (back up with --project to record one run)"
                .into(),
        );
    }
    Ok((chosen, None, notes))
}

/// Builds the plan: backups, dependency edges resolved to container names, levels.
pub fn plan_stack(
    engine: &dyn Engine,
    repo: &dyn Repository,
    selection: &Selection,
    at: Option<Timestamp>,
) -> Result<StackPlan, CoreError> {
    // Safety backups are the states a forced restore replaced: never chosen for a stack.
    let all: Vec<BackupEntry> = list_backups(repo, None)?
        .into_iter()
        .filter(|b| !b.safety)
        .collect();
    let expanded;
    let selection = match selection {
        Selection::WithDependencies(names) => {
            expanded = Selection::Names(with_dependencies(&all, names));
            &expanded
        }
        other => other,
    };
    let (chosen, run_id, mut notes) = choose_backups(all, selection, at)?;
    // A dependency may name a compose service or a container.
    let by_service: BTreeMap<String, String> = chosen
        .iter()
        .filter_map(|(n, b)| {
            b.manifest
                .compose
                .as_ref()
                .map(|c| (c.service.clone(), n.clone()))
        })
        .collect();
    let mut depends_on = BTreeMap::new();
    let mut external = BTreeMap::new();
    for (name, b) in &chosen {
        let mut inside = Vec::new();
        let mut outside = Vec::new();
        for d in manifest_dependencies(&b.manifest) {
            let resolved = if chosen.contains_key(&d) {
                Some(d.clone())
            } else {
                by_service.get(&d).cloned()
            };
            match resolved {
                Some(r) if &r != name => inside.push(r),
                Some(_) => {}
                None => {
                    let running = engine.container(&d)?.is_some_and(|c| c.state.running);
                    if !running {
                        return Err(CoreError::Stack(
                            GraphError::Missing {
                                service: name.clone(),
                                dependency: d,
                            }
                            .to_string(),
                        ));
                    }
                    notes.push(format!("`{name}` depends on `{d}`, already running here"));
                    outside.push(d);
                }
            }
        }
        depends_on.insert(name.clone(), inside);
        external.insert(name.clone(), outside);
    }
    let first = levels(&depends_on).map_err(|e| CoreError::Stack(e.to_string()))?;
    // A named volume mounted by several services is restored once, by the first of them;
    // the others come after it and mount what it restored.
    let shared = shared_volumes(&chosen, &first);
    for (vol, (owner, users)) in &shared {
        for u in users {
            let d = depends_on.entry(u.clone()).or_default();
            if !d.contains(owner) {
                d.push(owner.clone());
                notes.push(format!(
                    "`{u}` mounts volume `{vol}` with `{owner}`: restored once, by `{owner}`"
                ));
            }
        }
    }
    let levels = levels(&depends_on).map_err(|e| CoreError::Stack(e.to_string()))?;
    let backups = chosen
        .into_iter()
        .map(|(n, b)| {
            let sb = StackBackup {
                snapshot_id: b.snapshot_id.clone(),
                backup_id: b.manifest.backup_id.0.clone(),
                started_at: lifeboat_model::format_timestamp(b.manifest.started_at),
                run_id: b.manifest.run_id.clone(),
                manifest: b.manifest,
            };
            (n, sb)
        })
        .collect();
    Ok(StackPlan {
        levels,
        backups,
        depends_on,
        external,
        shared_volumes: shared
            .into_iter()
            .map(|(v, (owner, users))| (v, SharedVolume { owner, users }))
            .collect(),
        run_id,
        notes,
    })
}

/// Named volumes mounted by more than one chosen service: each with the service that
/// restores it (the earliest in `levels`, then by name) and the others.
fn shared_volumes(
    chosen: &BTreeMap<String, BackupEntry>,
    levels: &[Vec<String>],
) -> BTreeMap<String, (String, Vec<String>)> {
    let order: Vec<&String> = levels.iter().flatten().collect();
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for service in &order {
        for m in &chosen[service.as_str()].manifest.config.mounts {
            if m.kind == lifeboat_model::MountKind::Volume {
                users
                    .entry(m.source.clone())
                    .or_default()
                    .push((*service).clone());
            }
        }
    }
    users
        .into_iter()
        .filter(|(_, u)| u.len() > 1)
        .map(|(v, mut u)| {
            let owner = u.remove(0);
            (v, (owner, u))
        })
        .collect()
}
