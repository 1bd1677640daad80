//! Progress reporting: the engine's progress callbacks turned into plain events for the CLI.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustic_core::{Progress, ProgressBars, ProgressType, RusticProgress};

/// What the engine is doing now.
#[derive(Debug, Clone)]
pub struct ProgressEvent {
    /// What is going on ("backing up", "restoring file contents").
    pub title: String,
    /// How much is done (bytes or items).
    pub done: u64,
    /// Total when known (bytes or items).
    pub total: Option<u64>,
    /// The counts are bytes (else items).
    pub bytes: bool,
    /// The step has ended.
    pub finished: bool,
}

/// Receives progress; called from engine threads, so it must be cheap and thread-safe.
pub trait ProgressSink: Send + Sync + std::fmt::Debug + 'static {
    /// One event; called often, from any thread.
    fn update(&self, event: &ProgressEvent);
}

#[derive(Debug, Clone)]
pub(crate) struct Bars(pub Option<Arc<dyn ProgressSink>>);

impl ProgressBars for Bars {
    fn progress(&self, progress_type: ProgressType, prefix: &str) -> Progress {
        match (&self.0, progress_type) {
            (Some(sink), ProgressType::Bytes) => Progress::new(Bar {
                sink: sink.clone(),
                title: std::sync::Mutex::new(prefix.to_string()),
                done: AtomicU64::new(0),
                total: AtomicU64::new(0),
            }),
            _ => Progress::hidden(),
        }
    }
}

#[derive(Debug)]
struct Bar {
    sink: Arc<dyn ProgressSink>,
    title: std::sync::Mutex<String>,
    done: AtomicU64,
    total: AtomicU64,
}

impl Bar {
    fn emit(&self, finished: bool) {
        let total = self.total.load(Ordering::Relaxed);
        self.sink.update(&ProgressEvent {
            title: self.title.lock().map(|t| t.clone()).unwrap_or_default(),
            done: self.done.load(Ordering::Relaxed),
            total: (total > 0).then_some(total),
            bytes: true,
            finished,
        });
    }
}

impl RusticProgress for Bar {
    fn is_hidden(&self) -> bool {
        false
    }
    fn set_length(&self, len: u64) {
        self.total.store(len, Ordering::Relaxed);
    }
    fn set_title(&self, title: &str) {
        if let Ok(mut t) = self.title.lock() {
            *t = title.to_string();
        }
    }
    fn inc(&self, inc: u64) {
        self.done.fetch_add(inc, Ordering::Relaxed);
        self.emit(false);
    }
    fn finish(&self) {
        self.emit(true);
    }
}
