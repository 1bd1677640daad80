//! Lifeboat patch: the items of a backup reach the file archiver's threads in batches.
//!
//! Upstream handed every item (each directory and each file, also the unchanged files that
//! only take their parent's content) to a worker thread and back one at a time: three thread
//! hand-offs per item, most of a no-change backup's CPU spent waking and yielding threads.

/// A batch closes at this many items...
pub const MAX_ITEMS: usize = 256;
/// ...or once the bytes its items must read reach this many: a large file still gets a
/// batch (a thread) close to its own, and new small files still spread over the threads.
pub const MAX_WORK: u64 = 1 << 20;
/// What opening and reading one file costs besides its bytes, in bytes.
pub const PER_FILE: u64 = 4096;

/// Groups consecutive items into batches, in order ([`MAX_ITEMS`], [`MAX_WORK`]); `work`
/// tells the bytes an item must read (0: none, a directory or an unchanged file).
#[allow(missing_debug_implementations)]
pub struct Batches<I, F> {
    inner: I,
    work: F,
}

impl<I, F> Batches<I, F> {
    /// Batches of `inner`'s items.
    pub fn new(inner: I, work: F) -> Self {
        Self { inner, work }
    }
}

impl<I: Iterator, F: Fn(&I::Item) -> Option<u64>> Iterator for Batches<I, F> {
    type Item = Vec<I::Item>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut batch = Vec::new();
        let mut work = 0;
        while batch.len() < MAX_ITEMS && work < MAX_WORK {
            let Some(item) = self.inner.next() else { break };
            work += (self.work)(&item).map_or(0, |bytes| bytes + PER_FILE);
            batch.push(item);
        }
        (!batch.is_empty()).then_some(batch)
    }
}
