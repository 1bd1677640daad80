//! A backup waiting for a slow source waits without spinning (the engine's parallel map,
//! patched in `vendor/pariter`, used to poll its results every 100 us: a thread busy at
//! 100% while a database dump was paced or a disk was slow). One test in its own binary:
//! the process's CPU time is what is measured, so no other test may run beside it.

use std::io::Read;
use std::time::{Duration, Instant};

use lifeboat_repo::{RepoLocation, Repository, RusticRepository, StreamBackup, StreamSource};

/// 64 KiB, then a pause, forty times (a dump that trickles in for about two seconds).
struct Trickle {
    left: usize,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        self.left -= 1;
        std::thread::sleep(Duration::from_millis(50));
        let n = buf.len().min(64 << 10);
        let data = lifeboat_testkit::PseudoRandom::new(self.left as u64).bytes(n);
        buf[..n].copy_from_slice(&data);
        Ok(n)
    }
}

struct TrickleSource;

impl StreamSource for TrickleSource {
    fn reader(&mut self) -> Box<dyn Read + Send> {
        Box::new(Trickle { left: 40 })
    }
    fn finish(&mut self) -> Result<(), String> {
        Ok(())
    }
}

fn cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec it is given.
    #[allow(unsafe_code)]
    #[allow(unsafe_code)]
    unsafe {
        libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts)
    };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[test]
fn a_backup_waiting_for_a_slow_source_uses_little_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let loc = RepoLocation(dir.path().join("repo").display().to_string());
    let repo = RusticRepository::init(&loc, "test-password", None).unwrap();
    let req = StreamBackup {
        path: "/dump/slow.sql",
        tags: &[],
        description: None,
        time: None,
    };
    let (cpu, wall) = (cpu_time(), Instant::now());
    let part = repo.backup_stream(&req, &mut TrickleSource).unwrap();
    let (cpu, wall) = (cpu_time() - cpu, wall.elapsed());
    assert_eq!(part.bytes, 40 * (64 << 10), "{part:?}");
    // Spinning, the engine's waiting thread alone used a fifth of the wall time (422 ms of
    // CPU over 2.06 s, measured); waiting, the whole backup used 77-79 ms.
    assert!(
        cpu < wall / 8,
        "the backup used {cpu:?} of CPU while it waited {wall:?} for its source"
    );
}
