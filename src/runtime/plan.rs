//! The container's setup as a list of prepared steps. The parent builds the list (all
//! strings already `CString`s) before the clone; the child only walks it making raw
//! syscalls, which keeps it async-signal-safe. A failing step is reported back by index,
//! so the parent can say in words what failed.

use std::ffi::CString;
use std::fmt;

use libc::{c_ulong, mode_t};

/// One setup action in the child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Waits until the parent has placed us in our cgroup (one byte on the setup
    /// channel; end of file means the parent died). Carried out by `child_main`, which
    /// holds the channel: everything before it overlaps with the parent's cgroup
    /// migration, nothing after it runs outside the cgroup.
    AwaitCgroup,
    /// Enters a new cgroup namespace (after the parent moved us into our cgroup, so the
    /// container sees its own cgroup as `/`).
    UnshareCgroup,
    Mount {
        source: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: c_ulong,
        data: Option<CString>,
    },
    /// mkdir that tolerates an existing entry.
    Mkdir {
        path: CString,
        mode: mode_t,
    },
    /// Creates an empty file (a bind-mount target) unless something exists there.
    CreateFile {
        path: CString,
    },
    Mknod {
        path: CString,
        mode: mode_t,
        dev: libc::dev_t,
    },
    /// Sets the owner of a node we created (a device of the spec's linux.devices).
    Chown {
        path: CString,
        uid: libc::uid_t,
        gid: libc::gid_t,
    },
    Symlink {
        target: CString,
        link: CString,
    },
    /// chdir(new_root); pivot_root(".", put_old); chdir("/").
    PivotRoot {
        new_root: CString,
        put_old: CString,
    },
    /// Lazily unmounts a tree (the old root after pivot_root).
    Detach {
        target: CString,
    },
    Rmdir {
        path: CString,
    },
    /// Hides a path: /dev/null over a file, an empty read-only tmpfs over a directory.
    /// Missing paths are skipped.
    Mask {
        path: CString,
    },
    /// Bind-mounts a path onto itself read-only. Missing paths are skipped.
    ReadonlyBind {
        path: CString,
    },
    SetHostname {
        name: CString,
    },
    /// Brings up `lo` in the new network namespace.
    LoopbackUp,
    Chdir {
        path: CString,
    },
    /// Joins the namespace `fd` refers to (`exec`); `kind` names it for messages.
    Setns {
        fd: libc::c_int,
        nstype: libc::c_int,
        kind: &'static str,
    },
}

fn show(s: &CString) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(s.as_bytes())
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::AwaitCgroup => write!(f, "wait to be placed in the container's cgroup"),
            Step::UnshareCgroup => write!(f, "create the cgroup namespace"),
            Step::Mount {
                source,
                target,
                fstype,
                flags,
                ..
            } => {
                let what = fstype
                    .as_ref()
                    .or(source.as_ref())
                    .map(show)
                    .unwrap_or_else(|| "(remount)".into());
                write!(f, "mount {what} on {} (flags {flags:#x})", show(target))
            }
            Step::Mkdir { path, .. } => write!(f, "create directory {}", show(path)),
            Step::CreateFile { path } => write!(f, "create mount point {}", show(path)),
            Step::Mknod { path, .. } => write!(f, "create device {}", show(path)),
            Step::Chown { path, uid, gid } => {
                write!(f, "set the owner of {} to {uid}:{gid}", show(path))
            }
            Step::Symlink { link, target } => {
                write!(f, "create symlink {} -> {}", show(link), show(target))
            }
            Step::PivotRoot { new_root, .. } => write!(f, "pivot_root into {}", show(new_root)),
            Step::Detach { target } => write!(f, "detach {}", show(target)),
            Step::Rmdir { path } => write!(f, "remove {}", show(path)),
            Step::Mask { path } => write!(f, "mask {}", show(path)),
            Step::ReadonlyBind { path } => write!(f, "make {} read-only", show(path)),
            Step::SetHostname { name } => write!(f, "set the hostname to {}", show(name)),
            Step::LoopbackUp => write!(f, "bring up the loopback interface"),
            Step::Chdir { path } => write!(f, "enter the working directory {}", show(path)),
            Step::Setns { kind, .. } => write!(f, "join the container's {kind} namespace"),
        }
    }
}

/// Runs one step. Async-signal-safe: raw syscalls on prepared data, no allocation.
pub fn execute(step: &Step) -> Result<(), i32> {
    // SAFETY (for every block below): each call passes NUL-terminated strings owned by
    // the plan, which outlives the call, or null where the syscall allows it.
    match step {
        // child_main reads the release byte itself; nothing to do here.
        Step::AwaitCgroup => Ok(()),
        Step::UnshareCgroup => check(unsafe { libc::unshare(libc::CLONE_NEWCGROUP) }),
        Step::Mount {
            source,
            target,
            fstype,
            flags,
            data,
        } => check(unsafe {
            libc::mount(
                ptr(source),
                target.as_ptr(),
                ptr(fstype),
                *flags,
                data.as_ref()
                    .map_or(std::ptr::null(), |d| d.as_ptr().cast()),
            )
        }),
        Step::Mkdir { path, mode } => {
            tolerate(unsafe { libc::mkdir(path.as_ptr(), *mode) }, libc::EEXIST)
        }
        Step::CreateFile { path } => {
            let fd = unsafe {
                libc::open(
                    path.as_ptr(),
                    libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o644,
                )
            };
            if fd >= 0 {
                unsafe { libc::close(fd) };
            }
            tolerate(fd, libc::EEXIST)
        }
        Step::Mknod { path, mode, dev } => tolerate(
            unsafe { libc::mknod(path.as_ptr(), *mode, *dev) },
            libc::EEXIST,
        ),
        Step::Chown { path, uid, gid } => check(unsafe { libc::lchown(path.as_ptr(), *uid, *gid) }),
        Step::Symlink { target, link } => tolerate(
            unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) },
            libc::EEXIST,
        ),
        Step::PivotRoot { new_root, put_old } => {
            check(unsafe { libc::chdir(new_root.as_ptr()) })?;
            check(unsafe {
                libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), put_old.as_ptr()) as i32
            })?;
            check(unsafe { libc::chdir(c"/".as_ptr()) })
        }
        Step::Detach { target } => {
            check(unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) })
        }
        Step::Rmdir { path } => check(unsafe { libc::rmdir(path.as_ptr()) }),
        Step::Mask { path } => mask(path),
        Step::ReadonlyBind { path } => readonly_bind(path),
        Step::SetHostname { name } => {
            check(unsafe { libc::sethostname(name.as_ptr(), name.as_bytes().len()) })
        }
        Step::LoopbackUp => loopback_up(),
        Step::Chdir { path } => check(unsafe { libc::chdir(path.as_ptr()) }),
        Step::Setns { fd, nstype, .. } => check(unsafe { libc::setns(*fd, *nstype) }),
    }
}

fn ptr(s: &Option<CString>) -> *const libc::c_char {
    s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr())
}

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn check(rc: i32) -> Result<(), i32> {
    if rc < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

fn tolerate(rc: i32, allowed: i32) -> Result<(), i32> {
    match check(rc) {
        Err(e) if e == allowed => Ok(()),
        other => other,
    }
}

fn is_dir(path: &CString) -> Result<bool, i32> {
    // SAFETY: stat fills a zeroed struct we own; the path is NUL-terminated.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    check(unsafe { libc::stat(path.as_ptr(), &mut st) })?;
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

fn mask(path: &CString) -> Result<(), i32> {
    let dir = match is_dir(path) {
        Ok(dir) => dir,
        Err(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    // SAFETY: mount with NUL-terminated literals and the plan's path.
    if dir {
        check(unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                path.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_RDONLY,
                std::ptr::null(),
            )
        })
    } else {
        check(unsafe {
            libc::mount(
                c"/dev/null".as_ptr(),
                path.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        })
    }
}

fn readonly_bind(path: &CString) -> Result<(), i32> {
    // SAFETY: mount with the plan's NUL-terminated path.
    let rc = unsafe {
        libc::mount(
            path.as_ptr(),
            path.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        )
    };
    match check(rc) {
        Err(libc::ENOENT) => return Ok(()),
        other => other?,
    }
    // SAFETY: as above; a remount only changes the flags of the bind just made.
    check(unsafe {
        libc::mount(
            std::ptr::null(),
            path.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND
                | libc::MS_REMOUNT
                | libc::MS_RDONLY
                | libc::MS_NOSUID
                | libc::MS_NODEV
                | libc::MS_NOEXEC,
            std::ptr::null(),
        )
    })
}

fn loopback_up() -> Result<(), i32> {
    // SAFETY: a socket and two ioctls on a zeroed ifreq we own, named "lo".
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        check(fd)?;
        let mut req: libc::ifreq = std::mem::zeroed();
        req.ifr_name[0] = b'l' as libc::c_char;
        req.ifr_name[1] = b'o' as libc::c_char;
        let mut result = check(libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req));
        if result.is_ok() {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            result = check(libc::ioctl(fd, libc::SIOCSIFFLAGS, &req));
        }
        libc::close(fd);
        result
    }
}
