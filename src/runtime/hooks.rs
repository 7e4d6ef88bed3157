//! The hooks that run inside the container (config.json's `createContainer` and
//! `startContainer`), for the runtime CLI's `create`. They are run by the container's
//! own process, so they are in its namespaces:
//! - `createContainer` at the plan's [`Step::ContainerHooks`](super::plan::Step), after
//!   the root filesystem is mounted and before pivot_root (the hook's path is the
//!   host's), once the parent has run `prestart` and `createRuntime` (it learns the
//!   container's pid there and writes the state the hooks read);
//! - `startContainer` once `start` released the container, as its user with its bounding
//!   set, before the rest of its confinement and its execve (the path is the
//!   container's); the outcome goes to `start` over a second fifo (`reply_fifo`).
//!
//! Everything is prepared before the clone (argv, envp, descriptors); the child forks
//! and waits for each hook with raw syscalls only (a pidfd and poll for the timeout).
//! A hook gets the state JSON on its stdin (a memfd) and writes to a memfd whose start
//! is quoted when it fails.

use std::ffi::{c_char, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use oci_spec::runtime::{Hook, Spec};

/// A hook that timed out (the `value` of a failure).
pub const TIMED_OUT: i32 = -1;
/// A hook that could not be started or waited for (`errno` says why).
pub const NOT_STARTED: i32 = -2;
/// `value` above this: killed by signal `value - SIGNALED`.
pub const SIGNALED: i32 = 256;
/// What a hook's exec failure exits with (as a shell's "not found").
const EXEC_FAILED: i32 = 127;

/// How much of a failing hook's output is quoted.
const QUOTED: usize = 512;

/// The state JSON the in-container hooks are given, made by the caller once the
/// container's pid is known.
pub struct HookStates {
    pub create_container: Vec<u8>,
    pub start_container: Vec<u8>,
}

/// One hook, ready to be executed without allocating.
pub struct PreparedHook {
    path: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const c_char>,
    /// Seconds; none or 0: no limit.
    timeout: Option<i64>,
}

impl PreparedHook {
    fn new(hook: &Hook) -> anyhow::Result<PreparedHook> {
        let path = CString::new(hook.path().as_os_str().as_bytes())?;
        let args = match hook.args().as_ref().filter(|a| !a.is_empty()) {
            Some(args) => args.clone(),
            None => vec![hook.path().to_string_lossy().into_owned()],
        };
        let argv = args
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        let envp = hook
            .env()
            .iter()
            .flatten()
            .map(|e| CString::new(e.as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut argv_ptrs: Vec<*const c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut envp_ptrs: Vec<*const c_char> = envp.iter().map(|e| e.as_ptr()).collect();
        envp_ptrs.push(std::ptr::null());
        Ok(PreparedHook {
            path,
            _argv: argv,
            argv_ptrs,
            _envp: envp,
            envp_ptrs,
            timeout: hook.timeout().filter(|t| *t > 0),
        })
    }
}

/// Why a hook failed: which one (`index`), how (`value`: an exit code, `SIGNALED` plus
/// a signal, `TIMED_OUT` or `NOT_STARTED`) and the errno of `NOT_STARTED`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Failure {
    pub index: u32,
    pub value: i32,
    pub errno: i32,
}

/// The in-container hooks of one `create` and the descriptors they use (all CLOEXEC;
/// the container's command never has them).
pub struct ContainerHooks {
    pub create: Vec<PreparedHook>,
    pub start: Vec<PreparedHook>,
    create_paths: Vec<PathBuf>,
    create_state: OwnedFd,
    start_state: OwnedFd,
    /// The hooks' stdout and stderr.
    output: OwnedFd,
    /// `start`'s end of the outcome of the startContainer hooks (opened read-write, so
    /// it never blocks), when there are any.
    reply: Option<OwnedFd>,
}

/// The fifo on which a created container with startContainer hooks tells `start` how
/// they went: next to its start fifo.
pub fn reply_fifo(start_fifo: &Path) -> PathBuf {
    let mut name = start_fifo.as_os_str().to_owned();
    name.push(".hooks");
    PathBuf::from(name)
}

fn memfd(name: &std::ffi::CStr) -> anyhow::Result<OwnedFd> {
    // SAFETY: memfd_create with a literal name; returns a new descriptor or -1.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("cannot create a memfd for hooks");
    }
    // SAFETY: a new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl ContainerHooks {
    /// The spec's createContainer and startContainer hooks, prepared; the reply fifo is
    /// made next to `start_fifo` when there are startContainer hooks.
    pub fn prepare(spec: &Spec, start_fifo: &Path) -> anyhow::Result<ContainerHooks> {
        let hooks = spec.hooks().clone().unwrap_or_default();
        let create_list = hooks.create_container().clone().unwrap_or_default();
        let start_list = hooks.start_container().clone().unwrap_or_default();
        let prepare = |list: &[Hook], point: &str| {
            list.iter()
                .enumerate()
                .map(|(i, h)| {
                    PreparedHook::new(h).with_context(|| {
                        format!("invalid {point} hook #{i}: a string holds a NUL byte")
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()
        };
        let reply = if start_list.is_empty() {
            None
        } else {
            let path = reply_fifo(start_fifo);
            nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
                .with_context(|| format!("cannot create the hooks fifo {}", path.display()))?;
            let fd = nix::fcntl::open(
                &path,
                nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .with_context(|| format!("cannot open the hooks fifo {}", path.display()))?;
            Some(fd)
        };
        Ok(ContainerHooks {
            create: prepare(&create_list, "createContainer")?,
            start: prepare(&start_list, "startContainer")?,
            create_paths: create_list.iter().map(|h| h.path().clone()).collect(),
            create_state: memfd(c"hook-state")?,
            start_state: memfd(c"hook-state")?,
            output: memfd(c"hook-output")?,
            reply,
        })
    }

    /// The descriptors the child keeps until its execve.
    pub fn fds(&self) -> Vec<RawFd> {
        let mut fds = vec![
            self.create_state.as_raw_fd(),
            self.start_state.as_raw_fd(),
            self.output.as_raw_fd(),
        ];
        fds.extend(self.reply.as_ref().map(|r| r.as_raw_fd()));
        fds
    }

    /// Copies of the state descriptors, for the parent to fill while the child holds
    /// the plan.
    pub fn state_writer(&self) -> anyhow::Result<StateWriter> {
        Ok(StateWriter {
            create: self.create_state.try_clone()?,
            start: self.start_state.try_clone()?,
        })
    }

    /// The error for the createContainer hook failure the child reported.
    pub fn describe_create_failure(&self, failure: &Failure) -> String {
        let path = self
            .create_paths
            .get(failure.index as usize)
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let mut said = vec![0u8; QUOTED];
        // SAFETY: pread into a buffer we own, of its length.
        let n = unsafe {
            libc::pread(
                self.output.as_raw_fd(),
                said.as_mut_ptr().cast(),
                said.len(),
                0,
            )
        };
        said.truncate(n.max(0) as usize);
        describe("createContainer", failure, &path, &said)
    }

    /// Child: runs the createContainer hooks. Async-signal-safe.
    pub(super) fn run_create(&self) -> Result<(), Failure> {
        run_all(
            &self.create,
            self.create_state.as_raw_fd(),
            self.output.as_raw_fd(),
        )
    }

    /// Child, after `start`'s byte: runs the startContainer hooks and tells `start`
    /// how they went (a failure with the start of what the hook said). Returns whether
    /// they all succeeded. Async-signal-safe.
    pub(super) fn run_start(&self) -> bool {
        let Some(reply) = &self.reply else {
            return true;
        };
        let result = run_all(
            &self.start,
            self.start_state.as_raw_fd(),
            self.output.as_raw_fd(),
        );
        let mut header = [0u8; 16];
        let (ok, failure) = match result {
            Ok(()) => (1u32, Failure::default()),
            Err(f) => (0u32, f),
        };
        header[0..4].copy_from_slice(&ok.to_ne_bytes());
        header[4..8].copy_from_slice(&failure.index.to_ne_bytes());
        header[8..12].copy_from_slice(&failure.value.to_ne_bytes());
        header[12..16].copy_from_slice(&failure.errno.to_ne_bytes());
        let mut said = [0u8; QUOTED];
        let mut said_len = 0;
        if ok == 0 {
            // SAFETY: pread into a stack buffer we own, of its length.
            let n = unsafe {
                libc::pread(
                    self.output.as_raw_fd(),
                    said.as_mut_ptr().cast(),
                    said.len(),
                    0,
                )
            };
            said_len = n.max(0) as usize;
        }
        let iov = [
            libc::iovec {
                iov_base: header.as_mut_ptr().cast(),
                iov_len: header.len(),
            },
            libc::iovec {
                iov_base: said.as_mut_ptr().cast(),
                iov_len: said_len,
            },
        ];
        // SAFETY: one writev (under PIPE_BUF: atomic) from stack buffers we own.
        unsafe { libc::writev(reply.as_raw_fd(), iov.as_ptr(), 2) };
        ok == 1
    }
}

/// The parent's copies of the state memfds.
pub struct StateWriter {
    create: OwnedFd,
    start: OwnedFd,
}

impl StateWriter {
    pub fn write(&self, states: &HookStates) -> anyhow::Result<()> {
        use std::io::Write;
        for (fd, bytes) in [
            (&self.create, &states.create_container),
            (&self.start, &states.start_container),
        ] {
            let mut file = std::fs::File::from(fd.try_clone()?);
            file.write_all(bytes)
                .context("cannot write the state for the container's hooks")?;
        }
        Ok(())
    }
}

/// `start`'s side: reads how the startContainer hooks went from the reply fifo `file`
/// (opened before the container was released) until the container's execve or exit
/// closes it. `paths` name the hooks.
pub fn read_start_outcome(mut file: std::fs::File, paths: &[PathBuf]) -> anyhow::Result<()> {
    use std::io::Read;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .context("cannot read how the startContainer hooks went")?;
    if bytes.len() < 16 {
        anyhow::bail!(
            "the container's process exited before its startContainer hooks finished: \
             see its output, delete it and create it again"
        );
    }
    let int = |at: usize| i32::from_ne_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    if int(0) == 1 {
        return Ok(());
    }
    let failure = Failure {
        index: int(4) as u32,
        value: int(8),
        errno: int(12),
    };
    let path = paths
        .get(failure.index as usize)
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    anyhow::bail!(
        "{}",
        describe("startContainer", &failure, &path, &bytes[16..])
    )
}

/// One line: which hook, how it failed, and the start of what it said.
fn describe(point: &str, failure: &Failure, path: &str, said: &[u8]) -> String {
    let how = match failure.value {
        TIMED_OUT => "it did not finish within its timeout".to_string(),
        NOT_STARTED => format!(
            "it could not be started: {}",
            super::launch::describe_errno(failure.errno)
        ),
        EXEC_FAILED => "it exited with status 127 (is its path an executable?)".to_string(),
        v if v >= SIGNALED => format!("it was killed by signal {}", v - SIGNALED),
        v => format!("it exited with status {v}"),
    };
    let said = String::from_utf8_lossy(said);
    let said = said.trim();
    let index = failure.index;
    if said.is_empty() {
        format!("{point} hook #{index} ({path}) failed: {how}")
    } else {
        format!(
            "{point} hook #{index} ({path}) failed: {how}: {}",
            said.replace('\n', " ")
        )
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// Runs `hooks` in order; the first failure stops. Async-signal-safe.
fn run_all(hooks: &[PreparedHook], state: RawFd, output: RawFd) -> Result<(), Failure> {
    for (index, hook) in hooks.iter().enumerate() {
        let value = run_one(hook, state, output);
        if value.0 != 0 {
            return Err(Failure {
                index: index as u32,
                value: value.0,
                errno: value.1,
            });
        }
    }
    Ok(())
}

fn monotonic_ms() -> i64 {
    // SAFETY: clock_gettime into a zeroed struct we own.
    let mut now: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec * 1000 + now.tv_nsec / 1_000_000
}

/// Forks and executes `hook` with the state on its stdin and `output` as its stdout
/// and stderr, and waits for it (killing its process group at its timeout). Returns
/// (value, errno): (0, 0) when it exited 0. Async-signal-safe.
fn run_one(hook: &PreparedHook, state: RawFd, output: RawFd) -> (i32, i32) {
    // SAFETY: lseek/ftruncate on memfds we hold: each hook reads the whole state and
    // writes its output from the start.
    unsafe {
        libc::lseek(state, 0, libc::SEEK_SET);
        libc::ftruncate(output, 0);
        libc::lseek(output, 0, libc::SEEK_SET);
    }
    // SAFETY: a fork-like clone of this single-threaded process (no atfork handlers).
    let pid = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0, 0, 0, 0) };
    if pid < 0 {
        return (NOT_STARTED, errno());
    }
    if pid == 0 {
        exec_hook(hook, state, output);
    }
    let pid = pid as libc::pid_t;
    // SAFETY: pidfd_open of our own child, which cannot be reaped meanwhile.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as RawFd;
    if pidfd < 0 {
        let error = errno();
        kill_and_reap(pid);
        return (NOT_STARTED, error);
    }
    let deadline = hook.timeout.map(|t| monotonic_ms() + t * 1000);
    let timed_out = loop {
        let wait = match deadline {
            Some(d) => (d - monotonic_ms()).clamp(0, i32::MAX as i64) as i32,
            None => -1,
        };
        let mut poll = libc::pollfd {
            fd: pidfd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one pollfd we own.
        let rc = unsafe { libc::poll(&mut poll, 1, wait) };
        if rc > 0 {
            break false;
        }
        if rc == 0 {
            break true;
        }
        if errno() != libc::EINTR {
            break true;
        }
    };
    // SAFETY: closes the pidfd we opened.
    unsafe { libc::close(pidfd) };
    if timed_out {
        kill_and_reap(pid);
        return (TIMED_OUT, 0);
    }
    let status = reap(pid);
    if libc::WIFEXITED(status) {
        (libc::WEXITSTATUS(status), 0)
    } else if libc::WIFSIGNALED(status) {
        (SIGNALED + libc::WTERMSIG(status), 0)
    } else {
        (NOT_STARTED, libc::ECHILD)
    }
}

fn reap(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: waitpid of our own child into a local.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 && errno() == libc::EINTR {}
    status
}

/// Kills the hook and whatever it started in its process group, and reaps it.
fn kill_and_reap(pid: libc::pid_t) {
    // SAFETY: signals our own child and its process group.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
        libc::kill(pid, libc::SIGKILL);
    }
    reap(pid);
}

/// The hook's side of the fork: its own process group (killed whole at the timeout),
/// the state on 0, the output on 1 and 2, nothing else open, default signal handling,
/// then execve. Never returns. Async-signal-safe.
fn exec_hook(hook: &PreparedHook, state: RawFd, output: RawFd) -> ! {
    // SAFETY: process attributes and descriptors of our own process; execve with
    // prepared NUL-terminated strings and null-terminated pointer arrays.
    unsafe {
        libc::setpgid(0, 0);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::dup2(state, 0) < 0 || libc::dup2(output, 1) < 0 || libc::dup2(output, 2) < 0 {
            libc::_exit(EXEC_FAILED);
        }
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        super::process::default_signals();
        libc::execve(
            hook.path.as_ptr(),
            hook.argv_ptrs.as_ptr(),
            hook.envp_ptrs.as_ptr(),
        );
        libc::_exit(EXEC_FAILED)
    }
}
