//! Where a restore writes: an item path from a snapshot, resolved beneath the target. The
//! target holds traps (a symlink to a directory outside, a symlink up the tree, a file where
//! a directory is expected). Whatever the path, what it resolves to is inside the target, and
//! nothing outside is ever created.
#![no_main]

use std::ffi::OsStr;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lifeboat_safepath::Beneath;

struct Trap {
    target: PathBuf,
    outside: PathBuf,
}

fn trap() -> &'static Trap {
    static TRAP: OnceLock<Trap> = OnceLock::new();
    TRAP.get_or_init(|| {
        let base = std::env::temp_dir().join(format!("lifeboat-fuzz-{}", std::process::id()));
        let target = base.join("target");
        let outside = base.join("outside");
        std::fs::create_dir_all(target.join("d/e")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, target.join("out")).unwrap();
        std::os::unix::fs::symlink("../..", target.join("d/up")).unwrap();
        std::os::unix::fs::symlink("/", target.join("d/e/root")).unwrap();
        std::fs::write(target.join("f"), b"x").unwrap();
        Trap {
            target: target.canonicalize().unwrap(),
            outside,
        }
    })
}

fn real_path(fd: &impl AsRawFd) -> PathBuf {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap()
}

fuzz_target!(|data: &[u8]| {
    let t = trap();
    // At most a few components, so the fuzzer cannot fill the disk with directories.
    let item = Path::new(OsStr::from_bytes(&data[..data.len().min(64)]));
    let beneath = Beneath::open(&t.target).unwrap();
    if let Ok(found) = beneath.locate_creating_parents(item) {
        let dir = real_path(&found.dir);
        assert!(dir.starts_with(&t.target), "{item:?} resolved to {dir:?}");
        assert!(!found.name.as_bytes().contains(&b'/'), "{item:?} left a `/` in the name");
    }
    if let Ok(found) = beneath.locate(item) {
        assert!(real_path(&found.dir).starts_with(&t.target));
    }
    let _ = beneath.create_dir_all(item);
    let created = std::fs::read_dir(&t.outside).unwrap().count();
    assert_eq!(created, 0, "{item:?} created something outside the target");
});
