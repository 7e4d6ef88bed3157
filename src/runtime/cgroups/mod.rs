//! Container cgroups: one interface over cgroup v2 (unified), v1 (legacy) and hybrid
//! hosts, picked at run time by what is mounted (see `detect`).
//!
//! Every container gets `mycontainer/<id>`: on v2 one directory under /sys/fs/cgroup; on
//! hybrid hosts one in the cgroup2 tree plus one per v1 hierarchy a limit needs; on
//! legacy hosts one per v1 hierarchy. Nothing outside a `mycontainer` parent is ever
//! created, written or removed, unless a runtime-CLI caller names the cgroup itself
//! (linux.cgroupsPath, as containerd does): then that cgroup and the levels above it
//! that we had to make (`missing_parents`, `remove_parents`).

mod bpf;
mod detect;
mod devices;
mod files;
#[cfg(test)]
mod fixture;
mod live;
mod resources;
#[cfg(test)]
mod tests;
mod v1;
mod v2;
mod view;

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use oci_spec::runtime::LinuxResources;

use detect::Layout;
pub use live::Usage;
pub use resources::Limits;
pub use view::V1View;

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

/// What a container's /sys/fs/cgroup shows: the cgroup hierarchies, mounted read-only
/// inside its cgroup namespace (so each hierarchy's root is the cgroup the container is
/// in there: its own where it joined one, else the one it inherited), as Docker does.
/// Tools such as the JVM read their limits there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupView {
    /// cgroup2 at /sys/fs/cgroup.
    Unified,
    /// A tmpfs holding a cgroup2 mount at `unified` (hybrid hosts), one v1 mount per
    /// hierarchy the host has under /sys/fs/cgroup that the container joined or
    /// inherited below its root, and a link for each controller of a co-mounted one
    /// (see `view.rs`).
    Split { unified: bool, v1: V1View },
}

/// A snapshot of what the container used; `None` where the controller is missing.
#[cfg(test)]
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
    /// hybrid and legacy layouts (on hybrid hosts only the v1 hierarchies a limit needs
    /// are used: see v1.rs). Bad values fail before anything is created; a failure later
    /// removes what was made. An existing cgroup of that name is an error.
    pub fn create(name: &str, resources: Option<&LinuxResources>) -> Result<Cgroup> {
        let limits = Limits::from_oci(resources).context("invalid resource limits")?;
        let mut cgroup = Cgroup::locate(name)?;
        match &mut cgroup.backend {
            Backend::V2(cg) => cg.create(name, &limits)?,
            Backend::V1(cg) => {
                cg.keep_needed(&limits);
                cg.create(name, &limits)?
            }
        }
        Ok(cgroup)
    }

    /// Opens an existing container cgroup (for exec, stop, gc). Only works out the
    /// paths: a cgroup that does not exist reads as empty and destroys as a no-op.
    pub fn open(name: &str) -> Result<Cgroup> {
        let mut cgroup = Cgroup::locate(name)?;
        if let Backend::V1(cg) = &mut cgroup.backend {
            cg.keep_existing();
        }
        Ok(cgroup)
    }

    /// The paths `name` has in every hierarchy of the host's layout.
    fn locate(name: &str) -> Result<Cgroup> {
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

    /// Moves process `pid` into the cgroup (every hierarchy in use): for a child that
    /// could not be cloned into it (see `clone_into_fd`).
    pub fn add_process(&self, pid: i32) -> Result<()> {
        match &self.backend {
            Backend::V2(cg) => cg.add_process(pid),
            Backend::V1(cg) => cg.add_process(pid),
        }
    }

    /// Whether a child cloned into `clone_into_fd()` still has to be moved with
    /// `add_after_clone`: on hybrid hosts when a v1 limit is in use, never on v2.
    pub fn needs_add_after_clone(&self) -> bool {
        match &self.backend {
            Backend::V2(_) => false,
            Backend::V1(cg) => cg.has_v1_dirs(),
        }
    }

    /// Completes the placement of a child cloned into `clone_into_fd()`: moves it into
    /// the hierarchies a clone cannot reach (v1 on hybrid hosts). The caller lets the
    /// child exec only after this returned.
    pub fn add_after_clone(&self, pid: i32) -> Result<()> {
        match &self.backend {
            Backend::V2(_) => Ok(()),
            Backend::V1(cg) => cg.add_process_v1(pid),
        }
    }

    /// The `tasks` files of the v1 hierarchies a clone cannot reach (see
    /// `needs_add_after_clone`), open for writing: the child writes "0" to each before
    /// anything else and is then in all its cgroups, with no migration (see v1.rs).
    /// Empty when there is nothing to join that way.
    pub fn v1_tasks_files(&self) -> Result<Vec<OwnedFd>> {
        match &self.backend {
            Backend::V1(cg) => cg.tasks_files(),
            Backend::V2(_) => Ok(Vec::new()),
        }
    }

    /// What the container's /sys/fs/cgroup should show (see `CgroupView`).
    pub fn view(&self) -> CgroupView {
        match &self.backend {
            Backend::V2(_) => CgroupView::Unified,
            Backend::V1(cg) => {
                // Unreadable: no inherited cgroup is known, so only joined ones show.
                let inherited = &detect::own_cgroups().text;
                CgroupView::Split {
                    unified: cg.unified_dir().is_some(),
                    v1: view::shown(view::host_v1_view(), &cg.joined_mount_data(), inherited),
                }
            }
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
    #[cfg(test)]
    pub fn stats(&self) -> Stats {
        match &self.backend {
            Backend::V2(cg) => cg.stats(),
            Backend::V1(cg) => cg.stats(),
        }
    }

    /// Every directory of this cgroup (one on v2; one per hierarchy on v1), whether or
    /// not it exists (to check that `destroy` left nothing, or a dead container's
    /// cgroup was removed).
    pub fn paths(&self) -> Vec<PathBuf> {
        match &self.backend {
            Backend::V2(cg) => vec![cg.dir().to_path_buf()],
            Backend::V1(cg) => cg.dirs(),
        }
    }

    /// An O_PATH directory fd of the cgroup2 directory for clone3(CLONE_INTO_CGROUP),
    /// which starts the child already inside it (no migration, and no moment outside
    /// it): the container's cgroup on a v2 host, its cgroup2 directory on a hybrid one.
    /// `None` on legacy hosts, where `add_after_clone` moves the child instead.
    pub fn clone_into_fd(&self) -> Result<Option<OwnedFd>> {
        let dir = match &self.backend {
            Backend::V2(cg) => cg.dir(),
            Backend::V1(cg) => match cg.unified_dir() {
                Some(dir) => dir,
                None => return Ok(None),
            },
        };
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let fd = open(dir, flags, Mode::empty())
            .with_context(|| format!("cannot open cgroup {}", dir.display()))?;
        Ok(Some(fd))
    }

    /// Kills every process left in the cgroup, waits for them, removes the directories
    /// (retrying while the kernel still reports it busy). Idempotent.
    pub fn destroy(&self) -> Result<()> {
        match &self.backend {
            Backend::V2(cg) => cg.destroy(),
            Backend::V1(cg) => cg.destroy(),
        }?;
        // The shared `mycontainer` parents stay, as Docker's `docker` parent does: removing
        // them with the last container made the next start create them again (a mkdir,
        // and on v1 a cpuset copy, per hierarchy) and this one remove them (an rmdir per
        // hierarchy), on every run of a quiet host. `gc` removes them when unused.
        Ok(())
    }

    /// Removes the cgroup's directories that hold no process and no cgroup of their own,
    /// and kills nothing: for a cgroup whose container is believed gone but might not
    /// be (`gc` of a state root it cannot see). Whether every directory went.
    pub fn remove_if_empty(&self) -> Result<bool> {
        let mut all = true;
        for dir in self.paths() {
            match std::fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => all = false,
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot remove cgroup {}", dir.display()))
                }
            }
        }
        Ok(all)
    }
}

/// Names ("mycontainer/<...>") of existing container cgroups: gc picks its own root's
/// from them, the tests check for leaks. On v1 the union over the hierarchies, so a
/// half-removed cgroup is found too.
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

/// Whether the kernel accounts swap per cgroup (v1 `memory.memsw.*`, v2
/// `memory.swap.max`): without it a swap limit cannot be applied. The v2 root has no
/// memory files (and its children may not have the controller enabled yet), so on v2
/// it is the memory controller being there and swap accounting not turned off at boot.
pub fn has_swap_accounting() -> bool {
    match detect::detect() {
        Ok(Layout::Unified { root }) => {
            let memory = std::fs::read_to_string(root.join("cgroup.controllers"))
                .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"));
            let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
            let turned_off = cmdline
                .split_whitespace()
                .any(|a| a == "swapaccount=0" || a == "cgroup.memory=noswap");
            memory && !turned_off
        }
        Ok(Layout::Hybrid { v1, .. }) | Ok(Layout::Legacy { v1 }) => v1
            .iter()
            .find(|h| h.has("memory"))
            .is_some_and(|h| h.mount_point.join("memory.memsw.limit_in_bytes").exists()),
        Err(_) => false,
    }
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

/// A clean path relative to the hierarchy roots: parts neither empty, `.` nor `..`, no
/// newline, and neither the root nor our shared parent. The names we make are `mycontainer/<...>`; the
/// runtime CLI's callers may name any other (linux.cgroupsPath), as runc allows, and
/// `create` still refuses to adopt a cgroup that exists.
fn check_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name != PARENT
        && name
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != ".." && !p.contains('\n'));
    if !valid {
        bail!(
            "invalid cgroup path {name:?}: expected a path below the cgroup root without \
             `.`, `..` or empty parts"
        );
    }
    Ok(())
}

/// The directories above cgroup `name` that do not exist yet, in every hierarchy,
/// deepest first: the levels a `create` of `name` will make, which nobody else owns
/// (`remove_parents` takes them away again with the container).
pub fn missing_parents(name: &str) -> Result<Vec<PathBuf>> {
    check_name(name)?;
    let mut missing = Vec::new();
    for base in hierarchy_roots()? {
        let mut dir = base.join(name);
        while dir.pop() && dir != base && !dir.exists() {
            missing.push(dir.clone());
        }
    }
    missing.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    Ok(missing)
}

/// Removes the (empty) cgroup directories `dirs`, deepest first, those below a
/// hierarchy root only. One another container still uses stays (EBUSY), as does one
/// already gone.
pub fn remove_parents(dirs: &[PathBuf]) {
    let Ok(roots) = hierarchy_roots() else { return };
    let mut dirs: Vec<&PathBuf> = dirs
        .iter()
        .filter(|d| roots.iter().any(|r| d.starts_with(r) && *d != r))
        .filter(|d| {
            d.components().all(|c| {
                matches!(
                    c,
                    std::path::Component::RootDir | std::path::Component::Normal(_)
                )
            })
        })
        .collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for dir in dirs {
        let _ = std::fs::remove_dir(dir);
    }
}
