//! Every container label Lifeboat reads or writes: the one place their names are spelled.
//! The README's label table documents each; code refers to these constants only.

/// `true`/`1`/`yes` to manage, `false`/`0`/`no` to leave out (see `policy::is_enabled`).
pub const ENABLE: &str = "lifeboat.enable";
/// A named policy from the daemon's config file.
pub const POLICY: &str = "lifeboat.policy";
/// Backup schedule: an interval (`5m`) or a cron expression.
pub const SCHEDULE: &str = "lifeboat.schedule";
/// Retention rules (`7d`, `last=3`, ...).
pub const RETENTION: &str = "lifeboat.retention";
/// Drill schedule.
pub const DRILL: &str = "lifeboat.drill";
/// Consistency mode: `hot`, `pause`, `stop`, `none`.
pub const MODE: &str = "lifeboat.mode";
/// Hot strategy: `auto`, `postgres`, `postgres-files`, `mariadb`, `mysql`, `redis`, `sqlite`,
/// `none`.
pub const STRATEGY: &str = "lifeboat.strategy";
/// Also save the image (`true`).
pub const WITH_IMAGE: &str = "lifeboat.with-image";
/// `false` leaves the container's writable layer out of its backups (it is captured by
/// default).
pub const LAYER: &str = "lifeboat.layer";
/// Mounts to leave out: volume names and container paths, comma-separated.
pub const EXCLUDE: &str = "lifeboat.exclude";
/// Command run in the container before the read.
pub const PRE: &str = "lifeboat.pre";
/// Command run in the container after the read.
pub const POST: &str = "lifeboat.post";
/// Seconds a hook may take.
pub const HOOK_TIMEOUT: &str = "lifeboat.hook-timeout";
/// A command that takes and holds a lock inside the container during the read.
pub const FREEZE: &str = "lifeboat.freeze";
/// The command that releases the freeze.
pub const THAW: &str = "lifeboat.thaw";
/// Database user for hot dumps.
pub const DB_USER: &str = "lifeboat.db-user";
/// The env variable holding the database password (never the password itself).
pub const DB_PASSWORD_ENV: &str = "lifeboat.db-password-env";
/// Services this one needs first, comma-separated.
pub const DEPENDS_ON: &str = "lifeboat.depends-on";
/// A command a drill runs in the restored copy; exit 0 means it answers.
pub const PROBE: &str = "lifeboat.probe";
/// What the daemon does when the service fails: `auto`, `notify` (default) or `off`.
pub const RECOVER: &str = "lifeboat.recover";
/// How long a failure must last before it counts (default 30s).
pub const RECOVER_AFTER: &str = "lifeboat.recover-after";
/// `true`: a removed container is a failure too, and recovered (default `false`).
pub const RECOVER_REMOVED: &str = "lifeboat.recover-removed";
/// Automatic recoveries tried within an hour before the service is left alone (default 3).
pub const RECOVER_ATTEMPTS: &str = "lifeboat.recover-attempts";
/// `auto`: when the service's host dies, the cluster's leader brings it back on another
/// host from the shared repository (default `off`).
pub const FAILOVER: &str = "lifeboat.failover";
/// The hosts it may come back on, in order of preference, comma-separated (default: the
/// least loaded host).
pub const FAILOVER_HOSTS: &str = "lifeboat.failover-hosts";
/// Healthchecks.io-style ping URL.
pub const PING_URL: &str = "lifeboat.ping-url";
/// Written by Lifeboat on a drill's copies: the sandbox they belong to.
pub const SANDBOX: &str = "lifeboat.sandbox";
