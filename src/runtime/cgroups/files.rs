//! Reading and writing cgroupfs files, creating cgroup directories and removing a
//! cgroup tree with whatever still runs in it. Shared by both backends.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long `remove_tree` waits for processes that killing cannot hurry (every one left
/// is in uninterruptible sleep or a zombie) before it gives up. Processes that merely
/// wait for a CPU are waited for however long that takes: a slow machine is no reason
/// to leave a cgroup (and a `--rm` record) behind. What this bounds is a wedged
/// process: one stuck in the kernel on a dead disk or network filesystem.
pub const STUCK_AFTER: Duration = Duration::from_secs(60);

/// How long the processes left in a cgroup have made no progress: none of them could die
/// now (uninterruptible sleep, zombie), and none has left. Each process that leaves
/// starts the clock again: many short waits on a slow disk are progress, not a wedge.
#[derive(Default)]
pub struct NoProgress {
    since: Option<Instant>,
    left: Vec<i32>,
}

impl NoProgress {
    /// Looks at the processes left (`left`) at `now`; `all_stuck`: whether none of them
    /// can die now. Returns how long nothing has moved (zero while something can).
    pub fn observe(&mut self, left: &[i32], all_stuck: bool, now: Instant) -> Duration {
        let mut left = left.to_vec();
        left.sort_unstable();
        if !all_stuck || left != self.left {
            self.since = None;
            self.left = left;
        }
        if !all_stuck {
            return Duration::ZERO;
        }
        now.saturating_duration_since(*self.since.get_or_insert(now))
    }
}

/// Writes `value` with one write(2), as cgroupfs expects, naming the file on failure.
pub fn write(path: &Path, value: &str) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open cgroup file {}", path.display()))?;
    file.write_all(value.as_bytes())
        .with_context(|| format!("cannot write {value:?} to {}", path.display()))
}

pub fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// A file holding one number (e.g. memory.current), `None` if absent or not a number
/// (such as "max").
pub fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a flat-keyed file ("key value" per line: memory.events,
/// cpu.stat, memory.oom_control).
pub fn read_keyed(path: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// Creates each missing directory from `base` down to `base/name`, calling `prepare`
/// on every level before descending (v2 enables controllers in the parent's
/// subtree_control, v1 cpuset copies cpus/mems down). An existing intermediate level is
/// fine; an existing leaf is an error (another container has that id, or a crashed run
/// left it: `gc` removes it). Returns the leaf; on error no leaf of ours is left.
pub fn create_levels(
    base: &Path,
    name: &str,
    mut prepare: impl FnMut(&Path, &Path) -> Result<()>,
) -> Result<PathBuf> {
    let components: Vec<&str> = name.split('/').collect();
    // `remove_unused_parents` (gc) may remove an empty intermediate level between our
    // mkdir and the next step (ENOENT): start again from the top.
    const MAX_ATTEMPTS: u32 = 50;
    let mut attempts = 0;
    'again: loop {
        attempts += 1;
        let mut dir = base.to_path_buf();
        for (i, component) in components.iter().enumerate() {
            let parent = dir.clone();
            dir.push(component);
            let is_leaf = i + 1 == components.len();
            match std::fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists && !is_leaf => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => bail!(
                    "cgroup {} already exists: another container uses this id, or a \
                     crashed run left it behind (run `mycontainer gc`)",
                    dir.display()
                ),
                Err(e) if e.kind() == ErrorKind::NotFound && attempts < MAX_ATTEMPTS => {
                    continue 'again
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot create cgroup {}", dir.display()))
                }
            }
            if let Err(e) = prepare(&parent, &dir) {
                if is_leaf {
                    let _ = std::fs::remove_dir(&dir);
                }
                if is_not_found(&e) && attempts < MAX_ATTEMPTS {
                    continue 'again;
                }
                return Err(e);
            }
        }
        return Ok(dir);
    }
}

fn is_not_found(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        // A cgroup directory removed under an open file answers ENODEV, not ENOENT.
        .any(|e| e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENODEV))
}

/// The pids in `dir` and every cgroup below it.
pub fn pids_in_tree(dir: &Path, pids: &mut Vec<i32>) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    for sub in subdirs(dir) {
        pids_in_tree(&sub, pids);
    }
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

/// Removes `dir` and every cgroup below it (a container may create its own, e.g. with
/// the cgroup namespace), bottom-up. Missing directories are ignored.
fn rmdir_tree(dir: &Path) -> std::io::Result<()> {
    for sub in subdirs(dir) {
        rmdir_tree(&sub)?;
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Kills everything in the cgroup tree at `dir`, waits for it to be empty and removes
/// it, retrying while the kernel says busy (a dying task keeps its cgroup for a moment).
/// On v2 `cgroup.kill` kills the whole tree at once, racing no fork; elsewhere each pid
/// in cgroup.procs gets SIGKILL, again and again until none is left (a pid read from
/// cgroup.procs could be reused before the kill, as for runc without a freezer; the
/// window is microseconds and the pid would have to be recycled into our cgroup's
/// place). A frozen tree is thawed first (a v1-frozen task dies only once thawed).
/// There is no time limit while the processes can still die (see [`STUCK_AFTER`]).
/// Idempotent: a missing `dir` is success.
pub fn remove_tree(dir: &Path) -> Result<()> {
    remove_tree_waiting(dir, STUCK_AFTER)
}

/// [`remove_tree`], giving up once the processes left have been stuck for `stuck_after`.
pub fn remove_tree_waiting(dir: &Path, stuck_after: Duration) -> Result<()> {
    // The common case first: the container's processes are gone (its init was reaped)
    // and it made no cgroups of its own, so one rmdir does it. The kernel refuses it
    // (EBUSY) while a task or a child cgroup is left: then kill and empty the tree.
    match std::fs::remove_dir(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    thaw_tree(dir);
    let kill_file = dir.join("cgroup.kill");
    let mut no_progress = NoProgress::default();
    let mut pause = Duration::from_micros(200);
    loop {
        if kill_file.exists() {
            // ENOENT: already gone; other errors fall back to per-pid kills below
            let _ = write(&kill_file, "1");
        }
        let mut pids = Vec::new();
        pids_in_tree(dir, &mut pids);
        for pid in &pids {
            // Never ourselves: a thread of ours only passes through a container's v1
            // cgroups around a clone (v1.rs), and if it got stuck there, failing to
            // remove the cgroup beats killing the runtime that cleans up.
            if *pid == std::process::id() as i32 {
                continue;
            }
            // ESRCH: exited between the read and the kill
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        let last_error = if pids.is_empty() {
            match rmdir_tree(dir) {
                Ok(()) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(Errno::EBUSY as i32) => e,
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot remove cgroup {}", dir.display()))
                }
            }
        } else {
            std::io::Error::from_raw_os_error(Errno::EBUSY as i32)
        };
        // A killed process that can run dies as soon as it gets a CPU, however busy the
        // machine: wait for it. Only processes the kill cannot reach (in uninterruptible
        // sleep, zombies nobody reaps, ourselves) may keep the tree forever.
        let all_stuck = pids.iter().all(|pid| cannot_die_now(*pid));
        if no_progress.observe(&pids, all_stuck, Instant::now()) >= stuck_after {
            let states: Vec<String> = pids
                .iter()
                .map(|pid| format!("{pid} ({})", task_state(*pid).unwrap_or('?')))
                .collect();
            bail!(
                "cannot remove cgroup {}: still busy after {} s without progress ({last_error}; \
                 processes that cannot be killed now, with their states: [{}]); a process in \
                 state D waits for a disk or network filesystem: once it is gone, run \
                 `mycontainer gc`",
                dir.display(),
                stuck_after.as_secs(),
                states.join(", ")
            );
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Thaws every frozen cgroup in the tree at `dir` (cgroup2 `cgroup.freeze`, v1
/// `freezer.state`): a task frozen by the v1 freezer ignores SIGKILL until thawed.
pub fn thaw_tree(dir: &Path) {
    for sub in subdirs(dir) {
        thaw_tree(&sub);
    }
    let freeze = dir.join("cgroup.freeze");
    if read_u64(&freeze) == Some(1) {
        let _ = write(&freeze, "0");
    }
    let state = dir.join("freezer.state");
    if std::fs::read_to_string(&state).is_ok_and(|s| s.trim() != "THAWED") {
        let _ = write(&state, "THAWED");
    }
}

/// The state letter of process `pid` (R, S, D, Z, T, ...), from /proc/PID/stat.
pub fn task_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "PID (COMM) STATE ...": COMM may hold spaces and parentheses.
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// Whether a SIGKILL cannot end `pid` now: ourselves (never killed), a task in
/// uninterruptible sleep (it dies when the kernel lets it go), a zombie (it goes when its
/// parent reaps it). A task that is gone can die no more: it counts as dying.
fn cannot_die_now(pid: i32) -> bool {
    pid == std::process::id() as i32 || matches!(task_state(pid), Some('D' | 'Z'))
}

/// Names of the cgroups directly under `base/parent` (e.g. the container ids under
/// /sys/fs/cgroup/memory/mycontainer).
pub fn children(base: &Path, parent: &str) -> Vec<String> {
    subdirs(&base.join(parent))
        .into_iter()
        .filter_map(|p| Some(p.file_name()?.to_str()?.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_files_are_parsed_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory.events");
        std::fs::write(&path, "low 0\nhigh 0\nmax 12\noom 1\noom_kill 2\n").unwrap();
        assert_eq!(read_keyed(&path, "oom_kill"), Some(2));
        assert_eq!(read_keyed(&path, "oom"), Some(1));
        assert_eq!(read_keyed(&path, "oom_group_kill"), None);
        assert_eq!(read_keyed(&dir.path().join("missing"), "oom"), None);
    }

    #[test]
    fn create_levels_refuses_an_existing_leaf() {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = Vec::new();
        let leaf = create_levels(dir.path(), "mycontainer/a", |parent, child| {
            seen.push((parent.to_path_buf(), child.to_path_buf()));
            Ok(())
        })
        .unwrap();
        assert_eq!(leaf, dir.path().join("mycontainer/a"));
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1].0, dir.path().join("mycontainer"));
        create_levels(dir.path(), "mycontainer/b", |_, _| Ok(())).unwrap();
        let err = create_levels(dir.path(), "mycontainer/a", |_, _| Ok(())).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        let mut names = children(dir.path(), "mycontainer");
        names.sort();
        assert_eq!(names, ["a", "b"]);
    }

    /// The removal gives up only after `STUCK_AFTER` in which no process left: a series of
    /// processes each stuck for a while on a slow disk keeps it going (the clock used to
    /// run on while any were stuck, so three 25 s waits failed a removal).
    #[test]
    fn no_progress_counts_from_the_last_process_that_left() {
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let mut clock = NoProgress::default();
        assert_eq!(clock.observe(&[3, 2, 1], true, at(0)), Duration::ZERO);
        assert_eq!(
            clock.observe(&[1, 2, 3], true, at(25)),
            Duration::from_secs(25)
        );
        // One left: the clock starts again.
        assert_eq!(clock.observe(&[2, 3], true, at(50)), Duration::ZERO);
        assert_eq!(
            clock.observe(&[2, 3], true, at(75)),
            Duration::from_secs(25)
        );
        assert_eq!(clock.observe(&[3], true, at(100)), Duration::ZERO);
        assert!(clock.observe(&[3], true, at(160)) >= STUCK_AFTER);
        // A process that can die now (runnable, only waiting for a CPU) is progress to
        // wait for, however long.
        assert_eq!(clock.observe(&[3], false, at(500)), Duration::ZERO);
        assert_eq!(clock.observe(&[3], true, at(501)), Duration::ZERO);
        assert_eq!(clock.observe(&[3], true, at(502)), Duration::from_secs(1));
    }
}
