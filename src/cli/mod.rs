//! Command-line parsing and dispatch. Each verb lives in its own file; this file only
//! declares the command tree, resolves global options and maps errors to exit codes.

mod archive;
mod attach;
mod build;
mod container;
mod docs;
mod exec;
mod fast;
mod files;
mod filters;
mod format;
mod image;
mod lifecycle;
mod network;
mod observe;
mod oci;
mod policies;
pub mod progress;
mod registry;
mod run;
mod system;
mod volume;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use mycontainer_store::Store;

use crate::exitcode;

/// `--version`: the crate's version and the git revision it was built from (build.rs:
/// the short commit, `-dirty` when tracked files differed, or `unknown`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("MYCONTAINER_GIT_REV"),
    ")"
);

#[derive(Parser, Debug)]
#[command(
    name = "mycontainer",
    version = VERSION,
    about = "A small container toolchain: images, run, manage",
    arg_required_else_help = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    /// State root (images, layers, containers)
    #[arg(
        long,
        global = true,
        env = "MYCONTAINER_ROOT",
        default_value = "/var/lib/mycontainer"
    )]
    pub root: PathBuf,

    /// Print less (ids only where a command prints ids)
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of the `run` variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Manage images: build, import, ls, inspect, tag, rm
    Image(image::ImageArgs),
    /// Run a command in a new container
    Run(run::RunArgs),
    /// Print a container's log
    Logs(container::LogsArgs),
    /// List containers
    Ps(lifecycle::PsArgs),
    /// Stop running containers (SIGTERM, then SIGKILL after the timeout)
    Stop(lifecycle::StopArgs),
    /// Send a signal to running containers
    Kill(lifecycle::KillArgs),
    /// Start stopped containers again (in the background)
    Start(lifecycle::StartArgs),
    /// Show containers as JSON
    Inspect(lifecycle::InspectArgs),
    /// Make an image from a container's changes
    Commit(lifecycle::CommitArgs),
    /// Run a command in a running container
    Exec(exec::ExecArgs),
    /// Connect to a running detached container's input and output (detach: ctrl-p ctrl-q)
    Attach(attach::AttachArgs),
    /// Block until containers stop, then print their exit codes
    Wait(observe::WaitArgs),
    /// Show the processes of a running container (the host's ps)
    Top(observe::TopArgs),
    /// Freeze every process of running containers
    Pause(observe::PauseArgs),
    /// Thaw paused containers
    Unpause(observe::PauseArgs),
    /// Show what containers use: CPU, memory, network and block I/O, pids
    Stats(observe::StatsArgs),
    /// Change the resource limits of containers (at once when they run)
    Update(observe::UpdateArgs),
    /// Generate files for other tools: `generate systemd [NAME]`
    Generate(policies::GenerateArgs),
    /// Show what happened to containers (create, start, die, oom, health_status, destroy)
    Events(observe::EventsArgs),
    /// Run a container's healthcheck by hand: `healthcheck run NAME`
    Healthcheck(policies::HealthcheckArgs),
    /// (internal) supervise a detached container
    #[command(hide = true)]
    Supervise(lifecycle::SuperviseArgs),
    /// Remove stopped containers
    Rm(container::RmArgs),
    /// Manage networks: create, ls, inspect, rm
    Network(network::NetworkArgs),
    /// List a container's published ports
    Port(network::PortArgs),
    /// Reclaim leftovers: orphaned mounts, cgroups, temp files, unreferenced blobs
    Gc(container::GcArgs),
    /// Download an image from a registry
    Pull(registry::PullArgs),
    /// Upload an image to a registry
    Push(registry::PushArgs),
    /// Store credentials for a registry (in <root>/auth.json)
    Login(registry::LoginArgs),
    /// Remove stored credentials for a registry
    Logout(registry::LogoutArgs),
    /// Manage volumes
    Volume(volume::VolumeArgs),
    /// Copy files between a container and the host (or a tar stream)
    Cp(files::CpArgs),
    /// Show what a container changed (A added, C changed, D deleted)
    Diff(files::DiffArgs),
    /// Write a container's filesystem as a tar
    Export(files::ExportArgs),
    /// Give a container another name
    Rename(system::RenameArgs),
    /// Manage containers (prune)
    Container(system::ContainerArgs),
    /// The whole state root: check [--repair], df, prune, boot
    System(system::SystemArgs),
    /// Print a shell completion script: `completions bash|zsh|fish`
    Completions(docs::CompletionsArgs),
    /// (scripts/man) write a man page per command into DIR
    #[command(hide = true)]
    Man(docs::ManArgs),
}

/// What every command gets: resolved global options.
pub struct Ctx {
    pub root: PathBuf,
    pub quiet: bool,
}

impl Ctx {
    /// Opens the image store under the state root, creating it on first use.
    pub fn store(&self) -> anyhow::Result<Store> {
        Store::open(&self.root).map_err(anyhow::Error::from)
    }
}

/// Parses the command line, runs the command and returns the process exit code.
pub fn main() -> i32 {
    // The detached supervisor, exactly as `run -d` and `start` launch it: no parser,
    // no state root checks (its CLI made them), so it touches as little as it can.
    if let Some(code) = lifecycle::supervise_entry() {
        return code;
    }
    // `mycontainer-runtime ...` or `mycontainer runtime ...`: runc's command line.
    if let Some(args) = oci::invoked() {
        return oci::main(args);
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let parsed = match fast::parse(&args) {
        Some(cli) => Ok(cli),
        None => Cli::try_parse_from(&args),
    };
    let cli = match parsed {
        Ok(cli) => cli,
        Err(err) => {
            // As Docker: no arguments (or a verb group without its verb) prints the
            // usage on stdout and succeeds; a wrong flag is run's failure code.
            let help_asked =
                err.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand;
            if help_asked {
                use std::io::Write;
                // A closed pipe (`| head`) is not worth a panic.
                let _ = write!(std::io::stdout(), "{}", err.render());
                return 0;
            }
            let code = if err.use_stderr() {
                exitcode::TOOL_FAILED
            } else {
                0
            };
            let _ = err.print();
            return code;
        }
    };
    // Documents of the command line itself: no state root is needed or made.
    let documents = match &cli.command {
        Command::Completions(args) => Some(docs::completions(args)),
        Command::Man(args) => Some(docs::man(args)),
        _ => None,
    };
    if let Some(result) = documents {
        return result.unwrap_or_else(|err| {
            eprintln!("mycontainer: {err:#}");
            exitcode::VERB_FAILED
        });
    }
    // Absolute once, here: bind sources and the detached supervisor (which runs in
    // another directory) need it. Not canonicalize: the root may not exist yet.
    let root = match std::path::absolute(&cli.root) {
        Ok(root) => root,
        Err(err) => {
            eprintln!(
                "mycontainer: cannot resolve the state root {}: {err} (pass an absolute --root)",
                cli.root.display()
            );
            return exitcode::TOOL_FAILED;
        }
    };
    let ctx = Ctx {
        root,
        quiet: cli.quiet,
    };
    // Every command starts here: the one place that makes sure the state root is
    // private before anything is created in it (see stateroot.rs).
    if let Err(err) = crate::stateroot::prepare(&ctx.root) {
        eprintln!("mycontainer: {err:#}");
        return exitcode::TOOL_FAILED;
    }
    // Finish the cleanup of runs whose CLI was killed (even by SIGKILL), so no command
    // sees their leftovers: before the verbs that list or manage many containers, every
    // container marked live; the verbs on named containers reclaim just those as they
    // find them (container::find), so their cost stays flat however many run.
    let reclaimed = match &cli.command {
        Command::Gc(_) => Ok(Default::default()),
        command if on_named_containers(command) => crate::container::reclaim_if_unswept(&ctx.root),
        _ => crate::container::reclaim_orphans(&ctx.root),
    };
    if let Err(err) = reclaimed {
        eprintln!("mycontainer: warning: {err:#}");
    }
    let failure = Failure::of(&cli.command);
    let result = match cli.command {
        Command::Image(args) => image::main(&ctx, args),
        Command::Run(args) => run::main(&ctx, args),
        Command::Logs(args) => container::logs(&ctx, args),
        Command::Ps(args) => lifecycle::ps(&ctx, args),
        Command::Stop(args) => lifecycle::stop(&ctx, args),
        Command::Kill(args) => lifecycle::kill(&ctx, args),
        Command::Start(args) => lifecycle::start(&ctx, args),
        Command::Inspect(args) => lifecycle::inspect(&ctx, args),
        Command::Commit(args) => lifecycle::commit(&ctx, args),
        Command::Exec(args) => exec::exec(&ctx, args),
        Command::Attach(args) => attach::attach(&ctx, args),
        Command::Wait(args) => observe::wait(&ctx, args),
        Command::Top(args) => observe::top(&ctx, args),
        Command::Pause(args) => observe::pause(&ctx, args),
        Command::Unpause(args) => observe::unpause(&ctx, args),
        Command::Stats(args) => observe::stats(&ctx, args),
        Command::Update(args) => observe::update(&ctx, args),
        Command::Generate(args) => policies::generate(&ctx, args),
        Command::Healthcheck(args) => policies::healthcheck(&ctx, args),
        Command::Events(args) => observe::events(&ctx, args),
        Command::Supervise(args) => lifecycle::supervise(&ctx, args),
        Command::Rm(args) => container::rm(&ctx, args),
        Command::Gc(args) => container::gc(&ctx, args),
        Command::Network(args) => network::main(&ctx, args),
        Command::Port(args) => network::port(&ctx, args),
        Command::Pull(args) => registry::pull(&ctx, args),
        Command::Push(args) => registry::push(&ctx, args),
        Command::Login(args) => registry::login(&ctx, args),
        Command::Logout(args) => registry::logout(&ctx, args),
        Command::Volume(args) => volume::main(&ctx, args),
        Command::Cp(args) => files::cp(&ctx, args),
        Command::Diff(args) => files::diff(&ctx, args),
        Command::Export(args) => files::export(&ctx, args),
        Command::Rename(args) => system::rename(&ctx, args),
        Command::Container(args) => system::container(&ctx, args),
        Command::System(args) => system::system(&ctx, args),
        // Answered above, before the state root; here only for completeness.
        Command::Completions(args) => docs::completions(&args),
        Command::Man(args) => docs::man(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("mycontainer: {err:#}{}", disk_full_hint(&err, &ctx.root));
            failure.code(&err)
        }
    }
}

/// The verbs that act on the containers they name (found with `container::find`, which
/// reclaims the one it finds) and on no other: no sweep of every running container
/// before them. `run` looks at the holder of its `--name` and, when the address pool
/// or a port looks taken, at all of them (container/run.rs).
fn on_named_containers(command: &Command) -> bool {
    matches!(
        command,
        Command::Run(_)
            | Command::Exec(_)
            | Command::Logs(_)
            | Command::Stop(_)
            | Command::Kill(_)
            | Command::Start(_)
            | Command::Inspect(_)
            | Command::Commit(_)
            | Command::Attach(_)
            | Command::Wait(_)
            | Command::Top(_)
            | Command::Pause(_)
            | Command::Unpause(_)
            | Command::Update(_)
            | Command::Healthcheck(_)
            | Command::Supervise(_)
            | Command::Rm(_)
            | Command::Port(_)
            | Command::Cp(_)
            | Command::Diff(_)
            | Command::Export(_)
            | Command::Rename(_)
    )
}

/// What to do when the failure was a full disk (or quota) somewhere in the chain.
fn disk_full_hint(err: &anyhow::Error, root: &std::path::Path) -> String {
    let full = err.chain().any(|cause| {
        let raw = cause
            .downcast_ref::<std::io::Error>()
            .and_then(|e| e.raw_os_error())
            .or_else(|| match cause.downcast_ref::<mycontainer_store::Error>() {
                Some(mycontainer_store::Error::Io { cause, .. }) => cause.raw_os_error(),
                _ => None,
            })
            .or_else(|| {
                cause
                    .downcast_ref::<nix::errno::Errno>()
                    .map(|errno| *errno as i32)
            });
        matches!(raw, Some(libc::ENOSPC) | Some(libc::EDQUOT))
    });
    if let Some(hint) = full
        .then(|| crate::container::run_dir_full_hint(err))
        .flatten()
    {
        format!("; {hint}")
    } else if full {
        format!(
            "; the disk holding {} is full: free space there (image rm, system prune) and try again",
            root.display()
        )
    } else {
        String::new()
    }
}

/// How a verb's own failure exits, as the docker CLI: `run` (and the verbs Docker has no
/// managing counterpart for here) 125; the managing verbs 1; `exec` 1 only when there is
/// no such container or it is not running (a command that cannot start keeps 125).
enum Failure {
    Tool,
    Verb,
    Exec,
}

impl Failure {
    fn of(command: &Command) -> Failure {
        // As Docker: `run`'s own failure is 125, every other verb exits 1.
        match command {
            Command::Run(_) | Command::Supervise(_) => Failure::Tool,
            Command::Exec(_) => Failure::Exec,
            _ => Failure::Verb,
        }
    }

    fn code(&self, err: &anyhow::Error) -> i32 {
        match self {
            Failure::Verb => exitcode::VERB_FAILED,
            Failure::Exec
                if err.is::<crate::container::NoSuchContainer>()
                    || err.is::<crate::container::exec::NotRunning>()
                    || err.is::<crate::container::pause::Paused>() =>
            {
                exitcode::VERB_FAILED
            }
            // As Docker: an exec that could not start its process (a user, a working
            // directory) is 126; `run`'s own failure is 125.
            Failure::Exec => exitcode::CANNOT_EXECUTE,
            Failure::Tool => exitcode::TOOL_FAILED,
        }
    }
}
