//! `lifeboat completions SHELL` and `lifeboat man`: generated from the command-line
//! definitions, so they never drift from `--help`.

use std::io::Write;

use clap_complete::Shell;

use crate::exit::Code;

/// `lifeboat completions`.
#[derive(clap::Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish (also elvish, powershell)
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Prints the completion script of `shell` for `cli`.
pub fn completions(a: &CompletionsArgs, mut cli: clap::Command) -> anyhow::Result<Code> {
    clap_complete::generate(a.shell, &mut cli, "lifeboat", &mut std::io::stdout());
    Ok(Code::Ok)
}

/// Prints the man page of `cli` (roff): synopsis, options, commands, exit codes.
pub fn man(cli: clap::Command) -> anyhow::Result<Code> {
    let mut out = std::io::stdout().lock();
    clap_mangen::Man::new(cli).render(&mut out)?;
    out.flush()?;
    Ok(Code::Ok)
}
