//! `exec`: a new process inside a running container. It joins the namespaces of the
//! container's init and its cgroup, then goes through the same child code as the init
//! (stdio or pty, capabilities, seccomp, user, execve), so the rules are the same.
//!
//! The pid namespace only applies to children: the CLI's child, in the host's pid
//! namespace where the container cannot see it, joins the other namespaces and enters
//! the working directory, then forks the process that is born inside the container's
//! pid namespace (see `process::enter_pid_namespace`).

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use nix::fcntl::{open, openat, AtFlags, OFlag};
use nix::sys::signalfd::SignalFd;
use nix::sys::stat::{fstat, fstatat, Mode};
use oci_spec::runtime::Spec;

use super::cgroups::Cgroup;
use super::launch::{launch, ChildSetup, Launched, Spawn, StdioMode};
use super::plan::Step;
use super::process::ExecTarget;
use super::relay::{supervise, Streams};
use super::{sealed_exe, security, Outcome};

/// The namespaces an exec joins, in order, before it enters the pid namespace.
/// The user namespace comes first: it owns the others, and joining it gives the
/// capabilities to join them (and makes the process's ids the container's).
const JOINED: &[(&str, libc::c_int)] = &[
    ("user", libc::CLONE_NEWUSER),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("net", libc::CLONE_NEWNET),
    ("mnt", libc::CLONE_NEWNS),
];

/// After SIGTERM/SIGINT to `exec`, how long the command gets before SIGKILL.
const EXEC_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// What one exec needs.
pub struct ExecRequest<'a> {
    /// The container's spec with the process replaced by the exec's.
    pub spec: &'a Spec,
    /// Host pid of the container's init (whose namespaces are joined).
    pub init_pid: i32,
    pub interactive: bool,
    pub cache_dir: Option<&'a Path>,
}

/// The namespace directories of the container's init and of ours, each opened once: a
/// kind is then one open and two stats of a name below them, not three walks of
/// /proc paths.
struct NamespaceDirs {
    init_pid: i32,
    theirs: OwnedFd,
    ours: OwnedFd,
}

impl NamespaceDirs {
    fn open(init_pid: i32) -> anyhow::Result<NamespaceDirs> {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let theirs = format!("/proc/{init_pid}/ns");
        let theirs = open(theirs.as_str(), flags, Mode::empty())
            .with_context(|| format!("cannot open {theirs}: has the container stopped?"))?;
        let ours = open("/proc/self/ns", flags, Mode::empty())
            .context("cannot open our own namespaces in /proc/self/ns")?;
        Ok(NamespaceDirs {
            init_pid,
            theirs,
            ours,
        })
    }

    /// The init's namespace `kind`, unless we are in it already (joining our own is
    /// pointless, and for some kinds an error).
    fn foreign(&self, kind: &str) -> anyhow::Result<Option<OwnedFd>> {
        let init_pid = self.init_pid;
        let fd = openat(
            &self.theirs,
            kind,
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| {
            format!("cannot open /proc/{init_pid}/ns/{kind}: has the container stopped?")
        })?;
        let theirs =
            fstat(&fd).with_context(|| format!("cannot read /proc/{init_pid}/ns/{kind}"))?;
        let ours = fstatat(&self.ours, kind, AtFlags::empty())
            .with_context(|| format!("cannot read our own {kind} namespace"))?;
        if (theirs.st_ino, theirs.st_dev) == (ours.st_ino, ours.st_dev) {
            return Ok(None);
        }
        Ok(Some(fd))
    }
}

/// Refuses an init that has not finished its setup: until its pivot_root its root is
/// ours, and a process joining its mount namespace then would see the host's files.
/// (A container's root is always an overlay, so it never is the host's root; a mount id
/// would not tell, as a new mount namespace copies the root mount.)
fn check_root_is_set_up(init_pid: i32) -> anyhow::Result<()> {
    let theirs = std::fs::metadata(format!("/proc/{init_pid}/root")).with_context(|| {
        format!("cannot read the root of process {init_pid}: has the container stopped?")
    })?;
    let ours = std::fs::metadata("/").context("cannot read our own root")?;
    if (theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino()) {
        bail!("the container is still starting (its root is not set up yet): try again");
    }
    Ok(())
}

/// A process started by `exec_detached`.
pub struct Detached {
    /// Its host pid; our child until we exit, then our caller's subreaper's.
    pub pid: i32,
    /// The pty master, when the process asked for a terminal.
    pub console: Option<OwnedFd>,
}

/// Runs the exec'd command to completion; returns how it ended.
pub fn exec(req: &ExecRequest) -> anyhow::Result<Outcome> {
    let stdio = StdioMode::Relayed {
        interactive: req.interactive,
    };
    let (launched, signal_fd, mut streams) = start(req, stdio, false)?;
    let (mut child, master) = match launched {
        Launched::Started { child, master } => (child, master),
        Launched::ExecFailed { code, reason } => {
            return Ok(Outcome {
                exit_code: code,
                exec_error: Some(reason),
                ..Default::default()
            })
        }
    };
    streams.master = master;
    Ok(supervise(
        &mut child,
        &signal_fd,
        streams,
        &mut None,
        EXEC_STOP_TIMEOUT,
    ))
}

/// The runtime CLI's `exec --detach`: the process gets our own stdio (or a pty whose
/// master is returned) and outlives us; nobody relays or waits for it here.
pub fn exec_detached(req: &ExecRequest) -> anyhow::Result<Detached> {
    let (launched, _signal_fd, _streams) = start(req, StdioMode::Inherited, true)?;
    match launched {
        Launched::Started { child, master } => Ok(Detached {
            pid: child.detach(),
            console: master,
        }),
        Launched::ExecFailed { reason, .. } => bail!("{reason}"),
    }
}

/// Starts the exec'd process up to its execve; `outlive`: it drops its parent-death
/// signal at the end (`exec_detached`).
fn start(
    req: &ExecRequest,
    stdio: StdioMode,
    outlive: bool,
) -> anyhow::Result<(Launched, SignalFd, Streams)> {
    sealed_exe::reexec_if_reachable(req.spec)?;
    check_root_is_set_up(req.init_pid)?;
    let spec = req.spec;
    let process_spec = spec.process().as_ref().context("the spec has no process")?;
    let exec = ExecTarget::new(
        &process_spec.args().clone().unwrap_or_default(),
        &process_spec.env().clone().unwrap_or_default(),
    )?;
    let terminal = process_spec.terminal().unwrap_or(false);
    let user = process_spec.user();
    let prepared_security = security::prepare_with_cache(spec, req.cache_dir)?;
    let cgroup_name = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().clone())
        .context("the spec has no linux.cgroupsPath")?;
    let cgroup_name = cgroup_name
        .to_string_lossy()
        .trim_start_matches('/')
        .to_string();
    let cgroup = Cgroup::open(&cgroup_name)
        .with_context(|| format!("cannot open cgroup {cgroup_name}: has the container stopped?"))?;

    // Held open until the child has joined them (they are close-on-exec).
    let mut namespace_fds = Vec::new();
    let mut steps = Vec::new();
    let namespaces = NamespaceDirs::open(req.init_pid)?;
    for (kind, nstype) in JOINED {
        if let Some(fd) = namespaces.foreign(kind)? {
            steps.push(Step::Setns {
                fd: fd.as_raw_fd(),
                nstype: *nstype,
                kind,
            });
            namespace_fds.push(fd);
        }
    }
    let cwd = std::ffi::CString::new(process_spec.cwd().as_os_str().as_encoded_bytes())
        .context("the working directory contains a NUL byte")?;
    steps.push(Step::Chdir { path: cwd });
    let pid_namespace = namespaces.foreign("pid")?;
    drop(namespaces);

    // Pipes (or a pty) that we copy, never our own descriptors: a process the command
    // leaves in the container must not keep the caller's terminal or files.
    let mut setup = ChildSetup::new(steps, terminal, stdio, user, exec, prepared_security)?;
    if let Some(fd) = &pid_namespace {
        setup.plan.join_pid_namespace(fd.as_raw_fd());
    }
    setup.plan.outlive_parent = outlive;
    setup.plan.set_process_limits(process_spec);
    // No namespace flags: the child joins the container's namespaces itself (plan steps).
    let spawn = Spawn {
        flags: 0,
        cgroup_ns: false,
        cgroup: &cgroup,
        what: "cannot fork the process to run in the container",
        pid_ns: None,
        on_hooks: None,
        id_maps: None,
    };
    let launched = launch(spawn, &mut setup.plan, setup.channel, setup.child_fds)?;
    drop(namespace_fds);
    drop(pid_namespace);
    Ok((launched, setup.signal_fd, setup.streams))
}
