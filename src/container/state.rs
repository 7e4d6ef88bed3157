//! `state.json`: what a container is doing, replaced atomically (temp file + rename).

use std::fs;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Lifecycle of a container record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The record exists and its CLI is setting it up.
    Created,
    /// The container's process runs, supervised by the CLI holding the record's lock.
    Running,
    /// The container stopped; `exit_code` says how.
    Exited,
}

/// The content of `<root>/containers/<id>/state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub id: String,
    pub name: Option<String>,
    pub image: String,
    pub command: Vec<String>,
    /// How many leading words of `command` are the entrypoint (`commit` gives the new
    /// image this Entrypoint and the rest as its Cmd, as Docker does).
    #[serde(default)]
    pub entrypoint_len: usize,
    pub status: Status,
    /// Host pid of the container's init while it runs.
    pub pid: Option<i32>,
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub oom_killed: bool,
    /// Why the container could not run (setup failure, CLI killed).
    pub error: Option<String>,
    /// Remove the record when the container stops (`--rm`).
    pub auto_remove: bool,
    /// Unix seconds.
    pub created_at: u64,
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    /// The image's config digest (`sha256:...`) when it came from the store: what
    /// `commit` builds on. None for `--rootfs` runs.
    #[serde(default)]
    pub image_id: Option<String>,
    /// Seconds between SIGTERM and SIGKILL for the supervisor and `stop`.
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout: u64,
    /// What `stop` sends first (`--stop-signal`, the image's STOPSIGNAL; SIGTERM).
    #[serde(default = "default_stop_signal")]
    pub stop_signal: i32,
    /// `--restart`, carried out by the detached supervisor.
    #[serde(default)]
    pub restart_policy: super::restart::RestartPolicy,
    /// How many times the supervisor restarted the container.
    #[serde(default)]
    pub restart_count: u32,
    /// Exited, and the supervisor waits to start it again.
    #[serde(default)]
    pub restarting: bool,
    /// The healthcheck the supervisor runs (flags over the image's HEALTHCHECK).
    #[serde(default)]
    pub healthcheck: Option<super::health::HealthConfig>,
    /// Log rotation (`--log-opt max-size=, max-file=`; on by default).
    #[serde(default)]
    pub log_opts: LogOpts,
    /// `-i`: the container's stdin stays open, fed by attached clients (Docker's
    /// Config.OpenStdin).
    #[serde(default)]
    pub open_stdin: bool,
}

fn default_stop_signal() -> i32 {
    libc::SIGTERM
}

/// When the log rotates and how many files are kept (Docker's json-file options; on by
/// default here: 10 MiB, 3 files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogOpts {
    pub max_size: u64,
    pub max_files: u32,
}

impl Default for LogOpts {
    fn default() -> LogOpts {
        LogOpts {
            max_size: 10 << 20,
            max_files: 3,
        }
    }
}

impl LogOpts {
    /// Parses `--log-opt KEY=VALUE` (max-size=10m, max-file=3) over the defaults.
    pub fn parse(options: &[String]) -> anyhow::Result<LogOpts> {
        let mut opts = LogOpts::default();
        for option in options {
            let Some((key, value)) = option.split_once('=') else {
                anyhow::bail!("invalid --log-opt {option:?}: use KEY=VALUE, as max-size=10m");
            };
            match key {
                "max-size" => {
                    opts.max_size = super::limits::parse_size("--log-opt max-size", value)? as u64
                }
                "max-file" => {
                    opts.max_files = value.parse().ok().filter(|n| *n >= 1).with_context(|| {
                        format!(
                            "invalid --log-opt max-file={value}: use a number of files, at least 1"
                        )
                    })?
                }
                _ => anyhow::bail!(
                    "unknown --log-opt {key:?}: mycontainer knows max-size and max-file"
                ),
            }
        }
        Ok(opts)
    }
}

fn default_stop_timeout() -> u64 {
    10
}

impl State {
    pub fn load(path: &Path) -> anyhow::Result<State> {
        let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is corrupt: remove the container", path.display()))
    }

    /// Writes the state next to `path` and renames it into place, so readers see the old
    /// or the new state, never a torn one. `durable` adds an fsync (skipped for `--rm`
    /// records, which vanish anyway).
    ///
    /// A state other than "exited" is saved after the record's live marker is made, and
    /// an "exited" one before it is dropped (see `rundir`: reclaim looks only at marked
    /// records).
    pub fn save(&self, path: &Path, durable: bool) -> anyhow::Result<()> {
        let record = path.parent().unwrap_or(path);
        let root = super::paths::root_of_record(record);
        let id = record
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if self.status != Status::Exited {
            super::rundir::mark_live(root, &id)?;
        }
        self.write(path, durable)?;
        if self.status == Status::Exited {
            super::rundir::unmark_live(root, &id)?;
        }
        Ok(())
    }

    fn write(&self, path: &Path, durable: bool) -> anyhow::Result<()> {
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(self)?;
        let written = super::write_private(&tmp, &bytes)
            .with_context(|| format!("cannot write {}", tmp.display()))
            .and_then(|file| {
                if durable {
                    file.sync_all()
                        .with_context(|| format!("cannot sync {}", tmp.display()))?;
                }
                fs::rename(&tmp, path)
                    .with_context(|| format!("cannot rename {} into place", tmp.display()))
            });
        // A failed write (a full disk) leaves no half-written file beside the state.
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
    }
}

/// Seconds since the epoch, for the state's times.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
impl State {
    /// A state for unit tests: container `id` ran busybox `true` (created at 1, started
    /// at 2), `status`, no pid, no exit code, no policy; tests set what they need.
    pub fn for_test(id: &str, status: Status) -> State {
        State {
            id: id.into(),
            name: None,
            image: "busybox".into(),
            command: vec!["true".into()],
            entrypoint_len: 0,
            status,
            pid: None,
            exit_code: None,
            oom_killed: false,
            error: None,
            auto_remove: false,
            created_at: 1,
            started_at: Some(2),
            finished_at: None,
            image_id: None,
            stop_timeout: 10,
            stop_signal: libc::SIGTERM,
            restart_policy: Default::default(),
            restart_count: 0,
            restarting: false,
            healthcheck: None,
            log_opts: LogOpts::default(),
            open_stdin: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_load_round_trips_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let state = State {
            name: Some("web".into()),
            exit_code: Some(3),
            finished_at: Some(3),
            ..State::for_test("abc", Status::Exited)
        };
        state.save(&path, true).unwrap();
        let back = State::load(&path).unwrap();
        assert_eq!(back.exit_code, Some(3));
        assert_eq!(back.status, Status::Exited);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn log_options_default_to_rotation_and_are_checked() {
        assert_eq!(LogOpts::parse(&[]).unwrap(), LogOpts::default());
        let opts = LogOpts::parse(&["max-size=1m".into(), "max-file=5".into()]).unwrap();
        assert_eq!((opts.max_size, opts.max_files), (1 << 20, 5));
        for bad in [
            "max-size",
            "max-file=0",
            "max-size=huge",
            "mode=non-blocking",
        ] {
            assert!(LogOpts::parse(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
