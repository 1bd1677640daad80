//! Behaviour suites that every implementation of a trait must pass: the real engine in the
//! engine tests, the stand-ins here in unit tests (restic's backend test suite is the model).
//! A stand-in that passes is fit for unit tests of the logic above it; it proves nothing
//! about features.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use lifeboat_repo::{
    DirBackup, EntryMeta, FileProducer, RepoError, Repository, StreamBackup, StreamSource,
    TreeBackup,
};

struct Producer {
    data: Vec<u8>,
    verdict: Result<(), String>,
}

impl StreamSource for Producer {
    fn reader(&mut self) -> Box<dyn Read + Send> {
        Box::new(std::io::Cursor::new(std::mem::take(&mut self.data)))
    }
    fn finish(&mut self) -> Result<(), String> {
        self.verdict.clone()
    }
}

/// Bytes produced on demand, with a verdict; counts its starts.
struct Made {
    data: Vec<u8>,
    start: Result<(), String>,
    verdict: Result<(), String>,
    starts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl FileProducer for Made {
    fn start(&mut self) -> Result<Box<dyn Read + Send>, String> {
        self.starts
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.start.clone()?;
        let data = std::mem::take(&mut self.data);
        Ok(Box::new(std::io::Cursor::new(data)))
    }
    fn finish(&mut self) -> Result<(), String> {
        self.verdict.clone()
    }
}

fn tags(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The [`Repository`] contract, against `repo` (empty), with scratch space in `scratch`.
pub fn repository(repo: &dyn Repository, scratch: &Path) {
    // A directory round-trips: content, modes, symlinks; excluded paths stay out.
    let src = scratch.join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/a.txt"), b"alpha").unwrap();
    std::fs::write(src.join("secret"), b"s").unwrap();
    std::fs::set_permissions(src.join("secret"), PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::write(src.join("skip.db"), b"live").unwrap();
    std::os::unix::fs::symlink("sub/a.txt", src.join("link")).unwrap();
    let exclude = [src.join("skip.db")];
    let t1 = tags(&["lifeboat", "part=volume"]);
    let part = repo
        .backup_dir(&DirBackup {
            source: &src,
            as_path: "/volumes/v",
            tags: &t1,
            description: Some("first".into()),
            exclude: &exclude,
            pace: None,
        })
        .unwrap();
    assert!(!part.snapshot_id.is_empty());
    let out = scratch.join("out");
    repo.restore_dir(&part.snapshot_id, "/volumes/v", &out)
        .unwrap();
    assert_eq!(std::fs::read(out.join("sub/a.txt")).unwrap(), b"alpha");
    let mode = std::fs::metadata(out.join("secret"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        std::fs::read_link(out.join("link")).unwrap(),
        Path::new("sub/a.txt")
    );
    assert!(
        !out.join("skip.db").exists(),
        "excluded paths are not stored"
    );

    // A stream round-trips through dump; a failed producer leaves nothing behind.
    let t2 = tags(&["lifeboat", "part=dump"]);
    let stream = repo
        .backup_stream(
            &StreamBackup {
                path: "/dumps/postgres.sql",
                tags: &t2,
                description: None,
                time: None,
            },
            &mut Producer {
                data: b"-- dump\nCOMMIT;\n".to_vec(),
                verdict: Ok(()),
            },
        )
        .unwrap();
    let mut dumped = Vec::new();
    let n = repo
        .dump(&stream.snapshot_id, "/dumps/postgres.sql", &mut dumped)
        .unwrap();
    assert_eq!((n, dumped.as_slice()), (16, &b"-- dump\nCOMMIT;\n"[..]));
    let before = repo.snapshots(&[]).unwrap().len();
    let failed = repo.backup_stream(
        &StreamBackup {
            path: "/dumps/postgres.sql",
            tags: &t2,
            description: None,
            time: None,
        },
        &mut Producer {
            data: b"-- truncated".to_vec(),
            verdict: Err("pg_dump exited with status 1".into()),
        },
    );
    assert!(matches!(failed, Err(RepoError::StreamFailed { .. })));
    assert_eq!(
        repo.snapshots(&[]).unwrap().len(),
        before,
        "no snapshot left"
    );

    // Listing filters by every tag, oldest first, with the description kept.
    let volumes = repo.snapshots(&tags(&["part=volume"])).unwrap();
    assert_eq!(volumes.len(), 1);
    assert_eq!(volumes[0].description.as_deref(), Some("first"));
    let all = repo.snapshots(&tags(&["lifeboat"])).unwrap();
    assert_eq!(all.len(), 2);
    assert!(all[0].time <= all[1].time);
    assert!(
        repo.snapshots(&tags(&["lifeboat", "nope"]))
            .unwrap()
            .is_empty()
    );

    // Deleting removes from the listing; deleting it again (a concurrent run got there
    // first) is no error; a restore of it is named as not found.
    repo.delete(std::slice::from_ref(&stream.snapshot_id))
        .unwrap();
    assert_eq!(repo.snapshots(&tags(&["lifeboat"])).unwrap().len(), 1);
    repo.delete(std::slice::from_ref(&stream.snapshot_id))
        .expect("deleting a snapshot already gone");
    assert_eq!(repo.snapshots(&tags(&["lifeboat"])).unwrap().len(), 1);
    let gone = repo.restore_dir(&stream.snapshot_id, "/dumps", &scratch.join("gone"));
    assert!(
        matches!(gone, Err(RepoError::SnapshotNotFound { .. })),
        "{gone:?}"
    );
    assert!(!repo.id().is_empty());
    assert_eq!(repo.id(), repo.id());
    produced_trees(repo, scratch);
}

/// A tree of produced files round-trips with its modes; a producer that fails to start or
/// finishes with an error leaves no snapshot.
fn produced_trees(repo: &dyn Repository, scratch: &Path) {
    let starts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let made = |data: &[u8], start: Result<(), String>, verdict: Result<(), String>| {
        Box::new(Made {
            data: data.to_vec(),
            start,
            verdict,
            starts: starts.clone(),
        }) as Box<dyn FileProducer>
    };
    let own = std::fs::metadata(scratch).unwrap();
    let (uid, gid) = (
        std::os::unix::fs::MetadataExt::uid(&own),
        std::os::unix::fs::MetadataExt::gid(&own),
    );
    let meta = |mode| EntryMeta {
        uid,
        gid,
        mode,
        mtime: Some(jiff::Timestamp::from_second(1_700_000_000).unwrap()),
    };
    let t = tags(&["lifeboat", "part=sqlite"]);
    let tree = |files| TreeBackup {
        as_path: "/sqlite/volumes/v",
        tags: &t,
        root: meta(0o750),
        dirs: vec![("sub".into(), meta(0o700))],
        files,
    };
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let part = repo
        .backup_tree(tree(vec![
            ("sub/app.db".into(), meta(0o640), made(&big, Ok(()), Ok(()))),
            (
                "x/y/top.db".into(),
                meta(0o600),
                made(b"top", Ok(()), Ok(())),
            ),
        ]))
        .unwrap();
    assert_eq!((part.files, part.bytes), (2, big.len() as u64 + 3));
    assert_eq!(starts.load(std::sync::atomic::Ordering::SeqCst), 2);
    let out = scratch.join("tree-out");
    repo.restore_dir(&part.snapshot_id, "/sqlite/volumes/v", &out)
        .unwrap();
    assert_eq!(std::fs::read(out.join("sub/app.db")).unwrap(), big);
    assert_eq!(std::fs::read(out.join("x/y/top.db")).unwrap(), b"top");
    let mode = |p: &str| std::fs::metadata(out.join(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(
        [
            mode(""),
            mode("sub"),
            mode("sub/app.db"),
            mode("x/y/top.db")
        ],
        [0o750, 0o700, 0o640, 0o600]
    );
    let before = repo.snapshots(&[]).unwrap().len();
    for (start, verdict) in [
        (Err("the database is locked".to_string()), Ok(())),
        (Ok(()), Err("the read transaction ended early".to_string())),
    ] {
        let failed = repo.backup_tree(tree(vec![
            ("a.db".into(), meta(0o600), made(b"fine", Ok(()), Ok(()))),
            ("b.db".into(), meta(0o600), made(b"torn", start, verdict)),
        ]));
        assert!(
            matches!(&failed, Err(RepoError::StreamFailed { reason, .. }) if reason.contains("the ")),
            "{failed:?}"
        );
        assert_eq!(
            repo.snapshots(&[]).unwrap().len(),
            before,
            "no snapshot left"
        );
    }
}

/// The [`lifeboat_docker::Engine`] contract, against `engine` with `image` present (it must
/// run `sleep`); object names start with `prefix` (unique per run).
pub fn engine(engine: &dyn lifeboat_docker::Engine, image: &str, prefix: &str) {
    use lifeboat_docker::{ContainerStatus, EngineError};
    use lifeboat_model::{ContainerConfig, MountKind, MountSpec};
    let (vol, name) = (format!("{prefix}-vol"), format!("{prefix}-ctr"));
    assert!(
        engine.container(&name).unwrap().is_none(),
        "unknown is None"
    );
    assert!(engine.volume(&vol).unwrap().is_none());
    let v = engine
        .create_volume(&vol, "local", &Default::default())
        .unwrap();
    assert!(
        Path::new(&v.mountpoint).is_dir(),
        "a volume is a host directory"
    );
    assert!(engine.volume_names().unwrap().contains(&vol));
    let config = ContainerConfig {
        image: image.to_string(),
        cmd: Some(vec!["sleep".into(), "86400".into()]),
        mounts: vec![MountSpec {
            kind: MountKind::Volume,
            source: vol.clone(),
            destination: "/data".into(),
            read_only: false,
            driver: "local".into(),
            volume_labels: Default::default(),
        }],
        ..Default::default()
    };
    let id = engine.create_container(&name, &config).unwrap();
    let again = engine.create_container(&name, &config);
    assert!(
        matches!(
            again,
            Err(EngineError::Conflict { .. } | EngineError::Api { .. })
        ),
        "a second container of the same name is refused: {again:?}"
    );
    let created = engine.container(&name).unwrap().expect("created");
    assert_eq!(
        (created.id.as_str(), created.name.as_str()),
        (id.as_str(), name.as_str())
    );
    assert!(!created.state.running);
    assert_eq!(created.mounts.len(), 1);
    assert_eq!(
        created.mounts[0].host_path, v.mountpoint,
        "the mount reads from the volume"
    );
    assert!(engine.container(&id).unwrap().is_some(), "found by id too");
    engine.start_container(&name).unwrap();
    let started = engine.container(&name).unwrap().unwrap();
    assert!(started.state.running);
    assert_eq!(started.state.status, Some(ContainerStatus::Running));
    let out = engine
        .exec(
            &name,
            &["true".to_string()],
            std::time::Duration::from_secs(20),
        )
        .unwrap();
    assert_eq!(out.exit_code, Some(0));
    engine.pause_container(&name).unwrap();
    assert!(engine.container(&name).unwrap().unwrap().state.is_paused());
    engine.unpause_container(&name).unwrap();
    engine.stop_container(&name, 1).unwrap();
    assert!(!engine.container(&name).unwrap().unwrap().state.running);
    engine.remove_container(&name).unwrap();
    assert!(engine.container(&name).unwrap().is_none());
    engine.remove_volume(&vol).unwrap();
    assert!(engine.volume(&vol).unwrap().is_none());
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fake_engine_passes_the_engine_contract() {
        let dir = tempfile::tempdir().unwrap();
        let engine = crate::FakeEngine::new(dir.path());
        engine.add_image("lifeboat-test/busybox:1");
        super::engine(&engine, "lifeboat-test/busybox:1", "contract");
    }
}
