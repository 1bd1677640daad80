//! Pacing what a hot backup reads (a database dump, the files of the service's mounts) while
//! the host is busy.
//!
//! A lowered priority is not enough to keep a busy service's throughput: measured on a 2-core
//! virtual machine, a busy loop in a control group marked idle (`cpu.idle`, the weakest
//! claim on a CPU Linux has) still took half the CPU time and half of pgbench's
//! transactions: a service that trades many short messages between its processes gives its
//! CPUs up for an instant between them, and whatever else is runnable fills those instants.
//! What does keep it is less work per second. A dump is a pipeline (the server reads its
//! tables, the dump tool formats them, Lifeboat chunks, compresses and writes them) that runs
//! as fast as Lifeboat reads its output: reading in short bursts with pauses between them
//! paces all of it, inside the container too. The files of a hot backup's mounts (a
//! PostgreSQL data directory copied during a base backup among them) are paced the same way,
//! by one pacer shared by every thread that reads them.
//!
//! Each pause measures how busy the host's CPUs were without the backup (the whole machine's
//! busy time, from `/proc/stat`, minus Lifeboat's own): when other work kept more than half
//! of them busy, the next read is a short burst and another pause follows; otherwise the
//! dump runs freely for 2 s before looking again (50 ms). On an idle host the looks cost
//! about 2.5% of the dump's time; on a busy one the dump runs a sixth of the time (100 ms
//! bursts, 500 ms pauses).

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a pause lasts while the host is busy (it is also the look at the host).
const PAUSE: Duration = Duration::from_millis(500);
/// How long a look lasts while the host is not busy.
const LOOK: Duration = Duration::from_millis(50);
/// How long the dump runs between two pauses while the host is busy. Bursts and pauses five
/// times as long as 20 ms / 100 ms (the same share of time) kept 86% of pgbench's TPS
/// instead of 70%: each burst wakes the whole pipeline, and that costs the service too.
const BURST: Duration = Duration::from_millis(100);
/// How long the dump runs freely after a look found the host not busy.
const FREE: Duration = Duration::from_secs(2);
/// The share of the host's CPU time other work must take for the host to count as busy.
const BUSY: f64 = 0.5;

/// What a look at the host decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// The host was busy: read for [`BURST`], then pause again.
    Burst,
    /// The host was not: read freely for [`FREE`], then look again.
    Free,
}

/// The decision for a look during which other work kept `others` (0..=1) of the host busy.
fn decide(others: f64) -> Next {
    if others > BUSY {
        Next::Burst
    } else {
        Next::Free
    }
}

/// The machine's (busy, total) CPU time so far, in clock ticks, from `/proc/stat`'s first
/// line (`cpu user nice system idle iowait irq softirq steal guest guest_nice`).
fn parse_stat(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().next()?;
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let ticks: Vec<u64> = fields
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let total: u64 = ticks.iter().sum();
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some((total - idle, total))
}

/// The host's CPU time and Lifeboat's own at one moment.
#[derive(Debug, Clone, Copy)]
struct Sample {
    busy_ticks: u64,
    total_ticks: u64,
    ours: Duration,
}

impl Sample {
    fn now() -> Option<Sample> {
        let (busy_ticks, total_ticks) = parse_stat(&std::fs::read_to_string("/proc/stat").ok()?)?;
        Some(Sample {
            busy_ticks,
            total_ticks,
            ours: process_cpu_time()?,
        })
    }

    /// The share of the host's CPU time other work took between `self` and `later` (None
    /// when no tick passed, or the samples are the wrong way round).
    fn others_since(&self, later: &Sample) -> Option<f64> {
        let total = later.total_ticks.checked_sub(self.total_ticks)? as f64;
        let busy = later.busy_ticks.checked_sub(self.busy_ticks)? as f64;
        if total <= 0.0 {
            return None;
        }
        let ours = later.ours.saturating_sub(self.ours).as_secs_f64() * ticks_per_second();
        Some(((busy - ours) / total).clamp(0.0, 1.0))
    }
}

/// The clock ticks `/proc/stat` counts per second of one CPU's time (`USER_HZ`).
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf takes a plain integer and reads a constant of the system.
    #[allow(unsafe_code)]
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// The CPU time every thread of this process has used.
fn process_cpu_time() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec it is given, which outlives the call.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// The pacing of one backup, shared by everything that reads for it: a pause holds back
/// every reader (the archiver reads files on several threads).
#[derive(Debug)]
pub struct Pacer {
    window: Mutex<Window>,
    busy_looks: AtomicU64,
}

#[derive(Debug)]
struct Window {
    /// Reads go straight through until then.
    until: Instant,
    /// What the last look decided.
    last: Next,
}

impl Pacer {
    /// A pacer whose first read looks at the host.
    pub fn new() -> Arc<Pacer> {
        Arc::new(Pacer {
            window: Mutex::new(Window {
                until: Instant::now(),
                last: Next::Free,
            }),
            busy_looks: AtomicU64::new(0),
        })
    }

    /// How many looks found the host busy (each was followed by a short burst).
    pub fn busy_looks(&self) -> u64 {
        self.busy_looks.load(Ordering::Relaxed)
    }

    /// Pauses to look at the host when the current window is over, and opens the next one.
    /// The look holds the window's lock: every other reader waits for it too.
    fn pace_now(&self) {
        let Ok(mut w) = self.window.lock() else {
            return;
        };
        if Instant::now() < w.until {
            return;
        }
        let next = look(match w.last {
            Next::Burst => PAUSE,
            Next::Free => LOOK,
        });
        if next == Next::Burst {
            self.busy_looks.fetch_add(1, Ordering::Relaxed);
        }
        w.last = next;
        w.until = Instant::now()
            + match next {
                Next::Burst => BURST,
                Next::Free => FREE,
            };
    }
}

impl lifeboat_repo::Pace for Pacer {
    fn pace(&self) {
        self.pace_now();
    }
}

/// A reader that reads in bursts with pauses between them while the host is busy.
pub struct Paced<R> {
    inner: R,
    pacer: Arc<Pacer>,
}

impl<R: Read> Paced<R> {
    /// Reads `inner`, paced by `pacer`.
    pub fn new(inner: R, pacer: Arc<Pacer>) -> Paced<R> {
        Paced { inner, pacer }
    }
}

/// Sleeps `pause` and decides from what the host did meanwhile (free when it cannot tell).
fn look(pause: Duration) -> Next {
    let before = Sample::now();
    std::thread::sleep(pause);
    match (before, Sample::now()) {
        (Some(a), Some(b)) => a.others_since(&b).map(decide).unwrap_or(Next::Free),
        _ => Next::Free,
    }
}

impl<R: Read> Read for Paced<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.pacer.pace_now();
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Busy loops in other processes, one per CPU, killed when dropped.
    struct Hogs(Vec<std::process::Child>);

    impl Drop for Hogs {
        fn drop(&mut self) {
            for c in &mut self.0 {
                let _ = (c.kill(), c.wait());
            }
        }
    }

    #[test]
    fn a_dump_read_while_other_processes_keep_every_cpu_busy_pauses_between_bursts() {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let _hogs = Hogs(
            (0..cpus)
                .map(|_| {
                    std::process::Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .spawn()
                        .unwrap()
                })
                .collect(),
        );
        let pacer = Pacer::new();
        let mut paced = Paced::new(std::io::repeat(7), pacer.clone());
        let mut buf = vec![0u8; 64 << 10];
        // Reads until the second burst (a look, a burst, a pause, a burst): bounded, so a
        // pacer that never paused fails instead of hanging.
        for _ in 0..200_000 {
            paced.read_exact(&mut buf).unwrap();
            if pacer.busy_looks() >= 2 {
                break;
            }
        }
        assert!(
            pacer.busy_looks() >= 2,
            "{} busy looks with {cpus} CPUs kept busy by other processes",
            pacer.busy_looks()
        );
    }

    #[test]
    fn the_host_counts_as_busy_only_when_other_work_took_more_than_half_of_it() {
        assert_eq!(decide(0.9), Next::Burst);
        assert_eq!(decide(0.51), Next::Burst);
        assert_eq!(decide(0.5), Next::Free);
        assert_eq!(decide(0.0), Next::Free);
    }

    #[test]
    fn proc_stat_gives_busy_and_total_ticks_with_idle_and_iowait_as_not_busy() {
        let stat = "cpu  100 5 50 800 40 3 2 0 0 0\ncpu0 50 2 25 400 20 1 1 0 0 0\n";
        assert_eq!(parse_stat(stat), Some((160, 1000)));
        assert_eq!(parse_stat("intr 1 2 3\n"), None);
        assert_eq!(parse_stat("cpu 1 2\n"), None);
    }

    #[test]
    fn others_share_is_the_host_busy_time_without_lifeboats_own() {
        let a = Sample {
            busy_ticks: 1_000,
            total_ticks: 10_000,
            ours: Duration::from_secs(1),
        };
        // 0.1 s on 2 CPUs at 100 ticks/s: 20 ticks, 15 busy, 5 of them ours (0.05 s of CPU).
        assert_eq!(ticks_per_second(), 100.0, "USER_HZ on Linux");
        let b = Sample {
            busy_ticks: 1_015,
            total_ticks: 10_020,
            ours: Duration::from_millis(1_050),
        };
        let others = a.others_since(&b).unwrap();
        assert!((others - 0.5).abs() < 1e-9, "{others}");
        assert_eq!(
            b.others_since(&a),
            None,
            "samples the wrong way round tell nothing"
        );
    }
}
