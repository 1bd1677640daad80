//! When each service's jobs run: pure logic over an injected `now`, no clock, no I/O.
//!
//! Guarantees: jobs of one service never overlap; at most `limit` jobs run at once; a
//! schedule slot gets a deterministic jitter in `[0, min(jitter, interval / 10))` so
//! services sharing a schedule do not all start in the same second (a short schedule is not
//! stretched by it); a slot missed while the daemon was down runs once
//! at start, not once per missed slot; a service never backed up is due at once.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::Duration;

use jiff::Timestamp;
use lifeboat_model::policy::Schedule;

/// Why a job starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start<T> {
    /// The schedule's slot came.
    Scheduled,
    /// Someone asked (API): the request as queued.
    Requested(T),
}

#[derive(Debug)]
struct Entry<T> {
    schedule: Option<Schedule>,
    /// When the next scheduled run is due (jitter included).
    next: Option<Timestamp>,
    running: bool,
    queue: VecDeque<(Timestamp, T)>,
    /// A retry asked for by the running job (it failed): its next run comes no later.
    retry: Option<Timestamp>,
}

/// When each service runs next: pure logic on an injected clock.
#[derive(Debug)]
pub struct Scheduler<T> {
    entries: BTreeMap<String, Entry<T>>,
    /// Entries whose scheduled runs wait (a recovery is under way); requested jobs still run.
    paused: BTreeSet<String>,
    limit: usize,
    jitter: Duration,
}

/// The jitter for `service`'s slot at `slot`: stable for the same inputs, below `jitter`.
pub fn jitter_for(service: &str, slot: Timestamp, jitter: Duration) -> Duration {
    let ms = jitter.as_millis() as u64;
    if ms == 0 {
        return Duration::ZERO;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (service, slot.as_second()).hash(&mut h);
    Duration::from_millis(h.finish() % ms)
}

/// `slot` plus its jitter, bounded by a tenth of the schedule's interval.
fn jittered(name: &str, schedule: &Schedule, slot: Timestamp, jitter: Duration) -> Timestamp {
    let bound = jitter.min(schedule.interval(slot) / 10);
    slot.checked_add(jitter_for(name, slot, bound))
        .unwrap_or(slot)
}

impl<T> Scheduler<T> {
    /// A scheduler running at most `limit` jobs at once, starts delayed by up to `jitter`.
    pub fn new(limit: usize, jitter: Duration) -> Self {
        Scheduler {
            entries: BTreeMap::new(),
            paused: BTreeSet::new(),
            limit: limit.max(1),
            jitter,
        }
    }

    fn due_from(
        &self,
        name: &str,
        schedule: &Schedule,
        last_start: Option<Timestamp>,
        now: Timestamp,
    ) -> Timestamp {
        let slot = match last_start.and_then(|t| schedule.next_after(t)) {
            Some(slot) if slot > now => slot,
            // Never run, or missed while down: once, now (jittered so a restart with many
            // services does not start them all in the same second).
            _ => now,
        };
        jittered(name, schedule, slot, self.jitter)
    }

    /// Adds a service or updates its schedule. `last_start` is when its last backup started
    /// (from the job history). An unchanged schedule keeps its next run.
    pub fn upsert(
        &mut self,
        name: &str,
        schedule: Schedule,
        last_start: Option<Timestamp>,
        now: Timestamp,
    ) {
        let next = self.due_from(name, &schedule, last_start, now);
        let e = self
            .entries
            .entry(name.to_string())
            .or_insert_with(|| Entry {
                schedule: None,
                next: None,
                running: false,
                queue: VecDeque::new(),
                retry: None,
            });
        if e.schedule.as_ref() != Some(&schedule) {
            e.schedule = Some(schedule);
            e.next = Some(next);
        }
    }

    /// Stops scheduling `name` (its container is gone). Queued requests and a running job
    /// are kept until they are done.
    pub fn unschedule(&mut self, name: &str) {
        if let Some(e) = self.entries.get_mut(name) {
            e.schedule = None;
            e.next = None;
        }
        self.drop_if_idle(name);
    }

    fn drop_if_idle(&mut self, name: &str) {
        if let Some(e) = self.entries.get(name)
            && e.schedule.is_none()
            && !e.running
            && e.queue.is_empty()
        {
            self.entries.remove(name);
        }
    }

    /// Queues a requested job for `name` (scheduled or not); it runs when the service's
    /// current job is done and a slot is free.
    pub fn request(&mut self, name: &str, job: T, now: Timestamp) {
        self.entries
            .entry(name.to_string())
            .or_insert_with(|| Entry {
                schedule: None,
                next: None,
                running: false,
                queue: VecDeque::new(),
                retry: None,
            })
            .queue
            .push_back((now, job));
    }

    /// Holds `name`'s scheduled runs (a slot that comes meanwhile runs once on
    /// [`Scheduler::resume`]); requested jobs still run. Survives [`Scheduler::upsert`].
    pub fn pause(&mut self, name: &str) {
        self.paused.insert(name.to_string());
    }

    /// Lets `name`'s scheduled runs go again.
    pub fn resume(&mut self, name: &str) {
        self.paused.remove(name);
    }

    /// Whether `name`'s scheduled runs wait.
    pub fn is_paused(&self, name: &str) -> bool {
        self.paused.contains(name)
    }

    /// The running job of `name` failed: it runs again at `at` unless its next slot comes
    /// sooner (applied when the job is [`Scheduler::finished`]).
    pub fn retry_at(&mut self, name: &str, at: Timestamp) {
        if let Some(e) = self.entries.get_mut(name) {
            e.retry = Some(at);
        }
    }

    /// Brings `name`'s next scheduled run forward to `now` (a daemon that has just become
    /// the cluster's leader runs the slot its predecessor may have left undone).
    pub fn due_now(&mut self, name: &str, now: Timestamp) {
        if let Some(e) = self.entries.get_mut(name)
            && e.schedule.is_some()
            && !e.running
        {
            e.next = Some(e.next.map_or(now, |n| n.min(now)));
        }
    }

    /// Jobs running now.
    pub fn running(&self) -> usize {
        self.entries.values().filter(|e| e.running).count()
    }

    /// Whether a job of `name` runs now.
    pub fn is_running(&self, name: &str) -> bool {
        self.entries.get(name).is_some_and(|e| e.running)
    }

    /// When `name` runs next.
    pub fn next_run(&self, name: &str) -> Option<Timestamp> {
        self.entries.get(name).and_then(|e| e.next)
    }

    /// The jobs to start now, earliest due first, marked running.
    pub fn poll(&mut self, now: Timestamp) -> Vec<(String, Start<T>)> {
        let mut due: Vec<(Timestamp, String)> = self
            .entries
            .iter()
            .filter(|(_, e)| !e.running)
            .filter_map(|(n, e)| {
                let asked = e.queue.front().map(|(t, _)| *t);
                let slot = e.next.filter(|t| *t <= now && !self.paused.contains(n));
                asked.into_iter().chain(slot).min().map(|t| (t, n.clone()))
            })
            .collect();
        due.sort();
        let free = self.limit.saturating_sub(self.running());
        let mut out = Vec::new();
        for (_, name) in due.into_iter().take(free) {
            let e = self.entries.get_mut(&name).expect("listed above");
            e.running = true;
            match e.queue.pop_front() {
                Some((_, job)) => out.push((name, Start::Requested(job))),
                None => out.push((name, Start::Scheduled)),
            }
        }
        out
    }

    /// A job of `name` that started at `started` ended. After a scheduled run the next
    /// slot is the first one after its start (a run longer than the interval is followed
    /// at once by one more, never by a burst).
    pub fn finished(&mut self, name: &str, start: &Start<T>, started: Timestamp, now: Timestamp) {
        let jitter = self.jitter;
        if let Some(e) = self.entries.get_mut(name) {
            e.running = false;
            if matches!(start, Start::Scheduled)
                && let Some(s) = &e.schedule
            {
                let slot = s.next_after(started).unwrap_or(now);
                e.next = Some(jittered(name, s, slot, jitter));
            }
            if let Some(retry) = e.retry.take() {
                e.next = Some(e.next.map_or(retry, |n| n.min(retry)));
            }
        }
        self.drop_if_idle(name);
    }

    /// When `poll` may next return something (queued requests wait only for a free slot).
    pub fn next_wakeup(&self) -> Option<Timestamp> {
        self.entries
            .iter()
            .filter(|(_, e)| !e.running)
            .filter_map(|(n, e)| {
                let slot = e.next.filter(|_| !self.paused.contains(n));
                e.queue.front().map(|(t, _)| *t).or(slot)
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn every(secs: u64) -> Schedule {
        Schedule::Every(Duration::from_secs(secs))
    }

    fn names(v: &[(String, Start<u32>)]) -> Vec<&str> {
        v.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn a_service_never_backed_up_is_due_at_once() {
        let mut s: Scheduler<u32> = Scheduler::new(4, Duration::ZERO);
        s.upsert("db", every(300), None, t(0));
        assert_eq!(names(&s.poll(t(0))), ["db"]);
    }

    #[test]
    fn runs_of_one_service_never_overlap() {
        let mut s: Scheduler<u32> = Scheduler::new(4, Duration::ZERO);
        s.upsert("db", every(10), None, t(0));
        let first = s.poll(t(0));
        assert_eq!(names(&first), ["db"]);
        // The job runs for 35 s: three slots pass, nothing else starts.
        for now in [10, 20, 30] {
            assert!(s.poll(t(now)).is_empty(), "second run at {now}");
        }
        s.request("db", 7, t(31));
        assert!(s.poll(t(32)).is_empty(), "requested run while running");
        s.finished("db", &first[0].1, t(0), t(35));
        // The queued request runs first, then the schedule resumes.
        assert_eq!(s.poll(t(35)), vec![("db".to_string(), Start::Requested(7))]);
    }

    #[test]
    fn a_paused_service_runs_requested_jobs_only_and_its_missed_slot_once_on_resume() {
        let mut s: Scheduler<u32> = Scheduler::new(4, Duration::ZERO);
        s.upsert("db", every(10), Some(t(-5)), t(0));
        s.pause("db");
        // An event re-reading the container does not lift the pause.
        s.upsert("db", every(10), Some(t(-5)), t(1));
        for now in [5, 15, 25] {
            assert!(
                s.poll(t(now)).is_empty(),
                "scheduled run while paused at {now}"
            );
        }
        assert_eq!(s.next_wakeup(), None, "a paused slot wakes nobody");
        s.request("db", 9, t(26));
        let asked = s.poll(t(26));
        assert_eq!(asked, vec![("db".to_string(), Start::Requested(9))]);
        s.finished("db", &asked[0].1, t(26), t(27));
        assert!(s.is_paused("db"));
        s.resume("db");
        assert_eq!(names(&s.poll(t(28))), ["db"], "the missed slot runs once");
        assert!(s.poll(t(29)).is_empty());
    }

    #[test]
    fn a_failed_run_asked_to_retry_runs_again_then_but_never_later_than_its_slot() {
        let mut s: Scheduler<u32> = Scheduler::new(4, Duration::ZERO);
        s.upsert("region#east", every(1800), None, t(0));
        let first = s.poll(t(0));
        s.retry_at("region#east", t(10));
        s.finished("region#east", &first[0].1, t(0), t(2));
        assert!(s.poll(t(9)).is_empty());
        let second = s.poll(t(10));
        assert_eq!(names(&second), ["region#east"], "the retry");
        // A retry asked beyond the next slot does not push the slot back.
        s.retry_at("region#east", t(5000));
        s.finished("region#east", &second[0].1, t(10), t(12));
        assert_eq!(s.next_run("region#east"), Some(t(1810)));
    }

    #[test]
    fn missed_slots_while_down_run_once_not_once_each() {
        let mut s: Scheduler<u32> = Scheduler::new(4, Duration::ZERO);
        // Last backup 10 intervals ago: the daemon was down.
        s.upsert("db", every(60), Some(t(-600)), t(0));
        let started = s.poll(t(0));
        assert_eq!(names(&started), ["db"]);
        s.finished("db", &started[0].1, t(0), t(2));
        for now in [2, 30, 59] {
            assert!(s.poll(t(now)).is_empty(), "catch-up run at {now}");
        }
        assert_eq!(names(&s.poll(t(60))), ["db"]);
    }

    #[test]
    fn a_recent_backup_is_not_repeated_at_start() {
        let mut s: Scheduler<u32> = Scheduler::new(4, Duration::ZERO);
        s.upsert("db", every(60), Some(t(-20)), t(0));
        assert!(s.poll(t(0)).is_empty());
        assert_eq!(s.next_run("db"), Some(t(40)));
        assert_eq!(names(&s.poll(t(40))), ["db"]);
    }

    #[test]
    fn the_global_limit_holds_and_frees_up() {
        let mut s: Scheduler<u32> = Scheduler::new(2, Duration::ZERO);
        for n in ["a", "b", "c"] {
            s.upsert(n, every(60), None, t(0));
        }
        let first = s.poll(t(0));
        assert_eq!(first.len(), 2);
        assert_eq!(s.running(), 2);
        assert!(s.poll(t(1)).is_empty());
        s.finished(&first[0].0, &first[0].1, t(0), t(5));
        assert_eq!(names(&s.poll(t(5))), ["c"]);
    }

    #[test]
    fn a_schedule_change_takes_effect_and_an_unchanged_one_keeps_its_slot() {
        let mut s: Scheduler<u32> = Scheduler::new(2, Duration::ZERO);
        s.upsert("db", every(3600), Some(t(0)), t(10));
        assert_eq!(s.next_run("db"), Some(t(3600)));
        s.upsert("db", every(3600), Some(t(0)), t(20));
        assert_eq!(s.next_run("db"), Some(t(3600)));
        s.upsert("db", every(60), Some(t(0)), t(30));
        assert_eq!(s.next_run("db"), Some(t(60)));
    }

    #[test]
    fn a_removed_service_finishes_its_queue_then_disappears() {
        let mut s: Scheduler<u32> = Scheduler::new(2, Duration::ZERO);
        s.upsert("db", every(60), Some(t(0)), t(1));
        s.request("db", 1, t(2));
        s.unschedule("db");
        let started = s.poll(t(3));
        assert_eq!(started, vec![("db".to_string(), Start::Requested(1))]);
        s.finished("db", &started[0].1, t(3), t(4));
        assert_eq!(s.next_wakeup(), None);
        assert!(s.poll(t(1000)).is_empty());
    }

    #[test]
    fn a_cron_schedule_skips_the_slots_missed_during_a_long_run() {
        let mut s: Scheduler<u32> = Scheduler::new(2, Duration::ZERO);
        let cron = Schedule::parse("* * * * *").unwrap(); // every minute
        s.upsert("db", cron, Some(t(-3600)), t(0));
        let started = s.poll(t(0));
        assert_eq!(started.len(), 1);
        // The run takes 5 minutes; afterwards exactly one run is due, not five.
        s.finished("db", &started[0].1, t(0), t(300));
        let catch_up = s.poll(t(300));
        assert_eq!(catch_up.len(), 1);
        s.finished("db", &catch_up[0].1, t(300), t(310));
        assert!(s.poll(t(311)).is_empty(), "a second catch-up run");
        assert_eq!(s.next_run("db"), Some(t(360)));
    }

    proptest! {
        #[test]
        fn jitter_stays_within_its_bound(name in "[a-z]{1,12}", slot in 0i64..1_000_000_000, ms in 1u64..600_000) {
            let slot = Timestamp::from_second(1_700_000_000 + slot).unwrap();
            let j = jitter_for(&name, slot, Duration::from_millis(ms));
            prop_assert!(j < Duration::from_millis(ms));
            prop_assert_eq!(j, jitter_for(&name, slot, Duration::from_millis(ms)));
        }

        #[test]
        fn scheduled_runs_start_within_jitter_of_their_slot(
            interval in 10u64..100_000, jitter in 0u64..10_000, last in 0i64..1_000_000,
        ) {
            let mut s: Scheduler<u32> = Scheduler::new(1, Duration::from_millis(jitter));
            let last = t(-last);
            s.upsert("svc", every(interval), Some(last), t(0));
            let base = match last.checked_add(Duration::from_secs(interval)).unwrap() {
                slot if slot > t(0) => slot,
                _ => t(0),
            };
            let next = s.next_run("svc").unwrap();
            let bound = Duration::from_millis(jitter).min(Duration::from_secs(interval) / 10);
            prop_assert!(next >= base);
            prop_assert!(next == base || next < base.checked_add(bound).unwrap());
        }

        #[test]
        fn never_more_than_the_limit_run(limit in 1usize..5, services in 1usize..12, steps in 1usize..40) {
            let mut s: Scheduler<u32> = Scheduler::new(limit, Duration::ZERO);
            for i in 0..services {
                s.upsert(&format!("s{i}"), every(10 + i as u64), None, t(0));
            }
            let mut running: Vec<(String, Start<u32>, Timestamp)> = Vec::new();
            for step in 0..steps as i64 {
                let now = t(step * 7);
                if step % 3 == 2 && !running.is_empty() {
                    let (n, st, at) = running.remove(0);
                    s.finished(&n, &st, at, now);
                }
                for (n, st) in s.poll(now) {
                    prop_assert!(!running.iter().any(|(r, _, _)| *r == n), "overlap of {}", n);
                    running.push((n, st, now));
                }
                prop_assert!(running.len() <= limit);
                prop_assert_eq!(s.running(), running.len());
            }
        }
    }
}
