//! Human output: progress on a terminal (one redrawn line), plain periodic lines otherwise;
//! a minimal logger for the engine's log records; a panic hook without stack dumps.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lifeboat_repo::{ProgressEvent, ProgressSink};

#[derive(Debug)]
pub struct Progress {
    tty: bool,
    last: Mutex<Option<Instant>>,
    started: Instant,
}

impl Progress {
    pub fn new() -> Self {
        Progress {
            tty: std::io::stderr().is_terminal(),
            last: Mutex::new(None),
            started: Instant::now(),
        }
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

impl ProgressSink for Progress {
    fn update(&self, e: &ProgressEvent) {
        let every = if self.tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(10)
        };
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        let now = Instant::now();
        if !e.finished && last.is_some_and(|l| now - l < every) {
            return;
        }
        *last = Some(now);
        let rate = e.done as f64 / self.started.elapsed().as_secs_f64().max(0.001);
        let total = e
            .total
            .map(|t| format!(" / {}", human_bytes(t)))
            .unwrap_or_default();
        let line = format!(
            "  {} {}{} ({}/s)",
            e.title.trim_end_matches("..."),
            human_bytes(e.done),
            total,
            human_bytes(rate as u64)
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
            if e.finished {
                let _ = writeln!(err);
            }
        } else if !e.finished {
            let _ = writeln!(err, "{line}");
        }
    }
}

/// Prints a human note on stderr (kept off stdout so `--json` stays parseable).
pub fn note(line: &str) {
    eprintln!("{}", lifeboat_docker::secrets::redact(line));
}

struct StderrLogger(log::LevelFilter);

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        // Lifeboat's own warnings (a skipped backup, say) show without -v.
        m.level() <= self.0 || (m.level() <= log::Level::Warn && m.target().starts_with("lifeboat"))
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            let mut text = lifeboat_docker::secrets::redact(&r.args().to_string());
            // The engine's reports run over many lines (and a backtrace with RUST_BACKTRACE):
            // its first line names what failed; the whole report shows with -vv.
            if !r.target().starts_with("lifeboat") && self.0 < log::LevelFilter::Debug {
                text.truncate(text.find('\n').unwrap_or(text.len()));
            }
            eprintln!("[{}] {text}", r.level().as_str().to_lowercase());
        }
    }
    fn flush(&self) {}
}

pub fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => log::LevelFilter::Error,
        1 => log::LevelFilter::Info,
        _ => log::LevelFilter::Debug,
    };
    if log::set_boxed_logger(Box::new(StderrLogger(level))).is_ok() {
        log::set_max_level(level.max(log::LevelFilter::Warn));
    }
}

/// The repository engine panics in worker threads on damaged data; Lifeboat contains those
/// panics and reports the damage itself, so the default stack-dump hook is replaced by one
/// terse line.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("unknown failure");
        eprintln!("lifeboat: internal failure in a worker: {msg}");
    }));
}
