//! Container cgroups: one interface over cgroup v2 (unified), v1 (legacy) and hybrid
//! hosts. STUB: the real backends land on the `cgroups` branch; this keeps the API stable.
#![allow(dead_code)]

use oci_spec::runtime::LinuxResources;

/// The cgroup (or, on v1, set of per-controller cgroups) of one container.
#[derive(Debug)]
pub struct Cgroup {
    name: String,
}

impl Cgroup {
    /// Creates the container's cgroup named `name` (e.g. "mycontainer/<id>": a path
    /// relative to the hierarchy root(s)) and applies `resources`. Works on unified,
    /// hybrid and legacy layouts.
    pub fn create(name: &str, _resources: Option<&LinuxResources>) -> anyhow::Result<Cgroup> {
        Ok(Cgroup { name: name.into() })
    }

    /// Opens an existing container cgroup (for exec, stop, gc).
    pub fn open(name: &str) -> anyhow::Result<Cgroup> {
        Ok(Cgroup { name: name.into() })
    }

    /// Moves process `pid` into the cgroup (every v1 hierarchy, or the v2 one). Called by
    /// the parent for the container's init before it is allowed to exec.
    pub fn add_process(&self, _pid: i32) -> anyhow::Result<()> {
        Ok(())
    }

    /// Whether the kernel OOM killer killed a process in this cgroup.
    pub fn oom_killed(&self) -> bool {
        false
    }

    /// The memory limit in bytes, if one is set (for the OOM message).
    pub fn memory_limit(&self) -> Option<u64> {
        None
    }

    /// Kills every process left in the cgroup, waits for them, removes the directories
    /// (retrying while the kernel still reports it busy). Idempotent.
    pub fn destroy(&self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Names ("mycontainer/<id>") of existing container cgroups, for gc of orphans.
pub fn list_container_cgroups() -> anyhow::Result<Vec<String>> {
    Ok(Vec::new())
}
