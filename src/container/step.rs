//! One build step run as a container (`image build`'s RUN): the same record, spec,
//! runtime and isolation as a foreground `run --rm`, except that the container's upper
//! dir is handed to the caller (to become a layer) before the record is removed.

use std::path::Path;

use mycontainer_store::Store;

use super::run::{finish, prepare, record_failure, start_and_wait, RunInput};

/// How a step's container ended.
pub enum StepOutcome<T> {
    /// Exit 0: what `capture` made of the upper dir.
    Done(T),
    /// The command failed with this exit code (128+N for signal N); nothing captured.
    Failed(i32),
}

/// Runs `input` in the foreground (its output goes to ours) and, when it exits 0, calls
/// `capture` with its upper dir while the record is still locked. The record is always
/// removed afterwards (`auto_remove` is forced).
pub fn run_step<T>(
    store: &Store,
    mut input: RunInput,
    capture: impl FnOnce(&Path) -> anyhow::Result<T>,
) -> anyhow::Result<StepOutcome<T>> {
    input.auto_remove = true;
    let (record, mut state, spec) = prepare(store, &input, false)?;
    let result = start_and_wait(store, &record, &spec, false, &mut state);
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(err) => return Err(record_failure(store, &record, &mut state, err)),
    };
    if let Some(reason) = &outcome.exec_error {
        eprintln!("mycontainer: {reason}");
    }
    let captured = if outcome.exit_code == 0 && !outcome.oom_killed {
        capture(&record.upper_dir()).map(StepOutcome::Done)
    } else if outcome.oom_killed {
        Ok(StepOutcome::Failed(crate::exitcode::KILLED))
    } else {
        Ok(StepOutcome::Failed(outcome.exit_code))
    };
    finish(store, &record, &mut state)?;
    captured
}
