//! The default network's home, shared by every state root in one network namespace.
//! They all use its bridge (`mycontainer0`), so they must share its subnet, gateway and
//! leases too: with them under each root, a second root took the first bridge's route
//! for a foreign network, chose another subnet and gave its containers a gateway that
//! is not on the bridge, and the two roots could lease the same address.
//!
//! `<run base>/net/<key>/` (`/run/mycontainer/net/...`, on tmpfs: the bridge and its
//! leases both die with a reboot, so nothing here needs a disk or an fsync) holds
//! `bridge.json`, `bridge.leases/` and `bridge.lock`, as `ipam.rs` lays out a network.
//! The key names the network namespace this process is in: its cookie
//! (`SO_NETNS_COOKIE`, never reused while the host runs; a namespace's inode number is
//! reused once it dies, and a new namespace would inherit a dead one's leases), or
//! `ino-<dev>-<ino>` on a kernel without cookies (before 5.14). `gc` removes the whole
//! directory when it removes the bridge.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The default network (`--network bridge`), created on first use.
pub const DEFAULT_NETWORK: &str = "bridge";

/// The key of the calling thread's network namespace (see the module's comment).
pub fn netns_key() -> String {
    // SAFETY: a plain socket call; the descriptor is closed below.
    let sock = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock >= 0 {
        let mut cookie: u64 = 0;
        let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `cookie`, which we own.
        let rc = unsafe {
            libc::getsockopt(
                sock,
                libc::SOL_SOCKET,
                libc::SO_NETNS_COOKIE,
                (&mut cookie as *mut u64).cast(),
                &mut len,
            )
        };
        // SAFETY: closing the socket opened above.
        unsafe { libc::close(sock) };
        if rc == 0 && len as usize == std::mem::size_of::<u64>() {
            return cookie.to_string();
        }
    }
    match std::fs::metadata("/proc/thread-self/ns/net") {
        Ok(m) => format!("ino-{}-{}", m.dev(), m.ino()),
        // No /proc: one home for everything (what every root did before).
        Err(_) => "unknown".to_string(),
    }
}

/// The directory, relative to the run base, of this process's namespace (computed once:
/// the CLI works in one network namespace; `attach` enters a container's only on a
/// thread of its own for a moment, after this is known).
fn relative() -> &'static Path {
    static KEY: OnceLock<PathBuf> = OnceLock::new();
    KEY.get_or_init(|| Path::new("net").join(netns_key()))
}

/// The default network's home (made or not).
pub fn home() -> PathBuf {
    crate::container::rundir::shared_path(relative())
}

/// Makes the home (and the run base's tmpfs) if missing.
pub fn ensure() -> anyhow::Result<PathBuf> {
    crate::container::rundir::shared_dir(relative())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_names_this_namespace_and_another_namespace_gets_another() {
        let here = netns_key();
        assert_eq!(here, netns_key());
        assert!(here.bytes().all(|b| b.is_ascii_digit()), "{here}");
        // A thread in a namespace of its own (unshare needs root, as the suite does).
        let there = std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .map(|()| netns_key())
                .ok()
        })
        .join()
        .unwrap();
        if let Some(there) = there {
            assert_ne!(there, here);
        }
    }
}
