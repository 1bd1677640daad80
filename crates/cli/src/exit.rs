//! Exit codes (documented in `--help` and the README) and error reporting.

use lifeboat_core::CoreError;
use lifeboat_docker::EngineError;
use lifeboat_repo::RepoError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Code {
    Ok = 0,
    Error = 1,
    /// A command-line usage error, or a name or time that breaks its rule.
    Usage = 2,
    /// `doctor` found warnings (same value as `Error`, by the doctor's own contract).
    DoctorWarnings = 101,
    /// `doctor` found errors.
    DoctorErrors = 102,
    Partial = 3,
    Damaged = 5,
    RepoMissing = 10,
    Locked = 11,
    WrongPassword = 12,
    EngineUnreachable = 13,
    Refused = 14,
    NotFound = 15,
    /// The restore target could not be written (full disk, refused path); the repository is fine.
    TargetWrite = 16,
    /// The repository's object store did not answer within the retry budget.
    StorageUnreachable = 17,
    /// The object store refused the credentials.
    StorageDenied = 18,
    /// The repository's bucket does not exist.
    NoBucket = 19,
}

impl Code {
    /// The process exit status.
    pub fn value(self) -> i32 {
        match self {
            Code::DoctorWarnings => 1,
            Code::DoctorErrors => 2,
            other => other as i32,
        }
    }
}

fn repo_code(e: &RepoError) -> Code {
    match e {
        RepoError::NotFound { .. } => Code::RepoMissing,
        RepoError::WrongPassword { .. } => Code::WrongPassword,
        RepoError::SnapshotNotFound { .. } => Code::NotFound,
        RepoError::RestoreIncomplete { .. }
        | RepoError::Damaged { .. }
        | RepoError::HostileSnapshot { .. }
        | RepoError::UnreadableSnapshots { .. } => Code::Damaged,
        RepoError::TargetWrite { .. } => Code::TargetWrite,
        RepoError::AlreadyExists { .. } | RepoError::KeyRefused { .. } => Code::Refused,
        RepoError::NoSuchKey { .. } => Code::NotFound,
        RepoError::BadLocation { .. } => Code::Usage,
        RepoError::StorageUnreachable { .. } => Code::StorageUnreachable,
        RepoError::StorageDenied { .. } => Code::StorageDenied,
        RepoError::NoBucket { .. } => Code::NoBucket,
        RepoError::Locked { .. } | RepoError::LockLost { .. } => Code::Locked,
        _ => Code::Error,
    }
}

fn engine_code(e: &EngineError) -> Code {
    match e {
        EngineError::Unreachable { .. } => Code::EngineUnreachable,
        EngineError::NotFound { .. } => Code::NotFound,
        _ => Code::Error,
    }
}

/// The exit code an error maps to.
pub fn code_of(err: &anyhow::Error) -> Code {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<CoreError>() {
            return match e {
                CoreError::Repo(r) => repo_code(r),
                CoreError::Engine(g) => engine_code(g),
                CoreError::NoSuchContainer(_)
                | CoreError::NoBackup { .. }
                | CoreError::NoStackBackup { .. } => Code::NotFound,
                CoreError::Lock(lifeboat_consistency::LockError::Busy(..)) => Code::Locked,
                CoreError::Refused { .. } => Code::Refused,
                CoreError::BadName(_) => Code::Usage,
                CoreError::HostileManifest { .. } => Code::Damaged,
                _ => Code::Error,
            };
        }
        if let Some(r) = cause.downcast_ref::<RepoError>() {
            return repo_code(r);
        }
        if let Some(g) = cause.downcast_ref::<EngineError>() {
            return engine_code(g);
        }
    }
    Code::Error
}

/// Prints `err` (text on stderr; also a JSON object on stdout with `--json`) and returns its
/// exit code.
pub fn report(err: &anyhow::Error, json: bool) -> Code {
    let code = code_of(err);
    let text = lifeboat_docker::secrets::redact(&format!("{err:#}"));
    eprintln!("lifeboat: error: {text}");
    if json {
        println!(
            "{}",
            serde_json::json!({"error": text, "exit_code": code.value()})
        );
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_restore_target_and_a_hostile_snapshot_have_their_own_exit_codes() {
        let full = RepoError::TargetWrite {
            what: "`/volumes/v` from snapshot 1 into /x".into(),
            reason: "no space left on the file system".into(),
            free: Some((1, 2)),
            no_space: true,
        };
        assert_eq!(code_of(&anyhow::Error::from(full)).value(), 16);
        let hostile = RepoError::HostileSnapshot {
            id: "1".into(),
            entry: "/\"..\"".into(),
            reason: "not a plain name".into(),
        };
        let wrapped = anyhow::Error::from(CoreError::Repo(hostile));
        assert_eq!(code_of(&wrapped).value(), 5);
        let bad = CoreError::BadName(lifeboat_model::names::container_name("a/b").unwrap_err());
        assert_eq!(code_of(&anyhow::Error::from(bad)).value(), 2);
    }
}
