use std::fmt;

/// How a container is held still while its files are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plain file copy while it runs (stateless data, or data the user made safe with hooks).
    None,
    /// Freeze every process (cgroup freezer) while files are read; memory state is kept.
    Pause,
    /// Stop, read, start again: the cold backup.
    Stop,
    /// Capture through the application's own online mechanism while it keeps running
    /// (SQLite online backup); other files are copied as they are.
    Hot,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "unknown consistency mode `{0}` (label lifeboat.mode or --mode): use hot, pause, stop or none"
)]
pub struct ModeError(pub String);

impl Mode {
    pub fn parse(text: &str) -> Result<Mode, ModeError> {
        match text.trim() {
            "" | "none" => Ok(Mode::None),
            "pause" => Ok(Mode::Pause),
            "stop" => Ok(Mode::Stop),
            "hot" => Ok(Mode::Hot),
            other => Err(ModeError(other.to_string())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::None => "none",
            Mode::Pause => "pause",
            Mode::Stop => "stop",
            Mode::Hot => "hot",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_unknown_ones_are_named() {
        assert_eq!(Mode::parse("pause").unwrap(), Mode::Pause);
        assert_eq!(Mode::parse(" stop ").unwrap(), Mode::Stop);
        assert_eq!(Mode::parse("").unwrap(), Mode::None);
        let err = Mode::parse("frozen").unwrap_err().to_string();
        assert!(err.contains("`frozen`") && err.contains("pause"), "{err}");
    }
}
