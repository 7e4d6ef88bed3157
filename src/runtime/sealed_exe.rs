//! Our binary, out of a container's reach (the class of CVE-2019-5736). A process `exec`
//! starts is a clone of the CLI until its execve, so its /proc/PID/exe is our binary
//! while the container can see it. It is non-dumpable from its first instruction, so
//! opening that link takes CAP_SYS_PTRACE: a container with Docker's default
//! capabilities cannot. A container that may hold CAP_SYS_PTRACE (`--cap-add
//! SYS_PTRACE`, `--privileged`) could keep a handle on the binary and write through it
//! once nothing runs it. For such a container the CLI first re-executes itself from a
//! read-only bind mount of its binary that is attached nowhere (open_tree, then
//! mount_setattr): a write through the handle fails with EROFS, and no one can remount
//! a mount that is in no namespace. Kernels before 5.12 lack mount_setattr; there the
//! CLI runs from a sealed memfd copy, as runc does.

use std::ffi::{CStr, CString, OsString};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use anyhow::{bail, Context};
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::statvfs::{fstatvfs, FsFlags};
use oci_spec::runtime::{Capability, Spec};

/// Set in the environment of the re-executed CLI, so a re-exec that did not protect the
/// binary fails instead of looping.
const REEXECUTED: &str = "_MYCONTAINER_EXE_PROTECTED";

/// `struct mount_attr` (mount_setattr(2)).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_RDONLY: u64 = 1;
const SEALS: libc::c_int =
    libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// Whether some process of the container may hold CAP_SYS_PTRACE: its bounding set,
/// which no process in it can exceed, has it.
fn container_may_ptrace(spec: &Spec) -> bool {
    spec.process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
        .and_then(|c| c.bounding().as_ref())
        .is_some_and(|bounding| bounding.contains(&Capability::SysPtrace))
}

/// Whether our binary cannot be written through a handle on /proc/PID/exe: it is on a
/// read-only mount, or a memfd sealed against writes.
fn protected(exe: &File) -> bool {
    let read_only = fstatvfs(exe).is_ok_and(|fs| fs.flags().contains(FsFlags::ST_RDONLY));
    read_only
        || fcntl(exe, FcntlArg::F_GET_SEALS).is_ok_and(|seals| seals & libc::F_SEAL_WRITE != 0)
}

fn last_error<T>(what: &str) -> anyhow::Result<T> {
    Err(std::io::Error::last_os_error()).context(what.to_string())
}

/// A read-only bind mount of /proc/self/exe in no mount namespace, as an O_PATH-like
/// descriptor (close-on-exec: once we exec through it, the mount is referenced only by
/// the new process image).
fn read_only_mount() -> anyhow::Result<OwnedFd> {
    // SAFETY: open_tree with a literal path; it returns a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c"/proc/self/exe".as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if fd < 0 {
        return last_error("cannot clone a mount of our binary (open_tree)");
    }
    // SAFETY: the kernel just gave us this descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr reads the struct we own, on the mount behind our descriptor.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        return last_error("cannot make the mount of our binary read-only (mount_setattr)");
    }
    Ok(fd)
}

/// A memfd holding a copy of our binary, sealed against any change.
fn sealed_copy() -> anyhow::Result<OwnedFd> {
    let create = |flags: libc::c_uint| {
        // SAFETY: memfd_create with a literal name; it returns a new descriptor or -1.
        unsafe { libc::memfd_create(c"mycontainer".as_ptr(), flags) }
    };
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // MFD_EXEC (6.3+) keeps the copy executable where vm.memfd_noexec would not;
    // older kernels refuse the flag.
    let mut fd = create(flags | libc::MFD_EXEC);
    if fd < 0 {
        fd = create(flags);
    }
    if fd < 0 {
        return last_error("cannot create a memfd for a copy of our binary");
    }
    // SAFETY: the kernel just gave us this descriptor.
    let copy = unsafe { File::from_raw_fd(fd) };
    let mut exe = File::open("/proc/self/exe").context("cannot read our own binary")?;
    std::io::copy(&mut exe, &mut &copy).context("cannot copy our binary into a memfd")?;
    fcntl(
        &copy,
        FcntlArg::F_ADD_SEALS(SealFlag::from_bits_retain(SEALS)),
    )
    .context("cannot seal the copy of our binary")?;
    Ok(copy.into())
}

fn cstrings(items: impl Iterator<Item = OsString>) -> anyhow::Result<Vec<CString>> {
    items
        .map(|s| CString::new(s.as_bytes()).context("an argument contains a NUL byte"))
        .collect()
}

fn pointers(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Before `exec` clones anything into a container that may hold CAP_SYS_PTRACE, makes
/// sure our binary cannot be written through /proc/PID/exe: re-executes the CLI (same
/// arguments and environment) from a read-only mount or a sealed copy of it. Returns
/// when nothing is needed; does not return when it re-executes.
pub fn reexec_if_reachable(spec: &Spec) -> anyhow::Result<()> {
    if !container_may_ptrace(spec) {
        return Ok(());
    }
    let exe = File::open("/proc/self/exe").context("cannot open our own binary")?;
    if protected(&exe) {
        return Ok(());
    }
    if std::env::var_os(REEXECUTED).is_some() {
        bail!(
            "cannot run from a read-only copy of our binary, which a container that may \
             hold CAP_SYS_PTRACE needs: install mycontainer on a read-only mount"
        );
    }
    drop(exe);
    let target = read_only_mount().or_else(|_| sealed_copy())?;
    let argv = cstrings(std::env::args_os())?;
    let mut env = cstrings(std::env::vars_os().map(|(key, value)| {
        let mut entry = key;
        entry.push("=");
        entry.push(value);
        entry
    }))?;
    env.push(CString::new(format!("{REEXECUTED}=1"))?);
    let (argv_ptrs, env_ptrs) = (pointers(&argv), pointers(&env));
    let empty: &CStr = c"";
    // SAFETY: execveat on our descriptor with null-terminated arrays of pointers into
    // `argv` and `env`, which outlive the call; it only returns on failure.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            target.as_raw_fd(),
            empty.as_ptr(),
            argv_ptrs.as_ptr(),
            env_ptrs.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    last_error("cannot re-execute from a read-only copy of our binary")
}
