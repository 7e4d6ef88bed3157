//! Launching a container process from a prepared plan: the setup channel, the clone
//! (born in its cgroup where the kernel allows), placing and releasing the child, and
//! the startup protocol that tells us whether its execve ran, and why not. `run` (the
//! container's init) and `exec` (a process joining it) both start their child through
//! `launch`.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use anyhow::{bail, Context};
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{self, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::cgroups::Cgroup;
use super::hooks::{self, ContainerHooks};
use super::namespaces::IdMaps;
use super::plan::Step;
use super::process::{self, ChildPlan, ExecTarget, Message, Stage};
use super::relay::{container_stdio, inherited_stdio, BlockedSignals, Streams};
use super::security;
use crate::exitcode;

pub(super) fn describe_errno(errno: i32) -> String {
    let text = Errno::from_raw(errno).desc();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => format!("errno {errno}"),
    }
}

/// The container's init until it is reaped: killed and reaped on drop otherwise.
pub(super) struct Child {
    pub(super) pid: libc::pid_t,
    pub(super) reaped: bool,
}

impl Child {
    pub(super) fn kill(&self, signal: Signal) {
        if !self.reaped {
            // ESRCH cannot happen (unreaped, the pid cannot be reused yet); a zombie
            // ignores the signal, which is what we want.
            let _ = kill(Pid::from_raw(self.pid), signal);
        }
    }

    /// Non-blocking wait; the exit code in Docker's convention once it exited.
    pub(super) fn try_wait(&mut self) -> Option<i32> {
        match waitpid(Pid::from_raw(self.pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => None,
            Ok(status) => {
                self.reaped = true;
                Some(exit_code(status))
            }
        }
    }

    /// Lets the child live on without us (`create`): no kill on drop; whoever it is
    /// reparented to reaps it. Returns its pid.
    pub(super) fn detach(mut self) -> libc::pid_t {
        self.reaped = true;
        self.pid
    }

    pub(super) fn wait(&mut self) -> i32 {
        loop {
            match waitpid(Pid::from_raw(self.pid), None) {
                Ok(status) => {
                    self.reaped = true;
                    return exit_code(status);
                }
                Err(Errno::EINTR) => {}
                Err(_) => {
                    self.reaped = true;
                    return 255;
                }
            }
        }
    }
}

/// The exit code for how a child ended (waitpid without WUNTRACED reports only these).
fn exit_code(status: WaitStatus) -> i32 {
    match status {
        WaitStatus::Exited(_, code) => code,
        WaitStatus::Signaled(_, signal, _) => exitcode::signaled(signal as i32),
        _ => 255,
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill(Signal::SIGKILL);
            self.wait();
        }
    }
}

fn errno_of(error: &anyhow::Error) -> Option<i32> {
    error
        .chain()
        .find_map(|e| e.downcast_ref::<std::io::Error>())
        .and_then(|e| e.raw_os_error())
}

/// The kernel's `struct clone_args` (clone3(2)), up to the `cgroup` field.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// A fork-like clone3 whose child starts in the cgroup `cgroup_fd` refers to.
pub(crate) fn clone3_into_cgroup(flags: libc::c_int, cgroup_fd: RawFd) -> libc::c_long {
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let args = CloneArgs {
        flags: flags as u32 as u64 | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup_fd as u64,
        ..Default::default()
    };
    // SAFETY: clone3 reads the argument struct we own; no stack is given, so the child
    // continues on a copy of ours, like fork.
    unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    }
}

/// What the child reported while setting up.
enum Startup {
    /// execve succeeded (the sync socket closed); carries the pty master with `-t`.
    Started(Option<OwnedFd>),
    /// Set up and waiting for `start` on its start fifo (`create`).
    Created(Option<OwnedFd>),
    Failed(String),
    ExecFailed {
        errno: i32,
    },
}

/// Starts the child with a fork-like clone (no new stack) with `flags`, born in the
/// cgroup `cgroup_fd` when given (clone3). The child runs only `child_main`, which makes
/// raw syscalls on the plan prepared before and never returns.
fn spawn_child(
    flags: libc::c_int,
    cgroup_fd: Option<RawFd>,
    plan: &ChildPlan,
) -> std::io::Result<libc::pid_t> {
    let pid = match cgroup_fd {
        Some(fd) => clone3_into_cgroup(flags, fd),
        // SAFETY: a fork-like clone: no stack is given, so the child continues on a
        // copy of ours and only calls child_main (async-signal-safe by construction).
        None => unsafe {
            libc::syscall(
                libc::SYS_clone,
                (flags | libc::SIGCHLD) as libc::c_ulong,
                0usize,
                0usize,
                0usize,
                0usize,
            )
        },
    };
    if pid == 0 {
        process::child_main(plan);
    }
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(pid as libc::pid_t)
}

/// The parent/child setup channel: a SOCK_SEQPACKET pair, so each typed message
/// (stage reached, setup failed, exec failed) arrives whole.
pub(super) fn setup_channel() -> anyhow::Result<(OwnedFd, OwnedFd)> {
    socket::socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .context("cannot create the setup channel")
}

/// Lets the child go on past its sync point (one byte on the socket).
fn release_child(parent_sock: &OwnedFd) -> anyhow::Result<()> {
    let sent = socket::send(parent_sock.as_raw_fd(), b"g", MsgFlags::MSG_NOSIGNAL);
    if sent != Ok(1) {
        bail!("it exited before it was released");
    }
    Ok(())
}

/// What a freshly spawned child still needs to be in all its cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Remaining {
    Nothing,
    /// The v1 hierarchies a clone into the cgroup2 directory cannot reach.
    V1,
    Everything,
}

/// Spawns the child (see `spawn_child`) in its cgroup without a migration where the
/// kernel allows (a migration's first use after a quiet spell waits an RCU grace period,
/// 10-15 ms here): clone3 with CLONE_INTO_CGROUP into the cgroup2 directory (v2 and
/// hybrid hosts, Linux 5.7+), and for the v1 hierarchies of hybrid and legacy hosts the
/// child writes "0" to their `tasks` files (opened here) as its first act, before it
/// creates anything. When no v1 hierarchy is left to join and `cgroup_ns` is asked, the
/// same clone creates the cgroup namespace; otherwise the plan's UnshareCgroup step
/// does, once the child is in all its cgroups. What could not be done that way (an
/// older kernel, a seccomp sandbox that hides clone3, a `tasks` file that cannot be
/// opened) is left to `place_and_release`, which moves the child while it sets up its
/// root.
fn spawn_in_cgroup(
    flags: libc::c_int,
    cgroup_ns: bool,
    cgroup: &Cgroup,
    plan: &mut ChildPlan,
) -> anyhow::Result<(libc::pid_t, Remaining)> {
    let into_fd = cgroup
        .clone_into_fd()
        .with_context(|| format!("cannot open cgroup {}", cgroup.name()))?;
    let into = into_fd.as_ref().map(|fd| fd.as_raw_fd());
    // Not opened, the child is moved afterwards, as before: nothing is lost. The child
    // writing "0" to each `tasks` file moves only itself and skips the kernel's global
    // threadgroup lock; writing its pid from here afterwards takes it, and the first such
    // write after a quiet spell waits for an RCU grace period (10-17 ms measured on this
    // VM, against 20-30 us per "0" write).
    let tasks = if cgroup.needs_add_after_clone() {
        cgroup.v1_tasks_files().ok()
    } else {
        Some(Vec::new())
    };
    let v1_placed = tasks.is_some();
    plan.join_v1 = tasks.iter().flatten().map(|fd| fd.as_raw_fd()).collect();
    // Open until the clone has copied them; the child closes its copies before any
    // path lookup (they are not in `keep`).
    let spawned = spawn_placed(flags, cgroup_ns, into, v1_placed, plan);
    drop(tasks);
    spawned
}

/// The clone of `spawn_in_cgroup`, into the cgroup2 directory `into` when there is one;
/// `v1_placed`: the child joins its v1 cgroups itself (`plan.join_v1`) or has none to
/// join.
fn spawn_placed(
    flags: libc::c_int,
    cgroup_ns: bool,
    into: Option<RawFd>,
    v1_placed: bool,
    plan: &mut ChildPlan,
) -> anyhow::Result<(libc::pid_t, Remaining)> {
    if let Some(fd) = into {
        // The clone's cgroup namespace would be rooted in our v1 cgroups, not in the
        // container's the child joins after it.
        let ns_in_clone = cgroup_ns && v1_placed && plan.join_v1.is_empty();
        plan.cgroup_ns_by_clone = ns_in_clone;
        let flags = if ns_in_clone {
            flags | libc::CLONE_NEWCGROUP
        } else {
            flags
        };
        match spawn_child(flags, Some(fd), plan) {
            Ok(pid) if v1_placed => return Ok((pid, Remaining::Nothing)),
            Ok(pid) => return Ok((pid, Remaining::V1)),
            // E2BIG: clone3 without the cgroup field (5.3-5.6); ENOSYS: before 5.3, or
            // filtered out by a seccomp profile (Docker's answers ENOSYS for clone3).
            Err(e) if matches!(e.raw_os_error(), Some(libc::E2BIG | libc::ENOSYS)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    plan.cgroup_ns_by_clone = false;
    let pid = spawn_child(flags, None, plan)?;
    // A legacy host has no cgroup2 directory: a carried thread placed the child fully.
    let remaining = if into.is_none() && v1_placed {
        Remaining::Nothing
    } else {
        Remaining::Everything
    };
    Ok((pid, remaining))
}

/// Finishes putting a freshly spawned child in `cgroup` (what `remaining` says; the
/// child meanwhile sets up its root and waits for us before anything runs), then
/// releases it. If either fails, the child is killed and its own report, when it sent
/// one (a setup step failed first), is the error.
fn place_and_release(
    child: &mut Child,
    cgroup: &Cgroup,
    remaining: Remaining,
    parent_sock: &OwnedFd,
    steps: &[Step],
) -> anyhow::Result<()> {
    let placed = match remaining {
        Remaining::Nothing => Ok(()),
        Remaining::V1 => cgroup.add_after_clone(child.pid),
        Remaining::Everything => cgroup.add_process(child.pid),
    };
    let placed =
        placed.with_context(|| format!("cannot move the container into cgroup {}", cgroup.name()));
    let result = placed.and_then(|()| {
        release_child(parent_sock).context("the container's process died before it could start")
    });
    if let Err(error) = result {
        child.kill(Signal::SIGKILL);
        child.wait();
        if let Ok(Startup::Failed(reason)) = receive_startup(parent_sock, steps, None, None, child)
        {
            return Err(anyhow::anyhow!("{reason}"));
        }
        return Err(error);
    }
    Ok(())
}

/// Docker's exit code and one-line reason for an execve that failed with `errno`:
/// 127 when the program is not found, 126 when it cannot be executed.
fn exec_failure(exec: &ExecTarget, errno: i32) -> (i32, String) {
    let program = exec.program();
    match errno {
        libc::ENOENT if exec.searched_path() => (
            exitcode::NOT_FOUND,
            format!("exec: {program:?}: executable file not found in $PATH"),
        ),
        libc::ENOENT => (
            exitcode::NOT_FOUND,
            format!("exec: {program:?}: no such file or directory"),
        ),
        other => (
            exitcode::CANNOT_EXECUTE,
            format!("exec: {program:?}: {}", describe_errno(other)),
        ),
    }
}

/// Reads the child's reports until its execve closes the channel. `child` follows the
/// process exec moves into the container's pid namespace (MSG_CHILD_PID).
fn receive_startup(
    sock: &OwnedFd,
    steps: &[Step],
    hooks: Option<&ContainerHooks>,
    mut on_hooks: Option<&mut dyn FnMut(libc::pid_t) -> anyhow::Result<()>>,
    child: &mut Child,
) -> anyhow::Result<Startup> {
    let mut master = None;
    loop {
        let mut message = Message::default();
        // SAFETY: the buffer views the plain-data Message we own.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(
                (&mut message as *mut Message).cast::<u8>(),
                std::mem::size_of::<Message>(),
            )
        };
        let mut iov = [IoSliceMut::new(bytes)];
        let mut cmsg = nix::cmsg_space!(RawFd);
        let received = match socket::recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(r) => r,
            // ECONNRESET: the child exited with our release byte unread; the error is
            // reported (and cleared) before its last message, which is still queued.
            Err(Errno::EINTR | Errno::ECONNRESET) => continue,
            Err(e) => return Err(e).context("cannot read from the container's setup channel"),
        };
        let mut passed = None;
        if let Ok(cmsgs) = received.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    for fd in fds {
                        // SAFETY: the kernel just installed this descriptor for us.
                        passed = Some(unsafe { OwnedFd::from_raw_fd(fd) });
                    }
                }
            }
        }
        let len = received.bytes;
        if len == 0 {
            return Ok(Startup::Started(master));
        }
        match message.kind {
            process::MSG_PTY_MASTER => master = passed,
            process::MSG_CREATED => return Ok(Startup::Created(master)),
            process::MSG_HOOKS => {
                let Some(on_hooks) = on_hooks.as_mut() else {
                    bail!("unexpected hooks message from the container's setup");
                };
                on_hooks(child.pid)?;
                release_child(sock).context("the container's process died before its hooks")?;
            }
            process::MSG_HOOK_FAILED => {
                let failure = hooks::Failure {
                    index: message.detail,
                    value: message.value,
                    errno: message.errno,
                };
                let reason = match hooks {
                    Some(hooks) => hooks.describe_create_failure(&failure),
                    None => format!("createContainer hook #{} failed", failure.index),
                };
                return Ok(Startup::Failed(reason));
            }
            process::MSG_CHILD_PID => {
                // The reporter exits right after the report: reap it, follow its child.
                child.wait();
                *child = Child {
                    pid: message.detail as libc::pid_t,
                    reaped: false,
                };
            }
            process::MSG_USERNS_MAPS => {
                let which = if message.detail == 0 { "uid" } else { "gid" };
                return Ok(Startup::Failed(format!(
                    "the user namespace linux.namespaces joins has another {which} map than \
                     linux.{which}Mappings: leave the mappings out (a joined namespace keeps \
                     its own) or give the ones in its {which}_map"
                )));
            }
            process::MSG_STEP_FAILED => {
                let what = steps
                    .get(message.detail as usize)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| format!("run setup step {}", message.detail));
                return Ok(Startup::Failed(format!(
                    "cannot {what}: {}",
                    describe_errno(message.errno)
                )));
            }
            process::MSG_CWD_OUTSIDE_ROOT => {
                let what = steps
                    .get(message.detail as usize)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "enter the working directory".into());
                return Ok(Startup::Failed(format!(
                    "cannot {what}: it resolves outside the container's root filesystem: \
                     use a directory inside the container"
                )));
            }
            process::MSG_STAGE_FAILED => {
                let what =
                    Stage::from_u32(message.detail).map_or("set up the container", Stage::describe);
                return Ok(Startup::Failed(format!(
                    "cannot {what}: {}",
                    describe_errno(message.errno)
                )));
            }
            process::MSG_EXEC_FAILED => {
                return Ok(Startup::ExecFailed {
                    errno: message.errno,
                })
            }
            other => bail!("unexpected message {other} from the container's setup"),
        }
    }
}

/// How `launch` clones the child.
pub(super) struct Spawn<'a> {
    /// CLONE_NEW* flags for the namespaces the clone creates (none for exec, whose
    /// child joins the container's namespaces in its plan).
    pub(super) flags: libc::c_int,
    /// Create a cgroup namespace (by the clone when it can, else by the plan).
    pub(super) cgroup_ns: bool,
    pub(super) cgroup: &'a Cgroup,
    /// What the clone was for, to say when it fails.
    pub(super) what: &'static str,
    /// A pid namespace to start the child in (joined by path): the pid namespace only
    /// applies to children, so the cloning thread enters it for the clone and goes back.
    pub(super) pid_ns: Option<RawFd>,
    /// The runtime CLI's hooks: called with the child's pid when it reaches its
    /// ContainerHooks step (runs prestart and createRuntime, writes the state of the
    /// in-container hooks); an error kills the child and is the launch's.
    pub(super) on_hooks: Option<&'a mut dyn FnMut(libc::pid_t) -> anyhow::Result<()>>,
    /// With a new user namespace: its maps, written before the child is released (it
    /// waits for that before its first step).
    pub(super) id_maps: Option<&'a IdMaps>,
}

/// The calling thread's pid namespace for its children set to `target` until drop,
/// which sets it back to the thread's own (a thread has its own; the other threads'
/// clones are unaffected).
struct PidNsForChildren {
    own: OwnedFd,
}

impl PidNsForChildren {
    fn enter(target: RawFd) -> anyhow::Result<PidNsForChildren> {
        let own: OwnedFd = std::fs::File::open("/proc/thread-self/ns/pid")
            .context("cannot open our own pid namespace")?
            .into();
        // SAFETY: setns of the calling thread to a namespace descriptor we hold.
        if unsafe { libc::setns(target, libc::CLONE_NEWPID) } < 0 {
            return Err(std::io::Error::last_os_error())
                .context("cannot join the container's pid namespace");
        }
        Ok(PidNsForChildren { own })
    }

    fn leave(self) -> anyhow::Result<()> {
        let own = self.own.as_raw_fd();
        std::mem::forget(self);
        // SAFETY: setns of the calling thread back to its own (active) pid namespace.
        if unsafe { libc::setns(own, libc::CLONE_NEWPID) } < 0 {
            return Err(std::io::Error::last_os_error())
                .context("cannot leave the container's pid namespace");
        }
        Ok(())
    }
}

impl Drop for PidNsForChildren {
    fn drop(&mut self) {
        // SAFETY: as in `leave`.
        unsafe { libc::setns(self.own.as_raw_fd(), libc::CLONE_NEWPID) };
    }
}

/// What run and exec prepare the same way before a launch: the forwarded signals blocked
/// (they arrive on `signal_fd`), the container's stdio (pipes or a pty, never our own
/// descriptors), the setup channel and the child's plan built on them.
pub(super) struct ChildSetup {
    /// Kept until the child is relayed to its end: dropping it unblocks the signals.
    pub(super) _blocked: BlockedSignals,
    pub(super) signal_fd: SignalFd,
    pub(super) plan: ChildPlan,
    pub(super) channel: (OwnedFd, OwnedFd),
    /// The child's ends of its stdio, closed in the parent by `launch`.
    pub(super) child_fds: Vec<OwnedFd>,
    pub(super) streams: Streams,
}

/// Where the container's standard streams come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StdioMode {
    /// Pipes or a pty we relay (`run`, `exec`); `interactive` keeps stdin.
    Relayed { interactive: bool },
    /// Our own 0, 1 and 2, or a pty whose master we hand on (the runtime CLI).
    Inherited,
}

impl ChildSetup {
    pub(super) fn new(
        steps: Vec<Step>,
        terminal: bool,
        stdio: StdioMode,
        user: &oci_spec::runtime::User,
        exec: ExecTarget,
        security: security::Prepared,
    ) -> anyhow::Result<ChildSetup> {
        let blocked = BlockedSignals::block()?;
        let signal_fd =
            SignalFd::with_flags(&blocked.set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
                .context("cannot create a signalfd")?;
        let (stdio, child_fds, streams) = match stdio {
            StdioMode::Relayed { interactive } => container_stdio(terminal, interactive)?,
            StdioMode::Inherited => inherited_stdio(terminal)?,
        };
        let channel = setup_channel()?;
        let plan = ChildPlan::new(
            steps,
            &channel,
            stdio,
            user,
            exec,
            *blocked.set.as_ref(),
            security,
        );
        Ok(ChildSetup {
            _blocked: blocked,
            signal_fd,
            plan,
            channel,
            child_fds,
            streams,
        })
    }
}

/// A launched child: running its command, or reaped after its execve failed.
pub(super) enum Launched {
    /// The command runs (with a start fifo: is set up and waits for `start`); with
    /// `-t` we hold the pty master.
    Started {
        child: Child,
        master: Option<OwnedFd>,
    },
    /// execve failed; the child is reaped. Docker's code (126/127) and why, one line.
    ExecFailed { code: i32, reason: String },
}

/// Starts the child `plan` describes: clones it into `spawn.cgroup`, closes in the
/// parent the child's ends (`child_fds`, the child side of `channel`, which `plan` was
/// built with), places and releases it, and reads its startup reports until its execve.
/// A setup that failed in the child is the error, with the child's own reason; the
/// child is then killed and reaped.
pub(super) fn launch(
    spawn: Spawn,
    plan: &mut ChildPlan,
    channel: (OwnedFd, OwnedFd),
    child_fds: Vec<OwnedFd>,
) -> anyhow::Result<Launched> {
    let (parent_sock, child_sock) = channel;
    let on_hooks = spawn.on_hooks;
    let entered = spawn.pid_ns.map(PidNsForChildren::enter).transpose()?;
    let spawned =
        spawn_in_cgroup(spawn.flags, spawn.cgroup_ns, spawn.cgroup, plan).context(spawn.what);
    let left = entered.map(PidNsForChildren::leave).transpose();
    let (pid, remaining) = match spawned {
        // ENOMEM: the namespace's init has exited; nothing can be born there any more.
        Err(e) if spawn.pid_ns.is_some() && errno_of(&e) == Some(libc::ENOMEM) => bail!(
            "cannot start the container in the pid namespace it joins: that namespace's \
             init has exited (start its container again)"
        ),
        other => other?,
    };
    let mut child = Child { pid, reaped: false };
    // A thread left in the container's pid namespace would put our next children there.
    left?;
    drop(child_fds);
    drop(child_sock);
    if let Some(maps) = spawn.id_maps {
        // On failure the child, still waiting, is killed and reaped by its drop.
        maps.write(child.pid)?;
    }
    place_and_release(
        &mut child,
        spawn.cgroup,
        remaining,
        &parent_sock,
        &plan.steps,
    )?;
    match receive_startup(
        &parent_sock,
        &plan.steps,
        plan.hooks.as_ref(),
        on_hooks,
        &mut child,
    )? {
        Startup::Started(master) | Startup::Created(master) => {
            Ok(Launched::Started { child, master })
        }
        Startup::Failed(reason) => bail!("{reason}"),
        Startup::ExecFailed { errno } => {
            child.wait();
            let (code, reason) = exec_failure(&plan.exec, errno);
            Ok(Launched::ExecFailed { code, reason })
        }
    }
}
