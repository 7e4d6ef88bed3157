//! Restart policies (`--restart no|on-failure[:MAX]|always|unless-stopped`), carried
//! out by the container's detached supervisor as Docker's daemon does: the delay starts
//! at 100 ms and doubles with each restart (at most a minute), and goes back to 100 ms
//! once the container ran for 10 s. A container stopped by `stop`, `kill` or `rm -f` is
//! not restarted: those commands leave a marker in the record (`stopped-by-user`) before
//! they signal, which the supervisor reads when the container ends; `start` removes it.
//! The marker outlives a reboot, which is what `unless-stopped` needs.

use std::path::Path;
use std::time::Duration;

use anyhow::bail;
use serde::{Deserialize, Serialize};

use super::record::Record;

/// The first delay, and the one after a run of [`RESET_AFTER`] or more.
const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(60);
/// A run at least this long counts as healthy: the delay starts over.
pub const RESET_AFTER: Duration = Duration::from_secs(10);

/// The marker file `stop`/`kill`/`rm -f` leave in the record.
const STOPPED_BY_USER: &str = "stopped-by-user";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum RestartPolicy {
    #[default]
    No,
    /// Restart after a non-zero exit, at most `max` times (0: no limit).
    OnFailure {
        max: u32,
    },
    Always,
    UnlessStopped,
}

impl RestartPolicy {
    /// Parses Docker's spelling: `no`, `on-failure`, `on-failure:3`, `always`,
    /// `unless-stopped`.
    pub fn parse(text: &str) -> anyhow::Result<RestartPolicy> {
        let (name, max) = match text.split_once(':') {
            Some((name, max)) => (name, Some(max)),
            None => (text, None),
        };
        let policy = match (name, max) {
            ("no", None) => RestartPolicy::No,
            ("always", None) => RestartPolicy::Always,
            ("unless-stopped", None) => RestartPolicy::UnlessStopped,
            ("on-failure", None) => RestartPolicy::OnFailure { max: 0 },
            ("on-failure", Some(max)) => match max.parse::<u32>() {
                Ok(max) => RestartPolicy::OnFailure { max },
                Err(_) => bail!(
                    "invalid restart policy {text:?}: the maximum retry count must be a \
                     number, as in on-failure:3"
                ),
            },
            ("no" | "always" | "unless-stopped", Some(_)) => bail!(
                "invalid restart policy {text:?}: only on-failure takes a maximum retry count"
            ),
            _ => bail!(
                "invalid restart policy {text:?}: use no, on-failure[:MAX], always or \
                 unless-stopped"
            ),
        };
        Ok(policy)
    }

    /// Docker's name (inspect's HostConfig.RestartPolicy.Name).
    pub fn name(&self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::OnFailure { .. } => "on-failure",
            RestartPolicy::Always => "always",
            RestartPolicy::UnlessStopped => "unless-stopped",
        }
    }

    pub fn max_retries(&self) -> u32 {
        match self {
            RestartPolicy::OnFailure { max } => *max,
            _ => 0,
        }
    }

    /// Whether the supervisor restarts a container that exited with `exit_code` after
    /// `restarts` restarts, unless a user stopped it.
    pub fn restarts_after(&self, exit_code: i32, restarts: u32) -> bool {
        match self {
            RestartPolicy::No => false,
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
            RestartPolicy::OnFailure { max } => exit_code != 0 && (*max == 0 || restarts < *max),
        }
    }

    /// Whether `system boot` starts the container: `always` ones whatever happened,
    /// `unless-stopped` ones unless a user stopped them, `on-failure` ones that a user
    /// did not stop and that ended in failure (a reboot kills them: reclaim records 137).
    pub fn starts_at_boot(&self, stopped_by_user: bool, exit_code: i32, restarts: u32) -> bool {
        match self {
            RestartPolicy::No => false,
            RestartPolicy::Always => true,
            RestartPolicy::UnlessStopped => !stopped_by_user,
            RestartPolicy::OnFailure { .. } => {
                !stopped_by_user && self.restarts_after(exit_code, restarts)
            }
        }
    }
}

/// The supervisor's delay between restarts.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff { next: FIRST_DELAY }
    }
}

impl Backoff {
    /// The backoff carried across the supervisor's exec (`next_ms` of the one before).
    pub fn resumed(next_ms: u64) -> Backoff {
        Backoff {
            next: Duration::from_millis(next_ms).clamp(FIRST_DELAY, MAX_DELAY),
        }
    }

    pub fn next_ms(&self) -> u64 {
        self.next.as_millis() as u64
    }

    /// The delay before the next start, after a run of `ran`.
    pub fn after_run(&mut self, ran: Duration) -> Duration {
        if ran >= RESET_AFTER {
            self.next = FIRST_DELAY;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(MAX_DELAY);
        delay
    }
}

fn marker(dir: &Path) -> std::path::PathBuf {
    dir.join(STOPPED_BY_USER)
}

/// Marks the record as stopped by a user (before the signal is sent).
pub(super) fn mark_stopped_by_user(record: &Record) {
    let _ = std::fs::write(marker(&record.dir), b"");
}

pub(super) fn clear_stopped_by_user(record: &Record) -> anyhow::Result<()> {
    match std::fs::remove_file(marker(&record.dir)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(anyhow::Error::from(e)
            .context(format!("cannot remove {}", marker(&record.dir).display()))),
        _ => Ok(()),
    }
}

pub fn stopped_by_user(record: &Record) -> bool {
    marker(&record.dir).exists()
}

/// `update --restart` on a record: the new policy waits in this file until the
/// supervisor (at the container's next exit) or `start` takes it into the state, which
/// they alone write while they own the record; `ps` and `inspect` show it at once.
const PENDING_POLICY: &str = "restart-policy";

/// The exit code of each run that was restarted, one `RUN CODE` line each (the last
/// [`KEPT_EXITS`]): what `wait` returns when the run it waited for ends in a restart.
const EXITS: &str = "restart-exits";
const KEPT_EXITS: usize = 64;

pub fn set_pending(record: &Record, policy: RestartPolicy) -> anyhow::Result<()> {
    let path = record.dir.join(PENDING_POLICY);
    let tmp = record.dir.join(format!("{PENDING_POLICY}.tmp"));
    serde_json::to_vec(&policy)
        .map_err(std::io::Error::from)
        .and_then(|bytes| super::write_private(&tmp, &bytes))
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| anyhow::Error::from(e).context(format!("cannot write {}", path.display())))
}

/// The policy set by `update` and not yet taken.
pub fn pending(record: &Record) -> Option<RestartPolicy> {
    let bytes = std::fs::read(record.dir.join(PENDING_POLICY)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Takes the pending policy into `state` (the caller saves it), and removes the file.
pub(super) fn adopt_pending(record: &Record, state: &mut super::State) {
    if let Some(policy) = pending(record) {
        state.restart_policy = policy;
    }
    let _ = std::fs::remove_file(record.dir.join(PENDING_POLICY));
}

/// Records that run number `run` (the restart count it led to) exited with `code`.
pub(super) fn record_exit(record: &Record, run: u32, code: i32) {
    let path = record.dir.join(EXITS);
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let mut lines: Vec<String> = old.lines().map(String::from).collect();
    lines.push(format!("{run} {code}"));
    let start = lines.len().saturating_sub(KEPT_EXITS);
    let text = lines[start..].join("\n") + "\n";
    let tmp = record.dir.join(format!("{EXITS}.tmp"));
    let _ = super::write_private(&tmp, text.as_bytes()).and_then(|_| std::fs::rename(&tmp, &path));
}

/// The exit code of run number `run`, if it ended in a restart.
pub fn exit_of_run(record: &Record, run: u32) -> Option<i32> {
    let text = std::fs::read_to_string(record.dir.join(EXITS)).ok()?;
    text.lines().find_map(|line| {
        let (n, code) = line.split_once(' ')?;
        (n.parse::<u32>().ok()? == run).then(|| code.parse().ok())?
    })
}

/// A user's `start` counts restarts from zero again (as Docker's).
pub(super) fn clear_exits(record: &Record) {
    let _ = std::fs::remove_file(record.dir.join(EXITS));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_in_dockers_spelling() {
        assert_eq!(RestartPolicy::parse("no").unwrap(), RestartPolicy::No);
        assert_eq!(
            RestartPolicy::parse("on-failure").unwrap(),
            RestartPolicy::OnFailure { max: 0 }
        );
        assert_eq!(
            RestartPolicy::parse("on-failure:3").unwrap(),
            RestartPolicy::OnFailure { max: 3 }
        );
        assert_eq!(
            RestartPolicy::parse("always").unwrap(),
            RestartPolicy::Always
        );
        assert_eq!(
            RestartPolicy::parse("unless-stopped").unwrap(),
            RestartPolicy::UnlessStopped
        );
        for bad in ["sometimes", "always:2", "on-failure:x", "on-failure:-1", ""] {
            assert!(RestartPolicy::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn on_failure_restarts_failures_up_to_max() {
        let policy = RestartPolicy::OnFailure { max: 2 };
        assert!(!policy.restarts_after(0, 0));
        assert!(policy.restarts_after(1, 0));
        assert!(policy.restarts_after(1, 1));
        assert!(!policy.restarts_after(1, 2));
        assert!(RestartPolicy::OnFailure { max: 0 }.restarts_after(1, 1000));
        assert!(RestartPolicy::Always.restarts_after(0, 1000));
        assert!(!RestartPolicy::No.restarts_after(1, 0));
    }

    #[test]
    fn boot_starts_what_docker_restarts_after_a_daemon_restart() {
        assert!(RestartPolicy::Always.starts_at_boot(true, 0, 0));
        assert!(RestartPolicy::UnlessStopped.starts_at_boot(false, 0, 0));
        assert!(!RestartPolicy::UnlessStopped.starts_at_boot(true, 137, 0));
        assert!(RestartPolicy::OnFailure { max: 0 }.starts_at_boot(false, 137, 0));
        assert!(!RestartPolicy::OnFailure { max: 0 }.starts_at_boot(false, 0, 0));
        assert!(!RestartPolicy::No.starts_at_boot(false, 137, 0));
    }

    #[test]
    fn the_delay_doubles_from_100_ms_and_starts_over_after_a_long_run() {
        let mut backoff = Backoff::default();
        let short = Duration::from_millis(5);
        let delays: Vec<u128> = (0..4)
            .map(|_| backoff.after_run(short).as_millis())
            .collect();
        assert_eq!(delays, [100, 200, 400, 800]);
        assert_eq!(backoff.after_run(RESET_AFTER).as_millis(), 100);
        assert_eq!(backoff.after_run(short).as_millis(), 200);
        for _ in 0..20 {
            backoff.after_run(short);
        }
        assert_eq!(backoff.after_run(short), MAX_DELAY);
    }
}
