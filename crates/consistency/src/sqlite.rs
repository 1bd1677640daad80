//! Hot capture of SQLite databases: a transactionally consistent copy through SQLite's own
//! online backup API, taken from the host while the container keeps writing. Never a plain
//! copy of the `.db`, `-wal` and `-shm` files, which tears under write load.
//!
//! The copy is made in one step inside one read transaction: in WAL mode writers are not
//! blocked at all; in rollback-journal mode they wait for the copy (seconds per GB).

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

#[derive(Debug, thiserror::Error)]
#[error("consistent copy of SQLite database {path} failed: {message}")]
pub struct SqliteError {
    pub path: String,
    pub message: String,
}

/// Whether `path` starts with the SQLite header.
pub fn is_sqlite(path: &Path) -> bool {
    let mut header = [0u8; 16];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .is_ok_and(|()| &header == b"SQLite format 3\0")
}

/// SQLite databases under `dir` (relative paths), not following symlinks.
pub fn find_databases(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
    {
        let name = entry.file_name().to_string_lossy();
        let side_file = ["-wal", "-shm", "-journal"]
            .iter()
            .any(|s| name.ends_with(s));
        if entry.file_type().is_file()
            && !side_file
            && is_sqlite(entry.path())
            && let Ok(rel) = entry.path().strip_prefix(dir)
        {
            out.push(rel.to_path_buf());
        }
    }
    out
}

/// The files that make up a live database besides itself.
pub fn side_files(db: &Path) -> Vec<PathBuf> {
    ["-wal", "-shm", "-journal"]
        .iter()
        .map(|s| {
            let mut p = db.as_os_str().to_owned();
            p.push(s);
            PathBuf::from(p)
        })
        .collect()
}

/// Writes a consistent copy of database `src` to `dest` (a self-contained file, no WAL),
/// with the original's owner, mode and mtime.
pub fn consistent_copy(src: &Path, dest: &Path) -> Result<(), SqliteError> {
    let err = |e: &dyn std::fmt::Display| SqliteError {
        path: src.display().to_string(),
        message: e.to_string(),
    };
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
    }
    // Read-write open (no create) so a WAL database's shared-memory index can be used.
    let source = Connection::open_with_flags(
        src,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| err(&e))?;
    source
        .busy_timeout(std::time::Duration::from_secs(30))
        .map_err(|e| err(&e))?;
    let mut target = Connection::open(dest).map_err(|e| err(&e))?;
    {
        let backup = rusqlite::backup::Backup::new(&source, &mut target).map_err(|e| err(&e))?;
        // One step of all pages: the whole copy inside a single read transaction.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match backup.step(-1).map_err(|e| err(&e))? {
                rusqlite::backup::StepResult::Done => break,
                _ if std::time::Instant::now() > deadline => {
                    return Err(err(&"the database stayed locked for 60 s"));
                }
                _ => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        }
    }
    target
        .execute_batch("PRAGMA journal_mode=DELETE;")
        .map_err(|e| err(&e))?;
    drop(target);
    let meta = std::fs::metadata(src).map_err(|e| err(&e))?;
    std::os::unix::fs::chown(dest, Some(meta.uid()), Some(meta.gid())).map_err(|e| err(&e))?;
    std::fs::set_permissions(dest, meta.permissions()).map_err(|e| err(&e))?;
    Ok(())
}

/// `PRAGMA integrity_check` on a database file, opened read-only: `Ok("ok")` when sound,
/// else the problems SQLite lists.
pub fn integrity_check(path: &Path) -> Result<String, SqliteError> {
    let err = |e: &dyn std::fmt::Display| SqliteError {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let conn =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|e| err(&e))?;
    let mut stmt = conn
        .prepare("PRAGMA integrity_check")
        .map_err(|e| err(&e))?;
    let rows: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(|e| err(&e))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(&e))?;
    Ok(rows.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistent_copy_of_a_wal_database_holds_every_committed_row() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("agent.db");
        let c = Connection::open(&db).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE r(seq INTEGER); PRAGMA wal_autocheckpoint=0;",
        )
        .unwrap();
        for i in 0..500 {
            c.execute("INSERT INTO r VALUES (?1)", [i]).unwrap();
        }
        // The rows live in the -wal file only (no checkpoint): a plain copy of the .db misses them.
        assert_eq!(find_databases(dir.path()), vec![PathBuf::from("agent.db")]);
        let copy = dir.path().join("out/agent.db");
        consistent_copy(&db, &copy).unwrap();
        let n: i64 = Connection::open(&copy)
            .unwrap()
            .query_row("SELECT count(*) FROM r", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 500);
        assert!(!side_files(&copy)[0].exists(), "the copy is self-contained");
    }
}
