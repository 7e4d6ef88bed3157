//! The container's side of the clone: everything from the first instruction of the child
//! to execve. It only walks data the parent prepared (steps, CStrings, pointer arrays,
//! signal sets) and makes raw syscalls: the parent may be multi-threaded, so nothing here
//! may allocate or take a lock. Failures travel to the parent as fixed-size messages over
//! the sync socket; a successful execve closes the socket (CLOEXEC), which the parent
//! reads as "started".

use std::ffi::{c_char, CString};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::plan::{self, Step};
use super::userns_join::{JoinFailure, JoinUser};
use super::{hooks, init, security};

/// Message kinds on the sync socket, child to parent.
pub const MSG_STEP_FAILED: u32 = 1;
pub const MSG_STAGE_FAILED: u32 = 2;
pub const MSG_EXEC_FAILED: u32 = 3;
/// Carries the pty master as SCM_RIGHTS.
pub const MSG_PTY_MASTER: u32 = 4;
/// The working directory (the Chdir step at `detail`) is not inside the container's
/// root: reached through a descriptor or a mount of something outside.
pub const MSG_CWD_OUTSIDE_ROOT: u32 = 5;
/// exec: the process that goes on in the container's pid namespace is `detail` (a host
/// pid); the one that reported it exits.
pub const MSG_CHILD_PID: u32 = 6;
/// `create`: set up, waiting on the start fifo; the parent may go.
pub const MSG_CREATED: u32 = 7;
/// At the ContainerHooks step: the parent may run prestart and createRuntime and write
/// the hooks' state, then send a byte.
pub const MSG_HOOKS: u32 = 8;
/// A createContainer hook failed: hook `detail`, how in `value` (see hooks.rs).
pub const MSG_HOOK_FAILED: u32 = 9;
/// The user namespace joined by path has another uid map (`detail` 0) or gid map (1)
/// than the spec gives.
pub const MSG_USERNS_MAPS: u32 = 10;

/// Stages outside the step list, for MSG_STAGE_FAILED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Stage {
    Terminal = 1,
    Stdio = 2,
    Capabilities = 3,
    Groups = 4,
    Gid = 5,
    Uid = 6,
    Security = 7,
    Init = 8,
    PidNamespace = 9,
    Limits = 10,
    JoinUser = 11,
    JoinedUserRoot = 12,
    JoinedUserClone = 13,
    CgroupV1 = 14,
}

impl Stage {
    pub fn from_u32(value: u32) -> Option<Stage> {
        [
            Stage::Terminal,
            Stage::Stdio,
            Stage::Capabilities,
            Stage::Groups,
            Stage::Gid,
            Stage::Uid,
            Stage::Security,
            Stage::Init,
            Stage::PidNamespace,
            Stage::Limits,
            Stage::JoinUser,
            Stage::JoinedUserRoot,
            Stage::JoinedUserClone,
            Stage::CgroupV1,
        ]
        .into_iter()
        .find(|s| *s as u32 == value)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Stage::Terminal => "set up the container's terminal",
            Stage::Stdio => "connect the container's standard streams",
            Stage::Capabilities => "prepare capabilities before the user switch",
            Stage::Groups => "set the supplementary groups",
            Stage::Gid => "switch to the container's group id",
            Stage::Uid => "switch to the container's user id",
            Stage::Security => "apply capabilities, no_new_privs and seccomp",
            Stage::Init => "start the container's init (--init)",
            Stage::PidNamespace => "start the process in the container's pid namespace",
            Stage::Limits => "apply process.rlimits or process.oomScoreAdj",
            Stage::JoinUser => "join the user namespace linux.namespaces names",
            Stage::JoinedUserRoot => {
                "become root of the joined user namespace (its uid_map and gid_map must \
                 map 0)"
            }
            Stage::JoinedUserClone => {
                "create the container's namespaces in the joined user namespace"
            }
            Stage::CgroupV1 => "join the container's cgroup v1 hierarchies",
        }
    }
}

/// The fixed-size message the child sends.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Message {
    pub kind: u32,
    pub detail: u32,
    pub errno: i32,
    /// MSG_HOOK_FAILED: how the hook failed.
    pub value: i32,
}

/// argv, envp and the paths to try, prepared so that execve needs no allocation.
pub struct ExecTarget {
    pub argv: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const c_char>,
    /// `argv[0]` if it has a slash, else each `$PATH` directory joined with it.
    candidates: Vec<CString>,
}

impl ExecTarget {
    pub fn new(args: &[String], env: &[String]) -> anyhow::Result<ExecTarget> {
        let program = args
            .first()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| anyhow::anyhow!("the spec's process has no args"))?;
        let argv = args
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        let envp = env
            .iter()
            .map(|e| CString::new(e.as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        let candidates = if program.contains('/') {
            vec![CString::new(program.as_bytes())?]
        } else {
            let path = env
                .iter()
                .find_map(|e| e.strip_prefix("PATH="))
                .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
            path.split(':')
                .map(|dir| if dir.is_empty() { "." } else { dir })
                .map(|dir| CString::new(format!("{}/{program}", dir.trim_end_matches('/'))))
                .collect::<Result<Vec<_>, _>>()?
        };
        let mut argv_ptrs: Vec<*const c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut envp_ptrs: Vec<*const c_char> = envp.iter().map(|e| e.as_ptr()).collect();
        envp_ptrs.push(std::ptr::null());
        Ok(ExecTarget {
            argv,
            argv_ptrs,
            _envp: envp,
            envp_ptrs,
            candidates,
        })
    }

    pub fn program(&self) -> String {
        self.argv
            .first()
            .map(|a| String::from_utf8_lossy(a.as_bytes()).into_owned())
            .unwrap_or_default()
    }

    pub fn searched_path(&self) -> bool {
        self.argv
            .first()
            .is_some_and(|a| !a.as_bytes().contains(&b'/'))
    }

    /// A bit per PATH candidate (the first 64) that stat reports absent (ENOENT or
    /// ENOTDIR): `exec` skips them without an execve, which costs a new mm and a binprm
    /// each (four of them for `true` under Docker's default PATH). Called before the
    /// seccomp filter is loaded. Async-signal-safe.
    fn absent_candidates(&self) -> u64 {
        let mut absent = 0u64;
        if self.candidates.len() < 2 {
            return absent;
        }
        for (i, candidate) in self.candidates.iter().take(64).enumerate() {
            // SAFETY: stat of a NUL-terminated path into a zeroed struct we own.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            if unsafe { libc::stat(candidate.as_ptr(), &mut st) } < 0
                && matches!(errno(), libc::ENOENT | libc::ENOTDIR)
            {
                absent |= 1 << i;
            }
        }
        absent
    }

    /// Whether some candidate exists (stat succeeds). `create` checks this before it
    /// waits for `start`, so a missing command fails `create` (as runc's does) instead
    /// of exiting 127 after `start`. Async-signal-safe.
    fn any_exists(&self) -> bool {
        self.candidates.iter().any(|candidate| {
            // SAFETY: stat of a NUL-terminated path into a zeroed struct we own.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            unsafe { libc::stat(candidate.as_ptr(), &mut st) == 0 }
        })
    }

    /// Tries each candidate like execvp, skipping those in `absent`; returns the errno
    /// that explains the failure (EACCES wins over ENOENT, as in execvp). One difference:
    /// absence is checked as the runtime's root, so a candidate in a directory the user
    /// cannot search counts as absent rather than denied. Async-signal-safe.
    fn exec(&self, absent: u64) -> i32 {
        let mut denied = false;
        for (i, candidate) in self.candidates.iter().enumerate() {
            if i < 64 && absent & (1 << i) != 0 {
                continue;
            }
            // SAFETY: NUL-terminated path and null-terminated pointer arrays whose
            // strings live in `self`.
            unsafe {
                libc::execve(
                    candidate.as_ptr(),
                    self.argv_ptrs.as_ptr(),
                    self.envp_ptrs.as_ptr(),
                )
            };
            match errno() {
                libc::ENOENT | libc::ENOTDIR => {}
                libc::EACCES => denied = true,
                other => return other,
            }
        }
        if denied {
            libc::EACCES
        } else {
            libc::ENOENT
        }
    }
}

/// Where the container's standard streams come from. Either way the child puts
/// descriptors of the parent's choosing on 0, 1 and 2 first thing, so it never holds
/// the caller's own streams (its terminal, say).
pub enum ChildStdio {
    /// Descriptors (already open in the parent) for fds 0, 1, 2.
    Fds([RawFd; 3]),
    /// A pty created inside the container's devpts with this window size (so the
    /// command sees it from its first instruction); its master goes to the parent.
    /// `null` (the parent's /dev/null) holds 0, 1 and 2 until then.
    Terminal {
        size: Option<libc::winsize>,
        null: RawFd,
    },
}

/// Everything the child needs, built by the parent before the clone.
pub struct ChildPlan {
    pub steps: Vec<Step>,
    /// Where the steps keep the descriptors they pass on (sized for `steps`).
    pub slots: plan::Slots,
    /// The child's end of the sync socket (CLOEXEC).
    pub sync: RawFd,
    pub stdio: ChildStdio,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    pub groups: Vec<libc::gid_t>,
    pub exec: ExecTarget,
    /// Run our own init as PID 1 (`--init`), showing this command line, and the
    /// command as its child.
    pub init: Option<init::Title>,
    /// The signals the CLI blocked (and that init waits for).
    pub blocked: libc::sigset_t,
    /// The clone created the cgroup namespace already: skip the UnshareCgroup step.
    pub cgroup_ns_by_clone: bool,
    /// The `tasks` files of the container's v1 cgroups (opened by the parent): the
    /// child writes "0" to each as its first act (see cgroups/v1.rs).
    pub join_v1: Vec<RawFd>,
    pub security: security::Prepared,
    /// The descriptors above 2 the child keeps at its start, ascending: the sync socket
    /// and the namespaces of Setns steps. It closes every other one before any path
    /// lookup, so no path (a working directory of /proc/self/fd/N, say) can reach the
    /// host through a descriptor of the CLI; the parent's end of the channel goes too,
    /// so end of file on it means "parent gone".
    pub keep: Vec<RawFd>,
    /// exec: the container's pid namespace, entered once everything else is joined
    /// (see `enter_pid_namespace`).
    pub pid_namespace: Option<RawFd>,
    /// `create`: the start fifo (opened read-write by the parent) on which the child,
    /// once set up, waits for `start`'s byte before its execve.
    pub start_fifo: Option<RawFd>,
    /// The process outlives the runtime (the runtime CLI's `exec --detach`): it drops
    /// its parent-death signal just before its execve.
    pub outlive_parent: bool,
    /// process.rlimits: (resource, soft, hard), set before the user switch.
    pub rlimits: Vec<(libc::__rlimit_resource_t, u64, u64)>,
    /// process.oomScoreAdj, as the decimal text written to /proc/self/oom_score_adj.
    pub oom_score_adj: Option<CString>,
    /// The runtime CLI's createContainer and startContainer hooks.
    pub hooks: Option<hooks::ContainerHooks>,
    /// A user namespace joined by path: joined first, by a child that then clones the
    /// one that goes on (see userns_join.rs).
    pub join_user: Option<JoinUser>,
}

impl ChildPlan {
    /// A plan running `exec` as `user` after `steps`, reporting on `channel` (the
    /// parent's end, the child's end). Without our init; `cgroup_ns_by_clone` is set by
    /// the spawn.
    pub fn new(
        steps: Vec<Step>,
        channel: &(OwnedFd, OwnedFd),
        stdio: ChildStdio,
        user: &oci_spec::runtime::User,
        exec: ExecTarget,
        blocked: libc::sigset_t,
        security: security::Prepared,
    ) -> ChildPlan {
        let mut keep: Vec<RawFd> = steps
            .iter()
            .filter_map(|step| match step {
                Step::Setns { fd, .. } => Some(*fd),
                _ => None,
            })
            .collect();
        keep.push(channel.1.as_raw_fd());
        keep.sort_unstable();
        keep.dedup();
        ChildPlan {
            keep,
            pid_namespace: None,
            start_fifo: None,
            outlive_parent: false,
            rlimits: Vec::new(),
            oom_score_adj: None,
            hooks: None,
            join_user: None,
            slots: plan::Slots::for_steps(&steps),
            steps,
            sync: channel.1.as_raw_fd(),
            stdio,
            uid: user.uid(),
            gid: user.gid(),
            groups: user.additional_gids().clone().unwrap_or_default(),
            exec,
            init: None,
            blocked,
            security,
            cgroup_ns_by_clone: false,
            join_v1: Vec::new(),
        }
    }
}

impl ChildPlan {
    /// Takes process.rlimits and process.oomScoreAdj from `process`.
    pub fn set_process_limits(&mut self, process: &oci_spec::runtime::Process) {
        use oci_spec::runtime::PosixRlimitType as T;
        self.rlimits = process
            .rlimits()
            .iter()
            .flatten()
            .map(|r| {
                let resource = match r.typ() {
                    T::RlimitCpu => libc::RLIMIT_CPU,
                    T::RlimitFsize => libc::RLIMIT_FSIZE,
                    T::RlimitData => libc::RLIMIT_DATA,
                    T::RlimitStack => libc::RLIMIT_STACK,
                    T::RlimitCore => libc::RLIMIT_CORE,
                    T::RlimitRss => libc::RLIMIT_RSS,
                    T::RlimitNproc => libc::RLIMIT_NPROC,
                    T::RlimitNofile => libc::RLIMIT_NOFILE,
                    T::RlimitMemlock => libc::RLIMIT_MEMLOCK,
                    T::RlimitAs => libc::RLIMIT_AS,
                    T::RlimitLocks => libc::RLIMIT_LOCKS,
                    T::RlimitSigpending => libc::RLIMIT_SIGPENDING,
                    T::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
                    T::RlimitNice => libc::RLIMIT_NICE,
                    T::RlimitRtprio => libc::RLIMIT_RTPRIO,
                    T::RlimitRttime => libc::RLIMIT_RTTIME,
                };
                (resource, r.soft(), r.hard())
            })
            .collect();
        self.oom_score_adj = process
            .oom_score_adj()
            .map(|v| CString::new(v.to_string()).expect("digits have no NUL"));
    }

    /// Makes the child wait, set up, for a byte on the start fifo `fd` (`create`/`start`),
    /// keeping `fd` open until then.
    pub fn wait_for_start(&mut self, fd: RawFd) {
        self.start_fifo = Some(fd);
        self.keep.push(fd);
        self.keep.sort_unstable();
        self.keep.dedup();
    }

    /// Gives the child the in-container hooks (and keeps their descriptors open), run at
    /// the plan's ContainerHooks step and after `start`.
    pub fn set_hooks(&mut self, hooks: hooks::ContainerHooks) {
        self.keep.extend(hooks.fds());
        self.keep.sort_unstable();
        self.keep.dedup();
        self.hooks = Some(hooks);
    }

    /// Makes the child join a user namespace by path first (keeping its descriptors open
    /// until then).
    pub fn set_join_user(&mut self, join: JoinUser) {
        self.keep.extend(join.fds());
        self.keep.sort_unstable();
        self.keep.dedup();
        self.join_user = Some(join);
    }

    /// Makes the child enter the pid namespace `fd` refers to (exec), keeping `fd` open
    /// until then.
    pub fn join_pid_namespace(&mut self, fd: RawFd) {
        self.pid_namespace = Some(fd);
        self.keep.push(fd);
        self.keep.sort_unstable();
        self.keep.dedup();
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn report(sync: RawFd, kind: u32, detail: u32, errno: i32) {
    let message = Message {
        kind,
        detail,
        errno,
        value: 0,
    };
    // SAFETY: sends a plain struct we own; the result does not matter, we exit next.
    unsafe {
        libc::send(
            sync,
            (&message as *const Message).cast(),
            std::mem::size_of::<Message>(),
            libc::MSG_NOSIGNAL,
        )
    };
}

fn fail(sync: RawFd, kind: u32, detail: u32, errno: i32) -> ! {
    report(sync, kind, detail, errno);
    // SAFETY: _exit is async-signal-safe and skips Rust and libc teardown.
    unsafe { libc::_exit(1) }
}

/// Sends the pty master to the parent with SCM_RIGHTS. Async-signal-safe: the control
/// buffer lives on the stack.
fn send_fd(sync: RawFd, fd: RawFd) -> Result<(), i32> {
    #[repr(C)]
    union ControlBuffer {
        buf: [u8; 64],
        _align: libc::cmsghdr,
    }
    let message = Message {
        kind: MSG_PTY_MASTER,
        ..Default::default()
    };
    // SAFETY: msghdr, iovec and the control buffer all live on this stack frame; the
    // CMSG_* macros stay within the buffer sized for one descriptor.
    unsafe {
        let mut control = ControlBuffer { buf: [0; 64] };
        let mut iov = libc::iovec {
            iov_base: (&message as *const Message).cast_mut().cast(),
            iov_len: std::mem::size_of::<Message>(),
        };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.buf.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
        std::ptr::copy_nonoverlapping(
            (&fd as *const RawFd).cast::<u8>(),
            libc::CMSG_DATA(cmsg),
            std::mem::size_of::<RawFd>(),
        );
        if libc::sendmsg(sync, &msg, libc::MSG_NOSIGNAL) < 0 {
            return Err(errno());
        }
    }
    Ok(())
}

/// Opens a pty in the container's own devpts, hands the master to the parent and makes
/// the slave our controlling terminal and standard streams.
fn setup_terminal(sync: RawFd, size: Option<&libc::winsize>) -> Result<(), i32> {
    // SAFETY: open/ioctl/dup2/close on descriptors we own, with a literal path.
    unsafe {
        let master = libc::open(
            c"/dev/pts/ptmx".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if master < 0 {
            return Err(errno());
        }
        let unlock: libc::c_int = 0;
        if libc::ioctl(master, libc::TIOCSPTLCK, &unlock) < 0 {
            return Err(errno());
        }
        if let Some(size) = size {
            libc::ioctl(master, libc::TIOCSWINSZ, size as *const libc::winsize);
        }
        let slave = libc::ioctl(master, libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY);
        if slave < 0 {
            return Err(errno());
        }
        send_fd(sync, master)?;
        libc::close(master);
        if libc::setsid() < 0 || libc::ioctl(slave, libc::TIOCSCTTY, 0) < 0 {
            return Err(errno());
        }
        for target in 0..3 {
            if libc::dup2(slave, target) < 0 {
                return Err(errno());
            }
        }
        if slave > 2 {
            libc::close(slave);
        }
    }
    Ok(())
}

/// Puts the descriptors the parent chose for us on 0, 1 and 2 (`adopt_stdio` placed
/// them) and leaves the caller's session, so the caller's terminal is not our
/// controlling terminal.
fn setup_stdio() -> Result<(), i32> {
    // SAFETY: setsid on our own process.
    if unsafe { libc::setsid() } < 0 {
        return Err(errno());
    }
    Ok(())
}

/// Makes the container's pipes and terminal on 0-2 its user's, as runc does, so a
/// non-root process can reopen them (`/dev/stdout`, `/proc/self/fd/1`, `tty`). Only
/// pipes and pty slaves: /dev/null and anything else (a host file handed to the runtime
/// CLI's `create`) keep their owner. Best effort, as runc's. Async-signal-safe.
fn give_stdio_to_user(uid: libc::uid_t, gid: libc::gid_t) {
    if uid == 0 {
        return;
    }
    for fd in 0..3 {
        // SAFETY: fstat into a zeroed stat we own, fchown on our own descriptor.
        unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstat(fd, &mut st) < 0 {
                continue;
            }
            let kind = st.st_mode & libc::S_IFMT;
            // UNIX98 pty slaves have majors 136-143.
            let pty = kind == libc::S_IFCHR && (136..=143).contains(&libc::major(st.st_rdev));
            if kind == libc::S_IFIFO || pty {
                libc::fchown(fd, uid, gid);
            }
        }
    }
}

/// Moves the parent's stdio descriptors (with a pty: its /dev/null) onto 0, 1 and 2,
/// first through copies above 2 so that no source is overwritten before it is copied.
/// The copies go with the other inherited descriptors. Async-signal-safe.
fn adopt_stdio(stdio: &ChildStdio) -> Result<(), i32> {
    let sources = match stdio {
        ChildStdio::Fds(fds) => *fds,
        ChildStdio::Terminal { null, .. } => [*null; 3],
    };
    let mut copies = [-1; 3];
    // SAFETY: fcntl and dup2 on descriptors the parent opened for us.
    unsafe {
        for (copy, source) in copies.iter_mut().zip(sources) {
            *copy = libc::fcntl(source, libc::F_DUPFD_CLOEXEC, 3);
            if *copy < 0 {
                return Err(errno());
            }
        }
        for (target, copy) in copies.into_iter().enumerate() {
            if libc::dup2(copy, target as RawFd) < 0 {
                return Err(errno());
            }
        }
    }
    Ok(())
}

/// Whether our working directory is inside our root: getcwd(2) names a directory the
/// root cannot reach with "(unreachable)" instead of a leading '/' (as runc checks).
/// Err with the errno when getcwd fails (ENOENT: the directory was removed).
/// Async-signal-safe: the buffer is on the stack.
fn cwd_inside_root() -> Result<bool, i32> {
    let mut buf = [0u8; libc::PATH_MAX as usize];
    // SAFETY: the kernel writes at most buf.len() bytes into our stack buffer.
    let rc = unsafe { libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()) };
    if rc < 0 {
        return Err(errno());
    }
    Ok(rc > 0 && buf[0] == b'/')
}

/// Writes `value` to /proc/self/oom_score_adj: first thing in the child, while the host's
/// /proc (where self is us) is still the root's. Async-signal-safe.
fn write_oom_score_adj(value: &CString) -> Result<(), i32> {
    plan::write_file(c"/proc/self/oom_score_adj", value)
}

/// Whether the parent died (its end of the setup channel is closed): checked right
/// after the parent-death signal is armed, which covers a death just before. Never
/// blocks. Async-signal-safe.
fn parent_gone(sync: RawFd) -> bool {
    let mut channel = libc::pollfd {
        fd: sync,
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: poll on one pollfd we own, without waiting.
    let rc = unsafe { libc::poll(&mut channel, 1, 0) };
    rc < 0 || channel.revents & (libc::POLLHUP | libc::POLLRDHUP) != 0
}

/// The ContainerHooks step: asks the parent to run its hooks, waits for its byte, then
/// runs the createContainer hooks; a failure is reported and ends the child.
fn run_create_hooks(plan: &ChildPlan) {
    let Some(hooks) = &plan.hooks else {
        return;
    };
    report(plan.sync, MSG_HOOKS, 0, 0);
    await_release(plan.sync);
    if let Err(failure) = hooks.run_create() {
        let message = Message {
            kind: MSG_HOOK_FAILED,
            detail: failure.index,
            errno: failure.errno,
            value: failure.value,
        };
        // SAFETY: sends a plain struct we own, then exits.
        unsafe {
            libc::send(
                plan.sync,
                (&message as *const Message).cast(),
                std::mem::size_of::<Message>(),
                libc::MSG_NOSIGNAL,
            );
            libc::_exit(1);
        }
    }
}

/// Joins the user namespace `join` names and clones the process that goes on: the
/// first child reports its pid and exits; returns in the new one.
fn join_user_namespace(sync: RawFd, join: &JoinUser) {
    let stage = |stage: Stage, errno| fail(sync, MSG_STAGE_FAILED, stage as u32, errno);
    let report_first = PidReport::open(sync, Stage::JoinedUserClone);
    match join.enter() {
        Ok(Some(pid)) => report_first.report_and_exit(sync, pid),
        Ok(None) => report_first.await_report(),
        Err(JoinFailure::PidNamespace(errno)) => stage(Stage::PidNamespace, errno),
        Err(JoinFailure::Join(errno)) => stage(Stage::JoinUser, errno),
        Err(JoinFailure::Maps(which)) => fail(sync, MSG_USERNS_MAPS, which, 0),
        Err(JoinFailure::Root(errno)) => stage(Stage::JoinedUserRoot, errno),
        Err(JoinFailure::Clone(errno)) => stage(Stage::JoinedUserClone, errno),
    }
    // SAFETY: prctl on our own process. A clone does not inherit the parent-death
    // signal, and the credential change reset dumpability: until execve no process of
    // the joined namespace (a pod's other containers) may attach to us or open our
    // /proc files, which still reach the host's mounts.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    if parent_gone(sync) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(1) };
    }
}

/// Blocks until the parent's release byte arrives; exits quietly if the parent died.
fn await_release(sync: RawFd) {
    let mut go = 0u8;
    // SAFETY: reads one byte into a local from the setup channel we own.
    if unsafe { libc::read(sync, (&mut go as *mut u8).cast(), 1) } != 1 {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(1) };
    }
}

/// The child's whole life until execve. Never returns.
pub fn child_main(plan: &ChildPlan) -> ! {
    let sync = plan.sync;
    // SAFETY: prctl on our own process.
    unsafe {
        // First: until execve resets it, only a holder of CAP_SYS_PTRACE may open our
        // /proc files (fd/, exe, root, cwd) or attach to us.
        libc::prctl(libc::PR_SET_DUMPABLE, 0);
        // Die with the CLI, even if it is SIGKILLed.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    // Into the container's v1 cgroups before anything is created or charged: a thread
    // moving itself takes no global lock (see cgroups/v1.rs).
    for &tasks in &plan.join_v1 {
        // SAFETY: writes one byte of a static string to a descriptor the parent opened.
        if unsafe { libc::write(tasks, b"0".as_ptr().cast(), 1) } != 1 {
            fail(sync, MSG_STAGE_FAILED, Stage::CgroupV1 as u32, errno());
        }
    }
    // Before any path lookup: nothing of the CLI's (its record directory, cgroup
    // directories, terminal) stays reachable through /proc/self/fd.
    if let Err(errno) = adopt_stdio(&plan.stdio) {
        fail(sync, MSG_STAGE_FAILED, Stage::Stdio as u32, errno);
    }
    close_except(&plan.keep);
    if parent_gone(sync) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(1) };
    }
    if let Some(value) = &plan.oom_score_adj {
        if let Err(errno) = write_oom_score_adj(value) {
            fail(sync, MSG_STAGE_FAILED, Stage::Limits as u32, errno);
        }
    }
    // SAFETY: umask of our own process. Exact modes for what we create.
    unsafe { libc::umask(0) };
    // The release byte comes once the parent has placed us in our cgroup: at the plan's
    // AwaitCgroup step, or after the last step of a plan without one (exec).
    let mut released = false;
    if let Some(join) = &plan.join_user {
        // In the cgroup first: the process we clone is born there.
        await_release(sync);
        released = true;
        join_user_namespace(sync, join);
    }
    for (index, step) in plan.steps.iter().enumerate() {
        if *step == Step::AwaitCgroup {
            if !released {
                await_release(sync);
                released = true;
            }
        } else if *step == Step::ContainerHooks {
            // Placed in the cgroup first: the hooks and what they start are in it.
            if !released {
                await_release(sync);
                released = true;
            }
            run_create_hooks(plan);
        } else if *step == Step::UnshareCgroup && plan.cgroup_ns_by_clone {
            continue;
        } else if let Err(errno) = plan::execute(step, &plan.slots) {
            fail(sync, MSG_STEP_FAILED, index as u32, errno);
        } else if matches!(step, Step::Chdir { .. }) {
            // A directory outside the root (a /proc/self/fd/N magic link, say) would hand
            // the command the host's files through relative paths.
            match cwd_inside_root() {
                Ok(true) => {}
                Ok(false) => fail(sync, MSG_CWD_OUTSIDE_ROOT, index as u32, 0),
                Err(errno) => fail(sync, MSG_STEP_FAILED, index as u32, errno),
            }
        }
    }
    if !released {
        await_release(sync);
    }
    if let Some(pid_namespace) = plan.pid_namespace {
        enter_pid_namespace(sync, pid_namespace);
    }
    let stdio = match &plan.stdio {
        ChildStdio::Terminal { size, .. } => {
            setup_terminal(sync, size.as_ref()).map_err(|e| (Stage::Terminal, e))
        }
        ChildStdio::Fds(_) => setup_stdio().map_err(|e| (Stage::Stdio, e)),
    };
    if let Err((stage, errno)) = stdio {
        fail(sync, MSG_STAGE_FAILED, stage as u32, errno);
    }
    give_stdio_to_user(plan.uid, plan.gid);

    // Which PATH candidates are absent, looked up before any seccomp filter is loaded
    // (a custom profile may not allow stat).
    let absent = plan.exec.absent_candidates();
    if plan.start_fifo.is_some() && !plan.exec.any_exists() {
        fail(sync, MSG_EXEC_FAILED, 0, libc::ENOENT);
    }

    if let Some(title) = &plan.init {
        // Init tells the worker on this pipe once it is confined: the command never
        // runs beside an init that still has the runtime's privileges.
        let mut confined = [-1; 2];
        // SAFETY: pipe2 fills the two-int array we own.
        if unsafe { libc::pipe2(confined.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
            fail(sync, MSG_STAGE_FAILED, Stage::Init as u32, errno());
        }
        // SAFETY: a fork-like clone of this single-threaded child (no atfork handlers).
        let worker =
            unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0, 0, 0, 0) };
        if worker < 0 {
            fail(sync, MSG_STAGE_FAILED, Stage::Init as u32, errno());
        }
        if worker > 0 {
            // SAFETY: closes our copy of the worker's end.
            unsafe { libc::close(confined[0]) };
            run_init(plan, title, worker as libc::pid_t, confined[1]);
        }
        // SAFETY: the worker dies with init; it waits for init's byte (end of file:
        // init failed, and reports it).
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            libc::close(confined[1]);
            let mut byte = 0u8;
            if libc::read(confined[0], (&mut byte as *mut u8).cast(), 1) != 1 {
                libc::_exit(1);
            }
            libc::close(confined[0]);
        }
    }

    for (resource, soft, hard) in &plan.rlimits {
        let limit = libc::rlimit {
            rlim_cur: *soft,
            rlim_max: *hard,
        };
        // SAFETY: setrlimit of our own process from a struct on the stack.
        if unsafe { libc::setrlimit(*resource, &limit) } < 0 {
            fail(sync, MSG_STAGE_FAILED, Stage::Limits as u32, errno());
        }
    }
    if let Err((stage, errno)) = become_user(plan) {
        fail(sync, MSG_STAGE_FAILED, stage as u32, errno);
    }
    // SAFETY: signal dispositions, mask and descriptor flags of our own process.
    unsafe {
        libc::umask(0o022);
        // The command starts with default signal handling: nothing blocked, nothing
        // ignored (Rust ignores SIGPIPE in the CLI).
        default_signals();
        // Nothing of the CLI's descriptors may reach the command; the sync socket stays
        // until execve succeeds (it is CLOEXEC), to report a failure.
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
    if let Some(fifo) = plan.start_fifo {
        await_start(sync, fifo);
        if let Some(hooks) = &plan.hooks {
            if !hooks.run_start() {
                // SAFETY: _exit is async-signal-safe; `start` has been told why.
                unsafe { libc::_exit(1) };
            }
        }
    }
    if plan.outlive_parent {
        // SAFETY: prctl on our own process.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0) };
    }
    if let Err(e) = plan.security.after_user_switch() {
        fail(sync, MSG_STAGE_FAILED, Stage::Security as u32, e as i32);
    }
    let errno = plan.exec.exec(absent);
    if plan.start_fifo.is_some() {
        // Nobody reads the setup channel any more: the exit status says it, as `run`'s
        // 127/126 would.
        let code = if errno == libc::ENOENT {
            crate::exitcode::NOT_FOUND
        } else {
            crate::exitcode::CANNOT_EXECUTE
        };
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(code) };
    }
    fail(sync, MSG_EXEC_FAILED, 0, errno)
}

/// `create`: the container is set up. It outlives the runtime from here on (no
/// parent-death signal: the caller, containerd's shim, reaps it), tells the parent, and
/// waits for `start`'s byte on the fifo. End of file cannot happen (we hold the fifo
/// read-write); any other failure ends the container. Async-signal-safe.
fn await_start(sync: RawFd, fifo: RawFd) {
    // SAFETY: prctl on our own process; read of one byte into a local from a descriptor
    // the parent opened for us.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, 0);
        report(sync, MSG_CREATED, 0, 0);
        let mut byte = 0u8;
        loop {
            let n = libc::read(fifo, (&mut byte as *mut u8).cast(), 1);
            if n == 1 {
                break;
            }
            if n < 0 && errno() == libc::EINTR {
                continue;
            }
            libc::_exit(1);
        }
        libc::close(fifo);
    }
}

/// exec's way into the container's pid namespace. Only children are born in a pid
/// namespace; ours is born last, after this process (which the container cannot see: it
/// is in the host's pid namespace) joined every other namespace, chose its working
/// directory and closed everything but stdio and the setup channel. So the container
/// never sees a process of ours in the host's mount namespace or holding the CLI's
/// descriptors, even with CAP_SYS_PTRACE. The new process is a child of the CLI
/// (CLONE_PARENT), which learns its pid from us (through `PidReport`, before anything
/// the new process says); we exit. Returns in the new process.
fn enter_pid_namespace(sync: RawFd, pid_namespace: RawFd) {
    // SAFETY: setns on a descriptor the parent opened for us.
    if unsafe { libc::setns(pid_namespace, libc::CLONE_NEWPID) } < 0 {
        fail(sync, MSG_STAGE_FAILED, Stage::PidNamespace as u32, errno());
    }
    close_except(&[sync]);
    let report_first = PidReport::open(sync, Stage::PidNamespace);
    // SAFETY: a fork-like clone of this single-threaded process (no atfork handlers);
    // CLONE_PARENT makes the CLI its parent (and SIGCHLD, our exit signal, its own).
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong,
            0,
            0,
            0,
            0,
        )
    };
    if pid < 0 {
        fail(sync, MSG_STAGE_FAILED, Stage::PidNamespace as u32, errno());
    }
    if pid > 0 {
        report_first.report_and_exit(sync, pid as libc::pid_t);
    }
    report_first.await_report();
    // SAFETY: prctl on our own process. A clone does not inherit the parent-death
    // signal; our parent is the CLI now.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    if parent_gone(sync) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(1) };
    }
}

/// Orders a hand-over to a process we clone to go on in our place (exec's entry into the
/// pid namespace, the join of a user namespace by path): the CLI must learn the new
/// process's pid before anything the new process says. Otherwise a new process that
/// failed fast (a command not found) could report first; the CLI then reaped us, never
/// its real child, and that zombie, left to the CLI's reaper, kept the container's init
/// from finishing its exit (a pid namespace's init waits until every process in it is
/// reaped); and the hooks' turn names the pid. A pipe nothing is written to: we report
/// the pid and exit, which closes the write end; the new process reads to end of file
/// first. Async-signal-safe.
struct PidReport {
    read: RawFd,
    write: RawFd,
}

impl PidReport {
    /// Made before the clone; a failure is reported as `stage`.
    fn open(sync: RawFd, stage: Stage) -> PidReport {
        let mut ends = [-1; 2];
        // SAFETY: pipe2 fills the two-int array we own.
        if unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
            fail(sync, MSG_STAGE_FAILED, stage as u32, errno());
        }
        PidReport {
            read: ends[0],
            write: ends[1],
        }
    }

    /// In the cloning process: tells the CLI the new process's pid, and exits.
    fn report_and_exit(self, sync: RawFd, pid: libc::pid_t) -> ! {
        report(sync, MSG_CHILD_PID, pid as u32, 0);
        // SAFETY: _exit is async-signal-safe; it closes our ends of the pipe.
        unsafe { libc::_exit(0) }
    }

    /// In the new process: waits until the report is made (end of file on the pipe).
    fn await_report(self) {
        // SAFETY: closes our copy of the write end, then reads to end of file (nothing
        // is ever written) into a local byte, and closes the read end.
        unsafe {
            libc::close(self.write);
            let mut byte = 0u8;
            while libc::read(self.read, (&mut byte as *mut u8).cast(), 1) < 0
                && errno() == libc::EINTR
            {}
            libc::close(self.read);
        }
    }
}

/// Drops the bounding set and switches to the container's user and groups (the first
/// half of the confinement; `after_user_switch` completes it). Shared by the command
/// and `--init`, which runs as the same user so it may signal the command.
fn become_user(plan: &ChildPlan) -> Result<(), (Stage, i32)> {
    plan.security
        .before_user_switch()
        .map_err(|e| (Stage::Capabilities, e as i32))?;
    plan::set_groups(&plan.groups).map_err(|e| (Stage::Groups, e))?;
    plan::set_gid(plan.gid).map_err(|e| (Stage::Gid, e))?;
    plan::set_uid(plan.uid).map_err(|e| (Stage::Uid, e))?;
    // SAFETY: prctl on our own process.
    unsafe {
        // A credential change clears the parent-death signal: arm it again, then make
        // sure the parent did not die in between.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    if parent_gone(plan.sync) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(1) };
    }
    Ok(())
}

/// Closes every descriptor from 3 up except those in `keep` (ascending), in the child,
/// where nothing else uses them. Async-signal-safe.
fn close_except(keep: &[RawFd]) {
    let mut start = 3;
    // SAFETY: close_range on our own descriptor table; the kept ones stay valid.
    unsafe {
        for &fd in keep {
            if fd > start {
                libc::syscall(libc::SYS_close_range, start as u32, (fd - 1) as u32, 0u32);
            }
            start = start.max(fd + 1);
        }
        libc::syscall(libc::SYS_close_range, start as u32, u32::MAX, 0u32);
    }
}

/// `--init`'s side of the fork: confined like the command (the container's user,
/// capabilities, no_new_privs if asked, seccomp), then it lets the worker go on (a byte
/// on `confined`) and is PID 1 until the command exits. Every descriptor but the setup
/// channel and `confined` is closed first, those two once confined, so a profile that
/// blocks close_range cannot keep the CLI waiting.
fn run_init(plan: &ChildPlan, title: &init::Title, worker: libc::pid_t, confined: RawFd) -> ! {
    let sync = plan.sync;
    // Before the command can look at us: /proc/1/cmdline was the CLI's.
    title.apply();
    // SAFETY: prctl and close on our own process and descriptors.
    unsafe {
        // Before the command can look at us: /proc/1/exe is our binary.
        libc::prctl(libc::PR_SET_DUMPABLE, 0);
        libc::prctl(libc::PR_SET_NAME, c"init".as_ptr());
    }
    let kept = if sync < confined {
        [sync, confined]
    } else {
        [confined, sync]
    };
    close_except(&kept);
    let result = become_user(plan).and_then(|()| {
        plan.security
            .after_user_switch()
            .map_err(|e| (Stage::Security, e as i32))
    });
    if let Err((stage, errno)) = result {
        // SAFETY: the worker must not outlive a failed init.
        unsafe { libc::kill(worker, libc::SIGKILL) };
        fail(sync, MSG_STAGE_FAILED, stage as u32, errno);
    }
    // SAFETY: one byte from a literal to the worker, then closes the last descriptors
    // we hold from the runtime.
    unsafe {
        libc::write(confined, c"c".as_ptr().cast(), 1);
        libc::close(confined);
        libc::close(sync);
    }
    init::run(worker, &plan.blocked)
}

/// Every signal's disposition back to the default and an empty signal mask, for a
/// process about to execve (async-signal-safe: signal, sigemptyset, sigprocmask).
///
/// # Safety
/// For a forked or cloned child before its execve: it changes process-wide signal state.
pub(super) unsafe fn default_signals() {
    // SAFETY: as the function's contract says; the sigset is local.
    unsafe {
        for signal in 1..libc::SIGRTMIN() {
            if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                libc::signal(signal, libc::SIG_DFL);
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}
