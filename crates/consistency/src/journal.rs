//! Freezing a container with its undo recorded on disk first.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use lifeboat_docker::{Engine, EngineError};
use serde::{Deserialize, Serialize};

use crate::{ContainerLock, Mode, intents_dir};

/// What a run is about to do to a container, to be undone if it dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntentAction {
    /// It is paused: unpause it.
    Paused,
    /// It is stopped: start it.
    Stopped,
    /// A `lifeboat.freeze` session holds a lock inside the container; `thaw` releases it.
    Frozen,
}

/// A change Lifeboat made to a container and must undo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// The container, by id.
    pub container_id: String,
    /// The container, by name (for messages).
    pub container_name: String,
    /// What was done to it.
    pub action: IntentAction,
    /// The process that did it (its lock tells whether it still runs).
    pub pid: u32,
    /// When, in seconds since the epoch.
    pub at_unix: u64,
    /// For `Frozen`: the `lifeboat.thaw` command that releases the freeze.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thaw: Option<String>,
    /// For `Stopped`: the seconds the engine was given to stop it. The engine goes on
    /// stopping a container after the run that asked died; the undo waits that long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout_s: Option<i32>,
}

fn intent_path(state_dir: &Path, container_id: &str, action: IntentAction) -> PathBuf {
    intents_dir(state_dir).join(format!("{container_id}.{action:?}.json").to_lowercase())
}

pub(crate) fn write_intent(state_dir: &Path, intent: &Intent) -> Result<PathBuf, EngineError> {
    let path = intent_path(state_dir, &intent.container_id, intent.action);
    let io = |e: std::io::Error| EngineError::Api {
        op: "record the undo of",
        name: intent.container_name.clone(),
        message: format!("{}: {e}", path.display()),
    };
    let json = serde_json::to_vec(intent).expect("intent serialises");
    write_durably(&path, &json).map_err(io)?;
    Ok(path)
}

/// Writes `bytes` to `path` (creating its directory) so that a crash leaves either the old
/// file or the whole new one, synced: every on-disk record of an undo goes through here.
pub fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// A container held still; [`Frozen::thaw`] (or dropping it) puts it back.
#[must_use = "a frozen container must be thawed"]
pub struct Frozen<'a> {
    engine: &'a dyn Engine,
    intent: Option<(Intent, PathBuf)>,
}

/// Holds `name` (id `id`) still according to `mode`, recording the undo first. A container
/// that is not running is left alone (a stopped container stays stopped).
pub fn freeze<'a>(
    engine: &'a dyn Engine,
    state_dir: &Path,
    name: &str,
    id: &str,
    running: bool,
    mode: Mode,
    stop_timeout_s: i32,
) -> Result<Frozen<'a>, EngineError> {
    let action = match (mode, running) {
        (Mode::Pause, true) => IntentAction::Paused,
        (Mode::Stop, true) => IntentAction::Stopped,
        _ => {
            return Ok(Frozen {
                engine,
                intent: None,
            });
        }
    };
    let intent = Intent {
        container_id: id.to_string(),
        container_name: name.to_string(),
        action,
        pid: std::process::id(),
        thaw: None,
        stop_timeout_s: (action == IntentAction::Stopped).then_some(stop_timeout_s),
        at_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    let path = write_intent(state_dir, &intent)?;
    let mut frozen = Frozen {
        engine,
        intent: Some((intent, path)),
    };
    let result = match action {
        IntentAction::Paused => engine.pause_container(id),
        IntentAction::Stopped => engine.stop_container(id, stop_timeout_s),
        IntentAction::Frozen => unreachable!("freeze() only pauses or stops"),
    };
    match result {
        Ok(()) => Ok(frozen),
        Err(e) => {
            // Put back whatever half-happened, then report.
            if let Err(undo) = frozen.undo() {
                log::error!("undo after a failed freeze of {name}: {undo}");
            }
            Err(e)
        }
    }
}

impl Frozen<'_> {
    /// Puts the container back; the intent is removed only once that worked.
    pub fn thaw(mut self) -> Result<(), EngineError> {
        self.undo()
    }

    /// Whether this intent is a freeze (a thaw command to run).
    pub fn is_frozen(&self) -> bool {
        self.intent.is_some()
    }

    fn undo(&mut self) -> Result<(), EngineError> {
        let Some((intent, path)) = self.intent.take() else {
            return Ok(());
        };
        match undo_intent(self.engine, &intent) {
            Ok(()) => {
                let _ = std::fs::remove_file(&path);
                Ok(())
            }
            Err(e) => {
                // Keep the intent on disk: the next run (or `recover`) tries again.
                Err(e)
            }
        }
    }
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.undo() {
            log::error!("could not put a container back: {e}");
        }
    }
}

/// Undoes one intent, tolerating a container that is already back (or gone).
fn undo_intent(engine: &dyn Engine, intent: &Intent) -> Result<(), EngineError> {
    let Some(mut now) = engine.container(&intent.container_id)? else {
        return Ok(());
    };
    if let (IntentAction::Stopped, Some(timeout)) = (intent.action, intent.stop_timeout_s) {
        // A run killed while its stop was under way: the engine still stops the container
        // (within the timeout, then SIGKILL); starting it is only right once it is down.
        let until = std::time::Instant::now()
            + std::time::Duration::from_secs(timeout.clamp(0, 600) as u64 + 5);
        while now.state.running && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(200));
            let Some(again) = engine.container(&intent.container_id)? else {
                return Ok(());
            };
            now = again;
        }
    }
    match intent.action {
        IntentAction::Paused if now.state.is_paused() => {
            engine.unpause_container(&intent.container_id)
        }
        IntentAction::Stopped if !now.state.running => engine.start_container(&intent.container_id),
        IntentAction::Frozen if now.state.running => match &intent.thaw {
            Some(cmd) => crate::hooks::run_thaw(engine, &intent.container_id, cmd),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

/// Undoes the intents left by runs that died (their container lock is free), or with
/// `own_pid`, the ones this process recorded (from a signal handler). Returns what was done.
pub fn recover(engine: &dyn Engine, state_dir: &Path, own_pid: Option<u32>) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(intents_dir(state_dir)) else {
        return Vec::new();
    };
    let mut done = Vec::new();
    for entry in dir.filter_map(Result::ok) {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let Ok(intent) = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Intent>(&b).map_err(|e| e.to_string()))
        else {
            log::error!(
                "unreadable intent {}; remove it after checking the container",
                path.display()
            );
            continue;
        };
        let _lock = match own_pid {
            Some(pid) if intent.pid == pid => None,
            Some(_) => continue,
            None => match ContainerLock::acquire(state_dir, &intent.container_name) {
                Ok(lock) => Some(lock),
                Err(_) => continue, // a live run owns it
            },
        };
        match undo_intent(engine, &intent) {
            Ok(()) => {
                let _ = std::fs::remove_file(&path);
                let verb = match intent.action {
                    IntentAction::Paused => "unpaused",
                    IntentAction::Stopped => "restarted",
                    IntentAction::Frozen => "thawed",
                };
                done.push(format!(
                    "{verb} {} (left {:?} by Lifeboat process {})",
                    intent.container_name, intent.action, intent.pid
                ));
            }
            Err(e) => log::error!(
                "could not undo {:?} of {}: {e}",
                intent.action,
                intent.container_name
            ),
        }
    }
    done
}
