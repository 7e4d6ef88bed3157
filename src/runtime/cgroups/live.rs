//! What is asked of a running container's cgroup: freezing and thawing it (`pause`),
//! its usage figures (`stats`), its processes (`top`) and new limits (`update`).
//!
//! The freezer: cgroup v2's `cgroup.freeze` wherever the container has a cgroup2
//! directory (v2 hosts, and hybrid hosts, whose cgroup2 tree is where the container is
//! cloned: the file is core cgroup2, needs no controller and no v1 migration), else the
//! v1 freezer hierarchy (legacy hosts, where a container joins every hierarchy).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use oci_spec::runtime::LinuxResources;

use super::files;
use super::resources::Limits;
use super::{Backend, Cgroup};

/// Above this a v1 limit file means "unlimited" (see v1.rs).
const V1_UNLIMITED: u64 = 1 << 62;

/// One reading of what the container uses; `None` where the host does not count it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// CPU time of every task, microseconds.
    pub cpu_usec: Option<u64>,
    /// Memory in use without the inactive page cache (as `docker stats`).
    pub memory: Option<u64>,
    pub memory_limit: Option<u64>,
    pub pids: Option<u64>,
    /// Bytes read from and written to block devices.
    pub block_read: Option<u64>,
    pub block_write: Option<u64>,
}

/// Where the freezer of a cgroup is.
enum Freezer {
    /// `cgroup.freeze` ("0"/"1") in this directory, and `cgroup.events` "frozen".
    V2(PathBuf),
    /// `freezer.state` (THAWED, FREEZING, FROZEN) in this directory.
    V1(PathBuf),
}

impl Cgroup {
    /// The directory whose cgroup.procs (with its subtree) lists every process of the
    /// container: the cgroup2 one where there is one, else the first v1 hierarchy.
    fn tracking_dir(&self) -> Option<PathBuf> {
        match &self.backend {
            Backend::V2(cg) => Some(cg.dir().to_path_buf()),
            Backend::V1(cg) => cg
                .unified_dir()
                .map(Path::to_path_buf)
                .or_else(|| cg.dirs().into_iter().next()),
        }
    }

    fn freezer(&self) -> Result<Freezer> {
        let v2 = match &self.backend {
            Backend::V2(cg) => Some(cg.dir().to_path_buf()),
            Backend::V1(cg) => cg.unified_dir().map(Path::to_path_buf),
        };
        if let Some(dir) = v2.filter(|d| d.join("cgroup.freeze").exists()) {
            return Ok(Freezer::V2(dir));
        }
        if let Backend::V1(cg) = &self.backend {
            if let Some(dir) = cg.dir_of("freezer").filter(|d| d.is_dir()) {
                return Ok(Freezer::V1(dir.to_path_buf()));
            }
        }
        bail!(
            "cannot pause cgroup {}: the host has no freezer for it (cgroup2 cgroup.freeze \
             needs Linux 5.2; on cgroup v1 mount the freezer hierarchy)",
            self.name
        )
    }

    /// Freezes every process of the container and returns once they all are frozen.
    /// Waits as long as the processes are still changing (on a busy machine a task
    /// freezes only once it gets a CPU); gives up, and thaws the cgroup again, only when
    /// nothing moved for [`files::STUCK_AFTER`] (a task stuck in uninterruptible sleep
    /// cannot freeze).
    pub fn freeze(&self) -> Result<()> {
        self.freeze_waiting(files::STUCK_AFTER)
    }

    /// [`Cgroup::freeze`], giving up once nothing moved for `stuck_after`.
    pub fn freeze_waiting(&self, stuck_after: Duration) -> Result<()> {
        let freezer = self.freezer()?;
        // The processes and their states when they last changed.
        let mut last: Option<(Vec<(i32, char)>, Instant)> = None;
        let mut pause = Duration::from_millis(1);
        loop {
            let done = match &freezer {
                Freezer::V2(dir) => {
                    files::write(&dir.join("cgroup.freeze"), "1")?;
                    files::read_keyed(&dir.join("cgroup.events"), "frozen") == Some(1)
                }
                Freezer::V1(dir) => {
                    // Written again each time: a task forked while FREEZING can leave the
                    // state there until the next write (as runc does).
                    files::write(&dir.join("freezer.state"), "FROZEN")?;
                    files::read(&dir.join("freezer.state"))?.trim() == "FROZEN"
                }
            };
            if done {
                return Ok(());
            }
            let now: Vec<(i32, char)> = self
                .pids()
                .into_iter()
                .map(|pid| (pid, files::task_state(pid).unwrap_or('-')))
                .collect();
            match &last {
                Some((before, since)) if *before == now => {
                    if since.elapsed() >= stuck_after {
                        let _ = self.thaw();
                        let states: Vec<String> =
                            now.iter().map(|(pid, s)| format!("{pid} ({s})")).collect();
                        bail!(
                            "cannot pause cgroup {}: its processes did not freeze and none \
                             changed for {} s (processes and states: [{}]); a process in \
                             state D waits for a disk or network filesystem: it was left \
                             running, retry once that is over",
                            self.name,
                            stuck_after.as_secs(),
                            states.join(", ")
                        );
                    }
                }
                _ => last = Some((now, Instant::now())),
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// Thaws the container's processes (a no-op if it is not frozen).
    pub fn thaw(&self) -> Result<()> {
        match self.freezer()? {
            Freezer::V2(dir) => files::write(&dir.join("cgroup.freeze"), "0"),
            Freezer::V1(dir) => files::write(&dir.join("freezer.state"), "THAWED"),
        }
    }

    /// Whether the container was asked to freeze (and not thawed since).
    pub fn is_frozen(&self) -> bool {
        match self.freezer() {
            Ok(Freezer::V2(dir)) => files::read_u64(&dir.join("cgroup.freeze")) == Some(1),
            Ok(Freezer::V1(dir)) => {
                files::read(&dir.join("freezer.state")).is_ok_and(|s| s.trim() != "THAWED")
            }
            Err(_) => false,
        }
    }

    /// Kills every process left in the container's cgroups (`cgroup.kill` where there is
    /// one, SIGKILL to each) and waits until each is dead: gone, or a zombie that only
    /// waits to be reaped. The cgroup stays. What runc does to a container without a pid
    /// namespace of its own once its init has exited (with one, the kernel has done it).
    /// Gives up only when the processes left have been unable to die (uninterruptible
    /// sleep) for `files::STUCK_AFTER`.
    pub fn kill_all(&self) -> Result<()> {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        if self.is_frozen() {
            // A task the v1 freezer holds ignores SIGKILL.
            let _ = self.thaw();
        }
        let kill_file = self.tracking_dir().map(|dir| dir.join("cgroup.kill"));
        let ours = std::process::id() as i32;
        let mut no_progress = files::NoProgress::default();
        let mut pause = Duration::from_micros(200);
        loop {
            let left: Vec<(i32, char)> = self
                .pids()
                .into_iter()
                .filter(|pid| *pid != ours)
                .filter_map(|pid| files::task_state(pid).map(|state| (pid, state)))
                .filter(|(_, state)| *state != 'Z')
                .collect();
            if left.is_empty() {
                return Ok(());
            }
            if let Some(file) = kill_file.as_ref().filter(|f| f.exists()) {
                let _ = files::write(file, "1");
            }
            for (pid, _) in &left {
                // ESRCH: it died meanwhile.
                let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
            }
            let pids: Vec<i32> = left.iter().map(|(pid, _)| *pid).collect();
            let all_stuck = left.iter().all(|(_, state)| *state == 'D');
            if no_progress.observe(&pids, all_stuck, Instant::now()) >= files::STUCK_AFTER {
                let pids: Vec<String> = pids.iter().map(i32::to_string).collect();
                bail!(
                    "cannot kill the processes left in cgroup {}: [{}] stayed in uninterruptible sleep for {} s, none leaving; once they are gone, delete the container",
                    self.name(),
                    pids.join(", "),
                    files::STUCK_AFTER.as_secs()
                );
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// Every process in the container's cgroup and the cgroups below it.
    pub fn pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        if let Some(dir) = self.tracking_dir() {
            files::pids_in_tree(&dir, &mut pids);
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// What the container uses now.
    pub fn usage(&self) -> Usage {
        match &self.backend {
            Backend::V2(cg) => {
                let dir = cg.dir();
                let (read, write) = io_stat(&dir.join("io.stat"));
                Usage {
                    cpu_usec: files::read_keyed(&dir.join("cpu.stat"), "usage_usec"),
                    memory: files::read_u64(&dir.join("memory.current")).map(|current| {
                        let inactive = files::read_keyed(&dir.join("memory.stat"), "inactive_file");
                        current.saturating_sub(inactive.unwrap_or(0))
                    }),
                    memory_limit: files::read_u64(&dir.join("memory.max")),
                    pids: files::read_u64(&dir.join("pids.current")),
                    block_read: read,
                    block_write: write,
                }
            }
            Backend::V1(cg) => {
                let at = |controller: &str, file: &str| cg.dir_of(controller).map(|d| d.join(file));
                let memory = at("memory", "memory.usage_in_bytes")
                    .and_then(|f| files::read_u64(&f))
                    .map(|usage| {
                        let inactive = at("memory", "memory.stat")
                            .and_then(|f| files::read_keyed(&f, "total_inactive_file"));
                        usage.saturating_sub(inactive.unwrap_or(0))
                    });
                let (read, write) = at("blkio", "blkio.throttle.io_service_bytes_recursive")
                    .map_or((None, None), |f| blkio_bytes(&f));
                Usage {
                    cpu_usec: cg.cpu_usage_usec(),
                    memory,
                    memory_limit: at("memory", "memory.limit_in_bytes")
                        .and_then(|f| files::read_u64(&f))
                        .filter(|v| *v < V1_UNLIMITED),
                    pids: at("pids", "pids.current").and_then(|f| files::read_u64(&f)),
                    block_read: read,
                    block_write: write,
                }
            }
        }
    }

    /// Applies new limits to the running container: only those `resources` sets.
    /// Fails, writing nothing, when a limit's controller is not in use for it.
    pub fn update(&self, resources: &LinuxResources) -> Result<()> {
        let limits = Limits::from_oci(Some(resources)).context("invalid resource limits")?;
        match &self.backend {
            Backend::V2(cg) => {
                for controller in limits.required_controllers() {
                    let file = cg.dir().join("cgroup.controllers");
                    let enabled = files::read(&file)?;
                    if !enabled.split_whitespace().any(|c| c == controller) {
                        bail!(
                            "cannot update the {controller} limit: the {controller} \
                             controller is not enabled in {}",
                            file.display()
                        );
                    }
                }
                cg.apply(&limits)
            }
            Backend::V1(cg) => {
                let mut cg = cg.clone();
                cg.join_late(&self.name, &limits.required_controllers())?;
                for controller in limits.required_controllers() {
                    if cg.dir_of(controller).is_none_or(|d| !d.is_dir()) {
                        bail!(
                            "cannot update the {controller} limit: the container did not \
                             join the {controller} hierarchy when it started (restart it \
                             with the limit set)"
                        );
                    }
                }
                // A memory limit above the current memory+swap limit is refused by the
                // kernel until that one is raised: then write them the other way round.
                cg.apply(&limits)
                    .or_else(|first| cg.apply_memory_swap_first(&limits).map_err(|_| first))
            }
        }
    }
}

/// Sums v2 io.stat's `rbytes=` and `wbytes=` over every device.
fn io_stat(file: &Path) -> (Option<u64>, Option<u64>) {
    let Ok(text) = std::fs::read_to_string(file) else {
        return (None, None);
    };
    let (mut read, mut write) = (0, 0);
    for field in text.split_whitespace() {
        if let Some(n) = field.strip_prefix("rbytes=") {
            read += n.parse::<u64>().unwrap_or(0);
        } else if let Some(n) = field.strip_prefix("wbytes=") {
            write += n.parse::<u64>().unwrap_or(0);
        }
    }
    (Some(read), Some(write))
}

/// Sums v1 blkio's "MAJ:MIN Read N" and "MAJ:MIN Write N" lines.
fn blkio_bytes(file: &Path) -> (Option<u64>, Option<u64>) {
    let Ok(text) = std::fs::read_to_string(file) else {
        return (None, None);
    };
    let (mut read, mut write) = (0, 0);
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(_device), Some(op), Some(n)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let n = n.parse::<u64>().unwrap_or(0);
        match op {
            "Read" => read += n,
            "Write" => write += n,
            _ => {}
        }
    }
    (Some(read), Some(write))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_io_is_summed_over_devices_in_both_spellings() {
        let dir = tempfile::tempdir().unwrap();
        let v2 = dir.path().join("io.stat");
        std::fs::write(
            &v2,
            "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n\
             8:16 rbytes=1 wbytes=2 rios=1 wios=1 dbytes=0 dios=0\n",
        )
        .unwrap();
        assert_eq!(io_stat(&v2), (Some(4097), Some(8194)));
        let v1 = dir.path().join("blkio");
        std::fs::write(
            &v1,
            "8:0 Read 100\n8:0 Write 200\n8:0 Sync 300\n8:0 Total 300\n\
             8:16 Read 1\n8:16 Write 2\nTotal 303\n",
        )
        .unwrap();
        assert_eq!(blkio_bytes(&v1), (Some(101), Some(202)));
        assert_eq!(io_stat(&dir.path().join("missing")), (None, None));
    }
}
