//! Container cgroups: one interface over cgroup v2 (unified), v1 (legacy) and hybrid
//! hosts, picked at run time by what is mounted (see `detect`).
//!
//! Every container gets `mycontainer/<id>`: on v2 one directory under /sys/fs/cgroup, on
//! v1 one per controller hierarchy (plus the cgroup2 tree on hybrid hosts). Nothing
//! outside a `mycontainer` parent is ever created, written or removed.
#![allow(dead_code)] // Stats, stats() and paths() are used by the tests only so far; kept for `inspect`/`stats`

mod detect;
mod files;
mod resources;
#[cfg(test)]
mod tests;
mod v1;
mod v2;

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use oci_spec::runtime::LinuxResources;

use detect::Layout;
pub use resources::Limits;

/// The parent of every container cgroup, in every hierarchy.
pub const PARENT: &str = "mycontainer";

/// The cgroup (or, on v1, set of per-controller cgroups) of one container.
#[derive(Debug)]
pub struct Cgroup {
    name: String,
    backend: Backend,
}

/// The closed set of backends.
#[derive(Debug)]
enum Backend {
    V2(v2::V2Cgroup),
    V1(v1::V1Cgroup),
}

/// A snapshot of what the container used; `None` where the controller is missing.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub memory_current: Option<u64>,
    pub cpu_usage_usec: Option<u64>,
    pub cpu_nr_throttled: Option<u64>,
    pub pids_current: Option<u64>,
    pub oom_kills: u64,
}

impl Cgroup {
    /// Creates the container's cgroup named `name` (e.g. "mycontainer/<id>": a path
    /// relative to the hierarchy root(s)) and applies `resources`. Works on unified,
    /// hybrid and legacy layouts. Bad values fail before anything is created; a failure
    /// later removes what was made. An existing cgroup of that name is an error.
    pub fn create(name: &str, resources: Option<&LinuxResources>) -> Result<Cgroup> {
        let limits = Limits::from_oci(resources).context("invalid resource limits")?;
        let cgroup = Cgroup::open(name)?;
        match &cgroup.backend {
            Backend::V2(cg) => cg.create(name, &limits)?,
            Backend::V1(cg) => cg.create(name, &limits)?,
        }
        Ok(cgroup)
    }

    /// Opens an existing container cgroup (for exec, stop, gc). Only works out the
    /// paths: a cgroup that does not exist reads as empty and destroys as a no-op.
    pub fn open(name: &str) -> Result<Cgroup> {
        check_name(name)?;
        let backend = match detect::detect()? {
            Layout::Unified { root } => Backend::V2(v2::V2Cgroup::new(&root, name)),
            Layout::Hybrid { v1, unified } => {
                Backend::V1(v1::V1Cgroup::new(&v1, Some(&unified), name))
            }
            Layout::Legacy { v1 } => Backend::V1(v1::V1Cgroup::new(&v1, None, name)),
        };
        Ok(Cgroup {
            name: name.into(),
            backend,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Moves process `pid` into the cgroup (every v1 hierarchy, or the v2 one). Called by
    /// the parent for the container's init before it is allowed to exec.
    pub fn add_process(&self, pid: i32) -> Result<()> {
        match &self.backend {
            Backend::V2(cg) => cg.add_process(pid),
            Backend::V1(cg) => cg.add_process(pid),
        }
    }

    /// Whether the kernel OOM killer killed a process in this cgroup (v2: memory.events
    /// `oom_kill`; v1: memory.oom_control `oom_kill`).
    pub fn oom_killed(&self) -> bool {
        self.oom_kills() > 0
    }

    fn oom_kills(&self) -> u64 {
        match &self.backend {
            Backend::V2(cg) => cg.oom_kills(),
            Backend::V1(cg) => cg.oom_kills(),
        }
    }

    /// The memory limit in bytes, if one is set (for the OOM message).
    pub fn memory_limit(&self) -> Option<u64> {
        match &self.backend {
            Backend::V2(cg) => cg.memory_limit(),
            Backend::V1(cg) => cg.memory_limit(),
        }
    }

    /// Current usage: memory, CPU time, throttling, pids, OOM kills.
    pub fn stats(&self) -> Stats {
        match &self.backend {
            Backend::V2(cg) => cg.stats(),
            Backend::V1(cg) => cg.stats(),
        }
    }

    /// Every directory of this cgroup (one on v2; one per hierarchy on v1), whether or
    /// not it exists (to check that `destroy` left nothing).
    pub fn paths(&self) -> Vec<PathBuf> {
        match &self.backend {
            Backend::V2(cg) => vec![cg.dir().to_path_buf()],
            Backend::V1(cg) => cg.dirs(),
        }
    }

    /// On a unified (v2) host, an O_PATH directory fd of the cgroup for
    /// clone3(CLONE_INTO_CGROUP), which starts the child already inside it (no
    /// add_process needed, and no moment outside it). `None` on v1 and hybrid hosts,
    /// where the process must be added to each hierarchy with `add_process`.
    pub fn clone_into_fd(&self) -> Result<Option<OwnedFd>> {
        let Backend::V2(cg) = &self.backend else {
            return Ok(None);
        };
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let fd = open(cg.dir(), flags, Mode::empty())
            .with_context(|| format!("cannot open cgroup {}", cg.dir().display()))?;
        Ok(Some(fd))
    }

    /// Kills every process left in the cgroup, waits for them, removes the directories
    /// (retrying while the kernel still reports it busy). Idempotent.
    pub fn destroy(&self) -> Result<()> {
        match &self.backend {
            Backend::V2(cg) => cg.destroy(),
            Backend::V1(cg) => cg.destroy(),
        }?;
        // The last container out removes the shared parent too, so the host is left as
        // it was found. Best effort: a parent another container still uses stays (EBUSY),
        // and a create racing with this starts again (see files::create_levels).
        let _ = remove_unused_parents();
        Ok(())
    }
}

/// Names ("mycontainer/<id>") of existing container cgroups, for gc of orphans. On v1
/// the union over the hierarchies, so a half-removed cgroup is found too.
pub fn list_container_cgroups() -> Result<Vec<String>> {
    let mut names: Vec<String> = hierarchy_roots()?
        .iter()
        .flat_map(|base| files::children(base, PARENT))
        .map(|id| format!("{PARENT}/{id}"))
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// Removes the `mycontainer` parents that no container uses any more (for gc, and to
/// leave a host clean). A parent still holding a container is kept (EBUSY); a create
/// racing with this re-creates it.
pub fn remove_unused_parents() -> Result<()> {
    for base in hierarchy_roots()? {
        let parent = base.join(PARENT);
        match std::fs::remove_dir(&parent) {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::ENOENT)) => {}
            Err(e) => {
                return Err(e).with_context(|| format!("cannot remove cgroup {}", parent.display()))
            }
        }
    }
    Ok(())
}

/// The root of every hierarchy we make cgroups in.
fn hierarchy_roots() -> Result<Vec<PathBuf>> {
    Ok(match detect::detect()? {
        Layout::Unified { root } => vec![root],
        Layout::Hybrid { v1, unified } => std::iter::once(unified)
            .chain(v1.into_iter().map(|h| h.mount_point))
            .collect(),
        Layout::Legacy { v1 } => v1.into_iter().map(|h| h.mount_point).collect(),
    })
}

/// Only `mycontainer/<...>` names, without `.`/`..`/empty parts: the guarantee that we
/// never touch a cgroup that is not ours.
fn check_name(name: &str) -> Result<()> {
    let mut parts = name.split('/');
    let valid = parts.next() == Some(PARENT)
        && name.contains('/')
        && parts.all(|p| !p.is_empty() && p != "." && p != ".." && !p.contains('\n'));
    if !valid {
        bail!("invalid cgroup name {name:?}: expected {PARENT}/<container id>");
    }
    Ok(())
}
