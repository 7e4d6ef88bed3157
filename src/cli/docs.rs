//! Documents generated from the command tree itself: shell completions
//! (`completions bash|zsh|fish`, clap_complete) and man pages (the hidden `man DIR`,
//! clap_mangen, which `scripts/man` calls). Neither touches the state root.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::oci::RuntimeCli;
use super::Cli;

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to write a completion script for (bash, zsh, fish, elvish, powershell)
    pub shell: Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Directory to write the pages into (created if missing)
    pub dir: PathBuf,
}

/// Writes the completion script for `shell` on stdout.
pub fn completions(args: &CompletionsArgs) -> anyhow::Result<i32> {
    let mut cmd = visible(&Cli::command());
    // Into memory first: clap_complete panics when its writer fails, and a reader that
    // stops early (`| head`) is no error.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "mycontainer", &mut script);
    match std::io::stdout().lock().write_all(&script) {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(err).context("cannot write the completion script to stdout")
        }
        _ => Ok(0),
    }
}

/// The command tree less its hidden subcommands and arguments (the supervisor's entry,
/// `man`), which clap_complete's bash script would offer otherwise.
fn visible(cmd: &clap::Command) -> clap::Command {
    let mut copy = clap::Command::new(cmd.get_name().to_string())
        .disable_help_flag(cmd.is_disable_help_flag_set())
        .disable_version_flag(cmd.is_disable_version_flag_set())
        .args(
            cmd.get_arguments()
                .filter(|arg| !arg.is_hide_set())
                .cloned(),
        )
        .subcommands(
            cmd.get_subcommands()
                .filter(|sub| !sub.is_hide_set())
                .map(visible),
        );
    if let Some(about) = cmd.get_about() {
        copy = copy.about(about.clone());
    }
    if cmd.get_version().is_some() {
        copy = copy.version(super::VERSION);
    }
    copy
}

/// Writes one page per command and subcommand: mycontainer.1, mycontainer-run.1,
/// mycontainer-image-build.1, ..., and mycontainer-runtime.1 with its verbs.
/// Prints the paths written.
pub fn man(args: &ManArgs) -> anyhow::Result<i32> {
    std::fs::create_dir_all(&args.dir).with_context(|| {
        format!(
            "cannot create the man page directory {} (pass a writable DIR)",
            args.dir.display()
        )
    })?;
    let mut written = Vec::new();
    for cmd in [Cli::command(), RuntimeCli::command()] {
        let mut cmd = cmd.disable_help_subcommand(true);
        cmd.build();
        write_pages(&cmd, &args.dir, &mut written)?;
    }
    for path in written {
        println!("{}", path.display());
    }
    Ok(0)
}

/// A page for `cmd` and, recursively, for every visible subcommand. The subcommands'
/// names are already qualified (`mycontainer-image-build`) once the command is built.
fn write_pages(cmd: &clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone()).manual("mycontainer manual");
    let path = man
        .generate_to(dir)
        .with_context(|| format!("cannot write a man page into {}", dir.display()))?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        write_pages(sub, dir, written)?;
    }
    Ok(())
}
