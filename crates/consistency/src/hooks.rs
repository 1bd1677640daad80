//! User hooks: commands run inside the container before and after its data is read.

use std::time::Duration;

use lifeboat_docker::{Engine, EngineError};
use lifeboat_model::ContainerConfig;

/// `lifeboat.pre` / `lifeboat.post` shell commands, the `lifeboat.freeze` / `lifeboat.thaw`
/// pair, and their timeout (`lifeboat.hook-timeout`, seconds, default 60).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hooks {
    /// `lifeboat.pre`: run before the read.
    pub pre: Option<String>,
    /// `lifeboat.post`: run after the read, whatever happened.
    pub post: Option<String>,
    /// Freeze and thaw commands: both or neither.
    pub freeze: Option<(String, String)>,
    /// How long each hook may take (`lifeboat.hook-timeout`, default 60 s).
    pub timeout: Duration,
}

/// Why a hook (or its labels) failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The hook exited non-zero.
    #[error("{which} hook of `{container}` failed with exit code {code}: {output}")]
    Failed {
        /// `pre`, `post`, `freeze` or `thaw`.
        which: &'static str,
        /// The container it ran in.
        container: String,
        /// Its exit code.
        code: i64,
        /// The end of its output (secrets scrubbed where printed).
        output: String,
    },
    #[error(
        "{which} hook of `{container}` did not finish within {seconds} s (label lifeboat.hook-timeout)"
    )]
    /// The hook did not finish in time.
    TimedOut {
        /// `pre`, `post`, `freeze` or `thaw`.
        which: &'static str,
        /// The container it ran in.
        container: String,
        /// The limit it ran into.
        seconds: u64,
    },
    /// `lifeboat.hook-timeout` is not a number of seconds.
    #[error("invalid label lifeboat.hook-timeout=`{0}`: give whole seconds")]
    BadTimeout(String),
    /// `lifeboat.freeze` without `lifeboat.thaw`, or the other way round.
    #[error("lifeboat.freeze and lifeboat.thaw go together: set both labels or neither")]
    Unpaired,
    /// The engine refused the exec.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl Hooks {
    /// The container's hooks, from its labels.
    pub fn from_labels(config: &ContainerConfig) -> Result<Hooks, HookError> {
        let timeout = match config.label(lifeboat_model::labels::HOOK_TIMEOUT) {
            None => 60,
            Some(t) => t
                .trim()
                .parse()
                .map_err(|_| HookError::BadTimeout(t.to_string()))?,
        };
        let cmd = |k| {
            config
                .label(k)
                .map(str::to_string)
                .filter(|c| !c.trim().is_empty())
        };
        let freeze = match (
            cmd(lifeboat_model::labels::FREEZE),
            cmd(lifeboat_model::labels::THAW),
        ) {
            (Some(f), Some(t)) => Some((f, t)),
            (None, None) => None,
            _ => return Err(HookError::Unpaired),
        };
        Ok(Hooks {
            pre: cmd(lifeboat_model::labels::PRE),
            post: cmd(lifeboat_model::labels::POST),
            freeze,
            timeout: Duration::from_secs(timeout),
        })
    }
}

/// `command` run by the container's shell.
pub(crate) fn sh(command: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), command.into()]
}

/// Runs the thaw command; a non-zero exit is an error. Used by a freeze session and by the
/// undo of a killed run's freeze intent.
pub(crate) fn run_thaw(engine: &dyn Engine, container: &str, cmd: &str) -> Result<(), EngineError> {
    let out = engine.exec(container, &sh(cmd), Duration::from_secs(60))?;
    match out.exit_code {
        Some(0) => Ok(()),
        code => Err(EngineError::Api {
            op: "thaw",
            name: container.to_string(),
            message: format!("lifeboat.thaw exited with {code:?}: {}", out.output.trim()),
        }),
    }
}

/// Runs `command` with `sh -c` in the container with id `id`; a non-zero exit or a timeout
/// is an error naming the container `container`.
pub fn run_hook(
    engine: &dyn Engine,
    (id, container): (&str, &str),
    which: &'static str,
    command: &str,
    timeout: Duration,
) -> Result<(), HookError> {
    let out = engine.exec(id, &sh(command), timeout)?;
    match out.exit_code {
        Some(0) => Ok(()),
        Some(code) => Err(HookError::Failed {
            which,
            container: container.to_string(),
            code,
            output: out
                .output
                .trim()
                .chars()
                .rev()
                .take(500)
                .collect::<String>()
                .chars()
                .rev()
                .collect(),
        }),
        None => Err(HookError::TimedOut {
            which,
            container: container.to_string(),
            seconds: timeout.as_secs(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_come_from_labels_with_a_default_timeout() {
        let mut c = ContainerConfig::default();
        assert_eq!(
            Hooks::from_labels(&c).unwrap().timeout,
            Duration::from_secs(60)
        );
        c.labels
            .insert(lifeboat_model::labels::PRE.into(), "sync".into());
        c.labels
            .insert(lifeboat_model::labels::HOOK_TIMEOUT.into(), "5".into());
        let h = Hooks::from_labels(&c).unwrap();
        assert_eq!(
            (h.pre.as_deref(), h.post, h.timeout),
            (Some("sync"), None, Duration::from_secs(5))
        );
        c.labels
            .insert(lifeboat_model::labels::HOOK_TIMEOUT.into(), "soon".into());
        assert!(Hooks::from_labels(&c).is_err());
    }
}
