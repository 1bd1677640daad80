//! Restore drills: restore a backup (or a whole stack) into a sandbox that cannot touch
//! production, check that it answers, measure how long that took, and tear it all down.
//!
//! The sandbox: one new internal network (no route out), containers named `<drill>-<name>`,
//! volumes `<drill>-<name>_<volume>`, bind paths `<path>-<drill>-<name>`, no published
//! ports, no restart policy. Inside it each copy answers to its production name and compose
//! service (network aliases), so dependents find their dependencies as they would in
//! production. Nothing is overwritten: a leftover sandbox path stops the drill before it
//! starts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use lifeboat_capture::under_root;
use lifeboat_consistency::{RepoGate, TransientLock};
use lifeboat_docker::Engine;
use lifeboat_model::{Manifest, MountKind, PartKind};
use lifeboat_repo::Repository;
use serde::Serialize;

use crate::backup::BackupRequest;
use crate::restore::{RestoreRequest, renamed_bind, renamed_volume};
use crate::stack::{Selection, StackPlan, plan_stack, restore_stack};
use crate::{CoreError, Note};

/// 8 hex digits that differ between runs (time and process id).
fn short_id() -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (std::time::SystemTime::now(), std::process::id()).hash(&mut h);
    format!("{:08x}", h.finish() as u32)
}

/// What to drill.
#[derive(Debug, Clone)]
pub struct DrillRequest {
    /// Which services (their dependencies come along).
    pub selection: Selection,
    /// Drill the backups as of this time.
    pub at: Option<Timestamp>,
    /// For the whole drill: restores, health and probes.
    pub timeout: Duration,
    /// Host root and state directory, as for backups.
    pub backup: BackupRequest,
}

/// One check of a restored service.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// What was checked.
    pub name: String,
    /// It passed.
    pub ok: bool,
    /// What it printed.
    pub output: String,
}

/// One service of a drill.
#[derive(Debug, Clone, Serialize)]
pub struct DrillService {
    /// The service.
    pub service: String,
    /// Its copy in the sandbox.
    pub sandbox_container: String,
    /// The backup restored.
    pub backup_id: String,
    /// Its manifest snapshot.
    pub snapshot_id: String,
    /// The restore succeeded.
    pub restored: bool,
    /// The checks run on the copy.
    pub probes: Vec<Probe>,
    /// It passed.
    pub ok: bool,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// What a drill found.
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    /// The drill (its sandbox names start with it).
    pub drill_id: String,
    /// It passed.
    pub ok: bool,
    /// From the start of the drill to every service restored, healthy and probed.
    pub recovery_seconds: f64,
    /// When it started (RFC 3339, UTC).
    pub started_at: String,
    /// The backup run drilled, when one was complete.
    pub run_id: Option<String>,
    /// Per service.
    pub services: Vec<DrillService>,
    /// Remarks on the choice of backups.
    pub notes: Vec<String>,
    /// Anything the teardown could not remove (empty when the sandbox left nothing).
    pub teardown_problems: Vec<String>,
}

/// Everything the sandbox creates, to remove afterwards.
#[derive(Debug, Clone)]
struct Sandbox {
    id: String,
    network: String,
    containers: Vec<String>,
    volumes: Vec<String>,
    bind_paths: Vec<PathBuf>,
    /// Committed layers the copies are created from (loaded for the drill, removed after it
    /// unless something else uses them).
    images: Vec<String>,
}

fn sandbox_name(drill: &str, service: &str) -> String {
    format!("{drill}-{service}")
}

impl Sandbox {
    fn new(plan: &StackPlan, host_root: &std::path::Path) -> Sandbox {
        let id = format!("lbdrill-{}", short_id());
        let mut s = Sandbox {
            network: format!("{id}-net"),
            containers: Vec::new(),
            volumes: Vec::new(),
            bind_paths: Vec::new(),
            images: Vec::new(),
            id,
        };
        for (service, b) in &plan.backups {
            let name = sandbox_name(&s.id, service);
            for m in &b.manifest.config.mounts {
                match m.kind {
                    MountKind::Volume => s.volumes.push(renamed_volume(&m.source, Some(&name))),
                    MountKind::Bind => s
                        .bind_paths
                        .push(under_root(host_root, &renamed_bind(&m.source, Some(&name)))),
                    MountKind::Tmpfs => {}
                }
            }
            s.containers.push(name);
            let committed = format!("{}:", lifeboat_capture::LAYER_BY_COMMIT);
            s.images.extend(b.manifest.parts.iter().filter_map(|p| {
                (p.kind == lifeboat_model::PartKind::Layer)
                    .then(|| p.name.strip_prefix(&committed).map(String::from))
                    .flatten()
            }));
        }
        s
    }

    fn teardown(&self, engine: &dyn Engine) -> Vec<String> {
        let mut problems = Vec::new();
        for c in &self.containers {
            if let Ok(Some(_)) = engine.container(c)
                && let Err(e) = engine.remove_container(c)
            {
                problems.push(format!("container {c}: {e}"));
            }
        }
        for v in &self.volumes {
            if let Ok(Some(_)) = engine.volume(v) {
                // Interrupted mid-restore, the restore's writer may still create a file while
                // the engine empties the volume ("directory not empty"): tried again.
                let mut result = engine.remove_volume(v);
                for _ in 0..5 {
                    if result.is_ok() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    result = engine.remove_volume(v);
                }
                if let Err(e) = result {
                    problems.push(format!("volume {v}: {e}"));
                }
            }
        }
        for p in &self.bind_paths {
            let r = match std::fs::symlink_metadata(p) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
                Ok(_) => std::fs::remove_file(p),
                Err(_) => Ok(()),
            };
            if let Err(e) = r {
                problems.push(format!("path {}: {e}", p.display()));
            }
        }
        for image in &self.images {
            // Refused while a container (production restored from it) uses it: then it stays.
            let _ = engine.remove_image(image);
        }
        if let Ok(Some(_)) = engine.network_driver(&self.network)
            && let Err(e) = engine.remove_network(&self.network)
        {
            problems.push(format!("network {}: {e}", self.network));
        }
        problems
    }
}

/// The sandboxes of the drills this process runs now, for [`tear_down_interrupted`].
static RUNNING: std::sync::Mutex<Vec<Sandbox>> = std::sync::Mutex::new(Vec::new());

/// Registers a sandbox as running until dropped.
struct Registered(String);

impl Registered {
    fn new(s: &Sandbox) -> Registered {
        RUNNING
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(s.clone());
        Registered(s.id.clone())
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        RUNNING
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|s| s.id != self.0);
    }
}

/// Tears down the sandbox of every drill this process is running (called when it is
/// interrupted, before it exits), and says what it did.
pub fn tear_down_interrupted(engine: &dyn Engine) -> Vec<String> {
    let running: Vec<Sandbox> = RUNNING.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut done = Vec::new();
    for s in running {
        let problems = s.teardown(engine);
        // The process exits next without unwinding: its lock file goes now.
        let _ = std::fs::remove_file(lifeboat_consistency::ContainerLock::path(
            &drill_lock_dir(),
            &s.id,
        ));
        done.push(if problems.is_empty() {
            format!("removed the sandbox of interrupted drill {}", s.id)
        } else {
            format!("drill {}: could not remove {}", s.id, problems.join("; "))
        });
    }
    done
}

/// Where running drills hold their locks: one place per host (not per state directory), so
/// that no Lifeboat on this host mistakes another one's running drill for a dead one.
fn drill_lock_dir() -> PathBuf {
    PathBuf::from("/run/lifeboat")
}

/// Removes what killed drills left behind: sandbox containers (label `lifeboat.sandbox`)
/// whose drill no longer runs, their volumes and bind paths, and their network. Returns what
/// it did, one line each.
pub fn clean_stale_sandboxes(engine: &dyn Engine, host_root: &std::path::Path) -> Vec<String> {
    let mut done = Vec::new();
    let Ok(names) = engine.container_names() else {
        return done;
    };
    for name in names.iter().filter(|n| n.starts_with("lbdrill-")) {
        let Ok(Some(c)) = engine.container(name) else {
            continue;
        };
        let Some(network) = c
            .config
            .label(lifeboat_model::labels::SANDBOX)
            .map(String::from)
        else {
            continue;
        };
        let drill = network.trim_end_matches("-net");
        // A drill that still runs holds its lock; the lock is released by the kernel when
        // the drill's process dies.
        if TransientLock::acquire(&drill_lock_dir(), drill).is_err() {
            continue;
        }
        if engine.remove_container(name).is_ok() {
            done.push(format!("removed container {name} left by a killed drill"));
        }
        for m in &c.mounts {
            let removed = match m.kind {
                MountKind::Volume if m.name.starts_with("lbdrill-") => {
                    engine.remove_volume(&m.name).is_ok()
                }
                MountKind::Bind if m.name.contains("-lbdrill-") => {
                    std::fs::remove_dir_all(under_root(host_root, &m.name)).is_ok()
                }
                _ => false,
            };
            if removed {
                let kind = format!("{:?}", m.kind).to_lowercase();
                done.push(format!("removed {kind} {}", m.name));
            }
        }
        if engine.remove_network(&network).is_ok() {
            done.push(format!("removed network {network}"));
        }
    }
    // A drill killed before its containers existed leaves volumes and a network only.
    let stale = |name: &str| {
        name.starts_with("lbdrill-")
            && name
                .get(..16)
                .is_some_and(|id| TransientLock::acquire(&drill_lock_dir(), id).is_ok())
    };
    for v in engine.volume_names().unwrap_or_default() {
        if stale(&v) && engine.remove_volume(&v).is_ok() {
            done.push(format!("removed volume {v} left by a killed drill"));
        }
    }
    for n in engine.network_names().unwrap_or_default() {
        if stale(&n) && n.ends_with("-net") && engine.remove_network(&n).is_ok() {
            done.push(format!("removed network {n} left by a killed drill"));
        }
    }
    done
}

/// Runs a drill; `Err` only when it could not start (nothing to drill, a plan error, a
/// leftover sandbox path). A failing restore or probe is a report with `ok: false`.
pub fn run_drill(
    engine: &dyn Engine,
    repo: &dyn Repository,
    req: &DrillRequest,
    note: Note<'_>,
) -> Result<DrillReport, CoreError> {
    let t0 = Instant::now();
    let started_at = lifeboat_model::format_timestamp(Timestamp::now());
    for line in clean_stale_sandboxes(engine, &req.backup.host_root) {
        note(&line);
    }
    // A service rarely answers alone: its dependencies join the drill.
    let selection = match &req.selection {
        Selection::Names(n) => Selection::WithDependencies(n.clone()),
        other => other.clone(),
    };
    let plan = plan_stack(engine, repo, &selection, req.at)?;
    let sandbox = Sandbox::new(&plan, &req.backup.host_root);
    // Held while the drill runs: a sandbox whose lock is free belongs to a killed drill.
    let _alive = TransientLock::acquire(&drill_lock_dir(), &sandbox.id)?;
    // Until its teardown, an interrupted process (Ctrl-C, SIGTERM) tears the sandbox down.
    let _registered = Registered::new(&sandbox);
    if let Some(p) = sandbox.bind_paths.iter().find(|p| p.exists()) {
        return Err(CoreError::Refused {
            what: format!("the drill's sandbox path {} exists", p.display()),
            hint: "remove it (a leftover of an interrupted drill?) and run the drill again".into(),
        });
    }
    // A prune must not delete what the drill is reading.
    let _gate = RepoGate::shared(&req.backup.state_dir, repo.id())?;
    let _repo_lock = repo.lock_run(false)?;
    let labels = BTreeMap::from([(
        lifeboat_model::labels::DRILL.to_string(),
        sandbox.id.clone(),
    )]);
    note(&format!(
        "drill {}: sandbox network {} (internal)",
        sandbox.id, sandbox.network
    ));
    engine.create_internal_network(&sandbox.network, &labels)?;
    let result = drill_in(engine, repo, req, &plan, &sandbox, note);
    let recovery_seconds = t0.elapsed().as_secs_f64();
    note(&format!("drill {}: tearing down the sandbox", sandbox.id));
    let teardown_problems = sandbox.teardown(engine);
    let services = result?;
    Ok(DrillReport {
        drill_id: sandbox.id.clone(),
        ok: services.iter().all(|s| s.ok) && teardown_problems.is_empty(),
        recovery_seconds,
        started_at,
        run_id: plan.run_id.clone(),
        services,
        notes: plan.notes.clone(),
        teardown_problems,
    })
}

fn drill_in(
    engine: &dyn Engine,
    repo: &dyn Repository,
    req: &DrillRequest,
    plan: &StackPlan,
    sandbox: &Sandbox,
    note: Note<'_>,
) -> Result<Vec<DrillService>, CoreError> {
    let restore = RestoreRequest {
        sandbox_network: Some(sandbox.network.clone()),
        health_timeout: req.timeout,
        compose_files: false,
        // The plan chose each snapshot; in a cluster it may be another host's.
        any_host: true,
        ..RestoreRequest::new(req.backup.clone())
    };
    let drill = sandbox.id.clone();
    let rename = move |s: &str| Some(sandbox_name(&drill, s));
    let results = restore_stack(engine, repo, plan, &restore, &rename, req.timeout, note);
    let mut out = Vec::new();
    for r in results {
        let b = &plan.backups[&r.service];
        let probes = if r.ok {
            note(&format!("probing {}", r.container));
            probes(engine, &b.manifest, &r.container, &req.backup.host_root)
        } else {
            Vec::new()
        };
        let ok = r.ok && probes.iter().all(|p| p.ok);
        out.push(DrillService {
            service: r.service.clone(),
            sandbox_container: r.container.clone(),
            backup_id: b.backup_id.clone(),
            snapshot_id: b.snapshot_id.clone(),
            restored: r.ok,
            ok,
            error: r.error.clone().or_else(|| {
                probes
                    .iter()
                    .find(|p| !p.ok)
                    .map(|p| format!("probe {} failed: {}", p.name, p.output))
            }),
            probes,
        });
    }
    Ok(out)
}

/// The probes of a running service itself (the failure watch): the `lifeboat.probe` label's
/// command and, with `sqlite`, an integrity check of every SQLite database in its mounts.
pub fn live_probes(
    engine: &dyn Engine,
    config: &lifeboat_model::ContainerConfig,
    container: &str,
    host_root: &std::path::Path,
    sqlite: bool,
) -> Vec<Probe> {
    let mut out = Vec::new();
    if sqlite {
        out.extend(sqlite_probes(engine, config, host_root, |s, _| {
            s.to_string()
        }));
    }
    out.extend(label_probe(engine, config, container));
    out
}

/// The `lifeboat.probe` label's command, run in `container`, when the label is set.
fn label_probe(
    engine: &dyn Engine,
    config: &lifeboat_model::ContainerConfig,
    container: &str,
) -> Option<Probe> {
    let cmd = config.label(lifeboat_model::labels::PROBE)?;
    let cmd = vec!["sh".into(), "-c".into(), cmd.to_string()];
    Some(exec_probe(
        engine,
        container,
        lifeboat_model::labels::PROBE,
        cmd,
        &[],
    ))
}

fn exec_probe(
    engine: &dyn Engine,
    container: &str,
    name: &str,
    cmd: Vec<String>,
    env: &[String],
) -> Probe {
    let r = engine.exec_with_input(
        container,
        &cmd,
        env,
        Box::new(std::io::empty()),
        Duration::from_secs(60),
    );
    match r {
        Ok(out) => Probe {
            name: name.into(),
            ok: out.exit_code == Some(0),
            output: match out.exit_code {
                Some(_) => out.output.trim().chars().take(500).collect(),
                None => "did not finish within 60 s".into(),
            },
        },
        Err(e) => Probe {
            name: name.into(),
            ok: false,
            output: e.to_string(),
        },
    }
}

/// The checks that say a restored service answers: built in per strategy (a query on
/// PostgreSQL and MariaDB, Redis ping and key count, SQLite integrity check) plus the
/// `lifeboat.probe` label's command.
pub fn probes(
    engine: &dyn Engine,
    m: &Manifest,
    container: &str,
    host_root: &std::path::Path,
) -> Vec<Probe> {
    let mut out = Vec::new();
    let config = &m.config;
    if let Some(s) = crate::dump::strategy(config) {
        out.push(exec_probe(
            engine,
            container,
            &format!("{} query", s.name),
            s.probe.clone(),
            &s.env,
        ));
    }
    if crate::dump::is_redis(config) {
        let cmd = vec![
            "sh".into(),
            "-c".into(),
            "redis-cli ping | grep -qx PONG && redis-cli dbsize".into(),
        ];
        out.push(exec_probe(
            engine,
            container,
            "redis ping and key count",
            cmd,
            &[],
        ));
    }
    if m.parts.iter().any(|p| p.kind == PartKind::Sqlite) {
        out.extend(sqlite_probes(
            engine,
            &m.config,
            host_root,
            |source, kind| match kind {
                MountKind::Volume => renamed_volume(source, Some(container)),
                _ => renamed_bind(source, Some(container)),
            },
        ));
    }
    out.extend(label_probe(engine, config, container));
    out
}

/// Integrity checks of the SQLite databases in the mounts of `config`; `source` names where
/// each mount's data is (the drill's renamed copies, or the service's own).
fn sqlite_probes(
    engine: &dyn Engine,
    config: &lifeboat_model::ContainerConfig,
    host_root: &std::path::Path,
    source: impl Fn(&str, MountKind) -> String,
) -> Vec<Probe> {
    let mut out = Vec::new();
    for mount in &config.mounts {
        let dir = match mount.kind {
            MountKind::Volume => match engine.volume(&source(&mount.source, mount.kind)) {
                Ok(Some(v)) => under_root(host_root, &v.mountpoint),
                _ => continue,
            },
            MountKind::Bind => under_root(host_root, &source(&mount.source, mount.kind)),
            MountKind::Tmpfs => continue,
        };
        for rel in lifeboat_consistency::sqlite::find_databases(&dir) {
            let shown = format!(
                "{}/{}",
                mount.destination.trim_end_matches('/'),
                rel.display()
            );
            let checked = lifeboat_consistency::sqlite::integrity_check(&dir, &rel);
            let (ok, output) = match checked {
                Ok(text) => (text == "ok", text),
                Err(e) => (false, e.message),
            };
            out.push(Probe {
                name: format!("sqlite integrity {shown}"),
                ok,
                output,
            });
        }
    }
    out
}
