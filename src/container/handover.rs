//! The detached supervisor's two binaries. `mycontainer supervise` (this binary) does
//! the heavy, rare work: it starts the container (network, cgroup, clone), records the
//! start, then execs `mycontainer-supervisor` (installed next to us) in the same
//! process, which relays the container's stdio, serves the attach socket, writes the
//! log and runs the healthcheck each interval (through `mycontainer supervise-health`).
//! When the container has exited, the small binary execs us again (`supervise
//! --resume`): we record the exit and carry out the restart policy, and for a restart
//! start the container and exec the small binary once more.
//!
//! Why exec both ways rather than spawn helpers: the container's init stays a child of
//! one process for its whole life, so its parent-death signal (SIGKILL) still ties it
//! to its supervisor, `kill -9` of the supervisor included, and no subreaper is needed.
//! What stays resident while the container runs is only the small binary's pages.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use mycontainer_store::Store;

use super::state::State;
use super::Record;
use crate::runtime::handover::{Handed, Start};
use crate::runtime::{self, RunRequest};

/// The small binary's name, looked up in the directory of our own executable.
pub const SMALL_SUPERVISOR: &str = "mycontainer-supervisor";

/// The small supervisor next to our executable.
pub fn small_supervisor() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find our own executable")?;
    let path = exe.with_file_name(SMALL_SUPERVISOR);
    if !path.is_file() {
        bail!(
            "cannot find {}: install it next to {} (cargo build and scripts/release make both)",
            path.display(),
            exe.display()
        );
    }
    Ok(path)
}

/// CLOCK_MONOTONIC in milliseconds: survives exec, so a run's length can be measured
/// across the two binaries.
pub fn monotonic_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into a timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// What the small supervisor passes back when the container has exited.
pub struct Resumed {
    pub code: i32,
    /// How long the run lasted (for the restart backoff).
    pub ran: Duration,
    pub backoff_ms: u64,
    pub listener: OwnedFd,
    pub clients: Vec<OwnedFd>,
}

fn set_cloexec(fd: RawFd, on: bool) -> anyhow::Result<()> {
    let flag = if on { libc::FD_CLOEXEC } else { 0 };
    // SAFETY: fcntl on a descriptor number; fails harmlessly if it is not open.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flag) } < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("descriptor {fd} was not passed to the supervisor"));
    }
    Ok(())
}

/// Adopts the descriptors `supervise --resume` names (made close-on-exec again).
pub fn adopt_resumed(
    code: i32,
    began_ms: u64,
    backoff_ms: u64,
    listen_fd: RawFd,
    client_fds: &[RawFd],
) -> anyhow::Result<Resumed> {
    use std::os::fd::FromRawFd;
    let mut fds = vec![listen_fd];
    fds.extend_from_slice(client_fds);
    for fd in &fds {
        if *fd < 3 {
            bail!("invalid descriptor {fd} passed to the supervisor");
        }
        set_cloexec(*fd, true)?;
    }
    // SAFETY: the small supervisor passed these to us alone.
    let own = |fd: RawFd| unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(Resumed {
        code,
        ran: Duration::from_millis(monotonic_ms().saturating_sub(began_ms)),
        backoff_ms,
        listener: own(listen_fd),
        clients: client_fds.iter().map(|fd| own(*fd)).collect(),
    })
}

/// What the small supervisor needs besides the started container.
pub struct Handing<'a> {
    pub small: &'a Path,
    pub record: &'a Record,
    pub root: &'a Path,
    pub listen_fd: RawFd,
    pub began_ms: u64,
    pub backoff_ms: u64,
}

/// Execs the small supervisor for the running container `handed`; returns only the
/// error if that failed (the caller then kills the container).
fn exec_small(h: &Handing, state: &State, handed: &Handed) -> anyhow::Error {
    let Some(lock) = h.record.lock.as_ref() else {
        return anyhow::anyhow!("internal error: the supervised record is not locked");
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return anyhow::Error::from(e).context("cannot find our own executable"),
    };
    let mut args: Vec<OsString> = vec![
        "supervise".into(),
        "--lock-fd".into(),
        lock.as_raw_fd().to_string().into(),
        "--root".into(),
        h.root.into(),
        "--exe".into(),
        exe.into(),
        "--id".into(),
        h.record.id.clone().into(),
        "--pid".into(),
        handed.pid.to_string().into(),
        "--listen-fd".into(),
        h.listen_fd.to_string().into(),
        "--began-ms".into(),
        h.began_ms.to_string().into(),
        "--backoff-ms".into(),
        h.backoff_ms.to_string().into(),
        "--log".into(),
        h.record.log_path().into(),
        "--max-size".into(),
        state.log_opts.max_size.to_string().into(),
        "--max-files".into(),
        state.log_opts.max_files.to_string().into(),
        "--stop-timeout".into(),
        state.stop_timeout.to_string().into(),
    ];
    if let Some(health) = &state.healthcheck {
        args.push("--health-ms".into());
        args.push(health.interval_ms.to_string().into());
    }
    if state.open_stdin {
        args.push("--open-stdin".into());
    }
    let mut passed = vec![lock.as_raw_fd(), h.listen_fd];
    for (flag, fd) in [
        ("--out-fd", &handed.out),
        ("--err-fd", &handed.err),
        ("--master-fd", &handed.master),
        ("--stdin-fd", &handed.stdin),
    ] {
        if let Some(fd) = fd {
            args.push(flag.into());
            args.push(fd.as_raw_fd().to_string().into());
            passed.push(fd.as_raw_fd());
        }
    }
    for fd in &passed {
        if let Err(e) = set_cloexec(*fd, false) {
            return e;
        }
    }
    let err = Command::new(h.small)
        .args(args)
        .env_remove("MYCONTAINER_ROOT")
        .exec();
    for fd in &passed {
        let _ = set_cloexec(*fd, true);
    }
    anyhow::Error::from(err).context(format!("cannot run {}", h.small.display()))
}

/// Starts the container and hands it to the small supervisor (never returns then);
/// returns how it ended when it could not be started.
pub fn start(
    store: &Store,
    record: &Record,
    spec: &oci_spec::runtime::Spec,
    state: &mut State,
    handing: Handing,
    started: &mut dyn FnMut(i32),
) -> anyhow::Result<runtime::Outcome> {
    // The container's own tmpfs for its etc files, written from the spec (as
    // start_and_wait does for a foreground run; see rundir::start_files).
    super::rundir::start_files(record, spec)?;
    let attached = super::run::attach_network(store, record, spec, state)?;
    let log_path = record.log_path();
    let cache_dir = store.root().join("cache");
    let request = RunRequest {
        bundle: &record.dir,
        spec,
        interactive: state.open_stdin,
        log_path: Some(&log_path),
        log_rotation: None,
        stop_timeout: Duration::from_secs(state.stop_timeout),
        cache_dir: Some(&cache_dir),
    };
    let result = runtime::handover::start(&request, &mut |pid| {
        // Saved unsynced and synced once the CLI has been told: it waits for the
        // report, not for the disk (its own sync of the record covers the created state,
        // and a running state lost in a crash reads the same after reclaim).
        super::run::mark_started(store, record, state, pid, false);
        if state.healthcheck.is_some() {
            super::health::begin(&record.dir);
        }
        started(pid);
        if !state.auto_remove {
            let _ = super::detach::sync_file(&record.state_path());
        }
    });
    let err = match result {
        Ok(Start::Running(handed)) => {
            let err = exec_small(&handing, state, &handed);
            // Nobody would relay it: the container goes, and the error is the run's.
            // SAFETY: kill(2) and waitpid(2) on our own unreaped child.
            unsafe {
                libc::kill(handed.pid, libc::SIGKILL);
                libc::waitpid(handed.pid, std::ptr::null_mut(), 0);
            }
            let _ = runtime::handover::finish_cgroup(spec);
            Err(err)
        }
        Ok(Start::ExecFailed(code, reason)) => Ok(runtime::Outcome {
            exit_code: code,
            exec_error: Some(reason),
            ..Default::default()
        }),
        Err(err) => Err(err),
    };
    if attached {
        super::run::release_network(store, record);
    }
    err
}

/// The end of a run the small supervisor relayed: the cgroup's OOM verdict, the cgroup
/// and the network removed.
pub fn ended(store: &Store, record: &Record, code: i32) -> runtime::Outcome {
    let mut outcome = runtime::Outcome {
        exit_code: code,
        ..Default::default()
    };
    let spec = match oci_spec::runtime::Spec::load(record.config_path()) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("mycontainer: warning: cannot read the container's config.json: {e}");
            return outcome;
        }
    };
    // The network's release (its namespace's unmount waits out an RCU grace period)
    // beside the cgroup's removal: the two touch nothing in common.
    std::thread::scope(|scope| {
        if super::run::network_of(&spec).is_some() {
            scope.spawn(|| super::run::release_network(store, record));
        }
        match runtime::handover::finish_cgroup(&spec) {
            Ok((oom_killed, memory_limit)) => {
                outcome.oom_killed = oom_killed;
                outcome.memory_limit = memory_limit;
            }
            Err(e) => eprintln!("mycontainer: warning: {e:#}"),
        }
    });
    outcome
}
