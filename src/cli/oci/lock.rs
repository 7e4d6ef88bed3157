//! One lock per container id, so that runtime commands on the same container run one
//! at a time (containerd's shim may `kill` while a `delete` runs; two `create`s of one
//! id may race): an exclusive flock(2) on `<root>/.lock:<id>` (`:` is never in an id,
//! so it cannot collide with a container's directory). Read-only verbs (`state`,
//! `list`, `ps`) take none. `delete` removes the file while holding the lock; whoever
//! waited on the removed file sees it is no longer the one at that path and starts
//! again, so every holder locks the file that is there.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::fcntl::{Flock, FlockArg};

/// Held until dropped (the kernel releases it if we die). Dropped when the container
/// has no directory (deleted, never created, a failed create), it removes its file
/// first, so no lock file outlives its container.
pub struct Lock {
    path: PathBuf,
    container_dir: PathBuf,
    _file: Flock<File>,
}

impl Lock {
    /// Waits for and takes the lock of container `id` (the state root is made if
    /// missing, 0700).
    pub fn take(root: &Path, id: &str) -> anyhow::Result<Lock> {
        super::state::check_id(id)?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .with_context(|| format!("cannot create the state root {}", root.display()))?;
        let path = root.join(format!(".lock:{id}"));
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("cannot open the lock file {}", path.display()))?;
            let file = Flock::lock(file, FlockArg::LockExclusive)
                .map_err(|(_, e)| anyhow::anyhow!("cannot lock {}: {e}", path.display()))?;
            let held = file
                .metadata()
                .with_context(|| format!("cannot read {}", path.display()))?;
            // Removed (or replaced) by a `delete` while we waited: lock the new one.
            match std::fs::metadata(&path) {
                Ok(now) if (now.dev(), now.ino()) == (held.dev(), held.ino()) => {
                    return Ok(Lock {
                        path,
                        container_dir: super::state::container_dir(root, id),
                        _file: file,
                    })
                }
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Still held here: the file is released after this body.
        if !self.container_dir.exists() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_waits_and_a_removed_file_is_not_locked_twice() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("state");
        let first = Lock::take(&root, "c1").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let root2 = root.clone();
        let waiter = std::thread::spawn(move || {
            let lock = Lock::take(&root2, "c1").unwrap();
            tx.send(()).unwrap();
            lock
        });
        // Still held: the waiter cannot have it (it would have sent by now or never).
        assert!(rx
            .recv_timeout(std::time::Duration::from_millis(200))
            .is_err());
        // No container directory: dropping removes the file the waiter has opened.
        drop(first);
        rx.recv().unwrap();
        let second = waiter.join().unwrap();
        // The waiter holds the file that is at the path now.
        assert!(root.join(".lock:c1").exists());
        drop(second);
        assert!(!root.join(".lock:c1").exists());
        std::fs::create_dir(root.join("c1")).unwrap();
        drop(Lock::take(&root, "c1").unwrap());
        assert!(
            root.join(".lock:c1").exists(),
            "a container's lock file stays"
        );
        assert!(Lock::take(&root, "c/1").is_err());
    }
}
