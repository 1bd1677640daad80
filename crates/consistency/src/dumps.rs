//! Database servers captured with their own dump tool, run inside the container (so client and
//! server versions always match) and streamed straight into the repository: PostgreSQL
//! (`pg_dumpall`) and MySQL/MariaDB (`mariadb-dump`/`mysqldump --single-transaction`).
//! Credentials come from the official images' variables. A dump that exits non-zero or lacks
//! its tool's completion trailer (empty or truncated) is a failure.

use std::io::Read;
use std::sync::{Arc, Mutex};

/// How to dump, restore and probe one kind of database server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpStrategy {
    /// `postgres` or `mariadb`.
    pub name: &'static str,
    /// The dump command, run in the container; its stdout is the dump.
    pub dump: Vec<String>,
    /// The command that loads a dump from its stdin.
    pub restore: Vec<String>,
    /// Exits 0 once the server accepts connections.
    pub ready: Vec<String>,
    /// A client that reads statements from its stdin and prints each answer's rows as they
    /// come, one line per row (PostgreSQL: `psql`, for a base backup; empty for MariaDB).
    pub client: Vec<String>,
    /// A real query a drill runs on the restored server: prints what it holds.
    pub probe: Vec<String>,
    /// `KEY=value` pairs passed to those commands (passwords).
    pub env: Vec<String>,
    /// `KEY=value` pairs for the dump command only: they name its sessions on the server
    /// ([`DUMP_SESSION_NAME`]), so that [`DumpStrategy::sessions`] finds them.
    pub session_env: Vec<String>,
    /// Prints the server-side process id of each session the dump opened, one per line
    /// (empty when the server serves sessions on threads of one process: MariaDB).
    pub sessions: Vec<String>,
    /// Text the dump tool writes at the very end of a complete dump.
    pub trailer: &'static str,
    /// Files that mark the server's data directory (left out of the file copy).
    pub data_markers: &'static [&'static str],
    /// The server's settings files inside its data directory, kept with the dump: a fresh
    /// data directory would otherwise come back with default settings and access rules.
    pub settings: &'static [&'static str],
}

/// Set from the `lifeboat.db-user` label: overrides the images' user variables.
pub const LABEL_USER: &str = "LIFEBOAT_DB_USER";
/// Set from the variable the `lifeboat.db-password-env` label names.
pub const LABEL_PASSWORD: &str = "LIFEBOAT_DB_PASSWORD";

fn var<'a>(env: &'a [String], keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| {
        env.iter()
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
    })
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The password is in a file inside the container (`POSTGRES_PASSWORD_FILE=/run/secrets/..`,
/// the official images' convention): each command reads it there into `var` and runs, so the
/// password never passes through Lifeboat.
fn reading_password(cmd: Vec<String>, var: &str, file: &str) -> Vec<String> {
    let mut out = strings(&[
        "sh",
        "-c",
        &format!("{var}=\"$(cat \"$1\")\"; export {var}; shift; exec \"$@\""),
        "sh",
        file,
    ]);
    out.extend(cmd);
    out
}

/// `psql` printing the unaligned rows of `sql`, run as `user` on the `postgres` database.
fn psql_query(user: &str, sql: &str) -> Vec<String> {
    strings(&["psql", "-U", user, "-d", "postgres", "-Atc", sql])
}

/// The name a dump's database sessions carry (PostgreSQL's `application_name`).
pub const DUMP_SESSION_NAME: &str = "lifeboat-dump";

impl DumpStrategy {
    /// Every command of the strategy reads the password from `file` into `var`.
    fn with_password_file(mut self, var: &str, file: Option<&str>) -> DumpStrategy {
        if let Some(file) = file {
            for cmd in [
                &mut self.dump,
                &mut self.restore,
                &mut self.ready,
                &mut self.client,
                &mut self.probe,
                &mut self.sessions,
            ] {
                if cmd.is_empty() {
                    continue;
                }
                *cmd = reading_password(std::mem::take(cmd), var, file);
            }
        }
        self
    }
}

/// The strategy for a container, recognised by its image or command.
pub fn detect(
    image: &str,
    cmd: &[String],
    entrypoint: &[String],
    env: &[String],
) -> Option<DumpStrategy> {
    let words: Vec<&str> = std::iter::once(image)
        .chain(cmd.iter().chain(entrypoint).map(String::as_str))
        .collect();
    let mentions = |w: &str| words.iter().any(|x| x.contains(w));
    if mentions("postgres") {
        let user = var(env, &[LABEL_USER, "POSTGRES_USER"])
            .unwrap_or("postgres")
            .to_string();
        let mut pass = Vec::new();
        let password = var(env, &[LABEL_PASSWORD, "POSTGRES_PASSWORD"]);
        if let Some(pw) = password {
            pass.push(format!("PGPASSWORD={pw}"));
        }
        let file = password
            .is_none()
            .then(|| var(env, &["POSTGRES_PASSWORD_FILE"]))
            .flatten();
        let s = DumpStrategy {
            name: "postgres",
            dump: strings(&["pg_dumpall", "--clean", "--if-exists", "-U", &user]),
            restore: strings(&[
                "psql",
                "-q",
                "-U",
                &user,
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=0",
            ]),
            ready: strings(&["pg_isready", "-U", &user]),
            client: strings(&[
                "psql",
                "-X",
                "-A",
                "-t",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                &user,
                "-d",
                "postgres",
            ]),
            probe: psql_query(
                &user,
                "SELECT string_agg(datname, ',') FROM pg_database WHERE NOT datistemplate",
            ),
            env: pass,
            session_env: vec![format!("PGAPPNAME={DUMP_SESSION_NAME}")],
            sessions: psql_query(
                &user,
                &format!(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = '{DUMP_SESSION_NAME}'"
                ),
            ),
            trailer: "PostgreSQL database cluster dump complete",
            data_markers: &["PG_VERSION"],
            settings: &[
                "postgresql.conf",
                "postgresql.auto.conf",
                "pg_hba.conf",
                "pg_ident.conf",
            ],
        };
        return Some(s.with_password_file("PGPASSWORD", file));
    }
    if mentions("mariadb") || mentions("mysql") {
        let mut pass = Vec::new();
        let password = var(
            env,
            &[
                LABEL_PASSWORD,
                "MARIADB_ROOT_PASSWORD",
                "MYSQL_ROOT_PASSWORD",
            ],
        );
        if let Some(pw) = password {
            pass.push(format!("MYSQL_PWD={pw}"));
        }
        let file = password
            .is_none()
            .then(|| {
                var(
                    env,
                    &["MARIADB_ROOT_PASSWORD_FILE", "MYSQL_ROOT_PASSWORD_FILE"],
                )
            })
            .flatten();
        let my_user = var(env, &[LABEL_USER]).unwrap_or("root").to_string();
        let either = |a: &str, b: &str| {
            format!(
                "if command -v {a} >/dev/null 2>&1; then exec {a} \"$@\"; else exec {b} \"$@\"; fi"
            )
        };
        let dump = either("mariadb-dump", "mysqldump");
        let client = either("mariadb", "mysql");
        let admin = either("mariadb-admin", "mysqladmin");
        let s = DumpStrategy {
            name: "mariadb",
            dump: strings(&[
                "sh",
                "-c",
                &dump,
                "sh",
                &format!("-u{my_user}"),
                "--single-transaction",
                "--all-databases",
                "--routines",
                "--events",
            ]),
            restore: strings(&["sh", "-c", &client, "sh", &format!("-u{my_user}")]),
            ready: strings(&["sh", "-c", &admin, "sh", &format!("-u{my_user}"), "ping"]),
            client: Vec::new(),
            probe: strings(&[
                "sh",
                "-c",
                &client,
                "sh",
                &format!("-u{my_user}"),
                "-Nse",
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema NOT IN \
                 ('mysql','information_schema','performance_schema','sys')",
            ]),
            env: pass,
            session_env: Vec::new(),
            sessions: Vec::new(),
            trailer: "-- Dump completed",
            data_markers: &["ibdata1", "aria_log_control"],
            // MariaDB keeps its settings in /etc/mysql, not in its data directory.
            settings: &[],
        };
        return Some(s.with_password_file("MYSQL_PWD", file));
    }
    None
}

/// A reader that remembers the last bytes that went through it, to check a dump's trailer.
pub struct TailReader<R> {
    inner: R,
    tail: Arc<Mutex<Vec<u8>>>,
}

impl<R: Read> TailReader<R> {
    /// Wraps `inner`; the shared buffer holds the tail seen so far.
    pub fn new(inner: R) -> (Self, Arc<Mutex<Vec<u8>>>) {
        let tail = Arc::new(Mutex::new(Vec::new()));
        (
            TailReader {
                inner,
                tail: tail.clone(),
            },
            tail,
        )
    }
}

impl<R: Read> Read for TailReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Ok(mut t) = self.tail.lock() {
            t.extend_from_slice(&buf[..n]);
            if t.len() > 8192 {
                let cut = t.len() - 4096;
                t.drain(..cut);
            }
        }
        Ok(n)
    }
}

/// Whether the end of a dump carries the tool's completion trailer.
pub fn complete(tail: &[u8], trailer: &str) -> bool {
    String::from_utf8_lossy(tail).contains(trailer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_file_is_read_inside_the_container_by_every_command() {
        let env = vec!["POSTGRES_PASSWORD_FILE=/run/secrets/db_password".to_string()];
        let s = detect("postgres:16", &[], &[], &env).unwrap();
        assert!(
            s.env.is_empty(),
            "the password never passes through Lifeboat"
        );
        for cmd in [&s.dump, &s.restore, &s.ready, &s.probe] {
            assert_eq!(cmd[..2], ["sh".to_string(), "-c".to_string()]);
            assert!(cmd[2].contains("PGPASSWORD=\"$(cat \"$1\")\""), "{cmd:?}");
            assert_eq!(cmd[4], "/run/secrets/db_password");
        }
        assert_eq!(s.dump[5], "pg_dumpall");
        // A password given directly wins over the file.
        let both = vec![
            "POSTGRES_PASSWORD=pw".to_string(),
            "POSTGRES_PASSWORD_FILE=/run/secrets/x".to_string(),
        ];
        let s = detect("postgres:16", &[], &[], &both).unwrap();
        assert_eq!(s.env, ["PGPASSWORD=pw"]);
        assert_eq!(s.dump[0], "pg_dumpall");
        let maria = vec!["MARIADB_ROOT_PASSWORD_FILE=/run/secrets/root".to_string()];
        let m = detect("mariadb:11", &[], &[], &maria).unwrap();
        assert!(m.dump[2].contains("MYSQL_PWD="), "{:?}", m.dump);
    }

    #[test]
    fn servers_are_recognised_with_their_credentials() {
        let env = vec![
            "POSTGRES_USER=app".to_string(),
            "POSTGRES_PASSWORD=pw".to_string(),
        ];
        let pg = detect("postgres:16", &[], &[], &env).unwrap();
        assert_eq!(
            pg.dump[..2],
            ["pg_dumpall".to_string(), "--clean".to_string()]
        );
        assert!(pg.dump.contains(&"app".to_string()) && pg.env == vec!["PGPASSWORD=pw"]);
        let env = vec!["MARIADB_ROOT_PASSWORD=r".to_string()];
        let my = detect("mariadb:11", &[], &[], &env).unwrap();
        assert_eq!(my.env, vec!["MYSQL_PWD=r"]);
        assert!(my.dump.iter().any(|a| a == "--single-transaction"));
        assert!(detect("redis:7", &[], &[], &[]).is_none());
        let env = vec![
            format!("{LABEL_USER}=backup"),
            format!("{LABEL_PASSWORD}=s"),
        ];
        let my = detect("mariadb:11", &[], &[], &env).unwrap();
        assert!(my.dump.contains(&"-ubackup".to_string()) && my.env == vec!["MYSQL_PWD=s"]);
        let pg = detect("postgres:16", &[], &[], &env).unwrap();
        assert!(pg.dump.contains(&"backup".to_string()) && pg.env == vec!["PGPASSWORD=s"]);
    }

    #[test]
    fn truncated_dumps_lack_the_trailer() {
        let (mut r, tail) = TailReader::new(
            &b"CREATE TABLE t();\n-- PostgreSQL database cluster dump complete\n"[..],
        );
        std::io::copy(&mut r, &mut std::io::sink()).unwrap();
        assert!(complete(
            &tail.lock().unwrap(),
            "PostgreSQL database cluster dump complete"
        ));
        assert!(!complete(
            b"CREATE TABLE t(",
            "PostgreSQL database cluster dump complete"
        ));
    }
}
