//! The daemon's memory across restarts: every job (what, when, how it ended) and every
//! change of a service's effective policy, in one SQLite file (`<state-dir>/daemon.db`).

use lifeboat_model::{JobKind, JobState};
use std::path::Path;

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// The job history failed: which file, and why.
#[derive(Debug, thiserror::Error)]
#[error("job history {path}: {cause}; check the state directory's disk and permissions")]
pub struct StoreError {
    path: String,
    cause: rusqlite::Error,
}

/// One job as recorded (and as another host's daemon answers it, for `lifeboat jobs --host`).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Job {
    /// The job id.
    pub id: i64,
    /// What it does.
    pub kind: JobKind,
    /// The service.
    pub service: String,
    /// `schedule` or `api`.
    pub trigger: String,
    /// Where it is.
    pub state: JobState,
    /// When it was queued (RFC 3339).
    pub queued_at: String,
    /// When it started.
    pub started_at: Option<String>,
    /// When it ended.
    pub finished_at: Option<String>,
    /// How long it ran.
    pub duration_seconds: Option<f64>,
    /// Bytes the repository grew by.
    pub bytes_added: Option<i64>,
    /// Bytes read.
    pub bytes_total: Option<i64>,
    /// The manifest snapshot it wrote or read.
    pub snapshot_id: Option<String>,
    /// The backup it wrote or read.
    pub backup_id: Option<String>,
    /// The policy's fingerprint when it ran.
    pub policy_sha256: Option<String>,
    /// Why it failed (secrets scrubbed).
    pub error: Option<String>,
    /// Kind-specific JSON (restore options, retention outcome).
    pub detail: Option<serde_json::Value>,
    /// What it did so far, step by step (`{"at", "step"}`), recorded as it runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub progress: Vec<Step>,
}

/// One step of a job, recorded when it began.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Step {
    /// When (RFC 3339).
    pub at: String,
    /// What.
    pub step: String,
}

/// A drill of the primary repository's backups (a drill from a region says so in its detail,
/// and verifies only that region's copy).
const PRIMARY_DRILL: &str = "json_extract(coalesce(detail, '{}'), '$.region') IS NULL";

/// Steps kept per job (a huge job's later steps are dropped, its end is still recorded).
const MAX_STEPS: i64 = 500;

/// What a finished job reports.
#[derive(Debug, Clone, Default)]
pub struct JobEnd {
    /// It succeeded.
    pub ok: bool,
    /// Bytes the repository grew by.
    pub bytes_added: Option<u64>,
    /// Bytes read.
    pub bytes_total: Option<u64>,
    /// The manifest snapshot it wrote or read.
    pub snapshot_id: Option<String>,
    /// The backup it wrote or read.
    pub backup_id: Option<String>,
    /// Why it failed (secrets scrubbed).
    pub error: Option<String>,
    /// Kind-specific JSON.
    pub detail: Option<serde_json::Value>,
}

impl JobEnd {
    /// A copy with every known secret value scrubbed from its error and detail.
    pub fn redacted(mut self) -> JobEnd {
        use lifeboat_docker::secrets::redact;
        self.error = self.error.map(|e| redact(&e));
        self.detail = self
            .detail
            .and_then(|d| serde_json::from_str(&redact(&d.to_string())).ok());
        self
    }
}

/// One entry of the policy log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyChange {
    /// The service.
    pub service: String,
    /// The policy's fingerprint.
    pub sha256: String,
    /// The policy, as JSON.
    pub policy: serde_json::Value,
    /// When this version was first seen.
    pub recorded_at: String,
}

/// See [`Store::last_backups`].
pub type LastBackups = (Option<Job>, Option<Job>, Option<Job>);

/// The job history and policy log (SQLite).
pub struct Store {
    conn: Connection,
    path: String,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL, service TEXT NOT NULL, trigger TEXT NOT NULL, state TEXT NOT NULL,
    queued_at TEXT NOT NULL, started_at TEXT, finished_at TEXT, duration_seconds REAL,
    bytes_added INTEGER, bytes_total INTEGER, snapshot_id TEXT, backup_id TEXT,
    policy_sha256 TEXT, error TEXT, detail TEXT, request TEXT, progress TEXT);
CREATE INDEX IF NOT EXISTS jobs_service ON jobs (service, id);
CREATE TABLE IF NOT EXISTS policy_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    service TEXT NOT NULL, sha256 TEXT NOT NULL, policy TEXT NOT NULL, recorded_at TEXT NOT NULL);
";

const JOB_COLUMNS: &str = "id, kind, service, trigger, state, queued_at, started_at, \
    finished_at, duration_seconds, bytes_added, bytes_total, snapshot_id, backup_id, \
    policy_sha256, error, detail, progress";

/// A word stored in the history, parsed back into its enum (the one boundary for both).
fn word<T>(r: &rusqlite::Row<'_>, i: usize, parse: fn(&str) -> Option<T>) -> rusqlite::Result<T> {
    let text: String = r.get(i)?;
    parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("unknown word `{text}` in the job history").into(),
        )
    })
}

fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Job> {
    Ok(Job {
        id: r.get(0)?,
        kind: word(r, 1, JobKind::from_word)?,
        service: r.get(2)?,
        trigger: r.get(3)?,
        state: word(r, 4, JobState::from_word)?,
        queued_at: r.get(5)?,
        started_at: r.get(6)?,
        finished_at: r.get(7)?,
        duration_seconds: r.get(8)?,
        bytes_added: r.get(9)?,
        bytes_total: r.get(10)?,
        snapshot_id: r.get(11)?,
        backup_id: r.get(12)?,
        policy_sha256: r.get(13)?,
        error: r.get(14)?,
        detail: r
            .get::<_, Option<String>>(15)?
            .and_then(|t| serde_json::from_str(&t).ok()),
        progress: r
            .get::<_, Option<String>>(16)?
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default(),
    })
}

fn now() -> String {
    lifeboat_model::format_timestamp(Timestamp::now())
}

impl Store {
    /// Opens (or creates) the history.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let shown = path.display().to_string();
        let err = |cause| StoreError {
            path: shown.clone(),
            cause,
        };
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        conn.execute_batch("PRAGMA journal_mode=WAL;")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        // Histories written before steps were recorded.
        let has_progress: bool = conn
            .query_row(
                "SELECT COUNT(*) FROM pragma_table_info('jobs') WHERE name = 'progress'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(err)?
            > 0;
        if !has_progress {
            conn.execute_batch("ALTER TABLE jobs ADD COLUMN progress TEXT;")
                .map_err(err)?;
        }
        Ok(Store { conn, path: shown })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |cause| StoreError {
            path: self.path.clone(),
            cause,
        }
    }

    /// Jobs a previous daemon left queued or running (it was killed): marked aborted.
    pub fn abort_unfinished(&self) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "UPDATE jobs SET state = 'aborted', finished_at = ?1, error = \
                 'the daemon stopped before this job ended' \
                 WHERE state IN ('queued', 'running')",
                params![now()],
            )
            .map_err(self.err())
    }

    /// Records a queued job; returns its id.
    pub fn queue(
        &self,
        kind: JobKind,
        service: &str,
        trigger: &str,
        request: Option<&serde_json::Value>,
    ) -> Result<i64, StoreError> {
        self.conn
            .execute(
                "INSERT INTO jobs (kind, service, trigger, state, queued_at, request) \
                 VALUES (?1, ?2, ?3, 'queued', ?4, ?5)",
                params![
                    kind.as_str(),
                    service,
                    trigger,
                    now(),
                    request.map(|r| r.to_string())
                ],
            )
            .map_err(self.err())?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Marks a job running.
    pub fn start(&self, id: i64, policy_sha256: Option<&str>) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE jobs SET state = 'running', started_at = ?2, policy_sha256 = ?3 WHERE id = ?1",
                params![id, now(), policy_sha256],
            )
            .map(|_| ())
            .map_err(self.err())
    }

    /// Records the step a running job begins.
    pub fn step(&self, id: i64, step: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE jobs SET progress = json_insert(coalesce(progress, '[]'), '$[#]', \
                 json_object('at', ?2, 'step', ?3)) \
                 WHERE id = ?1 AND json_array_length(coalesce(progress, '[]')) < ?4",
                params![id, now(), step, MAX_STEPS],
            )
            .map(|_| ())
            .map_err(self.err())
    }

    /// Records how a job ended.
    pub fn finish(&self, id: i64, seconds: f64, end: &JobEnd) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE jobs SET state = ?2, finished_at = ?3, duration_seconds = ?4, \
                 bytes_added = ?5, bytes_total = ?6, snapshot_id = ?7, backup_id = ?8, \
                 error = ?9, detail = ?10 WHERE id = ?1",
                params![
                    id,
                    if end.ok {
                        JobState::Succeeded
                    } else {
                        JobState::Failed
                    }
                    .as_str(),
                    now(),
                    seconds,
                    end.bytes_added.map(|b| b as i64),
                    end.bytes_total.map(|b| b as i64),
                    end.snapshot_id,
                    end.backup_id,
                    end.error,
                    end.detail.as_ref().map(|d| d.to_string()),
                ],
            )
            .map(|_| ())
            .map_err(self.err())
    }

    /// Records a drill another host of the cluster ran of `r.service`, once: its trigger
    /// (`drill on HOST, job ID`) names where it ran. Returns whether it was new.
    pub fn import_drill(&self, r: &crate::cluster::DrillResult) -> Result<bool, StoreError> {
        let trigger = format!("drill on {}, job {}", r.host, r.job);
        let known: bool = self
            .conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM jobs WHERE service = ?1 AND kind = 'drill' \
                 AND trigger = ?2)",
                params![r.service, trigger],
                |row| row.get(0),
            )
            .map_err(self.err())?;
        if known {
            return Ok(false);
        }
        let mut detail = serde_json::json!({"host": r.host, "job": r.job});
        if let Some(region) = &r.region {
            detail["region"] = serde_json::json!(region);
        }
        let state = if r.ok {
            JobState::Succeeded
        } else {
            JobState::Failed
        };
        let queued = r.started_at.clone().unwrap_or_else(now);
        self.conn
            .execute(
                "INSERT INTO jobs (kind, service, trigger, state, queued_at, started_at, \
                 finished_at, duration_seconds, snapshot_id, backup_id, error, detail) \
                 VALUES ('drill', ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    r.service,
                    trigger,
                    state.as_str(),
                    queued,
                    r.started_at,
                    r.finished_at.clone().unwrap_or_else(now),
                    r.duration_seconds,
                    r.snapshot_id,
                    r.backup_id,
                    r.error,
                    detail.to_string(),
                ],
            )
            .map_err(self.err())?;
        Ok(true)
    }

    /// One job by id.
    pub fn job(&self, id: i64) -> Result<Option<Job>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                params![id],
                job_from_row,
            )
            .optional()
            .map_err(self.err())
    }

    /// The request a queued job was created with.
    pub fn request(&self, id: i64) -> Result<Option<serde_json::Value>, StoreError> {
        let text: Option<Option<String>> = self
            .conn
            .query_row("SELECT request FROM jobs WHERE id = ?1", params![id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.err())?;
        Ok(text.flatten().and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// Newest first; of one service when given.
    pub fn jobs(&self, service: Option<&str>, limit: usize) -> Result<Vec<Job>, StoreError> {
        self.history(service, None, None, limit)
    }

    /// The newest `limit` jobs, of `service` and of `kind` when given, queued at or after
    /// `since` when given.
    pub fn history(
        &self,
        service: Option<&str>,
        kind: Option<JobKind>,
        since: Option<Timestamp>,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE (?1 IS NULL OR service = ?1) \
                 AND (?2 IS NULL OR kind = ?2) AND (?3 IS NULL OR queued_at >= ?3) \
                 ORDER BY id DESC LIMIT ?4"
            ))
            .map_err(self.err())?;
        let rows = stmt
            .query_map(
                params![
                    service,
                    kind.map(JobKind::as_str),
                    since.map(lifeboat_model::format_timestamp),
                    limit as i64
                ],
                job_from_row,
            )
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Of `service`'s backup jobs: the newest finished one, the newest successful one, and
    /// the newest that ran to an end (succeeded or failed; an aborted run does not count
    /// as its slot's run, so it is retried at start).
    pub fn last_backups(&self, service: &str) -> Result<LastBackups, StoreError> {
        Ok((
            self.newest_job(
                service,
                JobKind::Backup,
                "state IN ('succeeded', 'failed', 'aborted')",
            )?,
            self.newest_job(service, JobKind::Backup, "state = 'succeeded'")?,
            self.newest_job(service, JobKind::Backup, "state IN ('succeeded', 'failed')")?,
        ))
    }

    /// Of `service`'s drills: the newest finished one and the newest successful one.
    pub fn last_drills(&self, service: &str) -> Result<(Option<Job>, Option<Job>), StoreError> {
        Ok((
            self.newest_job(
                service,
                JobKind::Drill,
                &format!("state IN ('succeeded', 'failed', 'aborted') AND {PRIMARY_DRILL}"),
            )?,
            self.newest_job(
                service,
                JobKind::Drill,
                &format!("state = 'succeeded' AND {PRIMARY_DRILL}"),
            )?,
        ))
    }

    /// The newest job of `kind` for `service` matching the SQL condition `cond`.
    fn newest_job(
        &self,
        service: &str,
        kind: JobKind,
        cond: &str,
    ) -> Result<Option<Job>, StoreError> {
        self.conn
            .query_row(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE service = ?1 AND kind = ?2 AND {cond} \
                     ORDER BY id DESC LIMIT 1"
                ),
                params![service, kind.as_str()],
                job_from_row,
            )
            .optional()
            .map_err(self.err())
    }

    /// Backup ids of `service` that a successful drill restored and probed.
    pub fn verified_backups(&self, service: &str) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT DISTINCT backup_id FROM jobs WHERE service = ?1 AND kind = 'drill' \
                 AND state = 'succeeded' AND backup_id IS NOT NULL AND {PRIMARY_DRILL}"
            ))
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![service], |r| r.get::<_, String>(0))
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// The backups of `service` a drill from `region` restored and probed.
    pub fn region_verified(&self, service: &str, region: &str) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT DISTINCT backup_id FROM jobs WHERE service = ?1 AND kind = 'drill' \
                 AND state = 'succeeded' AND backup_id IS NOT NULL \
                 AND json_extract(coalesce(detail, '{}'), '$.region') = ?2",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![service, region], |r| r.get::<_, String>(0))
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Backup jobs of `service` that failed (all time), for the failure counter.
    pub fn failures(&self, service: &str) -> Result<u64, StoreError> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM jobs WHERE service = ?1 AND kind = 'backup' AND state = 'failed'",
                params![service],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(self.err())
    }

    /// Records `sha256` for `service` unless it is already its latest entry. True if new.
    pub fn record_policy(
        &self,
        service: &str,
        sha256: &str,
        policy: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        let last: Option<String> = self
            .conn
            .query_row(
                "SELECT sha256 FROM policy_log WHERE service = ?1 ORDER BY id DESC LIMIT 1",
                params![service],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())?;
        if last.as_deref() == Some(sha256) {
            return Ok(false);
        }
        self.conn
            .execute(
                "INSERT INTO policy_log (service, sha256, policy, recorded_at) VALUES (?1, ?2, ?3, ?4)",
                params![service, sha256, policy.to_string(), now()],
            )
            .map_err(self.err())?;
        Ok(true)
    }

    /// The policy history, oldest first; of one service when given.
    pub fn policy_log(&self, service: Option<&str>) -> Result<Vec<PolicyChange>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT service, sha256, policy, recorded_at FROM policy_log \
                 WHERE (?1 IS NULL OR service = ?1) ORDER BY id",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![service], |r| {
                Ok(PolicyChange {
                    service: r.get(0)?,
                    sha256: r.get(1)?,
                    policy: serde_json::from_str(&r.get::<_, String>(2)?).unwrap_or_default(),
                    recorded_at: r.get(3)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_survive_reopening_and_unfinished_ones_become_aborted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.db");
        let (done, cut) = {
            let s = Store::open(&path).unwrap();
            let a = s.queue(JobKind::Backup, "db", "schedule", None).unwrap();
            s.start(a, Some("f00")).unwrap();
            s.finish(
                a,
                1.5,
                &JobEnd {
                    ok: true,
                    bytes_added: Some(10),
                    ..Default::default()
                },
            )
            .unwrap();
            let b = s.queue(JobKind::Backup, "db", "api", None).unwrap();
            s.start(b, None).unwrap();
            s.step(b, "taking a backup of db").unwrap();
            s.step(b, "backing up volume data").unwrap();
            (a, b) // the daemon dies here
        };
        let s = Store::open(&path).unwrap();
        assert_eq!(s.abort_unfinished().unwrap(), 1);
        let a = s.job(done).unwrap().unwrap();
        assert_eq!(
            (a.state.as_str(), a.bytes_added, a.policy_sha256.as_deref()),
            ("succeeded", Some(10), Some("f00"))
        );
        let aborted = s.job(cut).unwrap().unwrap();
        assert_eq!(aborted.state, JobState::Aborted);
        let steps: Vec<&str> = aborted.progress.iter().map(|p| p.step.as_str()).collect();
        assert_eq!(steps, ["taking a backup of db", "backing up volume data"]);
        assert!(s.job(done).unwrap().unwrap().progress.is_empty());
        let (last, ok, ran) = s.last_backups("db").unwrap();
        assert_eq!(last.unwrap().id, cut);
        assert_eq!(ok.unwrap().id, done);
        assert_eq!(
            ran.unwrap().id,
            done,
            "an aborted run is not its slot's run"
        );
        assert_eq!(s.jobs(None, 10).unwrap().len(), 2);
        let later = Timestamp::now() + std::time::Duration::from_secs(60);
        assert!(s.history(None, None, Some(later), 10).unwrap().is_empty());
        let drills = s
            .history(Some("db"), Some(JobKind::Drill), None, 10)
            .unwrap();
        assert!(drills.is_empty());
        let backups = s
            .history(Some("db"), Some(JobKind::Backup), None, 1)
            .unwrap();
        assert_eq!(backups.len(), 1);
    }

    #[test]
    fn a_drill_from_a_region_verifies_no_backup_of_the_primary() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("daemon.db")).unwrap();
        let drill = |backup: &str, detail: serde_json::Value| {
            let id = s.queue(JobKind::Drill, "db", "schedule", None).unwrap();
            s.start(id, None).unwrap();
            let end = JobEnd {
                ok: true,
                backup_id: Some(backup.into()),
                detail: Some(detail),
                ..Default::default()
            };
            s.finish(id, 1.0, &end).unwrap();
            id
        };
        let primary = drill("b1", serde_json::json!({"ok": true}));
        let region = drill("b2", serde_json::json!({"ok": true, "region": "east"}));
        assert_eq!(s.verified_backups("db").unwrap(), ["b1"]);
        assert_eq!(s.region_verified("db", "east").unwrap(), ["b2"]);
        assert!(s.region_verified("db", "west").unwrap().is_empty());
        let (last, verified) = s.last_drills("db").unwrap();
        assert_eq!(last.unwrap().id, primary);
        assert_eq!(verified.unwrap().id, primary);
        assert!(s.job(region).unwrap().is_some());
    }

    #[test]
    fn the_policy_log_records_changes_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("daemon.db")).unwrap();
        let p = serde_json::json!({"schedule": "5m"});
        assert!(s.record_policy("db", "aaa", &p).unwrap());
        assert!(!s.record_policy("db", "aaa", &p).unwrap());
        assert!(s.record_policy("db", "bbb", &p).unwrap());
        assert!(s.record_policy("web", "aaa", &p).unwrap());
        let log = s.policy_log(Some("db")).unwrap();
        assert_eq!(
            log.iter().map(|c| c.sha256.as_str()).collect::<Vec<_>>(),
            ["aaa", "bbb"]
        );
    }

    #[test]
    fn a_drill_another_host_ran_is_recorded_once_and_verifies_like_a_local_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("daemon.db")).unwrap();
        let passed = crate::cluster::DrillResult {
            service: "db".into(),
            host: "h1".into(),
            job: 7,
            ok: true,
            backup_id: Some("b1".into()),
            started_at: Some("2026-12-01T10:00:00Z".into()),
            finished_at: Some("2026-12-01T10:00:09Z".into()),
            ..Default::default()
        };
        assert!(s.import_drill(&passed).unwrap());
        assert!(!s.import_drill(&passed).unwrap(), "imported twice");
        let from_region = crate::cluster::DrillResult {
            job: 8,
            backup_id: Some("b2".into()),
            region: Some("east".into()),
            ..passed.clone()
        };
        let failed = crate::cluster::DrillResult {
            job: 9,
            ok: false,
            backup_id: Some("b3".into()),
            error: Some("probe failed".into()),
            ..passed.clone()
        };
        assert!(s.import_drill(&from_region).unwrap());
        assert!(s.import_drill(&failed).unwrap());
        assert_eq!(s.verified_backups("db").unwrap(), ["b1"]);
        assert_eq!(s.region_verified("db", "east").unwrap(), ["b2"]);
        let (last, verified) = s.last_drills("db").unwrap();
        let last = last.unwrap();
        assert_eq!(
            (last.state, last.trigger.as_str()),
            (JobState::Failed, "drill on h1, job 9")
        );
        assert_eq!(verified.unwrap().backup_id.as_deref(), Some("b1"));
        assert!(s.verified_backups("web").unwrap().is_empty());
    }
}
