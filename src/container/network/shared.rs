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
//!
//! A cookie cannot tell whether its namespace still lives, so the home also records the
//! namespace's identity (`netns`: the nsfs device and inode of its `ns/net`), by which
//! `gc` in any namespace removes the homes of namespaces that died without a `gc` run
//! inside them (`stale.rs`).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Context;

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

/// The file in a home that names its namespace: `<dev> <ino>` of its `ns/net`.
pub const IDENTITY: &str = "netns";

/// The directory, relative to the run base, of this process's namespace, and that
/// namespace's identity (see [`IDENTITY`]; none without /proc). Computed once: the CLI
/// works in one network namespace; `attach` enters a container's only on a thread of
/// its own for a moment, after this is known.
fn this_namespace() -> &'static (PathBuf, Option<String>) {
    static KEY: OnceLock<(PathBuf, Option<String>)> = OnceLock::new();
    KEY.get_or_init(|| {
        let identity = std::fs::metadata("/proc/thread-self/ns/net")
            .ok()
            .map(|m| format!("{} {}\n", m.dev(), m.ino()));
        (Path::new("net").join(netns_key()), identity)
    })
}

fn relative() -> &'static Path {
    &this_namespace().0
}

/// The default network's home (made or not).
pub fn home() -> PathBuf {
    crate::container::rundir::shared_path(relative())
}

/// Makes the home (and the run base's tmpfs) if missing, with its identity file.
pub fn ensure() -> anyhow::Result<PathBuf> {
    let dir = crate::container::rundir::shared_dir(relative())?;
    if let Some(identity) = &this_namespace().1 {
        let path = dir.join(IDENTITY);
        if !path.exists() {
            // Written aside and renamed: gc never reads half of it. Until it is there
            // gc keeps the home (as every home an older build made).
            let tmp = dir.join(format!("{IDENTITY}.{}.tmp", std::process::id()));
            std::fs::write(&tmp, identity)
                .and_then(|()| std::fs::rename(&tmp, &path))
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    Ok(dir)
}

/// Removes the home if nothing but its identity file is left in it (gc, holding no
/// lock: a run making its files meanwhile fails the removal, or makes the home again).
pub fn remove_home() {
    let home = home();
    let Ok(entries) = std::fs::read_dir(&home) else {
        return;
    };
    // The identity file and what a killed writer left of one (`netns.<pid>.tmp`).
    let mut ours = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(IDENTITY) {
            return;
        }
        ours.push(home.join(name));
    }
    for path in ours {
        let _ = std::fs::remove_file(path);
    }
    let _ = std::fs::remove_dir(&home);
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
