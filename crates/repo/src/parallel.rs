//! Pack writes in parallel, for every store. The engine hands packs to its backend one at a
//! time from a single writer chain, and each write waits: an fsync on a local disk, a round
//! trip (which Garage answers only after replicating) on object storage. Here pack writes run
//! on a few threads while the engine goes on. Nothing that refers to a pack (an index or
//! snapshot file, a removal, a listing, a read of a pack) is done before every pending write
//! has finished, so a committed snapshot never names a missing pack; the first failed write
//! fails the next write and is reported once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend,
};

/// Pack writes at once.
const WORKERS: usize = 4;
/// Packs waiting or being written at most (bounds memory: packs are about 1 MiB).
const IN_FLIGHT: usize = 8;

#[derive(Default)]
struct State {
    pending: usize,
    failed: Option<String>,
}

type Job = (Id, bool, BytesList);

/// A backend whose pack writes run in parallel.
pub(crate) struct ParallelPacks {
    inner: Arc<dyn WriteBackend>,
    queue: Mutex<Option<SyncSender<Job>>>,
    state: Arc<(Mutex<State>, Condvar)>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl ParallelPacks {
    /// Pack writes go to `inner`; `written` counts their bytes (the repository's figures).
    pub(crate) fn new(inner: Arc<dyn WriteBackend>, written: Arc<AtomicU64>) -> ParallelPacks {
        let (queue, jobs) = sync_channel::<Job>(IN_FLIGHT);
        let jobs = Arc::new(Mutex::new(jobs));
        let state = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let workers = (0..WORKERS)
            .map(|i| {
                let (inner, jobs, state) = (inner.clone(), jobs.clone(), state.clone());
                let written = written.clone();
                std::thread::Builder::new()
                    .name(format!("lifeboat-pack-{i}"))
                    .spawn(move || work(inner.as_ref(), &jobs, &state, &written))
                    .expect("a pack writer thread starts")
            })
            .collect();
        ParallelPacks {
            inner,
            queue: Mutex::new(Some(queue)),
            state,
            workers: Mutex::new(workers),
        }
    }

    fn queue_pack(&self, id: Id, cacheable: bool, content: BytesList) -> RusticResult<()> {
        {
            let (lock, cv) = &*self.state;
            let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
            while s.pending >= IN_FLIGHT && s.failed.is_none() {
                s = cv.wait(s).unwrap_or_else(|p| p.into_inner());
            }
            if let Some(why) = &s.failed {
                return Err(failed(why));
            }
            s.pending += 1;
        }
        let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue
            .as_ref()
            .ok_or_else(|| failed("the pack writers are stopped"))?
            .send((id, cacheable, content))
            .map_err(|_| failed("the pack writer threads are gone"))
    }

    /// Waits until every queued pack is written; the first failure since the last settle.
    fn settle(&self) -> RusticResult<()> {
        let (lock, cv) = &*self.state;
        let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
        while s.pending > 0 {
            s = cv.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        match s.failed.take() {
            Some(why) => Err(failed(&why)),
            None => Ok(()),
        }
    }
}

fn failed(why: &str) -> Box<RusticError> {
    RusticError::new(ErrorKind::Backend, "writing a pack failed: {why}")
        .attach_context("why", why.to_string())
}

fn work(
    inner: &dyn WriteBackend,
    jobs: &Mutex<Receiver<Job>>,
    state: &(Mutex<State>, Condvar),
    written: &AtomicU64,
) {
    loop {
        let job = jobs.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok((id, cacheable, content)) = job else {
            return;
        };
        let (lock, cv) = state;
        let skip = lock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .failed
            .is_some();
        let size = content.size() as u64;
        let result = if skip {
            Ok(())
        } else {
            inner.write_bytes(FileType::Pack, &id, cacheable, content)
        };
        if result.is_ok() && !skip {
            written.fetch_add(size, Ordering::Relaxed);
        }
        let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
        s.pending -= 1;
        if let Err(e) = result {
            s.failed.get_or_insert_with(|| e.display_log());
        }
        cv.notify_all();
    }
}

impl Drop for ParallelPacks {
    fn drop(&mut self) {
        let _ = self.settle();
        drop(self.queue.lock().unwrap_or_else(|p| p.into_inner()).take());
        for w in self
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = w.join();
        }
    }
}

impl ReadBackend for ParallelPacks {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        self.settle()?;
        self.inner.list_with_size(tpe)
    }
    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        if tpe == FileType::Pack {
            self.settle()?;
        }
        self.inner.read_full(tpe, id)
    }
    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        if tpe == FileType::Pack {
            self.settle()?;
        }
        self.inner.read_partial(tpe, id, cacheable, offset, length)
    }
    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.inner.warmup_path(tpe, id)
    }
}

impl WriteBackend for ParallelPacks {
    fn create(&self) -> RusticResult<()> {
        self.inner.create()
    }
    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        if tpe == FileType::Pack {
            return self.queue_pack(*id, cacheable, content);
        }
        // An index or snapshot refers to packs: they are all stored first.
        self.settle()?;
        self.inner.write_bytes(tpe, id, cacheable, content)
    }
    fn remove(&self, tpe: FileType, id: &Id, cacheable: bool) -> RusticResult<()> {
        self.settle()?;
        self.inner.remove(tpe, id, cacheable)
    }
}
