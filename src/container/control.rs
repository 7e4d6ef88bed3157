//! Acting on a container another process supervises: signals, stop, start, listing.
//!
//! A container runs exactly while some process (the foreground CLI or a detached
//! supervisor) holds its record's lock; the pid in state.json is only trusted while that
//! lock is held, and a signal goes through a pidfd after checking that the process still
//! sits in the container's cgroup, so a recycled pid is never signalled.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::detach::{self, Started};
use super::paths::containers_dir;
use super::record::{list_ids, lock_dir, Record};
use super::state::{State, Status};

impl Record {
    /// This container's cgroup name (see [`super::paths::cgroup_name`]).
    pub fn cgroup_name(&self) -> String {
        super::paths::cgroup_name(super::paths::root_of_record(&self.dir), &self.id)
    }

    /// Whether a live process supervises the record (holds its lock).
    /// While its owner removes it, the record is under its hidden removing name
    /// (`record::remove_record_dir`), still locked: a `stop` waits for that to end.
    pub fn is_supervised(&self) -> bool {
        match lock_dir(&self.dir, false) {
            Ok(lock) => lock.is_none(),
            Err(_) => {
                let removing = super::record::removing_dir(&self.dir);
                removing.exists() && matches!(lock_dir(&removing, false), Ok(None))
            }
        }
    }

    /// A short id for messages.
    pub fn short_id(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }

    /// The name to show: the one it was found by, else the one in its state.
    pub fn display_name(&self) -> String {
        if !self.name.is_empty() {
            return self.name.clone();
        }
        self.load_state()
            .ok()
            .and_then(|s| s.name)
            .unwrap_or_else(|| self.short_id().to_string())
    }
}

/// Every record with a readable state, oldest first.
pub fn list(root: &Path) -> anyhow::Result<Vec<(Record, State)>> {
    let mut all = Vec::new();
    for id in list_ids(root)? {
        let dir = containers_dir(root).join(&id);
        let Ok(state) = State::load(&dir.join("state.json")) else {
            continue;
        };
        let name = state.name.clone().unwrap_or_default();
        let record = Record {
            id,
            name,
            dir,
            lock: None,
        };
        let state = observed(&record, state);
        all.push((record, state));
    }
    all.sort_by_key(|(_, s)| std::cmp::Reverse(s.created_at));
    Ok(all)
}

/// The state as it really is: a record saying "running" whose supervisor is gone (it
/// was killed, or could not write the final state on a full disk) shows as exited, so
/// `ps` and `inspect` agree with `exec` and `stop` even before `gc` repairs the file.
pub fn observed(record: &Record, mut state: State) -> State {
    if let Some(policy) = super::restart::pending(record) {
        state.restart_policy = policy;
    }
    if state.status == Status::Running && !record.is_supervised() {
        state.status = Status::Exited;
        state.pid = None;
        // Kept when its supervisor recorded why it failed, in the state or (the small
        // supervisor) in supervisor.log (supervisor_log.rs).
        let failure = state.error.take().or_else(|| {
            super::supervisor_log::failure_since(&record.dir, state.started_at.unwrap_or(0))
        });
        let code = match failure {
            Some(_) => crate::exitcode::TOOL_FAILED,
            None => crate::exitcode::KILLED,
        };
        state.exit_code = state.exit_code.or(Some(code));
        state.error = Some(
            failure.unwrap_or_else(|| "the mycontainer process supervising it is gone".into()),
        );
    }
    state
}

/// Sends `signal` to the container's init. Errors when it is not running. SIGTERM and
/// SIGKILL are a user's stop: its supervisor does not restart it after them.
pub fn signal(record: &Record, signal: i32) -> anyhow::Result<()> {
    if matches!(signal, libc::SIGTERM | libc::SIGKILL) {
        return user_stop(record, signal);
    }
    deliver(record, signal)
}

/// `kill`: [`signal`], and for SIGKILL also the wait for the container to be gone (as
/// Docker's kill), so that a `start` right after it starts the container again rather
/// than finding the old run still on its way out.
pub fn kill(record: &Record, sig: i32) -> anyhow::Result<()> {
    signal(record, sig)?;
    if sig == libc::SIGKILL {
        kill_and_wait(record)?;
    }
    Ok(())
}

/// Sends `signal` as a user's stop (`stop` with the container's stop signal, `kill`):
/// the supervisor is told first, so it does not restart the container after it.
fn user_stop(record: &Record, signal: i32) -> anyhow::Result<()> {
    if !record.is_supervised() {
        return deliver(record, signal);
    }
    // What the container was doing before the mark: once marked, its supervisor may end
    // the restart loop at any moment and record it exited.
    let before = record.load_state()?;
    if before.status != Status::Running && !before.restarting {
        bail!("container {} is not running", record.display_name());
    }
    super::restart::mark_stopped_by_user(record);
    if before.restarting {
        // Between two runs: the marker alone ends the loop (as Docker's kill does).
        return Ok(());
    }
    match deliver_to_init(record, signal)? {
        Delivered::Yes => Ok(()),
        // It was running when we looked and its init is gone now: its run ended on its
        // own meanwhile, and the marker keeps its supervisor from starting another (a
        // kill that came then failed with "is not running" while the supervisor was
        // about to restart it, or had just ended the loop on our marker). Docker's kill
        // likewise takes "no such process" as done.
        Delivered::Gone => Ok(()),
    }
}

/// Sends `signal` to the container's init, not as a user's stop (the healthcheck's
/// action: the restart policy still applies).
pub(super) fn deliver(record: &Record, signal: i32) -> anyhow::Result<()> {
    match deliver_to_init(record, signal)? {
        Delivered::Yes => Ok(()),
        Delivered::Gone => bail!("container {} is not running", record.display_name()),
    }
}

/// Whether [`deliver_to_init`] reached the container's init.
enum Delivered {
    Yes,
    /// No init to signal: none recorded, or it is gone.
    Gone,
}

/// Sends `signal` to the container's init through a pidfd.
fn deliver_to_init(record: &Record, signal: i32) -> anyhow::Result<Delivered> {
    let state = record.load_state()?;
    let pid = match state.pid {
        Some(pid) if state.status == Status::Running && record.is_supervised() => pid,
        _ => return Ok(Delivered::Gone),
    };
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Ok(Delivered::Gone);
    }
    // SAFETY: the descriptor was just created for us.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // The pidfd pins the process; if it is not in the container's cgroup, the pid was
    // recycled after the container's init died.
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    if !cgroups.contains(&record.cgroup_name()) {
        return Ok(Delivered::Gone);
    }
    // SAFETY: pidfd_send_signal on our pidfd, no siginfo.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ESRCH) {
            return Ok(Delivered::Gone);
        }
        return Err(err)
            .with_context(|| format!("cannot signal container {}", record.display_name()));
    }
    if signal == libc::SIGKILL {
        // A frozen task dies only once thawed (v1 freezer).
        super::pause::thaw_if_paused(record);
    }
    Ok(Delivered::Yes)
}

/// Waits until nobody supervises the record; false on timeout.
pub fn wait_unsupervised(record: &Record, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !record.is_supervised() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The stop signal (SIGTERM unless set), then SIGKILL after `timeout`; returns once the supervisor has recorded the
/// exit. Stopping a stopped container succeeds (as Docker).
pub fn stop(record: &Record, timeout: Duration) -> anyhow::Result<()> {
    if !record.is_supervised() {
        return Ok(());
    }
    let stop_signal = record
        .load_state()
        .map(|s| s.stop_signal)
        .unwrap_or(libc::SIGTERM);
    // A container still being set up has no pid yet: give it the same grace period.
    let deadline = Instant::now() + timeout;
    let mut signalled = false;
    while Instant::now() < deadline && record.is_supervised() {
        if user_stop(record, stop_signal).is_ok() {
            // A paused container gets its stop signal when thawed, as from Docker's stop.
            super::pause::thaw_if_paused(record);
            signalled = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if signalled && wait_unsupervised(record, deadline.saturating_duration_since(Instant::now())) {
        return Ok(());
    }
    kill_and_wait(record)
}

/// SIGKILL and wait for the supervisor to finish, however long it takes (as Docker's
/// kill, which waits for the exit without a timeout). Once the container is killed its
/// supervisor only has to reap, unmount and record the exit; on a busy machine that can
/// take any time, and a stop that gave up meanwhile would report a failure for a
/// container that is in fact stopping. A supervisor that is stopped or wedged for good
/// keeps the command waiting, which the user sees and can interrupt.
pub fn kill_and_wait(record: &Record) -> anyhow::Result<()> {
    while record.is_supervised() {
        let _ = signal(record, libc::SIGKILL);
        if wait_unsupervised(record, Duration::from_millis(200)) {
            return Ok(());
        }
    }
    Ok(())
}

/// The overlay is mounted `volatile`, which leaves `work/work/incompat/volatile` behind
/// and makes the kernel refuse the next mount (it cannot know the upper dir survived).
/// We do know it: the container stopped cleanly on a live system. Sync the upper dir,
/// then give overlay a fresh work dir.
pub(super) fn reset_work_dir(record: &Record) -> anyhow::Result<()> {
    let upper = std::fs::File::open(record.upper_dir())
        .with_context(|| format!("cannot open {}", record.upper_dir().display()))?;
    // SAFETY: syncfs on a descriptor we own.
    if unsafe { libc::syncfs(upper.as_raw_fd()) } < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot sync {}", record.upper_dir().display()));
    }
    let work = record.work_dir();
    match std::fs::remove_dir_all(&work) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot remove {}", work.display())),
    }
    std::fs::create_dir(&work).with_context(|| format!("cannot create {}", work.display()))
}

/// Starts a stopped container again from its config.json and upper dir, supervised in
/// the background. Returns the exit code when its command could not be executed.
pub fn start(root: &Path, record: &Record) -> anyhow::Result<Option<i32>> {
    let lock = loop {
        if let Some(lock) = lock_dir(&record.dir, false)? {
            break lock;
        }
        let state = record.load_state();
        if state.as_ref().is_ok_and(|s| s.restarting)
            && super::restart::stopped_by_user(record)
            && record.is_supervised()
        {
            // Between two runs with a user's stop or kill marked: its supervisor is
            // ending the restart loop (it looks every 50 ms). Wait for it, rather than
            // report a start that the ending loop would undo.
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        // Running (or about to be restarted by its supervisor) already: Docker's start
        // succeeds on a running container. Otherwise another command (rm, start) holds
        // it right now.
        if state.is_ok_and(|s| s.status == Status::Running || s.restarting) {
            return Ok(None);
        }
        bail!(
            "container {} is busy: another mycontainer command is acting on it, try again",
            record.display_name()
        );
    };
    let mut state = record.load_state()?;
    if state.status == Status::Running {
        return Ok(None);
    }
    reset_work_dir(record)?;
    // A user's start resumes the restart policy, counting restarts from zero (as
    // Docker's), under the policy `update` last gave.
    super::restart::clear_stopped_by_user(record)?;
    super::restart::adopt_pending(record, &mut state);
    super::restart::clear_exits(record);
    state.restart_count = 0;
    state.status = Status::Created;
    state.restarting = false;
    state.pid = None;
    record.save_state(&state)?;
    let locked = Record {
        id: record.id.clone(),
        name: record.name.clone(),
        dir: record.dir.clone(),
        lock: Some(lock),
    };
    match detach::spawn_supervisor(root, locked)? {
        Started::Running => Ok(None),
        Started::ExecFailed(code, reason) => {
            eprintln!("mycontainer: {reason}");
            Ok(Some(code))
        }
    }
}
