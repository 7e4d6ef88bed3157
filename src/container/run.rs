//! One foreground `run`: creates the record, writes its config.json and state, hands the
//! bundle to the runtime, records how it ended, and cleans up on every path.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use mycontainer_store::{Digest, Store};

use super::spec::{self, ImageDefaults, RootLayers, RunOptions};
use super::state::{now_unix, State, Status};
use crate::runtime::{self, RunRequest};

/// Exit code when the OOM killer struck, as Docker (128 + SIGKILL).
const EXIT_OOM: i32 = 137;

/// What `run` needs besides the flags.
pub struct RunInput {
    /// The image reference as given (for the state file).
    pub image: String,
    pub defaults: ImageDefaults,
    /// Unpacked layers, nearest (top) first.
    pub lowerdirs: Vec<PathBuf>,
    pub options: RunOptions,
    pub auto_remove: bool,
    pub interactive: bool,
    pub stop_timeout: Duration,
}

/// The directory where `-u NAME` is looked up: the topmost layer with an /etc/passwd.
fn passwd_root(lowerdirs: &[PathBuf]) -> PathBuf {
    lowerdirs
        .iter()
        .find(|d| d.join("etc/passwd").exists())
        .or(lowerdirs.first())
        .cloned()
        .unwrap_or_else(|| PathBuf::from("/nonexistent"))
}

fn human_bytes(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// Runs the container in the foreground and returns the exit code for the CLI.
pub fn run(root: &Path, input: RunInput) -> anyhow::Result<i32> {
    let record = super::create(root, input.options.name.as_deref())?;
    // The container keeps its image's layers alive: `image rm` and gc leave them alone
    // until the container is removed (delete_locked releases the hold).
    let held: Vec<Digest> = input
        .lowerdirs
        .iter()
        .filter_map(|dir| Digest::parse(dir.file_name()?.to_str()?).ok())
        .collect();
    if let Err(err) = Store::open(root).and_then(|store| store.hold_layers(&record.id, &held)) {
        let _ = super::discard(root, &record, Some(&record.name));
        return Err(err).context("cannot record the layers this container uses");
    }
    let name = Some(record.name.clone());
    let mut state = State {
        id: record.id.clone(),
        name: name.clone(),
        image: input.image.clone(),
        command: Vec::new(),
        status: Status::Created,
        pid: None,
        exit_code: None,
        oom_killed: false,
        error: None,
        auto_remove: input.auto_remove,
        created_at: now_unix(),
        started_at: None,
        finished_at: None,
    };
    let result = start_and_wait(root, &record, &input, &mut state);
    let finish = |state: &mut State| -> anyhow::Result<()> {
        if input.auto_remove {
            super::discard(root, &record, name.as_deref())
        } else {
            state.status = Status::Exited;
            state.pid = None;
            state.finished_at = Some(now_unix());
            record.save_state(state)
        }
    };
    match result {
        Ok(outcome) => {
            state.exit_code = Some(outcome.exit_code);
            state.oom_killed = outcome.oom_killed;
            state.error = outcome.exec_error.clone();
            finish(&mut state)?;
            let label = &record.name;
            if let Some(reason) = &outcome.exec_error {
                eprintln!("mycontainer: {reason}");
            }
            if outcome.oom_killed {
                let limit = outcome
                    .memory_limit
                    .map(|l| format!(" (limit {})", human_bytes(l)))
                    .unwrap_or_default();
                eprintln!("mycontainer: container {label} was killed: out of memory{limit}");
                return Ok(EXIT_OOM);
            }
            if outcome.killed_after_timeout {
                eprintln!(
                    "mycontainer: container {label} did not stop within {}s: killed",
                    input.stop_timeout.as_secs()
                );
            }
            Ok(outcome.exit_code)
        }
        Err(err) => {
            state.exit_code = Some(crate::cli::EXIT_RUNTIME_FAILED);
            state.error = Some(format!("{err:#}"));
            // The setup error is what the user needs to see; a cleanup error is secondary.
            if let Err(cleanup) = finish(&mut state) {
                eprintln!("mycontainer: {cleanup:#}");
            }
            Err(err)
        }
    }
}

fn start_and_wait(
    root: &Path,
    record: &super::Record,
    input: &RunInput,
    state: &mut State,
) -> anyhow::Result<runtime::Outcome> {
    let layers = RootLayers {
        lowerdirs: input.lowerdirs.clone(),
        upperdir: record.upper_dir(),
        workdir: record.work_dir(),
    };
    let built = spec::build(
        &record.id,
        &record.dir,
        &input.defaults,
        &input.options,
        &layers,
        &passwd_root(&input.lowerdirs),
    )?;
    state.command = built.args.clone();
    built
        .spec
        .save(record.config_path())
        .with_context(|| format!("cannot write {}", record.config_path().display()))?;
    record.save_state(state)?;
    let log_path = record.log_path();
    let cache_dir = root.join("cache");
    let request = RunRequest {
        bundle: &record.dir,
        spec: &built.spec,
        interactive: input.interactive,
        log_path: Some(&log_path),
        stop_timeout: input.stop_timeout,
        cache_dir: Some(&cache_dir),
    };
    let mut on_started = |pid: i32| {
        state.status = Status::Running;
        state.pid = Some(pid);
        state.started_at = Some(now_unix());
        // The lock, not this file, is what marks the record as alive; a failed write
        // only makes `ps` less precise.
        let _ = record.save_state(state);
    };
    runtime::run(&request, &mut on_started)
}
