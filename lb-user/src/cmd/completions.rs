//! `lb completions bash|zsh|fish` and `lb manpage`: generated from the
//! command line's own definition, so they never drift from it.

use clap::{Command, ValueEnum};
use clap_complete::Shell;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum For {
    Bash,
    Zsh,
    Fish,
}

/// Print `shell`'s completion script for `cmd`.
pub fn completions(shell: For, mut cmd: Command) -> anyhow::Result<bool> {
    let shell = match shell {
        For::Bash => Shell::Bash,
        For::Zsh => Shell::Zsh,
        For::Fish => Shell::Fish,
    };
    clap_complete::generate(shell, &mut cmd, "lb", &mut std::io::stdout());
    Ok(true)
}

/// Print the man page (roff) for `cmd`.
pub fn manpage(cmd: Command) -> anyhow::Result<bool> {
    clap_mangen::Man::new(cmd)
        .section("8")
        .render(&mut std::io::stdout())?;
    Ok(true)
}
