//! A restore's record of what it creates: written (and synced) before it creates anything,
//! removed once its container has started or its failure has been undone. A restore killed in
//! between leaves the record; the next restore to the same name, holding that name's lock,
//! removes what was left half done (the container if it never started, the volumes the killed
//! run created), so the same restore, asked again, just works.

use std::path::{Path, PathBuf};

use lifeboat_consistency::ContainerLock;
use serde::{Deserialize, Serialize};

use crate::{CoreError, Engine, Note};

#[derive(Debug, Serialize, Deserialize)]
struct RestoreIntent {
    /// The container the restore creates.
    container: String,
    /// The volumes it creates (they did not exist before it).
    volumes: Vec<String>,
}

fn path(state_dir: &Path, target: &str) -> PathBuf {
    state_dir.join("restores").join(format!("{target}.json"))
}

/// One restore to `target` at a time, across processes: `Busy` (exit 11) while another runs.
pub(crate) fn lock(state_dir: &Path, target: &str) -> Result<ContainerLock, CoreError> {
    Ok(ContainerLock::acquire(
        state_dir,
        &format!("restore.{target}"),
    )?)
}

/// Records what a restore to `target` is about to create. The caller holds [`lock`].
pub(crate) fn record(
    state_dir: &Path,
    target: &str,
    volumes: &[String],
) -> Result<PathBuf, CoreError> {
    let path = path(state_dir, target);
    let intent = RestoreIntent {
        container: target.to_string(),
        volumes: volumes.to_vec(),
    };
    let json = serde_json::to_vec(&intent).expect("an intent serialises");
    lifeboat_consistency::write_durably(&path, &json)
        .map_err(CoreError::io("writing", path.display()))?;
    Ok(path)
}

/// The restore is over (finished, or its failure undone).
pub(crate) fn clear(path: &Path) {
    let _ = std::fs::remove_file(path);
}

/// Removes what a killed restore to `target` left half done, if one did. The caller holds
/// [`lock`], so the run that wrote the record is gone. A container that is running was
/// restored whole (the record goes last): it and its volumes stay.
pub(crate) fn finish_interrupted(
    engine: &dyn Engine,
    state_dir: &Path,
    target: &str,
    note: Note<'_>,
) -> Result<(), CoreError> {
    let path = path(state_dir, target);
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(());
    };
    // A record that cannot be read names nothing to remove.
    let Ok(intent) = serde_json::from_slice::<RestoreIntent>(&bytes) else {
        clear(&path);
        return Ok(());
    };
    let container = engine.container(&intent.container)?;
    if container.as_ref().is_some_and(|c| c.state.running) {
        clear(&path);
        return Ok(());
    }
    note(&format!(
        "an earlier restore to {target} was interrupted: removing what it left half done"
    ));
    remove_created(
        engine,
        &intent.container,
        container.is_some(),
        &intent.volumes,
        note,
    );
    clear(&path);
    Ok(())
}

/// Removes what a restore created before its container started: the container `name` (when
/// `container` says it was created) and `volumes`, those that exist. Failures are noted: the
/// next restore to the name tries again.
pub(crate) fn remove_created(
    engine: &dyn Engine,
    name: &str,
    container: bool,
    volumes: &[String],
    note: Note<'_>,
) {
    if container {
        note(&format!(
            "removing the container {name} the restore created"
        ));
        if let Err(e) = engine.remove_container(name) {
            note(&format!("could not remove the container {name}: {e}"));
        }
    }
    for v in volumes {
        if let Ok(Some(_)) = engine.volume(v) {
            note(&format!("removing the volume {v} the restore created"));
            if let Err(e) = engine.remove_volume(v) {
                note(&format!("could not remove the volume {v}: {e}"));
            }
        }
    }
}
