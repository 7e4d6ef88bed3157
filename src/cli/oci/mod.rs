//! `mycontainer-runtime` (a symlink to our binary, or `mycontainer runtime ...`): runc's
//! command line over the same runtime `run` uses, so that containerd's shim can drive
//! it. Its own state lives under runc-style `--root` (one directory per container,
//! `state.rs`); the verbs are in `verbs.rs`, `spec` and `features` in `spec.rs`.

mod cgroup_path;
mod exec;
mod hooks;
mod lock;
mod log;
mod spec;
mod state;
mod verbs;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::exitcode;

/// The name our binary answers to as a runtime.
pub const RUNTIME_NAME: &str = "mycontainer-runtime";

#[derive(Parser, Debug)]
#[command(
    name = "mycontainer-runtime",
    version = super::VERSION,
    about = "An OCI runtime with runc's command line (mycontainer's runtime)",
    arg_required_else_help = true,
    disable_help_subcommand = true
)]
pub struct RuntimeCli {
    /// Directory for the containers' state (tmpfs recommended)
    #[arg(long, global = true, default_value = "/run/mycontainer-runtime")]
    root: PathBuf,

    /// Also write errors (and with --debug, debug lines) to this file
    #[arg(long, global = true)]
    log: Option<PathBuf>,

    /// Format of the --log file
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Log what each command does (to --log, else stderr)
    #[arg(long, global = true)]
    debug: bool,

    /// Read cgroupsPath as systemd's slice:prefix:name. There is no systemd D-Bus here:
    /// the cgroup is made with cgroupfs at the unit's path, <slice>/<prefix>-<name>.scope
    #[arg(long, global = true)]
    systemd_cgroup: bool,

    #[command(subcommand)]
    command: RuntimeCommand,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum RuntimeCommand {
    /// Create a container from a bundle; its process waits for `start`
    Create(CreateArgs),
    /// Start a created container's process
    Start(IdArg),
    /// Print a container's state (OCI state JSON)
    State(IdArg),
    /// Send a signal to a container's process (default TERM)
    Kill(KillArgs),
    /// Delete a stopped (or, with --force, any) container
    Delete(DeleteArgs),
    /// Create and start a container, and wait for it unless --detach
    Run(RunArgs),
    /// List containers
    #[command(alias = "ls")]
    List(ListArgs),
    /// List a container's processes
    Ps(PsArgs),
    /// Run a process in a container
    Exec(exec::ExecArgs),
    /// Freeze every process of a container (cgroup2 freezer)
    Pause(IdArg),
    /// Thaw a paused container
    Resume(IdArg),
    /// Change a container's cgroup limits
    Update(UpdateArgs),
    /// Write a default bundle config.json
    Spec(SpecArgs),
    /// Print what this runtime supports (runtime-spec features JSON)
    Features,
}

#[derive(Args, Debug)]
struct IdArg {
    id: String,
}

#[derive(Args, Debug)]
struct CreateArgs {
    /// Bundle directory (holding config.json)
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Unix socket to which the pty master is sent (process.terminal)
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Write the container's pid to this file
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Accepted for runc compatibility (pivot_root is always used)
    #[arg(long)]
    no_pivot: bool,
    /// Accepted for runc compatibility (no session keyring is made)
    #[arg(long)]
    no_new_keyring: bool,
    /// Extra descriptors to pass: only 0 is supported
    #[arg(long, default_value_t = 0)]
    preserve_fds: u32,
    id: String,
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    create: CreateArgs,
    /// Return once started instead of waiting for the container
    #[arg(short, long)]
    detach: bool,
    /// Keep the container after it exits (runc's --keep)
    #[arg(long)]
    keep: bool,
}

#[derive(Args, Debug)]
struct KillArgs {
    /// Signal every process in the container's cgroup
    #[arg(short, long)]
    all: bool,
    id: String,
    /// Name (TERM, SIGTERM) or number
    #[arg(default_value = "TERM")]
    signal: String,
}

#[derive(Args, Debug)]
struct UpdateArgs {
    /// An OCI linux.resources JSON file ("-": stdin)
    #[arg(short, long)]
    resources: PathBuf,
    id: String,
}

#[derive(Args, Debug)]
struct DeleteArgs {
    /// Kill a running container first
    #[arg(short, long)]
    force: bool,
    id: String,
}

#[derive(Args, Debug)]
struct ListArgs {
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Ids only
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args, Debug)]
struct PsArgs {
    /// table: ps(1)'s output for the container's processes; json: their pids
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    format: Format,
    id: String,
    /// Options for ps(1) after the id (default -ef), as runc: `ps ID -- -o pid,comm`
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    ps_options: Vec<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Table,
    Json,
}

#[derive(Args, Debug)]
struct SpecArgs {
    /// Where to write config.json
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// A spec for rootless containers (not supported)
    #[arg(long)]
    rootless: bool,
}

/// The arguments for the runtime CLI, when we were invoked as one: as
/// `mycontainer-runtime` (argv[0]) or as `mycontainer runtime ...`.
pub fn invoked() -> Option<Vec<OsString>> {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let name = args
        .first()
        .map(|a| PathBuf::from(a).file_name().map(|n| n.to_owned()))
        .unwrap_or_default()?;
    if name.to_string_lossy().ends_with(RUNTIME_NAME) {
        return Some(args);
    }
    if args.get(1).is_some_and(|a| a == "runtime") {
        args.remove(1);
        args[0] = RUNTIME_NAME.into();
        return Some(args);
    }
    None
}

/// Runs the runtime CLI; returns the exit code (1 on any failure of ours, as runc).
pub fn main(args: Vec<OsString>) -> i32 {
    let cli = match RuntimeCli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() {
                exitcode::VERB_FAILED
            } else {
                0
            };
            let _ = err.print();
            return code;
        }
    };
    let logger = log::Logger::new(cli.log.clone(), cli.log_format, cli.debug);
    logger.debug(&format!("{:?}", cli.command));
    let root = match std::path::absolute(&cli.root) {
        Ok(root) => root,
        Err(err) => {
            logger.error(&format!(
                "cannot resolve the state root {}: {err}",
                cli.root.display()
            ));
            return exitcode::VERB_FAILED;
        }
    };
    let ctx = verbs::Ctx {
        root,
        logger: &logger,
        systemd_cgroup: cli.systemd_cgroup,
    };
    let result = match cli.command {
        RuntimeCommand::Create(args) => verbs::create(&ctx, &args).map(|_| 0),
        RuntimeCommand::Start(args) => verbs::start(&ctx, &args.id).map(|()| 0),
        RuntimeCommand::State(args) => verbs::state(&ctx, &args.id).map(|()| 0),
        RuntimeCommand::Kill(args) => verbs::kill(&ctx, &args).map(|()| 0),
        RuntimeCommand::Delete(args) => verbs::delete(&ctx, &args.id, args.force).map(|()| 0),
        RuntimeCommand::Run(args) => verbs::run(&ctx, &args),
        RuntimeCommand::List(args) => verbs::list(&ctx, &args).map(|()| 0),
        RuntimeCommand::Ps(args) => verbs::ps(&ctx, &args).map(|()| 0),
        RuntimeCommand::Exec(args) => exec::exec(&ctx, &args),
        RuntimeCommand::Pause(args) => verbs::pause(&ctx, &args.id, true).map(|()| 0),
        RuntimeCommand::Resume(args) => verbs::pause(&ctx, &args.id, false).map(|()| 0),
        RuntimeCommand::Update(args) => verbs::update(&ctx, &args.id, &args.resources).map(|()| 0),
        RuntimeCommand::Spec(args) => spec::spec(&args).map(|()| 0),
        RuntimeCommand::Features => spec::features().map(|()| 0),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            logger.error(&format!("{err:#}"));
            exitcode::VERB_FAILED
        }
    }
}
