//! PostgreSQL's data directory copied as files while the server runs on: the copy is taken
//! between `pg_backup_start` and `pg_backup_stop` (the server's low-level base backup), which
//! hold no transaction open. A dump's one transaction keeps every row version the server's
//! writers replace until it ends (measured: a snapshot merely held for 15 s cost pgbench
//! 14-20% of its transactions). The write-ahead log written meanwhile is kept on the server
//! by a temporary replication slot until it is copied; stored with the backup label the stop
//! returns, it brings a server started on the restored files to a consistent state.
//!
//! The session is one `psql` kept open for the whole backup: the server ends a base backup
//! (and drops the slot) when its session ends, so a Lifeboat run that fails or is killed
//! leaves nothing behind on the server.

use std::io::{BufRead, BufReader, Write};
use std::sync::mpsc;
use std::time::Duration;

use lifeboat_docker::{Engine, EngineError, ExecStream};

/// A base backup in progress on the server.
#[must_use = "a base backup ends when its session does: stop it to keep it"]
pub struct BaseBackup {
    input: Box<dyn Write + Send>,
    lines: mpsc::Receiver<Result<String, String>>,
    reader: Option<std::thread::JoinHandle<Box<dyn ExecStream>>>,
    version: u32,
    timeout: Duration,
    /// The WAL segment (file name) the backup starts in.
    pub start_wal: String,
}

/// What the end of a base backup gives: stored with the copy, it makes it restorable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupEnd {
    /// The `backup_label` file for the copy's data directory.
    pub label: Vec<u8>,
    /// The `tablespace_map` file (empty without tablespaces).
    pub tablespace_map: Vec<u8>,
    /// The first WAL segment (file name) the copy needs.
    pub start_wal: String,
    /// The last one.
    pub stop_wal: String,
}

/// Why a base backup could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum BaseBackupError {
    /// The engine could not run the client.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The server refused or the session ended early.
    #[error("PostgreSQL base backup: {0}")]
    Server(String),
}

/// A name for the temporary replication slot: unique per process and container.
fn slot_name(container_id: &str) -> String {
    let short: String = container_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    format!(
        "lifeboat_{}_{}",
        std::process::id(),
        short.to_ascii_lowercase()
    )
}

/// The statements that start a base backup on a server of `version` (`server_version_num`);
/// the last prints the first WAL segment's file name.
fn start_sql(version: u32, slot: &str) -> String {
    let start = if version >= 150_000 {
        "pg_backup_start('lifeboat', true)"
    } else {
        "pg_start_backup('lifeboat', true, false)"
    };
    // Temporary (gone with the session) and reserving WAL at once: every segment written from
    // here on stays until the session ends, however long the copy takes.
    format!(
        "SELECT 1 FROM pg_create_physical_replication_slot('{slot}', true, true);\n\
         SELECT pg_walfile_name({start});\n"
    )
}

/// The statement that ends it: prints the last segment's name, the label and the tablespace
/// map (hex, so that each fits on one line).
fn stop_sql(version: u32) -> String {
    let stop = if version >= 150_000 {
        "pg_backup_stop(false)"
    } else {
        "pg_stop_backup(false, false)"
    };
    format!(
        "SELECT pg_walfile_name(lsn) || '|' || encode(convert_to(labelfile, 'UTF8'), 'hex') \
         || '|' || encode(convert_to(coalesce(spcmapfile, ''), 'UTF8'), 'hex') FROM {stop};\n"
    )
}

/// Parses the stop's line.
fn parse_stop(line: &str, start_wal: &str) -> Result<BackupEnd, String> {
    let mut fields = line.trim().split('|');
    let (Some(stop), Some(label), Some(map), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(format!("unexpected answer to the backup's stop: {line:?}"));
    };
    if !is_segment(stop) {
        return Err(format!("unexpected WAL segment name {stop:?}"));
    }
    let label = hex::decode(label).map_err(|e| format!("backup label: {e}"))?;
    if label.is_empty() {
        return Err("the server returned an empty backup label".into());
    }
    Ok(BackupEnd {
        label,
        tablespace_map: hex::decode(map).map_err(|e| format!("tablespace map: {e}"))?,
        start_wal: start_wal.to_string(),
        stop_wal: stop.to_string(),
    })
}

/// Whether `name` is a WAL segment's file name: 24 upper-case hex digits (timeline, log,
/// segment).
fn is_segment(name: &str) -> bool {
    name.len() == 24
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

impl BackupEnd {
    /// The segments the copy needs, oldest first: every one from the start's to the stop's,
    /// on the start's timeline, for a server whose segments are `segment_size` bytes (a power
    /// of two from 1 MiB to 1 GiB, fixed when the cluster was made; 16 MiB by default).
    pub fn needed_segments(&self, segment_size: u64) -> Result<Vec<String>, String> {
        if !segment_size.is_power_of_two() || !(1 << 20..=1 << 30).contains(&segment_size) {
            return Err(format!(
                "WAL segment {} is {segment_size} bytes, not a segment size PostgreSQL uses",
                self.start_wal
            ));
        }
        let per_log = 0x1_0000_0000 / segment_size;
        let number = |name: &str| {
            let hex = |r: std::ops::Range<usize>| {
                name.get(r).and_then(|h| u64::from_str_radix(h, 16).ok())
            };
            match (is_segment(name), hex(8..16), hex(16..24)) {
                (true, Some(log), Some(seg)) if seg < per_log => {
                    Some((name[..8].to_string(), log * per_log + seg))
                }
                _ => None,
            }
        };
        let (Some((timeline, first)), Some((stop_timeline, last))) =
            (number(&self.start_wal), number(&self.stop_wal))
        else {
            return Err(format!(
                "WAL segments {} to {} are not names of {segment_size}-byte segments",
                self.start_wal, self.stop_wal
            ));
        };
        if timeline != stop_timeline || last < first {
            return Err(format!(
                "the backup ended on WAL segment {} before or off the timeline of {} (was the \
                 server promoted during the copy?)",
                self.stop_wal, self.start_wal
            ));
        }
        Ok((first..=last)
            .map(|n| format!("{timeline}{:08X}{:08X}", n / per_log, n % per_log))
            .collect())
    }
}

/// Starts a base backup in `container` through `client` (an interactive `psql` reading
/// statements from its stdin), waiting at most `timeout` for each answer.
pub fn start(
    engine: &dyn Engine,
    container: &str,
    client: &[String],
    env: &[String],
    timeout: Duration,
) -> Result<BaseBackup, BaseBackupError> {
    if client.is_empty() {
        return Err(BaseBackupError::Server(
            "this server has no client to hold a base backup with".into(),
        ));
    }
    let (input, stream) = engine.exec_session(container, client, env)?;
    let (tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut out = BufReader::new(stream);
        loop {
            let mut line = String::new();
            match out.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) => {
                    if tx.send(Ok(line)).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    break;
                }
            }
        }
        out.into_inner()
    });
    let mut backup = BaseBackup {
        input,
        lines,
        reader: Some(reader),
        version: 0,
        timeout,
        start_wal: String::new(),
    };
    let version = backup.ask("SHOW server_version_num;\n", 1)?;
    backup.version = version[0]
        .trim()
        .parse()
        .map_err(|_| BaseBackupError::Server(format!("unexpected version {:?}", version[0])))?;
    if backup.version < 100_000 {
        return Err(BaseBackupError::Server(format!(
            "PostgreSQL {} is older than 10: use the dump (lifeboat.strategy=postgres)",
            backup.version
        )));
    }
    let slot = slot_name(container);
    let answer = backup.ask(&start_sql(backup.version, &slot), 2)?;
    let start_wal = answer[1].trim().to_string();
    if !is_segment(&start_wal) {
        return Err(BaseBackupError::Server(format!(
            "unexpected WAL segment name {start_wal:?}"
        )));
    }
    backup.start_wal = start_wal;
    Ok(backup)
}

impl BaseBackup {
    /// Sends `sql` and waits for `lines` lines of answer.
    fn ask(&mut self, sql: &str, lines: usize) -> Result<Vec<String>, BaseBackupError> {
        self.input
            .write_all(sql.as_bytes())
            .and_then(|()| self.input.flush())
            .map_err(|e| self.ended(&format!("the session took no input ({e})")))?;
        let mut out = Vec::new();
        while out.len() < lines {
            match self.lines.recv_timeout(self.timeout) {
                Ok(Ok(line)) => out.push(line),
                Ok(Err(e)) => return Err(self.ended(&e)),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(BaseBackupError::Server(format!(
                        "no answer within {} s to {}",
                        self.timeout.as_secs(),
                        sql.trim()
                    )));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(self.ended("the session ended"));
                }
            }
        }
        Ok(out)
    }

    /// The error for a session that ended: with what the client printed on stderr.
    fn ended(&mut self, what: &str) -> BaseBackupError {
        let told = self
            .reader
            .take()
            .and_then(|r| r.join().ok())
            .and_then(|mut stream| stream.finish().ok())
            .map(|out| out.output.trim().to_string())
            .unwrap_or_default();
        BaseBackupError::Server(format!("{what}: {told}"))
    }

    /// Ends the base backup: what the copy needs to be restorable. The session stays open
    /// (its slot keeps the log on the server) until this is dropped: copy the segments first.
    pub fn stop(&mut self) -> Result<BackupEnd, BaseBackupError> {
        let answer = self.ask(&stop_sql(self.version), 1)?;
        let end = parse_stop(&answer[0], &self.start_wal).map_err(BaseBackupError::Server)?;
        Ok(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backup_uses_the_functions_of_the_servers_version() {
        assert!(start_sql(160_002, "s").contains("pg_backup_start('lifeboat', true)"));
        assert!(start_sql(140_010, "s").contains("pg_start_backup('lifeboat', true, false)"));
        assert!(stop_sql(150_000).contains("pg_backup_stop(false)"));
        assert!(stop_sql(130_000).contains("pg_stop_backup(false, false)"));
        // The slot is temporary and reserves WAL at once.
        assert!(
            start_sql(160_002, "s")
                .contains("pg_create_physical_replication_slot('s', true, true)")
        );
    }

    #[test]
    fn the_stop_gives_the_label_the_map_and_the_last_segment() {
        let label = hex::encode("START WAL LOCATION: 0/2000028\n");
        let line = format!("000000010000000000000003|{label}|\n");
        let end = parse_stop(&line, "000000010000000000000002").unwrap();
        assert_eq!(end.label, b"START WAL LOCATION: 0/2000028\n");
        assert!(end.tablespace_map.is_empty());
        assert_eq!(end.stop_wal, "000000010000000000000003");
        assert!(parse_stop("garbage", "000000010000000000000002").is_err());
        assert!(parse_stop("00000001000000000000000G||", "x").is_err());
        assert!(
            parse_stop("000000010000000000000003||", "000000010000000000000002").is_err(),
            "an empty label is refused"
        );
    }

    fn end(start: &str, stop: &str) -> BackupEnd {
        BackupEnd {
            label: b"x".to_vec(),
            tablespace_map: Vec::new(),
            start_wal: start.into(),
            stop_wal: stop.into(),
        }
    }

    #[test]
    fn the_copy_needs_every_segment_from_start_to_stop_across_a_log_boundary() {
        const MIB: u64 = 1 << 20;
        assert_eq!(
            end("0000000100000000000000FE", "000000010000000100000001")
                .needed_segments(16 * MIB)
                .unwrap(),
            [
                "0000000100000000000000FE",
                "0000000100000000000000FF",
                "000000010000000100000000",
                "000000010000000100000001"
            ]
        );
        // A cluster made with 1 GiB segments has four per log file.
        assert_eq!(
            end("000000030000000200000003", "000000030000000300000000")
                .needed_segments(1024 * MIB)
                .unwrap(),
            ["000000030000000200000003", "000000030000000300000000"]
        );
        let one = end("00000001000000000000000E", "00000001000000000000000E");
        assert_eq!(one.needed_segments(16 * MIB).unwrap().len(), 1);
    }

    #[test]
    fn segments_that_cannot_be_counted_are_refused() {
        let ok = end("00000001000000000000000E", "000000010000000000000010");
        assert!(ok.needed_segments(3 << 20).is_err(), "not a power of two");
        assert!(ok.needed_segments(512 << 10).is_err(), "below 1 MiB");
        assert!(
            end("00000001000000000000000E", "00000002000000000000000F")
                .needed_segments(16 << 20)
                .is_err(),
            "the timeline changed"
        );
        assert!(
            end("00000001000000000000000E", "00000001000000000000000D")
                .needed_segments(16 << 20)
                .is_err(),
            "the stop before the start"
        );
        assert!(
            end("000000010000000000000100", "000000010000000000000101")
                .needed_segments(16 << 20)
                .is_err(),
            "a segment number beyond its log file"
        );
        assert!(
            end("00000001.history", "x")
                .needed_segments(16 << 20)
                .is_err()
        );
    }

    #[test]
    fn slot_names_are_plain_lower_case_identifiers() {
        let name = slot_name("3F2a'; DROP TABLE x; --9999999999");
        assert!(name.starts_with("lifeboat_"));
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{name}"
        );
    }
}
