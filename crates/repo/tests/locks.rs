//! Repository locks in restic's format, against real repositories on disk and the real
//! `restic` CLI: each side respects the other's locks, stale locks are ignored, and a backup
//! whose lock was lost commits nothing.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lifeboat_repo::{
    LockTimings, RepoError, RepoLocation, RepoSettings, Repository, RusticRepository, StreamBackup,
    StreamSource,
};

const PASSWORD: &str = "lock-test-password";

fn settings(host: &str, wait: Duration) -> RepoSettings {
    RepoSettings {
        host: host.into(),
        locks: LockTimings {
            wait,
            ..LockTimings::default()
        },
        ..RepoSettings::default()
    }
}

fn init(dir: &Path) -> RepoLocation {
    let loc = RepoLocation(dir.join("repo").display().to_string());
    RusticRepository::init(&loc, PASSWORD, None).unwrap();
    loc
}

fn open(loc: &RepoLocation, host: &str, wait: Duration) -> RusticRepository {
    RusticRepository::open_with(loc, PASSWORD, None, settings(host, wait)).unwrap()
}

fn restic(loc: &RepoLocation, args: &[&str]) -> std::process::Output {
    Command::new("restic")
        .args(["-r", &loc.0, "--no-cache"])
        .args(args)
        .env("RESTIC_PASSWORD", PASSWORD)
        .output()
        .expect("restic is installed (scripts/setup-engine)")
}

fn lock_files(loc: &RepoLocation) -> usize {
    std::fs::read_dir(Path::new(&loc.0).join("locks"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn restic_prune_refuses_while_lifeboat_holds_a_shared_lock_and_runs_once_it_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let loc = init(dir.path());
    let repo = open(&loc, "h1", Duration::ZERO);
    let held = repo.hold_lock(false).unwrap();
    assert_eq!(lock_files(&loc), 1);

    // restic lists and decodes the lock: it is restic's format, under restic's key.
    let listed = restic(&loc, &["list", "locks"]);
    assert!(listed.status.success(), "{listed:?}");
    let out = restic(&loc, &["prune"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "restic pruned under Lifeboat's lock");
    assert!(stderr.contains("locked"), "{stderr}");
    assert!(
        stderr.contains("h1"),
        "restic names the holder's host: {stderr}"
    );

    drop(held);
    assert_eq!(lock_files(&loc), 0, "releasing removes the lock file");
    let out = restic(&loc, &["prune"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A stdin backup that restic keeps open (and locked) until we close its input.
struct ResticBackup(std::process::Child);

impl ResticBackup {
    fn start(loc: &RepoLocation) -> Self {
        let child = Command::new("restic")
            .args(["-r", &loc.0, "--no-cache", "backup", "--stdin"])
            .env("RESTIC_PASSWORD", PASSWORD)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while lock_files(loc) == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "restic took no lock"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        ResticBackup(child)
    }

    fn finish(mut self) {
        self.0.stdin.take().unwrap().write_all(b"data").unwrap();
        assert!(self.0.wait().unwrap().success());
    }
}

#[test]
fn lifeboat_prune_refuses_while_a_restic_backup_holds_its_lock_and_says_who_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let loc = init(dir.path());
    let repo = open(&loc, "h1", Duration::from_millis(600));
    let backup = ResticBackup::start(&loc);

    let err = repo.prune().unwrap_err();
    assert!(matches!(err, RepoError::Locked { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("shared lock"), "{text}");
    assert!(text.contains("turns stale at"), "{text}");
    // A shared operation is compatible with restic's shared lock.
    repo.check(false).unwrap();

    backup.finish();
    repo.prune().unwrap();
    assert_eq!(lock_files(&loc), 0);
}

#[test]
fn a_prune_waits_for_a_conflicting_lock_to_go_within_its_wait() {
    let dir = tempfile::tempdir().unwrap();
    let loc = init(dir.path());
    let other_host = open(&loc, "h2", Duration::ZERO);
    let held = other_host.hold_lock(false).unwrap();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        drop(held);
        other_host
    });
    let repo = open(&loc, "h1", Duration::from_secs(30));
    let started = Instant::now();
    repo.prune().unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "the prune did not wait for h2's lock"
    );
    drop(releaser.join().unwrap());
}

#[test]
fn a_stale_lock_does_not_block_and_an_exclusive_lock_blocks_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let loc = init(dir.path());
    // A lock whose holder stopped refreshing it 31 minutes ago (restic's stale timeout is 30).
    let mut stale = settings("h9", Duration::ZERO);
    stale.locks.refresh_every = Duration::from_secs(3600);
    let h9 = RusticRepository::open_with(&loc, PASSWORD, None, stale).unwrap();
    let excl = h9.hold_lock(true).unwrap();
    let repo = open(&loc, "h1", Duration::ZERO);
    let err = repo.hold_lock(false).unwrap_err();
    assert!(matches!(err, RepoError::Locked { .. }), "{err}");
    assert!(err.to_string().contains("exclusive lock"), "{err}");

    // restic agrees: its backup refuses too.
    let out = restic(&loc, &["backup", "--stdin"]);
    assert!(!out.status.success());

    // restic's `unlock` removes only stale locks: it must leave this one.
    let out = restic(&loc, &["unlock"]);
    assert!(out.status.success());
    assert_eq!(lock_files(&loc), 1, "restic unlock removed a live lock");
    std::mem::forget(excl); // its refresher would remove it; keep the file as a crash leaves it
    drop(h9);
    age_all_locks(&loc, Duration::from_secs(31 * 60));
    repo.hold_lock(false)
        .expect("a lock older than 30 minutes is stale");
}

#[test]
fn a_live_lock_from_a_host_whose_clock_is_an_hour_behind_is_not_taken_for_stale() {
    let dir = tempfile::tempdir().unwrap();
    let loc = init(dir.path());
    // h9 holds the exclusive lock (a prune); its clock is an hour behind, so the time inside
    // the lock is an hour old while the file is fresh.
    let mut held = settings("h9", Duration::ZERO);
    held.locks.refresh_every = Duration::from_secs(3600);
    let h9 = RusticRepository::open_with(&loc, PASSWORD, None, held).unwrap();
    let excl = h9.hold_lock(true).unwrap();
    let skewer = open(&loc, "h-skew", Duration::ZERO);
    lifeboat_repo::craft::skew_locks(&skewer, Duration::from_secs(60 * 60)).unwrap();
    let repo = open(&loc, "h1", Duration::ZERO);
    let err = repo.hold_lock(false).unwrap_err();
    assert!(
        matches!(err, RepoError::Locked { .. }),
        "a backup ran beside a live prune: {err}"
    );
    assert_eq!(lock_files(&loc), 1, "the live lock was removed as stale");
    // Once the store's time says it was not refreshed for 31 minutes, it is stale.
    std::mem::forget(excl);
    drop(h9);
    age_all_locks(&loc, Duration::from_secs(31 * 60));
    repo.hold_lock(false)
        .expect("a lock the store wrote 31 minutes ago is stale");
}

/// Moves the time of every lock file of `loc` back by `by`, as if its holder had stopped
/// refreshing it that long ago (re-encrypted with the repository key).
fn age_all_locks(loc: &RepoLocation, by: Duration) {
    let repo = open(loc, "h-ager", Duration::ZERO);
    lifeboat_repo::craft::age_locks(&repo, by).unwrap();
}

struct SlowStream {
    released: std::sync::mpsc::Receiver<()>,
    sent: bool,
}

impl Read for SlowStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.sent {
            let _ = self.released.recv();
            return Ok(0);
        }
        self.sent = true;
        buf[..4].copy_from_slice(b"data");
        Ok(4)
    }
}

struct Slow(Option<SlowStream>);

impl StreamSource for Slow {
    fn reader(&mut self) -> Box<dyn Read + Send> {
        Box::new(self.0.take().unwrap())
    }
    fn finish(&mut self) -> Result<(), String> {
        Ok(())
    }
}

#[test]
fn a_backup_whose_lock_was_removed_meanwhile_commits_no_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let loc = init(dir.path());
    let mut s = settings("h1", Duration::ZERO);
    s.locks.refresh_every = Duration::from_millis(300);
    let repo = RusticRepository::open_with(&loc, PASSWORD, None, s).unwrap();
    let (release, released) = std::sync::mpsc::channel();
    let locks_dir = Path::new(&loc.0).join("locks");
    let remover = std::thread::spawn(move || {
        // Wait for the backup's lock, then remove it as `restic unlock --remove-all` would.
        let started = Instant::now();
        loop {
            // Written as `.tmp` and renamed: removing that before the rename would fail the
            // taking of the lock, not test losing it.
            let files: Vec<_> = std::fs::read_dir(&locks_dir)
                .map(|d| {
                    d.filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_none())
                        .collect()
                })
                .unwrap_or_default();
            // (A refresh replaces the lock file: one that vanished meanwhile is looked for again.)
            if files
                .first()
                .is_some_and(|f| std::fs::remove_file(f).is_ok())
            {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(20));
            std::thread::sleep(Duration::from_millis(20));
        }
        // Let the refresher notice before the stream ends and the snapshot is committed.
        std::thread::sleep(Duration::from_millis(1200));
        // The backup may have given up on the stream already (it saw the lock gone).
        let _ = release.send(());
    });
    let err = repo
        .backup_stream(
            &StreamBackup {
                path: "/dump/db.sql",
                tags: &[],
                description: None,
                time: None,
            },
            &mut Slow(Some(SlowStream {
                released,
                sent: false,
            })),
        )
        .unwrap_err();
    remover.join().unwrap();
    assert!(matches!(err, RepoError::LockLost { .. }), "{err}");
    assert!(err.to_string().contains("removed"), "{err}");
    assert!(
        repo.snapshots(&[]).unwrap().is_empty(),
        "a snapshot was committed"
    );
}

#[test]
fn deleting_snapshots_does_not_wait_for_another_hosts_backup_but_a_prune_does() {
    let dir = tempfile::tempdir().unwrap();
    let loc = init(dir.path());
    let h1 = open(&loc, "h1", Duration::ZERO);
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"orphan").unwrap();
    let part = lifeboat_testkit::backup_volume(&h1, &src);
    let h2 = open(&loc, "h2", Duration::ZERO);
    let backing_up = h2.hold_lock(false).unwrap();
    h1.delete(&[part.snapshot_id]).unwrap();
    assert!(h1.snapshots(&[]).unwrap().is_empty());
    assert!(matches!(h1.prune(), Err(RepoError::Locked { .. })));
    drop(backing_up);
    h1.prune().unwrap();
}
