//! How Lifeboat's work is tuned to share the host with the services it protects: the
//! allocator's arenas (set once at process start), the priority every backup runs at, and
//! the pacing of what a hot backup reads while the host is busy ([`Pacer`]).
//!
//! The priority every backup runs at, whoever starts it (the `backup` command, a daemon job,
//! the safety backup of a forced restore): CPU nice 10 and the lowest best-effort I/O level
//! (or, opted in, the idle I/O class), so a backup yields to the service it protects.
//!
//! Linux keeps both per thread, and threads inherit them when created: lowering the calling
//! thread before the engine starts its workers lowers the whole backup, and nothing else of a
//! daemon that serves its API meanwhile. The guard puts the thread back when the backup ends
//! (a daemon reuses its job threads). Measured in `bench/stall.sh` (writer's longest stall
//! during a hot backup of a 1 GB SQLite database): ~265 ms at best-effort, ~145 ms idle class.

mod pace;
pub use pace::{Paced, Pacer};

/// The repository engine restores with 20 reader threads; with glibc's default of up to eight
/// malloc arenas per core, freed pack buffers stay resident in per-thread arenas (measured on a
/// 600 MB restore: 334 MiB peak RSS by default, 209 MiB with two arenas, same speed). The
/// arenas are capped before any thread starts, unless the operator set MALLOC_ARENA_MAX.
#[allow(unsafe_code)]
pub fn bound_allocator_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only changes allocator tunables; it is called first thing in main,
        // while no other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// The priority a backup asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Priority {
    /// Nice 10, best-effort I/O level 7 (the default).
    #[default]
    Lowered,
    /// Nice 10 and the idle I/O class (can starve on a disk that is never idle).
    IdleIo,
    /// Leave the thread as it is (`--normal-priority`).
    Normal,
}

/// The nice value a lowered backup runs at.
pub const BACKUP_NICE: i32 = 10;

const IOPRIO_WHO_PROCESS: libc::c_long = 1;
const IOPRIO_CLASS_BE: libc::c_long = 2;
const IOPRIO_CLASS_IDLE: libc::c_long = 3;
const IOPRIO_CLASS_SHIFT: libc::c_long = 13;

fn tid() -> libc::c_long {
    // SAFETY: gettid has no arguments and cannot fail.
    #[allow(unsafe_code)]
    unsafe {
        libc::syscall(libc::SYS_gettid)
    }
}

/// The calling thread's (nice, ioprio).
fn current() -> (i32, libc::c_long) {
    let tid = tid();
    // SAFETY: both calls only read scheduling attributes of the calling thread.
    #[allow(unsafe_code)]
    unsafe {
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t);
        let io = libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, tid);
        (nice, io)
    }
}

fn set(nice: i32, ioprio: libc::c_long) {
    set_for(tid(), Some(nice), Some(ioprio));
}

/// Sets the nice value and I/O priority (those given) of thread or process `id`.
fn set_for(id: libc::c_long, nice: Option<i32>, ioprio: Option<libc::c_long>) {
    // SAFETY: both calls take plain integers and only change scheduling attributes. Failures
    // (no CAP_SYS_NICE to raise a nice value back, a process gone) are harmless.
    #[allow(unsafe_code)]
    unsafe {
        if let Some(nice) = nice {
            libc::setpriority(libc::PRIO_PROCESS, id as libc::id_t, nice);
        }
        if let Some(ioprio) = ioprio {
            libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, id, ioprio);
        }
    }
}

/// Gives the process `pid` the calling thread's CPU and I/O priority when that is lower
/// than the default (a process Lifeboat had started for a backup, such as a database dump
/// inside the container, then yields to the service as the backup does). Only ever lowers:
/// a thread at the default priority changes nothing, and a process already lower keeps its
/// own. False when the process is gone.
pub fn share_priority_with(pid: i32) -> bool {
    let (nice, io) = current();
    if nice <= 0 && io == 0 {
        return true;
    }
    let id = pid as libc::c_long;
    // SAFETY: both calls only read scheduling attributes of another process.
    #[allow(unsafe_code)]
    let (theirs, their_io) = unsafe {
        *libc::__errno_location() = 0;
        let theirs = libc::getpriority(libc::PRIO_PROCESS, pid as libc::id_t);
        if *libc::__errno_location() != 0 {
            return false;
        }
        (
            theirs,
            libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, id),
        )
    };
    set_for(
        id,
        (theirs < nice).then_some(nice),
        (io != 0 && their_io >> IOPRIO_CLASS_SHIFT != IOPRIO_CLASS_IDLE).then_some(io),
    );
    true
}

/// Whether the calling thread runs at a lowered priority (a backup's, unless the user asked
/// for `--normal-priority`): what a hot backup reads is then paced ([`Pacer`]).
pub fn is_lowered() -> bool {
    let (nice, io) = current();
    nice > 0 || io != 0
}

/// Holds the calling thread at a backup's priority until dropped.
#[must_use = "the priority is restored when the guard is dropped"]
pub struct PriorityGuard {
    saved: Option<(i32, libc::c_long)>,
}

impl PriorityGuard {
    /// Lowers the calling thread (and every thread it starts from now on) to `p`.
    pub fn enter(p: Priority) -> PriorityGuard {
        let ioprio = match p {
            Priority::Normal => return PriorityGuard { saved: None },
            Priority::Lowered => (IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT) | 7,
            Priority::IdleIo => IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT,
        };
        let saved = current();
        set(BACKUP_NICE.max(saved.0), ioprio);
        PriorityGuard { saved: Some(saved) }
    }
}

impl Drop for PriorityGuard {
    fn drop(&mut self) {
        if let Some((nice, io)) = self.saved {
            set(nice, io);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_thread_and_the_threads_it_starts_run_lowered_then_the_thread_is_put_back() {
        std::thread::spawn(|| {
            let before = current();
            let guard = PriorityGuard::enter(Priority::Lowered);
            assert_eq!(current().0, BACKUP_NICE);
            assert_eq!(current().1, (IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT) | 7);
            let child = std::thread::spawn(current).join().unwrap();
            assert_eq!(child.0, BACKUP_NICE, "an engine worker inherits it");
            drop(guard);
            assert_eq!(
                current(),
                before,
                "the job thread is put back (root may raise it)"
            );
        })
        .join()
        .unwrap();
    }

    #[allow(unsafe_code)]
    fn nice_of(pid: i32) -> i32 {
        // SAFETY: reads a scheduling attribute of a child process.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, pid as libc::id_t) }
    }

    #[test]
    fn a_process_started_for_a_backup_is_lowered_to_its_priority_but_never_raised() {
        let mut at_zero = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let mut lower = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let (a, b) = (at_zero.id() as i32, lower.id() as i32);
        #[allow(unsafe_code)]
        // SAFETY: lowers a child process.
        unsafe {
            libc::setpriority(libc::PRIO_PROCESS, b as libc::id_t, 15);
        }
        std::thread::spawn(move || {
            let _g = PriorityGuard::enter(Priority::Lowered);
            assert!(share_priority_with(a));
            assert!(share_priority_with(b));
        })
        .join()
        .unwrap();
        assert_eq!(nice_of(a), BACKUP_NICE);
        assert_eq!(nice_of(b), 15, "a process already lower keeps its own");
        let _ = (at_zero.kill(), lower.kill(), at_zero.wait(), lower.wait());
    }

    #[test]
    fn normal_priority_leaves_the_thread_alone() {
        std::thread::spawn(|| {
            let before = current();
            let _g = PriorityGuard::enter(Priority::Normal);
            assert_eq!(current(), before);
        })
        .join()
        .unwrap();
    }
}
