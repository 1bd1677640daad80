//! Core's backup, restore planning and stack ordering on the stand-ins (a fake engine and an
//! in-memory repository): fast checks of the logic. The engine tests are the proof that the
//! features work.

use std::path::Path;
use std::time::Duration;

use lifeboat_core::stack::{Selection, plan_stack};
use lifeboat_core::{
    BackupRequest, CoreError, Priority, RestoreRequest, backup_container, list_backups,
    restore_container,
};
use lifeboat_docker::Engine;
use lifeboat_model::{ContainerConfig, MountKind, MountSpec, tags};
use lifeboat_repo::Repository;
use lifeboat_testkit::{FakeEngine, MemoryRepository};

const IMAGE: &str = "agent:1";

fn quiet(_: &str) {}

fn request(state: &Path) -> BackupRequest {
    BackupRequest {
        priority: Priority::Normal,
        ..BackupRequest::new("/".into(), state.to_path_buf(), "test".into())
    }
}

/// Retention `last=1` of every host's backups, no safety gates, nothing pruned, now.
fn last_one(state: &Path, force: bool) -> lifeboat_core::RetentionRequest {
    lifeboat_core::RetentionRequest {
        retention: lifeboat_model::policy::Retention::parse("last=1").unwrap(),
        state_dir: state.to_path_buf(),
        host: None,
        newest_attempt_failed: false,
        shrink_ratio: 0.0,
        margin: std::time::Duration::ZERO,
        force,
        dry_run: false,
        verified: None,
        prune: false,
        now: jiff::Timestamp::now(),
    }
}

fn restore_request(state: &Path) -> RestoreRequest {
    RestoreRequest {
        health_timeout: Duration::from_secs(5),
        ..RestoreRequest::new(request(state))
    }
}

/// A running container `name` with volume `name-data` holding `state` = `content`.
fn service(engine: &FakeEngine, name: &str, labels: &[(&str, &str)], content: &str) {
    let vol = format!("{name}-data");
    let v = engine
        .create_volume(&vol, "local", &Default::default())
        .unwrap();
    std::fs::write(Path::new(&v.mountpoint).join("state"), content).unwrap();
    let config = ContainerConfig {
        image: IMAGE.into(),
        mounts: vec![MountSpec {
            kind: MountKind::Volume,
            source: vol,
            destination: "/data".into(),
            read_only: false,
            driver: "local".into(),
            volume_labels: Default::default(),
        }],
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    engine.create_container(name, &config).unwrap();
    engine.start_container(name).unwrap();
}

fn world() -> (tempfile::TempDir, FakeEngine, MemoryRepository) {
    let dir = tempfile::tempdir().unwrap();
    let engine = FakeEngine::new(&dir.path().join("engine"));
    engine.add_image(IMAGE);
    (dir, engine, MemoryRepository::new())
}

#[test]
fn a_backup_stores_its_parts_first_and_commits_with_the_manifest_last() {
    let (dir, engine, repo) = world();
    service(&engine, "web", &[], "v1");
    let out = backup_container(&engine, &repo, "web", &request(dir.path()), &quiet).unwrap();
    let id = out.manifest.backup_id.0.clone();
    let all = repo.snapshots(&[tags::backup(&id)]).unwrap();
    assert!(all.len() >= 2, "{all:?}");
    let last = all.last().unwrap();
    assert!(
        last.tags.iter().any(|t| t == tags::MANIFEST),
        "the manifest commits: {last:?}"
    );
    assert!(
        all[..all.len() - 1]
            .iter()
            .all(|s| !s.tags.iter().any(|t| t == tags::MANIFEST))
    );
    assert_eq!(list_backups(&repo, Some("web")).unwrap().len(), 1);
}

#[test]
fn a_restore_over_an_existing_container_is_refused_before_anything_changes() {
    let (dir, engine, repo) = world();
    service(&engine, "web", &[], "v1");
    backup_container(&engine, &repo, "web", &request(dir.path()), &quiet).unwrap();
    let before = engine.calls();
    let err =
        restore_container(&engine, &repo, "web", &restore_request(dir.path()), &quiet).unwrap_err();
    assert!(matches!(err, CoreError::Refused { .. }), "{err}");
    assert_eq!(engine.calls(), before, "nothing was changed");
}

#[test]
fn a_restore_after_loss_recreates_the_volume_then_the_container_and_starts_it() {
    let (dir, engine, repo) = world();
    service(&engine, "web", &[], "v1");
    backup_container(&engine, &repo, "web", &request(dir.path()), &quiet).unwrap();
    engine.remove_container("web").unwrap();
    engine.remove_volume("web-data").unwrap();
    let mark = engine.calls().len();
    let out =
        restore_container(&engine, &repo, "web", &restore_request(dir.path()), &quiet).unwrap();
    assert!(out.started);
    let calls = engine.calls()[mark..].to_vec();
    // This engine shows no writable layer: it was committed at backup, and its image is
    // loaded to create the container from.
    assert_eq!(
        calls,
        [
            "create volume web-data",
            "load image sha256:commit-00000001",
            "create web",
            "start web"
        ]
    );
    let web = engine.container("web").unwrap().unwrap();
    assert_eq!(web.config.image, "sha256:commit-00000001");
    let v = engine.volume("web-data").unwrap().unwrap();
    assert_eq!(
        std::fs::read_to_string(Path::new(&v.mountpoint).join("state")).unwrap(),
        "v1"
    );
}

#[test]
fn a_restore_as_a_path_is_refused_as_a_bad_name() {
    let (dir, engine, repo) = world();
    service(&engine, "web", &[], "v1");
    backup_container(&engine, &repo, "web", &request(dir.path()), &quiet).unwrap();
    let mut req = restore_request(dir.path());
    req.as_name = Some("x/../../../victim".into());
    let before = engine.calls();
    let err = restore_container(&engine, &repo, "web", &req, &quiet).unwrap_err();
    assert!(matches!(err, CoreError::BadName(_)), "{err}");
    assert_eq!(engine.calls(), before);
}

#[test]
fn a_stack_is_planned_in_dependency_order_from_every_kind_of_declaration() {
    let (dir, engine, repo) = world();
    service(&engine, "db", &[], "rows");
    service(&engine, "agent", &[("lifeboat.depends-on", "db")], "cfg");
    service(&engine, "web", &[("lifeboat.depends-on", "agent")], "html");
    let mut req = request(dir.path());
    req.run_id = Some("run-1".into());
    for name in ["web", "agent", "db"] {
        backup_container(&engine, &repo, name, &req, &quiet).unwrap();
    }
    let plan = plan_stack(
        &engine,
        &repo,
        &Selection::Names(vec!["web".into(), "agent".into(), "db".into()]),
        None,
    )
    .unwrap();
    assert_eq!(
        plan.levels,
        [
            vec!["db".to_string()],
            vec!["agent".into()],
            vec!["web".into()]
        ]
    );
    assert_eq!(plan.run_id.as_deref(), Some("run-1"));
}

#[test]
fn a_restored_container_that_exits_for_good_fails_its_wait_at_once_with_its_log() {
    let (dir, engine, repo) = world();
    service(&engine, "agent", &[], "cfg");
    let mut config = engine.container("agent").unwrap().unwrap().config;
    config.healthcheck = Some(lifeboat_model::Healthcheck {
        test: vec!["CMD".into(), "true".into()],
        ..Default::default()
    });
    engine.remove_container("agent").unwrap();
    engine.create_container("agent", &config).unwrap();
    engine.start_container("agent").unwrap();
    backup_container(&engine, &repo, "agent", &request(dir.path()), &quiet).unwrap();
    engine.remove_container("agent").unwrap();
    engine.remove_volume("agent-data").unwrap();
    engine.crash_on_start(3, "connecting to db:5432\nFATAL: connection refused");
    let mut req = restore_request(dir.path());
    // Waiting out the timeout would end in `Unhealthy`; an ended container is `Ended`.
    req.health_timeout = Duration::from_secs(30);
    let err = restore_container(&engine, &repo, "agent", &req, &quiet).unwrap_err();
    match &err {
        CoreError::Ended { code, log, .. } => {
            assert_eq!(*code, Some(3));
            assert!(log.contains("connection refused"), "{log}");
        }
        other => panic!("expected Ended, got {other}"),
    }
}

/// A running container `name` mounting the volume `vol` (created if missing) on /data.
fn mounting(engine: &FakeEngine, name: &str, vol: &str) {
    if engine.volume(vol).unwrap().is_none() {
        let v = engine
            .create_volume(vol, "local", &Default::default())
            .unwrap();
        std::fs::write(Path::new(&v.mountpoint).join("shared"), "both see this").unwrap();
    }
    let config = ContainerConfig {
        image: IMAGE.into(),
        mounts: vec![MountSpec {
            kind: MountKind::Volume,
            source: vol.into(),
            destination: "/data".into(),
            read_only: false,
            driver: "local".into(),
            volume_labels: Default::default(),
        }],
        ..Default::default()
    };
    engine.create_container(name, &config).unwrap();
    engine.start_container(name).unwrap();
}

#[test]
fn a_volume_two_services_share_is_restored_once_and_mounted_by_both() {
    for rename in [false, true] {
        let (dir, engine, repo) = world();
        mounting(&engine, "agent", "spool");
        mounting(&engine, "web", "spool");
        let mut req = request(dir.path());
        req.run_id = Some("run-1".into());
        for name in ["agent", "web"] {
            backup_container(&engine, &repo, name, &req, &quiet).unwrap();
        }
        for name in ["agent", "web"] {
            engine.remove_container(name).unwrap();
        }
        engine.remove_volume("spool").unwrap();
        let names = vec!["agent".to_string(), "web".to_string()];
        let plan = plan_stack(&engine, &repo, &Selection::Names(names), None).unwrap();
        assert_eq!(plan.levels, [vec!["agent".to_string()], vec!["web".into()]]);
        let mark = engine.calls().len();
        let to = |s: &str| rename.then(|| format!("copy-{s}"));
        let results = lifeboat_core::stack::restore_stack(
            &engine,
            &repo,
            &plan,
            &restore_request(dir.path()),
            &to,
            Duration::from_secs(30),
            &quiet,
        );
        assert!(results.iter().all(|r| r.ok), "{results:?}");
        let volume = if rename { "copy-agent_spool" } else { "spool" };
        let created: Vec<_> = engine.calls()[mark..]
            .iter()
            .filter(|c| c.starts_with("create volume"))
            .cloned()
            .collect();
        assert_eq!(
            created,
            [format!("create volume {volume}")],
            "restored once"
        );
        let web = engine
            .container(if rename { "copy-web" } else { "web" })
            .unwrap()
            .unwrap();
        assert_eq!(
            web.config.mounts[0].source, volume,
            "the second service mounts it"
        );
        let v = engine.volume(volume).unwrap().unwrap();
        assert_eq!(
            std::fs::read_to_string(Path::new(&v.mountpoint).join("shared")).unwrap(),
            "both see this"
        );
    }
}

#[test]
fn in_a_run_a_shared_volume_is_stored_once_and_survives_the_retention_of_its_first_backup() {
    // Deleting snapshots is the repository's work: this one runs on the real engine.
    let (dir, engine, _) = world();
    let loc = lifeboat_repo::RepoLocation(dir.path().join("repo").display().to_string());
    let repo = lifeboat_repo::RusticRepository::init(&loc, "pw", None).unwrap();
    mounting(&engine, "agent", "spool");
    mounting(&engine, "web", "spool");
    let mut req = request(dir.path());
    req.run_id = Some("run-1".into());
    req.run_parts = Some(Default::default());
    let a = backup_container(&engine, &repo, "agent", &req, &quiet).unwrap();
    let w = backup_container(&engine, &repo, "web", &req, &quiet).unwrap();
    let vol = |m: &lifeboat_model::Manifest| {
        m.parts
            .iter()
            .find(|p| p.kind == lifeboat_model::PartKind::Volume)
            .unwrap()
            .snapshot_id
            .clone()
    };
    assert_eq!(vol(&a.manifest), vol(&w.manifest), "one part for both");
    let volume_parts = repo
        .snapshots(&[tags::part(lifeboat_model::PartKind::Volume)])
        .unwrap();
    assert_eq!(volume_parts.len(), 1, "stored once");
    // A later backup of agent alone; retention then deletes agent's first backup, while
    // web's still refers to the shared part: the part must stay.
    backup_container(&engine, &repo, "agent", &request(dir.path()), &quiet).unwrap();
    let out = lifeboat_core::apply_retention(
        &repo,
        "agent",
        &lifeboat_core::RetentionRequest {
            prune: true,
            ..last_one(dir.path(), true)
        },
        &quiet,
    )
    .unwrap();
    assert_eq!(out.deleted, std::slice::from_ref(&a.manifest.backup_id.0));
    assert!(
        repo.snapshots(&[])
            .unwrap()
            .iter()
            .any(|s| s.id == vol(&w.manifest)),
        "the shared part survives"
    );
    // And the next backup of agent does not take it for an orphan.
    backup_container(&engine, &repo, "agent", &request(dir.path()), &quiet).unwrap();
    assert!(
        repo.snapshots(&[])
            .unwrap()
            .iter()
            .any(|s| s.id == vol(&w.manifest))
    );
}

#[test]
fn a_drill_restores_into_its_sandbox_probes_and_leaves_production_and_nothing_else() {
    let (dir, engine, repo) = world();
    mounting(&engine, "agent", "spool");
    let mut config = engine.container("agent").unwrap().unwrap().config;
    config
        .labels
        .insert("lifeboat.probe".into(), "answer".into());
    engine.remove_container("agent").unwrap();
    engine.create_container("agent", &config).unwrap();
    engine.start_container("agent").unwrap();
    backup_container(&engine, &repo, "agent", &request(dir.path()), &quiet).unwrap();
    let mark = engine.calls().len();
    let before_containers = engine.container_names().unwrap();
    let before_volumes = engine.volume_names().unwrap();
    // The probe answers in the copy only: production must not be probed.
    engine.on_exec(|container, cmd| lifeboat_docker::ExecOutput {
        exit_code: Some(if container.starts_with("lbdrill-") {
            0
        } else {
            9
        }),
        output: format!("{container}: {}", cmd.join(" ")),
    });
    let report = lifeboat_core::drill::run_drill(
        &engine,
        &repo,
        &lifeboat_core::drill::DrillRequest {
            selection: Selection::Names(vec!["agent".into()]),
            at: None,
            timeout: Duration::from_secs(30),
            backup: request(dir.path()),
        },
        &quiet,
    )
    .unwrap();
    assert!(report.ok, "{report:?}");
    let service = &report.services[0];
    assert!(service.sandbox_container.starts_with(&report.drill_id));
    assert!(
        service
            .probes
            .iter()
            .any(|p| p.ok && p.output.starts_with("lbdrill-"))
    );
    assert_eq!(
        engine.container_names().unwrap(),
        before_containers,
        "sandbox gone"
    );
    assert_eq!(engine.volume_names().unwrap(), before_volumes);
    assert!(
        engine.network_names().unwrap().is_empty(),
        "the sandbox network is gone"
    );
    let calls = engine.calls()[mark..].to_vec();
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("create network lbdrill-")),
        "it ran on its own network: {calls:?}"
    );
    assert!(
        !calls.iter().any(|c| c.ends_with(" agent")),
        "production untouched: {calls:?}"
    );
    // The committed layer it loaded for the copy is removed with the sandbox.
    assert!(
        calls
            .last()
            .is_some_and(|c| c.starts_with("remove network"))
    );
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("remove image sha256:commit-")),
        "{calls:?}"
    );
}

#[test]
fn retention_deletes_nothing_while_a_backup_is_dated_after_this_hosts_clock() {
    let (dir, engine, repo) = world();
    mounting(&engine, "agent", "spool");
    for _ in 0..3 {
        backup_container(&engine, &repo, "agent", &request(dir.path()), &quiet).unwrap();
    }
    let retention = |now: jiff::Timestamp, force: bool| {
        lifeboat_core::apply_retention(
            &repo,
            "agent",
            &lifeboat_core::RetentionRequest {
                dry_run: true,
                now,
                ..last_one(dir.path(), force)
            },
            &quiet,
        )
        .unwrap()
    };
    // This host's clock an hour behind the backups' (or theirs an hour ahead).
    let behind = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
    let out = retention(behind, false);
    assert!(out.deleted.is_empty(), "{out:?}");
    let why = out.refused.unwrap();
    assert!(why.contains("after this host's clock"), "{why}");
    // Forced, the backups dated in the future are still kept.
    let forced = retention(behind, true);
    assert!(forced.deleted.is_empty(), "{forced:?}");
    assert_eq!(forced.kept.len(), 3);
    // With the clock right, the rule applies.
    let right = retention(jiff::Timestamp::now(), false);
    assert_eq!((right.kept.len(), right.deleted.len()), (1, 2), "{right:?}");
}
