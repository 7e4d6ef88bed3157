//! The host ports published in one network namespace, by every state root in it: the
//! nftables port maps that forward them live in the namespace (the default network's
//! table is shared by every root), so a port is checked against every root's
//! containers, not only the caller's. Kept beside the default network's files in
//! `shared.rs`'s home (tmpfs: a published port dies with a reboot): `ports.lock`, held
//! while a port is checked and claimed or withdrawn, and `ports/<container id>`, one
//! claim per container that publishes, naming it, its state root and its network (as a
//! shared lease does). `attach` claims before it makes anything, `release` withdraws;
//! gc and `system check --repair` free the claims of containers that no longer run
//! (mod.rs: `collect_claims`).

use std::fs;
use std::io::ErrorKind;
use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::ipam::{self, NetworkLock};
use super::ports::PortMap;
use super::shared;

/// The ports one container publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub id: String,
    /// Its state root.
    pub root: PathBuf,
    /// Its name (what a conflict names), or empty.
    pub name: String,
    /// The network whose table forwards the ports.
    pub network: String,
    pub ports: Vec<PortMap>,
}

impl Claim {
    /// Who a conflict names: the name, else the short id.
    pub fn who(&self) -> String {
        if self.name.is_empty() {
            self.id[..12.min(self.id.len())].to_string()
        } else {
            self.name.clone()
        }
    }
}

const LOCK: &str = "ports.lock";

fn dir() -> PathBuf {
    shared::home().join("ports")
}

/// Locks the namespace's published ports (released on drop).
pub fn lock() -> anyhow::Result<NetworkLock> {
    ipam::lock_file(&shared::ensure, LOCK)
}

/// Whether ports were ever claimed here since gc last cleared the claims (their lock
/// file exists).
pub fn in_use() -> bool {
    shared::home().join(LOCK).exists()
}

/// Every claim (the caller holds the lock; an unreadable one, a write cut short by a
/// kill, is skipped and freed by gc with the container's other leftovers).
pub fn claims() -> Vec<Claim> {
    let Ok(entries) = fs::read_dir(dir()) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| serde_json::from_slice(&fs::read(e.path()).ok()?).ok())
        .collect()
}

/// Removes the claims that cannot be read (the caller holds the lock, so no writer is
/// at work: one was killed mid-write, before anything was published). Returns them.
pub fn remove_unreadable() -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir()) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let readable = fs::read(entry.path())
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Claim>(&bytes).ok())
            .is_some();
        if !readable && fs::remove_file(entry.path()).is_ok() {
            removed.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    removed
}

/// The claim of container `id`, if it is readable (the caller holds the lock).
pub fn claim_of(id: &str) -> Option<Claim> {
    serde_json::from_slice(&fs::read(dir().join(id)).ok()?).ok()
}

/// Records `claim` (the caller holds the lock and has checked its ports).
pub fn claim(claim: &Claim) -> anyhow::Result<()> {
    let dir = dir();
    fs::DirBuilder::new()
        .recursive(true)
        .create(&dir)
        .and_then(|()| {
            crate::container::write_private(&dir.join(&claim.id), &serde_json::to_vec(claim)?)
        })
        .map(|_| ())
        .with_context(|| format!("cannot record the ports of container {}", claim.id))
}

/// Removes container `id`'s claim (the caller holds the lock; a missing one is fine).
pub fn unclaim(id: &str) -> anyhow::Result<()> {
    let path = dir().join(id);
    match fs::remove_file(&path) {
        Err(e) if e.kind() != ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Of `ports` that container `id` published on `network`, those no other claim holds
/// (the caller holds the lock): what withdrawing them may delete from the network's
/// port maps, which are keyed by address, protocol and port only.
pub fn only_mine(id: &str, network: &str, ports: &[PortMap]) -> Vec<PortMap> {
    let others: Vec<Claim> = claims()
        .into_iter()
        .filter(|c| c.id != id && c.network == network)
        .collect();
    ports
        .iter()
        .filter(|p| {
            !others
                .iter()
                .flat_map(|c| c.ports.iter())
                .any(|o| o.host_ip == p.host_ip && o.proto == p.proto && o.host_port == p.host_port)
        })
        .cloned()
        .collect()
}

/// gc, once no claim is left (the caller holds no lock): removes the claims' directory
/// and lock file (a waiter then locks again on a new one), and the shared home when
/// nothing else is in it.
pub fn remove_if_unused() -> anyhow::Result<()> {
    if !in_use() {
        return Ok(());
    }
    let _lock = lock()?;
    let dir = dir();
    match fs::remove_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        // Not empty: claims are left.
        Err(_) => return Ok(()),
    }
    let _ = fs::remove_file(shared::home().join(LOCK));
    shared::remove_home();
    Ok(())
}
