//! Hot capture of Redis: a fresh RDB snapshot (BGSAVE, waited for) written by the server
//! itself into its data directory, which the file copy then picks up whole. Redis writes the
//! RDB to a temporary file and renames it, so the copy never sees a half-written one.

use std::time::{Duration, Instant};

use lifeboat_docker::{Engine, EngineError};

/// Why a Redis snapshot failed.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// A `redis-cli` command failed.
    #[error("Redis in `{container}` did not answer `{command}`: {output}")]
    Command {
        /// The container.
        container: String,
        /// The command.
        command: String,
        /// What it printed.
        output: String,
    },
    #[error(
        "Redis in `{0}` persists with an append-only file, which hot mode does not capture \
         yet: back it up with --mode stop (or label lifeboat.mode=stop)"
    )]
    /// Redis persists with an append-only file: hot mode cannot capture it.
    AppendOnly(String),
    /// `BGSAVE` did not finish in time: the container and the seconds waited.
    #[error("Redis in `{0}` did not finish BGSAVE within {1} s")]
    Timeout(String, u64),
    #[error(
        "Redis in `{0}` failed its BGSAVE (rdb_last_bgsave_status is not ok): check its logs and free disk space"
    )]
    /// `BGSAVE` reported an error.
    SaveFailed(String),
    /// The engine refused the exec.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Whether a container runs Redis (its image or command names `redis-server`/`redis`).
pub fn is_redis(image: &str, cmd: &[String], entrypoint: &[String]) -> bool {
    image.contains("redis")
        || cmd
            .iter()
            .chain(entrypoint)
            .any(|a| a.contains("redis-server"))
}

fn cli(
    engine: &dyn Engine,
    container: &str,
    password: Option<&str>,
    args: &[&str],
) -> Result<String, RedisError> {
    let mut cmd = vec!["redis-cli".to_string()];
    if let Some(pw) = password {
        cmd.extend([
            "--no-auth-warning".to_string(),
            "-a".to_string(),
            pw.to_string(),
        ]);
    }
    cmd.extend(args.iter().map(|a| a.to_string()));
    let out = engine.exec(container, &cmd, Duration::from_secs(30))?;
    if out.exit_code != Some(0) || out.output.starts_with("ERR") || out.output.contains("NOAUTH") {
        return Err(RedisError::Command {
            container: container.to_string(),
            command: args.join(" "),
            output: out.output.trim().to_string(),
        });
    }
    Ok(out.output)
}

fn info_field(info: &str, key: &str) -> Option<String> {
    info.lines().find_map(|l| {
        l.trim()
            .strip_prefix(key)?
            .strip_prefix(':')
            .map(str::to_string)
    })
}

/// Makes Redis write a fresh RDB and waits for it. The password, if any, comes from the
/// container's `REDIS_PASSWORD` variable.
pub fn snapshot(
    engine: &dyn Engine,
    container: &str,
    env: &[String],
    timeout: Duration,
) -> Result<(), RedisError> {
    let password = env.iter().find_map(|kv| kv.strip_prefix("REDIS_PASSWORD="));
    let aof = cli(
        engine,
        container,
        password,
        &["CONFIG", "GET", "appendonly"],
    )?;
    if aof.lines().nth(1).is_some_and(|v| v.trim() == "yes") {
        return Err(RedisError::AppendOnly(container.to_string()));
    }
    let deadline = Instant::now() + timeout;
    let persistence =
        |engine: &dyn Engine| cli(engine, container, password, &["INFO", "persistence"]);
    // Let a save already running finish, then note the server's time.
    while info_field(&persistence(engine)?, "rdb_bgsave_in_progress").as_deref() == Some("1") {
        if Instant::now() > deadline {
            return Err(RedisError::Timeout(
                container.to_string(),
                timeout.as_secs(),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let time = cli(engine, container, password, &["TIME"])?;
    let started: i64 = time
        .lines()
        .next()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    cli(engine, container, password, &["BGSAVE"])?;
    loop {
        let info = persistence(engine)?;
        let running = info_field(&info, "rdb_bgsave_in_progress").as_deref() == Some("1");
        let last: i64 = info_field(&info, "rdb_last_save_time")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if !running && last >= started {
            return match info_field(&info, "rdb_last_bgsave_status")
                .as_deref()
                .map(str::trim)
            {
                Some("ok") => Ok(()),
                _ => Err(RedisError::SaveFailed(container.to_string())),
            };
        }
        if Instant::now() > deadline {
            return Err(RedisError::Timeout(
                container.to_string(),
                timeout.as_secs(),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_is_recognised_by_image_or_command() {
        assert!(is_redis("redis:7", &[], &[]));
        assert!(is_redis(
            "cache",
            &["redis-server".into(), "--save".into()],
            &[]
        ));
        assert!(!is_redis("postgres:16", &["postgres".into()], &[]));
    }

    #[test]
    fn info_fields_are_read_from_redis_info_output() {
        let info = "# Persistence\r\nrdb_bgsave_in_progress:0\r\nrdb_last_save_time:1700000000\r\n";
        assert_eq!(
            info_field(info, "rdb_bgsave_in_progress")
                .as_deref()
                .map(str::trim),
            Some("0")
        );
        assert_eq!(
            info_field(info, "rdb_last_save_time")
                .as_deref()
                .map(str::trim),
            Some("1700000000")
        );
        assert_eq!(info_field(info, "missing"), None);
    }
}
