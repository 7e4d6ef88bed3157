//! Starting a container for another process to relay (the detached supervisor's small
//! binary, `mycontainer-supervisor`, which this process execs into): everything `run`
//! does up to the command's start, then the child, its stdio and its cgroup are left
//! as they are instead of being relayed and destroyed here. `finish_cgroup` is the other
//! end, once the container has exited: its OOM verdict, then its removal.

use std::os::fd::OwnedFd;

use anyhow::Context;
use oci_spec::runtime::Spec;

use super::cgroups::Cgroup;
use super::run::{start_relayed, RelayedInit, RelayedStart, RunRequest};

/// A started container, handed over: its init is our child (its parent-death signal
/// aims at this process, which execs rather than exits), its cgroup stays.
pub struct Handed {
    pub pid: i32,
    /// Our side of its stdio: output and errors (pipes), the pty master (`-t`), the
    /// stdin pipe (`-i` without `-t`, non-blocking).
    pub out: Option<OwnedFd>,
    pub err: Option<OwnedFd>,
    pub master: Option<OwnedFd>,
    pub stdin: Option<OwnedFd>,
}

/// How a handed-over start went.
pub enum Start {
    Running(Handed),
    /// The command could not be executed: Docker's code (126/127) and why; nothing is
    /// left (the child reaped, the cgroup removed).
    ExecFailed(i32, String),
}

/// Starts the container `req` describes (its log and stop timeout are the relaying
/// process's business); `on_started` gets the init's host pid once its command runs.
pub fn start(req: &RunRequest, on_started: &mut dyn FnMut(i32)) -> anyhow::Result<Start> {
    let RelayedInit {
        cgroup,
        child,
        master,
        setup,
    } = match start_relayed(req)? {
        RelayedStart::Running(init) => *init,
        RelayedStart::ExecFailed(code, reason) => return Ok(Start::ExecFailed(code, reason)),
    };
    cgroup.keep();
    let pid = child.detach();
    on_started(pid);
    let streams = setup.streams;
    Ok(Start::Running(Handed {
        pid,
        out: streams.out,
        err: streams.err,
        master,
        stdin: streams.stdin,
    }))
}

/// After a handed-over container exited: whether the OOM killer acted in its cgroup
/// (and the memory limit), then the cgroup removed. A cgroup already gone is no error.
pub fn finish_cgroup(spec: &Spec) -> anyhow::Result<(bool, Option<u64>)> {
    let name = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().clone())
        .context("the spec has no linux.cgroupsPath")?;
    let name = name.to_string_lossy().trim_start_matches('/').to_string();
    let Ok(cgroup) = Cgroup::open(&name) else {
        return Ok((false, None));
    };
    let verdict = (cgroup.oom_killed(), cgroup.memory_limit());
    cgroup
        .destroy()
        .with_context(|| format!("cannot remove cgroup {name}"))?;
    Ok(verdict)
}
