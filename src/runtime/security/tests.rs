//! Behaviour tests (root): fork, apply the prepared settings in the child exactly as the
//! runtime does (before_user_switch, setgroups/setresgid/setresuid, after_user_switch),
//! probe syscalls, then exec busybox to print /proc/self/status, so the capability sets are
//! observed after execve, where they matter.
//!
//! The child runs in a multi-threaded test process, so it only makes raw syscalls on
//! memory prepared before fork; results travel back over a pipe.
//!
//! The tests here need only "some" capabilities and "some" filter; the tests of Docker's
//! default profile (container/policy/tests.rs) use this harness too.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use oci_spec::runtime::{
    Capabilities, LinuxCapabilitiesBuilder, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompBuilder,
    LinuxSyscallBuilder, Spec,
};

use super::*;

const BUSYBOX: &str = "/bin/busybox";

/// A syscall made in the child after the security settings are applied: returns 0 on
/// success or the errno. Must be async-signal-safe.
type Probe = fn() -> i32;

fn errno_of(rc: libc::c_long) -> i32 {
    if rc < 0 {
        // SAFETY: reading the thread's errno right after the failed call.
        unsafe { *libc::__errno_location() }
    } else {
        0
    }
}

fn probe_keyctl() -> i32 {
    // KEYCTL_GET_KEYRING_ID of the session keyring, without creating it.
    // SAFETY: integer arguments only.
    errno_of(unsafe { libc::syscall(libc::SYS_keyctl, 0, -3i64, 0) })
}

fn probe_mount() -> i32 {
    let target = b"/nonexistent-mycontainer-probe\0";
    let fstype = b"tmpfs\0";
    // SAFETY: NUL-terminated static strings; the target does not exist, so an allowed
    // call fails with ENOENT and mounts nothing.
    errno_of(unsafe {
        libc::mount(
            fstype.as_ptr().cast(),
            target.as_ptr().cast(),
            fstype.as_ptr().cast(),
            0,
            std::ptr::null(),
        )
    } as libc::c_long)
}

fn probe_unshare_user_ns() -> i32 {
    // In a grandchild, so a success cannot change the child's own credentials.
    // SAFETY: fork in the (single-threaded) child; the grandchild only makes raw calls.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: integer argument only; _exit never returns.
        unsafe {
            let rc = libc::unshare(libc::CLONE_NEWUSER);
            libc::_exit(errno_of(rc as libc::c_long));
        }
    }
    if pid < 0 {
        return 255;
    }
    let mut status = 0;
    // SAFETY: waiting for our own child with a valid status pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        254
    }
}

/// clone(2) as fork, with `extra` flags; the new process exits at once.
fn clone_with(extra: libc::c_long) -> i32 {
    // SAFETY: clone without CLONE_VM and with a NULL stack behaves like fork: the child
    // gets a copy of our memory and only calls _exit.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::c_long::from(libc::SIGCHLD) | extra,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if rc == 0 {
        // SAFETY: leaving the cloned child.
        unsafe { libc::_exit(0) };
    }
    let err = errno_of(rc);
    if rc > 0 {
        let mut status = 0;
        // SAFETY: waiting for our own child with a valid status pointer.
        unsafe { libc::waitpid(rc as libc::pid_t, &mut status, 0) };
    }
    err
}

fn probe_clone_plain() -> i32 {
    clone_with(0)
}

fn probe_clone_user_ns() -> i32 {
    clone_with(libc::CLONE_NEWUSER as libc::c_long)
}

fn probe_clone3() -> i32 {
    // SAFETY: a NULL args pointer with size 0: the kernel rejects it with EINVAL unless a
    // filter answers first.
    errno_of(unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize) })
}

fn probe_vsock() -> i32 {
    // SAFETY: plain socket call; a returned descriptor is closed at once.
    let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM, 0) };
    let err = errno_of(fd as libc::c_long);
    if fd >= 0 {
        // SAFETY: closing the descriptor we just got.
        unsafe { libc::close(fd) };
    }
    err
}

fn probe_unix_socket() -> i32 {
    // SAFETY: as in probe_vsock.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) };
    let err = errno_of(fd as libc::c_long);
    if fd >= 0 {
        // SAFETY: closing the descriptor we just got.
        unsafe { libc::close(fd) };
    }
    err
}

fn probe_uname() -> i32 {
    // SAFETY: utsname is plain bytes; all zeroes is a valid value.
    let mut buf: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: buf is a valid, writable utsname.
    errno_of(unsafe { libc::uname(&mut buf) } as libc::c_long)
}

fn probe_personality_query() -> i32 {
    // SAFETY: 0xffffffff only queries the persona.
    errno_of(unsafe { libc::personality(0xffff_ffff) } as libc::c_long)
}

fn probe_mkdir() -> i32 {
    let path = b"/nonexistent-mycontainer-probe/dir\0";
    // SAFETY: NUL-terminated static path under a directory that does not exist.
    errno_of(unsafe { libc::mkdir(path.as_ptr().cast(), 0o700) } as libc::c_long)
}

const PROBES: &[(&str, Probe)] = &[
    ("keyctl", probe_keyctl),
    ("mount", probe_mount),
    ("unshare_user_ns", probe_unshare_user_ns),
    ("clone3", probe_clone3),
    ("clone_plain", probe_clone_plain),
    ("clone_user_ns", probe_clone_user_ns),
    ("vsock", probe_vsock),
    ("unix_socket", probe_unix_socket),
    ("uname", probe_uname),
    ("personality_query", probe_personality_query),
    ("mkdir", probe_mkdir),
];

/// What the child reported.
#[derive(Debug)]
pub(crate) struct Report {
    /// errno per probe, by name.
    probes: Vec<(&'static str, i32)>,
    /// /proc/self/status of busybox after execve.
    pub(crate) status: String,
}

impl Report {
    pub(crate) fn probe(&self, name: &str) -> i32 {
        self.probes
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, e)| *e)
            .unwrap_or_else(|| panic!("no probe {name}"))
    }

    pub(crate) fn field(&self, name: &str) -> &str {
        self.status
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {name} in status:\n{}", self.status))
    }
}

/// Header the child writes before exec: failed stage (0 = none), errno, probe results.
const HEADER_WORDS: usize = 2 + 16;

fn write_all(fd: i32, bytes: &[u8]) {
    let mut done = 0;
    while done < bytes.len() {
        // SAFETY: writing from a live buffer to our pipe.
        let n = unsafe { libc::write(fd, bytes[done..].as_ptr().cast(), bytes.len() - done) };
        if n <= 0 {
            return;
        }
        done += n as usize;
    }
}

/// Child side: never returns. Stages: 1 before_user_switch, 2 user switch,
/// 3 after_user_switch, 4 exec.
fn child(prepared: &Prepared, uid: Option<u32>, fd: i32, argv: &[*const libc::c_char]) -> ! {
    let mut header = [0i32; HEADER_WORDS];
    let fail = |header: &mut [i32; HEADER_WORDS], stage: i32, errno: i32| -> ! {
        header[0] = stage;
        header[1] = errno;
        // SAFETY: viewing a plain i32 array as bytes for the pipe.
        let bytes =
            unsafe { std::slice::from_raw_parts(header.as_ptr().cast::<u8>(), HEADER_WORDS * 4) };
        write_all(fd, bytes);
        // SAFETY: leaving the forked child without running the parent's destructors.
        unsafe { libc::_exit(1) }
    };
    if let Err(e) = prepared.before_user_switch() {
        fail(&mut header, 1, e as i32);
    }
    if let Some(uid) = uid {
        // SAFETY: credential syscalls with integer arguments.
        let rc = unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(uid, uid, uid) != 0
                || libc::setresuid(uid, uid, uid) != 0
            {
                -1
            } else {
                0
            }
        };
        if rc != 0 {
            fail(&mut header, 2, errno_of(-1));
        }
    }
    if let Err(e) = prepared.after_user_switch() {
        fail(&mut header, 3, e as i32);
    }
    for (slot, (_, probe)) in header[2..].iter_mut().zip(PROBES) {
        *slot = probe();
    }
    // SAFETY: as above.
    let bytes =
        unsafe { std::slice::from_raw_parts(header.as_ptr().cast::<u8>(), HEADER_WORDS * 4) };
    write_all(fd, bytes);
    // SAFETY: stdout becomes the pipe; argv is a NULL-terminated array of C strings built
    // before fork; the environment is empty.
    unsafe {
        libc::dup2(fd, 1);
        let envp: [*const libc::c_char; 1] = [std::ptr::null()];
        libc::execve(argv[0], argv.as_ptr(), envp.as_ptr());
    }
    fail(&mut header, 4, errno_of(-1))
}

/// Forks, applies `spec`'s security settings as user `uid` (None = stay root), probes and
/// execs busybox to print /proc/self/status.
pub(crate) fn run(spec: &Spec, uid: Option<u32>) -> Report {
    run_busybox(spec, uid, &["cat", "/proc/self/status"])
}

/// Like [`run`], but execs `busybox ARGS...`; its stdout becomes `Report::status`.
pub(crate) fn run_busybox(spec: &Spec, uid: Option<u32>, args: &[&str]) -> Report {
    assert!(
        nix::unistd::geteuid().is_root(),
        "behaviour tests need root"
    );
    let prepared = prepare(spec).unwrap();
    let strings: Vec<CString> = std::iter::once(BUSYBOX)
        .chain(args.iter().copied())
        .map(|s| CString::new(s).unwrap())
        .collect();
    let argv: Vec<*const libc::c_char> = strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let (read_end, write_end) = cloexec_pipe();

    // SAFETY: the child only makes raw syscalls on memory prepared above, then execs or
    // _exits (see `child`).
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            close_all_but(write_end.as_raw_fd());
            child(&prepared, uid, write_end.as_raw_fd(), &argv)
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            let mut pipe = std::fs::File::from(read_end);
            let mut bytes = Vec::new();
            pipe.read_to_end(&mut bytes).unwrap();
            let status = waitpid(child, None).unwrap();
            assert!(
                bytes.len() >= HEADER_WORDS * 4,
                "child wrote {} bytes, {status:?}",
                bytes.len()
            );
            let words: Vec<i32> = bytes[..HEADER_WORDS * 4]
                .chunks_exact(4)
                .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            assert_eq!(
                (words[0], words[1]),
                (0, 0),
                "child failed at stage {} with errno {} ({})",
                words[0],
                words[1],
                nix::errno::Errno::from_raw(words[1])
            );
            assert_eq!(status, WaitStatus::Exited(child, 0));
            Report {
                probes: PROBES
                    .iter()
                    .zip(&words[2..])
                    .map(|((name, _), e)| (*name, *e))
                    .collect(),
                status: String::from_utf8_lossy(&bytes[HEADER_WORDS * 4..]).into_owned(),
            }
        }
    }
}

/// First thing in a forked child: closes every descriptor from 3 up but `keep`. The
/// child shares the descriptors of a multi-threaded test process, and an flock (a
/// container record's lock) lives while any copy is open: a child that probes or spins
/// before exec would keep another test's dropped record locked. Async-signal-safe.
fn close_all_but(keep: i32) {
    // SAFETY: close_range on this child's own descriptor table; `keep` stays valid.
    unsafe {
        if keep > 3 {
            libc::syscall(libc::SYS_close_range, 3u32, (keep - 1) as u32, 0u32);
        }
        libc::syscall(
            libc::SYS_close_range,
            (keep + 1).max(3) as u32,
            u32::MAX,
            0u32,
        );
    }
}

/// A pipe that children forked by other tests running in parallel do not inherit past
/// their exec (which would delay our end-of-file until they exit).
fn cloexec_pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap()
}

fn caps(names: &[&str]) -> Capabilities {
    names
        .iter()
        .map(|n| serde_json::from_value(serde_json::json!(n)).unwrap())
        .collect()
}

/// A spec the way the spec builder makes it: `bounding` in the bounding set, `granted` in
/// effective/permitted/inheritable, `ambient` in the ambient set.
pub(crate) fn spec(
    bounding: &[&str],
    granted: &[&str],
    ambient: &[&str],
    no_new_privs: bool,
    seccomp: Option<LinuxSeccomp>,
) -> Spec {
    let mut spec = Spec::default();
    let mut process = spec.process().clone().unwrap();
    process.set_capabilities(Some(
        LinuxCapabilitiesBuilder::default()
            .bounding(caps(bounding))
            .effective(caps(granted))
            .permitted(caps(granted))
            .inheritable(caps(granted))
            .ambient(caps(ambient))
            .build()
            .unwrap(),
    ));
    process.set_no_new_privileges(Some(no_new_privs));
    spec.set_process(Some(process));
    let mut linux = spec.linux().clone().unwrap();
    linux.set_seccomp(seccomp);
    spec.set_linux(Some(linux));
    spec
}

/// A bounding set for the tests: CHOWN, KILL, SETGID, SETUID, NET_BIND_SERVICE.
const CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_NET_BIND_SERVICE",
];

/// The mask of [`CAPS`] as /proc/self/status prints it.
const CAPS_MASK: &str = "00000000000004e1";

/// A filter that allows everything but keyctl and unshare (EPERM): enough to see that
/// a filter is loaded and in force, whatever the user.
fn some_filter() -> Option<LinuxSeccomp> {
    let deny = LinuxSyscallBuilder::default()
        .names(vec!["keyctl".to_string(), "unshare".to_string()])
        .action(LinuxSeccompAction::ScmpActErrno)
        .build()
        .unwrap();
    Some(
        LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActAllow)
            .syscalls(vec![deny])
            .build()
            .unwrap(),
    )
}

#[test]
fn non_root_user_gets_no_capabilities_but_the_filter() {
    // Docker semantics: the spec builder gives a non-root user empty effective/permitted.
    let spec = spec(CAPS, &[], &[], false, some_filter());
    let report = run(&spec, Some(1000));
    assert_eq!(report.field("Uid"), "1000\t1000\t1000\t1000");
    assert_eq!(report.field("CapEff"), "0000000000000000");
    assert_eq!(report.field("CapPrm"), "0000000000000000");
    assert_eq!(report.field("CapBnd"), CAPS_MASK);
    assert_eq!(report.field("Seccomp"), "2");
    assert_eq!(report.field("NoNewPrivs"), "0");
    assert_eq!(report.probe("keyctl"), libc::EPERM);
    assert_eq!(report.probe("unshare_user_ns"), libc::EPERM);
    assert_eq!(report.probe("uname"), 0);
}

#[test]
fn no_new_privileges_when_asked() {
    let spec = spec(CAPS, &[], &[], true, some_filter());
    let report = run(&spec, Some(1000));
    assert_eq!(report.field("NoNewPrivs"), "1");
    assert_eq!(report.field("Seccomp"), "2");
    assert_eq!(report.field("CapEff"), "0000000000000000");

    let spec = self::spec(CAPS, CAPS, &[], true, some_filter());
    let report = run(&spec, None);
    assert_eq!(report.field("NoNewPrivs"), "1");
    assert_eq!(report.field("Seccomp"), "2");
    assert_eq!(report.field("CapEff"), CAPS_MASK);
}

#[test]
fn ambient_capability_survives_exec_for_non_root() {
    let bind = ["CAP_NET_BIND_SERVICE"];
    let spec = spec(CAPS, &bind, &bind, false, some_filter());
    let report = run(&spec, Some(1000));
    // CAP_NET_BIND_SERVICE is bit 10.
    assert_eq!(report.field("CapAmb"), "0000000000000400");
    assert_eq!(report.field("CapEff"), "0000000000000400");
    assert_eq!(report.field("CapInh"), "0000000000000400");
}

#[test]
fn caps_drop_all_leaves_nothing() {
    let report = run(&spec(&[], &[], &[], false, some_filter()), None);
    assert_eq!(report.field("CapEff"), "0000000000000000");
    assert_eq!(report.field("CapBnd"), "0000000000000000");
    assert_eq!(report.field("Seccomp"), "2");
}

/// Nanoseconds on the monotonic clock (async-signal-safe).
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// In a forked child: time `prepared.after_user_switch()` (which loads the filter when
/// no_new_privs is set) and then `calls` getppid calls; returns (load ns, loop ns).
pub(crate) fn time_in_child(prepared: &Prepared, calls: u64) -> (u64, u64) {
    let (read_end, write_end) = cloexec_pipe();
    // SAFETY: the child makes raw syscalls only and _exits.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            close_all_but(write_end.as_raw_fd());
            let t0 = now_ns();
            let loaded = prepared.after_user_switch().is_ok();
            let t1 = now_ns();
            for _ in 0..calls {
                // SAFETY: getppid has no arguments and cannot fail.
                unsafe { libc::syscall(libc::SYS_getppid) };
            }
            let t2 = now_ns();
            let words = [u64::from(loaded), t1 - t0, t2 - t1];
            // SAFETY: viewing a u64 array as bytes for the pipe.
            let bytes = unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), 24) };
            write_all(write_end.as_raw_fd(), bytes);
            // SAFETY: leaving the forked child.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            let mut bytes = Vec::new();
            std::fs::File::from(read_end)
                .read_to_end(&mut bytes)
                .unwrap();
            waitpid(child, None).unwrap();
            let word = |i: usize| u64::from_ne_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap());
            assert_eq!(word(0), 1, "after_user_switch failed in the timing child");
            (word(1), word(2))
        }
    }
}

/// A field of this (test) process's /proc/self/status.
fn own_status(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
        .map(|v| v.trim().to_string())
        .unwrap()
}

#[test]
fn privileged_gets_every_capability_the_runtime_holds() {
    // Every capability the caps crate knows, as --privileged asks; the host's root may
    // lack some (this VM's lacks CAP_SYS_RESOURCE): those are left out, not an error.
    let all: Vec<String> = ::caps::all().iter().map(|c| c.to_string()).collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let report = run(&spec(&all, &all, &[], false, None), None);
    assert_eq!(report.field("CapEff"), own_status("CapPrm"));
    assert_eq!(report.field("CapBnd"), own_status("CapBnd"));
    assert_eq!(report.field("Seccomp"), "0");
}
