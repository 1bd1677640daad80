//! Pack uploads in parallel. The engine hands packs to its backend one at a time from a single
//! writer chain; against object storage each PUT waits a round trip (and Garage replicates it
//! before answering), so uploads run on a few threads while the engine goes on. Nothing that
//! refers to a pack (an index or snapshot file, a removal, a listing) is written before every
//! pending upload has finished, so a committed snapshot never names a missing pack, and the
//! first failed upload fails the next write.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use super::client::{S3Client, S3Failure};

/// Uploads at once.
const WORKERS: usize = 4;
/// Packs waiting or in flight at most (bounds memory: packs are about 1 MiB).
const IN_FLIGHT: usize = 8;

#[derive(Default)]
struct State {
    pending: usize,
    failed: Option<S3Failure>,
}

pub(crate) struct Uploads {
    queue: Option<SyncSender<(String, Vec<u8>)>>,
    state: Arc<(Mutex<State>, Condvar)>,
    workers: Vec<JoinHandle<()>>,
}

impl Uploads {
    pub(crate) fn start(client: &S3Client) -> Uploads {
        let (queue, jobs) = sync_channel::<(String, Vec<u8>)>(IN_FLIGHT);
        let jobs = Arc::new(Mutex::new(jobs));
        let state = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let workers = (0..WORKERS)
            .map(|i| {
                let (client, jobs, state) = (client.clone(), jobs.clone(), state.clone());
                std::thread::Builder::new()
                    .name(format!("lifeboat-s3-put-{i}"))
                    .spawn(move || work(&client, &jobs, &state))
                    .expect("an upload thread starts")
            })
            .collect();
        Uploads {
            queue: Some(queue),
            state,
            workers,
        }
    }

    /// Queues `body` for upload as `name`; waits while too many are pending. Fails at once
    /// once an earlier upload failed.
    pub(crate) fn put(&self, name: String, body: Vec<u8>) -> Result<(), S3Failure> {
        {
            let (lock, cv) = &*self.state;
            let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
            while s.pending >= IN_FLIGHT && s.failed.is_none() {
                s = cv.wait(s).unwrap_or_else(|p| p.into_inner());
            }
            if let Some(f) = &s.failed {
                return Err(f.clone());
            }
            s.pending += 1;
        }
        self.queue
            .as_ref()
            .expect("the queue lives as long as the uploads")
            .send((name, body))
            .map_err(|_| S3Failure::Malformed {
                what: "queueing an upload".into(),
                reason: "the upload threads are gone".into(),
            })
    }

    /// Waits until every queued upload has finished; the first failure since the last flush,
    /// if any (reported once: the next operation starts clean).
    pub(crate) fn flush(&self) -> Result<(), S3Failure> {
        let (lock, cv) = &*self.state;
        let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
        while s.pending > 0 {
            s = cv.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        match s.failed.take() {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }
}

fn work(
    client: &S3Client,
    jobs: &Mutex<Receiver<(String, Vec<u8>)>>,
    state: &(Mutex<State>, Condvar),
) {
    loop {
        let job = jobs.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok((name, body)) = job else { return };
        let skip = state
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .failed
            .is_some();
        let result = if skip {
            Ok(())
        } else {
            client.put(&name, &body)
        };
        let (lock, cv) = state;
        let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
        s.pending -= 1;
        if let Err(f) = result {
            s.failed.get_or_insert(f);
        }
        cv.notify_all();
    }
}

impl Drop for Uploads {
    fn drop(&mut self) {
        let _ = self.flush();
        drop(self.queue.take());
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
