//! Running a stack restore: level by level, each service once its dependencies are healthy.

use lifeboat_model::PartKind;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use lifeboat_docker::Engine;
use lifeboat_repo::Repository;
use serde::Serialize;

use super::StackPlan;
use crate::restore::{RestoreOutcome, RestoreRequest, restore_container};
use crate::{CoreError, Note};

/// One service's result in a stack restore.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceResult {
    /// The service.
    pub service: String,
    /// It was restored and is ready.
    pub ok: bool,
    /// Why not, when it failed.
    pub error: Option<String>,
    /// How long it took.
    pub seconds: f64,
    /// Its health at the end.
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
    use crate::wait::{Backoff, Poll, poll_until};
    let backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let waited = poll_until(deadline, backoff, || {
        for n in names {
            let found = engine.container(n)?;
            if let Some(c) = &found {
                crate::wait::unless_ended(engine, c)?;
            }
            let ready = match found {
                Some(c) => match &c.state.health {
                    Some(h) => *h == lifeboat_model::Health::Healthy,
                    None => c.state.running,
                },
                None => false,
            };
            if !ready {
                return Ok::<_, CoreError>(Poll::Pending(n.clone()));
            }
        }
        Ok(Poll::Ready(()))
    })?;
    waited.map_err(|n| {
        CoreError::Stack(format!(
            "dependency `{n}` did not become healthy in time; its dependents were not started"
        ))
    })
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
        return vec![ServiceResult::before_any("(networks)", &e)];
    }
    // The project's files, once for the whole stack (never from a drill's sandbox).
    if request.sandbox_network.is_none()
        && let Some((part, info)) = plan.backups.values().find_map(|b| {
            let m = &b.manifest;
            let part = m.parts.iter().find(|p| p.kind == PartKind::Compose)?;
            Some((part, m.compose.as_ref()))
        })
        && let Err(e) = crate::compose::put_back(
            repo,
            part,
            info,
            &request.backup.host_root,
            request.files_to.as_deref(),
            request.force,
            note,
        )
    {
        return vec![ServiceResult::before_any("(compose files)", &e)];
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
                            req.compose_files = false;
                            // Volumes another service of the stack restores: mounted, not
                            // restored again, under the name their owner gave them.
                            req.shared_volumes = plan
                                .shared_volumes
                                .iter()
                                .filter(|(_, s)| s.users.contains(service))
                                .map(|(v, s)| {
                                    let owner_as = rename(&s.owner);
                                    (
                                        v.clone(),
                                        crate::restore::renamed_volume(v, owner_as.as_deref()),
                                    )
                                })
                                .collect();
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

impl ServiceResult {
    /// A step before any service (networks, the project's files) failed: nothing started.
    fn before_any(step: &str, e: &CoreError) -> ServiceResult {
        ServiceResult {
            service: step.into(),
            ok: false,
            error: Some(e.to_string()),
            seconds: 0.0,
            health: None,
            container: String::new(),
        }
    }
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
