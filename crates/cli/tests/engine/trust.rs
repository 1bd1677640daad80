//! The trust suite: each operation killed with SIGKILL at seeded random points, faults injected
//! into the repository's writes, runs side by side; after each, what a user relies on is
//! checked: `check` is clean, no partial backup is listed, every earlier backup restores
//! identical, nothing is left paused, stopped or half-restored under the real name.
//!
//! `LIFEBOAT_TRUST_ROUNDS` (default 2) sets the kills per operation, `LIFEBOAT_TRUST_SEED`
//! replays a run. `scripts/trust` runs 100 of each and prints the README's table from the
//! `trust-row` lines these tests print.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::daemon::{Daemon, succeeded};

type Tree = BTreeMap<Vec<u8>, Entry>;

fn rounds() -> u32 {
    std::env::var("LIFEBOAT_TRUST_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

fn seed(op: &str) -> u64 {
    let base: u64 = std::env::var("LIFEBOAT_TRUST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    // Each operation its own stream, so one can be replayed alone.
    op.bytes()
        .fold(base, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
}

struct Rng(PseudoRandom);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        let b = self.0.bytes(8);
        u64::from_le_bytes(b.try_into().unwrap()) % n.max(1)
    }
}

/// A new service for `op`, changed once and backed up, and its tally.
fn backed_up(op: &str) -> (Service, Tally) {
    let mut s = Service::new(op, &[], false);
    s.change();
    s.backup("none");
    (s, Tally::default())
}

/// What one operation's rounds found, printed as a `trust-row` line for `scripts/trust`.
#[derive(Default)]
struct Tally {
    tried: u32,
    /// Killed while still running (the others had finished before the kill).
    killed_mid_run: u32,
    failures: Vec<String>,
    /// Earlier backups that no longer restore identical.
    lost: u32,
    /// What the run after a kill stored again, in bytes, per round.
    resent: Vec<u64>,
}

impl Tally {
    fn fail(&mut self, round: u32, what: String) {
        eprintln!("trust: round {round}: {what}");
        self.failures.push(format!("round {round}: {what}"));
    }

    fn report(&self, op: &str, seed: u64) {
        let mut resent = self.resent.clone();
        resent.sort_unstable();
        let median = resent.get(resent.len() / 2).copied().unwrap_or(0);
        eprintln!(
            "trust-row | {op} | {} | {} | {} | {} | {:.2} MB | seed {seed}",
            self.tried,
            self.killed_mid_run,
            self.failures.len(),
            self.lost,
            median as f64 / 1e6
        );
        assert!(
            self.failures.is_empty() && self.lost == 0,
            "{op}: {} failures, {} backups lost (seed {seed}):\n{}",
            self.failures.len(),
            self.lost,
            self.failures.join("\n")
        );
    }
}

/// SIGKILL after `delay`; whether the run was still going.
fn kill_after(mut child: Child, delay: Duration) -> bool {
    std::thread::sleep(delay);
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    running
}

/// One service with a volume of mixed data, changed a little before every round.
struct Service {
    lb: Arc<Lb>,
    c: Cleanup,
    name: String,
    vol: String,
    path: PathBuf,
    rng: Rng,
    /// What each listed backup holds.
    expected: BTreeMap<String, Tree>,
    /// With a SQLite database (hot mode): its rows per backup.
    db_rows: BTreeMap<String, u32>,
    /// Backups first seen after a killed run: what that run committed.
    from_killed: std::collections::BTreeSet<String>,
    round: u32,
}

const FILES: usize = 8;
const FILE_BYTES: usize = 1 << 20;

impl Service {
    fn new(op: &str, flags: &[&str], with_db: bool) -> Service {
        Service::new_in(Arc::new(Lb::new()), op, flags, with_db)
    }

    /// A service backed up into `lb`'s repository.
    fn new_in(lb: Arc<Lb>, op: &str, flags: &[&str], with_db: bool) -> Service {
        let mut c = Cleanup::default();
        let (name, vol) = (unique(op), unique(&format!("{op}-vol")));
        let path = new_volume(&mut c, &vol);
        let mut rng = Rng(PseudoRandom::new(seed(op)));
        for i in 0..FILES {
            std::fs::write(path.join(format!("f{i}")), rng.0.bytes(FILE_BYTES)).unwrap();
        }
        std::fs::create_dir_all(path.join("small")).unwrap();
        for i in 0..200 {
            std::fs::write(path.join(format!("small/s{i}")), format!("{i}\n").repeat(i)).unwrap();
        }
        if with_db {
            std::fs::create_dir_all(path.join("db")).unwrap();
            sqlite(&path, "PRAGMA journal_mode=WAL; CREATE TABLE t(n INTEGER);");
        }
        let mut all = vec!["-v".to_string(), format!("{vol}:/data")];
        all.extend(flags.iter().map(|f| f.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        run_sleeper(&mut c, &name, &refs);
        Service {
            lb,
            c,
            name,
            vol,
            path,
            rng,
            expected: BTreeMap::new(),
            db_rows: BTreeMap::new(),
            from_killed: Default::default(),
            round: 0,
        }
    }

    fn has_db(&self) -> bool {
        self.path.join("db").exists()
    }

    /// The next round's change: one file rewritten, a round marker, a row.
    fn change(&mut self) {
        self.round += 1;
        let f = self.rng.below(FILES as u64);
        let bytes = self.rng.0.bytes(FILE_BYTES);
        std::fs::write(self.path.join(format!("f{f}")), bytes).unwrap();
        std::fs::write(self.path.join("round"), self.round.to_string()).unwrap();
        if self.has_db() {
            sqlite(
                &self.path,
                &format!("INSERT INTO t VALUES({});", self.round),
            );
        }
    }

    /// The volume as a backup of it must hold (the live database files aside: a hot copy is
    /// checked by its rows).
    fn tree_now(&self) -> Tree {
        without_db(snapshot_tree(&self.path))
    }

    /// The backups listed for the service, oldest first; safety and forensic backups (what a
    /// recovery replaced) are left out: they hold a broken state on purpose.
    /// Runs `lifeboat ARGS` and kills it with SIGKILL at a seeded random point within `span`
    /// (an uninterrupted run's time, and a tenth more); counts the round in `t`.
    fn killed_at_random(&mut self, t: &mut Tally, args: &[&str], span: Duration) {
        let child = self
            .lb
            .command()
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let delay = kill_point(&mut self.rng, span);
        t.tried += 1;
        t.killed_mid_run += u32::from(kill_after(child, delay));
    }

    fn listed(&self) -> Vec<String> {
        self.lb
            .backups(&self.name)
            .iter()
            .filter(|b| b["safety"] != true)
            .map(|b| b["backup_id"].as_str().unwrap().to_string())
            .collect()
    }

    fn backup_args<'a>(&'a self, mode: &'a str) -> Vec<&'a str> {
        vec!["backup", &self.name, "--mode", mode, "--json"]
    }

    /// A backup run to its end; records what it holds and what it stored.
    fn backup(&mut self, mode: &str) -> u64 {
        self.backup_env(&[], mode)
    }

    /// [`Service::backup`] with more environment variables.
    fn backup_env(&mut self, env: &[(&str, &str)], mode: &str) -> u64 {
        let out = self.lb.run_env(env, &self.backup_args(mode)).ok().json();
        let b = &out["backups"][0];
        let id = b["backup_id"].as_str().unwrap().to_string();
        self.expected.insert(id.clone(), self.tree_now());
        if self.has_db() {
            self.db_rows.insert(id, self.round);
        }
        b["added_bytes"].as_u64().unwrap_or(0)
    }

    /// The checks after each round: the next command undoes any freeze, the service runs,
    /// `check` is clean, every backup of `must_keep` is still listed, and a backup the killed
    /// run committed holds this round's data.
    fn verify(&mut self, t: &mut Tally, must_keep: &[String]) {
        let r = self.round;
        let snaps = self.lb.run(&["snapshots"]);
        if snaps.code != 0 {
            t.fail(
                r,
                format!("snapshots exit {}: {}", snaps.code, snaps.stderr),
            );
        }
        let state = inspect(&self.name, "{{.State.Status}}");
        if state != "running" {
            t.fail(r, format!("the service is {state} after the next command"));
            docker_ok(&["unpause", &self.name]);
            docker_ok(&["start", &self.name]);
        }
        let check = self.lb.run(&["check"]);
        if check.code != 0 {
            t.fail(
                r,
                format!(
                    "check exit {}: {}{}",
                    check.code, check.stdout, check.stderr
                ),
            );
        }
        let now = self.listed();
        for id in must_keep {
            if !now.contains(id) {
                t.fail(r, format!("backup {id} is no longer listed"));
                t.lost += 1;
            }
        }
        let new: Vec<String> = now
            .into_iter()
            .filter(|id| !self.expected.contains_key(id))
            .collect();
        for id in &new {
            self.from_killed.insert(id.clone());
            self.expected.insert(id.clone(), self.tree_now());
            if self.has_db() {
                self.db_rows.insert(id.clone(), r);
            }
        }
    }

    /// After `check --read-data` (every byte of the repository), the listed backups restored
    /// side by side and compared with what they held: every one a killed run committed, and
    /// of the others all up to 30, else 25 spread over the run and the newest.
    fn restore_all(&mut self, t: &mut Tally) {
        let check = self.lb.run(&["check", "--read-data"]);
        if check.code != 0 {
            t.fail(self.round, format!("check --read-data: {}", check.stderr));
        }
        let listed = self.listed();
        let step = if listed.len() <= 30 {
            1
        } else {
            listed.len() / 25
        };
        let last = listed.len().saturating_sub(1);
        let chosen: Vec<String> = listed
            .iter()
            .enumerate()
            .filter(|(i, id)| i % step == 0 || *i == last || self.from_killed.contains(*id))
            .map(|(_, id)| id.clone())
            .collect();
        eprintln!(
            "trust: restoring {} of {} backups",
            chosen.len(),
            listed.len()
        );
        for id in chosen {
            if let Some(why) = self.restores_identical(&id) {
                t.fail(self.round, format!("backup {id}: {why}"));
                t.lost += 1;
            }
        }
    }

    /// Restores backup `id` as a copy; what differs from what it held, if anything.
    fn restores_identical(&mut self, id: &str) -> Option<String> {
        let copy = unique(&format!("{}-r", self.name.trim_start_matches("lbt-")));
        let vol = format!("{copy}_{}", self.vol);
        let run = self
            .lb
            .run(&["restore", &self.name, "--snapshot", id, "--as", &copy]);
        let found = if run.code != 0 {
            Some(format!("restore exit {}: {}", run.code, run.stderr))
        } else {
            self.differences(id, &volume_path(&vol))
        };
        docker_ok(&["rm", "-f", &copy]);
        docker_ok(&["volume", "rm", "-f", &vol]);
        found
    }

    fn differences(&self, id: &str, restored: &Path) -> Option<String> {
        let Some(want) = self.expected.get(id) else {
            return Some("listed, but no round made it".into());
        };
        let diffs = tree_diff(want.clone(), without_db(snapshot_tree(restored)));
        if !diffs.is_empty() {
            return Some(diffs.join("; "));
        }
        let rows = self.db_rows.get(id)?;
        let got = sqlite(restored, "PRAGMA integrity_check; SELECT count(*) FROM t;");
        (got != format!("ok\n{rows}")).then(|| format!("database: {got:?}, want {rows} rows"))
    }
}

fn without_db(mut tree: Tree) -> Tree {
    tree.retain(|k, _| !k.starts_with(b"db"));
    tree
}

fn sqlite(volume: &Path, sql: &str) -> String {
    let out = Command::new("sqlite3")
        .arg(volume.join("db/app.db"))
        .arg(sql)
        .output()
        .expect("sqlite3 installed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// How long an uninterrupted run of `args` takes, a kill point's upper bound.
fn timed(lb: &Lb, args: &[&str]) -> Duration {
    let t0 = Instant::now();
    lb.run(args).ok();
    t0.elapsed()
}

fn kill_point(rng: &mut Rng, span: Duration) -> Duration {
    Duration::from_millis(rng.below(span.as_millis() as u64 * 11 / 10 + 1))
}

fn backup_killed_at_random_points(mode: &str, flags: &[&str]) {
    let op = format!("backup-{mode}");
    let mut s = Service::new(&op, flags, mode == "hot");
    let mut t = Tally::default();
    s.change();
    let t0 = Instant::now();
    s.backup(mode);
    let span = t0.elapsed();
    for _ in 0..rounds() {
        s.change();
        let before = s.listed();
        let name = s.name.clone();
        s.killed_at_random(&mut t, &["backup", &name, "--mode", mode, "--json"], span);
        s.verify(&mut t, &before);
        // The next run stores again only what the killed one left unfinished.
        t.resent.push(s.backup(mode));
    }
    s.restore_all(&mut t);
    t.report(&op, seed(&op));
}

#[test]
fn a_backup_killed_at_random_points_lists_nothing_partial_and_loses_nothing() {
    backup_killed_at_random_points("none", &[]);
}

#[test]
fn a_hot_backup_killed_at_random_points_lists_nothing_partial_and_loses_nothing() {
    backup_killed_at_random_points("hot", &[]);
}

#[test]
fn a_pause_backup_killed_at_random_points_leaves_the_service_running() {
    backup_killed_at_random_points("pause", &[]);
}

#[test]
fn a_stop_backup_killed_at_random_points_leaves_the_service_running() {
    backup_killed_at_random_points("stop", &["--stop-timeout", "1"]);
}

/// Objects of the engine whose names hold `name`, beside the service's own.
fn leftovers(s: &Service) -> Vec<String> {
    let mut found = Vec::new();
    for (what, args) in [
        ("container", vec!["ps", "-a", "--format", "{{.Names}}"]),
        ("volume", vec!["volume", "ls", "--format", "{{.Name}}"]),
        ("network", vec!["network", "ls", "--format", "{{.Name}}"]),
    ] {
        for n in docker(&args).lines() {
            if n.contains(s.name.trim_start_matches("lbt-")) && n != s.name && n != s.vol {
                found.push(format!("{what} {n}"));
            }
        }
    }
    found
}

#[test]
fn a_restore_killed_at_random_points_leaves_nothing_half_restored_under_its_name() {
    let op = "restore";
    let (mut s, mut t) = backed_up(op);
    let target = format!("{}-as", s.name);
    let vol = format!("{target}_{}", s.vol);
    s.c.containers.push(target.clone());
    s.c.volumes.push(vol.clone());
    let name = s.name.clone();
    let args = ["restore", &name, "--as", &target];
    let span = timed(&s.lb, &args);
    docker(&["rm", "-f", &target]);
    docker(&["volume", "rm", "-f", &vol]);
    let id = s.listed()[0].clone();
    for round in 1..=rounds() {
        s.killed_at_random(&mut t, &args, span);
        let before = s.listed();
        s.verify(&mut t, &before);
        if docker_ok(&["inspect", "--type", "container", &target]) {
            // Created means restored: the data under it must be whole.
            if let Some(why) = s.differences(&id, &volume_path(&vol)) {
                t.fail(round, format!("the restored container's volume: {why}"));
            }
        } else {
            // Not there: the same restore, asked again, must just work.
            let again = s.lb.run(&args);
            if again.code != 0 {
                t.fail(
                    round,
                    format!("restore again: exit {}: {}", again.code, again.stderr),
                );
            } else if let Some(why) = s.differences(&id, &volume_path(&vol)) {
                t.fail(round, format!("restored again: {why}"));
            }
        }
        docker(&["rm", "-f", &target]);
        docker_ok(&["volume", "rm", "-f", &vol]);
        let left = leftovers(&s);
        if !left.is_empty() {
            t.fail(round, format!("left behind: {left:?}"));
        }
    }
    s.restore_all(&mut t);
    t.report(op, seed(op));
}

#[test]
fn a_drill_killed_at_random_points_leaves_no_sandbox_after_the_next_drill() {
    let op = "drill";
    let (mut s, mut t) = backed_up(op);
    let name = s.name.clone();
    let args = ["drill", &name, "--json"];
    let span = timed(&s.lb, &args);
    for round in 1..=rounds() {
        s.killed_at_random(&mut t, &args, span);
        let before = s.listed();
        s.verify(&mut t, &before);
        let next = s.lb.run(&args);
        if next.code != 0 || next.json()["ok"] != true {
            t.fail(
                round,
                format!("the next drill: exit {}: {}", next.code, next.stdout),
            );
        }
        let left = leftovers(&s);
        if !left.is_empty() {
            t.fail(round, format!("left behind after the next drill: {left:?}"));
        }
    }
    s.restore_all(&mut t);
    t.report(op, seed(op));
}

/// A shared object that fails the repository's writes, fsyncs or renames from the Nth on
/// (`LIFEBOAT_FAULT_*`), built with the machine's C compiler.
fn fault_shim(dir: &Path) -> PathBuf {
    let src = dir.join("fault.c");
    std::fs::write(&src, FAULT_SHIM).unwrap();
    let so = dir.join("fault.so");
    let ok = Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&so)
        .arg(&src)
        .arg("-ldl")
        .status()
        .expect("cc installed")
        .success();
    assert!(ok, "the fault shim compiles");
    so
}

const FAULT_SHIM: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

static int calls;

/* With LIFEBOAT_FAULT_COUNT: how many calls of the kind the run made, written at its exit. */
__attribute__((destructor)) static void count(void) {
    const char *to = getenv("LIFEBOAT_FAULT_COUNT");
    if (!to) return;
    FILE *f = fopen(to, "w");
    if (f) { fprintf(f, "%d\n", calls); fclose(f); }
}

static int under(const char *p) {
    const char *dir = getenv("LIFEBOAT_FAULT_DIR");
    return dir && p && strncmp(p, dir, strlen(dir)) == 0;
}

static int fd_under(int fd) {
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0) return 0;
    path[n] = 0;
    return under(path);
}

/* Whether this call (of kind `op`, on the repository) fails, setting errno. */
static int fails(const char *op) {
    const char *want = getenv("LIFEBOAT_FAULT_OP");
    if (!want || strcmp(want, op) != 0) return 0;
    const char *at = getenv("LIFEBOAT_FAULT_AT");
    if (__atomic_add_fetch(&calls, 1, __ATOMIC_SEQ_CST) < (at ? atoi(at) : 1)) return 0;
    const char *mark = getenv("LIFEBOAT_FAULT_MARK");
    if (mark) close(open(mark, O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
    const char *e = getenv("LIFEBOAT_FAULT_ERRNO");
    errno = (e && strcmp(e, "ENOSPC") == 0) ? ENOSPC : EIO;
    return 1;
}

#define REAL(name) static __typeof__(name) *real; if (!real) real = dlsym(RTLD_NEXT, #name)

ssize_t write(int fd, const void *b, size_t n) {
    REAL(write);
    if (fd > 2 && fd_under(fd) && fails("write")) return -1;
    return real(fd, b, n);
}
ssize_t pwrite64(int fd, const void *b, size_t n, off_t o) {
    REAL(pwrite64);
    if (fd_under(fd) && fails("write")) return -1;
    return real(fd, b, n, o);
}
ssize_t writev(int fd, const struct iovec *v, int c) {
    REAL(writev);
    if (fd_under(fd) && fails("write")) return -1;
    return real(fd, v, c);
}
int fsync(int fd) {
    REAL(fsync);
    if (fd_under(fd) && fails("fsync")) return -1;
    return real(fd);
}
int fdatasync(int fd) {
    REAL(fdatasync);
    if (fd_under(fd) && fails("fsync")) return -1;
    return real(fd);
}
int rename(const char *a, const char *b) {
    REAL(rename);
    if (under(b) && fails("rename")) return -1;
    return real(a, b);
}
int renameat(int da, const char *a, int db, const char *b) {
    REAL(renameat);
    if (under(b) && fails("rename")) return -1;
    return real(da, a, db, b);
}
"#;

/// Every object stored under a content-addressed name holds what its name says.
fn misnamed_objects(repo: &Path) -> Vec<String> {
    use sha2::Digest;
    let mut bad = Vec::new();
    for dir in ["data", "index", "snapshots", "keys"] {
        for e in walkdir::WalkDir::new(repo.join(dir)) {
            let e = e.unwrap();
            if !e.file_type().is_file() {
                continue;
            }
            let name = e.file_name().to_string_lossy().to_string();
            let hash = hex::encode(sha2::Sha256::digest(std::fs::read(e.path()).unwrap()));
            if hash != name {
                bad.push(format!("{dir}/{name}"));
            }
        }
    }
    bad
}

#[test]
fn a_backup_whose_repository_writes_fail_stores_nothing_wrong_and_the_next_one_works() {
    let op = "faults";
    let (mut s, mut t) = backed_up(op);
    let tools = tempfile::tempdir().unwrap();
    let shim = fault_shim(tools.path());
    let mark = tools.path().join("fired");
    let repo = s.lb.repo().canonicalize().unwrap();
    // 10 points per kind in a long run (60 runs), one in CI.
    let points = (rounds() / 10).clamp(1, 10);
    let mut injected = 0;
    let (shim, repo_dir) = (shim.to_str().unwrap(), repo.to_str().unwrap());
    for fault_op in ["write", "fsync", "rename"] {
        // How many calls of this kind a backup makes, counted in one that runs to its end:
        // the fault points are drawn from that range.
        s.change();
        let counted = tools.path().join(format!("{fault_op}.count"));
        let env = [
            ("LD_PRELOAD", shim),
            ("LIFEBOAT_FAULT_DIR", repo_dir),
            ("LIFEBOAT_FAULT_OP", fault_op),
            ("LIFEBOAT_FAULT_AT", "2000000000"),
            ("LIFEBOAT_FAULT_COUNT", counted.to_str().unwrap()),
        ];
        s.backup_env(&env, "none");
        let calls: u64 = std::fs::read_to_string(&counted)
            .ok()
            .and_then(|c| c.trim().parse().ok())
            .unwrap_or(1);
        eprintln!("trust: a backup makes {calls} {fault_op} calls in the repository");
        for errno in ["EIO", "ENOSPC"] {
            for _ in 0..points {
                s.change();
                let before = s.listed();
                let at = 1 + s.rng.below(calls.max(1)) as u32;
                let _ = std::fs::remove_file(&mark);
                let run = s.lb.run_env(
                    &[
                        ("LD_PRELOAD", shim),
                        ("LIFEBOAT_FAULT_DIR", repo_dir),
                        ("LIFEBOAT_FAULT_OP", fault_op),
                        ("LIFEBOAT_FAULT_ERRNO", errno),
                        ("LIFEBOAT_FAULT_AT", &at.to_string()),
                        ("LIFEBOAT_FAULT_MARK", mark.to_str().unwrap()),
                    ],
                    &s.backup_args("none"),
                );
                let round = s.round;
                t.tried += 1;
                let fired = mark.exists();
                injected += u32::from(fired);
                if fired && run.code == 0 {
                    t.fail(round, format!("{fault_op} {errno} at {at}: exit 0"));
                }
                if fired && s.listed() != before {
                    t.fail(
                        round,
                        format!("{fault_op} {errno} at {at}: a backup was listed"),
                    );
                }
                let bad = misnamed_objects(&repo);
                if !bad.is_empty() {
                    t.fail(
                        round,
                        format!(
                            "{fault_op} {errno} at {at}: objects not matching their names: {bad:?}"
                        ),
                    );
                }
                s.verify(&mut t, &before);
                t.resent.push(s.backup("none"));
            }
        }
    }
    eprintln!("trust: faults injected {injected} of {} runs", t.tried);
    assert!(
        injected > 0,
        "no fault ever fired: the shim did not reach the repository"
    );
    s.restore_all(&mut t);
    t.report(op, seed(op));
}

#[test]
fn parallel_backups_a_restore_and_a_check_leave_every_backup_restorable() {
    let op = "parallel";
    let lb = Arc::new(Lb::new());
    // A daemon manages them, so a prune (retention last=3) can be asked for during each round.
    let scope = unique("lbt-trust-par");
    let scope_label = format!("lifeboat.test={scope}");
    let labels = [
        "-l",
        "lifeboat.enable=true",
        "-l",
        &scope_label,
        "-l",
        "lifeboat.retention=last=3",
        "-l",
        "lifeboat.schedule=1h",
    ];
    let mut all: Vec<Service> = (0..4)
        .map(|i| Service::new_in(lb.clone(), &format!("{op}{i}"), &labels, false))
        .collect();
    let mut t = Tally::default();
    let d = Daemon::start(&lb, &scope, "");
    // Its start-up backups first (its history is empty), while the data stands still.
    d.wait_until(
        "the daemon's start-up backups",
        Duration::from_secs(120),
        || all.iter().all(|s| succeeded(&d.jobs(&s.name)) >= 1),
    );
    for s in &mut all {
        s.verify(&mut t, &[]);
        s.change();
        s.backup("none");
    }
    let spawn = |args: &[&str]| {
        lb.command()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // 20 rounds in a long run, 2 in CI.
    for round in 1..=(rounds() / 5).clamp(2, 20) {
        t.tried += 1;
        for s in &mut all {
            s.change();
        }
        let id = all[0].listed().last().unwrap().clone();
        let copy = unique(&format!("{op}-r"));
        let copy_vol = format!("{copy}_{}", all[0].vol);
        all[0].c.containers.push(copy.clone());
        all[0].c.volumes.push(copy_vol.clone());
        let backups: Vec<Child> = all.iter().map(|s| spawn(&s.backup_args("none"))).collect();
        let pruned = &all[round as usize % all.len()];
        let prune = d.post(
            &format!("/api/v1/services/{}/prune", pruned.name),
            Some("{\"force\": true}"),
        );
        let restore = spawn(&["restore", &all[0].name, "--snapshot", &id, "--as", &copy]);
        let check = spawn(&["check"]);
        for (s, child) in all.iter_mut().zip(backups) {
            let run = Run::from(child.wait_with_output().unwrap());
            if run.code != 0 {
                t.fail(
                    round,
                    format!("backup of {}: exit {}: {}", s.name, run.code, run.stderr),
                );
                continue;
            }
            let out = run.json();
            let id = out["backups"][0]["backup_id"].as_str().unwrap().to_string();
            s.expected.insert(id, s.tree_now());
        }
        let run = Run::from(restore.wait_with_output().unwrap());
        if run.code != 0 {
            t.fail(round, format!("restore: exit {}: {}", run.code, run.stderr));
        } else if let Some(why) = all[0].differences(&id, &volume_path(&copy_vol)) {
            t.fail(round, format!("restored during backups: {why}"));
        }
        let run = Run::from(check.wait_with_output().unwrap());
        if run.code != 0 {
            t.fail(
                round,
                format!("check: exit {}: {}{}", run.code, run.stdout, run.stderr),
            );
        }
        let job = d.wait_job(
            prune.json()["job_id"].as_i64().unwrap(),
            Duration::from_secs(300),
        );
        if job["state"] != "succeeded" {
            t.fail(round, format!("the prune during the round: {job}"));
        }
    }
    for s in &mut all {
        let before = s.listed();
        s.verify(&mut t, &before);
        s.restore_all(&mut t);
    }
    t.report(op, seed(op));
}

/// Retention `last=2` applied by the daemon's prune job (`POST .../prune`, forced), the daemon
/// killed at random points of it: the two newest backups are always kept, every listed backup
/// restores identical, and the next prune finishes the work.
#[test]
fn a_prune_killed_at_random_points_keeps_what_retention_keeps_and_loses_nothing() {
    let op = "prune";
    let scope = unique("lbt-trust-prune");
    let scope_label = format!("lifeboat.test={scope}");
    let labels = [
        "-l",
        "lifeboat.enable=true",
        "-l",
        &scope_label,
        "-l",
        "lifeboat.retention=last=2",
        "-l",
        "lifeboat.schedule=1h",
    ];
    let mut s = Service::new(op, &labels, false);
    let mut t = Tally::default();
    let path = format!("/api/v1/services/{}/prune", s.name);
    let prune = |d: &Daemon| {
        let r = d.post(&path, Some("{\"force\": true}"));
        assert_eq!(r.status, 202, "{}", r.body);
        r.json()["job_id"].as_i64().unwrap()
    };
    // The daemon's first start backs the service up (its history is empty): let it finish,
    // then time an uninterrupted prune of two more backups.
    for _ in 0..3 {
        s.change();
        s.backup("none");
    }
    let span = {
        let d = Daemon::start(&s.lb, &scope, "");
        d.wait_until("the start-up backup", Duration::from_secs(60), || {
            succeeded(&d.jobs(&s.name)) >= 1
        });
        let t0 = Instant::now();
        let job = d.wait_job(prune(&d), Duration::from_secs(120));
        assert_eq!(job["state"], "succeeded", "{job}");
        t0.elapsed()
    };
    let kept = s.listed();
    s.verify(&mut t, &kept);
    for round in 1..=rounds() {
        for _ in 0..2 {
            s.change();
            s.backup("none");
        }
        let listed = s.listed();
        let newest = listed[listed.len().saturating_sub(2)..].to_vec();
        let d = Daemon::start(&s.lb, &scope, "");
        d.wait_for_service(&s.name);
        let job = prune(&d);
        std::thread::sleep(kill_point(&mut s.rng, span));
        let state = d.get(&format!("/api/v1/jobs/{job}")).json()["state"].clone();
        d.signal("KILL");
        drop(d);
        t.tried += 1;
        t.killed_mid_run += u32::from(state == "running" || state == "queued");
        s.verify(&mut t, &newest);
        let now = s.listed();
        if now.len() > listed.len() + 1 {
            t.fail(
                round,
                format!(
                    "{} backups listed after a prune of {}",
                    now.len(),
                    listed.len()
                ),
            );
        }
    }
    // The next prune, uninterrupted, leaves what the rule keeps.
    let d = Daemon::start(&s.lb, &scope, "");
    d.wait_for_service(&s.name);
    let job = d.wait_job(prune(&d), Duration::from_secs(120));
    drop(d);
    if job["state"] != "succeeded" {
        t.fail(s.round, format!("the prune after the kills: {job}"));
    }
    let left = s.listed().len();
    if left != 2 {
        t.fail(s.round, format!("{left} backups left by retention last=2"));
    }
    s.restore_all(&mut t);
    t.report(op, seed(op));
}

/// `lifeboat copy` to a local region killed at random points: the region never lists a
/// half-copied backup, checks clean, and the next copy finishes without a duplicate.
#[test]
fn a_copy_killed_at_random_points_lists_nothing_partial_in_the_region() {
    let op = "copy";
    let mut s = Service::new(op, &[], false);
    let mut t = Tally::default();
    let dir = tempfile::tempdir().unwrap();
    let (region, pw) = (dir.path().join("near"), dir.path().join("near.pw"));
    std::fs::write(&pw, "near-password-0123\n").unwrap();
    let cfg = s.lb.state.path().join("regions.toml");
    std::fs::write(
        &cfg,
        format!(
            "[regions.near]\nlocation = \"{}\"\npassword_file = \"{}\"\nschedule = \"1h\"\n",
            region.display(),
            pw.display()
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap().to_string();
    s.lb.run(&["--config", &cfg, "init", "--region", "near"])
        .ok();
    let copy_args = ["--config", &cfg, "copy", "--to", "near", "--all", "--json"];
    let in_region = |s: &Service| -> Vec<String> {
        let r = s.lb.run(&[
            "--config",
            &cfg,
            "--from",
            "near",
            "snapshots",
            &s.name,
            "--json",
        ]);
        r.ok()
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["backup_id"].as_str().unwrap().to_string())
            .collect()
    };
    s.change();
    s.backup("none");
    let span = timed(&s.lb, &copy_args);
    for round in 1..=rounds() {
        s.change();
        s.backup("none");
        let before = in_region(&s);
        s.killed_at_random(&mut t, &copy_args, span);
        let after = in_region(&s);
        for id in &before {
            if !after.contains(id) {
                t.fail(round, format!("backup {id} left the region"));
                t.lost += 1;
            }
        }
        let primary = s.listed();
        if let Some(id) = after.iter().find(|id| !primary.contains(id)) {
            t.fail(
                round,
                format!("the region lists {id}, which the primary does not hold"),
            );
        }
        // (restic 0.14 refuses every lock, a dead run's too, until `restic unlock`; the next
        // Lifeboat run removes it.)
        let checked = restic_at(&region, &pw, &["--no-lock", "check"]);
        if checked.code != 0 {
            t.fail(
                round,
                format!("restic check of the region: {}", checked.stderr),
            );
        }
        let next = s.lb.run(&copy_args);
        if next.code != 0 {
            t.fail(
                round,
                format!("the next copy: exit {}: {}", next.code, next.stderr),
            );
            continue;
        }
        t.resent
            .push(next.json()["bytes_added"].as_u64().unwrap_or(0));
        if in_region(&s) != primary {
            t.fail(
                round,
                format!(
                    "after the next copy the region lists {:?}, the primary {primary:?}",
                    in_region(&s)
                ),
            );
        }
        // One snapshot per part and one manifest, as in the primary: nothing twice.
        let count = |r: Run| r.json().as_array().map_or(0, Vec::len);
        let (p, n) = (
            count(s.lb.restic(&["snapshots", "--json"])),
            count(restic_at(&region, &pw, &["snapshots", "--json"])),
        );
        if p != n {
            t.fail(
                round,
                format!("{n} snapshots in the region, {p} in the primary"),
            );
        }
    }
    let checked = restic_at(&region, &pw, &["check", "--read-data"]);
    if checked.code != 0 {
        t.fail(
            s.round,
            format!("restic check --read-data of the region: {}", checked.stderr),
        );
    }
    // The newest backup restored from the region is what it held.
    let newest = in_region(&s).pop().unwrap();
    let copy = unique("lbt-copy-r");
    let vol = format!("{copy}_{}", s.vol);
    let run = s.lb.run(&[
        "--config",
        &cfg,
        "--from",
        "near",
        "restore",
        &s.name,
        "--snapshot",
        &newest,
        "--as",
        &copy,
    ]);
    if run.code != 0 {
        t.fail(s.round, format!("restore from the region: {}", run.stderr));
    } else if let Some(why) = s.differences(&newest, &volume_path(&vol)) {
        t.fail(s.round, format!("restored from the region: {why}"));
        t.lost += 1;
    }
    docker_ok(&["rm", "-f", &copy]);
    docker_ok(&["volume", "rm", "-f", &vol]);
    s.restore_all(&mut t);
    t.report(op, seed(op));
}

fn restic_at(repo: &Path, pw: &Path, args: &[&str]) -> Run {
    Command::new("restic")
        .arg("-r")
        .arg(repo)
        .arg("--password-file")
        .arg(pw)
        .arg("--no-cache")
        .args(args)
        .output()
        .expect("restic installed")
        .into()
}

/// `lifeboat recover` killed at random points (forensic backup, removal, restore, start): the
/// next `recover` brings the service back with its newest good backup's data, and nothing
/// is left beside it.
#[test]
fn a_recovery_killed_at_random_points_is_finished_by_the_next_one() {
    let op = "recover";
    let (mut s, mut t) = backed_up(op);
    let good = s.listed().pop().unwrap();
    let name = s.name.clone();
    let args = ["recover", &name, "--json"];
    let span = timed(&s.lb, &args);
    for round in 1..=rounds() {
        // The service breaks: its data is damaged.
        std::fs::write(s.path.join("f0"), format!("damaged in round {round}")).unwrap();
        let good_listed = s.listed();
        s.killed_at_random(&mut t, &args, span);
        let again = s.lb.run(&args);
        if again.code != 0 {
            t.fail(
                round,
                format!("the next recover: exit {}: {}", again.code, again.stderr),
            );
            continue;
        }
        let from = again.json()["backup_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if from != good {
            t.fail(
                round,
                format!("recovered from {from}, not the good backup {good}"),
            );
        }
        let state = inspect(&s.name, "{{.State.Status}}");
        if state != "running" {
            t.fail(
                round,
                format!("the service is {state} after the next recover"),
            );
        }
        if let Some(why) = s.differences(&good, &s.path.clone()) {
            t.fail(round, format!("the recovered volume: {why}"));
            t.lost += 1;
        }
        // Forensic backups are kept but never listed as the service's backups.
        s.verify(&mut t, &good_listed);
        let left = leftovers(&s);
        if !left.is_empty() {
            t.fail(round, format!("left behind: {left:?}"));
        }
    }
    s.restore_all(&mut t);
    t.report(op, seed(op));
}
