//! `rm`: deletes a stopped record; with `force`, kills a running container first.

use std::time::Duration;

use anyhow::bail;
use mycontainer_store::Store;

use super::control;
use super::record::{delete_locked, lock_dir, Record};
use super::state::Status;

/// Whether the record says the container exited and will not be restarted.
fn exited_for_good(record: &Record) -> bool {
    record
        .load_state()
        .is_ok_and(|state| state.status == Status::Exited && !state.restarting)
}

/// Deletes a stopped record: its cgroup, its directory and its name; with `volumes`
/// (`rm -v`) its anonymous volumes too.
pub fn remove(store: &Store, record: &Record, force: bool, volumes: bool) -> anyhow::Result<()> {
    let mut lock = lock_dir(&record.dir, false)?;
    while lock.is_none() {
        if force {
            // Kill the container's init (its whole pid namespace dies with it) and wait
            // for its supervisor to clean up and release the lock, however long that
            // takes (as stop): giving up after a fixed 10 s said "is running ... use rm
            // -f" to an rm -f on a busy machine whose supervisor was merely slow. Another
            // command may take the lock first (a start): kill again.
            control::kill_and_wait(record)?;
        } else if exited_for_good(record) {
            // A supervisor records the exit before it lets go of the record (it still
            // detaches mounts and network, and drains attached clients): an exited
            // container is waited for, not refused as running. Polled, so a container
            // that starts again meanwhile (a `start`) is refused rather than waited on.
            std::thread::sleep(Duration::from_millis(10));
        } else {
            break;
        }
        lock = match lock_dir(&record.dir, false) {
            // Its supervisor ran with --rm and removed it after the kill, or another rm
            // removed it.
            Err(_) if !record.dir.exists() => return Ok(()),
            other => other?,
        };
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
