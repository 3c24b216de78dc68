//! `phoenix completions <shell>` and the man pages (`phoenix man <dir>`, hidden: the
//! package build runs it), both generated from [`Cli`], the one definition of the
//! command line.

use std::path::Path;

use clap::CommandFactory;

use super::Cli;
use crate::exit;

/// Prints the completion script for `shell` on stdout.
pub fn print(shell: clap_complete::Shell) -> i32 {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "phoenix", &mut std::io::stdout());
    exit::OK
}

/// Writes `phoenix.1` and `phoenix-<command>.1` for every visible command into `dir`.
pub fn man_pages(dir: &Path) -> i32 {
    match write_man_pages(dir) {
        Ok(n) => {
            eprintln!("wrote {n} man pages to {}", dir.display());
            exit::OK
        }
        Err(e) => {
            eprintln!("error: cannot write man pages to {}: {e}", dir.display());
            exit::HOST
        }
    }
}

fn write_man_pages(dir: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let cmd = Cli::command();
    let mut written = 0;
    let mut page = |name: String, cmd: clap::Command| -> std::io::Result<()> {
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut out)?;
        std::fs::write(dir.join(format!("{name}.1")), out)?;
        written += 1;
        Ok(())
    };
    page("phoenix".into(), cmd.clone())?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("phoenix-{}", sub.get_name());
        let bin = format!("phoenix {}", sub.get_name());
        page(name.clone(), sub.clone().display_name(name).bin_name(bin))?;
    }
    Ok(written)
}
