//! What a detached supervisor could not do. Its stdio is /dev/null (nobody waits on it
//! after `run -d` or `start` returns), so a failure of its own (recording the exit,
//! removing a `--rm` record) would otherwise vanish: the record would just stay until
//! the next command's reclaim, and `stop` would return as soon as the supervisor died.
//! Such a failure is appended to `supervisor.log` in the record and put in its state's
//! `error` (shown by `inspect` as State.Error).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::paths::containers_dir;
use super::state::State;

/// The file in a record that keeps its supervisor's failures.
pub const LOG_FILE: &str = "supervisor.log";

/// Records `err`, the detached supervisor's failure, in record `id` (if it still exists):
/// a line in its supervisor.log and its state's `error`. Best effort: this is the last
/// thing a failing supervisor does.
pub fn record_failure(root: &Path, id: &str, err: &anyhow::Error) {
    let mut dir = containers_dir(root).join(id);
    if !dir.is_dir() {
        // Failed while removing it (see `record::remove_record_dir`).
        dir = super::record::removing_dir(&dir);
        if !dir.is_dir() {
            return;
        }
    }
    let message = format!("its supervisor failed: {err:#}");
    let line = format!("{} {message}\n", crate::timefmt::now());
    if let Ok(mut log) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(dir.join(LOG_FILE))
    {
        let _ = log.write_all(line.as_bytes());
    }
    let path = dir.join("state.json");
    if let Ok(mut state) = State::load(&path) {
        state.error = Some(message);
        let _ = state.save(&path, !state.auto_remove);
    }
}
