//! Joining a user namespace by path (`linux.namespaces: [{"type": "user", "path": ...}]`,
//! a pod's user namespace). It must be entered before any namespace of the container is
//! created, so that the new ones are owned by it (the container's root then has its
//! capabilities over them, and only over them). The parent cannot do that for the child
//! (setns into a user namespace needs a single-threaded caller), and the pid namespace a
//! clone creates is the only one the clone's child is born in. So the first child only
//! joins: released (it is in the container's cgroup), it enters the pid namespace named
//! by path if any (with the runtime's own privileges), then the user namespace, checks
//! the namespace's maps against the spec's when the spec gives some, becomes its root,
//! and clones the container's process with the spec's new namespaces; that process is the
//! runtime's child (CLONE_PARENT), whose pid the first child reports before it exits
//! (the parent follows it as it does exec's, see launch.rs). Everything here runs in the
//! child: raw syscalls on data prepared before the clone, no allocation.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use anyhow::{bail, Context};
use oci_spec::runtime::{LinuxIdMapping, Spec};

use super::namespaces::Namespaces;

/// A uid or gid map as (inside, outside, count) triples.
type Extents = Vec<[u32; 3]>;

/// What the first child needs to join a user namespace, prepared by the parent.
#[derive(Debug)]
pub struct JoinUser {
    /// The user namespace (held by `Prepared` until the child has joined it).
    pub user: RawFd,
    /// A pid namespace joined by path: entered before the user namespace, so the clone
    /// below is born in it.
    pub pid: Option<RawFd>,
    /// The clone flags of the container's new namespaces.
    pub flags: libc::c_int,
    /// The spec's maps when it gives some alongside the path (as containerd and CRI-O
    /// do): they must be the namespace's own, as runc requires.
    pub expected: Option<(Extents, Extents)>,
}

/// Which of the namespace's maps differs from the spec's.
pub const UID_MAP: u32 = 0;
pub const GID_MAP: u32 = 1;

impl JoinUser {
    /// The join for `spec`, whose user namespace `user` (already opened and checked to be
    /// one) is joined by path; `pid`: a pid namespace it also joins by path.
    pub fn prepare(
        spec: &Spec,
        ns: &Namespaces,
        path: &std::path::Path,
        user: &OwnedFd,
        pid: Option<&OwnedFd>,
    ) -> anyhow::Result<JoinUser> {
        use std::os::unix::fs::MetadataExt;
        // setns into the namespace one is in fails (EINVAL): say it plainly.
        let theirs = std::fs::metadata(format!("/proc/self/fd/{}", user.as_raw_fd()))
            .with_context(|| format!("cannot inspect the user namespace {}", path.display()))?;
        let ours = std::fs::metadata("/proc/self/ns/user")
            .context("cannot inspect the runtime's own user namespace")?;
        if (theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino()) {
            bail!(
                "the user namespace {} is the runtime's own: leave the user entry out of \
                 linux.namespaces to run in it",
                path.display()
            );
        }
        let linux = spec.linux().as_ref();
        let uids = linux.and_then(|l| l.uid_mappings().clone());
        let gids = linux.and_then(|l| l.gid_mappings().clone());
        let expected = if uids.is_none() && gids.is_none() {
            None
        } else {
            Some((
                extents(&uids.unwrap_or_default()),
                extents(&gids.unwrap_or_default()),
            ))
        };
        Ok(JoinUser {
            user: user.as_raw_fd(),
            pid: pid.map(|fd| fd.as_raw_fd()),
            flags: ns.clone_flags(),
            expected,
        })
    }

    /// The descriptors the child keeps open until it has joined.
    pub fn fds(&self) -> impl Iterator<Item = RawFd> {
        std::iter::once(self.user).chain(self.pid)
    }

    /// In the first child, released: joins, then clones the container's process with
    /// the new namespaces. Returns its pid in the first child (which reports it and
    /// exits), `None` in the new process, already root of the joined namespace (its
    /// parent-death signal and dumpability are the caller's to set again).
    /// Async-signal-safe.
    pub fn enter(&self) -> Result<Option<libc::pid_t>, JoinFailure> {
        if let Some(pid) = self.pid {
            // SAFETY: setns on a descriptor the parent opened for us.
            if unsafe { libc::setns(pid, libc::CLONE_NEWPID) } < 0 {
                return Err(JoinFailure::PidNamespace(errno()));
            }
        }
        // SAFETY: as above; we are single-threaded (a fork-like clone's child).
        if unsafe { libc::setns(self.user, libc::CLONE_NEWUSER) } < 0 {
            return Err(JoinFailure::Join(errno()));
        }
        if let Some((uids, gids)) = &self.expected {
            for (file, want, which) in [
                (c"/proc/thread-self/uid_map", uids, UID_MAP),
                (c"/proc/thread-self/gid_map", gids, GID_MAP),
            ] {
                if !same_map(file, want).map_err(JoinFailure::Join)? {
                    return Err(JoinFailure::Maps(which));
                }
            }
        }
        // Root of the namespace, as after creating one: what we create has an owner
        // there, and a uid of 0 there keeps the capabilities setns gave us.
        super::plan::set_gid(0)
            .and_then(|()| super::plan::set_uid(0))
            .map_err(JoinFailure::Root)?;
        // SAFETY: a fork-like clone of this single-threaded process (no atfork
        // handlers); CLONE_PARENT makes the runtime its parent (and reaper).
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone,
                (self.flags | libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong,
                0,
                0,
                0,
                0,
            )
        };
        match pid {
            0 => Ok(None),
            pid if pid > 0 => Ok(Some(pid as libc::pid_t)),
            _ => Err(JoinFailure::Clone(errno())),
        }
    }
}

/// How joining failed, for the child's report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinFailure {
    PidNamespace(i32),
    /// setns, or reading the namespace's maps.
    Join(i32),
    /// The namespace's map (UID_MAP or GID_MAP) is not the spec's.
    Maps(u32),
    /// Its 0 is not mapped.
    Root(i32),
    Clone(i32),
}

fn extents(maps: &[LinuxIdMapping]) -> Extents {
    maps.iter()
        .map(|m| [m.container_id(), m.host_id(), m.size()])
        .collect()
}

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// Whether the map in `file` (the kernel's "inside outside count" lines) has exactly the
/// extents `want`, in any order (the kernel sorts maps of more than five extents).
/// Async-signal-safe: reads into a buffer on the stack.
fn same_map(file: &std::ffi::CStr, want: &[[u32; 3]]) -> Result<bool, i32> {
    // At most 340 extents of three 10-digit numbers: 11220 bytes.
    let mut buf = [0u8; 12 * 1024];
    // SAFETY: open/read/close with a NUL-terminated literal into a buffer we own.
    let len = unsafe {
        let fd = libc::open(file.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(errno());
        }
        let mut len = 0usize;
        loop {
            let n = libc::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len);
            if n < 0 {
                let e = errno();
                libc::close(fd);
                return Err(e);
            }
            if n == 0 || len + n as usize == buf.len() {
                len += n as usize;
                break;
            }
            len += n as usize;
        }
        libc::close(fd);
        len
    };
    Ok(map_matches(&buf[..len], want))
}

/// Whether `text` (uid_map's format) lists exactly the extents of `want`.
fn map_matches(text: &[u8], want: &[[u32; 3]]) -> bool {
    let mut found = 0usize;
    for line in text.split(|b| *b == b'\n') {
        let mut numbers = [0u32; 3];
        let mut count = 0;
        for word in line.split(|b| *b == b' ' || *b == b'\t') {
            if word.is_empty() {
                continue;
            }
            let mut value: u64 = 0;
            for digit in word {
                if !digit.is_ascii_digit() || count == 3 {
                    return false;
                }
                value = value * 10 + u64::from(digit - b'0');
                if value > u64::from(u32::MAX) {
                    return false;
                }
            }
            numbers[count] = value as u32;
            count += 1;
        }
        match count {
            0 => continue,
            3 if want.contains(&numbers) => found += 1,
            _ => return false,
        }
    }
    // Extents of one map never overlap inside, so there are no duplicates: as many
    // found as wanted means the same set.
    found == want.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_match_in_any_order_and_only_with_the_same_extents() {
        let kernel = b"         0     100000      65536\n     65536          0          1\n";
        assert!(map_matches(kernel, &[[0, 100000, 65536], [65536, 0, 1]]));
        assert!(map_matches(kernel, &[[65536, 0, 1], [0, 100000, 65536]]));
        assert!(!map_matches(kernel, &[[0, 100000, 65536]]));
        assert!(!map_matches(kernel, &[[0, 100000, 65535], [65536, 0, 1]]));
        assert!(!map_matches(b"", &[[0, 0, 1]]));
        assert!(map_matches(b"", &[]));
        assert!(!map_matches(b"0 1\n", &[[0, 1, 0]]));
        assert!(!map_matches(b"0 1 x\n", &[]));
    }

    #[test]
    fn our_own_map_is_read_and_matched_without_allocation_helpers() {
        // The test process is in the host's user namespace: the identity map.
        assert_eq!(
            same_map(c"/proc/self/uid_map", &[[0, 0, u32::MAX]]),
            Ok(true)
        );
        assert_eq!(same_map(c"/proc/self/uid_map", &[[0, 0, 1]]), Ok(false));
        assert_eq!(same_map(c"/no/such/map", &[]), Err(libc::ENOENT));
    }
}
