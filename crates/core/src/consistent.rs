//! Reading a container's data in a consistent state: the health gate, the user's hooks, and
//! the pause or stop around the capture, each undone on every path.

use std::path::Path;
use std::time::{Duration, Instant};

use lifeboat_consistency::{Hooks, Mode, freeze, run_hook, start_freeze};
use lifeboat_docker::{ContainerDetails, ContainerStatus, Engine, Health};

use crate::wait::{Backoff, Poll, poll_until};
use crate::{CoreError, Note, UnhealthyPolicy};

fn unhealthy_status(d: &ContainerDetails) -> Option<String> {
    match (d.state.status, d.state.health) {
        (Some(s @ (ContainerStatus::Restarting | ContainerStatus::Dead)), _) => Some(s.to_string()),
        (_, Some(Health::Unhealthy)) => Some(Health::Unhealthy.to_string()),
        _ => None,
    }
}

/// Lets a healthy container through; refuses, waits for, or (forced) accepts one that is
/// unhealthy, restarting or dead. Returns the container as last inspected.
pub(crate) fn health_gate(
    engine: &dyn Engine,
    details: ContainerDetails,
    policy: UnhealthyPolicy,
    note: Note<'_>,
) -> Result<ContainerDetails, CoreError> {
    let Some(status) = unhealthy_status(&details) else {
        return Ok(details);
    };
    match policy {
        UnhealthyPolicy::Force => {
            note(&format!(
                "{} is {status}; backing it up anyway (--unhealthy=force)",
                details.name
            ));
            Ok(details)
        }
        UnhealthyPolicy::Skip => Err(CoreError::NotHealthy {
            name: details.name,
            status,
        }),
        UnhealthyPolicy::Wait(limit) => {
            note(&format!(
                "{} is {status}; waiting up to {} s",
                details.name,
                limit.as_secs()
            ));
            // The state just seen was not healthy: look again after a first delay.
            let step = Duration::from_millis(500);
            std::thread::sleep(step);
            let waited = poll_until(Instant::now() + limit, Backoff::new(step, step), || {
                let now =
                    engine
                        .container(&details.id)?
                        .ok_or_else(|| CoreError::ContainerVanished {
                            name: details.name.clone(),
                        })?;
                Ok::<_, CoreError>(match unhealthy_status(&now) {
                    None if now.state.health != Some(Health::Starting) => Poll::Ready(now),
                    None => Poll::Pending(Health::Starting.to_string()),
                    Some(s) => Poll::Pending(s),
                })
            })?;
            waited.map_err(|status| CoreError::NotHealthy {
                name: details.name,
                status,
            })
        }
    }
}

/// Runs `capture` between the pre-hook + freeze and the thaw + post-hook. The thaw and the
/// post-hook run whatever happened before them; the first error is returned.
pub(crate) fn capture_consistently<T>(
    details: &ContainerDetails,
    mode: Mode,
    hooks: &Hooks,
    state_dir: &Path,
    engine: &dyn Engine,
    note: Note<'_>,
    capture: impl FnOnce() -> Result<T, CoreError>,
) -> Result<T, CoreError> {
    let running = details.state.running && !details.state.is_paused();
    let any_hook = hooks.pre.is_some() || hooks.post.is_some() || hooks.freeze.is_some();
    let hooks_apply = running && any_hook;
    if !running && any_hook {
        note(&format!(
            "{} is not running: its hooks are skipped",
            details.name
        ));
    }
    let pre = match (&hooks.pre, hooks_apply) {
        (Some(cmd), true) => {
            note(&format!("{}: pre hook", details.name));
            run_hook(
                engine,
                (&details.id, &details.name),
                "pre",
                cmd,
                hooks.timeout,
            )
            .map_err(CoreError::from)
        }
        _ => Ok(()),
    };
    let captured = pre.and_then(|()| {
        let verb = match mode {
            Mode::Pause => Some("pausing"),
            Mode::Stop => Some("stopping"),
            _ => None,
        };
        if let (Some(verb), true) = (verb, running) {
            note(&format!("{}: {verb} while its data is read", details.name));
        }
        let session = match (&hooks.freeze, running) {
            (Some((freeze_cmd, thaw_cmd)), true) => {
                note(&format!("{}: freeze hook", details.name));
                Some(start_freeze(
                    engine,
                    state_dir,
                    &details.name,
                    &details.id,
                    freeze_cmd,
                    thaw_cmd,
                    hooks.timeout,
                )?)
            }
            _ => None,
        };
        let stop_timeout = details.config.stop_timeout.unwrap_or(10) as i32;
        let frozen = freeze(
            engine,
            state_dir,
            &details.name,
            &details.id,
            running,
            mode,
            stop_timeout,
        )?;
        let result = capture();
        let thawed = frozen.thaw().map_err(CoreError::from);
        let released = match session {
            Some(s) => {
                note(&format!("{}: thaw hook", details.name));
                s.release().map_err(CoreError::from)
            }
            None => Ok(()),
        };
        let v = result?;
        thawed?;
        released?;
        Ok(v)
    });
    let post = match (&hooks.post, hooks_apply) {
        (Some(cmd), true) => {
            note(&format!("{}: post hook", details.name));
            run_hook(
                engine,
                (&details.id, &details.name),
                "post",
                cmd,
                hooks.timeout,
            )
            .map_err(CoreError::from)
        }
        _ => Ok(()),
    };
    let value = captured?;
    post?;
    Ok(value)
}
