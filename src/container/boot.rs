//! `system boot`: after a reboot, starts the containers whose restart policy says they
//! should run (what Docker's daemon does when it starts), each under a new supervisor.
//! The records of containers the reboot killed were already marked exited (137) by the
//! reclaim every command runs first.

use std::path::Path;

use super::control;
use super::restart;

/// What boot did with one container.
pub struct Booted {
    pub name: String,
    /// Ok(None): started; Ok(Some(code)): its command could not be executed.
    pub result: anyhow::Result<Option<i32>>,
}

/// Starts every stopped container whose policy asks for it; oldest first.
pub fn boot(root: &Path) -> anyhow::Result<Vec<Booted>> {
    let mut list = control::list(root)?;
    list.reverse();
    let mut booted = Vec::new();
    for (record, state) in list {
        if state.auto_remove || record.is_supervised() {
            continue;
        }
        let wanted = state.restart_policy.starts_at_boot(
            restart::stopped_by_user(&record),
            state.exit_code.unwrap_or(0),
            state.restart_count,
        );
        if !wanted {
            continue;
        }
        booted.push(Booted {
            name: record.display_name(),
            result: control::start(root, &record),
        });
    }
    Ok(booted)
}
