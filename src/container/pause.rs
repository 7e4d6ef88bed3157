//! `pause` and `unpause`: freezing a running container's processes with its cgroup's
//! freezer (the mechanism is the runtime's: `Cgroup::freeze`). Whether a container is
//! paused is read from the cgroup, never stored, so it cannot go stale.

use anyhow::bail;

use super::record::Record;
use super::state::{State, Status};
use crate::runtime::cgroups::Cgroup;

fn running_cgroup(record: &Record) -> anyhow::Result<Cgroup> {
    let state = record.load_state()?;
    if state.status != Status::Running || !record.is_supervised() {
        bail!("container {} is not running", record.display_name());
    }
    Cgroup::open(&record.cgroup_name())
}

/// The container is paused: what exec answers (exit 1, as Docker).
#[derive(Debug, thiserror::Error)]
#[error("container {name} is paused: unpause it before exec (mycontainer unpause {name})")]
pub struct Paused {
    pub name: String,
}

/// Freezes every process of the running container.
pub fn pause(record: &Record) -> anyhow::Result<()> {
    let cgroup = running_cgroup(record)?;
    if cgroup.is_frozen() {
        bail!("container {} is already paused", record.display_name());
    }
    cgroup.freeze()
}

/// Thaws a paused container.
pub fn unpause(record: &Record) -> anyhow::Result<()> {
    let cgroup = running_cgroup(record)?;
    if !cgroup.is_frozen() {
        bail!("container {} is not paused", record.display_name());
    }
    cgroup.thaw()
}

/// Whether the container runs and is paused (for ps and inspect).
pub fn is_paused(record: &Record, state: &State) -> bool {
    state.status == Status::Running
        && Cgroup::open(&record.cgroup_name()).is_ok_and(|cg| cg.is_frozen())
}

/// Thaws the container if it is paused, so that a signal just sent to it takes effect
/// (stop and kill on a paused container end it, as Docker's do).
pub(super) fn thaw_if_paused(record: &Record) {
    if let Ok(cgroup) = Cgroup::open(&record.cgroup_name()) {
        if cgroup.is_frozen() {
            let _ = cgroup.thaw();
        }
    }
}
