//! The freeze/thaw pair: `lifeboat.freeze` starts a command that takes a lock inside the
//! container and holds it (for example a session that ran `FLUSH TABLES WITH READ LOCK` and
//! then sleeps) and prints a line once the lock is held; `lifeboat.thaw` releases it (for
//! example by killing that session). The thaw is recorded on disk before the freeze starts, so
//! a killed Lifeboat run is thawed by the next one.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lifeboat_docker::{Engine, ExecStream};

use crate::HookError;
use crate::hooks::{run_thaw, sh};
use crate::journal::{Intent, IntentAction, write_intent};

/// A freeze in place. Call [`FreezeSession::release`]; dropping it releases too.
#[must_use = "a freeze must be released"]
pub struct FreezeSession<'a> {
    engine: &'a dyn Engine,
    container: String,
    thaw: String,
    timeout: Duration,
    stream: Option<Box<dyn ExecStream>>,
    intent: Option<PathBuf>,
}

/// Starts the freeze command and waits (at most `timeout`) for its first line of output.
pub fn start_freeze<'a>(
    engine: &'a dyn Engine,
    state_dir: &Path,
    name: &str,
    id: &str,
    freeze: &str,
    thaw: &str,
    timeout: Duration,
) -> Result<FreezeSession<'a>, HookError> {
    let intent = Intent {
        container_id: id.to_string(),
        container_name: name.to_string(),
        action: IntentAction::Frozen,
        pid: std::process::id(),
        at_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        thaw: Some(thaw.to_string()),
        stop_timeout_s: None,
    };
    let path = write_intent(state_dir, &intent)?;
    let mut session = FreezeSession {
        engine,
        container: id.to_string(),
        thaw: thaw.to_string(),
        timeout,
        stream: None,
        intent: Some(path),
    };
    let mut stream = engine.exec_stream(id, &sh(freeze), &[])?;
    // Wait for the first line on a helper thread, so the wait can time out.
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut byte = [0u8; 1];
        let ok = loop {
            match stream.read(&mut byte) {
                Ok(1) if byte[0] == b'\n' => break true,
                Ok(1) => continue,
                _ => break false,
            }
        };
        let _ = tx.send(ok);
        stream
    });
    match rx.recv_timeout(timeout) {
        Ok(true) => {
            session.stream = reader.join().ok();
            Ok(session)
        }
        Ok(false) => {
            let mut stream = reader.join().ok();
            let detail = stream
                .as_mut()
                .and_then(|s| s.finish().ok())
                .map(|o| o.output)
                .unwrap_or_default();
            session.release_quietly();
            Err(HookError::Failed {
                which: "freeze",
                container: name.to_string(),
                code: -1,
                output: format!("ended before signalling it was frozen: {}", detail.trim()),
            })
        }
        Err(_) => {
            session.release_quietly();
            Err(HookError::TimedOut {
                which: "freeze",
                container: name.to_string(),
                seconds: timeout.as_secs(),
            })
        }
    }
}

impl FreezeSession<'_> {
    /// Runs the thaw and waits (at most the timeout) for the freeze command to end.
    pub fn release(mut self) -> Result<(), HookError> {
        self.release_inner()
    }

    fn release_quietly(&mut self) {
        if let Err(e) = self.release_inner() {
            log::error!("releasing the freeze of {}: {e}", self.container);
        }
    }

    fn release_inner(&mut self) -> Result<(), HookError> {
        let Some(intent) = self.intent.take() else {
            return Ok(());
        };
        run_thaw(self.engine, &self.container, &self.thaw)?;
        let _ = std::fs::remove_file(&intent);
        if let Some(mut stream) = self.stream.take() {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(stream.finish().is_ok());
            });
            if rx.recv_timeout(self.timeout).is_err() {
                log::error!(
                    "the freeze command in {} did not end after the thaw",
                    self.container
                );
            }
        }
        Ok(())
    }
}

impl Drop for FreezeSession<'_> {
    fn drop(&mut self) {
        self.release_quietly();
    }
}
