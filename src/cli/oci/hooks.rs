//! config.json hooks, each given the container's state JSON on its stdin and run within
//! its `timeout`:
//! - `prestart` and `createRuntime`, on the host by `create`, once the container's
//!   namespaces exist and its root filesystem is mounted, before its pivot_root (as
//!   runc); a failure fails `create`;
//! - `createContainer` next, inside the container, and `startContainer` inside it after
//!   `start`, before its command: run by the container's own process (see
//!   runtime/hooks.rs); a failure fails `create` or `start`;
//! - `poststart`, by `start` once the command is released; a failure is a warning;
//! - `poststop`, by `delete` once the container is gone; a failure is a warning.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use oci_spec::runtime::{Hook, Hooks};

/// Whether `create` has hooks to run (prestart, createRuntime, createContainer, or
/// startContainer, whose state is prepared then).
pub fn any_at_create(hooks: &Hooks) -> bool {
    [
        hooks.prestart(),
        hooks.create_runtime(),
        hooks.create_container(),
        hooks.start_container(),
    ]
    .iter()
    .any(|list| list.as_ref().is_some_and(|l| !l.is_empty()))
}

/// Runs `hooks` in order; the first failure stops and is the error.
pub fn run_all(point: &str, hooks: Option<&Vec<Hook>>, state: &[u8]) -> anyhow::Result<()> {
    for (index, hook) in hooks.into_iter().flatten().enumerate() {
        run_one(hook, state)
            .with_context(|| format!("{point} hook #{index} ({}) failed", hook.path().display()))?;
    }
    Ok(())
}

/// Runs every hook of `hooks`; failures are returned as warnings (poststart, poststop).
pub fn run_all_warn(point: &str, hooks: Option<&Vec<Hook>>, state: &[u8]) -> Vec<String> {
    let mut warnings = Vec::new();
    for (index, hook) in hooks.into_iter().flatten().enumerate() {
        if let Err(e) = run_one(hook, state) {
            warnings.push(format!(
                "{point} hook #{index} ({}) failed: {e:#}",
                hook.path().display()
            ));
        }
    }
    warnings
}

fn run_one(hook: &Hook, state: &[u8]) -> anyhow::Result<()> {
    let mut command = Command::new(hook.path());
    if let Some(args) = hook.args().as_ref().filter(|a| !a.is_empty()) {
        command.arg0(&args[0]).args(&args[1..]);
    }
    command.env_clear();
    for entry in hook.env().iter().flatten() {
        if let Some((key, value)) = entry.split_once('=') {
            command.env(key, value);
        }
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start it")?;
    // A hook that does not read its stdin gets EPIPE here: that is its business.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(state);
    }
    let mut stderr_pipe = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(pipe) = stderr_pipe.as_mut() {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    });
    let deadline = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let status = loop {
        if let Some(status) = child.try_wait().context("cannot wait for it")? {
            break status;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "it did not finish within its timeout of {}s",
                hook.timeout().unwrap_or(0)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let said = reader.join().unwrap_or_default();
    if !status.success() {
        let said = said.trim();
        if said.is_empty() {
            bail!("it exited with {status}");
        }
        bail!("it exited with {status}: {}", said.replace('\n', " "));
    }
    Ok(())
}
