//! gc: removes the default network's homes (`shared.rs`) of other network namespaces
//! that died without a `gc` run inside them (a test's, a `unshare --net` session's):
//! their key, a cookie, cannot tell whether the namespace lives, so each home records
//! its namespace's identity (`netns`: nsfs device and inode) and gc, from any
//! namespace, removes a home whose namespace is provably dead: no task is in it (every
//! `/proc/<pid>/task/<tid>/ns/net`), no process holds a descriptor of it (`net:[INO]`
//! in `/proc/<pid>/fd`), and no mount namespace of a process has it bind-mounted (nsfs
//! `net:[INO]` in that process's `mountinfo`; our containers' namespaces are mounted in
//! the run directory's tmpfs, `ip netns` ones under /run/netns).
//!
//! Inode numbers are reused once a namespace dies: a new namespace with a dead one's
//! number makes gc keep the dead one's home (harmless, a later gc removes it), never
//! remove a live one's, since a live namespace's number is its own while it lives.
//! Homes without the file (made by older builds) are kept. What gc cannot see keeps a
//! namespace alive unseen: processes of other pid namespaces (so gc sweeps only from
//! the initial one, as root, who sees every process's descriptors), a mount namespace
//! no process is in, a socket of the namespace held by a process elsewhere. Those are
//! reached only through an ns descriptor or mount that gc would have seen, or not at
//! all; a run there after the sweep makes a new home, and finds the bridge it made.
//! A process more privileged than gc (a sandbox's init, root with capabilities gc
//! lacks) hides its `ns/net` and descriptors: its namespace is matched through its
//! `/proc/<pid>/net/dev` (an inode of that namespace's own) with a process gc can read
//! (no match: nothing is removed); a namespace held only by its descriptor is missed.
//! The scan is not atomic: a namespace whose only holder moves while it runs (forks a
//! child into a pid already passed, hands its only ns descriptor to a process already
//! read) can be missed; its next run makes a new home (the leases of the old are lost).

use std::collections::HashSet;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::shared::{self, IDENTITY};

/// `ns/pid`'s inode in the initial pid namespace (the kernel's PROC_PID_INIT_INO).
const INIT_PID_NS_INO: u64 = 0xEFFF_FFFC;

/// Removes the homes of dead namespaces; returns how many.
pub fn collect() -> anyhow::Result<usize> {
    let home = shared::home();
    let (Some(net), Some(own)) = (home.parent(), home.file_name()) else {
        return Ok(0);
    };
    let Ok(entries) = fs::read_dir(net) else {
        return Ok(0);
    };
    let mut candidates: Vec<(PathBuf, (u64, u64))> = entries
        .flatten()
        .filter(|e| e.file_name() != own)
        .filter_map(|e| Some((e.path(), identity(&e.path())?)))
        .collect();
    if candidates.is_empty() || !sees_every_process() {
        return Ok(0);
    }
    let Some(live) = live_namespaces(&candidates) else {
        return Ok(0);
    };
    candidates
        .retain(|(_, (dev, ino))| !live.pairs.contains(&(*dev, *ino)) && !live.inos.contains(ino));
    let mut removed = 0;
    for (dir, _) in candidates {
        if remove(&dir)? {
            removed += 1;
        }
    }
    Ok(removed)
}

/// The `(dev, ino)` a home records, if it has a readable identity file.
fn identity(home: &Path) -> Option<(u64, u64)> {
    let text = fs::read_to_string(home.join(IDENTITY)).ok()?;
    let (dev, ino) = text.trim().split_once(' ')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// Whether this process sees every process and its descriptors: root, in the initial
/// pid namespace (with /proc of that namespace).
fn sees_every_process() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && fs::metadata("/proc/self/ns/pid").is_ok_and(|m| m.ino() == INIT_PID_NS_INO)
}

/// Network namespaces seen in use: `(dev, ino)` of tasks' namespaces, and bare inodes
/// of descriptors and mounts (which name no device).
struct Live {
    pairs: HashSet<(u64, u64)>,
    inos: HashSet<u64>,
}

/// Every network namespace in use, or None when a process could not be read (then
/// nothing is provably dead). Stops early once every candidate is seen alive.
fn live_namespaces(candidates: &[(PathBuf, (u64, u64))]) -> Option<Live> {
    let mut live = Live {
        pairs: HashSet::new(),
        inos: HashSet::new(),
    };
    let all_alive = |live: &Live| {
        candidates
            .iter()
            .all(|(_, (dev, ino))| live.pairs.contains(&(*dev, *ino)) || live.inos.contains(ino))
    };
    let mut mount_namespaces = HashSet::new();
    // `net/dev` inodes of tasks whose namespace we may not read, and of processes whose
    // namespace we read.
    let (mut hidden, mut seen_dev) = (HashSet::new(), HashSet::new());
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let proc = entry.path();
        // A process that exits meanwhile is skipped: what it held is released.
        let Ok(tasks) = fs::read_dir(proc.join("task")) else {
            continue;
        };
        for task in tasks.flatten() {
            match fs::metadata(task.path().join("ns/net")) {
                Ok(m) => {
                    live.pairs.insert((m.dev(), m.ino()));
                    if task.file_name() == name {
                        if let Ok(dev) = fs::metadata(task.path().join("net/dev")) {
                            seen_dev.insert(dev.ino());
                        }
                    }
                }
                Err(e) if gone(&e) => {}
                // A task more privileged than we are: its namespace is told by its
                // `net/dev`, whose inode is its namespace's own (matched below).
                Err(e) if denied(&e) => match fs::metadata(task.path().join("net/dev")) {
                    Ok(m) => {
                        hidden.insert(m.ino());
                    }
                    Err(e) if gone(&e) => {}
                    Err(_) => return None,
                },
                Err(_) => return None,
            }
        }
        match fs::read_dir(proc.join("fd")) {
            Ok(fds) => {
                for fd in fds.flatten() {
                    match fs::read_link(fd.path()) {
                        Ok(link) => live.inos.extend(net_ino(&link)),
                        Err(e) if gone(&e) => {}
                        // The descriptors of a process more privileged than we are
                        // (a sandbox's init) cannot be read: see the module's comment.
                        Err(e) if denied(&e) => break,
                        Err(_) => return None,
                    }
                }
            }
            Err(e) if gone(&e) || denied(&e) => {}
            Err(_) => return None,
        }
        // One table per mount namespace (every hidden process's: its namespace is
        // hidden too).
        let new_table = match fs::metadata(proc.join("ns/mnt")) {
            Ok(m) => mount_namespaces.insert((m.dev(), m.ino())),
            Err(e) if gone(&e) => false,
            Err(e) if denied(&e) => true,
            Err(_) => return None,
        };
        if new_table {
            match fs::read_to_string(proc.join("mountinfo")) {
                Ok(table) => live.inos.extend(mounted(&table)),
                Err(e) if gone(&e) => {}
                Err(_) => return None,
            }
        }
        if all_alive(&live) {
            return Some(live);
        }
    }
    // Every hidden task must be in a namespace a task we could read is in.
    hidden.is_subset(&seen_dev).then_some(live)
}

fn denied(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::PermissionDenied
}

/// Whether an error reading `/proc/<pid>/...` means the process (or task) exited.
fn gone(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
}

/// The inode of a `net:[INO]` descriptor link.
fn net_ino(link: &Path) -> Option<u64> {
    link.to_str()?
        .strip_prefix("net:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The inodes of network namespaces bind-mounted in a `mountinfo` table (nsfs mounts
/// whose root is `net:[INO]`).
fn mounted(table: &str) -> impl Iterator<Item = u64> + '_ {
    table.lines().filter_map(|line| {
        let (fields, tail) = line.split_once(" - ")?;
        if tail.split(' ').next()? != "nsfs" {
            return None;
        }
        net_ino(Path::new(fields.split(' ').nth(3)?))
    })
}

/// The home [`remove`] came to was removed meanwhile (by another gc).
#[derive(Debug)]
struct HomeGone;

impl std::fmt::Display for HomeGone {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("the network home is gone")
    }
}

impl std::error::Error for HomeGone {}

/// Removes a dead namespace's home under its lock (`bridge.lock`, taken as `ipam.rs`
/// takes it, but never making the home again); false if another gc removed it first.
fn remove(home: &Path) -> anyhow::Result<bool> {
    let dir = || -> anyhow::Result<PathBuf> {
        if home.is_dir() {
            Ok(home.to_path_buf())
        } else {
            Err(HomeGone.into())
        }
    };
    let _lock = match super::ipam::lock_file(&dir, &format!("{}.lock", shared::DEFAULT_NETWORK)) {
        Ok(lock) => lock,
        Err(e) if e.is::<HomeGone>() => return Ok(false),
        Err(e) => return Err(e),
    };
    match fs::remove_dir_all(home) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| {
            format!(
                "cannot remove {}, the network home of a network namespace that no longer exists: remove it by hand",
                home.display()
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounted_reads_nsfs_network_namespaces_only() {
        let table = "\
36 25 0:4 net:[4026532281] /run/netns/a rw shared:5 - nsfs nsfs rw
37 25 0:4 mnt:[4026532282] /run/x rw - nsfs nsfs rw
38 25 0:40 / /run/mycontainer rw,nosuid - tmpfs tmpfs rw,size=65536k
";
        assert_eq!(mounted(table).collect::<Vec<_>>(), vec![4026532281]);
        assert_eq!(net_ino(Path::new("net:[12]")), Some(12));
        assert_eq!(net_ino(Path::new("socket:[12]")), None);
    }
}
