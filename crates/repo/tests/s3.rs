//! S3 repositories against a real 3-node Garage cluster (replication factor 3), one per test:
//! round trips that restic reads, a node and the whole cluster dying mid-backup, injected
//! 503 SlowDown and connection resets, distinct errors for bad credentials, a missing bucket
//! and an unreachable endpoint, and several hosts sharing one repository.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use lifeboat_repo::s3::{RetryPolicy, S3Credentials, S3Settings};
use lifeboat_repo::{
    DirBackup, LockTimings, RepoError, RepoLocation, RepoSettings, Repository, RusticRepository,
};
use lifeboat_testkit::garage::{FaultProxy, Garage};

const PASSWORD: &str = "s3-test-password";

fn settings(g: &Garage, host: &str) -> RepoSettings {
    RepoSettings {
        s3: S3Settings {
            credentials: Some(S3Credentials {
                access_key_id: g.env["AWS_ACCESS_KEY_ID"].clone(),
                secret_access_key: g.env["AWS_SECRET_ACCESS_KEY"].clone(),
            }),
            region: Some(g.env["AWS_DEFAULT_REGION"].clone()),
            retry: RetryPolicy::default(),
        },
        cache_dir: None,
        host: host.into(),
        locks: LockTimings {
            wait: Duration::ZERO,
            ..LockTimings::default()
        },
    }
}

fn init(g: &Garage, location: &str) -> RusticRepository {
    RusticRepository::init_with(
        &RepoLocation(location.into()),
        PASSWORD,
        None,
        settings(g, "h1"),
    )
    .unwrap()
}

fn open(g: &Garage, location: &str, host: &str) -> RusticRepository {
    RusticRepository::open_with(
        &RepoLocation(location.into()),
        PASSWORD,
        None,
        settings(g, host),
    )
    .unwrap()
}

/// `files` files of `size` pseudo-random bytes each (seeded), plus the metadata corpus.
fn make_data(dir: &Path, files: usize, size: usize, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let mut random = lifeboat_testkit::PseudoRandom::new(seed);
    for i in 0..files {
        std::fs::write(dir.join(format!("f{i:04}")), random.bytes(size)).unwrap();
    }
}

fn backup(repo: &RusticRepository, src: &Path) -> Result<lifeboat_repo::PartReport, RepoError> {
    repo.backup_dir(&DirBackup {
        source: src,
        as_path: "/volumes/v",
        tags: &["lifeboat".to_string()],
        description: None,
        exclude: &[],
        pace: None,
    })
}

fn restic(g: &Garage, location: &str, args: &[&str]) -> std::process::Output {
    Command::new("restic")
        .args(["-r", location, "--no-cache"])
        .args(args)
        .env("RESTIC_PASSWORD", PASSWORD)
        .env("AWS_ACCESS_KEY_ID", &g.env["AWS_ACCESS_KEY_ID"])
        .env("AWS_SECRET_ACCESS_KEY", &g.env["AWS_SECRET_ACCESS_KEY"])
        .env("AWS_DEFAULT_REGION", &g.env["AWS_DEFAULT_REGION"])
        .output()
        .unwrap()
}

fn same_tree(a: &Path, b: &Path) {
    let diffs = lifeboat_testkit::compare_trees(a, b);
    assert!(diffs.is_empty(), "restored tree differs: {diffs:?}");
}

#[test]
fn a_directory_round_trips_through_garage_and_restic_lists_checks_and_restores_it() {
    let g = Garage::start();
    let loc = g.location("roundtrip");
    let repo = init(&g, &loc);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_data(&src, 40, 256 * 1024, 1);
    std::fs::create_dir_all(src.join("corpus")).unwrap();
    lifeboat_testkit::write_corpus(&src.join("corpus"));
    let report = backup(&repo, &src).unwrap();
    assert!(report.unreadable.is_empty());

    let out = work.path().join("out");
    repo.restore_dir(&report.snapshot_id, "/volumes/v", &out)
        .unwrap();
    same_tree(&src, &out);
    assert!(repo.check(true).unwrap().errors.is_empty());

    // No lock-in: restic reads the same bucket.
    let listed = restic(&g, &loc, &["snapshots", "--json"]);
    assert!(listed.status.success(), "{listed:?}");
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&report.snapshot_id[..8]));
    let checked = restic(&g, &loc, &["check", "--read-data"]);
    assert!(checked.status.success(), "{checked:?}");
    let by_restic = work.path().join("restic");
    let restored = restic(
        &g,
        &loc,
        &[
            "restore",
            &report.snapshot_id,
            "--target",
            &by_restic.display().to_string(),
        ],
    );
    assert!(restored.status.success(), "{restored:?}");
    // restic 0.14 writes holes as zeros (no --sparse yet): everything else is identical.
    let diffs =
        lifeboat_testkit::compare_trees_ignoring_sparseness(&src, &by_restic.join("volumes/v"));
    assert!(diffs.is_empty(), "restic's restore differs: {diffs:?}");
}

#[test]
fn a_backup_completes_with_one_garage_node_killed_midway_and_check_read_data_is_clean() {
    let g = Garage::start();
    let loc = g.location("node-down");
    let repo = init(&g, &loc);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_data(&src, 120, 512 * 1024, 2);
    let started = Instant::now();
    let killer = {
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                std::thread::sleep(Duration::from_millis(700));
                g.kill_node(3);
                started.elapsed()
            });
            let r = backup(&repo, &src);
            (r, h.join().unwrap(), started.elapsed())
        })
    };
    let (result, killed_at, took) = killer;
    let report = result.unwrap();
    assert!(
        killed_at < took,
        "node 3 was killed after the backup ended ({killed_at:?} >= {took:?}): the test proved nothing"
    );
    let report_check = repo.check(true).unwrap();
    assert!(report_check.errors.is_empty(), "{:?}", report_check.errors);
    let out = work.path().join("out");
    repo.restore_dir(&report.snapshot_id, "/volumes/v", &out)
        .unwrap();
    same_tree(&src, &out);
    g.start_node(3);
}

#[test]
fn with_the_whole_cluster_down_midway_the_backup_fails_within_its_retry_budget_and_commits_nothing()
{
    let g = Garage::start();
    let loc = g.location("all-down");
    let repo = init(&g, &loc);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_data(&src, 120, 512 * 1024, 3);
    let started = Instant::now();
    let (result, killed_at, ended_at) = std::thread::scope(|s| {
        let h = s.spawn(|| {
            std::thread::sleep(Duration::from_millis(500));
            for n in [1, 2, 3] {
                g.kill_node(n);
            }
            started.elapsed()
        });
        let r = backup(&repo, &src);
        (r, h.join().unwrap(), started.elapsed())
    });
    let err = result.expect_err("a backup with every node dead succeeded");
    assert!(
        matches!(
            err,
            RepoError::StorageUnreachable { .. } | RepoError::Storage { .. }
        ),
        "{err}"
    );
    // The budget: 6 attempts, waits of at most 0.25+0.5+1+2+4 s, each attempt failing fast
    // (connection refused): well under 30 s after the cluster died.
    let after_death = ended_at.saturating_sub(killed_at);
    assert!(
        after_death < Duration::from_secs(30),
        "gave up {after_death:?} after the cluster died"
    );
    for n in [1, 2, 3] {
        g.start_node(n);
    }
    // Back up: nothing was committed, and the next backup works.
    let repo = wait_open(&g, &loc);
    assert!(repo.snapshots(&[]).unwrap().is_empty());
    let report = backup(&repo, &src).unwrap();
    assert_eq!(repo.snapshots(&[]).unwrap().len(), 1);
    assert!(repo.check(false).unwrap().errors.is_empty());
    assert!(report.files >= 120);
}

fn wait_open(g: &Garage, loc: &str) -> RusticRepository {
    let started = Instant::now();
    loop {
        match RusticRepository::open_with(
            &RepoLocation(loc.into()),
            PASSWORD,
            None,
            settings(g, "h1"),
        ) {
            Ok(r) => return r,
            Err(e) if started.elapsed() < Duration::from_secs(60) => {
                eprintln!("cluster not back yet: {e}");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!("the cluster did not come back: {e}"),
        }
    }
}

#[test]
fn twenty_percent_slowdowns_and_resets_are_retried_and_the_restore_is_identical() {
    let g = Garage::start();
    let proxy = FaultProxy::start(g.port, 200);
    let loc = g.location_via(&proxy, "faulty");
    let repo = init(&g, &loc);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_data(&src, 30, 256 * 1024, 4);
    let report = backup(&repo, &src).unwrap();
    let out = work.path().join("out");
    repo.restore_dir(&report.snapshot_id, "/volumes/v", &out)
        .unwrap();
    same_tree(&src, &out);
    let (seen, failed) = proxy.counts();
    assert!(
        failed * 10 >= seen,
        "only {failed} of {seen} requests failed"
    );
    // Straight to Garage, the repository is whole.
    let direct = open(&g, &g.location("faulty"), "h1");
    assert!(direct.check(true).unwrap().errors.is_empty());
}

#[test]
fn with_every_request_failing_the_backup_ends_within_its_budget_and_writes_no_snapshot() {
    let g = Garage::start();
    let proxy = FaultProxy::start(g.port, 0);
    let loc = g.location_via(&proxy, "doomed");
    let repo = init(&g, &loc);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_data(&src, 10, 256 * 1024, 5);
    proxy
        .failure_permille
        .store(1000, std::sync::atomic::Ordering::SeqCst);
    let started = Instant::now();
    let err = backup(&repo, &src).expect_err("succeeded with every request failing");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.to_string().contains("6 times") || err.to_string().contains("6 attempts"),
        "the error names the attempts: {err}"
    );
    // For 30 s after a request used up its retries, this handle fails at once.
    let again = repo
        .snapshots(&[])
        .expect_err("the tripped client sent a request");
    assert!(again.to_string().contains("6 times"), "{again}");
    proxy
        .failure_permille
        .store(0, std::sync::atomic::Ordering::SeqCst);
    // The next run (a new handle) finds the storage back and nothing committed.
    let next = open(&g, &loc, "h1");
    assert!(next.snapshots(&[]).unwrap().is_empty());
    backup(&next, &src).unwrap();
}

#[test]
fn wrong_credentials_a_missing_bucket_and_an_unreachable_endpoint_are_told_apart() {
    let g = Garage::start();
    let loc = g.location("errors");
    init(&g, &loc);
    let mut wrong = settings(&g, "h1");
    wrong.s3.credentials.as_mut().unwrap().secret_access_key = "0".repeat(64);
    let open_with = |l: &str, s: RepoSettings| {
        RusticRepository::open_with(&RepoLocation(l.into()), PASSWORD, None, s).err()
    };
    let denied = open_with(&loc, wrong).expect("opened with a wrong secret");
    assert!(
        matches!(denied, RepoError::StorageDenied { .. }),
        "{denied}"
    );
    let missing = open_with(
        &format!("s3:http://127.0.0.1:{}/no-such-bucket/x", g.port),
        settings(&g, "h1"),
    )
    .expect("opened a missing bucket");
    assert!(matches!(missing, RepoError::NoBucket { .. }), "{missing}");
    assert!(missing.to_string().contains("garage bucket create"));
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut quick = settings(&g, "h1");
    quick.s3.retry.attempts = 2;
    let unreachable = open_with(&format!("s3:http://127.0.0.1:{free}/lifeboat/x"), quick)
        .expect("opened an unreachable endpoint");
    assert!(
        matches!(unreachable, RepoError::StorageUnreachable { .. }),
        "{unreachable}"
    );
    let not_there = open_with(&g.location("never-created"), settings(&g, "h1"))
        .expect("opened a repository that was never created");
    assert!(
        matches!(not_there, RepoError::NotFound { .. }),
        "{not_there}"
    );
    // Nothing was written by any of them.
    let out = restic(&g, &g.location("never-created"), &["cat", "config"]);
    assert!(!out.status.success());
}

#[test]
fn a_second_host_uploads_far_less_of_overlapping_data_and_a_prune_meanwhile_is_refused() {
    let g = Garage::start();
    let loc = g.location("fleet");
    init(&g, &loc);
    let h1 = open(&g, &loc, "h1");
    let h2 = open(&g, &loc, "h2");
    let work = tempfile::tempdir().unwrap();
    let shared = work.path().join("shared");
    make_data(&shared, 40, 256 * 1024, 6);
    let first = backup(&h1, &shared).unwrap();

    // h2 backs up the same data (plus a little of its own) while h1 backs up again; a prune
    // started meanwhile by a third host finds their locks and refuses.
    let own = work.path().join("h2");
    make_data(&own, 40, 256 * 1024, 6);
    make_data(&own.join("extra"), 2, 256 * 1024, 7);
    let h3 = open(&g, &loc, "h3");
    let (second, again, pruned) = std::thread::scope(|s| {
        let a = s.spawn(|| backup(&h2, &own));
        let b = s.spawn(|| {
            let lock = h1.hold_lock(false).unwrap();
            let r = backup(&h1, &shared);
            std::thread::sleep(Duration::from_millis(300));
            drop(lock);
            r
        });
        std::thread::sleep(Duration::from_millis(150));
        let p = h3.prune();
        (a.join().unwrap(), b.join().unwrap(), p)
    });
    let (second, again) = (second.unwrap(), again.unwrap());
    assert!(
        matches!(pruned, Err(RepoError::Locked { .. })),
        "a prune ran during two backups: {pruned:?}"
    );
    assert!(
        second.added_bytes * 4 < first.added_bytes,
        "h2 uploaded {} bytes of data h1 had stored as {}",
        second.added_bytes,
        first.added_bytes
    );
    assert!(again.added_bytes * 10 < first.added_bytes);
    // Each host's snapshots carry its name.
    let hosts: Vec<String> = h1
        .snapshots(&[])
        .unwrap()
        .into_iter()
        .map(|s| s.hostname)
        .collect();
    assert_eq!(hosts.len(), 3, "{hosts:?}");
    // restic's prune refuses while a Lifeboat host holds its lock, here on S3 too.
    let held = h2.hold_lock(false).unwrap();
    let out = restic(&g, &loc, &["prune"]);
    assert!(!out.status.success(), "restic pruned under Lifeboat's lock");
    drop(held);
    h3.prune().unwrap();
}

#[test]
fn a_no_change_backup_reads_the_index_from_the_cache_not_the_bucket() {
    let g = Garage::start();
    let proxy = FaultProxy::start(g.port, 0);
    let loc = g.location_via(&proxy, "cached");
    init(&g, &loc);
    let cache = tempfile::tempdir().unwrap();
    let mut s = settings(&g, "h1");
    s.cache_dir = Some(cache.path().to_path_buf());
    let repo =
        RusticRepository::open_with(&RepoLocation(loc.clone()), PASSWORD, None, s.clone()).unwrap();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_data(&src, 20, 128 * 1024, 8);
    backup(&repo, &src).unwrap();
    drop(repo);
    // A new process's view: open again, back up the unchanged data.
    proxy.requests.lock().unwrap().clear();
    let repo = RusticRepository::open_with(&RepoLocation(loc), PASSWORD, None, s).unwrap();
    let report = backup(&repo, &src).unwrap();
    // At most a tree blob whose metadata moved (the directory's access time).
    assert!(
        report.added_bytes < 4096,
        "an unchanged tree added {} bytes",
        report.added_bytes
    );
    let gets: Vec<String> = proxy
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.starts_with("GET ") && (r.contains("/index/") || r.contains("/snapshots/")))
        .cloned()
        .collect();
    assert!(
        gets.is_empty(),
        "index or snapshot files downloaded again: {gets:?}"
    );
}

#[test]
fn on_s3_a_live_lock_from_a_host_whose_clock_is_behind_is_judged_by_the_stores_clock() {
    let g = Garage::start();
    let loc = g.location("skew");
    init(&g, &loc);
    // h9 holds the exclusive lock; its clock is an hour behind (the time inside the lock is
    // an hour old), while Garage's LastModified says the object is fresh.
    let mut held = settings(&g, "h9");
    held.locks.refresh_every = Duration::from_secs(3600);
    let h9 = RusticRepository::open_with(&RepoLocation(loc.clone()), PASSWORD, None, held).unwrap();
    let _excl = h9.hold_lock(true).unwrap();
    let skewer = open(&g, &loc, "h-skew");
    lifeboat_repo::craft::skew_locks(&skewer, Duration::from_secs(60 * 60)).unwrap();
    let err = open(&g, &loc, "h1").hold_lock(false).unwrap_err();
    assert!(
        matches!(err, RepoError::Locked { .. }),
        "a backup ran beside a live prune: {err}"
    );
}
