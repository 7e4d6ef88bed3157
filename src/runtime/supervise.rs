//! The CLI's side of a run: prepares everything, clones the container's init with its
//! namespaces, lets it go once it sits in its cgroup, then supervises it: forwards
//! signals, copies output to the terminal and the log, enforces the stop grace period,
//! and collects the exit status. Every resource is held by a guard, so each failure path
//! undoes what was done (the container killed and reaped, the cgroup removed).

use std::ffi::c_void;
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{self, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType};
use oci_spec::runtime::Spec;

use super::cgroups::Cgroup;
use super::logfile::{LogWriter, Stream};
use super::namespaces::Namespaces;
use super::plan::Step;
use super::process::{self, ChildPlan, ChildStdio, ExecTarget, Message, Stage};
use super::{pty, rootfs, security, ANNOTATION_INIT};

/// Signals the CLI passes on to the container.
const FORWARDED: &[Signal] = &[
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// How long output may keep flowing after the container's init exited.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// What the caller asks of one run.
pub struct RunRequest<'a> {
    /// Directory holding config.json; `root.path` is relative to it.
    pub bundle: &'a Path,
    pub spec: &'a Spec,
    /// Keep stdin attached (`-i`).
    pub interactive: bool,
    pub log_path: Option<&'a Path>,
    /// After SIGTERM or SIGINT, how long to wait before SIGKILL.
    pub stop_timeout: Duration,
    /// Where compiled seccomp filters are cached (`<root>/cache`), if anywhere.
    pub cache_dir: Option<&'a Path>,
}

/// How a run ended.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Docker's convention: the command's code, 128+N for signal N, 126/127 when the
    /// command could not be executed / was not found.
    pub exit_code: i32,
    pub oom_killed: bool,
    pub memory_limit: Option<u64>,
    /// Why the command did not start (126/127), one line.
    pub exec_error: Option<String>,
    /// The grace period after SIGTERM/SIGINT ran out and the container was killed.
    pub killed_after_timeout: bool,
}

pub(super) fn describe_errno(errno: i32) -> String {
    let text = nix::errno::Errno::from_raw(errno).desc();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => format!("errno {errno}"),
    }
}

/// Blocks the forwarded signals (and SIGCHLD) so they queue on a signalfd instead of
/// killing the CLI. They stay blocked after the run: a SIGINT arriving while we clean up
/// must not kill us halfway through removing the cgroup or the container directory (the
/// CLI exits right after the run anyway).
pub(super) struct BlockedSignals {
    pub(super) set: SigSet,
}

impl BlockedSignals {
    pub(super) fn block() -> anyhow::Result<BlockedSignals> {
        let mut set = SigSet::empty();
        for signal in FORWARDED {
            set.add(*signal);
        }
        set.add(Signal::SIGCHLD);
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
            .context("cannot block signals for the run")?;
        Ok(BlockedSignals { set })
    }
}

/// The container's init until it is reaped: killed and reaped on drop otherwise.
pub(super) struct Child {
    pub(super) pid: libc::pid_t,
    pub(super) reaped: bool,
}

impl Child {
    fn kill(&self, signal: i32) {
        if !self.reaped {
            // SAFETY: signals our own unreaped child, whose pid cannot be reused yet.
            unsafe { libc::kill(self.pid, signal) };
        }
    }

    /// Non-blocking wait; the exit code in Docker's convention once it exited.
    fn try_wait(&mut self) -> Option<i32> {
        let mut status = 0;
        // SAFETY: waitpid on our own child with a status int we own.
        let rc = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
        if rc != self.pid {
            return None;
        }
        self.reaped = true;
        Some(exit_code(status))
    }

    pub(super) fn wait(&mut self) -> i32 {
        let mut status = 0;
        loop {
            // SAFETY: as in try_wait, blocking.
            let rc = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if rc == self.pid {
                self.reaped = true;
                return exit_code(status);
            }
            if rc < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                self.reaped = true;
                return 255;
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill(libc::SIGKILL);
            self.wait();
        }
    }
}

fn exit_code(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    }
}

/// The cgroup, destroyed on drop unless destroyed explicitly (to see the error).
struct CgroupGuard(Option<Cgroup>);

impl CgroupGuard {
    fn get(&self) -> &Cgroup {
        self.0.as_ref().expect("cgroup guard used after destroy")
    }
    fn destroy(mut self) -> anyhow::Result<()> {
        match self.0.take() {
            Some(cgroup) => cgroup.destroy(),
            None => Ok(()),
        }
    }
}

impl CgroupGuard {
    /// After the command ran, its exit code stays the result: a cgroup that cannot be
    /// removed now is said, and removing the record (rm, --rm, gc) tries again.
    fn destroy_or_warn(self) {
        let name = self.get().name().to_string();
        if let Err(e) = self.destroy() {
            eprintln!("mycontainer: warning: cannot remove cgroup {name}: {e:#}");
        }
    }
}

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        if let Some(cgroup) = self.0.take() {
            let _ = cgroup.destroy();
        }
    }
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

fn pipe() -> anyhow::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-int array we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error())
            .context("cannot create a pipe for the container's standard streams");
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn open_null() -> anyhow::Result<OwnedFd> {
    let null = std::fs::File::open("/dev/null")
        .context("cannot open /dev/null for the container's stdin")?;
    Ok(null.into())
}

/// The container's standard streams: what the child puts on 0, 1 and 2 (and the ends it
/// holds, to close in the parent after the clone), and our side of them. Never one of
/// our own descriptors: a process left in the container (exec's, say) could otherwise
/// read the caller's terminal or write to its files after we are gone. With a pty
/// (`terminal`) the child opens it, holding /dev/null until then, and sends us the
/// master; else pipes: stdin from /dev/null, or with `interactive` a pipe we copy our
/// stdin into; output and errors into pipes we copy out.
pub(super) fn container_stdio(
    terminal: bool,
    interactive: bool,
) -> anyhow::Result<(ChildStdio, Vec<OwnedFd>, Streams)> {
    let mut streams = Streams {
        out: None,
        err: None,
        master: None,
        stdin: None,
        stdin_open: interactive,
    };
    if terminal {
        let null = open_null()?;
        let stdio = ChildStdio::Terminal {
            size: pty::window_size(),
            null: null.as_raw_fd(),
        };
        return Ok((stdio, vec![null], streams));
    }
    let stdin = if interactive {
        let (read, write) = pipe()?;
        // Ours only (the child's end is another open file): a command that does not
        // read must not stall the copying of its output.
        // SAFETY: fcntl on a descriptor we own.
        if unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) } < 0 {
            return Err(std::io::Error::last_os_error())
                .context("cannot make the container's stdin pipe non-blocking");
        }
        streams.stdin = Some(write);
        read
    } else {
        open_null()?
    };
    let (out_read, out_write) = pipe()?;
    let (err_read, err_write) = pipe()?;
    let stdio = ChildStdio::Fds([
        stdin.as_raw_fd(),
        out_write.as_raw_fd(),
        err_write.as_raw_fd(),
    ]);
    streams.out = Some(out_read);
    streams.err = Some(err_read);
    Ok((stdio, vec![stdin, out_write, err_write], streams))
}

/// Writes everything to one of our descriptors, ignoring a closed terminal.
fn write_all_fd(fd: RawFd, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: writes from a slice we own.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return;
        }
        data = &data[n as usize..];
    }
}

/// Reads once; `None` at end of stream (EOF, or EIO from a pty whose slave is gone).
fn read_fd(fd: RawFd, buf: &mut [u8]) -> Option<usize> {
    loop {
        // SAFETY: reads into a buffer we own.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast::<c_void>(), buf.len()) };
        if n > 0 {
            return Some(n as usize);
        }
        if n == 0 {
            return None;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => return Some(0),
            _ => return None,
        }
    }
}

/// What the child reported while setting up.
pub(super) enum Startup {
    /// execve succeeded (the sync socket closed); carries the pty master with `-t`.
    Started(Option<OwnedFd>),
    Failed(String),
    ExecFailed {
        errno: i32,
    },
}

/// Starts the child with a fork-like clone (no new stack) with `flags`, born in the
/// cgroup `cgroup_fd` when given (clone3). The child runs only `child_main`, which makes
/// raw syscalls on the plan prepared before and never returns.
pub(super) fn spawn_child(
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
pub(super) fn release_child(parent_sock: &OwnedFd) -> anyhow::Result<()> {
    // SAFETY: sends one byte from a literal on a socket we own.
    let sent = unsafe {
        libc::send(
            parent_sock.as_raw_fd(),
            c"g".as_ptr().cast(),
            1,
            libc::MSG_NOSIGNAL,
        )
    };
    if sent != 1 {
        bail!("it exited before it was released");
    }
    Ok(())
}

/// What a freshly spawned child still needs to be in all its cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Remaining {
    Nothing,
    /// The v1 hierarchies a clone into the cgroup2 directory cannot reach.
    V1,
    Everything,
}

/// Spawns the child (see `spawn_child`) born in its cgroup where the kernel can do that,
/// with no migration (a migration's first use after a quiet spell waits an RCU grace
/// period, 10-15 ms here): clone3 with CLONE_INTO_CGROUP into the cgroup2 directory (v2
/// and hybrid hosts, Linux 5.7+), and for the v1 hierarchies of hybrid and legacy hosts
/// a clone from a thread that has stepped into them (`Cgroup::carry_current_thread`).
/// When the child is complete at birth and `cgroup_ns` is asked, the same clone creates
/// the cgroup namespace. What could not be done that way (an older kernel, a seccomp
/// sandbox that hides clone3, a thread that cannot be carried) is left to
/// `place_and_release`, which moves the child while it sets up its root, and the plan's
/// UnshareCgroup step then creates the namespace.
pub(super) fn spawn_in_cgroup(
    flags: libc::c_int,
    cgroup_ns: bool,
    cgroup: &Cgroup,
    plan: &mut ChildPlan,
) -> anyhow::Result<(libc::pid_t, Remaining)> {
    let into_fd = cgroup
        .clone_into_fd()
        .with_context(|| format!("cannot open cgroup {}", cgroup.name()))?;
    let into = into_fd.as_ref().map(|fd| fd.as_raw_fd());
    // Not carried, the child is still moved afterwards, as before: nothing is lost.
    let carried = cgroup.carry_current_thread().ok().flatten();
    let v1_placed = carried.is_some() || !cgroup.needs_add_after_clone();
    let spawned = spawn_placed(flags, cgroup_ns, into, v1_placed, plan);
    match carried {
        None => spawned,
        Some(carried) => {
            let home = carried
                .go_home()
                .context("cannot move the runtime's thread back out of the container's cgroup");
            match (spawned, home) {
                // The thread took a slot of the pids limit: with --pids-limit 1 the
                // child has none left. Move it afterwards instead.
                (Err(e), Ok(()))
                    if e.downcast_ref::<std::io::Error>()
                        .and_then(|e| e.raw_os_error())
                        == Some(libc::EAGAIN) =>
                {
                    let v1_placed = !cgroup.needs_add_after_clone();
                    spawn_placed(flags, cgroup_ns, into, v1_placed, plan)
                }
                (spawned, Ok(())) => spawned,
                (Ok((pid, _)), Err(e)) => {
                    let mut child = Child { pid, reaped: false };
                    child.kill(libc::SIGKILL);
                    child.wait();
                    Err(e)
                }
                (Err(_), Err(e)) => Err(e),
            }
        }
    }
}

/// The clone of `spawn_in_cgroup`, into the cgroup2 directory `into` when there is one;
/// `v1_placed`: the child is born in its v1 cgroups (or has none to join).
fn spawn_placed(
    flags: libc::c_int,
    cgroup_ns: bool,
    into: Option<RawFd>,
    v1_placed: bool,
    plan: &mut ChildPlan,
) -> anyhow::Result<(libc::pid_t, Remaining)> {
    if let Some(fd) = into {
        let ns_in_clone = cgroup_ns && v1_placed;
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
pub(super) fn place_and_release(
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
        child.kill(libc::SIGKILL);
        child.wait();
        if let Ok(Startup::Failed(reason)) = receive_startup(parent_sock, steps, child) {
            return Err(anyhow::anyhow!("{reason}"));
        }
        return Err(error);
    }
    Ok(())
}

/// Docker's exit code and one-line reason for an execve that failed with `errno`:
/// 127 when the program is not found, 126 when it cannot be executed.
pub(super) fn exec_failure(exec: &ExecTarget, errno: i32) -> (i32, String) {
    let program = exec.program();
    match errno {
        libc::ENOENT if exec.searched_path() => (
            127,
            format!("exec: {program:?}: executable file not found in $PATH"),
        ),
        libc::ENOENT => (127, format!("exec: {program:?}: no such file or directory")),
        other => (126, format!("exec: {program:?}: {}", describe_errno(other))),
    }
}

/// Reads the child's reports until its execve closes the channel. `child` follows the
/// process exec moves into the container's pid namespace (MSG_CHILD_PID).
pub(super) fn receive_startup(
    sock: &OwnedFd,
    steps: &[Step],
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
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::ECONNRESET) => continue,
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
            process::MSG_CHILD_PID => {
                // The reporter exits right after the report: reap it, follow its child.
                child.wait();
                *child = Child {
                    pid: message.detail as libc::pid_t,
                    reaped: false,
                };
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

/// Runs the container described by `req` to completion. `on_started` gets the host pid
/// of the container's init once its command runs (the caller's state write then overlaps
/// with the command).
pub fn run(req: &RunRequest, on_started: &mut dyn FnMut(i32)) -> anyhow::Result<Outcome> {
    let spec = req.spec;
    let ns = Namespaces::from_spec(spec)?;
    let process_spec = spec.process().as_ref().context("the spec has no process")?;
    let exec = ExecTarget::new(
        &process_spec.args().clone().unwrap_or_default(),
        &process_spec.env().clone().unwrap_or_default(),
    )?;
    let terminal = process_spec.terminal().unwrap_or(false);
    let user = process_spec.user();
    let init = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_INIT))
        .is_some_and(|v| v == "true");
    let prepared_security = security::prepare_with_cache(spec, req.cache_dir)?;
    let linux = spec.linux().as_ref();
    let cgroup_name = linux
        .and_then(|l| l.cgroups_path().clone())
        .context("the spec has no linux.cgroupsPath")?;
    let cgroup_name = cgroup_name
        .to_string_lossy()
        .trim_start_matches('/')
        .to_string();

    let mut log = req.log_path.map(LogWriter::new);
    let cgroup = CgroupGuard(Some(
        Cgroup::create(&cgroup_name, linux.and_then(|l| l.resources().as_ref()))
            .with_context(|| format!("cannot create cgroup {cgroup_name}"))?,
    ));
    let steps = rootfs::plan(spec, req.bundle, &ns, &cgroup.get().view())?;
    let blocked = BlockedSignals::block()?;
    let signal_fd =
        SignalFd::with_flags(&blocked.set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .context("cannot create a signalfd")?;

    // Child ends live in `child_fds` until the clone, then are closed in the parent.
    let (stdio, child_fds, mut streams) = container_stdio(terminal, req.interactive)?;
    let channel = setup_channel()?;
    let mut plan = ChildPlan::new(
        steps,
        &channel,
        stdio,
        user,
        exec,
        *blocked.set.as_ref(),
        prepared_security,
    );
    plan.init = init;
    let (parent_sock, child_sock) = channel;

    let (pid, remaining) = spawn_in_cgroup(ns.clone_flags(), ns.cgroup, cgroup.get(), &mut plan)
        .context("cannot clone the container's init with new namespaces")?;
    let mut child = Child { pid, reaped: false };
    drop(child_fds);
    drop(child_sock);
    place_and_release(
        &mut child,
        cgroup.get(),
        remaining,
        &parent_sock,
        &plan.steps,
    )?;
    let master = match receive_startup(&parent_sock, &plan.steps, &mut child)? {
        Startup::Started(master) => master,
        Startup::Failed(reason) => bail!("{reason}"),
        Startup::ExecFailed { errno } => {
            child.wait();
            let (code, reason) = exec_failure(&plan.exec, errno);
            cgroup.destroy_or_warn();
            return Ok(Outcome {
                exit_code: code,
                exec_error: Some(reason),
                ..Default::default()
            });
        }
    };
    drop(parent_sock);
    on_started(child.pid);

    let raw_mode = if master.is_some() && req.interactive {
        pty::RawMode::enable(0)
    } else {
        None
    };
    streams.master = master;
    let mut outcome = supervise(&mut child, &signal_fd, streams, &mut log, req.stop_timeout);
    drop(raw_mode);
    outcome.oom_killed = cgroup.get().oom_killed();
    outcome.memory_limit = cgroup.get().memory_limit();
    cgroup.destroy_or_warn();
    Ok(outcome)
}

/// Our side of the container's standard streams (see `container_stdio`).
pub(super) struct Streams {
    pub(super) out: Option<OwnedFd>,
    pub(super) err: Option<OwnedFd>,
    pub(super) master: Option<OwnedFd>,
    /// The container's stdin pipe (`-i` without `-t`), non-blocking.
    pub(super) stdin: Option<OwnedFd>,
    /// Copy our stdin into the pty master or the stdin pipe (`-i`), until its end.
    pub(super) stdin_open: bool,
}

/// Writes what it can of `pending` into the container's stdin pipe without blocking;
/// false once the pipe is unusable (the container closed its end).
fn feed_stdin(pipe: RawFd, pending: &mut Vec<u8>) -> bool {
    while !pending.is_empty() {
        // SAFETY: writes from a buffer we own.
        let n = unsafe { libc::write(pipe, pending.as_ptr().cast(), pending.len()) };
        if n < 0 {
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => return true,
                _ => return false,
            }
        }
        pending.drain(..n as usize);
    }
    true
}

pub(super) fn supervise(
    child: &mut Child,
    signal_fd: &SignalFd,
    mut streams: Streams,
    log: &mut Option<LogWriter>,
    stop_timeout: Duration,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut status: Option<i32> = None;
    let mut deadline: Option<Instant> = None;
    let mut drain_until: Option<Instant> = None;
    let mut buf = vec![0u8; 64 * 1024];
    // Stream slots, in poll order after the signalfd.
    const OUT: usize = 0;
    const ERR: usize = 1;
    const MASTER: usize = 2;
    const STDIN: usize = 3;
    // The container's stdin pipe, polled for room while `pending` holds what it did not
    // take yet (our stdin is not read meanwhile).
    const STDIN_PIPE: usize = 4;
    let mut pending: Vec<u8> = Vec::new();
    loop {
        if status.is_some() || (!streams.stdin_open && pending.is_empty()) {
            // Nobody left to read it, or nothing more to give: the command sees its end.
            streams.stdin = None;
        }
        let relay_to = streams
            .master
            .as_ref()
            .or(streams.stdin.as_ref().filter(|_| pending.is_empty()));
        let open = [
            streams.out.as_ref().map(|f| f.as_raw_fd()),
            streams.err.as_ref().map(|f| f.as_raw_fd()),
            streams.master.as_ref().map(|f| f.as_raw_fd()),
            if streams.stdin_open && relay_to.is_some() && status.is_none() {
                Some(0)
            } else {
                None
            },
            streams
                .stdin
                .as_ref()
                .filter(|_| !pending.is_empty())
                .map(|f| f.as_raw_fd()),
        ];
        if status.is_some() && open[..3].iter().all(Option::is_none) {
            break;
        }
        let mut pollfds = vec![libc::pollfd {
            fd: signal_fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let mut slots = Vec::new();
        for (slot, fd) in open.iter().enumerate() {
            if let Some(fd) = fd {
                pollfds.push(libc::pollfd {
                    fd: *fd,
                    events: if slot == STDIN_PIPE {
                        libc::POLLOUT
                    } else {
                        libc::POLLIN
                    },
                    revents: 0,
                });
                slots.push(slot);
            }
        }
        let now = Instant::now();
        let wake = match (status, drain_until, deadline) {
            (Some(_), Some(until), _) => Some(until),
            (None, _, Some(deadline)) => Some(deadline),
            _ => None,
        };
        let timeout = wake.map_or(-1, |t| {
            t.saturating_duration_since(now)
                .as_millis()
                .min(i32::MAX as u128) as i32
        });
        // SAFETY: polls an array of pollfd we own.
        let ready =
            unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, timeout) };
        if ready < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            break;
        }
        let now = Instant::now();
        if status.is_some() && drain_until.is_some_and(|t| now >= t) {
            // Something outside the container's pid namespace holds the output open.
            break;
        }
        if status.is_none() && deadline.is_some_and(|t| now >= t) {
            child.kill(libc::SIGKILL);
            outcome.killed_after_timeout = true;
            deadline = None;
        }
        if pollfds[0].revents != 0 {
            while let Ok(Some(info)) = signal_fd.read_signal() {
                let signal = info.ssi_signo as i32;
                if signal == libc::SIGCHLD {
                    continue;
                }
                if status.is_some() {
                    continue;
                }
                if signal == libc::SIGWINCH {
                    if let Some(master) = &streams.master {
                        pty::copy_window_size(
                            if pty::is_terminal(0) { 0 } else { 1 },
                            master.as_raw_fd(),
                        );
                        continue;
                    }
                }
                child.kill(signal);
                if (signal == libc::SIGTERM || signal == libc::SIGINT)
                    && deadline.is_none()
                    && !outcome.killed_after_timeout
                {
                    deadline = Some(Instant::now() + stop_timeout);
                }
            }
            if status.is_none() {
                if let Some(code) = child.try_wait() {
                    status = Some(code);
                    drain_until = Some(Instant::now() + DRAIN_TIMEOUT);
                }
            }
        }
        for (pollfd, slot) in pollfds[1..].iter().zip(slots) {
            if pollfd.revents == 0 {
                continue;
            }
            let fd = open[slot].unwrap_or(-1);
            if slot == STDIN_PIPE {
                if !feed_stdin(fd, &mut pending) {
                    pending.clear();
                    streams.stdin = None;
                    streams.stdin_open = false;
                }
                continue;
            }
            let data = read_fd(fd, &mut buf);
            match (slot, data) {
                (STDIN, Some(n)) => {
                    if let Some(master) = &streams.master {
                        write_all_fd(master.as_raw_fd(), &buf[..n]);
                    } else if let Some(pipe) = &streams.stdin {
                        pending.extend_from_slice(&buf[..n]);
                        if !feed_stdin(pipe.as_raw_fd(), &mut pending) {
                            pending.clear();
                            streams.stdin = None;
                            streams.stdin_open = false;
                        }
                    }
                }
                (STDIN, None) => streams.stdin_open = false,
                (_, Some(n)) => {
                    let (target, stream) = if slot == ERR {
                        (2, Stream::Stderr)
                    } else {
                        (1, Stream::Stdout)
                    };
                    write_all_fd(target, &buf[..n]);
                    if let Some(log) = log {
                        let _ = log.write(stream, &buf[..n]);
                    }
                }
                (OUT, None) => streams.out = None,
                (ERR, None) => streams.err = None,
                (MASTER, None) => streams.master = None,
                _ => {}
            }
        }
    }
    outcome.exit_code = match status {
        Some(code) => code,
        None => child.wait(),
    };
    if !child.reaped {
        outcome.exit_code = child.wait();
    }
    outcome
}
