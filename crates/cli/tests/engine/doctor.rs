//! `doctor` finds each classic failure cause on real containers, with the right severity,
//! and a well-configured container passes clean.

use crate::common::*;

/// Runs `doctor NAME --json`; returns the exit code and (check, severity) of its findings.
fn diagnose(lb: &Lb, name: &str) -> (i32, Vec<(String, String)>, serde_json::Value) {
    let out = lb.run(&["doctor", name, "--json"]);
    let json = out.json();
    let findings = json["containers"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["check"].as_str().unwrap().to_string(),
                f["severity"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (out.code, findings, json)
}

/// Whether `check` is among the findings, whatever its severity.
fn has(findings: &[(String, String)], check: &str) -> bool {
    findings.iter().any(|(c, _)| c == check)
}

#[track_caller]
fn assert_finding(findings: &[(String, String)], check: &str, severity: &str) {
    assert!(
        findings.iter().any(|(c, s)| c == check && s == severity),
        "expected {check} as {severity}, got {findings:?}"
    );
}

#[test]
fn container_without_limits_is_reported() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let name = unique("nolimit");
    run_sleeper(&mut c, &name, &[]);
    let (code, findings, _) = diagnose(&lb, &name);
    assert_finding(&findings, "resources.no_memory_limit", "warning");
    assert_finding(&findings, "resources.no_cpu_limit", "info");
    assert!(code >= 1, "warnings make a non-zero exit");
}

#[test]
fn root_owned_volume_used_by_uid_1001_is_an_error() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("owner"), unique("owner-vol"));
    new_volume(&mut c, &vol);
    run_sleeper(
        &mut c,
        &name,
        &["--user", "1001:1001", "-v", &format!("{vol}:/data")],
    );
    let (code, findings, json) = diagnose(&lb, &name);
    assert_finding(&findings, "permissions.owner", "error");
    assert_eq!(code, 2);
    let text = json.to_string();
    assert!(
        text.contains("chown -R 1001:1001"),
        "the fix is spelled out: {text}"
    );
}

#[test]
fn failing_healthcheck_is_an_error() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let name = unique("unhealthy");
    run_unhealthy(&mut c, &name);
    let (code, findings, _) = diagnose(&lb, &name);
    assert_finding(&findings, "lifecycle.unhealthy", "error");
    assert_eq!(code, 2);
}

#[test]
fn live_sqlite_wal_database_without_a_consistent_mode_is_an_error() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("sqlite"), unique("sqlite-vol"));
    let path = new_volume(&mut c, &vol);
    let ok = std::process::Command::new("sqlite3")
        .arg(path.join("agent.db"))
        .arg("PRAGMA journal_mode=WAL; CREATE TABLE records(seq INTEGER); INSERT INTO records VALUES (1);")
        .status()
        .expect("sqlite3 installed")
        .success();
    assert!(ok);
    let labels = [
        "-v",
        &format!("{vol}:/data"),
        "--label",
        "lifeboat.mode=none",
    ];
    run_sleeper(&mut c, &name, &labels);
    let (_, findings, json) = diagnose(&lb, &name);
    assert_finding(&findings, "consistency.live_database", "error");
    assert!(
        json.to_string().contains("SQLite (WAL) at agent.db"),
        "{json}"
    );

    // The automatic mode captures SQLite hot: nothing to report.
    let auto = unique("sqlite-auto");
    run_sleeper(&mut c, &auto, &["-v", &format!("{vol}:/data")]);
    let (_, findings, _) = diagnose(&lb, &auto);
    let flagged = has(&findings, "consistency.live_database");
    assert!(!flagged, "{findings:?}");
}

#[test]
fn secret_only_in_env_and_config_in_the_writable_layer_are_reported() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let name = unique("secret-env");
    run_sleeper(
        &mut c,
        &name,
        &["-e", "DB_PASSWORD=do-not-print-me", "-e", "LOG_LEVEL=info"],
    );
    docker(&[
        "exec",
        &name,
        "sh",
        "-c",
        "mkdir -p /app && echo 'a: 1' > /app/config.yaml",
    ]);
    let (_, findings, json) = diagnose(&lb, &name);
    assert_finding(&findings, "coverage.secret_in_env", "warning");
    // The writable layer is captured by default: the config in it is reported as captured.
    assert_finding(&findings, "coverage.config_in_layer", "info");
    let text = json.to_string();
    assert!(
        text.contains("DB_PASSWORD") && !text.contains("do-not-print-me"),
        "{text}"
    );
    assert!(text.contains("/app/config.yaml"), "{text}");
}

#[test]
fn full_destination_is_an_error() {
    let lb = Lb::uninitialised();
    ensure_busybox_image();
    let mnt = lb.state.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let _mount = TmpfsMount::new(&mnt, "4m");
    let repo = mnt.join("repo");
    let repo_s = repo.to_str().unwrap();
    let env = [("LIFEBOAT_REPOSITORY", repo_s), ("LIFEBOAT_PASSWORD", "pw")];
    lb.run_env(&env, &["init"]).ok();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("nospace"), unique("nospace-vol"));
    let path = new_volume(&mut c, &vol);
    std::fs::write(path.join("big"), vec![1u8; 16 << 20]).unwrap();
    run_sleeper(&mut c, &name, &["-v", &format!("{vol}:/data")]);
    let out = lb.run_env(&env, &["doctor", &name, "--json"]);
    assert_eq!(out.code, 2, "{}", out.stdout);
    let general = out.json()["general"].to_string();
    assert!(
        general.contains("permissions.destination_space") && general.contains("\"error\""),
        "{general}"
    );
}

#[test]
fn well_configured_container_passes_clean() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("good"), unique("good-vol"));
    new_volume(&mut c, &vol);
    run_sleeper(
        &mut c,
        &name,
        &[
            "--memory",
            "128m",
            "--cpus",
            "0.5",
            "--health-cmd",
            "true",
            "--health-interval",
            "1s",
            "-v",
            &format!("{vol}:/data"),
        ],
    );
    wait_for_health(&name);
    lb.run(&["backup", &name, "--with-image"]).ok();
    let (code, findings, json) = diagnose(&lb, &name);
    assert!(
        findings.is_empty(),
        "expected no findings, got {findings:?}"
    );
    // The one general finding: this test's repository is a directory on this host.
    let general: Vec<&str> = json["general"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    assert_eq!(general, ["placement.repository_on_this_host"], "{json}");
    assert_eq!(code, 1, "a warning gives exit 1: {json}");
}

#[test]
fn stopped_container_in_hot_mode_and_a_bad_hook_timeout_are_reported() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let name = unique("hot-stopped");
    let flags = [
        "--label",
        "lifeboat.mode=hot",
        "--label",
        "lifeboat.hook-timeout=soon",
    ];
    run_sleeper(&mut c, &name, &flags);
    docker(&["stop", "-t", "0", &name]);
    let (_, findings, _) = diagnose(&lb, &name);
    assert_finding(&findings, "lifecycle.hot_needs_running", "warning");
    assert_finding(&findings, "consistency.hook_timeout", "warning");
}

#[test]
fn backup_all_and_doctor_leave_out_the_same_opted_out_containers() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let project = unique("scope");
    let label = format!("com.docker.compose.project={project}");
    let mut expect_in = Vec::new();
    let mut expect_out = Vec::new();
    for value in [Some("true"), None, Some("false"), Some("0"), Some("no")] {
        let name = unique(&format!("scope-{}", value.unwrap_or("unset")));
        let mut flags = vec!["-l".to_string(), label.clone()];
        if let Some(v) = value {
            flags.extend(["-l".to_string(), format!("lifeboat.enable={v}")]);
        }
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        run_sleeper(&mut c, &name, &flags);
        match value {
            Some("true") | None => expect_in.push(name),
            _ => expect_out.push(name),
        }
    }
    let out = lb
        .run(&["backup", "--project", &project, "--json"])
        .ok()
        .json();
    let mut backed_up: Vec<String> = out["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["container"].as_str().unwrap().to_string())
        .collect();
    backed_up.sort();
    expect_in.sort();
    assert_eq!(backed_up, expect_in);
    let doctor = lb.run(&["doctor", "--json"]).json();
    let examined: Vec<String> = doctor["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["container"].as_str().unwrap().to_string())
        .collect();
    for name in &expect_in {
        assert!(examined.contains(name), "doctor examines {name}");
    }
    for name in &expect_out {
        assert!(!examined.contains(name), "doctor leaves out {name}");
    }
}

#[test]
fn doctor_reads_the_same_dependencies_a_stack_restore_orders_by() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let (db, agent) = (unique("dep-db"), unique("dep-agent"));
    run_sleeper(&mut c, &db, &[]);
    let label = format!("lifeboat.depends-on={db}");
    run_sleeper(&mut c, &agent, &["-l", &label]);
    lb.run(&["backup", &agent]).ok();
    let (_, findings, json) = diagnose(&lb, &agent);
    assert!(
        has(&findings, "restore.dependencies_not_backed_up"),
        "{json}"
    );
    assert!(
        json.to_string().contains(&db),
        "names the dependency: {json}"
    );
    lb.run(&["backup", &db]).ok();
    let (_, findings, _) = diagnose(&lb, &agent);
    assert!(!has(&findings, "restore.dependencies_not_backed_up"));
}

#[test]
fn the_placeholder_of_a_single_file_bind_is_not_taken_for_config_in_the_layer() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let name = unique("placeholder");
    let host = tempfile::tempdir().unwrap();
    let file = host.path().join("config.yaml");
    std::fs::write(&file, "level: info\n").unwrap();
    run_sleeper(
        &mut c,
        &name,
        &["-v", &format!("{}:/etc/agent/config.yaml", file.display())],
    );
    let (_, findings, json) = diagnose(&lb, &name);
    assert!(!has(&findings, "coverage.config_in_layer"), "{json}");
    // A config file the container itself wrote into its layer is still reported.
    docker(&["exec", &name, "sh", "-c", "echo x > /etc/agent/other.yaml"]);
    let (_, findings, _) = diagnose(&lb, &name);
    assert!(has(&findings, "coverage.config_in_layer"));
}

#[test]
fn config_in_the_layer_is_a_warning_when_the_layer_is_left_out() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let name = unique("nolayer");
    run_sleeper(&mut c, &name, &["-l", "lifeboat.layer=false"]);
    docker(&[
        "exec",
        &name,
        "sh",
        "-c",
        "mkdir -p /app && echo 'a: 1' > /app/config.yaml",
    ]);
    let (_, findings, _) = diagnose(&lb, &name);
    assert_finding(&findings, "coverage.config_in_layer", "warning");
}
