//! Restore never overwrites by accident; secrets never leave the repository.

use crate::common::*;

const REFUSED: i32 = 14;

#[test]
fn restore_refuses_existing_container_and_non_empty_volume() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("refuse"), unique("refuse-vol"));
    let path = new_volume(&mut c, &vol);
    std::fs::write(path.join("precious"), "v1").unwrap();
    run_sleeper(&mut c, &name, &["-v", &format!("{vol}:/data")]);
    lb.run(&["backup", &name]).ok();
    std::fs::write(path.join("precious"), "v2").unwrap();

    let out = lb.run(&["restore", &name]);
    assert_eq!(out.code, REFUSED, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("container `{name}` exists")),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("--force"),
        "says what to do: {}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(path.join("precious")).unwrap(),
        "v2",
        "nothing changed"
    );

    // The container is gone but its volume still holds data: still refused.
    docker(&["rm", "-f", &name]);
    let out = lb.run(&["restore", &name]);
    assert_eq!(out.code, REFUSED, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("volume `{vol}` is not empty")),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(path.join("precious")).unwrap(),
        "v2"
    );
}

#[test]
fn force_takes_a_safety_backup_before_replacing() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("force"), unique("force-vol"));
    let path = new_volume(&mut c, &vol);
    std::fs::write(path.join("state"), "v1").unwrap();
    run_sleeper(&mut c, &name, &["-v", &format!("{vol}:/data")]);
    lb.run(&["backup", &name]).ok();
    std::fs::write(path.join("state"), "v2").unwrap();

    let out = lb.run(&["restore", &name, "--force", "--json"]).ok().json();
    let safety = out["safety_snapshot"]
        .as_str()
        .expect("a safety snapshot")
        .to_string();
    let path = volume_path(&vol);
    assert_eq!(std::fs::read_to_string(path.join("state")).unwrap(), "v1");

    // The replaced state (v2) is itself restorable from the safety snapshot.
    lb.run(&["restore", &name, "--snapshot", &safety, "--force"])
        .ok();
    assert_eq!(
        std::fs::read_to_string(volume_path(&vol).join("state")).unwrap(),
        "v2"
    );
}

#[test]
fn secrets_in_env_never_appear_in_output() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let name = unique("secret");
    run_sleeper(&mut c, &name, &["-e", "API_TOKEN=tok-very-secret-1234"]);
    let mut all = String::new();
    for args in [
        vec!["backup", name.as_str(), "--json"],
        vec!["backup", name.as_str()],
        vec!["snapshots", "--json"],
        vec!["snapshots"],
        vec!["restore", name.as_str(), "--json"],
    ] {
        let out = lb.run(&args);
        all.push_str(&out.stdout);
        all.push_str(&out.stderr);
    }
    assert!(
        !all.contains("tok-very-secret-1234"),
        "secret leaked:\n{all}"
    );
    // The repository itself is encrypted: the secret is not in any file as plain text.
    let hit = std::process::Command::new("grep")
        .args(["-r", "-l", "tok-very-secret-1234"])
        .arg(lb.repo())
        .status()
        .unwrap();
    assert!(
        !hit.success(),
        "secret found in plain text in the repository"
    );
}

#[test]
fn snapshots_are_tagged_for_restic_users() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let name = unique("tags");
    run_sleeper(
        &mut c,
        &name,
        &[
            "--label",
            "com.docker.compose.project=shop",
            "--label",
            "com.docker.compose.service=web",
        ],
    );
    lb.run(&["backup", &name]).ok();
    let out = lb
        .restic(&["snapshots", "--json", "--tag", &format!("container={name}")])
        .ok();
    let snaps: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let tags = snaps[0]["tags"].to_string();
    for want in ["lifeboat", "compose-project=shop", "host="] {
        assert!(tags.contains(want), "{want} missing in {tags}");
    }
}

#[test]
fn dry_run_describes_the_restore_and_changes_nothing() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let (name, vol) = (unique("dry"), unique("dry-vol"));
    let path = new_volume(&mut c, &vol);
    std::fs::write(path.join("state"), "v1").unwrap();
    run_sleeper(&mut c, &name, &["-v", &format!("{vol}:/data")]);
    lb.run(&["backup", &name]).ok();
    std::fs::write(path.join("state"), "v2").unwrap();
    let id_before = inspect(&name, "{{.Id}}");

    assert_eq!(lb.run(&["restore", &name, "--dry-run"]).code, REFUSED);
    let out = lb
        .run(&["restore", &name, "--force", "--dry-run", "--json"])
        .ok()
        .json();
    assert_eq!(out["dry_run"], true);
    let actions = out["actions"].to_string();
    for step in [
        "safety backup",
        "remove container",
        "restore volume",
        "create container",
    ] {
        assert!(actions.contains(step), "{step} missing from {actions}");
    }
    assert_eq!(inspect(&name, "{{.Id}}"), id_before, "container untouched");
    assert_eq!(std::fs::read_to_string(path.join("state")).unwrap(), "v2");
    let listed = lb.run(&["snapshots", "--json"]).ok().json();
    assert_eq!(
        listed.as_array().unwrap().len(),
        1,
        "no safety backup taken"
    );
}
