//! Whole stacks: which backup of each service to restore (one consistent run when there is
//! one), in which order (the dependency graph from compose `depends_on` and the
//! `lifeboat.depends-on` label), and restoring it level by level, independent services in
//! parallel, each only once its dependencies are healthy.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use lifeboat_docker::Engine;
use lifeboat_model::Manifest;
use lifeboat_repo::Repository;
use serde::Serialize;

use crate::catalog::{BackupEntry, list_backups};
use crate::restore::{RestoreOutcome, RestoreRequest, restore_container};
use crate::{CoreError, Note};

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
    /// The run every backup belongs to, when a complete run was found.
    pub run_id: Option<String>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StackBackup {
    pub snapshot_id: String,
    pub backup_id: String,
    pub started_at: String,
    pub run_id: Option<String>,
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

/// What `m` depends on: compose `depends_on` (service names), legacy links (container
/// names) and `lifeboat.depends-on` (container or service names, comma separated).
pub fn declared_dependencies(m: &Manifest) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(v) = m.config.label("com.docker.compose.depends_on") {
        // "db:service_healthy:false,cache:service_started:true"
        out.extend(
            v.split(',')
                .filter_map(|d| d.split(':').next())
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(String::from),
        );
    }
    out.extend(
        m.config
            .links
            .iter()
            .filter_map(|l| l.split(':').next())
            .map(String::from),
    );
    if let Some(v) = m.config.label("lifeboat.depends-on") {
        out.extend(
            v.split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(String::from),
        );
    }
    out.sort();
    out.dedup();
    out
}

/// `names` plus everything they depend on, transitively, as far as backups of it exist
/// (dependencies are looked up by container name, then by compose service in the same
/// project).
pub fn with_dependencies(all: &[BackupEntry], names: &[String]) -> Vec<String> {
    let newest = |name: &str| {
        all.iter()
            .filter(|b| b.manifest.container_name == name)
            .max_by_key(|b| b.manifest.started_at)
    };
    let mut out: Vec<String> = names.to_vec();
    let mut i = 0;
    while i < out.len() {
        if let Some(b) = newest(&out[i]) {
            let project = b.manifest.compose.as_ref().map(|c| c.project.clone());
            for d in declared_dependencies(&b.manifest) {
                let found = if newest(&d).is_some() {
                    Some(d)
                } else {
                    all.iter()
                        .find(|o| {
                            o.manifest.compose.as_ref().is_some_and(|c| {
                                c.service == d && Some(&c.project) == project.as_ref()
                            })
                        })
                        .map(|o| o.manifest.container_name.clone())
                };
                if let Some(f) = found
                    && !out.contains(&f)
                {
                    out.push(f);
                }
            }
        }
        i += 1;
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphError {
    Cycle(Vec<String>),
    Missing { service: String, dependency: String },
}

impl std::fmt::Display for GraphError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GraphError::Cycle(c) => write!(
                f,
                "dependency cycle: {} (fix the depends_on / lifeboat.depends-on labels)",
                c.join(" -> ")
            ),
            GraphError::Missing {
                service,
                dependency,
            } => write!(
                f,
                "`{service}` depends on `{dependency}`, which is neither in the restore nor \
                 running here: add it to the restore (e.g. --project), restore it first, or \
                 remove the dependency label"
            ),
        }
    }
}

/// Orders `deps` (service → its dependencies, all inside the map) into levels; a level's
/// services depend only on earlier levels. Names a cycle if there is one.
pub fn levels(deps: &BTreeMap<String, Vec<String>>) -> Result<Vec<Vec<String>>, GraphError> {
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::new();
    while done.len() < deps.len() {
        let level: Vec<String> = deps
            .iter()
            .filter(|(s, d)| {
                !done.contains(s.as_str()) && d.iter().all(|x| done.contains(x.as_str()))
            })
            .map(|(s, _)| s.clone())
            .collect();
        if level.is_empty() {
            return Err(GraphError::Cycle(find_cycle(deps, &done)));
        }
        for s in &level {
            done.insert(deps.get_key_value(s).expect("listed").0.as_str());
        }
        out.push(level);
    }
    Ok(out)
}

fn find_cycle(deps: &BTreeMap<String, Vec<String>>, done: &BTreeSet<&str>) -> Vec<String> {
    // Every remaining node has an unfinished dependency: walk them until one repeats.
    let mut path: Vec<String> = Vec::new();
    let mut at = deps
        .keys()
        .find(|k| !done.contains(k.as_str()))
        .cloned()
        .unwrap_or_default();
    loop {
        if let Some(i) = path.iter().position(|p| *p == at) {
            let mut cycle = path[i..].to_vec();
            cycle.push(at);
            return cycle;
        }
        path.push(at.clone());
        at = deps[&at]
            .iter()
            .find(|d| !done.contains(d.as_str()))
            .cloned()
            .unwrap_or_default();
    }
}

/// Builds the plan: backups, dependency edges resolved to container names, levels.
pub fn plan_stack(
    engine: &dyn Engine,
    repo: &dyn Repository,
    selection: &Selection,
    at: Option<Timestamp>,
) -> Result<StackPlan, CoreError> {
    let all = list_backups(repo, None)?;
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
        for d in declared_dependencies(&b.manifest) {
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
        run_id,
        notes,
    })
}

/// One service's result in a stack restore.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceResult {
    pub service: String,
    pub ok: bool,
    pub error: Option<String>,
    pub seconds: f64,
    pub health: Option<String>,
    /// The container it was restored as (differs with a name prefix).
    pub container: String,
}

/// Waits for `names` to be healthy (or running, without a healthcheck), with exponential
/// backoff, until `deadline`.
pub fn wait_ready(
    engine: &dyn Engine,
    names: &[String],
    deadline: Instant,
) -> Result<(), CoreError> {
    let mut delay = Duration::from_millis(200);
    loop {
        let mut waiting = None;
        for n in names {
            let ready = match engine.container(n)? {
                Some(c) => match &c.state.health {
                    Some(h) => h == "healthy",
                    None => c.state.running,
                },
                None => false,
            };
            if !ready {
                waiting = Some(n.clone());
                break;
            }
        }
        let Some(n) = waiting else { return Ok(()) };
        if Instant::now() >= deadline {
            return Err(CoreError::Stack(format!(
                "dependency `{n}` did not become healthy in time; its dependents were not started"
            )));
        }
        std::thread::sleep(delay.min(deadline.saturating_duration_since(Instant::now())));
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Restores the stack level by level. `request` gives the options of each service's
/// restore (its `snapshot` is set per service; `rename` maps a service to the container name
/// to restore it as). Stops at the first failing level: dependents never start on a broken
/// dependency.
pub fn restore_stack(
    engine: &dyn Engine,
    repo: &dyn Repository,
    plan: &StackPlan,
    request: &RestoreRequest,
    rename: &(dyn Fn(&str) -> Option<String> + Sync),
    overall: Duration,
    note: Note<'_>,
) -> Vec<ServiceResult> {
    let deadline = Instant::now() + overall;
    let target = |s: &str| rename(s).unwrap_or_else(|| s.to_string());
    let mut results = Vec::new();
    if request.sandbox_network.is_none()
        && let Err(e) = ensure_networks(engine, plan, note)
    {
        return vec![ServiceResult {
            service: "(networks)".into(),
            ok: false,
            error: Some(e.to_string()),
            seconds: 0.0,
            health: None,
            container: String::new(),
        }];
    }
    for level in &plan.levels {
        // Workers send their progress lines here; this thread prints them (`note` is not
        // thread-safe).
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let level_results: Vec<ServiceResult> = std::thread::scope(|scope| {
            let handles: Vec<_> = level
                .iter()
                .map(|service| {
                    let tx = tx.clone();
                    scope.spawn(move || {
                        let note = |line: &str| {
                            let _ = tx.send(format!("{service}: {line}"));
                        };
                        let t0 = Instant::now();
                        let deps: Vec<String> = plan.depends_on[service]
                            .iter()
                            .map(|d| target(d))
                            .chain(plan.external[service].iter().cloned())
                            .collect();
                        let r = wait_ready(engine, &deps, deadline).and_then(|()| {
                            let mut req = request.clone();
                            req.snapshot = Some(plan.backups[service].snapshot_id.clone());
                            req.at = None;
                            req.as_name = rename(service);
                            req.health_timeout = deadline
                                .saturating_duration_since(Instant::now())
                                .max(Duration::from_secs(1));
                            restore_container(engine, repo, service, &req, &note)
                        });
                        outcome(service, &target(service), r, t0)
                    })
                })
                .collect();
            drop(tx);
            for line in rx {
                note(&line);
            }
            handles
                .into_iter()
                .map(|h| h.join().expect("restore thread"))
                .collect()
        });
        let failed = level_results.iter().any(|r| !r.ok);
        results.extend(level_results);
        if failed {
            let skipped: Vec<&String> = plan
                .levels
                .iter()
                .flatten()
                .filter(|s| !results.iter().any(|r| &r.service == *s))
                .collect();
            for s in skipped {
                results.push(ServiceResult {
                    service: s.clone(),
                    ok: false,
                    error: Some("not restored: a service it may depend on failed".into()),
                    seconds: 0.0,
                    health: None,
                    container: target(s),
                });
            }
            break;
        }
    }
    results
}

/// Creates the stack's missing user networks once, before services restore in parallel (two
/// restores creating the same network at once could make two networks of one name).
fn ensure_networks(engine: &dyn Engine, plan: &StackPlan, note: Note<'_>) -> Result<(), CoreError> {
    let mut seen = BTreeSet::new();
    for b in plan.backups.values() {
        for net in &b.manifest.config.networks {
            if crate::restore::is_builtin_network(&net.name) || !seen.insert(net.name.clone()) {
                continue;
            }
            if engine.network_driver(&net.name)?.is_none() {
                note(&format!("creating network {}", net.name));
                engine.create_network(&net.name, &net.driver)?;
            }
        }
    }
    Ok(())
}

fn outcome(
    service: &str,
    container: &str,
    r: Result<RestoreOutcome, CoreError>,
    t0: Instant,
) -> ServiceResult {
    match r {
        Ok(o) => ServiceResult {
            service: service.to_string(),
            ok: true,
            error: None,
            seconds: t0.elapsed().as_secs_f64(),
            health: o.health,
            container: container.to_string(),
        },
        Err(e) => ServiceResult {
            service: service.to_string(),
            ok: false,
            error: Some(e.to_string()),
            seconds: t0.elapsed().as_secs_f64(),
            health: None,
            container: container.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(s, d)| (s.to_string(), d.iter().map(|x| x.to_string()).collect()))
            .collect()
    }

    #[test]
    fn a_three_tier_stack_restores_database_first_and_independent_services_together() {
        let g = graph(&[
            ("web", &["agent"]),
            ("agent", &["db"]),
            ("db", &[]),
            ("cache", &[]),
        ]);
        assert_eq!(
            levels(&g).unwrap(),
            vec![
                vec!["cache".to_string(), "db".into()],
                vec!["agent".into()],
                vec!["web".into()]
            ]
        );
    }

    #[test]
    fn a_cycle_is_named_with_its_members() {
        let g = graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"]), ("d", &[])]);
        match levels(&g).unwrap_err() {
            GraphError::Cycle(c) => {
                assert_eq!(c.first(), c.last());
                assert_eq!(c.len(), 4, "{c:?}");
                let text = GraphError::Cycle(c).to_string();
                assert!(text.contains("a -> b -> c -> a"), "{text}");
            }
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn compose_and_lifeboat_dependency_labels_are_both_read() {
        let mut m: Manifest = serde_json::from_value(serde_json::json!({
            "schema_version": 2, "lifeboat_version": "0", "backup_id": "b",
            "started_at": "2026-11-23T00:00:00.000000000Z",
            "finished_at": "2026-11-23T00:00:00.000000000Z", "host": "h",
            "engine_version": "", "engine_api_version": "", "container_name": "agent",
            "container_id": "x", "config": {"image": "i"}, "config_sha256": "", "parts": []
        }))
        .unwrap();
        m.config.labels.insert(
            "com.docker.compose.depends_on".into(),
            "db:service_healthy:false,queue:service_started:true".into(),
        );
        m.config
            .labels
            .insert("lifeboat.depends-on".into(), "auth, db".into());
        assert_eq!(declared_dependencies(&m), ["auth", "db", "queue"]);
    }
}
