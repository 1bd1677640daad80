//! `lifeboat key`: passwords added, changed and removed without re-encrypting anything; the
//! last key and the key in use are never removed; a corrupt key file changes nothing.

use crate::common::*;

fn keys(lb: &Lb, pw: Option<&std::path::Path>) -> Vec<serde_json::Value> {
    let env: Vec<(&str, &str)> = pw
        .map(|p| vec![("LIFEBOAT_PASSWORD_FILE", p.to_str().unwrap())])
        .unwrap_or_default();
    lb.run_env(&env, &["key", "list", "--json"]).ok().json()["keys"]
        .as_array()
        .cloned()
        .unwrap()
}

#[test]
fn keys_are_added_rotated_and_removed_but_never_the_last_or_the_one_in_use() {
    let lb = Lb::new();
    let dir = tempfile::tempdir().unwrap();
    let second = dir.path().join("second.pw");
    let third = dir.path().join("third.pw");
    std::fs::write(&second, "second-password-0123\n").unwrap();
    std::fs::write(&third, "third-password-0123\n").unwrap();
    let with =
        |p: &std::path::Path| vec![("LIFEBOAT_PASSWORD_FILE", p.to_str().unwrap().to_string())];
    let run_with = |p: &std::path::Path, args: &[&str]| {
        let env = with(p);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        lb.run_env(&env, args)
    };

    let first = keys(&lb, None);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["current"], true);
    let first_id = first[0]["id"].as_str().unwrap().to_string();
    let last = lb.run(&["key", "remove", &first_id[..8]]);
    assert_eq!(last.code, 14, "{}", last.stderr);
    assert!(last.stderr.contains("last key"), "{}", last.stderr);

    lb.run(&[
        "key",
        "add",
        "--new-password-file",
        second.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(keys(&lb, None).len(), 2);
    // restic opens the repository with the new key.
    let listed = std::process::Command::new("restic")
        .arg("-r")
        .arg(lb.repo())
        .arg("--password-file")
        .arg(&second)
        .args(["--no-cache", "key", "list"])
        .output()
        .unwrap();
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );

    // Changing the password: the old one no longer opens the repository.
    lb.run(&[
        "key",
        "passwd",
        "--new-password-file",
        third.to_str().unwrap(),
    ])
    .ok();
    let old = lb.run(&["snapshots"]);
    assert_eq!(old.code, 12, "{}", old.stderr);
    let now = keys(&lb, Some(&third));
    assert_eq!(now.len(), 2);
    assert!(now.iter().all(|k| k["id"] != first_id.as_str()));
    run_with(&second, &["snapshots"]).ok();
    // The key in use is not removed.
    let current = now.iter().find(|k| k["current"] == true).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let refused = run_with(&third, &["key", "remove", &current]);
    assert_eq!(refused.code, 14, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("opened the repository with"),
        "{}",
        refused.stderr
    );
    let unknown = run_with(&third, &["key", "remove", "ffffffffffff"]);
    assert_eq!(unknown.code, 15, "{}", unknown.stderr);

    // A corrupt key file: its password gets a clear error, nothing else changes.
    let other = now.iter().find(|k| k["current"] == false).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(lb.repo().join("keys").join(&other), b"{not json").unwrap();
    let broken = run_with(&second, &["snapshots"]);
    assert_ne!(broken.code, 0);
    assert!(!broken.stderr.is_empty());
    assert_eq!(keys(&lb, Some(&third)).len(), 2);
    run_with(&third, &["snapshots"]).ok();
    run_with(&third, &["key", "remove", &other[..10]]).ok();
    assert_eq!(keys(&lb, Some(&third)).len(), 1);
}
