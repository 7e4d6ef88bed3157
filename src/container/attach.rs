//! `attach`: a detached container's supervisor serves its stdio on a unix socket in the
//! record (`attach.sock`, 0600 in a root-only directory); `attach NAME` connects to it.
//! Docker's rules: a stopped, paused or restarting container cannot be attached to; the
//! detach keys (ctrl-p ctrl-q unless `--detach-keys`) leave it running; attach exits
//! with the container's exit code when it ends.
//!
//! The socket is bound and reached through `/proc/self/fd/N/attach.sock`, N the open
//! record directory, so a long state root never exceeds sun_path's 108 bytes.

use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use anyhow::{bail, Context};

use super::record::Record;
use super::state::Status;
use crate::runtime::attach::{self, ClientEnd, ClientOptions, Server};

/// The socket's name in the record directory.
pub const SOCKET: &str = "attach.sock";

/// Docker's default detach keys: ctrl-p ctrl-q.
pub const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

/// Runs `f` on the record directory's path through an open descriptor of it.
fn via_dir_fd<T>(record: &Record, f: impl FnOnce(&str) -> std::io::Result<T>) -> anyhow::Result<T> {
    let dir = std::fs::File::open(&record.dir)
        .with_context(|| format!("cannot open {}", record.dir.display()))?;
    let path = format!("/proc/self/fd/{}/{SOCKET}", dir.as_raw_fd());
    f(&path).with_context(|| format!("{}", record.dir.join(SOCKET).display()))
}

/// The supervisor's side: binds the record's socket (a stale one from a killed
/// supervisor is replaced), owner-only.
pub fn listen(record: &Record) -> anyhow::Result<Server> {
    let path = record.dir.join(SOCKET);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => {}
    }
    let listener = via_dir_fd(record, |path| UnixListener::bind(path))
        .context("cannot bind the attach socket")?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    Server::new(listener)
}

/// Removes the record's socket (the supervisor, as it ends).
pub fn unlisten(record: &Record) {
    let _ = std::fs::remove_file(record.dir.join(SOCKET));
}

/// Parses Docker's detach keys: comma-separated `ctrl-X` (X a letter or one of
/// `@[\]^_`) or single characters.
pub fn parse_detach_keys(text: &str) -> anyhow::Result<Vec<u8>> {
    let invalid = || {
        anyhow::anyhow!(
            "invalid detach keys {text:?}: use a comma-separated list of ctrl-<letter>, ctrl-@, ctrl-[, ctrl-\\, ctrl-], ctrl-^, ctrl-_ or single characters, as ctrl-p,ctrl-q"
        )
    };
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let mut keys = Vec::new();
    for key in text.split(',') {
        let lower = key.to_ascii_lowercase();
        if let Some(rest) = lower.strip_prefix("ctrl-") {
            let byte = match rest.as_bytes() {
                [c @ b'a'..=b'z'] => c - b'a' + 1,
                [b'@'] => 0,
                [b'['] => 27,
                [b'\\'] => 28,
                [b']'] => 29,
                [b'^'] => 30,
                [b'_'] => 31,
                _ => return Err(invalid()),
            };
            keys.push(byte);
        } else if key.len() == 1 {
            keys.push(key.as_bytes()[0]);
        } else {
            return Err(invalid());
        }
    }
    Ok(keys)
}

/// What `attach` was asked.
pub struct AttachOptions {
    pub detach_keys: Vec<u8>,
    pub sig_proxy: bool,
    pub no_stdin: bool,
}

/// Attaches to the running container `record`; returns attach's exit code (the
/// container's when it ends, 0 when detached).
pub fn attach(root: &Path, record: &Record, opts: &AttachOptions) -> anyhow::Result<i32> {
    let state = record.load_state()?;
    let name = record.display_name();
    if state.status != Status::Running || !record.is_supervised() {
        if state.restarting && record.is_supervised() {
            bail!("cannot attach to container {name}: it is restarting, wait until it runs");
        }
        bail!(
            "cannot attach to stopped container {name}: start it first (mycontainer start {name})"
        );
    }
    if super::pause::is_paused(record, &state) {
        bail!("cannot attach to paused container {name}: unpause it first (mycontainer unpause {name})");
    }
    let sock = via_dir_fd(record, |path| UnixStream::connect(path)).with_context(|| {
        format!("cannot connect to container {name}'s attach socket (was it started by an older mycontainer? restart it)")
    })?;
    let end = attach::client(
        sock,
        &ClientOptions {
            detach_keys: opts.detach_keys.clone(),
            sig_proxy: opts.sig_proxy,
            stdin: !opts.no_stdin,
        },
    )?;
    match end {
        ClientEnd::Exited(code) => Ok(code),
        ClientEnd::Detached => Ok(0),
        // The supervisor let us go without the exit code: what the record says.
        ClientEnd::Closed => closed_without_exit_code(root, record, &state, &name),
    }
}

/// The exit code of the run `attached` (the state when we attached) once the record
/// says it, after the supervisor closed our connection without sending it (it was
/// killed, it failed, or it dropped us as a client that did not keep up). While the
/// run's init still runs we were dropped: that is said at once. Otherwise the run has
/// ended and its supervisor is recording it, which on a busy machine takes any time:
/// waited for without a limit, until the record shows the end or nobody supervises it.
/// A `--rm` record may be gone by then: the exit code is in the "die" event its
/// supervisor logged before removing it.
fn closed_without_exit_code(
    root: &Path,
    record: &Record,
    attached: &super::state::State,
    name: &str,
) -> anyhow::Result<i32> {
    let recorded = |state: &super::state::State| {
        state.status != Status::Running
            || state.restarting
            || state.started_at != attached.started_at
            || state.pid != attached.pid
    };
    loop {
        let state = match record.load_state() {
            Ok(state) => state,
            // Removed (--rm) before we could read how it ended.
            Err(_) if !record.dir.exists() => {
                return match died_with(root, &record.id) {
                    Some(code) => Ok(code),
                    None => bail!(
                        "lost the connection to container {name}'s supervisor, and the container was removed before its exit code could be read (use `mycontainer wait` to get it next time)"
                    ),
                };
            }
            Err(err) => return Err(err),
        };
        if recorded(&state) || !record.is_supervised() {
            return match state.exit_code.filter(|_| state.status != Status::Running) {
                Some(code) => Ok(code),
                None => bail!("lost the connection to container {name}'s supervisor: it was killed (see `mycontainer inspect {name}`)"),
            };
        }
        if attached.pid.is_some_and(|pid| init_runs(record, pid)) {
            bail!(
                "lost the connection to container {name}: its supervisor dropped this client, which did not read the output fast enough; it still runs (attach again)"
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The exit code in the last "die" event of container `id` in the event log (a
/// removed `--rm` container ran once: that is its end).
fn died_with(root: &Path, id: &str) -> Option<i32> {
    let (events, _) = super::events::read_from(root, 0);
    events
        .iter()
        .rev()
        .find(|e| e.id == id && e.action == "die")?
        .attributes
        .get("exitCode")?
        .parse()
        .ok()
}

/// Whether `pid`, the container's init, still runs: a live process (not a zombie
/// awaiting its reaper) in the container's cgroup (not a recycled pid).
fn init_runs(record: &Record, pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    if !cgroups.contains(&record.cgroup_name()) {
        return false;
    }
    stat.rfind(')')
        .and_then(|at| stat[at + 1..].trim_start().chars().next())
        .is_some_and(|state| state != 'Z' && state != 'X')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_read_as_dockers() {
        assert_eq!(parse_detach_keys(DEFAULT_DETACH_KEYS).unwrap(), [16, 17]);
        assert_eq!(parse_detach_keys("ctrl-a,x").unwrap(), [1, b'x']);
        assert_eq!(parse_detach_keys("ctrl-@,ctrl-_").unwrap(), [0, 31]);
        assert_eq!(parse_detach_keys("").unwrap(), Vec::<u8>::new());
        for bad in ["ctrl-", "ctrl-1", "ab", "ctrl-p,,ctrl-q"] {
            assert!(parse_detach_keys(bad).is_err(), "{bad}");
        }
    }
}
