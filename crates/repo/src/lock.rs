//! Repository locks in restic's own format and by restic's rules, so Lifeboat on several
//! hosts and the `restic` CLI respect each other's locks both ways.
//!
//! A lock is an encrypted JSON file `locks/ID` (ID = SHA-256 of the stored bytes) saying who
//! holds it, since when, and whether it is exclusive. Backups, restores, checks and
//! snapshot deletions take a shared lock; pruning takes an exclusive one. A lock is stale when the
//! store wrote it more than 30 minutes before it wrote ours, or when it was taken on this host
//! by a process that is gone. The age is read from the store's clock (a file's mtime, S3's
//! `LastModified`), not from the time inside the lock: a host whose clock is an hour behind
//! writes an hour-old time into a fresh lock, which restic's rule would take for stale (and
//! prune under a running backup). Taking one: look for conflicting live locks, write ours, wait 200 ms, look again (a
//! store without conditional writes, like Garage, cannot do better), and back off if another
//! appeared. A held lock is rewritten every 5 minutes; a holder that could not refresh it for
//! 25 minutes (a freeze, a partition) counts it as lost and commits no snapshot (restic#2715).

use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustic_core::FileCipher;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::Store;

/// The directory of lock files.
const LOCKS: &str = "locks";

/// restic's timings; tests shorten them.
#[derive(Debug, Clone)]
pub struct LockTimings {
    /// A lock older than this is stale (restic: 30 minutes).
    pub stale_after: Duration,
    /// How often a held lock is rewritten (restic: 5 minutes).
    pub refresh_every: Duration,
    /// How long after writing a lock the others are looked at again (restic: 200 ms), for
    /// an exclusive lock and in object storage. A shared lock in a local repository looks
    /// again at once: on a file system, of two lockers that each write their lock and then
    /// list the others, the later lister always sees the earlier writer, so one of two
    /// conflicting lockers backs off without a pause (and the exclusive one still pauses).
    pub settle: Duration,
    /// How long to wait for a conflicting lock to go before giving up.
    pub wait: Duration,
}

impl Default for LockTimings {
    fn default() -> Self {
        LockTimings {
            stale_after: Duration::from_secs(30 * 60),
            refresh_every: Duration::from_secs(5 * 60),
            settle: Duration::from_millis(200),
            wait: Duration::from_secs(120),
        }
    }
}

/// The JSON restic stores in a lock file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LockFile {
    time: jiff::Timestamp,
    exclusive: bool,
    hostname: String,
    #[serde(default)]
    username: String,
    pid: u32,
    #[serde(default)]
    uid: u32,
    #[serde(default)]
    gid: u32,
}

impl LockFile {
    fn describe(&self) -> String {
        format!(
            "{} lock of {}pid {} on host `{}`, since {}",
            if self.exclusive {
                "an exclusive"
            } else {
                "a shared"
            },
            if self.username.is_empty() {
                String::new()
            } else {
                format!("user {} ", self.username)
            },
            self.pid,
            self.hostname,
            self.time.strftime("%Y-%m-%d %H:%M:%S UTC")
        )
    }

    /// Whether this lock is stale. `store_times`: the store's clock now (when it wrote our own
    /// lock) and when it wrote this one. With them, the age is the store's alone: a holder
    /// whose clock is behind writes an old time but a fresh file, and is live. Without them
    /// (the first look, before ours is written), a lock that looks old by its holder's time is
    /// `Undecided`: judged again once ours is written.
    fn staleness(
        &self,
        host: &str,
        timings: &LockTimings,
        store_times: Option<(jiff::Timestamp, jiff::Timestamp)>,
    ) -> Staleness {
        if self.hostname == host && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists() {
            return Staleness::Stale;
        }
        let stale_after = jiff::SignedDuration::try_from(timings.stale_after).unwrap_or_default();
        match store_times {
            Some((now, written)) if now.duration_since(written) > stale_after => Staleness::Stale,
            Some(_) => Staleness::Live,
            None if jiff::Timestamp::now().duration_since(self.time) > stale_after => {
                Staleness::Undecided
            }
            None => Staleness::Live,
        }
    }
}

/// What a look at another run's lock found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Staleness {
    Live,
    Stale,
    /// Old by its holder's clock, but no time of the store's to judge it by yet.
    Undecided,
}

/// Who holds the lock that stands in the way, and when it turns stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockConflict {
    /// The holder (kind, user, pid, host, since).
    pub holder: String,
    /// When the holder's lock goes stale if it is not refreshed.
    pub stale_at: String,
}

/// Why a lock could not be taken.
#[derive(Debug)]
pub(crate) enum LockError {
    Conflict(LockConflict),
    Store(String),
}

/// A lock this process holds; released (its file deleted) when the last handle goes.
pub struct HeldLock {
    exclusive: bool,
    state: Arc<LockState>,
    stop: Option<Sender<()>>,
    refresher: Option<JoinHandle<()>>,
}

/// What the refresher and the commit gate share.
struct LockState {
    store: Arc<Store>,
    /// The lock's current file name (it changes at each refresh).
    name: Mutex<String>,
    /// When the lock was last written, by the monotonic clock and by the wall clock.
    written: Mutex<(Instant, jiff::Timestamp)>,
    /// Set once the lock cannot be trusted any more.
    lost: Mutex<Option<String>>,
    timings: LockTimings,
}

impl LockState {
    /// `Err` when the lock may have been taken for stale by others: commit nothing then.
    fn still_held(&self) -> Result<(), String> {
        if let Some(why) = self.lost.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Err(why);
        }
        let (at, wall) = *self.written.lock().unwrap_or_else(|p| p.into_inner());
        let limit = self
            .timings
            .stale_after
            .saturating_sub(self.timings.refresh_every);
        let wall_age = jiff::Timestamp::now().duration_since(wall).unsigned_abs();
        let age = at.elapsed().max(wall_age);
        if age > limit {
            return Err(format!(
                "the repository lock was last refreshed {}s ago (it turns stale for others after \
                 {}s)",
                age.as_secs(),
                self.timings.stale_after.as_secs()
            ));
        }
        Ok(())
    }

    fn lose(&self, why: String) {
        log::error!("repository lock lost: {why}");
        let mut lost = self.lost.lock().unwrap_or_else(|p| p.into_inner());
        lost.get_or_insert(why);
    }
}

impl std::fmt::Debug for HeldLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldLock")
            .field("exclusive", &self.exclusive)
            .field(
                "name",
                &*self.state.name.lock().unwrap_or_else(|p| p.into_inner()),
            )
            .finish()
    }
}

impl HeldLock {
    /// True when it excludes everyone else.
    pub fn is_exclusive(&self) -> bool {
        self.exclusive
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
        let name = self
            .state
            .name
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Err(e) = self.state.store.delete(&name) {
            log::warn!(
                "could not remove the repository lock {name}: {e} (it goes stale by itself)"
            );
        }
    }
}

/// Takes locks for one repository and tells the engine's writer whether it may commit.
pub(crate) struct Locker {
    store: Arc<Store>,
    cipher: FileCipher,
    host: String,
    timings: LockTimings,
    /// The lock held now, if any (operations reuse it).
    current: Mutex<Weak<HeldLock>>,
}

impl Locker {
    pub(crate) fn new(
        store: Arc<Store>,
        cipher: FileCipher,
        host: String,
        timings: LockTimings,
    ) -> Self {
        Locker {
            store,
            cipher,
            host,
            timings,
            current: Mutex::new(Weak::new()),
        }
    }

    /// The lock held for an operation: the one this process holds already when it suffices,
    /// else a new one (waiting up to the configured time for conflicting ones to go).
    pub(crate) fn lock(&self, exclusive: bool) -> Result<Arc<HeldLock>, LockError> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(held) = current.upgrade()
            && (held.exclusive || !exclusive)
        {
            return Ok(held);
        }
        let held = Arc::new(self.acquire(exclusive)?);
        *current = Arc::downgrade(&held);
        Ok(held)
    }

    /// `Err` (why) when the lock the current operation holds may have gone stale.
    pub(crate) fn may_commit(&self) -> Result<(), String> {
        match self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .upgrade()
        {
            Some(held) => held.state.still_held(),
            None => Err("no repository lock is held".into()),
        }
    }

    fn acquire(&self, exclusive: bool) -> Result<HeldLock, LockError> {
        let deadline = Instant::now() + self.timings.wait;
        let mut pause = Duration::from_millis(250);
        let mut announced = false;
        loop {
            match self.try_acquire(exclusive) {
                Ok(held) => return Ok(held),
                Err(LockError::Conflict(c)) if Instant::now() + pause < deadline => {
                    if !announced {
                        log::warn!(
                            "the repository is locked by {}; waiting up to {}s for it",
                            c.holder,
                            self.timings.wait.as_secs()
                        );
                        announced = true;
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn try_acquire(&self, exclusive: bool) -> Result<HeldLock, LockError> {
        self.conflict(exclusive, None)?;
        let (name, wall) = self.write(exclusive)?;
        if exclusive || self.store.is_remote() {
            std::thread::sleep(self.timings.settle);
        }
        if let Err(e) = self.conflict(exclusive, Some(&name)) {
            let _ = self.store.delete(&name);
            return Err(e);
        }
        let state = Arc::new(LockState {
            store: self.store.clone(),
            name: Mutex::new(name),
            written: Mutex::new((Instant::now(), wall)),
            lost: Mutex::new(None),
            timings: self.timings.clone(),
        });
        let (stop, stopped) = channel::<()>();
        let refresher = {
            let state = state.clone();
            let cipher = self.cipher.clone();
            let host = self.host.clone();
            std::thread::Builder::new()
                .name("lifeboat-lock".into())
                .spawn(move || {
                    while let Err(RecvTimeoutError::Timeout) =
                        stopped.recv_timeout(state.timings.refresh_every)
                    {
                        refresh(&state, &cipher, &host, exclusive);
                    }
                })
                .map_err(|e| LockError::Store(format!("cannot start the lock refresher: {e}")))?
        };
        Ok(HeldLock {
            exclusive,
            state,
            stop: Some(stop),
            refresher: Some(refresher),
        })
    }

    /// The first live lock that conflicts with taking one of this kind (`own`, the lock this
    /// run just wrote, is skipped, and gives the store's clock to judge the others' age by).
    fn conflict(&self, exclusive: bool, own: Option<&str>) -> Result<(), LockError> {
        let listed = self.store.list_dated(LOCKS).map_err(LockError::Store)?;
        let store_now = own.and_then(|own| {
            listed
                .iter()
                .find(|(n, _)| format!("{LOCKS}/{n}") == own)
                .and_then(|(_, t)| *t)
        });
        for (name, written) in listed {
            let name = format!("{LOCKS}/{name}");
            if own == Some(name.as_str()) {
                continue;
            }
            let Some(file) = self.read(&name) else {
                continue;
            };
            // This process's own locks never conflict (an exclusive step inside a run that
            // holds a shared lock); within one host the prune gate orders the threads.
            let ours = file.hostname == self.host && file.pid == std::process::id();
            if ours {
                continue;
            }
            let store_times = store_now.zip(written);
            // A store that gives no times: the holder's own time decides, as restic's rule.
            let store_times = match (own, store_times) {
                (Some(_), None) => Some((jiff::Timestamp::now(), file.time)),
                (_, t) => t,
            };
            match file.staleness(&self.host, &self.timings, store_times) {
                Staleness::Stale => {
                    // A killed run's lock (or one never refreshed): removed, as restic's own
                    // `unlock` would, so restic's exclusive commands are not blocked by it.
                    if let Err(e) = self.store.delete(&name) {
                        log::debug!("could not remove the stale lock {name}: {e}");
                    }
                    continue;
                }
                Staleness::Undecided => continue,
                Staleness::Live => {}
            }
            if file.exclusive || exclusive {
                let stale_at = file
                    .time
                    .checked_add(
                        jiff::SignedDuration::try_from(self.timings.stale_after)
                            .unwrap_or_default(),
                    )
                    .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
                    .unwrap_or_default();
                return Err(LockError::Conflict(LockConflict {
                    holder: file.describe(),
                    stale_at,
                }));
            }
        }
        Ok(())
    }

    /// A lock file, `None` when it vanished or cannot be read (restic ignores those too).
    fn read(&self, name: &str) -> Option<LockFile> {
        let data = match self.store.get(name) {
            Ok(Some(d)) => d,
            Ok(None) => return None,
            Err(e) => {
                log::warn!("cannot read lock {name}: {e}");
                return None;
            }
        };
        let plain = self
            .cipher
            .decrypt(&data)
            .map_err(|e| log::warn!("ignoring lock {name}: cannot decrypt it: {e}"))
            .ok()?;
        serde_json::from_slice(&plain)
            .map_err(|e| log::warn!("ignoring lock {name}: {e}"))
            .ok()
    }

    /// Test support: every lock's time moved back by `by`; with `backdate` its file's time too
    /// (a holder that stopped refreshing), without it only the time inside (a holder whose
    /// clock is behind).
    #[cfg(feature = "craft")]
    pub(crate) fn age_all(&self, by: Duration, backdate: bool) -> Result<usize, String> {
        let names = self.store.list(LOCKS)?;
        for name in &names {
            let name = format!("{LOCKS}/{name}");
            let Some(mut file) = self.read(&name) else {
                continue;
            };
            file.time = file
                .time
                .checked_sub(jiff::SignedDuration::try_from(by).map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
            let json = serde_json::to_vec(&file).map_err(|e| e.to_string())?;
            let data = self.cipher.encrypt(&json).map_err(|e| e.to_string())?;
            let aged = format!("{LOCKS}/{}", hex::encode(Sha256::digest(&data)));
            self.store.put(&aged, &data)?;
            if backdate {
                self.store.backdate(&aged, by)?;
            }
            self.store.delete(&name)?;
        }
        Ok(names.len())
    }

    fn write(&self, exclusive: bool) -> Result<(String, jiff::Timestamp), LockError> {
        write_lock(&self.store, &self.cipher, &self.host, exclusive).map_err(LockError::Store)
    }
}

fn write_lock(
    store: &Store,
    cipher: &FileCipher,
    host: &str,
    exclusive: bool,
) -> Result<(String, jiff::Timestamp), String> {
    let (uid, gid) = owner();
    let file = LockFile {
        time: jiff::Timestamp::now(),
        exclusive,
        hostname: host.to_string(),
        username: std::env::var("USER").unwrap_or_else(|_| {
            if uid == 0 {
                "root".into()
            } else {
                String::new()
            }
        }),
        pid: std::process::id(),
        uid,
        gid,
    };
    let json = serde_json::to_vec(&file).map_err(|e| e.to_string())?;
    let data = cipher.encrypt(&json).map_err(|e| e.to_string())?;
    let name = format!("{LOCKS}/{}", hex::encode(Sha256::digest(&data)));
    store.put(&name, &data)?;
    Ok((name, file.time))
}

/// Rewrites the lock with a new time, then removes the old file (restic's refresh).
fn refresh(state: &LockState, cipher: &FileCipher, host: &str, exclusive: bool) {
    let old = state.name.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match state.store.get(&old) {
        Ok(Some(_)) => {}
        Ok(None) => {
            state.lose(format!(
                "the lock file {old} was removed by someone else (`restic unlock`?)"
            ));
            return;
        }
        Err(e) => log::warn!("cannot look at the repository lock {old}: {e}"),
    }
    match write_lock(&state.store, cipher, host, exclusive) {
        Ok((name, wall)) => {
            *state.written.lock().unwrap_or_else(|p| p.into_inner()) = (Instant::now(), wall);
            *state.name.lock().unwrap_or_else(|p| p.into_inner()) = name;
            if let Err(e) = state.store.delete(&old) {
                log::warn!("could not remove the old lock {old}: {e}");
            }
        }
        Err(e) => {
            log::warn!("could not refresh the repository lock: {e}");
            if let Err(why) = state.still_held() {
                state.lose(why);
            }
        }
    }
}

/// The uid and gid this process runs as (from `/proc/self`, without `unsafe`).
fn owner() -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| (m.uid(), m.gid()))
        .unwrap_or((0, 0))
}
