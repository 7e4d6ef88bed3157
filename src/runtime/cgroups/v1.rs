//! cgroup v1 (legacy and hybrid hosts): one `mycontainer/<id>` directory in each
//! controller hierarchy (memory, cpu, cpuacct, cpuset, pids, and devices on legacy
//! hosts; co-mounted controllers share one), plus, on a hybrid host, one in the
//! controller-less cgroup2 tree, which also carries the device filter (eBPF).
//!
//! Why the cgroup2 tree too: systemd tracks processes there, and a container started
//! with a cgroup namespace should see its own cgroup as `/` in every hierarchy it can
//! mount; left in our cgroup2 cgroup it would see ours (runc joins it for the same
//! reason). It has no controllers, so it costs one mkdir.
//!
//! On a hybrid host the cgroup2 directory is the container's cgroup: the child is cloned
//! straight into it (CLONE_INTO_CGROUP), it is what `kill` checks and what cgroup.kill
//! empties. The v1 hierarchies are joined only for the controllers a limit needs (the
//! default pids limit included); on a legacy host (no cgroup2 tree) every hierarchy is
//! joined, as there is nothing else to track the container with.
//!
//! Joining a v1 cgroup from outside is a migration (a write of the pid to
//! cgroup.procs), which takes the kernel's global cgroup_threadgroup_rwsem for writing;
//! the first such write after a quiet spell waits a whole RCU grace period (10-15 ms on
//! our test host, more than the rest of a container start). But a thread moving
//! *itself* (writing "0" to a `tasks` file) takes no global lock. So the parent opens
//! each `tasks` file (`tasks_files`) and the child, as its first act after the clone,
//! writes "0" to each: one write per hierarchy, made by the container's own process,
//! before it creates anything (its cgroup namespace comes later, from the plan's
//! UnshareCgroup step). No thread of the runtime ever enters the container's cgroups.
//! The migration remains the fallback (`add_process_v1`).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

use super::detect::Hierarchy;
use super::files;
use super::resources::Limits;
use super::v2::warn_no_swap_accounting;
#[cfg(test)]
use super::Stats;
use super::{bpf, devices};

/// Above this a v1 limit file means "unlimited" (the kernel prints PAGE_COUNTER_MAX
/// in bytes, 0x7ffffffffffff000 on x86-64, not -1).
const V1_UNLIMITED: u64 = 1 << 62;

/// The hierarchies a container joins on a hybrid host even without a limit in them:
/// what `stats` reads (memory use and limit, block I/O). Not cpu and cpuacct: CPU time
/// comes from cgroup2's core cpu.stat, and a thread moving in and out of a cpu cgroup
/// is moved between run queues and yields the CPU, which took several ms per run on a
/// loaded host; `update` joins a cpu hierarchy late when a CPU limit is first set
/// (`join_late`).
const OBSERVED: [&str; 2] = ["memory", "blkio"];

#[derive(Debug, Clone)]
pub struct V1Cgroup {
    /// One directory per mounted hierarchy we use.
    dirs: Vec<ControllerDir>,
    /// Hybrid hosts: the hierarchies left out (no limit needed them), which `join_late`
    /// can still add.
    unused: Vec<ControllerDir>,
    /// Hybrid hosts: the cgroup2 tree's root and our directory in it.
    unified: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug, Clone)]
struct ControllerDir {
    hierarchy: Hierarchy,
    dir: PathBuf,
}

impl V1Cgroup {
    pub fn new(hierarchies: &[Hierarchy], unified_root: Option<&Path>, name: &str) -> V1Cgroup {
        V1Cgroup {
            dirs: hierarchies
                .iter()
                .map(|h| ControllerDir {
                    hierarchy: h.clone(),
                    dir: h.mount_point.join(name),
                })
                .collect(),
            unused: Vec::new(),
            unified: unified_root.map(|root| (root.to_path_buf(), root.join(name))),
        }
    }

    /// A hybrid host keeps only the hierarchies whose controllers `limits` needs (see
    /// the module comment); a legacy host keeps all of them.
    pub fn keep_needed(&mut self, limits: &Limits) {
        if self.unified.is_some() {
            let mut needed = limits.required_controllers();
            // What `stats` reads and `update` may write later, whatever the limits now
            // (Docker joins every hierarchy): memory use, block I/O, and the memory and
            // CPU limits. CPU time comes from cgroup2's core cpu.stat on these hosts,
            // and the freezer from its cgroup.freeze (live.rs).
            needed.extend(OBSERVED);
            self.keep(|d| needed.iter().any(|c| d.hierarchy.has(c)));
        }
    }

    /// Moves the directories `wanted` rejects to `unused`.
    fn keep(&mut self, wanted: impl Fn(&ControllerDir) -> bool) {
        let (kept, unused) = std::mem::take(&mut self.dirs).into_iter().partition(wanted);
        self.dirs = kept;
        self.unused = unused;
    }

    /// A hybrid host keeps only the hierarchies the container joined (for exec, stop
    /// and gc of an existing cgroup); a legacy host keeps all of them.
    pub fn keep_existing(&mut self) {
        if self.unified.is_some() {
            self.keep(|d| d.dir.is_dir());
        }
    }

    /// Hybrid hosts: joins the running container, late, to the v1 hierarchies of
    /// `controllers` it did not join at start (`update` setting a first CPU limit):
    /// creates the cgroup there and moves every process of the container (listed by its
    /// cgroup2 directory) into it. A process forked meanwhile shows up in the cgroup2
    /// list and is moved by the next pass; the passes end when one moves nothing.
    pub fn join_late(&mut self, name: &str, controllers: &[&str]) -> Result<()> {
        let Some((_, unified)) = self.unified.clone() else {
            return Ok(());
        };
        for controller in controllers {
            if self.dir_of(controller).is_some() {
                continue;
            }
            let Some(at) = self.unused.iter().position(|d| d.hierarchy.has(controller)) else {
                continue;
            };
            let d = self.unused.remove(at);
            create_in_hierarchy(&d, name)?;
            let moved = move_all(&unified, &d.dir);
            self.dirs.push(d.clone());
            moved.with_context(|| format!("cannot move the container into {}", d.dir.display()))?;
        }
        Ok(())
    }

    /// The cgroup2 directory a child can be cloned into (hybrid hosts).
    pub fn unified_dir(&self) -> Option<&Path> {
        self.unified.as_ref().map(|(_, dir)| dir.as_path())
    }

    /// Every directory this cgroup has (or would have); the cgroup2 one first.
    pub fn dirs(&self) -> Vec<PathBuf> {
        let unified = self.unified.iter().map(|(_, dir)| dir.clone());
        unified
            .chain(self.dirs.iter().map(|d| d.dir.clone()))
            .collect()
    }

    /// The directory of the hierarchy carrying `controller`.
    pub(super) fn dir_of(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|d| d.hierarchy.has(controller))
            .map(|d| d.dir.as_path())
    }

    pub fn create(&self, name: &str, limits: &Limits) -> Result<()> {
        for controller in limits.required_controllers() {
            if self.dir_of(controller).is_none() {
                bail!(
                    "cannot apply the {controller} limit: no cgroup v1 hierarchy with the \
                     {controller} controller is mounted (see /proc/self/mountinfo)"
                );
            }
        }
        if limits.devices.is_some() && self.unified.is_none() && self.dir_of("devices").is_none() {
            bail!(
                "cannot apply the device rules: no cgroup v1 hierarchy with the devices \
                 controller is mounted (see /proc/self/mountinfo)"
            );
        }
        let mut created = Vec::new();
        let result = self
            .create_dirs(name, &mut created)
            .and_then(|()| self.apply(limits));
        if result.is_err() {
            // undo what we made (never a leaf that existed before: it is not ours); the
            // caller gets no Cgroup to destroy
            for dir in created {
                let _ = files::remove_tree(&dir);
            }
        }
        result
    }

    fn create_dirs(&self, name: &str, created: &mut Vec<PathBuf>) -> Result<()> {
        for d in &self.dirs {
            create_in_hierarchy(d, name)?;
            created.push(d.dir.clone());
        }
        if let Some((root, dir)) = &self.unified {
            files::create_levels(root, name, |_, _| Ok(()))?;
            created.push(dir.clone());
        }
        Ok(())
    }

    pub(super) fn apply(&self, limits: &Limits) -> Result<()> {
        if let Some(dir) = self.dir_of("memory") {
            // the memory limit first: memsw must never be below it
            if let Some(memory) = limits.memory {
                files::write(&dir.join("memory.limit_in_bytes"), &memory.v1())?;
            }
            if let Some(total) = limits.memory_and_swap {
                let file = dir.join("memory.memsw.limit_in_bytes");
                if file.exists() {
                    files::write(&file, &total.v1())?;
                } else {
                    warn_no_swap_accounting(&file);
                }
            }
        }
        if let Some(dir) = self.dir_of("cpu") {
            if let Some(cpu) = limits.cpu_max {
                files::write(&dir.join("cpu.cfs_period_us"), &cpu.period.to_string())?;
                files::write(&dir.join("cpu.cfs_quota_us"), &cpu.quota.v1())?;
            }
            if let Some(shares) = limits.cpu_shares {
                files::write(&dir.join("cpu.shares"), &shares.to_string())?;
            }
        }
        if let Some(dir) = self.dir_of("cpuset") {
            if let Some(cpus) = &limits.cpuset_cpus {
                files::write(&dir.join("cpuset.cpus"), cpus)?;
            }
            if let Some(mems) = &limits.cpuset_mems {
                files::write(&dir.join("cpuset.mems"), mems)?;
            }
        }
        if let (Some(dir), Some(pids)) = (self.dir_of("pids"), limits.pids) {
            files::write(&dir.join("pids.max"), &pids.v2())?;
        }
        if let Some(rules) = &limits.devices {
            match (&self.unified, self.dir_of("devices")) {
                // Hybrid: the cgroup2 directory the container is cloned into filters
                // devices with eBPF as on v2, and no v1 migration is needed for it.
                (Some((_, unified)), _) => {
                    if !devices::allows_everything(rules) {
                        bpf::attach_device_filter(unified, rules)?;
                    }
                }
                (None, Some(dir)) => apply_v1_devices(dir, rules)?,
                // checked in create()
                (None, None) => {}
            }
        }
        Ok(())
    }

    /// `apply` for a memory limit raised above the current memory+swap limit, which the
    /// kernel refuses until memory+swap is raised first.
    pub(super) fn apply_memory_swap_first(&self, limits: &Limits) -> Result<()> {
        if let (Some(dir), Some(total)) = (self.dir_of("memory"), limits.memory_and_swap) {
            files::write(&dir.join("memory.memsw.limit_in_bytes"), &total.v1())?;
        }
        self.apply(limits)
    }

    /// Writes the pid into every hierarchy (and the cgroup2 tree on hybrid hosts).
    pub fn add_process(&self, pid: i32) -> Result<()> {
        join(self.dirs(), pid)
    }

    /// Writes the pid into the v1 hierarchies only: for a process cloned into the
    /// cgroup2 directory already.
    pub fn add_process_v1(&self, pid: i32) -> Result<()> {
        join(self.dirs.iter().map(|d| d.dir.clone()), pid)
    }

    /// The mount data of each hierarchy in use (see `Hierarchy::mount_data`).
    pub fn joined_mount_data(&self) -> Vec<String> {
        self.dirs
            .iter()
            .map(|d| d.hierarchy.mount_data.clone())
            .collect()
    }

    /// Whether a process needs `add_process_v1` (some v1 hierarchy is in use).
    pub fn has_v1_dirs(&self) -> bool {
        !self.dirs.is_empty()
    }

    /// The `oom_kill` counter of memory.oom_control (kernel >= 4.13): the number of
    /// processes the OOM killer killed because this cgroup hit its limit. memory.failcnt
    /// is not used: it counts every time usage touched the limit, which reclaim usually
    /// resolves without any kill. Unlike v2's memory.events, v1 does not propagate the
    /// count upwards: an OOM kill caused by a lower limit in a cgroup the container made
    /// itself is not counted here (it was not our limit that was hit).
    pub fn oom_kills(&self) -> u64 {
        self.dir_of("memory")
            .and_then(|dir| files::read_keyed(&dir.join("memory.oom_control"), "oom_kill"))
            .unwrap_or(0)
    }

    pub fn memory_limit(&self) -> Option<u64> {
        let dir = self.dir_of("memory")?;
        files::read_u64(&dir.join("memory.limit_in_bytes")).filter(|v| *v < V1_UNLIMITED)
    }

    /// CPU time used, in microseconds: cgroup2's core cpu.stat on hybrid hosts (it counts
    /// without the cpu controller), else cpuacct, which is joined only with a CPU limit
    /// and may be a hierarchy of its own.
    pub fn cpu_usage_usec(&self) -> Option<u64> {
        self.unified_dir()
            .and_then(|d| files::read_keyed(&d.join("cpu.stat"), "usage_usec"))
            .or_else(|| {
                let dir = self.dir_of("cpuacct")?;
                files::read_u64(&dir.join("cpuacct.usage")).map(|ns| ns / 1000)
            })
    }

    #[cfg(test)]
    pub fn stats(&self) -> Stats {
        let read =
            |controller: &str, file: &str| files::read_u64(&self.dir_of(controller)?.join(file));
        let throttled = self
            .dir_of("cpu")
            .and_then(|dir| files::read_keyed(&dir.join("cpu.stat"), "nr_throttled"));
        Stats {
            memory_current: read("memory", "memory.usage_in_bytes"),
            cpu_usage_usec: self.cpu_usage_usec(),
            cpu_nr_throttled: throttled,
            pids_current: read("pids", "pids.current"),
            oom_kills: self.oom_kills(),
        }
    }

    /// Kills and removes in every hierarchy; tries them all even if one fails. On a
    /// hybrid host the cgroup2 directory goes first: its cgroup.kill kills every
    /// process of the container at once, racing no fork (v1 has no such file, only a
    /// kill loop over cgroup.procs); the v1 directories are then empty.
    /// Hybrid hosts: also the hierarchies not joined at start, which `update` may have
    /// joined since (`join_late`).
    pub fn destroy(&self) -> Result<()> {
        let mut first_error = None;
        let late: Vec<PathBuf> = self.unused.iter().map(|d| d.dir.clone()).collect();
        let all: Vec<PathBuf> = self.dirs().into_iter().chain(late).collect();
        // Thawed everywhere before any kill: a task the v1 freezer holds ignores
        // SIGKILL, and would keep the cgroup2 directory (removed first) busy.
        for dir in &all {
            files::thaw_tree(dir);
        }
        for dir in all {
            if let Err(e) = files::remove_tree(&dir) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl V1Cgroup {
    /// The `tasks` file of every v1 hierarchy in use, opened for writing (CLOEXEC): a
    /// child that writes "0" to each moves itself into all of them, with no global lock
    /// and no RCU grace period (unlike `add_process`).
    pub fn tasks_files(&self) -> Result<Vec<OwnedFd>> {
        self.dirs
            .iter()
            .map(|d| {
                let path = d.dir.join("tasks");
                open(&path, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())
                    .with_context(|| format!("cannot open {}", path.display()))
            })
            .collect()
    }
}

/// The device rules as devices.deny/devices.allow writes (legacy hosts).
pub fn apply_v1_devices(dir: &Path, rules: &[devices::DeviceRule]) -> Result<()> {
    for (file, line) in devices::v1_writes(rules)?.writes {
        files::write(&dir.join(file.name()), &line)?;
    }
    Ok(())
}

/// Makes `name` (and its missing levels) in `d`'s hierarchy; a cpuset level takes its
/// parent's cpus and mems, without which no process could join it.
fn create_in_hierarchy(d: &ControllerDir, name: &str) -> Result<()> {
    let is_cpuset = d.hierarchy.has("cpuset");
    files::create_levels(&d.hierarchy.mount_point, name, |parent, child| {
        if is_cpuset {
            inherit_cpuset(parent, child)?;
        }
        Ok(())
    })?;
    Ok(())
}

/// Moves every process under `from` (cgroup.procs of it and its subtree) into `to`,
/// pass after pass until one finds nothing left to move.
fn move_all(from: &Path, to: &Path) -> Result<()> {
    let procs = to.join("cgroup.procs");
    for _ in 0..100 {
        let there = files::read(&procs)?;
        let mut pids = Vec::new();
        files::pids_in_tree(from, &mut pids);
        let missing: Vec<i32> = pids
            .into_iter()
            .filter(|pid| !there.lines().any(|l| l.trim() == pid.to_string()))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        for pid in missing {
            // A process that exited meanwhile (ESRCH) needs no moving.
            if let Err(e) = files::write(&procs, &pid.to_string()) {
                if Path::new(&format!("/proc/{pid}")).exists() {
                    return Err(e);
                }
            }
        }
    }
    bail!("the container's processes kept forking faster than they could be moved")
}

fn join(dirs: impl IntoIterator<Item = PathBuf>, pid: i32) -> Result<()> {
    for dir in dirs {
        files::write(&dir.join("cgroup.procs"), &pid.to_string())
            .with_context(|| format!("cannot move process {pid} into its cgroup"))?;
    }
    Ok(())
}

/// v1 cpuset refuses tasks while cpuset.cpus or cpuset.mems is empty, and a new
/// cpuset cgroup starts empty: copy both down from the parent (what the kernel does by
/// itself only with cgroup.clone_children, which we do not set on the host's root).
fn inherit_cpuset(parent: &Path, child: &Path) -> Result<()> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let current = files::read(&child.join(file))?;
        if current.trim().is_empty() {
            let inherited = files::read(&parent.join(file))?;
            files::write(&child.join(file), inherited.trim())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::cgroups::fixture::{empty_files, every_limit, hierarchy, lay_out, written};
    use crate::runtime::cgroups::resources::{CpuMax, Limit};

    const NAME: &str = "mycontainer/c1";

    /// A tmpfs root with memory, cpu+cpuacct (co-mounted), cpuset and pids hierarchies.
    fn hierarchies(root: &Path) -> Vec<Hierarchy> {
        vec![
            hierarchy(root, "memory", &["memory"]),
            hierarchy(root, "cpu,cpuacct", &["cpu", "cpuacct"]),
            hierarchy(root, "cpuset", &["cpuset"]),
            hierarchy(root, "pids", &["pids"]),
        ]
    }

    fn pids_limit(limit: u64) -> Limits {
        Limits {
            pids: Some(Limit::Value(limit)),
            ..Default::default()
        }
    }

    #[test]
    fn limits_are_written_in_v1_spelling_to_each_controllers_hierarchy() {
        let root = tempfile::tempdir().unwrap();
        let cg = V1Cgroup::new(&hierarchies(root.path()), None, NAME);
        let leaf = |dir: &str| root.path().join(dir).join(NAME);
        empty_files(
            &leaf("memory"),
            &["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"],
        );
        empty_files(
            &leaf("cpu,cpuacct"),
            &["cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.shares"],
        );
        empty_files(&leaf("cpuset"), &["cpuset.cpus", "cpuset.mems"]);
        empty_files(&leaf("pids"), &["pids.max"]);
        let limits = every_limit();
        cg.apply(&limits).unwrap();
        let file = |dir: &str, name: &str| written(&leaf(dir).join(name));
        assert_eq!(file("memory", "memory.limit_in_bytes"), "67108864");
        // v1 limits memory and swap together (memsw), unlike v2's swap alone.
        assert_eq!(file("memory", "memory.memsw.limit_in_bytes"), "100663296");
        assert_eq!(file("cpu,cpuacct", "cpu.cfs_period_us"), "100000");
        assert_eq!(file("cpu,cpuacct", "cpu.cfs_quota_us"), "50000");
        assert_eq!(file("cpu,cpuacct", "cpu.shares"), "512");
        assert_eq!(file("cpuset", "cpuset.cpus"), "0-1");
        assert_eq!(file("cpuset", "cpuset.mems"), "0");
        assert_eq!(file("pids", "pids.max"), "100");
        assert_eq!(cg.memory_limit(), Some(64 << 20));
    }

    #[test]
    fn unlimited_is_minus_one_and_reads_back_as_no_limit() {
        let root = tempfile::tempdir().unwrap();
        let cg = V1Cgroup::new(&hierarchies(root.path()), None, NAME);
        let memory = root.path().join("memory").join(NAME);
        let cpu = root.path().join("cpu,cpuacct").join(NAME);
        empty_files(&memory, &["memory.limit_in_bytes"]);
        empty_files(&cpu, &["cpu.cfs_period_us", "cpu.cfs_quota_us"]);
        let limits = Limits {
            memory: Some(Limit::Max),
            cpu_max: Some(CpuMax {
                quota: Limit::Max,
                period: 100_000,
            }),
            ..Default::default()
        };
        cg.apply(&limits).unwrap();
        assert_eq!(written(&memory.join("memory.limit_in_bytes")), "-1");
        assert_eq!(written(&cpu.join("cpu.cfs_quota_us")), "-1");
        // What the kernel shows for "-1": PAGE_COUNTER_MAX in bytes.
        lay_out(
            &memory,
            &[("memory.limit_in_bytes", "9223372036854771712\n")],
        );
        assert_eq!(cg.memory_limit(), None);
    }

    /// The directory names of the hierarchies `cg` uses.
    fn joined(cg: &V1Cgroup) -> Vec<String> {
        cg.dirs
            .iter()
            .map(|d| d.hierarchy.mount_point.file_name().unwrap())
            .map(|n| n.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn hybrid_hosts_join_the_observed_hierarchies_and_those_a_limit_needs_plus_cgroup2() {
        let root = tempfile::tempdir().unwrap();
        let unified = root.path().join("unified");
        std::fs::create_dir(&unified).unwrap();
        let mut cg = V1Cgroup::new(&hierarchies(root.path()), Some(&unified), NAME);
        cg.keep_needed(&pids_limit(100));
        let joined = joined(&cg);
        assert_eq!(joined, ["memory", "pids"]);
        assert_eq!(cg.unified_dir(), Some(unified.join(NAME).as_path()));
        // Made with nothing to write (the fixture's leaf has no pids.max).
        cg.create(NAME, &Limits::default()).unwrap();
        assert_eq!(cg.dirs()[0], unified.join(NAME));
        assert!(cg.dirs().iter().all(|d| d.is_dir()));
        // No limit needs cpuset or cpu, and stats do not read them.
        assert!(!root.path().join("cpuset/mycontainer").exists());
        assert!(!root.path().join("cpu,cpuacct/mycontainer").exists());
        // A CPU limit joins the cpu hierarchy.
        let mut limited = V1Cgroup::new(&hierarchies(root.path()), Some(&unified), NAME);
        limited.keep_needed(&Limits {
            cpu_shares: Some(512),
            ..Limits::default()
        });
        let joined = self::joined(&limited);
        assert_eq!(joined, ["memory", "cpu,cpuacct"]);
        cg.destroy().unwrap();
        assert!(cg.dirs().iter().all(|d| !d.exists()));
    }

    #[test]
    fn legacy_hosts_join_every_hierarchy() {
        let root = tempfile::tempdir().unwrap();
        let mut cg = V1Cgroup::new(&hierarchies(root.path()), None, NAME);
        cg.keep_needed(&pids_limit(100));
        assert_eq!(joined(&cg).len(), 4);
        assert!(cg.unified_dir().is_none());
    }

    #[test]
    fn a_failed_limit_removes_what_create_made() {
        let root = tempfile::tempdir().unwrap();
        let unified = root.path().join("unified");
        std::fs::create_dir(&unified).unwrap();
        let mut cg = V1Cgroup::new(&hierarchies(root.path()), Some(&unified), NAME);
        let limits = pids_limit(100);
        cg.keep_needed(&limits);
        // The fixture's new leaf has no pids.max (the kernel would make one).
        let err = format!("{:#}", cg.create(NAME, &limits).unwrap_err());
        assert!(err.contains("pids.max"), "{err}");
        assert!(cg.dirs().iter().all(|d| !d.exists()));
    }

    #[test]
    fn a_limit_without_its_hierarchy_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let only_pids = [hierarchy(root.path(), "pids", &["pids"])];
        let cg = V1Cgroup::new(&only_pids, None, NAME);
        let limits = Limits {
            memory: Some(Limit::Value(64 << 20)),
            ..Default::default()
        };
        let err = cg.create(NAME, &limits).unwrap_err().to_string();
        assert!(
            err.contains("no cgroup v1 hierarchy with the memory controller"),
            "{err}"
        );
        assert!(!root.path().join("pids/mycontainer").exists());
    }

    #[test]
    fn a_new_cpuset_cgroup_inherits_cpus_and_mems_from_its_parent() {
        let root = tempfile::tempdir().unwrap();
        let parent = root.path().join("cpuset/mycontainer");
        let child = parent.join("c1");
        lay_out(&parent, &[("cpuset.cpus", "0-3\n"), ("cpuset.mems", "0\n")]);
        empty_files(&child, &["cpuset.cpus", "cpuset.mems"]);
        inherit_cpuset(&parent, &child).unwrap();
        assert_eq!(written(&child.join("cpuset.cpus")), "0-3");
        assert_eq!(written(&child.join("cpuset.mems")), "0");
    }
}
