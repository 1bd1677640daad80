//! Which containers "all" means, for every command that acts on all of them (`backup --all`,
//! `backup --project`, `doctor` without names): one rule, [`is_enabled`] with everything in
//! by default, so `lifeboat.enable=false`, `0` and `no` leave a container out everywhere.

use lifeboat_docker::Engine;
use lifeboat_model::policy::is_enabled;

use crate::CoreError;

/// Containers not opted out by their `lifeboat.enable` label, of compose project `project`
/// if given, in the engine's order.
pub fn containers_in_scope(
    engine: &dyn Engine,
    project: Option<&str>,
) -> Result<Vec<String>, CoreError> {
    let mut out = Vec::new();
    for name in engine.container_names()? {
        if let Some(c) = engine.container(&name)?
            && is_enabled(&c.config.labels, true)
            && project.is_none_or(|p| c.compose.as_ref().is_some_and(|cp| cp.project == p))
        {
            out.push(name);
        }
    }
    Ok(out)
}
