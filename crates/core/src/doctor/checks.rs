//! The checks: pure functions from facts to findings, one severity, one line, one fix each.

use lifeboat_model::{ContainerStatus, Health, Mode};
use std::path::Path;

use jiff::Timestamp;
use lifeboat_docker::EngineInfo;
use lifeboat_model::{MountKind, PartKind, SCHEMA_VERSION};

use super::facts::{ContainerFacts, MountFacts, free_bytes, permits};
use super::{DoctorRequest, Finding, Severity};
use crate::catalog::BackupEntry;

fn f(severity: Severity, check: &'static str, message: String, fix: String) -> Finding {
    Finding {
        severity,
        check,
        message,
        fix,
    }
}

const MIB: f64 = 1048576.0;

pub(super) fn engine_findings(info: &EngineInfo) -> Vec<Finding> {
    let mut out = Vec::new();
    let api: Vec<u32> = info
        .api_version
        .split('.')
        .filter_map(|p| p.parse().ok())
        .collect();
    if api.len() == 2 && (api[0], api[1]) < (1, 41) {
        out.push(f(
            Severity::Warning,
            "compatibility.engine_api",
            format!(
                "the engine speaks API {}; Lifeboat is tested with 1.41 and newer",
                info.api_version
            ),
            "upgrade the Docker engine".into(),
        ));
    }
    out
}

pub(super) fn repo_unreadable(why: &str) -> Finding {
    f(
        Severity::Warning,
        "coverage.repository_unavailable",
        format!("the repository could not be read, so backup age was not checked: {why}"),
        "set LIFEBOAT_REPOSITORY and the password, or run `lifeboat init`".into(),
    )
}

/// The repository's storage refused: unreachable, credentials refused, or no bucket.
pub(super) fn storage_refused(what: &'static str, why: &str) -> Finding {
    let (check, fix) = match what {
        "unreachable" => (
            "destination.unreachable",
            "start the object store or fix the endpoint in the location; check the network path",
        ),
        "credentials" => (
            "destination.credentials",
            "set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or *_FILE) to a key allowed on the bucket",
        ),
        _ => (
            "destination.bucket",
            "create the bucket and allow the key on it, then run `lifeboat init`",
        ),
    };
    f(Severity::Error, check, why.to_string(), fix.into())
}

/// A warning when the only repository lives on the host it protects (a local directory, or
/// an object store on this machine): when the host dies, the backups die with it.
pub(super) fn placement_findings(location: &str) -> Vec<Finding> {
    let endpoint_here = location.strip_prefix("s3:").map(|rest| {
        let rest = rest.split_once("://").map(|(_, r)| r).unwrap_or(rest);
        let host = rest.split('/').next().unwrap_or_default();
        let host = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
        matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1")
    });
    let message = match endpoint_here {
        None => format!(
            "the only repository ({location}) is a directory on this host: when the host dies, \
             its backups die with it"
        ),
        Some(true) => format!(
            "the only repository ({location}) is in an object store on this host: when the host \
             dies, its backups die with it"
        ),
        Some(false) => return Vec::new(),
    };
    vec![f(
        Severity::Warning,
        "placement.repository_on_this_host",
        message,
        "keep the repository off this host: an S3 location (s3:https://HOST/BUCKET/PREFIX) on \
         another machine or provider"
            .into(),
    )]
}

pub(super) fn repository_findings(backups: &[BackupEntry], now: Timestamp) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(newer) = backups
        .iter()
        .map(|b| b.manifest.schema_version)
        .max()
        .filter(|v| *v > SCHEMA_VERSION)
    {
        out.push(f(
            Severity::Error,
            "compatibility.schema",
            format!("the repository holds manifests of schema {newer}; this Lifeboat reads up to {SCHEMA_VERSION}"),
            "upgrade Lifeboat before restoring from this repository".into(),
        ));
    }
    if let Some(newest) = backups.iter().map(|b| b.manifest.started_at).max() {
        let ahead = newest.duration_since(now).as_secs();
        if ahead > 300 {
            out.push(f(
                Severity::Error,
                "compatibility.clock",
                format!(
                    "the newest backup is {ahead} s in this host's future: the clock is behind"
                ),
                "fix the host clock (timedatectl / NTP) before backups are pruned by age".into(),
            ));
        }
    }
    out
}

pub(super) fn destination_findings(dir: &Path, estimate: u64) -> Vec<Finding> {
    let mut out = Vec::new();
    let probe = dir.ancestors().find(|p| p.exists()).unwrap_or(dir);
    let writable = tempfile::tempfile_in(probe).is_ok();
    if !writable {
        out.push(f(
            Severity::Error,
            "permissions.destination",
            format!("the repository location {} is not writable", dir.display()),
            "fix its ownership or mount, or choose another --repo".into(),
        ));
    }
    if let Some(free) = free_bytes(dir) {
        let (free_m, need_m) = (free as f64 / MIB, estimate as f64 / MIB);
        if free < estimate {
            out.push(f(
                Severity::Error,
                "permissions.destination_space",
                format!(
                    "{free_m:.0} MiB free at {} but the next backup may need up to {need_m:.0} MiB",
                    dir.display()
                ),
                "free space or move the repository (a full disk fails the backup)".into(),
            ));
        } else if free < estimate.saturating_mul(2) {
            out.push(f(
                Severity::Warning,
                "permissions.destination_space",
                format!(
                    "only {free_m:.0} MiB free at {} for up to {need_m:.0} MiB of data",
                    dir.display()
                ),
                "free space or move the repository before it fills".into(),
            ));
        }
    }
    out
}

pub(super) fn container_findings(
    c: &ContainerFacts,
    all: &[ContainerFacts],
    backups: &[BackupEntry],
    req: &DoctorRequest,
    now: Timestamp,
) -> Vec<Finding> {
    let mut out = resources(c);
    out.extend(lifecycle(c));
    for m in &c.mounts {
        out.extend(mount_findings(c, m));
    }
    if let Some(why) = &c.files_copy_refused {
        out.push(f(
            Severity::Error,
            "consistency.postgres_files",
            format!("lifeboat.strategy=postgres-files cannot copy it: {why}"),
            format!(
                "keep the data directory (with its pg_wal) in one volume or bind mount, or \
                 label {} lifeboat.strategy=postgres to back it up by its dump",
                c.details.name
            ),
        ));
    }
    out.extend(coverage(c, backups, req, now));
    out.extend(restore_readiness(c, all, backups));
    out.sort_by_key(|f| std::cmp::Reverse(f.severity));
    out
}

fn resources(c: &ContainerFacts) -> Vec<Finding> {
    let name = &c.details.name;
    let cfg = &c.details.config;
    let mut out = Vec::new();
    if cfg.memory == 0 {
        out.push(f(Severity::Warning, "resources.no_memory_limit",
            "no memory limit: a spike (its own, or a dump run inside it) can exhaust the host".into(),
            format!("set one, e.g. `docker update --memory 512m --memory-swap 512m {name}` or mem_limit in compose")));
    }
    if cfg.nano_cpus == 0 {
        out.push(f(
            Severity::Info,
            "resources.no_cpu_limit",
            "no CPU limit".into(),
            format!("e.g. `docker update --cpus 1 {name}`"),
        ));
    }
    if let Some(m) = c.memory.filter(|_| cfg.memory > 0) {
        let pct = m.used as f64 * 100.0 / m.limit.max(1) as f64;
        let sev = if pct >= 90.0 {
            Some(Severity::Error)
        } else if pct >= 75.0 {
            Some(Severity::Warning)
        } else {
            None
        };
        if let Some(sev) = sev {
            out.push(f(sev, "resources.memory_headroom",
                format!("uses {:.0} of {:.0} MiB ({pct:.0}%): a backup or dump inside it can get it OOM-killed",
                    m.used as f64 / MIB, m.limit as f64 / MIB),
                format!("raise the limit, e.g. `docker update --memory {:.0}m {name}`", m.limit as f64 / MIB * 1.5)));
        }
    }
    if c.oom_killed {
        out.push(f(
            Severity::Error,
            "resources.oom_killed",
            "it was OOM-killed (State.OOMKilled)".into(),
            format!("raise its memory limit and find the spike (`docker inspect {name}`)"),
        ));
    }
    if c.restart_count >= 3 {
        out.push(f(
            Severity::Warning,
            "resources.restarts",
            format!("it has restarted {} times", c.restart_count),
            format!("find out why: `docker logs {name}`"),
        ));
    }
    out
}

fn lifecycle(c: &ContainerFacts) -> Vec<Finding> {
    let name = &c.details.name;
    let state = &c.details.state;
    let mut out = Vec::new();
    if c.details.config.healthcheck.is_none() {
        out.push(f(
            Severity::Warning,
            "lifecycle.no_healthcheck",
            "no healthcheck: neither a backup nor a restore can tell whether it works".into(),
            "add a HEALTHCHECK (or healthcheck: in compose) that proves the service answers".into(),
        ));
    }
    match (state.status, state.health) {
        (Some(ContainerStatus::Restarting), _) => out.push(f(
            Severity::Error,
            "lifecycle.restarting",
            "it is restarting: its data may be mid-recovery".into(),
            format!("fix it first: `docker logs {name}`"),
        )),
        (Some(ContainerStatus::Dead), _) => out.push(f(
            Severity::Error,
            "lifecycle.dead",
            "it is dead".into(),
            format!("inspect and recreate it: `docker logs {name}`"),
        )),
        (Some(ContainerStatus::Paused), _) => out.push(f(
            Severity::Warning,
            "lifecycle.paused",
            "it is paused".into(),
            format!("`docker unpause {name}` unless that is intended"),
        )),
        (_, Some(Health::Unhealthy)) => out.push(f(
            Severity::Error,
            "lifecycle.unhealthy",
            "its healthcheck fails: a backup now may capture broken state".into(),
            format!("fix it first: `docker inspect --format '{{{{json .State.Health}}}}' {name}`"),
        )),
        _ => {}
    }
    let mode = c.details.config.label(lifeboat_model::labels::MODE);
    if mode.and_then(Mode::from_word) == Some(Mode::Hot) && !state.running {
        out.push(f(
            Severity::Warning,
            "lifecycle.hot_needs_running",
            "mode `hot` asks the running service for a consistent copy, but it is stopped: \
             the backup will copy its files as they are"
                .into(),
            format!(
                "start it (`docker start {name}`) before backups, or label it lifeboat.mode=none"
            ),
        ));
    }
    if let Some(t) = c.details.config.label(lifeboat_model::labels::HOOK_TIMEOUT)
        && t.trim().parse::<u64>().map_or(true, |s| s == 0 || s > 3600)
    {
        out.push(f(
            Severity::Warning,
            "consistency.hook_timeout",
            format!("lifeboat.hook-timeout=`{t}` is not a timeout between 1 and 3600 s"),
            "set lifeboat.hook-timeout to the seconds a hook may take (default 60)".into(),
        ));
    }
    out
}

fn mount_findings(c: &ContainerFacts, m: &MountFacts) -> Vec<Finding> {
    let mut out = Vec::new();
    let what = match m.kind {
        Some(MountKind::Bind) => format!("bind mount {}", m.name),
        _ => format!("volume `{}`", m.name),
    };
    if m.kind == Some(MountKind::Tmpfs) {
        return out;
    }
    if !m.exists {
        out.push(f(
            Severity::Error,
            "permissions.mount_missing",
            format!("{what} (at {}) cannot be read on this host", m.destination),
            "run Lifeboat as root on the Docker host, or set LIFEBOAT_HOST_ROOT".into(),
        ));
        return out;
    }
    if let Some(user) = c.user {
        let dir_ok = permits(
            user,
            (m.uid, m.gid),
            m.mode,
            if m.read_only { 5 } else { 7 },
        );
        if !dir_ok {
            out.push(f(Severity::Error, "permissions.owner",
                format!("{what} is owned by {}:{} mode {:o} but the container runs as {}:{}: it cannot {} it",
                    m.uid, m.gid, m.mode, user.0, user.1, if m.read_only { "read" } else { "write to" }),
                format!("`chown -R {}:{} <data>` (or set the image's user to match); restores keep numeric owners",
                    user.0, user.1)));
        }
        if m.unreadable_count > 0 {
            out.push(f(
                Severity::Warning,
                "permissions.unreadable_files",
                format!(
                    "{} file(s) in {what} are not readable by uid {} (e.g. {})",
                    m.unreadable_count,
                    user.0,
                    m.unreadable.join(", ")
                ),
                format!("`chown`/`chmod` them for uid {}", user.0),
            ));
        }
    }
    if c.details.state.running {
        let mode = c
            .details
            .config
            .label(lifeboat_model::labels::MODE)
            .unwrap_or("auto");
        // A server recognised by its image or command is dumped with its own tool.
        let has_dump = crate::dump::strategy(&c.details.config).is_some();
        // Hot mode (the automatic default) captures SQLite consistently; pause and stop
        // hold everything still. What is left is copied file by file while it changes.
        let exposed: Vec<&String> = match mode {
            "pause" | "stop" => Vec::new(),
            "hot" | "auto" => m
                .databases
                .iter()
                .filter(|d| !d.starts_with("SQLite") && !d.starts_with("Redis (RDB)"))
                .filter(|d| !(has_dump && (d.starts_with("PostgreSQL") || d.starts_with("MySQL"))))
                .collect(),
            _ => m.databases.iter().collect(),
        };
        if !exposed.is_empty() {
            out.push(f(Severity::Error, "consistency.live_database",
                format!("{what} holds a live database ({}) that mode `{mode}` copies file by file: the copy can be torn",
                    exposed.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")),
                format!("set the label lifeboat.mode=stop (or pause) on {}, or back up with --mode stop",
                    c.details.name)));
        }
    }
    out
}

fn coverage(
    c: &ContainerFacts,
    backups: &[BackupEntry],
    req: &DoctorRequest,
    now: Timestamp,
) -> Vec<Finding> {
    let name = &c.details.name;
    let cfg = &c.details.config;
    let mut out = Vec::new();
    let secret_words = [
        "PASSWORD",
        "PASSWD",
        "SECRET",
        "TOKEN",
        "API_KEY",
        "PRIVATE_KEY",
        "CREDENTIAL",
    ];
    let secrets: Vec<&str> = cfg
        .env
        .iter()
        .filter_map(|kv| kv.split_once('=').map(|(k, _)| k))
        .filter(|k| {
            secret_words.iter().any(|w| k.to_uppercase().contains(w)) && !k.ends_with("_FILE")
        })
        .collect();
    if !secrets.is_empty() {
        out.push(f(Severity::Warning, "coverage.secret_in_env",
            format!("secret-looking variables live only in its env: {} (kept encrypted in backups, but nowhere else)",
                secrets.join(", ")),
            "keep them in a secrets store or a file mounted from a volume (VAR_FILE=/run/secrets/...)".into()));
    }
    if !c.layer_configs.is_empty() {
        let shown = c
            .layer_configs
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if c.details.layer.is_some() && lifeboat_capture::layer_wanted(&c.details) {
            out.push(f(
                Severity::Info,
                "coverage.config_in_layer",
                format!(
                    "config files live in the container's writable layer; captured with it: {shown}"
                ),
                "nothing to do (mounting them from a volume keeps them apart from the image)"
                    .into(),
            ));
        } else {
            out.push(f(Severity::Warning, "coverage.config_in_layer",
                format!("config files live in the container's writable layer, which this backup does not capture: {shown}"),
                "mount them from a volume or a bind mount, or drop lifeboat.layer=false".into()));
        }
    }
    if let Some(ex) = cfg.label(lifeboat_model::labels::EXCLUDE) {
        out.push(f(
            Severity::Warning,
            "coverage.excluded",
            format!("mounts excluded from backups by label: {ex}"),
            "make sure they hold nothing needed to restore".into(),
        ));
    }
    match backups
        .iter()
        .filter(|b| b.manifest.container_name == *name)
        .max_by_key(|b| b.manifest.started_at)
    {
        None => out.push(f(
            Severity::Warning,
            "coverage.no_backup",
            "it has never been backed up to this repository".into(),
            format!("`lifeboat backup {name}`"),
        )),
        Some(last) => {
            let age = now.duration_since(last.manifest.started_at).as_secs();
            if age > req.max_age.as_secs() as i64 {
                out.push(f(
                    Severity::Warning,
                    "coverage.stale_backup",
                    format!("its newest backup is {:.1} h old", age as f64 / 3600.0),
                    format!("`lifeboat backup {name}`, and schedule it"),
                ));
            }
            if last.manifest.partial {
                out.push(f(
                    Severity::Warning,
                    "coverage.partial_backup",
                    "its newest backup is partial (some files were unreadable)".into(),
                    format!("see `lifeboat snapshots {name} --json`, fix access, back up again"),
                ));
            }
        }
    }
    out
}

fn restore_readiness(
    c: &ContainerFacts,
    all: &[ContainerFacts],
    backups: &[BackupEntry],
) -> Vec<Finding> {
    let cfg = &c.details.config;
    let mut out = Vec::new();
    let backed_up = |n: &str| backups.iter().any(|b| b.manifest.container_name == n);
    // The same dependencies a stack restore orders by, resolved the same way: a container
    // of that name, else the compose service of that name in the same project.
    let project = c.details.compose.as_ref().map(|p| p.project.as_str());
    let deps: Vec<String> = crate::stack::declared_dependencies(cfg)
        .into_iter()
        .map(|d| {
            if all.iter().any(|o| o.details.name == d) {
                return d;
            }
            all.iter()
                .find(|o| {
                    o.details
                        .compose
                        .as_ref()
                        .is_some_and(|p| Some(p.project.as_str()) == project && p.service == d)
                })
                .map_or(d, |o| o.details.name.clone())
        })
        .collect();
    let missing: Vec<&String> = deps.iter().filter(|d| !backed_up(d)).collect();
    if !missing.is_empty() {
        out.push(f(
            Severity::Warning,
            "restore.dependencies_not_backed_up",
            format!(
                "it depends on {} which have no backup: a restore would start without them",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            format!(
                "back them up too: `lifeboat backup {}`",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        ));
    }
    let last = backups
        .iter()
        .filter(|b| b.manifest.container_name == c.details.name)
        .max_by_key(|b| b.manifest.started_at);
    let image_saved =
        last.is_some_and(|b| b.manifest.parts.iter().any(|p| p.kind == PartKind::Image));
    if cfg.repo_digests.is_empty() && !image_saved {
        out.push(f(
            Severity::Warning,
            "restore.image_only_here",
            format!(
                "image {} exists only on this host (no registry digest) and is not in a backup",
                cfg.image
            ),
            format!("`lifeboat backup {} --with-image`", c.details.name),
        ));
    }
    out
}
