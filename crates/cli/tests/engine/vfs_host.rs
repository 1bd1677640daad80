//! A second Docker engine with the `vfs` storage driver (no overlay upper directory), in its
//! own network namespace as `../shared/docs/test-hosts.md` verified: the writable layer is
//! then captured through the engine (`docker commit`) and comes back all the same.

use crate::common::*;
use crate::hosts::TestHost;

#[test]
fn on_a_storage_driver_without_an_upper_directory_the_layer_is_captured_through_the_engine() {
    let host = TestHost::start("vfs", &["--storage-driver", "vfs"]);
    let lb = Lb::new();
    let env = [("DOCKER_HOST", format!("unix://{}", host.sock))];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let name = unique("vfs");
    host.docker(&[
        "run",
        "-d",
        "--name",
        &name,
        BUSYBOX_IMAGE,
        "sleep",
        "86400",
    ]);
    host.docker(&[
        "exec",
        &name,
        "sh",
        "-c",
        "mkdir -p /etc/agent && echo 'level: debug' > /etc/agent/config.yaml && busybox rm /etc/passwd",
    ]);
    let backup = lb.run_env(&env, &["backup", &name, "--json"]);
    assert_eq!(backup.code, 0, "{}", backup.stderr);
    assert!(
        backup.stderr.contains("capturing it through the engine"),
        "it says so: {}",
        backup.stderr
    );
    let images_after_backup = host.docker(&["images", "-q"]);
    host.docker(&["rm", "-f", &name]);
    let restored = lb.run_env(&env, &["restore", &name]);
    assert_eq!(restored.code, 0, "{}", restored.stderr);
    assert_eq!(
        host.docker(&["exec", &name, "cat", "/etc/agent/config.yaml"]),
        "level: debug"
    );
    assert!(
        !host.docker_ok(&["exec", &name, "cat", "/etc/passwd"]),
        "the deletion holds"
    );
    // The committed image was removed after the backup: only busybox was left.
    assert_eq!(
        images_after_backup.lines().count(),
        1,
        "{images_after_backup}"
    );
}
