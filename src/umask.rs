//! The file-mode creation mask. Everything this binary makes on the host for itself
//! (the state root's records, store, caches; the run directory; a container's upper
//! dir, whose root is the container's `/`, and the /etc/hosts, /etc/hostname and
//! /etc/resolv.conf it bind-mounts) gets its mode from the code, never from whoever
//! typed the command: so the process runs with umask 022, as dockerd does under
//! systemd. With the caller's umask, `umask 000` gave containers a world-writable `/`
//! and /etc/hosts (any user in the container could rewrite the names root resolves),
//! and `umask 077` a `/` that only root could enter (every non-root container failed).
//!
//! Files written for the caller (`save -o`, `export -o`) keep the caller's umask.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

/// Ours: what `umask 022` gives (dirs 0755, files 0644 unless the code says otherwise).
const OURS: libc::mode_t = 0o022;

/// The caller's umask, as [`set`] found it.
static CALLER: AtomicU32 = AtomicU32::new(OURS);

/// Sets the process's umask to ours and keeps the caller's (first thing in `main`).
pub fn set() {
    // SAFETY: umask only swaps the process's mask; it cannot fail.
    let caller = unsafe { libc::umask(OURS) };
    CALLER.store(caller, Ordering::Relaxed);
}

/// Creates (or truncates) `path`, a file the caller asked for, with the mode their
/// umask gives (0666 less it), as the shell's `>` would.
pub fn create_for_caller(path: &Path) -> std::io::Result<File> {
    let mode = 0o666 & !CALLER.load(Ordering::Relaxed);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    // Our own umask took 022 off what was asked: give the caller's mode exactly.
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(file)
}
