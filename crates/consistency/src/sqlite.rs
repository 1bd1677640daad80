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
    find_databases_cached(dir, &mut DetectionCache::default())
}

/// What detection found for each file of one mount last time, keyed by the file's identity:
/// a file whose inode, size and change time (which no one can set back) are unchanged is not
/// opened again, so a backup of an unchanged tree costs stats, not reads.
///
/// It is kept as its encoded bytes ([`push_seen`]), its files in the order of the walk (by
/// path, component by component), and the next walk reads it in step with the tree instead
/// of building a map: a million files cost their 52-61 MB encoding, twice while a walk
/// makes the new one (a map of owned paths took about five times that).
#[derive(Debug, Default)]
pub struct DetectionCache {
    /// One encoded file after another, in chunks (as the walkers made them).
    chunks: Vec<Vec<u8>>,
    /// How many files it holds.
    count: usize,
    /// Whether it differs from what was loaded (else [`DetectionCache::save`] has nothing
    /// to write).
    changed: bool,
}

/// One file as detection saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen<'a> {
    /// Its path, relative to the mount.
    path: &'a [u8],
    /// Inode, size, ctime seconds, ctime nanoseconds.
    id: (u64, u64, i64, i64),
    /// Whether it is a database.
    db: bool,
}

/// The first bytes of a kept cache: its format. A file without them is not read (a cache
/// of an older format costs one round of header reads, nothing else). v2: files in walk
/// order.
const CACHE_MAGIC: &[u8; 8] = b"LBDETv2\n";

/// Appends one file: its path's length (u32) and bytes, inode, size, ctime seconds and
/// nanoseconds (8 bytes each, little-endian) and the verdict (1 byte, last). A million files
/// take 52-61 MB (129 MB as JSON), written and read as they are.
fn push_seen(out: &mut Vec<u8>, path: &[u8], id: (u64, u64, i64, i64), db: bool) {
    out.extend_from_slice(&(path.len() as u32).to_le_bytes());
    out.extend_from_slice(path);
    for n in [id.0, id.1, id.2 as u64, id.3 as u64] {
        out.extend_from_slice(&n.to_le_bytes());
    }
    out.push(u8::from(db));
}

/// The file encoded at the start of `bytes` and what follows it; `None` when cut short.
fn next_seen(bytes: &[u8]) -> Option<(Seen<'_>, &[u8])> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = bytes.split_at_checked(n)?;
        *bytes = rest;
        Some(head)
    }
    fn u64_of(bytes: &mut &[u8]) -> Option<u64> {
        Some(u64::from_le_bytes(take(bytes, 8)?.try_into().ok()?))
    }
    let mut bytes = bytes;
    let len = u32::from_le_bytes(take(&mut bytes, 4)?.try_into().ok()?) as usize;
    let path = take(&mut bytes, len)?;
    let (ino, size) = (u64_of(&mut bytes)?, u64_of(&mut bytes)?);
    let (cs, cn) = (u64_of(&mut bytes)? as i64, u64_of(&mut bytes)? as i64);
    let db = take(&mut bytes, 1)?[0] == 1;
    Some((
        Seen {
            path,
            id: (ino, size, cs, cn),
            db,
        },
        bytes,
    ))
}

/// The files of an encoded cache (after its magic), in order; stops where it is cut short.
fn seen_files(mut bytes: &[u8]) -> impl Iterator<Item = Seen<'_>> {
    std::iter::from_fn(move || {
        let (seen, rest) = next_seen(bytes)?;
        bytes = rest;
        Some(seen)
    })
}

/// How the walk orders two paths: component by component, as a walk with each directory's
/// names sorted reaches them (`a/x` before `a-b`, unlike their bytes).
fn walk_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    use std::os::unix::ffi::OsStrExt;
    Path::new(std::ffi::OsStr::from_bytes(a)).cmp(Path::new(std::ffi::OsStr::from_bytes(b)))
}

impl DetectionCache {
    /// The cache kept in `path`; empty when missing, unreadable, cut short or of another
    /// format.
    pub fn load(path: &Path) -> DetectionCache {
        let Some(mut bytes) = std::fs::read(path)
            .ok()
            .filter(|b| b.starts_with(CACHE_MAGIC))
        else {
            return DetectionCache::default();
        };
        bytes.drain(..CACHE_MAGIC.len());
        let mut rest = bytes.as_slice();
        let mut count = 0;
        while !rest.is_empty() {
            match next_seen(rest) {
                Some((_, after)) => (rest, count) = (after, count + 1),
                None => return DetectionCache::default(),
            }
        }
        DetectionCache {
            chunks: vec![bytes],
            count,
            changed: false,
        }
    }

    /// Its files, in walk order.
    fn files(&self) -> impl Iterator<Item = Seen<'_>> {
        self.chunks.iter().flat_map(|c| seen_files(c))
    }

    /// Writes the cache to `path` (through a temporary file; a failure only costs reads),
    /// unless nothing changed since it was loaded.
    pub fn save(&self, path: &Path) {
        if !self.changed {
            return;
        }
        let tmp = path.with_extension("tmp");
        let write = || {
            use std::io::Write;
            let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
            out.write_all(CACHE_MAGIC)?;
            for chunk in &self.chunks {
                out.write_all(chunk)?;
            }
            // Not synced: a cache cut short by a crash is not read, and a wrong one only
            // trusts a file whose path, inode, size and change time all match.
            out.flush()
        };
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| write())
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            log::warn!(
                "cannot keep the database detection cache {}: {e}",
                path.display()
            );
        }
    }
}

/// [`find_databases`], opening only files that are new or changed since `cache` was filled;
/// `cache` then describes the tree as it is now.
pub fn find_databases_cached(dir: &Path, cache: &mut DetectionCache) -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let Ok(root) = Beneath::open(dir) else {
        return Vec::new();
    };
    let mut chunks = crate::walk::files(dir, READERS, |chunk, rel, meta| {
        let name = rel.file_name().unwrap_or_default().to_string_lossy();
        if !["-wal", "-shm", "-journal"]
            .iter()
            .any(|s| name.ends_with(s))
        {
            let id = (meta.ino(), meta.size(), meta.ctime(), meta.ctime_nsec());
            push_seen(chunk, rel.as_os_str().as_bytes(), id, false);
        }
    });
    let mut known = cache.files().peekable();
    // Files new or changed since the cache was filled (chunk, offset): their headers are
    // read below.
    let mut unknown = Vec::new();
    // Files seen exactly as the cache knows them, and all files seen.
    let (mut same, mut count) = (0, 0);
    for (c, chunk) in chunks.iter_mut().enumerate() {
        let mut at = 0;
        while let Some((seen, rest)) = next_seen(&chunk[at..]) {
            let end = chunk.len() - rest.len();
            // The cache's files before this one in walk order are gone.
            while known
                .next_if(|k| walk_order(k.path, seen.path).is_lt())
                .is_some()
            {}
            let db = match known.next_if(|k| k.path == seen.path) {
                Some(k) if k.id == seen.id => {
                    same += 1;
                    k.db
                }
                // Smaller than a database's header: not one.
                _ if seen.id.1 < 100 => false,
                _ => {
                    unknown.push((c, at));
                    false
                }
            };
            chunk[end - 1] = u8::from(db);
            count += 1;
            at = end;
        }
    }
    drop(known);
    for (c, verdict) in read_headers(&root, &chunks, &unknown) {
        chunks[c][verdict] = 1;
    }
    let out = chunks
        .iter()
        .flat_map(|c| seen_files(c))
        .filter(|f| f.db)
        .map(|f| PathBuf::from(std::ffi::OsStr::from_bytes(f.path)))
        .collect();
    // Unchanged: every file seen was known as it is, and no known file is gone.
    cache.changed |= same != count || same != cache.count;
    cache.chunks = chunks;
    cache.count = count;
    out
}

/// Reads at once (the walk's inodes, the headers of changed files): a cold tree is read one
/// block at a time, and one read after another waits for the disk each time.
const READERS: usize = 8;

/// Where the verdicts are (chunk, offset) of the files encoded at `unknown` (chunk, offset
/// into `chunks`) that are databases by their headers, read on a few threads.
fn read_headers(
    root: &Beneath,
    chunks: &[Vec<u8>],
    unknown: &[(usize, usize)],
) -> Vec<(usize, usize)> {
    use std::os::unix::ffi::OsStrExt;
    let per_thread = unknown.len().div_ceil(READERS).max(64);
    std::thread::scope(|scope| {
        let workers: Vec<_> = unknown
            .chunks(per_thread)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .filter_map(|&(c, at)| {
                            let (seen, rest) = next_seen(&chunks[c][at..])?;
                            let path = Path::new(std::ffi::OsStr::from_bytes(seen.path));
                            // The verdict is the encoding's last byte.
                            is_sqlite(root, path).then(|| (c, chunks[c].len() - rest.len() - 1))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect()
    })
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

/// A consistent copy of one database as a byte stream: its pages read inside one read
/// transaction (`sqlite_dbpage`), in order, with page 1 saying rollback-journal mode, so
/// the stream is a complete database file that needs no `-wal`. Nothing is staged on disk,
/// memory stays at a page and a pipe, and WAL writers are never blocked (a rollback-mode
/// database's writers wait until the stream is read, as for any reader).
pub struct PageStream {
    /// The stream's length: page count × page size when the transaction began.
    pub size: u64,
    reader: Option<std::io::PipeReader>,
    producer: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl PageStream {
    /// The bytes (once; later calls get nothing).
    pub fn reader(&mut self) -> Box<dyn Read + Send> {
        match self.reader.take() {
            Some(r) => Box::new(r),
            None => Box::new(std::io::empty()),
        }
    }

    /// Waits for the producer: `Err` when the stream is not the whole database (the read
    /// stopped early, SQLite failed midway). Drops the reader first, so a producer blocked
    /// on a reader that gave up ends.
    pub fn finish(&mut self) -> Result<(), String> {
        self.reader = None;
        match self.producer.take().map(std::thread::JoinHandle::join) {
            None => Ok(()),
            Some(Ok(verdict)) => verdict,
            Some(Err(_)) => Err("the thread reading the database panicked".into()),
        }
    }
}

impl Drop for PageStream {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// Starts streaming a consistent copy of database `rel` (below the mount `root`); returns
/// once the read transaction holds its snapshot, with the stream's length known.
///
/// The live database is opened read-only, never through a symlink, and from a thread whose
/// root directory is `root` ([`lifeboat_safepath::in_root`]): SQLite opens the database and
/// its `-wal` and `-shm` files by path and follows symlinks itself, so this is what keeps a
/// container from pointing it at a host file.
pub fn stream_pages(root: &Path, rel: &Path) -> Result<PageStream, SqliteError> {
    let err = |e: &dyn std::fmt::Display| SqliteError {
        path: root.join(rel).display().to_string(),
        message: e.to_string(),
    };
    let beneath = Beneath::open(root).map_err(|e| err(&e))?;
    // Refuses a database that is a symlink, or below one, before SQLite sees it.
    beneath.open_file(rel).map_err(|e| err(&e))?;
    let (reader, writer) = std::io::pipe().map_err(|e| err(&e))?;
    let (began, size) = std::sync::mpsc::sync_channel(1);
    let (root_dir, src) = (root.to_path_buf(), inside(rel));
    let producer = std::thread::spawn(move || {
        let confined = lifeboat_safepath::in_root(&root_dir, move || {
            write_pages(&src, writer, &began).map_err(|e| e.to_string())
        });
        confined.map_err(|e| e.to_string()).and_then(|r| r)
    });
    match size.recv() {
        Ok(size) => Ok(PageStream {
            size,
            reader: Some(reader),
            producer: Some(producer),
        }),
        // The producer ended before its transaction began: its verdict says why.
        Err(_) => {
            let why = producer
                .join()
                .unwrap_or_else(|_| Err("the thread reading the database panicked".into()))
                .err()
                .unwrap_or_else(|| "the database was not read".into());
            Err(err(&why))
        }
    }
}

/// Inside the confined root: begins a read transaction on `src`, sends the database's length
/// through `began`, then writes every page to `out` (page 1 set to rollback-journal mode).
fn write_pages(
    src: &Path,
    mut out: std::io::PipeWriter,
    began: &std::sync::mpsc::SyncSender<u64>,
) -> Result<(), rusqlite::Error> {
    use std::io::Write;
    let conn = Connection::open_with_flags(
        src,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(60))?;
    // The read transaction starts with the first read (the page count) and holds its
    // snapshot until the last page is written.
    conn.execute_batch("BEGIN")?;
    let page_size = conn.query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))? as u64;
    let pages = conn.query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0))? as u64;
    let failed = |why: String| {
        rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(why),
        )
    };
    if began.send(pages * page_size).is_err() {
        return Err(failed("nobody reads the copy".into()));
    }
    let mut stmt = conn
        .prepare("SELECT pgno, data FROM sqlite_dbpage")
        .map_err(|e| {
            failed(format!(
                "{e}: this build's SQLite lacks the sqlite_dbpage table; build Lifeboat from \
                 its repository, whose .cargo/config.toml enables it"
            ))
        })?;
    let mut rows = stmt.query([])?;
    let mut next = 1u64;
    while let Some(row) = rows.next()? {
        let pgno = row.get::<_, i64>(0)? as u64;
        let data = row.get_ref(1)?.as_blob()?;
        if pgno != next || data.len() as u64 != page_size {
            return Err(failed(format!(
                "page {pgno} ({} bytes) came where page {next} of {page_size} bytes was due",
                data.len()
            )));
        }
        let written = if pgno == 1 {
            out.write_all(&rollback_mode(data))
        } else {
            out.write_all(data)
        };
        written.map_err(|e| failed(format!("the copy was not read whole: {e}")))?;
        next += 1;
    }
    if next != pages + 1 {
        return Err(failed(format!("{} of {pages} pages were read", next - 1)));
    }
    drop(rows);
    drop(stmt);
    conn.execute_batch("COMMIT")
}

/// Page 1 with the header's file format versions (bytes 18 and 19) set to 1, legacy
/// rollback-journal mode: the copy is one self-contained file, as a database left in WAL
/// mode would otherwise look for its `-wal`.
fn rollback_mode(page1: &[u8]) -> Vec<u8> {
    let mut page = page1.to_vec();
    if page.len() >= 20 {
        page[18] = 1;
        page[19] = 1;
    }
    page
}

/// `PRAGMA integrity_check` on database `rel` below `root`, opened read-only and confined to
/// `root` like [`stream_pages`]: `Ok("ok")` when sound, else the problems SQLite lists.
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

    /// Writes a consistent copy of database `rel` (below the mount `root`) to `dest` through
    /// [`stream_pages`].
    fn copy_to_file(root: &Path, rel: &Path, dest: &Path) -> Result<u64, SqliteError> {
        let err = |e: &dyn std::fmt::Display| SqliteError {
            path: root.join(rel).display().to_string(),
            message: e.to_string(),
        };
        let mut stream = stream_pages(root, rel)?;
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
        }
        let copied = std::fs::File::create(dest)
            .and_then(|mut f| std::io::copy(&mut stream.reader(), &mut f));
        let finished = stream.finish();
        let n = copied.map_err(|e| err(&e))?;
        finished.map_err(|e| err(&e))?;
        Ok(n)
    }

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
        copy_to_file(dir.path(), Path::new("agent.db"), &copy).unwrap();
        let n: i64 = Connection::open(&copy)
            .unwrap()
            .query_row("SELECT count(*) FROM r", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 500);
        assert!(!side_files(&copy)[0].exists(), "the copy is self-contained");
        let header = std::fs::read(&copy).unwrap();
        assert_eq!((header[18], header[19]), (1, 1), "rollback-journal mode");
    }

    #[test]
    fn a_streamed_copy_taken_under_a_busy_writer_is_one_committed_state_and_sound() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("busy.db");
        let c = Connection::open(&db).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE r(seq INTEGER, pad BLOB); \
             CREATE TABLE total(n INTEGER); INSERT INTO total VALUES (0);",
        )
        .unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (db, stop) = (db.clone(), stop.clone());
            std::thread::spawn(move || {
                let c = Connection::open(&db).unwrap();
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    // Each transaction keeps `total` equal to the row count.
                    c.execute_batch(&format!(
                        "BEGIN; INSERT INTO r VALUES ({i}, randomblob(3000)); \
                         UPDATE total SET n = n + 1; COMMIT;"
                    ))
                    .unwrap();
                    i += 1;
                }
                i
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(200));
        let mut stream = stream_pages(dir.path(), Path::new("busy.db")).unwrap();
        let mut bytes = Vec::new();
        // Read slowly: the writer keeps committing while the transaction holds its snapshot.
        let mut reader = stream.reader();
        let mut buf = [0u8; 8192];
        loop {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(&buf[..n]);
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        stream.finish().unwrap();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let written = writer.join().unwrap();
        assert_eq!(bytes.len() as u64, stream.size);
        let copy = dir.path().join("copy.db");
        std::fs::write(&copy, &bytes).unwrap();
        let c = Connection::open(&copy).unwrap();
        let (rows, total): (i64, i64) = c
            .query_row(
                "SELECT (SELECT count(*) FROM r), (SELECT n FROM total)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert!(rows > 0 && rows == total, "rows {rows}, total {total}");
        assert!(rows < written, "the writer went on during the copy");
        let check: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }

    #[test]
    fn a_reader_that_gives_up_fails_the_stream_and_frees_its_producer() {
        let dir = tempfile::tempdir().unwrap();
        let c = Connection::open(dir.path().join("big.db")).unwrap();
        c.execute_batch(
            "CREATE TABLE b(x); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n \
             WHERE i < 200) INSERT INTO b SELECT randomblob(4000) FROM n;",
        )
        .unwrap();
        let mut stream = stream_pages(dir.path(), Path::new("big.db")).unwrap();
        let mut first = [0u8; 100];
        stream.reader().read_exact(&mut first).unwrap();
        let verdict = stream.finish();
        assert!(verdict.is_err_and(|e| e.contains("not read whole")));
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
        assert!(copy_to_file(&vol, Path::new("app.db"), &copy).is_err());
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
        assert!(copy_to_file(&vol, Path::new("sub/secrets.db"), &copy).is_err());
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
        copy_to_file(&vol, Path::new("app.db"), &copy).unwrap();
        let n: i64 = Connection::open(&copy)
            .unwrap()
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(std::fs::read(&outside_wal).unwrap(), b"not a wal");
        assert_eq!(integrity_check(&vol, Path::new("app.db")).unwrap(), "ok");
    }
}

#[cfg(test)]
mod detection_cache_tests {
    use super::*;

    fn sqlite_file(path: &Path) {
        let c = Connection::open(path).unwrap();
        c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
    }

    #[test]
    fn every_database_among_many_new_files_is_found_by_the_parallel_header_reads() {
        let dir = tempfile::tempdir().unwrap();
        let mut want = Vec::new();
        for i in 0..1500 {
            let rel = PathBuf::from(format!("d{}/f{i:04}", i % 7));
            std::fs::create_dir_all(dir.path().join(rel.parent().unwrap())).unwrap();
            if i % 211 == 5 {
                sqlite_file(&dir.path().join(&rel));
                want.push(rel);
            } else {
                std::fs::write(dir.path().join(&rel), [b'x'; 200]).unwrap();
            }
        }
        let mut found = find_databases_cached(dir.path(), &mut DetectionCache::default());
        found.sort();
        want.sort();
        assert_eq!(want.len(), 8);
        assert_eq!(found, want);
    }

    /// Sets the kept verdict of the files whose path `which` picks, as if an earlier walk had
    /// found them databases.
    fn flip(cache: &mut DetectionCache, which: impl Fn(&[u8]) -> bool) {
        for chunk in &mut cache.chunks {
            let mut at = 0;
            while let Some((seen, rest)) = next_seen(&chunk[at..]) {
                let end = chunk.len() - rest.len();
                if which(seen.path) {
                    chunk[end - 1] = 1;
                }
                at = end;
            }
        }
    }

    #[test]
    fn a_walk_meets_every_unchanged_file_of_a_nested_tree_in_step_with_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        // Names whose bytes sort unlike their paths (`a/x` before `a-b`), deep directories,
        // and directories between files.
        let files = [
            "a/x", "a/y/z", "a-b", "a.txt", "a0/q", "B", "b/c/d/e", "b/c/f", "b/g", "é", "z",
        ];
        for f in files {
            let path = dir.path().join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, [b'x'; 200]).unwrap();
        }
        let mut cache = DetectionCache::default();
        assert!(find_databases_cached(dir.path(), &mut cache).is_empty());
        assert_eq!(cache.count, files.len());
        // Only files met in step with their kept entry keep the flipped verdict.
        flip(&mut cache, |_| true);
        let mut found = find_databases_cached(dir.path(), &mut cache);
        found.sort();
        let mut want: Vec<PathBuf> = files.iter().map(PathBuf::from).collect();
        want.sort();
        assert_eq!(found, want);
        // Files gone and added in the middle (`a/y0` comes before `a-b` in the walk, after
        // it in bytes): the others stay in step.
        std::fs::remove_file(dir.path().join("a.txt")).unwrap();
        for new in ["a/y0", "b/c/e"] {
            std::fs::write(dir.path().join(new), [b'x'; 200]).unwrap();
        }
        let mut found = find_databases_cached(dir.path(), &mut cache);
        found.sort();
        want.retain(|f| f != Path::new("a.txt"));
        assert_eq!(found, want);
    }

    #[test]
    fn unchanged_files_keep_their_verdict_without_being_opened_and_changed_ones_are_read_again() {
        let dir = tempfile::tempdir().unwrap();
        sqlite_file(&dir.path().join("app.db"));
        std::fs::write(dir.path().join("notes.txt"), b"plain text, not a database").unwrap();
        let mut cache = DetectionCache::default();
        assert_eq!(
            find_databases_cached(dir.path(), &mut cache),
            vec![PathBuf::from("app.db")]
        );
        // Prove the second walk trusts the cache: flip the kept verdict of the unchanged
        // text file; only a walk that does not open it reports it.
        flip(&mut cache, |p| p == b"notes.txt");
        let mut found = find_databases_cached(dir.path(), &mut cache);
        found.sort();
        assert_eq!(
            found,
            vec![PathBuf::from("app.db"), PathBuf::from("notes.txt")]
        );
        // A change (its ctime moves; no one can set that back) makes it be read again.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(dir.path().join("notes.txt"), b"still not a database").unwrap();
        assert_eq!(
            find_databases_cached(dir.path(), &mut cache),
            vec![PathBuf::from("app.db")]
        );
        // A new database is found; a deleted one leaves the cache.
        sqlite_file(&dir.path().join("new.db"));
        std::fs::remove_file(dir.path().join("app.db")).unwrap();
        assert_eq!(
            find_databases_cached(dir.path(), &mut cache),
            vec![PathBuf::from("new.db")]
        );
        assert!(cache.files().all(|f| f.path != b"app.db"));
        // It survives a save and a load; a cut or foreign file is no cache.
        let kept = dir.path().join("state/detect.bin");
        cache.save(&kept);
        let loaded = DetectionCache::load(&kept);
        assert_eq!(loaded.count, 2);
        assert!(loaded.files().eq(cache.files()));
        let bytes = std::fs::read(&kept).unwrap();
        std::fs::write(&kept, &bytes[..bytes.len() - 3]).unwrap();
        assert_eq!(DetectionCache::load(&kept).count, 0);
        std::fs::write(&kept, br#"{"files":[]}"#).unwrap();
        assert_eq!(DetectionCache::load(&kept).count, 0);
        // The former format listed files in the order directories happened to give them.
        std::fs::write(&kept, [b"LBDETv1\n".as_slice(), &bytes[8..]].concat()).unwrap();
        assert_eq!(DetectionCache::load(&kept).count, 0);
    }

    #[test]
    fn a_walk_of_an_unchanged_tree_writes_no_cache_and_any_change_does() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(&tree).unwrap();
        sqlite_file(&tree.join("app.db"));
        std::fs::write(tree.join("small"), b"tiny").unwrap();
        let kept = dir.path().join("detect.bin");
        let walk = || {
            let mut cache = DetectionCache::load(&kept);
            let found = find_databases_cached(&tree, &mut cache);
            cache.save(&kept);
            found
        };
        // Each save writes a new file (a temporary one renamed): its inode tells a write.
        let written = || std::fs::metadata(&kept).map(|m| m.ino()).unwrap();
        assert_eq!(walk(), vec![PathBuf::from("app.db")]);
        let first = written();
        // Nothing changed: the kept cache is not written again.
        assert_eq!(walk(), vec![PathBuf::from("app.db")]);
        assert_eq!(written(), first, "an unchanged tree rewrote the cache");
        // Any change is written: a small file changed, a file added, a file removed.
        let changes: [&dyn Fn(); 3] = [
            &|| std::fs::write(tree.join("small"), b"other").unwrap(),
            &|| std::fs::write(tree.join("new"), b"n").unwrap(),
            &|| std::fs::remove_file(tree.join("new")).unwrap(),
        ];
        for change in changes {
            std::thread::sleep(std::time::Duration::from_millis(20));
            let before = written();
            change();
            walk();
            assert_ne!(written(), before, "a change was not kept");
            let after = written();
            walk();
            assert_eq!(written(), after);
        }
    }
}
