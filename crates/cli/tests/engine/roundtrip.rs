//! What a backup captures comes back identical.

use crate::common::*;

#[test]
fn volume_metadata_corpus_round_trips_entry_by_entry() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("corpus"), unique("corpus-vol"));
    let path = new_volume(&mut c, &vol);
    write_corpus(&path);
    std::os::unix::fs::chown(&path, Some(1001), Some(1001)).unwrap();
    run_sleeper(&mut c, &name, &["-v", &format!("{vol}:/data")]);
    lb.run(&["backup", &name]).ok();

    let (copy, restored) = lb.restore_copy(&mut c, &name, &vol);
    restored.ok();
    let restored = volume_path(&format!("{copy}_{vol}"));
    assert_ne!(restored, path);
    assert_same_tree(&path, &restored);
    let sparse = std::fs::metadata(restored.join("sparse.img")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert!(
        sparse.blocks() * 512 < 1 << 20,
        "sparse file restored sparse ({} blocks)",
        sparse.blocks()
    );
}

#[test]
fn bind_mounts_directory_and_single_file_round_trip() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let name = unique("bind");
    let host = tempfile::tempdir().unwrap();
    let dir = host.path().join("conf");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("config.yaml"), "level: debug\n").unwrap();
    std::fs::write(dir.join(".env"), "TOKEN=abc\n").unwrap();
    let file = host.path().join("single.conf");
    std::fs::write(&file, "one file bind\n").unwrap();
    run_sleeper(
        &mut c,
        &name,
        &[
            "-v",
            &format!("{}:/conf:ro", dir.display()),
            "-v",
            &format!("{}:/single.conf", file.display()),
        ],
    );
    lb.run(&["backup", &name]).ok();
    let reference = tempfile::tempdir().unwrap();
    copy_tree(host.path(), reference.path());

    // Disaster: the container and its bind sources are gone.
    docker(&["rm", "-f", &name]);
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_file(&file).unwrap();
    let restored = lb.run(&["restore", &name]).ok();
    assert!(
        !restored.stderr.contains("[error]"),
        "a clean restore logs no error: {}",
        restored.stderr
    );
    assert_same_tree(reference.path(), host.path());
    assert_eq!(
        docker(&["exec", &name, "cat", "/single.conf"]),
        "one file bind"
    );
    assert_eq!(
        inspect(
            &name,
            "{{range .Mounts}}{{if eq .Destination \"/conf\"}}{{.RW}}{{end}}{{end}}"
        ),
        "false"
    );
}

#[test]
fn configuration_round_trips_after_the_container_is_removed() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let (name, net, vol) = (unique("cfg"), unique("cfg-net"), unique("cfg-vol"));
    docker(&["network", "create", &net]);
    c.networks.push(net.clone());
    new_volume(&mut c, &vol);
    c.containers.push(name.clone());
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        &net,
        "--network-alias",
        "db-alias",
        "-e",
        "MODE=prod",
        "-e",
        "DB_PASSWORD=hunter2-secret",
        "--label",
        "team=ops",
        "--user",
        "1001:1001",
        "--workdir",
        "/tmp",
        "--hostname",
        "agent-7",
        "--memory",
        "96m",
        "--cpus",
        "0.5",
        "--restart",
        "on-failure:3",
        "-p",
        "127.0.0.1::8080",
        "--health-cmd",
        "true",
        "--health-interval",
        "1s",
        "--health-retries",
        "2",
        "-v",
        &format!("{vol}:/data"),
        "--entrypoint",
        "/bin/sleep",
        BUSYBOX_IMAGE,
        "86400",
    ]);
    wait_for_health(&name);
    let fmt = "{{json .Config.Env}}|{{json .Config.Labels}}|{{.Config.User}}|{{.Config.WorkingDir}}|\
               {{.Config.Hostname}}|{{.HostConfig.Memory}}|{{.HostConfig.NanoCpus}}|\
               {{json .HostConfig.RestartPolicy}}|{{json .HostConfig.PortBindings}}|\
               {{json .Config.Healthcheck}}|{{json .Config.Entrypoint}}|{{json .Config.Cmd}}|\
               {{json .NetworkSettings.Networks}}";
    let before = inspect(&name, fmt);
    let aliases_before = inspect(
        &name,
        &format!("{{{{json (index .NetworkSettings.Networks \"{net}\").Aliases}}}}"),
    );
    let out = lb.run(&["backup", &name, "--json"]).ok();
    assert!(!out.stdout.contains("hunter2-secret") && !out.stderr.contains("hunter2-secret"));

    docker(&["rm", "-f", &name]);
    docker(&["network", "rm", &net]);
    docker(&["volume", "rm", &vol]);
    let restored = lb.run(&["restore", &name, "--json"]).ok().json();
    assert_eq!(restored["health"], "healthy");
    let after = inspect(&name, fmt);
    let strip_net = |s: &str| s.rsplit_once('|').unwrap().0.to_string();
    assert_eq!(strip_net(&before), strip_net(&after));
    assert!(
        after.contains("hunter2-secret"),
        "env restored from the encrypted repository"
    );
    let aliases_after = inspect(
        &name,
        &format!("{{{{json (index .NetworkSettings.Networks \"{net}\").Aliases}}}}"),
    );
    assert!(
        aliases_before.contains("db-alias") && aliases_after.contains("db-alias"),
        "{aliases_after}"
    );
}

#[test]
fn restore_as_runs_side_by_side_without_touching_the_original() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("as"), unique("as-vol"));
    let path = new_volume(&mut c, &vol);
    std::fs::write(path.join("data"), "v1").unwrap();
    run_sleeper(
        &mut c,
        &name,
        &["-v", &format!("{vol}:/data"), "-p", "127.0.0.1:0:80"],
    );
    lb.run(&["backup", &name]).ok();
    std::fs::write(path.join("data"), "v2 (changed after the backup)").unwrap();

    let (copy, restored) = lb.restore_copy(&mut c, &name, &vol);
    restored.ok();
    assert_eq!(docker(&["exec", &copy, "cat", "/data/data"]), "v1");
    assert_eq!(
        docker(&["exec", &name, "cat", "/data/data"]),
        "v2 (changed after the backup)"
    );
    assert_eq!(inspect(&copy, "{{.State.Running}}"), "true");
}

#[test]
fn image_round_trips_with_with_image_on_a_host_without_it() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let name = unique("img");
    let tag = format!("lifeboat-test/{}:1", unique("only-here"));
    docker(&["tag", BUSYBOX_IMAGE, &tag]);
    c.images.push(tag.clone());
    c.containers.push(name.clone());
    docker(&["run", "-d", "--name", &name, &tag, "sleep", "86400"]);
    let out = lb
        .run(&["backup", &name, "--with-image", "--json"])
        .ok()
        .json();
    let parts = out["backups"][0]["parts"].as_array().unwrap().clone();
    assert!(parts.iter().any(|p| p["kind"] == "image"), "{parts:?}");

    docker(&["rm", "-f", &name]);
    docker(&["rmi", &tag]);
    assert!(!docker_ok(&["image", "inspect", &tag]));
    let restored = lb.run(&["restore", &name, "--json"]).ok().json();
    assert_eq!(restored["image_loaded"], true);
    assert_eq!(inspect(&name, "{{.Config.Image}}"), tag);
    assert_eq!(inspect(&name, "{{.State.Running}}"), "true");
}

#[test]
fn stopped_container_is_restored_stopped() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let name = unique("stopped");
    run_sleeper(&mut c, &name, &[]);
    docker(&["stop", "-t", "0", &name]);
    lb.run(&["backup", &name]).ok();
    docker(&["rm", "-f", &name]);
    let out = lb.run(&["restore", &name, "--json"]).ok().json();
    assert_eq!(out["started"], false);
    assert_eq!(inspect(&name, "{{.State.Status}}"), "created");
}

#[test]
fn the_real_engine_passes_the_engine_contract() {
    ensure_busybox_image();
    let engine = lifeboat_docker::DockerEngine::connect().expect("the engine answers");
    let prefix = unique("contract");
    let mut c = Cleanup::default();
    c.containers.push(format!("{prefix}-ctr"));
    c.volumes.push(format!("{prefix}-vol"));
    lifeboat_testkit::contract::engine(&engine, BUSYBOX_IMAGE, &prefix);
}

#[test]
fn a_restored_container_that_exits_for_good_fails_the_restore_at_once_with_its_log() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let name = unique("ends");
    // It only runs under its own hostname: the side-by-side copy (hostname cleared) exits 3.
    c.containers.push(name.clone());
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--hostname",
        "orig",
        "--health-cmd",
        "true",
        "--health-interval",
        "1s",
        BUSYBOX_IMAGE,
        "sh",
        "-c",
        "[ \"$(cat /etc/hostname)\" = orig ] || { echo FATAL: cannot reach the database; exit 3; }; sleep 86400",
    ]);
    wait_for_health(&name);
    lb.run(&["backup", &name]).ok();
    let copy = unique("ends-copy");
    c.containers.push(copy.clone());
    // A wait that ignored the exit would take the whole 300 s and end "unhealthy".
    let out = lb.run(&["restore", &name, "--as", &copy, "--health-timeout", "300"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("exited with code 3"), "{}", out.stderr);
    assert!(
        out.stderr.contains("FATAL: cannot reach the database"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("did not become healthy"),
        "{}",
        out.stderr
    );
}

/// `docker diff` of a container, sorted.
fn diff(name: &str) -> Vec<String> {
    let mut lines: Vec<String> = docker(&["diff", name]).lines().map(String::from).collect();
    lines.sort();
    lines
}

#[test]
fn the_writable_layer_comes_back_as_it_was_whiteouts_included() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("layer"), unique("layer-vol"));
    new_volume(&mut c, &vol);
    run_sleeper(&mut c, &name, &["-v", &format!("{vol}:/data")]);
    // What a container does to its own file system: writes a config, deletes a file of its
    // image (a whiteout), replaces a directory of the image (an opaque directory).
    docker(&[
        "exec",
        &name,
        "sh",
        "-c",
        "mkdir -p /etc/agent && echo 'level: debug' > /etc/agent/config.yaml && \
         chmod 640 /etc/agent/config.yaml && busybox rm /etc/passwd && \
         echo scratch > /tmp/scratch && echo data > /data/in-volume",
    ]);
    let before = diff(&name);
    assert!(before.iter().any(|l| l == "D /etc/passwd"), "{before:?}");
    lb.run(&["backup", &name]).ok();
    docker(&["rm", "-f", &name]);
    docker(&["volume", "rm", &vol]);
    let restored = lb.run(&["restore", &name]).ok();
    assert!(
        restored.stderr.contains("writable layer"),
        "{}",
        restored.stderr
    );
    let after = diff(&name);
    // Scratch space is left out on purpose; everything else is as it was.
    let expected: Vec<String> = before
        .iter()
        .filter(|l| !l.ends_with("/tmp/scratch") && l.as_str() != "C /tmp")
        .cloned()
        .collect();
    assert_eq!(after, expected);
    assert_eq!(
        docker(&["exec", &name, "cat", "/etc/agent/config.yaml"]),
        "level: debug"
    );
    assert_eq!(
        docker(&["exec", &name, "stat", "-c", "%a", "/etc/agent/config.yaml"]),
        "640"
    );
    assert!(
        !docker_ok(&["exec", &name, "cat", "/etc/passwd"]),
        "the deletion holds"
    );
}
