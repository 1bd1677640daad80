//! The words Lifeboat's parts share: consistency modes and strategies, job kinds and states,
//! container states and health. Each is an enum parsed once where the text enters (a label,
//! the command line, the config file, an API path, the engine's JSON, the job history) and
//! matched everywhere else; no other code compares these words as strings.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! words {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        #[allow(missing_docs)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The word as written in labels, the API and the job history.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// The value for `text` (surrounding space ignored), if it is one.
            pub fn from_word(text: &str) -> Option<$name> {
                match text.trim() { $($text => Some($name::$variant),)+ _ => None }
            }

            /// All the words, for messages ("use one of ...").
            pub fn words() -> String {
                Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

words! {
    /// How a container is held still while its files are read.
    Mode {
        /// Plain file copy while it runs.
        None = "none",
        /// Freeze every process (cgroup freezer) while files are read.
        Pause = "pause",
        /// Stop, read, start again: the cold backup.
        Stop = "stop",
        /// The application's own online mechanism while it keeps running.
        Hot = "hot",
    }
}

/// An unknown consistency mode, named.
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown consistency mode `{0}` (label lifeboat.mode or --mode): use hot, pause, stop or none"
)]
pub struct ModeError(pub String);

impl Mode {
    /// Parses a mode; empty means `none`.
    pub fn parse(text: &str) -> Result<Mode, ModeError> {
        if text.trim().is_empty() {
            return Ok(Mode::None);
        }
        Mode::from_word(text).ok_or_else(|| ModeError(text.trim().to_string()))
    }
}

words! {
    /// Which hot mechanism to use (label `lifeboat.strategy`).
    Strategy {
        /// Detected from the image and command.
        Auto = "auto",
        /// PostgreSQL by its dump (`pg_dumpall`), detected or forced.
        Postgres = "postgres",
        /// PostgreSQL by its data directory's files, copied between `pg_backup_start` and
        /// `pg_backup_stop` with the WAL written meanwhile: no transaction held open while
        /// the copy runs, restored without reloading. Never chosen by detection.
        PostgresFiles = "postgres-files",
        Mariadb = "mariadb",
        Mysql = "mysql",
        Redis = "redis",
        Sqlite = "sqlite",
        /// No hot mechanism, not even SQLite detection.
        None = "none",
    }
}

words! {
    /// What a daemon job does.
    JobKind {
        Backup = "backup",
        Restore = "restore",
        Prune = "prune",
        Drill = "drill",
        /// Brings a failed service back from its newest good backup.
        Recover = "recover",
        /// Copies the backups a region lacks into it.
        Copy = "copy",
        /// Checks the repository's structure (repository-wide).
        Check = "check",
        /// Restores on this host the services the cluster moved here from a dead host.
        Failover = "failover",
    }
}

words! {
    /// What the daemon does when a service fails (`lifeboat.recover`).
    RecoverMode {
        /// Recover it from its newest good backup.
        Auto = "auto",
        /// Tell (webhook, log), do nothing.
        Notify = "notify",
        /// Neither.
        Off = "off",
    }
}

words! {
    /// Where a daemon job is in its life.
    JobState {
        Queued = "queued",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        /// The daemon died while it ran (found at the next start).
        Aborted = "aborted",
    }
}

impl JobState {
    /// Whether the job has ended.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Aborted
        )
    }
}

words! {
    /// A container's state as the engine reports it.
    ContainerStatus {
        Created = "created",
        Running = "running",
        Paused = "paused",
        Restarting = "restarting",
        Removing = "removing",
        Exited = "exited",
        Dead = "dead",
    }
}

words! {
    /// A container's healthcheck verdict (none without a healthcheck).
    Health {
        Starting = "starting",
        Healthy = "healthy",
        Unhealthy = "unhealthy",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_parses_back_to_its_value() {
        for m in Mode::ALL {
            assert_eq!(Mode::parse(m.as_str()).unwrap(), *m);
        }
        for k in JobKind::ALL {
            assert_eq!(JobKind::from_word(k.as_str()), Some(*k));
        }
        for s in JobState::ALL {
            assert_eq!(JobState::from_word(&format!(" {s} ")), Some(*s));
        }
        assert_eq!(Health::from_word("none"), None);
        assert_eq!(
            Strategy::words(),
            "auto, postgres, postgres-files, mariadb, mysql, redis, sqlite, none"
        );
    }

    #[test]
    fn modes_parse_and_unknown_ones_are_named() {
        assert_eq!(Mode::parse(" stop ").unwrap(), Mode::Stop);
        assert_eq!(Mode::parse("").unwrap(), Mode::None);
        let err = Mode::parse("frozen").unwrap_err().to_string();
        assert!(err.contains("`frozen`") && err.contains("pause"), "{err}");
    }

    #[test]
    fn serde_uses_the_same_words() {
        assert_eq!(
            serde_json::to_string(&JobState::Aborted).unwrap(),
            "\"aborted\""
        );
        assert_eq!(serde_json::to_string(&Mode::Hot).unwrap(), "\"hot\"");
    }
}
