//! cgroup v2 (unified): one directory per container, `<root>/mycontainer/<id>`, with
//! the controllers enabled from the root down through each parent's subtree_control.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::files;
use super::resources::{shares_to_weight, v2_cpu_max, Limits};
#[cfg(test)]
use super::Stats;
use super::{bpf, devices};

/// The controllers we enable for containers, when the kernel offers them. Enabled even
/// without a limit: memory gives memory.events (OOM detection), pids gives pids.current.
const CONTROLLERS: &[&str] = &["memory", "cpu", "cpuset", "pids"];

#[derive(Debug, Clone)]
pub struct V2Cgroup {
    root: PathBuf,
    dir: PathBuf,
}

impl V2Cgroup {
    pub fn new(root: &Path, name: &str) -> V2Cgroup {
        V2Cgroup {
            root: root.to_path_buf(),
            dir: root.join(name),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn create(&self, name: &str, limits: &Limits) -> Result<()> {
        let available_file = self.root.join("cgroup.controllers");
        let available = files::read(&available_file)?;
        let available: Vec<&str> = available.split_whitespace().collect();
        let required = limits.required_controllers();
        if let Some(missing) = required.iter().find(|c| !available.contains(c)) {
            bail!(
                "cannot apply the {missing} limit: the cgroup v2 {missing} controller is not \
                 available in {} (enable it in the kernel or on the boot command line)",
                available_file.display()
            );
        }
        let wanted: Vec<&str> = CONTROLLERS
            .iter()
            .copied()
            .filter(|c| available.contains(c))
            .collect();
        files::create_levels(&self.root, name, |parent, _child| {
            enable_controllers(parent, &wanted, &required)
        })?;
        if let Err(e) = self.apply(limits) {
            // undo: the caller gets no Cgroup to destroy
            let _ = files::remove_tree(&self.dir);
            return Err(e);
        }
        Ok(())
    }

    pub(super) fn apply(&self, limits: &Limits) -> Result<()> {
        let dir = &self.dir;
        if let Some(memory) = limits.memory {
            files::write(&dir.join("memory.max"), &memory.v2())?;
        }
        if let Some(swap) = limits.v2_swap_max() {
            let file = dir.join("memory.swap.max");
            if file.exists() {
                files::write(&file, &swap.v2())?;
            } else {
                warn_no_swap_accounting(&file);
            }
        }
        if let Some(cpu) = limits.cpu_max {
            files::write(&dir.join("cpu.max"), &v2_cpu_max(cpu))?;
        }
        if let Some(shares) = limits.cpu_shares {
            files::write(
                &dir.join("cpu.weight"),
                &shares_to_weight(shares).to_string(),
            )?;
        }
        if let Some(cpus) = &limits.cpuset_cpus {
            files::write(&dir.join("cpuset.cpus"), cpus)?;
        }
        if let Some(mems) = &limits.cpuset_mems {
            files::write(&dir.join("cpuset.mems"), mems)?;
        }
        if let Some(pids) = limits.pids {
            files::write(&dir.join("pids.max"), &pids.v2())?;
        }
        // Before any process exists: the container is cloned into this directory, so
        // the filter holds from its first instruction.
        if let Some(rules) = &limits.devices {
            if !devices::allows_everything(rules) {
                bpf::attach_device_filter(dir, rules)?;
            }
        }
        Ok(())
    }

    pub fn add_process(&self, pid: i32) -> Result<()> {
        files::write(&self.dir.join("cgroup.procs"), &pid.to_string())
            .with_context(|| format!("cannot move process {pid} into its cgroup"))
    }

    /// memory.events counts hierarchically, so an OOM kill in a sub-cgroup the
    /// container made itself counts too.
    pub fn oom_kills(&self) -> u64 {
        files::read_keyed(&self.dir.join("memory.events"), "oom_kill").unwrap_or(0)
    }

    pub fn memory_limit(&self) -> Option<u64> {
        // "max" does not parse: no limit
        files::read_u64(&self.dir.join("memory.max"))
    }

    #[cfg(test)]
    pub fn stats(&self) -> Stats {
        let cpu_stat = self.dir.join("cpu.stat");
        Stats {
            memory_current: files::read_u64(&self.dir.join("memory.current")),
            cpu_usage_usec: files::read_keyed(&cpu_stat, "usage_usec"),
            cpu_nr_throttled: files::read_keyed(&cpu_stat, "nr_throttled"),
            pids_current: files::read_u64(&self.dir.join("pids.current")),
            oom_kills: self.oom_kills(),
        }
    }

    pub fn destroy(&self) -> Result<()> {
        files::remove_tree(&self.dir)
    }
}

/// Makes `controllers` available to the children of `dir`. Only the missing ones are
/// written, one at a time, so an optional controller the kernel refuses (e.g. cpu while
/// a realtime task runs outside) does not stop the others; a refused required one fails.
fn enable_controllers(dir: &Path, controllers: &[&str], required: &[&str]) -> Result<()> {
    let file = dir.join("cgroup.subtree_control");
    let enabled = files::read(&file)?;
    let enabled: Vec<&str> = enabled.split_whitespace().collect();
    for controller in controllers.iter().filter(|c| !enabled.contains(c)) {
        let result = files::write(&file, &format!("+{controller}"));
        if required.contains(controller) {
            result.with_context(|| {
                format!("cannot enable the {controller} controller for mycontainer cgroups")
            })?;
        }
    }
    Ok(())
}

/// Docker's behaviour: run anyway, but say clearly that the swap limit is not applied.
pub fn warn_no_swap_accounting(file: &Path) {
    eprintln!(
        "mycontainer: warning: swap accounting is off on this kernel ({} is missing): \
         the memory+swap limit is not applied, the container may use swap beyond its \
         memory limit (boot with swapaccount=1 to enable it)",
        file.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::cgroups::fixture::{empty_files, every_limit, lay_out, written};
    use crate::runtime::cgroups::resources::{CpuMax, Limit};

    const NAME: &str = "mycontainer/c1";
    /// The files a v2 cgroup with memory, cpu, cpuset and pids shows that we write.
    const LIMIT_FILES: &[&str] = &[
        "memory.max",
        "memory.swap.max",
        "cpu.max",
        "cpu.weight",
        "cpuset.cpus",
        "cpuset.mems",
        "pids.max",
    ];

    /// A unified root offering `controllers`, with the `mycontainer` parent already made
    /// (the kernel gives a new directory its files; a fixture cannot).
    fn unified_root(controllers: &str) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        lay_out(
            root.path(),
            &[
                ("cgroup.controllers", controllers),
                ("cgroup.subtree_control", ""),
            ],
        );
        lay_out(
            &root.path().join("mycontainer"),
            &[("cgroup.subtree_control", "")],
        );
        root
    }

    #[test]
    fn limits_are_written_in_v2_spelling() {
        let root = tempfile::tempdir().unwrap();
        let cg = V2Cgroup::new(root.path(), NAME);
        empty_files(cg.dir(), LIMIT_FILES);
        let limits = every_limit();
        cg.apply(&limits).unwrap();
        let file = |name: &str| written(&cg.dir().join(name));
        assert_eq!(file("memory.max"), "67108864");
        // v2 limits swap alone: memory+swap minus memory.
        assert_eq!(file("memory.swap.max"), "33554432");
        assert_eq!(file("cpu.max"), "50000 100000");
        assert_eq!(file("cpu.weight"), shares_to_weight(512).to_string());
        assert_eq!(file("cpuset.cpus"), "0-1");
        assert_eq!(file("cpuset.mems"), "0");
        assert_eq!(file("pids.max"), "100");
        assert_eq!(cg.memory_limit(), Some(64 << 20));
    }

    #[test]
    fn unlimited_is_max_and_unset_limits_are_not_written() {
        let root = tempfile::tempdir().unwrap();
        let cg = V2Cgroup::new(root.path(), NAME);
        empty_files(cg.dir(), LIMIT_FILES);
        let limits = Limits {
            memory: Some(Limit::Max),
            cpu_max: Some(CpuMax {
                quota: Limit::Max,
                period: 100_000,
            }),
            pids: Some(Limit::Max),
            ..Default::default()
        };
        cg.apply(&limits).unwrap();
        let file = |name: &str| written(&cg.dir().join(name));
        assert_eq!(file("memory.max"), "max");
        assert_eq!(file("cpu.max"), "max 100000");
        assert_eq!(file("pids.max"), "max");
        for untouched in ["memory.swap.max", "cpu.weight", "cpuset.cpus"] {
            assert_eq!(file(untouched), "", "{untouched}");
        }
        assert_eq!(cg.memory_limit(), None);
    }

    #[test]
    fn a_missing_swap_file_skips_the_swap_limit() {
        let root = tempfile::tempdir().unwrap();
        let cg = V2Cgroup::new(root.path(), NAME);
        empty_files(cg.dir(), &["memory.max"]);
        let limits = Limits {
            memory: Some(Limit::Value(64 << 20)),
            memory_and_swap: Some(Limit::Value(96 << 20)),
            ..Default::default()
        };
        cg.apply(&limits).unwrap();
        assert!(!cg.dir().join("memory.swap.max").exists());
        assert_eq!(written(&cg.dir().join("memory.max")), "67108864");
    }

    #[test]
    fn create_enables_controllers_down_the_tree_and_destroy_removes_the_leaf() {
        let root = unified_root("pids");
        let cg = V2Cgroup::new(root.path(), NAME);
        cg.create(NAME, &Limits::default()).unwrap();
        assert!(cg.dir().is_dir());
        assert_eq!(
            written(&root.path().join("cgroup.subtree_control")),
            "+pids"
        );
        let parent = root.path().join("mycontainer/cgroup.subtree_control");
        assert_eq!(written(&parent), "+pids");
        cg.destroy().unwrap();
        assert!(!cg.dir().exists());
        assert!(root.path().join("mycontainer").is_dir());
    }

    #[test]
    fn create_refuses_a_limit_whose_controller_is_missing_before_any_mkdir() {
        let root = unified_root("cpu pids");
        let cg = V2Cgroup::new(root.path(), NAME);
        let limits = Limits {
            memory: Some(Limit::Value(64 << 20)),
            ..Default::default()
        };
        let err = cg.create(NAME, &limits).unwrap_err().to_string();
        assert!(
            err.contains("the cgroup v2 memory controller is not available"),
            "{err}"
        );
        assert!(!cg.dir().exists());
    }

    #[test]
    fn a_limit_that_cannot_be_written_removes_the_new_cgroup() {
        // The fixture's new leaf has no pids.max (the kernel would make one).
        let root = unified_root("pids");
        let cg = V2Cgroup::new(root.path(), NAME);
        let limits = Limits {
            pids: Some(Limit::Value(10)),
            ..Default::default()
        };
        let err = format!("{:#}", cg.create(NAME, &limits).unwrap_err());
        assert!(err.contains("pids.max"), "{err}");
        assert!(!cg.dir().exists());
    }
}
