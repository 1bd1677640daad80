//! The `lifeboat` binary: parses the command line, resolves the repository and password,
//! runs one command from `cmd/`, and maps the outcome to a documented exit code.
//! Domain logic lives in `lifeboat-core`; this crate only translates.

mod cmd;
mod context;
mod exit;
mod output;

use clap::{CommandFactory, Parser, Subcommand};

use crate::context::GlobalArgs;

#[derive(Parser)]
#[command(
    name = "lifeboat",
    version = concat!(env!("CARGO_PKG_VERSION"), " (git ", env!("LIFEBOAT_GIT_REV"), ")"),
    about = "Back up, restore and recover stateful Docker services",
    long_about = "Back up, restore and recover stateful Docker services.\n\n\
        A backup captures a container's volumes, bind mounts, configuration and (with \
        --with-image) its image into an encrypted, deduplicated restic-format repository.\n\n\
        Exit codes: 0 ok, 1 error, 2 usage, 3 partial backup (some files unreadable), \
        5 damage found (check or restore verification), 10 repository missing, \
        11 another run (on any host) holds the lock, 12 wrong password, 13 Docker engine \
        unreachable, 14 refused to overwrite, 15 container or backup not found, 16 restore \
        target not writable, 17 repository storage unreachable, 18 storage credentials \
        refused, 19 bucket missing. `doctor` exits 0 when all is clear, 1 with warnings, 2 \
        with errors."
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new repository (and, with no password configured, a key file).
    Init(cmd::init::Args),
    /// Back up containers: volumes, bind mounts, configuration, optionally the image.
    Backup(cmd::backup::Args),
    /// List backups, newest last.
    Snapshots(cmd::snapshots::Args),
    /// Recreate a container and its data from a backup.
    Restore(cmd::restore::Args),
    /// Verify the repository's structure, and with --read-data every byte of it.
    Check(cmd::check::Args),
    /// Copy every backup a region lacks into it (parts first, manifest last; only the data
    /// it lacks is sent; a copy cut short is finished by the next one).
    Copy(cmd::copy::Args),
    /// Find what will make a backup or restore fail (exit 0 clear, 1 warnings, 2 errors).
    Doctor(cmd::doctor::Args),
    /// Restore into a sandbox, check it answers, report the recovery time, tear it down.
    Drill(cmd::drill::Args),
    /// Bring a failed service back from its newest good backup, after a forensic backup of
    /// the broken state (what the daemon does with lifeboat.recover=auto).
    Recover(cmd::recover::Args),
    /// Run policies on schedule: backups, retention, job history, HTTP API, metrics and
    /// dashboard (foreground; SIGTERM stops it cleanly).
    Daemon(cmd::daemon::Args),
    /// The daemon's job history, newest first: backups, drills, recoveries... with errors
    /// (in a cluster, `--host H` asks H's daemon)
    Jobs(cmd::jobs::Args),
    /// Inspect the daemon's policies.
    #[command(subcommand)]
    Policy(cmd::policy::Command),
    /// The passwords that open the repository: list, add, remove, change (no data is
    /// re-encrypted).
    #[command(subcommand)]
    Key(cmd::key::Command),
    /// Several daemons sharing the repository through etcd: who leads, which hosts are alive.
    #[command(subcommand)]
    Cluster(cmd::cluster::Command),
    /// Print a shell completion script: `lifeboat completions bash > /etc/bash_completion.d/lifeboat`.
    Completions(cmd::docs::CompletionsArgs),
    /// Print the man page (roff): `lifeboat man > /usr/local/share/man/man1/lifeboat.1`.
    Man,
}

fn main() {
    lifeboat_core::tuning::bound_allocator_arenas();
    output::install_panic_hook();
    let cli = Cli::parse();
    output::init_logging(cli.global.verbose);
    // Completions and the man page come from the definitions alone: no state directory.
    if !matches!(cli.command, Command::Completions(_) | Command::Man) {
        context::recover_leftovers(&cli.global);
    }
    let result = match &cli.command {
        Command::Init(a) => cmd::init::run(&cli.global, a),
        Command::Backup(a) => cmd::backup::run(&cli.global, a),
        Command::Snapshots(a) => cmd::snapshots::run(&cli.global, a),
        Command::Restore(a) => cmd::restore::run(&cli.global, a),
        Command::Check(a) => cmd::check::run(&cli.global, a),
        Command::Copy(a) => cmd::copy::run(&cli.global, a),
        Command::Doctor(a) => cmd::doctor::run(&cli.global, a),
        Command::Daemon(a) => cmd::daemon::run(&cli.global, a),
        Command::Drill(a) => cmd::drill::run(&cli.global, a),
        Command::Recover(a) => cmd::recover::run(&cli.global, a),
        Command::Jobs(a) => cmd::jobs::run(&cli.global, a),
        Command::Policy(c) => cmd::policy::run(&cli.global, c),
        Command::Key(c) => cmd::key::run(&cli.global, c),
        Command::Cluster(c) => cmd::cluster::run(&cli.global, c),
        Command::Completions(a) => cmd::docs::completions(a, Cli::command()),
        Command::Man => cmd::docs::man(Cli::command()),
    };
    let code = match result {
        Ok(code) => code,
        Err(err) => exit::report(&err, cli.global.json),
    };
    std::process::exit(code.value());
}
