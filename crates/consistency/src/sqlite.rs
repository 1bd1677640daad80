//! Hot capture of SQLite databases: a transactionally consistent copy through SQLite's own
//! online backup API, taken from the host while the container keeps writing. Never a plain
//! copy of the `.db`, `-wal` and `-shm` files, which tears under write load.
//!
//! The copy is made in one step inside one read transaction: in WAL mode writers are not
//! blocked at all; in rollback-journal mode they wait for the copy (seconds per GB).

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use lifeboat_safepath::Beneath;
use rusqlite::{Connection, OpenFlags};

/// A consistent copy or check of a database failed.
#[derive(Debug, thiserror::Error)]
#[error("consistent copy of SQLite database {path} failed: {message}")]
pub struct SqliteError {
    /// The database.
    pub path: String,
    /// What SQLite said.
    pub message: String,
}

/// Whether the file `rel` below `root` starts with the SQLite header. The file is reached
/// without following symlinks and opened read-only; a symlink is never a database.
pub fn is_sqlite(root: &Beneath, rel: &Path) -> bool {
    let mut header = [0u8; 16];
    root.open_file(rel)
        .and_then(|mut f| f.read_exact(&mut header))
        .is_ok_and(|()| &header == b"SQLite format 3\0")
}

/// SQLite databases under `dir` (relative paths). Symlinks are neither followed nor taken
/// for databases: a container's files must never lead Lifeboat elsewhere.
pub fn find_databases(dir: &Path) -> Vec<PathBuf> {
    let Ok(root) = Beneath::open(dir) else {
        return Vec::new();
    };
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
            && let Ok(rel) = entry.path().strip_prefix(dir)
            && is_sqlite(&root, rel)
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

/// `rel` as an absolute path inside a confined root.
fn inside(rel: &Path) -> PathBuf {
    Path::new("/").join(rel)
}

/// Writes a consistent copy of database `rel` (below the mount `root`) to `dest` (a
/// self-contained file, no WAL), with the original's owner and mode.
///
/// The live database is opened read-only, never through a symlink, and from a thread whose
/// root directory is `root` ([`lifeboat_safepath::in_root`]): SQLite opens the database and
/// its `-wal` and `-shm` files by path and follows symlinks itself, so this is what keeps a
/// container from pointing it at a host file. `dest` is opened before that thread enters the
/// root, in its journal-less mode, so nothing of the copy is written by path afterwards.
pub fn consistent_copy(root: &Path, rel: &Path, dest: &Path) -> Result<(), SqliteError> {
    let err = |e: &dyn std::fmt::Display| SqliteError {
        path: root.join(rel).display().to_string(),
        message: e.to_string(),
    };
    let beneath = Beneath::open(root).map_err(|e| err(&e))?;
    // Refuses a database that is a symlink, or below one, before SQLite sees it.
    let original = beneath
        .open_file(rel)
        .and_then(|f| f.metadata())
        .map_err(|e| err(&e))?;
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
    }
    let target = Connection::open(dest).map_err(|e| err(&e))?;
    target
        .execute_batch("PRAGMA journal_mode=OFF; PRAGMA temp_store=MEMORY;")
        .map_err(|e| err(&e))?;
    let copied = lifeboat_safepath::in_root(root, move || copy_into(&inside(rel), target))
        .map_err(|e| err(&e))?;
    copied.map_err(|e| err(&e))?;
    // Back outside: the copy is Lifeboat's own file; make it self-contained.
    Connection::open(dest)
        .and_then(|c| c.execute_batch("PRAGMA journal_mode=DELETE;"))
        .map_err(|e| err(&e))?;
    std::os::unix::fs::chown(dest, Some(original.uid()), Some(original.gid()))
        .map_err(|e| err(&e))?;
    std::fs::set_permissions(dest, original.permissions()).map_err(|e| err(&e))?;
    Ok(())
}

/// Inside the confined root: the online backup of `src` into `target`, in one step.
fn copy_into(src: &Path, mut target: Connection) -> Result<(), rusqlite::Error> {
    let source = Connection::open_with_flags(
        src,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW,
    )?;
    source.busy_timeout(std::time::Duration::from_secs(30))?;
    let backup = rusqlite::backup::Backup::new(&source, &mut target)?;
    // One step of all pages: the whole copy inside a single read transaction.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match backup.step(-1)? {
            rusqlite::backup::StepResult::Done => return Ok(()),
            _ if std::time::Instant::now() > deadline => {
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                    Some("the database stayed locked for 60 s".into()),
                ));
            }
            _ => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
}

/// `PRAGMA integrity_check` on database `rel` below `root`, opened read-only and confined to
/// `root` like [`consistent_copy`]: `Ok("ok")` when sound, else the problems SQLite lists.
pub fn integrity_check(root: &Path, rel: &Path) -> Result<String, SqliteError> {
    let err = |e: &dyn std::fmt::Display| SqliteError {
        path: root.join(rel).display().to_string(),
        message: e.to_string(),
    };
    let rel = inside(rel);
    lifeboat_safepath::in_root(root, move || -> Result<String, rusqlite::Error> {
        let conn = Connection::open_with_flags(
            &rel,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NOFOLLOW,
        )?;
        let mut stmt = conn.prepare("PRAGMA integrity_check")?;
        let rows: Vec<String> = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<_, _>>()?;
        Ok(rows.join("; "))
    })
    .map_err(|e| err(&e))?
    .map_err(|e| err(&e))
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
        consistent_copy(dir.path(), Path::new("agent.db"), &copy).unwrap();
        let n: i64 = Connection::open(&copy)
            .unwrap()
            .query_row("SELECT count(*) FROM r", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 500);
        assert!(!side_files(&copy)[0].exists(), "the copy is self-contained");
    }

    fn host_db(dir: &Path) -> PathBuf {
        let host = dir.join("host");
        std::fs::create_dir_all(&host).unwrap();
        let db = host.join("secrets.db");
        let c = Connection::open(&db).unwrap();
        c.execute_batch("CREATE TABLE s(v TEXT); INSERT INTO s VALUES ('host secret');")
            .unwrap();
        db
    }

    #[test]
    fn a_database_that_is_a_symlink_to_a_host_database_is_neither_found_nor_opened() {
        let dir = tempfile::tempdir().unwrap();
        let host = host_db(dir.path());
        let vol = dir.path().join("vol");
        std::fs::create_dir_all(&vol).unwrap();
        std::os::unix::fs::symlink(&host, vol.join("app.db")).unwrap();
        assert!(find_databases(&vol).is_empty());
        let copy = dir.path().join("out/app.db");
        assert!(consistent_copy(&vol, Path::new("app.db"), &copy).is_err());
        assert!(!copy.exists() || !copy_has_host_secret(&copy));
        assert!(integrity_check(&vol, Path::new("app.db")).is_err());
    }

    fn copy_has_host_secret(copy: &Path) -> bool {
        Connection::open(copy)
            .and_then(|c| c.query_row("SELECT v FROM s", [], |r| r.get::<_, String>(0)))
            .is_ok()
    }

    #[test]
    fn a_directory_swapped_for_a_symlink_never_leads_the_copy_to_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let host = host_db(dir.path());
        let vol = dir.path().join("vol");
        std::fs::create_dir_all(&vol).unwrap();
        // Found while `sub` was a real directory, then `sub` became a symlink to the host.
        std::os::unix::fs::symlink(host.parent().unwrap(), vol.join("sub")).unwrap();
        let copy = dir.path().join("out/secrets.db");
        assert!(consistent_copy(&vol, Path::new("sub/secrets.db"), &copy).is_err());
        assert!(!copy.exists() || !copy_has_host_secret(&copy));
    }

    #[test]
    fn absolute_symlinks_seen_by_sqlite_resolve_inside_the_mount() {
        // The database itself is fine, but its -wal is an absolute symlink: inside the
        // confined root it points at a path in the volume, not at the host's file.
        let dir = tempfile::tempdir().unwrap();
        let host = host_db(dir.path());
        let vol = dir.path().join("vol");
        std::fs::create_dir_all(&vol).unwrap();
        let c = Connection::open(vol.join("app.db")).unwrap();
        c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
        drop(c);
        let outside_wal = format!("{}-wal", host.display());
        std::fs::write(&outside_wal, b"not a wal").unwrap();
        std::os::unix::fs::symlink(&outside_wal, vol.join("app.db-wal")).unwrap();
        let copy = dir.path().join("out/app.db");
        consistent_copy(&vol, Path::new("app.db"), &copy).unwrap();
        let n: i64 = Connection::open(&copy)
            .unwrap()
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(std::fs::read(&outside_wal).unwrap(), b"not a wal");
        assert_eq!(integrity_check(&vol, Path::new("app.db")).unwrap(), "ok");
    }
}
