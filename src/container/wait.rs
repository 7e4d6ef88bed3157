//! `wait`: blocks until a container stops and returns its exit code.

use std::os::fd::AsRawFd;
use std::time::Duration;

use anyhow::Context;

use super::record::Record;
use super::state::Status;

/// How often a container that was created but not started yet is looked at again.
const NOT_STARTED_POLL: Duration = Duration::from_millis(100);
/// How often a container that may restart is looked at for its next exit.
const RESTART_POLL: Duration = Duration::from_millis(50);

/// Waits until `record` stops and returns its exit code. A running container is waited
/// for without polling: a shared flock on its record blocks until its supervisor lets
/// go of its lock (which it holds exactly while the container runs).
pub fn wait(root: &std::path::Path, record: &Record) -> anyhow::Result<i32> {
    loop {
        let state = record.load_state()?;
        if state.status == Status::Exited && !record.is_supervised() {
            return Ok(state.exit_code.unwrap_or(0));
        }
        if state.status == Status::Running || record.is_supervised() {
            let policy = super::restart::pending(record).unwrap_or(state.restart_policy);
            if policy == super::restart::RestartPolicy::No && !state.restarting {
                block_until_unlocked(record)?;
            } else if let Some(code) = next_exit(record, state.restart_count) {
                return Ok(code);
            }
            // A supervisor killed with SIGKILL left "running": reclaim records its end.
            if record.load_state()?.status == Status::Running && !record.is_supervised() {
                super::reclaim::reclaim_record(root, &record.id)?;
            }
            continue;
        }
        // Created, not started yet (as Docker, wait for it to run and stop).
        std::thread::sleep(NOT_STARTED_POLL);
    }
}

/// The container may be restarted: as Docker's, wait returns when the current run (or,
/// while it waits to restart, the next one) exits: the exit of run `runs + 1` if it led
/// to a restart, else None once the supervisor has let go (the record says the end).
fn next_exit(record: &Record, runs: u32) -> Option<i32> {
    loop {
        if let Some(code) = super::restart::exit_of_run(record, runs + 1) {
            return Some(code);
        }
        if !record.is_supervised() {
            return super::restart::exit_of_run(record, runs + 1);
        }
        std::thread::sleep(RESTART_POLL);
    }
}

fn block_until_unlocked(record: &Record) -> anyhow::Result<()> {
    let dir = std::fs::File::open(&record.dir)
        .with_context(|| format!("cannot open {}", record.dir.display()))?;
    // SAFETY: flock on a descriptor we own; the lock goes when `dir` is dropped.
    let rc = unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_SH) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot wait on {}", record.dir.display()));
    }
    Ok(())
}
