//! The container's setup as a list of prepared steps. The parent builds the list (all
//! strings already `CString`s) before the clone; the child only walks it making raw
//! syscalls, which keeps it async-signal-safe. A failing step is reported back by index,
//! so the parent can say in words what failed.
//!
//! Paths come in two kinds. Host paths (the steps before [`Step::OpenRoot`]: the root
//! mount, bind sources) are the runtime's. Container paths (every step after it) are the
//! image's: any component may be a symlink the image or the container's last run put
//! there. So container paths are resolved with openat2 inside the root and without
//! magic links (see [`resolve`]): until pivot_root inside the root filesystem's
//! descriptor (only the mount steps, which attach by descriptor, so that createContainer
//! hooks see the mounts), after it inside "/", once the host's root is detached (every
//! step that takes a plain path: mknod, lchown, symlink, sysctl writes, chdir). What
//! the container needs from the host is opened before, as detached mounts in
//! [`Slots`].

use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::fmt;
use std::os::fd::RawFd;

use libc::{c_ulong, mode_t};

/// One setup action in the child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Waits until the parent has placed us in our cgroup (one byte on the setup
    /// channel; end of file means the parent died). Carried out by `child_main`, which
    /// holds the channel: everything before it overlaps with the parent's cgroup
    /// migration, nothing after it runs outside the cgroup.
    AwaitCgroup,
    /// The runtime CLI's `create` with hooks: tells the parent, which runs prestart and
    /// createRuntime and writes the hooks' state, waits for its byte, then runs the
    /// createContainer hooks (see hooks.rs). Carried out by `child_main`; just before
    /// pivot_root, with the root filesystem and the spec's mounts mounted.
    ContainerHooks,
    /// In a new user namespace, once the parent wrote its maps: becomes its root (our
    /// host ids are not mapped there, so what we create would have no owner).
    BecomeNsRoot,
    /// Enters a new cgroup namespace (after the parent moved us into our cgroup, so the
    /// container sees its own cgroup as `/`).
    UnshareCgroup,
    /// mount(2) on a host path: only before pivot_root (the propagation of the whole
    /// tree, the root itself).
    Mount {
        source: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: c_ulong,
        data: Option<CString>,
    },
    /// Opens the host path `source` as a detached copy of its mount (open_tree with
    /// OPEN_TREE_CLONE; with the mounts below it when `recursive`, as rbind) into `slot`:
    /// a bind mount's source, taken while the host's root is still there.
    OpenTree {
        source: CString,
        recursive: bool,
        slot: usize,
    },
    /// Creates a new filesystem of type `fstype` (proc, sysfs) as a detached mount with
    /// the attributes `attrs` (MOUNT_ATTR_*) into `slot`, attached later by a Bind step.
    /// In a user namespace the kernel lets proc and sysfs be mounted only where a full
    /// view of them is already mounted: the host's, before pivot_root detaches it.
    OpenFs {
        fstype: CString,
        attrs: u64,
        slot: usize,
    },
    /// Opens the container's root filesystem `path` (a host path, mounted by the steps
    /// before): the root the container paths of the next steps are resolved in
    /// (RESOLVE_IN_ROOT, without magic links), until pivot_root. The spec's mounts are
    /// attached there, before pivot_root, so that the createContainer hooks (run just
    /// before it, with the host's root) see them, as runc's do.
    OpenRoot {
        path: CString,
    },
    /// chdir(new_root); pivot_root(".", "."), which stacks the old root on the new one;
    /// then the old root is detached at once: no container path is looked up while the
    /// host's tree is reachable.
    PivotRoot {
        new_root: CString,
    },
    /// Attaches the tree opened into `slot` (from `source`) at the container path
    /// `target`, with the mount attributes `set` (MOUNT_ATTR_*) added and `clear`
    /// removed first, so it is never visible with weaker flags.
    Bind {
        slot: usize,
        source: CString,
        target: CString,
        set: u64,
        clear: u64,
    },
    /// mount(2) of a new filesystem (proc, tmpfs, sysfs...: no host source) on the
    /// container path `target`.
    MountFs {
        source: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: c_ulong,
        data: Option<CString>,
    },
    /// Changes the attributes of the mount at the container path `target` (which must
    /// be the root of a mount): only that mount, never its superblock.
    SetAttr {
        target: CString,
        set: u64,
        clear: u64,
    },
    /// mkdir of a container path that tolerates an existing entry.
    Mkdir {
        path: CString,
        mode: mode_t,
    },
    /// Creates an empty file (a bind-mount target) at a container path unless something
    /// exists there.
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
    /// Writes `value` to the container's /proc/sys file `path` (linux.sysctl), before
    /// /proc/sys is made read-only.
    Sysctl {
        path: CString,
        value: CString,
    },
}

fn show(s: &CString) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(s.as_bytes())
}

fn show_mount(
    f: &mut fmt::Formatter<'_>,
    source: &Option<CString>,
    target: &CString,
    fstype: &Option<CString>,
    flags: c_ulong,
) -> fmt::Result {
    let what = fstype
        .as_ref()
        .or(source.as_ref())
        .map(show)
        .unwrap_or_else(|| "(remount)".into());
    write!(f, "mount {what} on {} (flags {flags:#x})", show(target))
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::AwaitCgroup => write!(f, "wait to be placed in the container's cgroup"),
            Step::UnshareCgroup => write!(f, "create the cgroup namespace"),
            Step::ContainerHooks => write!(f, "run the createContainer hooks"),
            Step::BecomeNsRoot => write!(
                f,
                "become root of the user namespace (linux.uidMappings and gidMappings \
                 must map the container's 0)"
            ),
            Step::Mount {
                source,
                target,
                fstype,
                flags,
                ..
            }
            | Step::MountFs {
                source,
                target,
                fstype,
                flags,
                ..
            } => show_mount(f, source, target, fstype, *flags),
            Step::OpenTree { source, .. } => {
                write!(f, "open the bind mount source {}", show(source))
            }
            Step::OpenFs { fstype, .. } => {
                write!(f, "create a {} filesystem", show(fstype))
            }
            Step::OpenRoot { path } => {
                write!(f, "open the root filesystem {}", show(path))
            }
            Step::PivotRoot { new_root } => {
                write!(
                    f,
                    "pivot_root into {} and detach the host's root",
                    show(new_root)
                )
            }
            Step::Bind { source, target, .. } => {
                write!(f, "bind {} on {}", show(source), show(target))
            }
            Step::SetAttr { target, set, .. } if set & libc::MOUNT_ATTR_RDONLY != 0 => {
                write!(f, "make the mount on {} read-only", show(target))
            }
            Step::SetAttr { target, .. } => {
                write!(f, "change the flags of the mount on {}", show(target))
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
            Step::Mask { path } => write!(
                f,
                "mask {} (a file with /dev/null, which must be the null device)",
                show(path)
            ),
            Step::ReadonlyBind { path } => write!(f, "make {} read-only", show(path)),
            Step::SetHostname { name } => write!(f, "set the hostname to {}", show(name)),
            Step::LoopbackUp => write!(f, "bring up the loopback interface"),
            Step::Chdir { path } => write!(f, "enter the working directory {}", show(path)),
            Step::Setns { kind, .. } => write!(f, "join the container's {kind} namespace"),
            Step::Sysctl { path, value } => {
                write!(f, "write {} to {}", show(value), show(path))
            }
        }
    }
}

/// Descriptors one step opens and a later one uses: the bind sources, opened while the
/// host's root is there and attached once it is gone. The parent sizes it before the
/// clone (one slot per OpenTree); the child only stores into it, which allocates
/// nothing. Each descriptor is closed by the step that uses it (or by the child's exit).
#[derive(Debug)]
pub struct Slots(Box<[Cell<RawFd>]>, Cell<RawFd>);

impl Default for Slots {
    fn default() -> Slots {
        Slots(Box::default(), Cell::new(-1))
    }
}

impl Slots {
    pub fn for_steps(steps: &[Step]) -> Slots {
        let count = steps
            .iter()
            .filter_map(|s| match s {
                Step::OpenTree { slot, .. } | Step::OpenFs { slot, .. } => Some(slot + 1),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        Slots((0..count).map(|_| Cell::new(-1)).collect(), Cell::new(-1))
    }

    /// The container's root before pivot_root ([`Step::OpenRoot`]), which container
    /// paths are resolved in; -1 after it ("/" is the container's root then).
    fn root(&self) -> RawFd {
        self.1.get()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    fn put(&self, slot: usize, fd: RawFd) -> Result<(), i32> {
        self.0.get(slot).ok_or(libc::EBADF)?.set(fd);
        Ok(())
    }

    /// Takes the descriptor out of `slot`, which then owns nothing.
    fn take(&self, slot: usize) -> Result<Fd, i32> {
        let fd = self.0.get(slot).ok_or(libc::EBADF)?.replace(-1);
        if fd < 0 {
            return Err(libc::EBADF);
        }
        Ok(Fd(fd))
    }
}

/// A descriptor the child owns, closed when dropped. Async-signal-safe.
struct Fd(RawFd);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: closes a descriptor this value owns, once.
        unsafe { libc::close(self.0) };
    }
}

fn owned(fd: libc::c_long) -> Result<Fd, i32> {
    if fd < 0 {
        Err(errno())
    } else {
        Ok(Fd(fd as RawFd))
    }
}

/// How every container path is looked up: inside the root the child has after
/// pivot_root (absolute symlinks and `..` stop at it, and the kernel refuses a `..` that
/// a concurrent rename would take outside), and without magic links: /proc is ours by
/// then, and /proc/self/fd/N, /proc/1/root, /proc/self/cwd... lead to wherever a
/// descriptor or a process points, a detached host mount in a slot included.
const RESOLVE: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;

/// openat2 of the container path `path` (absolute) relative to the container's root,
/// with `flags` (O_CLOEXEC always; O_PATH unless creating). The root is `root` before
/// pivot_root (the rootfs, opened by [`Step::OpenRoot`]), "/" after it (-1).
fn openat2(root: RawFd, path: &CStr, flags: i32, mode: mode_t) -> Result<Fd, i32> {
    let opened;
    let root = if root >= 0 {
        root
    } else {
        // SAFETY: opens "/" (after pivot_root: the container's root) as a path descriptor.
        opened = owned(unsafe {
            libc::open(
                c"/".as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        } as libc::c_long)?;
        opened.0
    };
    // SAFETY: open_how is plain data; all zeroes is its empty value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    if flags & libc::O_CREAT != 0 {
        how.mode = mode as u64;
    }
    how.resolve = RESOLVE;
    // The kernel answers EAGAIN when a rename or mount raced with an in-root lookup:
    // try again a few times (nothing of the container runs yet; only a process outside
    // moving things in a shared volume could cause it).
    let mut tries = 0;
    loop {
        // SAFETY: openat2 with a NUL-terminated path and an open_how we own, of the
        // size the kernel expects for this version of the struct.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root,
                path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        match owned(fd) {
            Err(libc::EAGAIN) if tries < 16 => tries += 1,
            other => return other,
        }
    }
}

/// A path descriptor of the container path `path` (symlinks followed inside the root).
fn resolve(root: RawFd, path: &CStr, flags: i32) -> Result<Fd, i32> {
    openat2(root, path, libc::O_PATH | flags, 0)
}

/// Splits the container path `path` into its parent, copied NUL-terminated into `buf`,
/// and its last component (a suffix of `path`, so already NUL-terminated). Needs no
/// allocation.
fn split<'a>(
    path: &'a CStr,
    buf: &'a mut [u8; libc::PATH_MAX as usize],
) -> Result<(&'a CStr, &'a CStr), i32> {
    let bytes = path.to_bytes_with_nul();
    let slash = bytes.iter().rposition(|b| *b == b'/').ok_or(libc::EINVAL)?;
    let name = CStr::from_bytes_with_nul(&bytes[slash + 1..]).map_err(|_| libc::EINVAL)?;
    if name.is_empty() {
        return Err(libc::EINVAL);
    }
    // The root's parent is the root.
    let end = slash.max(1);
    if end >= buf.len() {
        return Err(libc::ENAMETOOLONG);
    }
    buf[..end].copy_from_slice(&bytes[..end]);
    buf[end] = 0;
    let parent = CStr::from_bytes_with_nul(&buf[..=end]).map_err(|_| libc::EINVAL)?;
    Ok((parent, name))
}

fn mount_setattr(fd: &Fd, set: u64, clear: u64, flags: i32) -> Result<(), i32> {
    let attr = libc::mount_attr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr on a descriptor we own with an empty path and a mount_attr
    // we own, of the size the kernel expects for this version of the struct.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.0,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | flags,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    } as i32)
}

/// Attaches the detached mount `tree` on top of whatever `target` is.
fn move_mount(tree: &Fd, target: &Fd) -> Result<(), i32> {
    // SAFETY: move_mount between two descriptors we own, with empty paths.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.0,
            c"".as_ptr(),
            target.0,
            c"".as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH,
        )
    } as i32)
}

/// A detached copy of the mount at `fd` (from its dentry down).
fn clone_tree(fd: &Fd, recursive: bool) -> Result<Fd, i32> {
    let mut flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC | libc::AT_EMPTY_PATH as u32;
    if recursive {
        flags |= libc::AT_RECURSIVE as u32;
    }
    // SAFETY: open_tree of a descriptor we own with an empty path.
    owned(unsafe { libc::syscall(libc::SYS_open_tree, fd.0, c"".as_ptr(), flags) })
}

/// mount(2) of a new filesystem onto the directory `target` refers to: mount takes a
/// path, so the path is ".", after a chdir into that very directory (no second lookup
/// that a symlink could redirect, and no /proc/self/fd, which may not be mounted yet).
fn mount_on(
    target: &Fd,
    source: *const libc::c_char,
    fstype: *const libc::c_char,
    flags: c_ulong,
    data: *const libc::c_void,
) -> Result<(), i32> {
    // SAFETY: fchdir to a directory descriptor we own; mount with NUL-terminated strings
    // owned by the caller's plan (or null); back to the root in any case.
    unsafe {
        check(libc::fchdir(target.0))?;
        let result = check(libc::mount(source, c".".as_ptr(), fstype, flags, data));
        libc::chdir(c"/".as_ptr());
        result
    }
}

/// Runs one step. Async-signal-safe: raw syscalls on prepared data, no allocation.
pub fn execute(step: &Step, slots: &Slots) -> Result<(), i32> {
    // SAFETY (for every block below): each call passes NUL-terminated strings owned by
    // the plan, which outlives the call, or null where the syscall allows it.
    match step {
        // child_main reads the release byte itself; nothing to do here.
        Step::AwaitCgroup | Step::ContainerHooks => Ok(()),
        Step::UnshareCgroup => check(unsafe { libc::unshare(libc::CLONE_NEWCGROUP) }),
        Step::BecomeNsRoot => {
            set_gid(0)?;
            set_uid(0)?;
            // A credential change clears the parent-death signal; the user switch
            // before execve checks that the parent is still there.
            check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) })
        }
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
                data_ptr(data),
            )
        }),
        Step::OpenTree {
            source,
            recursive,
            slot,
        } => {
            let mut flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC;
            if *recursive {
                flags |= libc::AT_RECURSIVE as u32;
            }
            let fd = owned(unsafe {
                libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, source.as_ptr(), flags)
            })?;
            slots.put(*slot, fd.0)?;
            std::mem::forget(fd);
            Ok(())
        }
        Step::OpenFs {
            fstype,
            attrs,
            slot,
        } => {
            let fd = open_fs(fstype, *attrs)?;
            slots.put(*slot, fd.0)?;
            std::mem::forget(fd);
            Ok(())
        }
        Step::OpenRoot { path } => {
            // SAFETY: open of a NUL-terminated host path owned by the plan.
            let fd = owned(unsafe {
                libc::open(
                    path.as_ptr(),
                    libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
                )
            } as libc::c_long)?;
            slots.1.set(fd.0);
            std::mem::forget(fd);
            Ok(())
        }
        Step::PivotRoot { new_root } => {
            let root = slots.1.replace(-1);
            if root >= 0 {
                drop(Fd(root));
            }
            pivot_root(new_root)
        }
        Step::Bind {
            slot,
            target,
            set,
            clear,
            ..
        } => {
            let tree = slots.take(*slot)?;
            if set | clear != 0 {
                mount_setattr(&tree, *set, *clear, 0)?;
            }
            move_mount(&tree, &resolve(slots.root(), target, 0)?)
        }
        Step::MountFs {
            source,
            target,
            fstype,
            flags,
            data,
        } => mount_on(
            &resolve(slots.root(), target, libc::O_DIRECTORY)?,
            ptr(source),
            ptr(fstype),
            *flags,
            data_ptr(data),
        ),
        Step::SetAttr { target, set, clear } => {
            mount_setattr(&resolve(slots.root(), target, 0)?, *set, *clear, 0)
        }
        Step::Mkdir { path, mode } => {
            let mut buf = [0u8; libc::PATH_MAX as usize];
            let (parent, name) = split(path, &mut buf)?;
            let parent = resolve(slots.root(), parent, libc::O_DIRECTORY)?;
            tolerate(
                unsafe { libc::mkdirat(parent.0, name.as_ptr(), *mode) },
                libc::EEXIST,
            )
        }
        Step::CreateFile { path } => {
            // O_EXCL: an existing entry, a symlink included, is left as it is.
            match openat2(
                slots.root(),
                path,
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOCTTY,
                0o644,
            ) {
                Ok(_) | Err(libc::EEXIST) => Ok(()),
                Err(e) => Err(e),
            }
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
        Step::Mask { path } => mask(slots.root(), path),
        Step::ReadonlyBind { path } => readonly_bind(slots.root(), path),
        Step::SetHostname { name } => {
            check(unsafe { libc::sethostname(name.as_ptr(), name.as_bytes().len()) })
        }
        Step::LoopbackUp => loopback_up(),
        Step::Chdir { path } => check(unsafe { libc::chdir(path.as_ptr()) }),
        Step::Setns { fd, nstype, .. } => check(unsafe { libc::setns(*fd, *nstype) }),
        Step::Sysctl { path, value } => write_file(path, value),
    }
}

/// fsopen(2) flags and commands (linux/mount.h), not in libc.
const FSOPEN_CLOEXEC: u32 = 0x1;
const FSCONFIG_CMD_CREATE: u32 = 6;
const FSMOUNT_CLOEXEC: u32 = 0x1;

/// A new filesystem of type `fstype`, without options, as a detached mount.
fn open_fs(fstype: &CStr, attrs: u64) -> Result<Fd, i32> {
    // SAFETY: fsopen/fsconfig/fsmount with a NUL-terminated type and null key/value, on
    // descriptors we own.
    unsafe {
        let context = owned(libc::syscall(
            libc::SYS_fsopen,
            fstype.as_ptr(),
            FSOPEN_CLOEXEC,
        ))?;
        check(libc::syscall(
            libc::SYS_fsconfig,
            context.0,
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        ) as i32)?;
        owned(libc::syscall(
            libc::SYS_fsmount,
            context.0,
            FSMOUNT_CLOEXEC,
            attrs as libc::c_uint,
        ))
    }
}

/// Writes `value` to the existing file `path` (no symlink followed): sysctls, and
/// the child's oom_score_adj. Async-signal-safe.
pub(super) fn write_file(path: &CStr, value: &CString) -> Result<(), i32> {
    // SAFETY: open/write/close with NUL-terminated strings we own.
    unsafe {
        let fd = libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        );
        if fd < 0 {
            return Err(errno());
        }
        let bytes = value.as_bytes();
        let written = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
        let error = errno();
        libc::close(fd);
        if written != bytes.len() as isize {
            return Err(error);
        }
    }
    Ok(())
}

fn ptr(s: &Option<CString>) -> *const libc::c_char {
    s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr())
}

fn data_ptr(s: &Option<CString>) -> *const libc::c_void {
    ptr(s).cast()
}

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// Sets the real, effective and saved group id of the calling process. Raw syscalls
/// here and in `set_uid` and `set_groups`, not libc's wrappers: glibc broadcasts a
/// credential change to every thread its bookkeeping lists, under a lock, and a child
/// cloned from the multi-threaded CLI by a raw clone still lists (and may find locked)
/// the CLI's threads. The kernel changes the calling process only, which is all a child
/// of ours is. Async-signal-safe.
pub(super) fn set_gid(gid: libc::gid_t) -> Result<(), i32> {
    // SAFETY: a credential syscall on our own process with integer arguments.
    check_long(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) })
}

/// Sets the real, effective and saved user id of the calling process (raw: `set_gid`).
pub(super) fn set_uid(uid: libc::uid_t) -> Result<(), i32> {
    // SAFETY: a credential syscall on our own process with integer arguments.
    check_long(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) })
}

/// The supplementary groups of the calling process (raw: `set_gid`).
pub(super) fn set_groups(groups: &[libc::gid_t]) -> Result<(), i32> {
    // SAFETY: the kernel reads `groups.len()` ids from the slice we borrow.
    check_long(unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) })
}

fn check_long(rc: libc::c_long) -> Result<(), i32> {
    if rc < 0 {
        Err(errno())
    } else {
        Ok(())
    }
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

/// pivot_root(".", ".") puts the old root on top of the new one (no directory of the
/// image serves as put_old); the old root, reached through a descriptor taken before,
/// is then detached, and from here the host's tree is out of the namespace: whatever a
/// later path says, it cannot lead there.
fn pivot_root(new_root: &CStr) -> Result<(), i32> {
    // SAFETY: open/chdir/fchdir/pivot_root/umount2 with NUL-terminated literals and the
    // plan's path, on descriptors we own.
    unsafe {
        let old = owned(libc::open(
            c"/".as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        ) as libc::c_long)?;
        check(libc::chdir(new_root.as_ptr()))?;
        check(libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) as i32)?;
        // "." is the old root now (the kernel stacked it on our working directory), but
        // the descriptor says so without depending on that.
        check(libc::fchdir(old.0))?;
        check(libc::umount2(c".".as_ptr(), libc::MNT_DETACH))?;
        check(libc::chdir(c"/".as_ptr()))
    }
}

fn mask(root: RawFd, path: &CStr) -> Result<(), i32> {
    let target = match resolve(root, path, 0) {
        Ok(target) => target,
        Err(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    if is_dir(&target)? {
        return mount_on(
            &target,
            c"tmpfs".as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_RDONLY,
            std::ptr::null(),
        );
    }
    // The null device over a file. The container's /dev/null is the image's path: it
    // could be a symlink to the very file to hide, or a regular file. So the node it
    // resolves to must be the null device (as runc checks since CVE-2025-31133); a copy
    // of its mount then goes on the target, by descriptor.
    let null = resolve(root, c"/dev/null", 0)?;
    // SAFETY: fstat of a descriptor we own into a zeroed struct we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    check(unsafe { libc::fstat(null.0, &mut st) })?;
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != libc::makedev(1, 3) {
        return Err(libc::ENODEV);
    }
    move_mount(&clone_tree(&null, false)?, &target)
}

fn is_dir(fd: &Fd) -> Result<bool, i32> {
    // SAFETY: fstat of a descriptor we own into a zeroed struct we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    check(unsafe { libc::fstat(fd.0, &mut st) })?;
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

/// A read-only copy of the tree at `path` on top of it: made read-only while detached,
/// then attached by descriptor.
fn readonly_bind(root: RawFd, path: &CStr) -> Result<(), i32> {
    let target = match resolve(root, path, 0) {
        Ok(target) => target,
        Err(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    let tree = clone_tree(&target, true)?;
    mount_setattr(
        &tree,
        libc::MOUNT_ATTR_RDONLY
            | libc::MOUNT_ATTR_NOSUID
            | libc::MOUNT_ATTR_NODEV
            | libc::MOUNT_ATTR_NOEXEC,
        0,
        0,
    )?;
    move_mount(&tree, &target)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    fn c(path: &std::path::Path) -> CString {
        CString::new(path.as_os_str().as_bytes()).unwrap()
    }

    #[test]
    fn split_gives_parent_and_name_without_allocating() {
        let mut buf = [0u8; libc::PATH_MAX as usize];
        assert_eq!(split(c"/data", &mut buf).unwrap(), (c"/", c"data"));
        let mut buf = [0u8; libc::PATH_MAX as usize];
        assert_eq!(split(c"/a/b/c", &mut buf).unwrap(), (c"/a/b", c"c"));
        let mut buf = [0u8; libc::PATH_MAX as usize];
        assert_eq!(split(c"/", &mut buf), Err(libc::EINVAL));
        let long = CString::new(format!("/{}/x", "a".repeat(5000))).unwrap();
        let mut buf = [0u8; libc::PATH_MAX as usize];
        assert_eq!(split(&long, &mut buf), Err(libc::ENAMETOOLONG));
    }

    /// Outside a container "/" is the host's root, so these run on a temporary dir: the
    /// same lookups refuse magic links and keep symlinks inside the root.
    #[test]
    fn container_paths_refuse_magic_links_and_leave_symlinks_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let slots = Slots::default();
        let made = dir.path().join("made");
        execute(
            &Step::Mkdir {
                path: c(&made),
                mode: 0o755,
            },
            &slots,
        )
        .unwrap();
        assert!(made.is_dir());
        // The same directory through /proc/self/root (a magic link) is refused.
        let mut via_proc = b"/proc/self/root".to_vec();
        via_proc.extend_from_slice(dir.path().join("other").as_os_str().as_bytes());
        let step = Step::Mkdir {
            path: CString::new(via_proc).unwrap(),
            mode: 0o755,
        };
        assert_eq!(execute(&step, &slots), Err(libc::ELOOP));
        assert!(!dir.path().join("other").exists());
        // A mount point is never created through a final symlink.
        let elsewhere = dir.path().join("elsewhere");
        std::os::unix::fs::symlink(&elsewhere, dir.path().join("link")).unwrap();
        let step = Step::CreateFile {
            path: c(&dir.path().join("link")),
        };
        execute(&step, &slots).unwrap();
        assert!(!elsewhere.exists());
    }
}
