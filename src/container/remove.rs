//! `rm`: deletes a stopped record; with `force`, kills a running container first.

use anyhow::bail;
use mycontainer_store::Store;

use super::control;
use super::record::{delete_locked, lock_dir, Record};

/// Deletes a stopped record: its cgroup, its directory and its name; with `volumes`
/// (`rm -v`) its anonymous volumes too.
pub fn remove(store: &Store, record: &Record, force: bool, volumes: bool) -> anyhow::Result<()> {
    let mut lock = lock_dir(&record.dir, false)?;
    if lock.is_none() && force {
        // Kill the container's init (its whole pid namespace dies with it); the CLI that
        // supervises it then cleans up and releases the lock.
        let _ = control::signal(record, libc::SIGKILL);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while lock.is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
            lock = lock_dir(&record.dir, false)?;
        }
    }
    let Some(_lock) = lock else {
        bail!(
            "container {} is running: stop it first, or use rm -f",
            &record.id[..12]
        );
    };
    if !record.dir.exists() {
        // Its supervisor ran with --rm and removed it after the kill.
        return Ok(());
    }
    let name = record.load_state().ok().and_then(|s| s.name);
    let anonymous = if volumes {
        super::volumes::volumes_of_record(store.root(), &record.dir)
    } else {
        Default::default()
    };
    delete_locked(store, &record.id, &record.dir, name.as_deref())?;
    super::volumes::remove_anonymous(store.root(), &anonymous)
}
