//! The short way through the parser for the latency-bound verbs (`run`, `exec`): clap's
//! derive builds the whole command tree (every verb, every flag, its help text) before
//! it looks at the first argument: building, using and dropping it was ~4% of `exec`'s
//! CPU time in perf, plus the page faults of its heap (each costs several microseconds
//! on a VM). Here only the named verb's subtree is built. Anything unusual (help, version, an error, another verb) returns
//! `None` and goes the full way, so every message stays the full parser's.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgMatches, Args, FromArgMatches};

use super::{exec, run, Cli, Command};

/// The global options exactly as `Cli` declares them (a unit test compares them).
#[derive(Args, Debug)]
struct Globals {
    #[arg(
        long,
        global = true,
        env = "MYCONTAINER_ROOT",
        default_value = "/var/lib/mycontainer"
    )]
    root: PathBuf,
    #[arg(short, long, global = true)]
    quiet: bool,
}

/// The verbs with a short way.
const VERBS: [&str; 2] = ["run", "exec"];

/// The verb of a command line: the first argument after the global options, if those
/// are only `--root DIR`, `--root=DIR`, `-q` or `--quiet`.
fn verb(args: &[OsString]) -> Option<&str> {
    let mut it = args.iter().skip(1);
    while let Some(arg) = it.next() {
        let arg = arg.to_str()?;
        match arg {
            "--root" => {
                it.next()?;
            }
            "-q" | "--quiet" => {}
            _ if arg.starts_with("--root=") => {}
            _ if arg.starts_with('-') => return None,
            verb => return Some(verb),
        }
    }
    None
}

/// The tree with the global options and the one verb `verb`, as `Cli`'s has them.
fn tree(verb: &str) -> Option<clap::Command> {
    let top =
        Globals::augment_args(clap::Command::new("mycontainer").disable_help_subcommand(true));
    let sub = clap::Command::new(verb.to_string());
    Some(top.subcommand(match verb {
        "run" => run::RunArgs::augment_args(sub),
        "exec" => exec::ExecArgs::augment_args(sub),
        _ => return None,
    }))
}

fn command(verb: &str, matches: &mut ArgMatches) -> Option<Command> {
    Some(match verb {
        "run" => Command::Run(run::RunArgs::from_arg_matches_mut(matches).ok()?),
        "exec" => Command::Exec(exec::ExecArgs::from_arg_matches_mut(matches).ok()?),
        _ => return None,
    })
}

/// `args` parsed the short way, or `None` for the full parser to handle.
pub fn parse(args: &[OsString]) -> Option<Cli> {
    let verb = verb(args)?;
    if !VERBS.contains(&verb) {
        return None;
    }
    // Help and version texts are the full tree's (a `--help` meant for the container's
    // command merely takes the long way).
    let asks_help = args
        .iter()
        .any(|a| matches!(a.to_str(), Some("--help" | "-h" | "--version" | "-V")));
    if asks_help {
        return None;
    }
    let mut matches = tree(verb)?.try_get_matches_from(args).ok()?;
    let globals = Globals::from_arg_matches_mut(&mut matches).ok()?;
    let (name, mut sub) = matches.remove_subcommand()?;
    if name != verb {
        return None;
    }
    Some(Cli {
        root: globals.root,
        quiet: globals.quiet,
        command: command(verb, &mut sub)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn global_options_are_declared_as_in_cli() {
        let full = Cli::command();
        let fast = tree("exec").unwrap();
        for id in ["root", "quiet"] {
            let a = full.get_arguments().find(|a| a.get_id() == id).unwrap();
            let b = fast.get_arguments().find(|a| a.get_id() == id).unwrap();
            assert_eq!(a.get_long(), b.get_long(), "{id}");
            assert_eq!(a.get_short(), b.get_short(), "{id}");
            assert_eq!(a.get_env(), b.get_env(), "{id}");
            assert_eq!(a.get_default_values(), b.get_default_values(), "{id}");
            assert_eq!(a.is_global_set(), b.is_global_set(), "{id}");
            assert_eq!(a.get_action().takes_values(), b.get_action().takes_values());
        }
        for verb in VERBS {
            assert!(
                full.find_subcommand(verb).is_some(),
                "{verb} is a verb of Cli"
            );
        }
    }

    #[test]
    fn parses_as_the_full_parser_does() {
        let lines: &[&[&str]] = &[
            &["mycontainer", "exec", "c", "true"],
            &[
                "mycontainer",
                "--root",
                "/r",
                "exec",
                "-i",
                "-e",
                "A=1",
                "c",
                "sh",
                "-c",
                "x",
            ],
            &[
                "mycontainer",
                "-q",
                "exec",
                "-u",
                "1:2",
                "-w",
                "/tmp",
                "c",
                "ls",
                "-l",
            ],
            &[
                "mycontainer",
                "run",
                "--rm",
                "--network",
                "none",
                "busybox",
                "true",
            ],
            &[
                "mycontainer",
                "--root=/r",
                "run",
                "-d",
                "--name",
                "n",
                "busybox",
                "sleep",
                "9",
            ],
            &["mycontainer", "run", "-d", "busybox", "--root", "x", "-q"],
        ];
        for line in lines {
            let args = os(line);
            let fast = parse(&args).unwrap_or_else(|| panic!("{line:?} takes the short way"));
            let full = Cli::try_parse_from(&args).unwrap();
            assert_eq!(format!("{fast:?}"), format!("{full:?}"), "{line:?}");
        }
        // A global option after the container: whichever way it goes, the same result.
        let args = os(&["mycontainer", "exec", "c", "--root", "/r", "true"]);
        let full = Cli::try_parse_from(&args).unwrap();
        if let Some(fast) = parse(&args) {
            assert_eq!(format!("{fast:?}"), format!("{full:?}"));
        }
    }

    #[test]
    fn leaves_everything_else_to_the_full_parser() {
        let lines: &[&[&str]] = &[
            &["mycontainer"],
            &["mycontainer", "ps", "-a"],
            &["mycontainer", "exec", "--help"],
            &["mycontainer", "run", "busybox", "ls", "--help"],
            &["mycontainer", "--version"],
            &["mycontainer", "--bogus", "exec", "c", "true"],
            // errors are the full parser's to word
            &["mycontainer", "exec", "c"],
            &["mycontainer", "run", "--no-such-flag", "busybox"],
            &["mycontainer", "--root"],
        ];
        for line in lines {
            assert!(parse(&os(line)).is_none(), "{line:?}");
        }
    }
}
