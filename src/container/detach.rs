//! Detached containers (`run -d`, `start`): the CLI re-executes its own binary as
//! `mycontainer supervise ID` in a new session, handing it the record's lock and a
//! status pipe. The supervisor owns the container from then on (stdio, log, wait,
//! exit code, cleanup) and tells the CLI on the pipe whether the command started; while
//! the container runs, that process is the small `mycontainer-supervisor` (see
//! handover.rs).
//!
//! Why re-exec rather than fork: the CLI may have threads (the store uses them), and
//! after fork only async-signal-safe work is allowed, while the supervisor has to
//! allocate, log and write JSON. A fresh process has none of those limits, and its
//! memory is only what the supervisor touches.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

use super::Record;

/// What the supervisor reports to the CLI that started it, one line each.
pub enum Report {
    /// The container's command runs.
    Running,
    /// The command could not be executed: exit code (126/127) and why.
    ExecFailed(i32, String),
    /// Setting up the container failed.
    Failed(String),
}

impl Report {
    fn line(&self) -> String {
        match self {
            Report::Running => "running\n".into(),
            Report::ExecFailed(code, reason) => format!("exec {code} {reason}\n"),
            Report::Failed(reason) => format!("failed {reason}\n"),
        }
    }
}

/// How a detached start went, as seen by the CLI.
pub enum Started {
    Running,
    ExecFailed(i32, String),
}

/// Starts `mycontainer supervise` for the locked `record` and waits until it reports.
/// The lock passes to the supervisor (it inherits the locked descriptor), so at no time
/// does the record look orphaned.
pub fn spawn_supervisor(root: &Path, record: Record) -> anyhow::Result<Started> {
    let lock = record
        .lock
        .as_ref()
        .context("internal error: the record to detach is not locked")?;
    // Duplicates land on descriptor 3 or above: with a closed stdin the originals could
    // be 0..2, which the child's stdio setup would overwrite. A duplicate shares the
    // open file description, and with it the lock.
    let lock = lock.try_clone().context("cannot pass the record lock on")?;
    let lock_fd = lock.as_raw_fd();
    let (reader, writer) = std::io::pipe().context("cannot create the supervisor's status pipe")?;
    let writer = OwnedFd::from(writer)
        .try_clone()
        .context("cannot create the supervisor's status pipe")?;
    let status_fd = writer.as_raw_fd();
    // Only these two duplicates are inherited (they are dropped once the supervisor
    // runs); the CLI has no other thread that could fork meanwhile. No pre_exec
    // closure: without one std spawns with posix_spawn (a vfork that copies none of
    // our memory) instead of fork. The supervisor makes its own session and closes
    // whatever else it inherited (`adopt`).
    for fd in [lock_fd, status_fd] {
        // SAFETY: fcntl on descriptors we own.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } < 0 {
            return Err(std::io::Error::last_os_error())
                .context("cannot pass the record lock on to the container's supervisor");
        }
    }
    let exe = std::env::current_exe().context("cannot find our own executable")?;
    let mut command = Command::new(exe);
    command
        .arg("--root")
        .arg(root)
        .arg("supervise")
        .arg("--lock-fd")
        .arg(lock_fd.to_string())
        .arg("--status-fd")
        .arg(status_fd.to_string())
        .arg(&record.id)
        .env_remove("MYCONTAINER_ROOT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // Nobody reads its stderr: what it prints (a panic, the small supervisor's failure)
    // goes to the record's supervisor.log.
    if let Ok(log) = super::supervisor_log::stderr_for(&record.dir) {
        command.stderr(log);
    }
    // Opened before the supervisor starts (it replaces state.json): what is synced is
    // what we wrote.
    let unsynced = UnsyncedRecord::open(&record);
    let child = command
        .spawn()
        .context("cannot start the container's supervisor")?;
    drop(writer);
    // Not waited for: the supervisor outlives us and is adopted by init.
    drop(child);
    // While the supervisor starts the container: a container we report as started
    // survives a crash from then on (its record was written unsynced).
    if let Err(err) = unsynced.and_then(UnsyncedRecord::sync) {
        eprintln!(
            "mycontainer: warning: {err:#}: container {} may not survive a crash (check the disk)",
            record.id
        );
    }
    // The supervisor holds the lock now; ours go with the record.
    drop(lock);
    drop(record);
    let mut line = String::new();
    BufReader::new(reader)
        .read_line(&mut line)
        .context("cannot read from the container's supervisor")?;
    let line = line.trim_end();
    let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
    match kind {
        "running" => Ok(Started::Running),
        "exec" => {
            let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
            Ok(Started::ExecFailed(
                code.parse().unwrap_or(crate::exitcode::CANNOT_EXECUTE),
                reason.to_string(),
            ))
        }
        "failed" => bail!("{rest}"),
        _ => bail!("the container's supervisor exited before the container started"),
    }
}

/// Syncs `path` (a file or a directory) to disk.
pub fn sync_file(path: &Path) -> std::io::Result<()> {
    fs::File::open(path)?.sync_all()
}

/// A record's config.json and state.json, open to be synced. Not the directories:
/// their entries were made before the files were written, and a journaling filesystem
/// commits them with the files' fsync (ext4 and xfs commit everything logged before;
/// btrfs logs a new file's names with it), which is what Docker's atomic writes rely on
/// too. A directory's fsync would cost a journal commit of its own whenever something
/// touched it since (its atime, the supervisor's socket).
struct UnsyncedRecord(Vec<(PathBuf, fs::File)>);

impl UnsyncedRecord {
    fn open(record: &Record) -> anyhow::Result<UnsyncedRecord> {
        let paths = [record.config_path(), record.state_path()];
        let open = |path: PathBuf| {
            let file = fs::File::open(&path)
                .with_context(|| format!("cannot open {} to sync it", path.display()))?;
            Ok((path, file))
        };
        let files = paths.into_iter().map(open).collect::<anyhow::Result<_>>()?;
        Ok(UnsyncedRecord(files))
    }

    /// Syncs them in one journal commit where it can: the writeback of all of them is
    /// started first, so the first fsync commits all their blocks and the later ones
    /// find them committed (one fsync after another would commit once each).
    fn sync(self) -> anyhow::Result<()> {
        for (_, file) in &self.0 {
            // SAFETY: sync_file_range on a descriptor we own. Only a head start (its
            // errors are left to the fsync below).
            unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
        }
        for (path, file) in &self.0 {
            file.sync_all()
                .with_context(|| format!("cannot sync {}", path.display()))?;
        }
        Ok(())
    }
}

/// The supervisor's side: takes over the lock and the status pipe passed by the CLI.
pub struct Handover {
    pub record: Record,
    pub status: StatusPipe,
}

/// The write end of the status pipe; the first report closes it.
pub struct StatusPipe(Option<fs::File>);

/// Adopts the descriptors named on the command line. They are made close-on-exec again
/// so the container's init does not inherit them (the pipe would stay open, and the
/// lock would outlive the supervisor).
pub fn adopt(root: &Path, id: &str, lock_fd: RawFd, status_fd: RawFd) -> anyhow::Result<Handover> {
    if lock_fd == status_fd || lock_fd < 3 || status_fd < 3 {
        bail!("invalid descriptors {lock_fd} and {status_fd} passed to the supervisor");
    }
    for fd in [lock_fd, status_fd] {
        // SAFETY: fcntl on a descriptor number; fails harmlessly if it is not open.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("descriptor {fd} was not passed to the supervisor"));
        }
    }
    leave_the_cli(lock_fd, status_fd)?;
    // SAFETY: both descriptors were passed to us by the CLI for us alone to own.
    let (lock, status) = unsafe {
        (
            OwnedFd::from_raw_fd(lock_fd),
            OwnedFd::from_raw_fd(status_fd),
        )
    };
    let dir = super::paths::containers_dir(root).join(id);
    if !dir.is_dir() {
        bail!("no such container: {id}");
    }
    let record = Record {
        id: id.to_string(),
        name: String::new(),
        dir,
        lock: Some(fs::File::from(lock)),
    };
    Ok(Handover {
        record,
        status: StatusPipe(Some(fs::File::from(status))),
    })
}

/// What the CLI used to do between fork and exec, now done first thing here (the CLI
/// spawns us with posix_spawn): a session of our own, so no terminal's SIGHUP or SIGINT
/// reaches the container's supervisor, and nothing the CLI's caller left open (without
/// close-on-exec) lives as long as the container: only 0..2 and the two passed stay.
fn leave_the_cli(lock_fd: RawFd, status_fd: RawFd) -> anyhow::Result<()> {
    // SAFETY: setsid, getsid and getpid on our own process.
    let (made, leader) = unsafe { (libc::setsid() >= 0, libc::getsid(0) == libc::getpid()) };
    if !made && !leader {
        return Err(std::io::Error::last_os_error())
            .context("the container's supervisor cannot start a session of its own");
    }
    let (low, high) = (lock_fd.min(status_fd) as u32, lock_fd.max(status_fd) as u32);
    for (first, last) in [
        (3, low.wrapping_sub(1)),
        (low + 1, high - 1),
        (high + 1, u32::MAX),
    ] {
        if first <= last {
            // SAFETY: close_range on descriptor numbers nothing in this process owns
            // yet (the supervisor has opened nothing so far).
            unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) };
        }
    }
    Ok(())
}

/// The small supervisor's way back (`supervise --resume`): only the lock is passed.
pub fn adopt_lock(root: &Path, id: &str, lock_fd: RawFd) -> anyhow::Result<Record> {
    if lock_fd < 3 {
        bail!("invalid descriptor {lock_fd} passed to the supervisor");
    }
    // SAFETY: fcntl on a descriptor number; fails harmlessly if it is not open.
    if unsafe { libc::fcntl(lock_fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("descriptor {lock_fd} was not passed to the supervisor"));
    }
    // SAFETY: passed to us by the small supervisor for us alone to own.
    let lock = unsafe { OwnedFd::from_raw_fd(lock_fd) };
    let dir = super::paths::containers_dir(root).join(id);
    if !dir.is_dir() {
        bail!("no such container: {id}");
    }
    Ok(Record {
        id: id.to_string(),
        name: String::new(),
        dir,
        lock: Some(fs::File::from(lock)),
    })
}

impl StatusPipe {
    /// Sends the first report; later ones are dropped (the CLI has gone).
    pub fn report(&mut self, report: Report) {
        if let Some(mut pipe) = self.0.take() {
            let _ = pipe.write_all(report.line().as_bytes());
        }
    }
}
