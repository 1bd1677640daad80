//! A directory tree with every kind of metadata a restore can get wrong.

use std::ffi::OsStr;
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).expect("lchown");
}

/// Writes the corpus into `root` (which must exist and be empty). Returns the number of
/// entries written.
pub fn write_corpus(root: &Path) -> usize {
    let mut n = 0;
    let mut add = |_: &Path| n += 1;
    let f = root.join("plain.txt");
    fs::write(&f, "hello\n").unwrap();
    add(&f);
    let f = root.join("owned-by-1001");
    fs::write(&f, "uid 1001 not in passwd").unwrap();
    chown(&f, 1001, 1001);
    add(&f);
    let f = root.join("odd-owner");
    fs::write(&f, "x").unwrap();
    chown(&f, 4242, 31337);
    fs::set_permissions(&f, fs::Permissions::from_mode(0o640)).unwrap();
    add(&f);
    let f = root.join("setuid-bin");
    fs::write(&f, "#!/bin/sh\n").unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o4755)).unwrap();
    add(&f);
    let d = root.join("setgid-sticky-dir");
    fs::create_dir(&d).unwrap();
    fs::set_permissions(&d, fs::Permissions::from_mode(0o3775)).unwrap();
    chown(&d, 1001, 1002);
    add(&d);
    let d = root.join("empty-dir");
    fs::create_dir(&d).unwrap();
    add(&d);
    let d = root.join("nested/deeper/deepest");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("leaf"), vec![7u8; 300_000]).unwrap();
    add(&d);
    // Hard links: a group of three names for one inode.
    let h = root.join("hard-a");
    fs::write(&h, "shared inode").unwrap();
    fs::hard_link(&h, root.join("hard-b")).unwrap();
    fs::hard_link(&h, root.join("nested/hard-c")).unwrap();
    add(&h);
    // Symlinks: relative, absolute, dangling; a symlink's own owner.
    symlink("plain.txt", root.join("link-rel")).unwrap();
    symlink("/etc/hostname", root.join("link-abs")).unwrap();
    let dangling = root.join("link-dangling");
    symlink("does/not/exist", &dangling).unwrap();
    chown(&dangling, 1001, 1001);
    add(&dangling);
    // A fifo.
    let fifo = root.join("a-fifo");
    let ok = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mkfifo");
    add(&fifo);
    // Sparse file: 64 MiB with 4 KiB of data in the middle.
    let sparse = root.join("sparse.img");
    let mut file = fs::File::create(&sparse).unwrap();
    file.set_len(64 << 20).unwrap();
    file.seek(SeekFrom::Start(32 << 20)).unwrap();
    file.write_all(&[0xAB; 4096]).unwrap();
    add(&sparse);
    // Names: 255 bytes, non-UTF-8, spaces and newlines.
    let long = "L".repeat(255);
    fs::write(root.join(&long), "long name").unwrap();
    let raw = root.join(OsStr::from_bytes(b"latin1-\xe9t\xe9"));
    fs::write(&raw, "not utf-8").unwrap();
    fs::write(root.join("with space\nand newline"), "odd").unwrap();
    add(&raw);
    // Extended attributes.
    let x = root.join("with-xattr");
    fs::write(&x, "xattrs").unwrap();
    xattr::set(&x, "user.lifeboat", b"kept").unwrap();
    xattr::set(&x, "user.empty", b"").unwrap();
    add(&x);
    // Precise mtimes (nanoseconds).
    let t = root.join("ns-mtime");
    fs::write(&t, "t").unwrap();
    let when = std::time::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 123_456_789);
    fs::File::options()
        .write(true)
        .open(&t)
        .unwrap()
        .set_modified(when)
        .unwrap();
    add(&t);
    n
}

/// A seeded xorshift byte stream: the same bytes for the same seed on every build (committed
/// fixtures depend on it).
pub struct PseudoRandom(u64);

impl PseudoRandom {
    /// The stream of `seed`.
    pub fn new(seed: u64) -> PseudoRandom {
        PseudoRandom(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Its next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0 as u8
            })
            .collect()
    }
}
