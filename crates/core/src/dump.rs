//! Hot mode for database servers: their own dump tool run inside the container, streamed into
//! the repository; at restore, fed back once the restored server accepts connections. The
//! server's data directory is left out of the file copy (a live copy of it would be torn); the
//! restored container initialises a fresh one and the dump fills it.

use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lifeboat_capture::{CapturePlan, PlannedPart};
use lifeboat_consistency::dumps::{DumpStrategy, TailReader, complete, detect};
use lifeboat_docker::{ContainerDetails, Engine, ExecStream};
use lifeboat_model::{ContainerConfig, Part, PartKind, Strategy};
use lifeboat_repo::{PartReport, Repository, StreamBackup, StreamSource};

use crate::wait::{Backoff, Poll, poll_until};
use crate::{CoreError, Note};

/// The `lifeboat.strategy` label, parsed (no label means [`Strategy::Auto`]).
pub(crate) fn strategy_label(config: &ContainerConfig) -> Result<Strategy, CoreError> {
    let label = config
        .label(lifeboat_model::labels::STRATEGY)
        .unwrap_or("auto");
    Strategy::from_word(label).ok_or_else(|| {
        CoreError::Hot(format!(
            "unknown label lifeboat.strategy=`{}`: use one of {}",
            label.trim(),
            Strategy::words()
        ))
    })
}

/// The dump strategy of a container: forced by `lifeboat.strategy`, else detected from its
/// image and command.
pub(crate) fn strategy(config: &ContainerConfig) -> Option<DumpStrategy> {
    let cmd = config.cmd.as_deref().unwrap_or_default();
    let entrypoint = config.entrypoint.as_deref().unwrap_or_default();
    let env = credentials(config);
    match strategy_label(config).unwrap_or(Strategy::Auto) {
        Strategy::Auto => detect(&config.image, cmd, entrypoint, &env),
        forced @ (Strategy::Postgres | Strategy::Mariadb | Strategy::Mysql) => {
            detect(forced.as_str(), &[], &[], &env)
        }
        Strategy::PostgresFiles => detect(Strategy::Postgres.as_str(), &[], &[], &env),
        Strategy::Redis | Strategy::Sqlite | Strategy::None => None,
    }
}

/// Whether the server's data directory is copied as files (`lifeboat.strategy=postgres-files`)
/// instead of dumped.
pub(crate) fn by_files(config: &ContainerConfig) -> bool {
    strategy_label(config).is_ok_and(|s| s == Strategy::PostgresFiles)
}

/// The container's env plus the credentials its labels point at: `lifeboat.db-user` names the
/// database user; `lifeboat.db-password-env` names the env variable holding its password
/// (labels are visible to anyone who can inspect the container, so they never hold the
/// password itself).
fn credentials(config: &ContainerConfig) -> Vec<String> {
    use lifeboat_consistency::dumps::{LABEL_PASSWORD, LABEL_USER};
    let mut env = config.env.clone();
    if let Some(user) = config.label(lifeboat_model::labels::DB_USER) {
        env.push(format!("{LABEL_USER}={user}"));
    }
    if let Some(var) = config.label(lifeboat_model::labels::DB_PASSWORD_ENV) {
        let value = config
            .env
            .iter()
            .find_map(|kv| kv.strip_prefix(var)?.strip_prefix('='));
        if let Some(pw) = value {
            env.push(format!("{LABEL_PASSWORD}={pw}"));
        }
    }
    env
}

/// Whether the container is Redis: forced by `lifeboat.strategy=redis`, else detected.
pub(crate) fn is_redis(config: &ContainerConfig) -> bool {
    match strategy_label(config).unwrap_or(Strategy::Auto) {
        Strategy::Auto => lifeboat_consistency::redis::is_redis(
            &config.image,
            config.cmd.as_deref().unwrap_or_default(),
            config.entrypoint.as_deref().unwrap_or_default(),
        ),
        label => label == Strategy::Redis,
    }
}

/// Finds the server's data directories in the mounts and plans the dump part instead of
/// their file copy. Returns them (mount index, host directory).
pub(crate) fn plan(
    plan: &mut CapturePlan,
    s: &DumpStrategy,
    note: Note<'_>,
) -> Vec<(usize, std::path::PathBuf)> {
    let mut data_dirs = Vec::new();
    for (index, part) in plan
        .parts
        .iter()
        .enumerate()
        .filter(|(_, p)| matches!(p.kind, PartKind::Volume | PartKind::Bind))
    {
        let markers = walkdir::WalkDir::new(&part.read_path)
            .max_depth(4)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| s.data_markers.iter().any(|m| e.file_name() == *m));
        for marker in markers {
            if let Some(dir) = marker.path().parent() {
                note(&format!(
                    "{}: data directory {} is captured by its dump",
                    part.name,
                    dir.display()
                ));
                data_dirs.push((index, dir.to_path_buf()));
            }
        }
    }
    plan.add_dump(s.name, data_dirs.clone());
    data_dirs
}

type SharedStream = Arc<Mutex<Box<dyn ExecStream>>>;

struct Shared(SharedStream);

impl Read for Shared {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("dump stream poisoned"))?
            .read(buf)
    }
}

/// How the dump command ended: its exit code and the tail of its stderr.
type Ended = Box<dyn FnMut() -> Result<lifeboat_docker::ExecOutput, String> + Send>;

/// The dump as the repository reads it; `finish` checks the exit code and the trailer.
struct DumpSource {
    /// The dump's bytes: the command's output through the engine, or a fifo.
    bytes: Option<Box<dyn Read + Send>>,
    ended: Ended,
    tail: Arc<Mutex<Vec<u8>>>,
    trailer: &'static str,
}

impl StreamSource for DumpSource {
    fn reader(&mut self) -> Box<dyn Read + Send> {
        let bytes = self
            .bytes
            .take()
            .unwrap_or_else(|| Box::new(std::io::empty()));
        let (reader, tail) = TailReader::new(bytes);
        self.tail = tail;
        Box::new(reader)
    }

    fn finish(&mut self) -> Result<(), String> {
        let out = (self.ended)()?;
        if out.exit_code != Some(0) {
            return Err(format!(
                "the dump exited with {:?}: {}",
                out.exit_code,
                out.output.trim()
            ));
        }
        let tail = self.tail.lock().map_err(|_| "poisoned".to_string())?;
        if !complete(&tail, self.trailer) {
            return Err(format!(
                "the dump is empty or truncated (no `{}` at its end)",
                self.trailer
            ));
        }
        Ok(())
    }
}

/// A fifo Lifeboat makes in the container's `/tmp`, reached beneath `/proc/PID/root` (never
/// through a symlink): the dump writes into it from inside the container and Lifeboat reads
/// it on the host, so the bytes do not pass through the engine's API. Through the API a
/// 300 MB PostgreSQL dump took 4.4 s instead of 1.5 s and the engine spent 1.4 s of CPU
/// copying it, all while the server served its clients (`bench/pgbench.sh`).
struct Fifo {
    place: lifeboat_safepath::Located,
    /// Its path inside the container.
    inside: String,
    /// The ends, each given away once: a copy kept open here would hold the reader back
    /// from end-of-file, or keep a dump whose reader gave up blocked on a full fifo. The
    /// writer is held until the dump command has ended: the reader meets end-of-file then,
    /// and not before the command opened the fifo.
    ends: Option<(std::fs::File, std::fs::File)>,
}

impl Fifo {
    /// The fifo for a dump of the running container `details`; `None` (the dump then streams
    /// through the engine) when its file system cannot be reached from here: no process, a
    /// process that is not the container's, no `/tmp` directory, a read-only `/tmp`.
    fn make(details: &ContainerDetails) -> Option<Fifo> {
        let pid = details.state.pid?;
        // The pid is the container's (not a reused one) while its cgroup names the container.
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        if details.id.is_empty() || !cgroup.contains(&details.id) {
            return None;
        }
        let root =
            lifeboat_safepath::Beneath::open(Path::new(&format!("/proc/{pid}/root"))).ok()?;
        let name = format!(".lifeboat-dump-{}", crate::hot::unguessable());
        let place = root.locate(&Path::new("tmp").join(&name)).ok()?;
        // Writable by the dump whoever it runs as; readable only by Lifeboat.
        match place.make_fifo(0o622) {
            Ok(ends) => Some(Fifo {
                place,
                inside: format!("/tmp/{name}"),
                ends: Some(ends),
            }),
            Err(e) => {
                log::info!(
                    "{}: the dump streams through the engine (no fifo in /tmp: {e})",
                    details.name
                );
                None
            }
        }
    }

    /// `cmd` writing its output into the fifo; it refuses to run unless the fifo is there.
    fn command(&self, cmd: &[String]) -> Vec<String> {
        let script = "[ -p \"$0\" ] || { echo \"lifeboat: the dump fifo $0 is gone\" >&2; \
                      exit 97; }; exec \"$@\" > \"$0\"";
        ["sh", "-c", script, &self.inside]
            .into_iter()
            .map(String::from)
            .chain(cmd.iter().cloned())
            .collect()
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        let _ = self.place.remove_file();
    }
}

/// The dump's bytes and how to learn how it ended: through the fifo when there is one
/// (a thread waits for the command and then lets the reader meet end-of-file), else the
/// command's output through the engine.
fn dump_source(
    engine: &dyn Engine,
    details: &ContainerDetails,
    s: &DumpStrategy,
    env: &[String],
) -> Result<(DumpSource, Option<Fifo>), CoreError> {
    let mut fifo = Fifo::make(details);
    let Some((reader, writer)) = fifo.as_mut().and_then(|f| f.ends.take()) else {
        let stream: SharedStream =
            Arc::new(Mutex::new(engine.exec_stream(&details.id, &s.dump, env)?));
        let ended = stream.clone();
        let source = DumpSource {
            bytes: Some(Box::new(Shared(stream))),
            ended: Box::new(move || {
                ended
                    .lock()
                    .map_err(|_| "dump stream poisoned".to_string())?
                    .finish()
                    .map_err(|e| e.to_string())
            }),
            tail: Arc::default(),
            trailer: s.trailer,
        };
        return Ok((source, None));
    };
    let command = fifo
        .as_ref()
        .map(|f| f.command(&s.dump))
        .unwrap_or_default();
    let mut stream = engine.exec_stream(&details.id, &command, env)?;
    let (done, outcome) = std::sync::mpsc::sync_channel(1);
    std::thread::spawn(move || {
        // The command's own output is empty (it writes into the fifo); its end is the news.
        let _ = std::io::copy(&mut stream, &mut std::io::sink());
        let ended = stream.finish().map_err(|e| e.to_string());
        drop(writer);
        let _ = done.send(ended);
    });
    let source = DumpSource {
        bytes: Some(Box::new(reader)),
        ended: Box::new(move || {
            outcome
                .recv()
                .map_err(|_| "the thread waiting for the dump failed".to_string())?
        }),
        tail: Arc::default(),
        trailer: s.trailer,
    };
    Ok((source, fifo))
}

/// Streams the dump of `details` into the repository. The dump's processes inside the
/// container, and the server processes serving its sessions, run at the backup's own
/// priority meanwhile ([`lower_the_dump`]).
pub(crate) fn store(
    engine: &dyn Engine,
    repo: &dyn Repository,
    details: &ContainerDetails,
    part: &PlannedPart,
    tags: &[String],
    pacer: Option<&Arc<crate::tuning::Pacer>>,
    note: Note<'_>,
) -> Result<PartReport, CoreError> {
    let s = strategy(&details.config)
        .ok_or_else(|| CoreError::Hot(format!("no dump strategy for `{}`", details.name)))?;
    let marker = format!("LIFEBOAT_DUMP={}-{}", std::process::id(), details.id);
    let mut env = s.env.clone();
    env.extend(s.session_env.iter().cloned());
    env.push(marker.clone());
    let (mut source, fifo) = dump_source(engine, details, &s, &env)?;
    if let Some(pacer) = pacer {
        source.bytes = source
            .bytes
            .take()
            .map(|b| Box::new(crate::tuning::Paced::new(b, pacer.clone())) as Box<dyn Read + Send>);
    }
    note(&match &fifo {
        Some(f) => format!(
            "{}: {} dump read through a fifo at {}",
            details.name, s.name, f.inside
        ),
        None => format!("{}: {} dump read through the engine", details.name, s.name),
    });
    let req = StreamBackup {
        path: &part.snapshot_path,
        tags,
        description: Some(format!("{} dump", s.name)),
        time: None,
    };
    let (done, until) = std::sync::mpsc::channel::<()>();
    let stored = std::thread::scope(|scope| {
        scope.spawn(|| lower_the_dump(engine, &details.id, &s, &marker, until));
        let stored = repo.backup_stream(&req, &mut source);
        drop(done);
        stored
    });
    drop(fifo);
    Ok(stored?)
}

/// How often the dump's processes are looked for: a dump opens a new session per database.
const LOWER_EVERY: Duration = Duration::from_millis(300);

/// Until `until` ends: gives the backup's priority (`tuning::share_priority_with`) to the
/// processes the dump started in the container (found by `marker` in their environment) and
/// to the server processes serving its sessions (their ids, as the container sees them,
/// printed by the strategy's `sessions` command, mapped to the host's through the
/// processes' pid namespace). A dump at full priority took two thirds of a PostgreSQL
/// server's throughput while it ran (`bench/pgbench.sh`).
fn lower_the_dump(
    engine: &dyn Engine,
    container: &str,
    s: &DumpStrategy,
    marker: &str,
    until: std::sync::mpsc::Receiver<()>,
) {
    let mut lowered = std::collections::BTreeSet::new();
    // The dump's processes when its sessions were last found: asking the server costs a
    // process started in the container (every 300 ms, that alone took a fifth of a busy
    // PostgreSQL's throughput), so it is asked again only when a new process of the dump
    // appeared or the last answer held no session not yet lowered.
    let mut asked_for = Vec::new();
    loop {
        let clients = host_processes::with_env(marker);
        let inside: Vec<u32> =
            if s.sessions.is_empty() || clients.is_empty() || clients == asked_for {
                Vec::new()
            } else {
                session_pids(engine, container, s)
            };
        let servers = clients
            .first()
            .map(|&c| host_processes::in_namespace_of(c, &inside))
            .unwrap_or_default();
        for &pid in &clients {
            if lowered.insert(pid) {
                crate::tuning::share_priority_with(pid);
            }
        }
        for pid in servers {
            if lowered.insert(pid) {
                crate::tuning::share_priority_with(pid);
                asked_for.clone_from(&clients);
            }
        }
        if until.recv_timeout(LOWER_EVERY) != Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
            return;
        }
    }
}

/// The container's own ids of the dump's server sessions (none when the query fails).
fn session_pids(engine: &dyn Engine, container: &str, s: &DumpStrategy) -> Vec<u32> {
    let Ok(mut out) = engine.exec_stream(container, &s.sessions, &s.env) else {
        return Vec::new();
    };
    let mut text = String::new();
    let _ = out.read_to_string(&mut text);
    let _ = out.finish();
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// The host's processes, read from `/proc` (Lifeboat runs on the host, as root).
mod host_processes {
    use std::path::PathBuf;

    fn all() -> impl Iterator<Item = (i32, PathBuf)> {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let pid = e.file_name().to_str()?.parse().ok()?;
                Some((pid, e.path()))
            })
    }

    /// Processes whose environment holds `var` (`KEY=value`).
    pub(super) fn with_env(var: &str) -> Vec<i32> {
        all()
            .filter(|(_, dir)| {
                std::fs::read(dir.join("environ"))
                    .is_ok_and(|env| env.split(|&b| b == 0).any(|kv| kv == var.as_bytes()))
            })
            .map(|(pid, _)| pid)
            .collect()
    }

    /// The host ids of the processes in `pid`'s pid namespace whose id there is one of
    /// `inside` (the last `NSpid` field of their status).
    pub(super) fn in_namespace_of(pid: i32, inside: &[u32]) -> Vec<i32> {
        let Ok(ns) = std::fs::read_link(format!("/proc/{pid}/ns/pid")) else {
            return Vec::new();
        };
        if inside.is_empty() {
            return Vec::new();
        }
        all()
            .filter(|(_, dir)| std::fs::read_link(dir.join("ns/pid")).is_ok_and(|n| n == ns))
            .filter(|(_, dir)| {
                std::fs::read_to_string(dir.join("status")).is_ok_and(|status| {
                    status
                        .lines()
                        .find_map(|l| l.strip_prefix("NSpid:"))
                        .and_then(|ids| ids.split_whitespace().last()?.parse::<u32>().ok())
                        .is_some_and(|id| inside.contains(&id))
                })
            })
            .map(|(pid, _)| pid)
            .collect()
    }
}

/// Feeds the saved dumps into the restored, started container once its server is ready (with
/// a data directory restored as files, only waits for it to be ready).
pub(crate) fn load(
    engine: &dyn Engine,
    repo: &dyn Repository,
    container: &str,
    config: &ContainerConfig,
    parts: &[Part],
    timeout: Duration,
    note: Note<'_>,
) -> Result<(), CoreError> {
    let dumps: Vec<&Part> = parts.iter().filter(|p| p.kind == PartKind::Dump).collect();
    // A data directory restored as files: the server replays its log as it starts, and the
    // restore is done once it accepts connections.
    let by_files = parts.iter().any(|p| p.kind == PartKind::Wal);
    if dumps.is_empty() && !by_files {
        return Ok(());
    }
    let s = strategy(config)
        .ok_or_else(|| CoreError::Hot(format!("no dump strategy for `{container}`")))?;
    wait_ready(engine, container, &s, timeout, note)?;
    for part in dumps {
        note(&format!(
            "{container}: loading the {} dump ({} bytes)",
            s.name, part.bytes
        ));
        let out =
            crate::stream::from_repository(repo, &part.snapshot_id, &part.snapshot_path, |sql| {
                engine.exec_with_input(
                    container,
                    &s.restore,
                    &s.env,
                    sql,
                    Duration::from_secs(3600),
                )
            })?;
        if out.exit_code != Some(0) {
            return Err(CoreError::Hot(format!(
                "loading the {} dump into `{container}` failed ({:?}): {}",
                s.name,
                out.exit_code,
                out.output.trim()
            )));
        }
    }
    Ok(())
}

/// Polls the server's own readiness probe with exponential backoff.
/// Waits until the server of `container` (restarted, say) accepts connections again.
pub(crate) fn wait_for_server(
    engine: &dyn Engine,
    container: &str,
    config: &ContainerConfig,
    timeout: Duration,
    note: Note<'_>,
) -> Result<(), CoreError> {
    match strategy(config) {
        Some(s) => wait_ready(engine, container, &s, timeout, note),
        None => Ok(()),
    }
}

fn wait_ready(
    engine: &dyn Engine,
    container: &str,
    s: &DumpStrategy,
    timeout: Duration,
    note: Note<'_>,
) -> Result<(), CoreError> {
    note(&format!(
        "{container}: waiting for {} to accept connections",
        s.name
    ));
    let backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(3));
    let waited = poll_until(Instant::now() + timeout, backoff, || {
        // A server that crashed at start never accepts connections: say so at once.
        if let Some(c) = engine.container(container)? {
            crate::wait::unless_ended(engine, &c)?;
        }
        let out = engine.exec(container, &s.ready, Duration::from_secs(10))?;
        Ok::<_, CoreError>(if out.exit_code == Some(0) {
            Poll::Ready(())
        } else {
            Poll::Pending(out.output)
        })
    })?;
    waited.map_err(|last| {
        CoreError::Hot(format!(
            "{} in `{container}` did not accept connections within {} s: {}",
            s.name,
            timeout.as_secs(),
            last.trim()
        ))
    })
}
