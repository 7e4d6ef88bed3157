//! Docker seccomp profiles: the JSON format (`--security-opt seccomp=PROFILE.json`) and our
//! built-in default with the semantics of Docker's, both turned into an OCI `LinuxSeccomp`
//! for one container.
//!
//! Docker's format adds, per rule, `includes`/`excludes` conditions on the container's
//! capabilities, the architecture and the kernel version. They are evaluated here, once,
//! when the spec is built, the way dockerd does it:
//! - `caps`: every listed capability must be (includes) / none may be (excludes) in the
//!   container's bounding set;
//! - `arches`: the Docker (Go) name of the native architecture ("amd64", "arm64");
//!   sub-architectures such as "x86" or "x32" never match, because our filter only covers
//!   the native architecture (see the runtime's security/seccomp.rs, which compiles the
//!   result);
//! - `minKernel`: compared with the running kernel's major.minor.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall,
};
use serde::Deserialize;

use crate::runtime::security::{mask_of_names, CapsError};

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("seccomp profile is not valid JSON in Docker's format: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "seccomp profile has no defaultAction: add e.g. \"defaultAction\": \"SCMP_ACT_ERRNO\""
    )]
    NoDefaultAction,
    #[error("seccomp profile sets both architectures and archMap: keep only one")]
    ArchitecturesAndArchMap,
    #[error("seccomp profile rule sets both name {0:?} and names: keep only one")]
    NameAndNames(String),
    #[error("seccomp profile rule has no syscall name: set \"names\"")]
    NoNames,
    #[error("seccomp profile uses a notify listener ({0}): not supported")]
    Listener(String),
    #[error("seccomp profile: invalid minKernel {0:?}: use MAJOR.MINOR such as \"4.8\"")]
    MinKernel(String),
    #[error("seccomp profile names {0}")]
    Caps(#[from] CapsError),
}

/// Docker's profile document.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DockerProfile {
    pub default_action: Option<LinuxSeccompAction>,
    pub default_errno_ret: Option<u32>,
    pub architectures: Option<Vec<String>>,
    pub arch_map: Option<Vec<ArchMapEntry>>,
    pub syscalls: Option<Vec<DockerSyscall>>,
    pub flags: Option<Vec<String>>,
    pub listener_path: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchMapEntry {
    pub architecture: String,
    pub sub_architectures: Option<Vec<String>>,
}

/// One rule of a Docker profile.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DockerSyscall {
    pub name: Option<String>,
    pub names: Option<Vec<String>>,
    pub action: LinuxSeccompAction,
    pub errno_ret: Option<u32>,
    pub args: Option<Vec<LinuxSeccompArg>>,
    pub includes: Option<Condition>,
    pub excludes: Option<Condition>,
}

/// `includes` / `excludes` of a Docker rule.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    pub caps: Option<Vec<String>>,
    pub arches: Option<Vec<String>>,
    pub min_kernel: Option<String>,
}

/// What the includes/excludes conditions are evaluated against.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The container's bounding set.
    pub caps: u64,
    /// Running kernel (major, minor).
    pub kernel: (u32, u32),
    /// Docker's name of the architecture ("amd64", "arm64").
    pub arch: &'static str,
}

impl Target {
    /// The running machine, with the given bounding set.
    pub fn native(caps: u64) -> Self {
        Self {
            caps,
            kernel: running_kernel(),
            arch: docker_arch_name(),
        }
    }
}

fn docker_arch_name() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

fn native_seccomp_arch() -> Option<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => Some("SCMP_ARCH_X86_64"),
        "aarch64" => Some("SCMP_ARCH_AARCH64"),
        "riscv64" => Some("SCMP_ARCH_RISCV64"),
        _ => None,
    }
}

/// The running kernel's (major, minor); (0, 0) if uname is unreadable, so every minKernel
/// condition then fails closed.
fn running_kernel() -> (u32, u32) {
    nix::sys::utsname::uname()
        .ok()
        .and_then(|u| u.release().to_str().and_then(parse_kernel_version))
        .unwrap_or((0, 0))
}

/// "6.18.0-13-amd64" -> (6, 18).
fn parse_kernel_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

fn arch_of(name: &str) -> Option<Arch> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
}

fn flag_of(name: &str) -> Option<LinuxSeccompFilterFlag> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
}

impl Condition {
    fn min_kernel(&self) -> Result<Option<(u32, u32)>, ProfileError> {
        self.min_kernel
            .as_deref()
            .map(|text| {
                parse_kernel_version(text).ok_or_else(|| ProfileError::MinKernel(text.into()))
            })
            .transpose()
    }
}

impl DockerSyscall {
    /// Whether this rule applies to `target` (Docker's includes/excludes semantics).
    fn applies_to(&self, target: &Target) -> Result<bool, ProfileError> {
        if let Some(inc) = &self.includes {
            if let Some(arches) = inc.arches.as_ref().filter(|a| !a.is_empty()) {
                if !arches.iter().any(|a| a == target.arch) {
                    return Ok(false);
                }
            }
            if let Some(caps) = inc.caps.as_ref().filter(|c| !c.is_empty()) {
                let needed = mask_of_names(caps)?;
                if target.caps & needed != needed {
                    return Ok(false);
                }
            }
            if let Some(min) = inc.min_kernel()? {
                if target.kernel < min {
                    return Ok(false);
                }
            }
        }
        if let Some(exc) = &self.excludes {
            if let Some(arches) = exc.arches.as_ref() {
                if arches.iter().any(|a| a == target.arch) {
                    return Ok(false);
                }
            }
            if let Some(caps) = exc.caps.as_ref().filter(|c| !c.is_empty()) {
                if target.caps & mask_of_names(caps)? != 0 {
                    return Ok(false);
                }
            }
            if let Some(min) = exc.min_kernel()? {
                if target.kernel >= min {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    fn names(&self) -> Result<Vec<String>, ProfileError> {
        let names = self.names.clone().unwrap_or_default();
        match (&self.name, names.is_empty()) {
            (Some(name), false) if !name.is_empty() => {
                Err(ProfileError::NameAndNames(name.clone()))
            }
            (Some(name), true) if !name.is_empty() => Ok(vec![name.clone()]),
            (_, true) => Err(ProfileError::NoNames),
            (_, false) => Ok(names),
        }
    }
}

impl DockerProfile {
    /// Evaluates the profile for one container into an OCI `LinuxSeccomp`.
    pub fn to_oci(&self, target: &Target) -> Result<LinuxSeccomp, ProfileError> {
        if let Some(path) = self.listener_path.as_ref().filter(|p| !p.is_empty()) {
            return Err(ProfileError::Listener(path.clone()));
        }
        let default_action = self.default_action.ok_or(ProfileError::NoDefaultAction)?;
        let architectures = self.architectures()?;
        let mut syscalls = Vec::new();
        for rule in self.syscalls.iter().flatten() {
            let names = rule.names()?;
            if !rule.applies_to(target)? {
                continue;
            }
            let mut syscall = LinuxSyscall::default();
            syscall.set_names(names);
            syscall.set_action(rule.action);
            syscall.set_errno_ret(rule.errno_ret);
            syscall.set_args(rule.args.clone().filter(|a| !a.is_empty()));
            syscalls.push(syscall);
        }
        let flags: Vec<_> = self
            .flags
            .iter()
            .flatten()
            .filter_map(|f| flag_of(f))
            .collect();
        let mut seccomp = LinuxSeccomp::default();
        seccomp.set_default_action(default_action);
        seccomp.set_default_errno_ret(self.default_errno_ret);
        seccomp.set_architectures(Some(architectures).filter(|a| !a.is_empty()));
        seccomp.set_flags(Some(flags).filter(|f| !f.is_empty()));
        seccomp.set_syscalls(Some(syscalls));
        Ok(seccomp)
    }

    /// `architectures`, or from `archMap` the native entry and its sub-architectures.
    /// Names this crate does not know are dropped.
    fn architectures(&self) -> Result<Vec<Arch>, ProfileError> {
        let listed = self.architectures.as_ref().filter(|a| !a.is_empty());
        let mapped = self.arch_map.as_ref().filter(|m| !m.is_empty());
        let names: Vec<&str> = match (listed, mapped) {
            (Some(_), Some(_)) => return Err(ProfileError::ArchitecturesAndArchMap),
            (Some(list), None) => list.iter().map(String::as_str).collect(),
            (None, Some(map)) => map
                .iter()
                .filter(|entry| Some(entry.architecture.as_str()) == native_seccomp_arch())
                .flat_map(|entry| {
                    std::iter::once(entry.architecture.as_str())
                        .chain(entry.sub_architectures.iter().flatten().map(String::as_str))
                })
                .collect(),
            (None, None) => Vec::new(),
        };
        Ok(names.into_iter().filter_map(arch_of).collect())
    }
}

/// Parses a Docker JSON profile.
pub fn parse(json: &str) -> Result<DockerProfile, ProfileError> {
    Ok(serde_json::from_str(json)?)
}

/// Syscalls our default profile allows unconditionally, grouped by what they are for.
/// The semantics follow Docker's default profile (moby profiles/seccomp); names that do not
/// exist on the running architecture are skipped at compile time.
const ALLOWED: &[&[&str]] = &[
    // Files and directories.
    &[
        "access",
        "chdir",
        "chmod",
        "chown",
        "close",
        "close_range",
        "copy_file_range",
        "creat",
        "dup",
        "dup2",
        "dup3",
        "faccessat",
        "faccessat2",
        "fadvise64",
        "fallocate",
        "fchdir",
        "fchmod",
        "fchmodat",
        "fchmodat2",
        "fchown",
        "fchownat",
        "fcntl",
        "fdatasync",
        "flock",
        "fstat",
        "fstatfs",
        "fsync",
        "ftruncate",
        "futimesat",
        "getcwd",
        "getdents",
        "getdents64",
        "lchown",
        "link",
        "linkat",
        "lseek",
        "lstat",
        "mkdir",
        "mkdirat",
        "mknod",
        "mknodat",
        "newfstatat",
        "open",
        "openat",
        "openat2",
        "pipe",
        "pipe2",
        "pread64",
        "preadv",
        "preadv2",
        "pwrite64",
        "pwritev",
        "pwritev2",
        "read",
        "readahead",
        "readlink",
        "readlinkat",
        "readv",
        "rename",
        "renameat",
        "renameat2",
        "rmdir",
        "sendfile",
        "splice",
        "stat",
        "statfs",
        "statx",
        "symlink",
        "symlinkat",
        "sync",
        "sync_file_range",
        "syncfs",
        "tee",
        "truncate",
        "umask",
        "unlink",
        "unlinkat",
        "utime",
        "utimensat",
        "utimes",
        "vmsplice",
        "write",
        "writev",
        "name_to_handle_at",
        "cachestat",
    ],
    // Extended attributes.
    &[
        "fgetxattr",
        "flistxattr",
        "fremovexattr",
        "fsetxattr",
        "getxattr",
        "lgetxattr",
        "listxattr",
        "llistxattr",
        "lremovexattr",
        "lsetxattr",
        "removexattr",
        "setxattr",
        "getxattrat",
        "setxattrat",
        "listxattrat",
        "removexattrat",
    ],
    // Polling, events, notification, asynchronous I/O.
    &[
        "epoll_create",
        "epoll_create1",
        "epoll_ctl",
        "epoll_ctl_old",
        "epoll_pwait",
        "epoll_pwait2",
        "epoll_wait",
        "epoll_wait_old",
        "eventfd",
        "eventfd2",
        "fanotify_mark",
        "inotify_add_watch",
        "inotify_init",
        "inotify_init1",
        "inotify_rm_watch",
        "io_cancel",
        "io_destroy",
        "io_getevents",
        "io_pgetevents",
        "io_setup",
        "io_submit",
        // io_uring_setup, io_uring_enter and io_uring_register are left out, as in
        // Docker 25+: io_uring bypasses seccomp for the operations it performs and has
        // been a steady source of kernel privilege escalations.
        "pause",
        "poll",
        "ppoll",
        "pselect6",
        "select",
        "signalfd",
        "signalfd4",
        "timerfd_create",
        "timerfd_gettime",
        "timerfd_settime",
    ],
    // Memory.
    &[
        "brk",
        "madvise",
        "membarrier",
        "memfd_create",
        "memfd_secret",
        "mincore",
        "mlock",
        "mlock2",
        "mlockall",
        "mmap",
        "mprotect",
        "mremap",
        "msync",
        "munlock",
        "munlockall",
        "munmap",
        "pkey_alloc",
        "pkey_free",
        "pkey_mprotect",
        "remap_file_pages",
        "mseal",
        "map_shadow_stack",
    ],
    // Processes, threads, signals, scheduling.
    &[
        "execve",
        "execveat",
        "exit",
        "exit_group",
        "fork",
        "vfork",
        "wait4",
        "waitid",
        "futex",
        "futex_waitv",
        "futex_wake",
        "futex_wait",
        "futex_requeue",
        "get_robust_list",
        "set_robust_list",
        "get_thread_area",
        "set_thread_area",
        "set_tid_address",
        "gettid",
        "getpid",
        "getppid",
        "getpgid",
        "getpgrp",
        "setpgid",
        "getsid",
        "setsid",
        "kill",
        "tgkill",
        "tkill",
        "pidfd_open",
        "pidfd_send_signal",
        "process_mrelease",
        "restart_syscall",
        "rseq",
        "rt_sigaction",
        "rt_sigpending",
        "rt_sigprocmask",
        "rt_sigqueueinfo",
        "rt_sigreturn",
        "rt_sigsuspend",
        "rt_sigtimedwait",
        "rt_tgsigqueueinfo",
        "sigaltstack",
        "getpriority",
        "setpriority",
        "ioprio_get",
        "ioprio_set",
        "sched_getaffinity",
        "sched_getattr",
        "sched_getparam",
        "sched_get_priority_max",
        "sched_get_priority_min",
        "sched_getscheduler",
        "sched_rr_get_interval",
        "sched_setaffinity",
        "sched_setattr",
        "sched_setparam",
        "sched_setscheduler",
        "sched_yield",
        "getcpu",
        "prctl",
        "seccomp",
        "capget",
        "capset",
        "getrlimit",
        "setrlimit",
        "prlimit64",
        "getrusage",
        "times",
        "landlock_add_rule",
        "landlock_create_ruleset",
        "landlock_restrict_self",
    ],
    // Credentials.
    &[
        "getuid",
        "geteuid",
        "getgid",
        "getegid",
        "getgroups",
        "getresuid",
        "getresgid",
        "setuid",
        "setgid",
        "setreuid",
        "setregid",
        "setresuid",
        "setresgid",
        "setfsuid",
        "setfsgid",
        "setgroups",
    ],
    // Time.
    &[
        "adjtimex",
        "alarm",
        "clock_adjtime",
        "clock_getres",
        "clock_gettime",
        "clock_nanosleep",
        "getitimer",
        "setitimer",
        "gettimeofday",
        "nanosleep",
        "time",
        "timer_create",
        "timer_delete",
        "timer_getoverrun",
        "timer_gettime",
        "timer_settime",
    ],
    // Sockets (socket itself is conditional, below).
    &[
        "accept",
        "accept4",
        "bind",
        "connect",
        "getpeername",
        "getsockname",
        "getsockopt",
        "listen",
        "recvfrom",
        "recvmmsg",
        "recvmsg",
        "sendmmsg",
        "sendmsg",
        "sendto",
        "setsockopt",
        "shutdown",
        "socketpair",
    ],
    // System V and POSIX IPC.
    &[
        "mq_getsetattr",
        "mq_notify",
        "mq_open",
        "mq_timedreceive",
        "mq_timedsend",
        "mq_unlink",
        "msgctl",
        "msgget",
        "msgrcv",
        "msgsnd",
        "semctl",
        "semget",
        "semop",
        "semtimedop",
        "shmat",
        "shmctl",
        "shmdt",
        "shmget",
    ],
    // Miscellaneous harmless queries and controls.
    &["getrandom", "ioctl", "sysinfo", "uname"],
];

/// Syscalls allowed only when the container holds a capability, as in Docker's profile.
const ALLOWED_WITH_CAP: &[(&str, &[&str])] = &[
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    ("CAP_SYS_TIME", &["settimeofday", "clock_settime"]),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// Every CLONE_NEW* namespace flag (and CLONE_NEWTIME's neighbour bits as Docker masks them):
/// clone is allowed without CAP_SYS_ADMIN only when none of them is set.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// personality(2) values a container may set: PER_LINUX, PER_LINUX32, UNAME26,
/// UNAME26|PER_LINUX32, and 0xffffffff (query only).
const PERSONALITY_VALUES: &[u64] = &[0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// `AF_VSOCK`: sockets to the hypervisor stay closed.
const AF_VSOCK: u64 = 40;

fn arg(index: usize, value: u64, op: LinuxSeccompOperator) -> LinuxSeccompArg {
    // The builder cannot fail: every field has a default.
    LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .op(op)
        .build()
        .unwrap_or_default()
}

fn allow(names: &[&str]) -> DockerSyscall {
    DockerSyscall {
        names: Some(names.iter().map(|s| s.to_string()).collect()),
        action: LinuxSeccompAction::ScmpActAllow,
        ..Default::default()
    }
}

fn only_with_caps(mut rule: DockerSyscall, caps: &[&str]) -> DockerSyscall {
    rule.includes = Some(Condition {
        caps: Some(caps.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    });
    rule
}

fn unless_caps(mut rule: DockerSyscall, caps: &[&str]) -> DockerSyscall {
    rule.excludes = Some(Condition {
        caps: Some(caps.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    });
    rule
}

/// Our default profile, in Docker's format (so it is evaluated like a user's profile).
pub fn default_profile() -> DockerProfile {
    let mut rules: Vec<DockerSyscall> = ALLOWED.iter().map(|group| allow(group)).collect();

    // ptrace and cross-process memory access: Docker allows them on kernels >= 4.8, where
    // ptrace can no longer be used to bypass seccomp.
    let mut tracing = allow(&["ptrace", "process_vm_readv", "process_vm_writev"]);
    tracing.includes = Some(Condition {
        min_kernel: Some("4.8".into()),
        ..Default::default()
    });
    rules.push(tracing);

    let mut socket = allow(&["socket"]);
    socket.args = Some(vec![arg(0, AF_VSOCK, LinuxSeccompOperator::ScmpCmpNe)]);
    rules.push(socket);

    for value in PERSONALITY_VALUES {
        let mut personality = allow(&["personality"]);
        personality.args = Some(vec![arg(0, *value, LinuxSeccompOperator::ScmpCmpEq)]);
        rules.push(personality);
    }

    let mut arch_specific = allow(&["arch_prctl", "modify_ldt"]);
    arch_specific.includes = Some(Condition {
        arches: Some(vec!["amd64".into()]),
        ..Default::default()
    });
    rules.push(arch_specific);

    let mut arm_specific = allow(&[
        "arm_fadvise64_64",
        "arm_sync_file_range",
        "sync_file_range2",
        "breakpoint",
        "cacheflush",
        "set_tls",
    ]);
    arm_specific.includes = Some(Condition {
        arches: Some(vec!["arm".into(), "arm64".into()]),
        ..Default::default()
    });
    rules.push(arm_specific);

    for (cap, names) in ALLOWED_WITH_CAP {
        rules.push(only_with_caps(allow(names), &[cap]));
    }

    // Without CAP_SYS_ADMIN: clone only without namespace flags, and clone3 (whose flags
    // live in memory a filter cannot read) answers ENOSYS so libcs fall back to clone.
    let mut plain_clone = allow(&["clone"]);
    plain_clone.args = Some(vec![arg(
        0,
        CLONE_NAMESPACE_FLAGS,
        LinuxSeccompOperator::ScmpCmpMaskedEq,
    )]);
    rules.push(unless_caps(plain_clone, &["CAP_SYS_ADMIN"]));
    let clone3 = DockerSyscall {
        names: Some(vec!["clone3".into()]),
        action: LinuxSeccompAction::ScmpActErrno,
        errno_ret: Some(libc::ENOSYS as u32),
        ..Default::default()
    };
    rules.push(unless_caps(clone3, &["CAP_SYS_ADMIN"]));

    DockerProfile {
        default_action: Some(LinuxSeccompAction::ScmpActErrno),
        default_errno_ret: Some(libc::EPERM as u32),
        arch_map: Some(vec![
            ArchMapEntry {
                architecture: "SCMP_ARCH_X86_64".into(),
                sub_architectures: Some(vec!["SCMP_ARCH_X86".into(), "SCMP_ARCH_X32".into()]),
            },
            ArchMapEntry {
                architecture: "SCMP_ARCH_AARCH64".into(),
                sub_architectures: Some(vec!["SCMP_ARCH_ARM".into()]),
            },
        ]),
        syscalls: Some(rules),
        ..Default::default()
    }
}

/// Docker's default seccomp profile for a container whose bounding set is `caps`
/// (e.g. with `--cap-add SYS_ADMIN` it allows mount, as Docker does).
pub fn default_seccomp_for_caps<S: AsRef<str>>(caps: &[S]) -> anyhow::Result<LinuxSeccomp> {
    let target = Target::native(mask_of_names(caps)?);
    Ok(default_profile().to_oci(&target)?)
}

/// Parses a Docker seccomp profile (JSON) for a container whose bounding set is `caps`.
pub fn seccomp_from_docker_profile_for_caps<S: AsRef<str>>(
    json: &str,
    caps: &[S],
) -> anyhow::Result<LinuxSeccomp> {
    let target = Target::native(mask_of_names(caps)?);
    Ok(parse(json)?.to_oci(&target)?)
}

/// Docker's default seccomp profile as an OCI `LinuxSeccomp` (EPERM for what it blocks),
/// for a container holding Docker's default capabilities.
#[cfg(test)]
pub fn default_seccomp() -> Option<LinuxSeccomp> {
    default_seccomp_for_caps(super::DEFAULT_CAPS).ok()
}

/// Parses a Docker seccomp profile (JSON) into an OCI `LinuxSeccomp`, evaluating its
/// capability conditions against Docker's default capabilities.
#[cfg(test)]
pub fn seccomp_from_docker_profile(json: &str) -> anyhow::Result<LinuxSeccomp> {
    seccomp_from_docker_profile_for_caps(json, super::DEFAULT_CAPS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(caps: &[&str]) -> Target {
        Target {
            caps: mask_of_names(caps).unwrap(),
            kernel: (6, 1),
            arch: "amd64",
        }
    }

    fn allowed_names(seccomp: &LinuxSeccomp) -> Vec<String> {
        seccomp
            .syscalls()
            .iter()
            .flatten()
            .filter(|s| s.action() == LinuxSeccompAction::ScmpActAllow)
            .flat_map(|s| s.names().clone())
            .collect()
    }

    #[test]
    fn parses_docker_format_and_evaluates_conditions() {
        let json = r#"{
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "archMap": [
                {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                {"architecture": "SCMP_ARCH_RISCV64", "subArchitectures": null}
            ],
            "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "comment": "basics"},
                {"name": "getpid", "action": "SCMP_ACT_ALLOW", "args": []},
                {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
                {"names": ["newer"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "7.2"}},
                {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "x32"]}},
                {"names": ["s390_only"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["s390x"]}},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
                 "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}},
                {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
                 "excludes": {"caps": ["CAP_SYS_ADMIN"]}}
            ]
        }"#;
        let profile = parse(json).unwrap();

        let plain = profile.to_oci(&target(&["CAP_CHOWN"])).unwrap();
        assert_eq!(plain.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(plain.default_errno_ret(), Some(1));
        let names = allowed_names(&plain);
        for expected in ["read", "write", "getpid", "ptrace", "arch_prctl", "clone"] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} missing from {names:?}"
            );
        }
        for unexpected in ["mount", "newer", "s390_only"] {
            assert!(
                !names.iter().any(|n| n == unexpected),
                "{unexpected} in {names:?}"
            );
        }
        let clone = plain
            .syscalls()
            .iter()
            .flatten()
            .find(|s| s.names() == &["clone".to_string()])
            .unwrap();
        let clone_arg = clone.args().as_ref().unwrap()[0];
        assert_eq!(clone_arg.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        assert_eq!(clone_arg.value(), 0x7E02_0000);
        let clone3 = plain
            .syscalls()
            .iter()
            .flatten()
            .find(|s| s.names() == &["clone3".to_string()])
            .unwrap();
        assert_eq!(clone3.errno_ret(), Some(38));
        let arches = plain.architectures().clone().unwrap();
        assert_eq!(
            arches,
            vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
        );

        let admin = profile.to_oci(&target(&["CAP_SYS_ADMIN"])).unwrap();
        let names = allowed_names(&admin);
        assert!(names.iter().any(|n| n == "mount"));
        assert!(
            !names.iter().any(|n| n == "clone"),
            "conditional clone excluded with SYS_ADMIN"
        );
        assert!(!admin
            .syscalls()
            .iter()
            .flatten()
            .any(|s| s.names().contains(&"clone3".to_string())));
    }

    #[test]
    fn rejects_malformed_profiles() {
        let cases = [
            (r#"{"syscalls": []}"#, "defaultAction"),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"name": "a", "names": ["b"], "action": "SCMP_ACT_ERRNO"}]}"#,
                "both name",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ERRNO"}]}"#,
                "no syscall name",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"], "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}"#,
                "architectures and archMap",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_FLY"]}}]}"#,
                "CAP_FLY",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "new"}}]}"#,
                "minKernel",
            ),
            (r#"{"defaultAction": "SCMP_ACT_NOPE"}"#, "JSON"),
            (r#"{"defaultAction": "SCMP_ACT_ALLOW""#, "JSON"),
        ];
        for (json, needle) in cases {
            let err = parse(json)
                .and_then(|p| p.to_oci(&target(&[])))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn default_profile_blocks_the_dangerous_calls_with_default_caps() {
        let seccomp = default_profile()
            .to_oci(&target(super::super::DEFAULT_CAPS))
            .unwrap();
        assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(seccomp.default_errno_ret(), Some(libc::EPERM as u32));
        let names = allowed_names(&seccomp);
        for blocked in [
            "kexec_load",
            "init_module",
            "finit_module",
            "delete_module",
            "bpf",
            "keyctl",
            "add_key",
            "request_key",
            "open_by_handle_at",
            "unshare",
            "mount",
            "umount2",
            "pivot_root",
            "reboot",
            "swapon",
            "setns",
            "clone3",
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
        ] {
            assert!(!names.iter().any(|n| n == blocked), "{blocked} is allowed");
        }
        for allowed in [
            "read",
            "execve",
            "ptrace",
            "chroot",
            "socket",
            "personality",
            "clone",
        ] {
            assert!(names.iter().any(|n| n == allowed), "{allowed} is blocked");
        }
    }

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(parse_kernel_version("6.18.0-13-amd64"), Some((6, 18)));
        assert_eq!(parse_kernel_version("4.8"), Some((4, 8)));
        assert_eq!(parse_kernel_version("5"), Some((5, 0)));
        assert_eq!(parse_kernel_version("x"), None);
        assert!(running_kernel() >= (3, 0));
    }
}
