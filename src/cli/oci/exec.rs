//! `exec`: a new process in a running container, through the runtime's
//! `exec` (the same child code as the init). Either runc's `--process FILE` (an OCI
//! process JSON, what containerd's shim sends) or the inline `exec ID CMD...` with
//! -e/-u/--cwd/-t. With `--detach` the process gets our stdio (or its pty goes to
//! `--console-socket`) and outlives us, reaped by our caller; else we relay it and exit
//! with its code.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use oci_spec::runtime::{Process, Spec};

use super::state::{self, Record, Status};
use super::verbs::{send_console, Ctx};
use crate::runtime;

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// An OCI process JSON to run (replaces the command line's command and flags)
    #[arg(short, long)]
    process: Option<PathBuf>,
    /// Return once the process runs; its stdio is ours
    #[arg(short, long)]
    detach: bool,
    /// Write the process's pid to this file
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Unix socket to which the pty master is sent (with a terminal)
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Give the process a terminal
    #[arg(short, long)]
    tty: bool,
    /// Set an environment variable (K=V)
    #[arg(short, long)]
    env: Vec<String>,
    /// UID[:GID] to run as
    #[arg(short, long)]
    user: Option<String>,
    /// Working directory in the container
    #[arg(long)]
    cwd: Option<PathBuf>,
    id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// The process to run: `--process`, or the container's own with the command line's
/// command and flags.
fn process_of(args: &ExecArgs, spec: &Spec) -> anyhow::Result<Process> {
    if let Some(path) = &args.process {
        if !args.command.is_empty() {
            bail!("exec takes either --process or a command, not both");
        }
        let text = std::fs::read(path)
            .with_context(|| format!("cannot read the process file {}", path.display()))?;
        return serde_json::from_slice(&text)
            .with_context(|| format!("cannot parse the process file {}", path.display()));
    }
    if args.command.is_empty() {
        bail!("exec needs a command (or --process FILE)");
    }
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_args(Some(args.command.clone()));
    process.set_terminal(Some(args.tty));
    let mut env = process.env().clone().unwrap_or_default();
    env.extend(args.env.iter().cloned());
    process.set_env(Some(env));
    if let Some(cwd) = &args.cwd {
        process.set_cwd(cwd.clone());
    }
    if let Some(user) = &args.user {
        let (uid, gid) = user.split_once(':').unwrap_or((user, "0"));
        let parse = |v: &str| {
            v.parse::<u32>()
                .map_err(|_| anyhow::anyhow!("invalid --user {user:?}: use UID[:GID] (numbers)"))
        };
        let mut spec_user = process.user().clone();
        spec_user.set_uid(parse(uid)?);
        spec_user.set_gid(parse(gid)?);
        process.set_user(spec_user);
    }
    Ok(process)
}

pub fn exec(ctx: &Ctx, args: &ExecArgs) -> anyhow::Result<i32> {
    // Held until the process runs (a detached one) or until it is set up: a `delete`
    // waits for it rather than tearing the container down under the setup.
    let lock = super::lock::Lock::take(&ctx.root, &args.id)?;
    let record = Record::load(&ctx.root, &args.id)?;
    // Not into a created container: its init is still a clone of our binary (non-dumpable,
    // waiting to execve), which nothing in the container may see (CVE-2019-5736).
    match record.status(&ctx.root) {
        Status::Running => {}
        other => bail!(
            "cannot exec in container {}: it is {}",
            args.id,
            other.as_str()
        ),
    }
    let config = record.bundle.join("config.json");
    let mut spec = Spec::load(&config)
        .map_err(|e| anyhow::anyhow!("cannot load {}: {e}", config.display()))?;
    let mut linux = spec.linux().clone().unwrap_or_default();
    linux.set_cgroups_path(Some(PathBuf::from(&record.cgroup)));
    spec.set_linux(Some(linux));
    let process = process_of(args, &spec)?;
    let terminal = process.terminal().unwrap_or(false);
    if args.detach && terminal && args.console_socket.is_none() {
        bail!("a detached process with a terminal needs --console-socket to receive it");
    }
    if args.console_socket.is_some() && !(terminal && args.detach) {
        bail!("--console-socket needs --detach and a process with a terminal");
    }
    spec.set_process(Some(process));
    let cache = ctx.root.join("cache");
    let req = runtime::ExecRequest {
        spec: &spec,
        init_pid: record.pid,
        interactive: true,
        cache_dir: Some(&cache),
    };
    if !args.detach {
        // Waiting for the process must not hold `kill` or `delete` back.
        drop(lock);
        let outcome = runtime::exec(&req)?;
        if let Some(reason) = outcome.exec_error {
            ctx.logger.error(&reason);
        }
        return Ok(outcome.exit_code);
    }
    let detached = runtime::exec_detached(&req)?;
    let result = (|| {
        if let (Some(master), Some(socket)) = (detached.console, &args.console_socket) {
            send_console(socket, master)?;
        }
        if let Some(pid_file) = &args.pid_file {
            let pid_file = std::path::absolute(pid_file)
                .with_context(|| format!("cannot resolve {}", pid_file.display()))?;
            state::write_atomic(&pid_file, detached.pid.to_string().as_bytes())?;
        }
        Ok(0)
    })();
    if result.is_err() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(detached.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    result
}
