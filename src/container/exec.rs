//! `exec`: the container's spec with its process replaced by the exec'd command, handed
//! to the runtime while the container runs.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use oci_spec::runtime::{Spec, UserBuilder};

use super::env::merge_env;
use super::record::Record;
use super::state::Status;
use super::user;
use crate::runtime::{self, ExecRequest};

/// The flags of one exec.
pub struct ExecOptions {
    pub command: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub tty: bool,
    pub interactive: bool,
}

/// The process of the exec: the container's, with the flags applied. A different user
/// gets the capabilities as `run` gives them: the bounding set for root, none otherwise.
fn exec_spec(mut spec: Spec, opts: &ExecOptions, rootfs: &Path) -> anyhow::Result<Spec> {
    let mut process = spec
        .process()
        .clone()
        .context("the container's spec has no process")?;
    process.set_args(Some(opts.command.clone()));
    let base = process.env().clone().unwrap_or_default();
    // Docker: `exec -t` gives TERM=xterm unless the container's env or -e sets TERM.
    let term: Vec<String> = if opts.tty {
        vec!["TERM=xterm".into()]
    } else {
        Vec::new()
    };
    let mut env = merge_env(&[
        ("exec -t", &term),
        ("the container's spec", &base),
        ("-e", &opts.env),
    ])?;
    if let Some(dir) = &opts.workdir {
        if !dir.starts_with('/') {
            bail!("invalid working directory {dir:?}: it must be an absolute path (-w)");
        }
        process.set_cwd(PathBuf::from(dir));
    }
    if let Some(spec_user) = &opts.user {
        let resolved = user::resolve(rootfs, spec_user)
            .with_context(|| format!("cannot resolve user {spec_user:?} (-u) in the container"))?;
        process.set_user(
            UserBuilder::default()
                .uid(resolved.uid)
                .gid(resolved.gid)
                .additional_gids(resolved.groups_with_primary())
                .build()?,
        );
        if !opts.env.iter().any(|e| e.starts_with("HOME=")) {
            let home = resolved.home.clone().unwrap_or_else(|| {
                if resolved.uid == 0 {
                    "/root".into()
                } else {
                    "/".into()
                }
            });
            env.retain(|e| !e.starts_with("HOME="));
            env.push(format!("HOME={home}"));
        }
        if let Some(mut caps) = process.capabilities().clone() {
            let granted = if resolved.uid == 0 {
                caps.bounding().clone().unwrap_or_default()
            } else {
                HashSet::new()
            };
            caps.set_effective(Some(granted.clone()));
            caps.set_permitted(Some(granted));
            // Empty, as for run (CVE-2022-24769; see spec::process::capabilities).
            caps.set_inheritable(Some(HashSet::new()));
            caps.set_ambient(Some(HashSet::new()));
            process.set_capabilities(Some(caps));
        }
    }
    process.set_env(Some(env));
    process.set_terminal(Some(opts.tty));
    spec.set_process(Some(process));
    Ok(spec)
}

/// The container to exec into is not running (the CLI exits 1 for it, as Docker).
#[derive(Debug, thiserror::Error)]
#[error("container {name} is not running: start it first (mycontainer start {name})")]
pub struct NotRunning {
    pub name: String,
}

/// Runs the command in the running container; returns its exit code.
pub fn exec(root: &Path, record: &Record, opts: &ExecOptions) -> anyhow::Result<i32> {
    let state = record.load_state()?;
    let pid = match state.pid {
        Some(pid) if state.status == Status::Running && record.is_supervised() => pid,
        _ => {
            return Err(NotRunning {
                name: record.display_name(),
            }
            .into())
        }
    };
    if super::pause::is_paused(record, &state) {
        // A process joining a frozen cgroup would freeze before it started.
        return Err(super::pause::Paused {
            name: record.display_name(),
        }
        .into());
    }
    let spec = Spec::load(record.config_path())
        .with_context(|| format!("cannot read {}", record.config_path().display()))?;
    // The container's own view of its files, upper dir included, for `-u NAME`.
    let rootfs = PathBuf::from(format!("/proc/{pid}/root"));
    let spec = exec_spec(spec, opts, &rootfs)?;
    let cache_dir = root.join("cache");
    let outcome = runtime::exec(&ExecRequest {
        spec: &spec,
        init_pid: pid,
        interactive: opts.interactive,
        cache_dir: Some(&cache_dir),
    })?;
    if let Some(reason) = &outcome.exec_error {
        eprintln!("mycontainer: {reason}");
        // As Docker: an exec whose command cannot be started (not found or not
        // executable) is 126, "exec failed" (run keeps 127 for a missing command).
        return Ok(crate::exitcode::CANNOT_EXECUTE);
    }
    Ok(outcome.exit_code)
}
