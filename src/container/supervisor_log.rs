//! What a detached supervisor could not do. Nobody waits on it after `run -d` or
//! `start` returns, so a failure of its own (recording the exit, removing a `--rm`
//! record, a panic, the small supervisor's exec back into `mycontainer`) would otherwise
//! vanish: the record would just stay until the next command's reclaim, and `stop`
//! would return as soon as the supervisor died. Its stderr is `supervisor.log` in the
//! record (whatever it prints lands there: a panic's message, the small supervisor's
//! failure); a failure the full binary catches, a panic included, is also put in the
//! state's `error` (shown by `inspect` as State.Error). The small supervisor cannot
//! write the state (std and libc only): the reclaim that finds the record orphaned
//! takes the error from its line in the log ([`failure_since`]).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::UNIX_EPOCH;

use super::paths::containers_dir;
use super::state::State;

/// The file in a record that keeps its supervisor's failures.
pub const LOG_FILE: &str = "supervisor.log";

/// What starts each failure's line (after the time): the small supervisor writes the
/// same (src/supervisor/main.rs).
const FAILED: &str = "its supervisor failed: ";

fn open_log(dir: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(dir.join(LOG_FILE))
}

/// The detached supervisor's stderr: record `dir`'s supervisor.log, appended to.
pub fn stderr_for(dir: &Path) -> std::io::Result<std::fs::File> {
    open_log(dir)
}

/// The failure record `dir`'s supervisor logged since `since` (unix seconds: the run's
/// start), if its last line is one.
pub fn failure_since(dir: &Path, since: u64) -> Option<String> {
    let path = dir.join(LOG_FILE);
    let modified = std::fs::symlink_metadata(&path).ok()?.modified().ok()?;
    if modified.duration_since(UNIX_EPOCH).ok()?.as_secs() < since {
        return None;
    }
    let text = std::fs::read(&path).ok()?;
    // The tail only: the log may hold a panic's backtrace.
    let tail = &text[text.len().saturating_sub(64 * 1024)..];
    let line = String::from_utf8_lossy(tail)
        .lines()
        .rev()
        .find(|l| l.contains(FAILED))?
        .to_string();
    let at = line.find(FAILED)?;
    Some(line[at..].trim_end().to_string())
}

/// From now on a panic of this process (the detached supervisor of record `id`) is
/// recorded as its failure (one line in supervisor.log and the state's error) before
/// the usual report (which goes to the same log, its stderr).
pub fn record_panics(root: &Path, id: &str) {
    let (root, id) = (root.to_path_buf(), id.to_string());
    let usual = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let what = what.lines().next().unwrap_or("").to_string();
        record_failure(&root, &id, &anyhow::anyhow!("panicked{at}: {what}"));
        usual(info);
    }));
}

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
    let message = format!("{FAILED}{err:#}");
    let message = message.replace('\n', " ");
    let line = format!("{} {message}\n", crate::timefmt::now());
    if let Ok(mut log) = open_log(&dir) {
        let _ = log.write_all(line.as_bytes());
    }
    let path = dir.join("state.json");
    if let Ok(mut state) = State::load(&path) {
        state.error = Some(message);
        let _ = state.save(&path, !state.auto_remove);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::state::Status;

    /// Set in the child this test starts (test builds only): the state root to fail in.
    const CHILD_ROOT: &str = "MYCONTAINER_UNIT_TEST_PANIC_ROOT";

    /// A panic of a detached supervisor (here a child process running this test, with
    /// `record_panics` as the supervisor entries install it) reaches the record: a line
    /// in supervisor.log and the state's error, which reclaim and `observed` keep.
    #[test]
    fn a_supervisors_panic_is_recorded_in_its_log_and_state() {
        if let Ok(root) = std::env::var(CHILD_ROOT) {
            record_panics(Path::new(&root), "abc");
            panic!("the supervisor broke\nsecond line");
        }
        let root = tempfile::tempdir().unwrap();
        let dir = containers_dir(root.path()).join("abc");
        std::fs::create_dir_all(&dir).unwrap();
        let state = State {
            pid: Some(1),
            ..State::for_test("abc", Status::Running)
        };
        state.save(&dir.join("state.json"), true).unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "container::supervisor_log::tests::a_supervisors_panic_is_recorded_in_its_log_and_state",
                "--nocapture",
            ])
            .env(CHILD_ROOT, root.path())
            .output()
            .unwrap();
        assert!(!out.status.success(), "the child did not panic");
        let log = std::fs::read_to_string(dir.join(LOG_FILE)).unwrap();
        let line = log.lines().next().unwrap_or_default();
        assert!(
            line.contains("its supervisor failed: panicked at src/container/supervisor_log.rs:")
                && line.ends_with(": the supervisor broke"),
            "{log}"
        );
        let error = State::load(&dir.join("state.json")).unwrap().error;
        assert_eq!(error.as_deref(), line.split_once(' ').map(|(_, m)| m));
        assert_eq!(
            failure_since(&dir, 0).as_deref(),
            line.split_once(' ').map(|(_, m)| m)
        );
    }
}
