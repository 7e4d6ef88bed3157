//! `run`: the container's init. Prepares everything from the spec, creates the cgroup,
//! launches the init with its namespaces (`launch`), then relays it to its end
//! (`relay`). Every resource is held by a guard, so each failure path undoes what was
//! done (the container killed and reaped, the cgroup removed).

use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use oci_spec::runtime::Spec;

use super::cgroups::Cgroup;
use super::launch::{launch, ChildSetup, Launched, Spawn};
use super::logfile::LogWriter;
use super::namespaces::Namespaces;
use super::plan::Step;
use super::process::ExecTarget;
use super::relay::{supervise, Outcome};
use super::{rootfs, security, ANNOTATION_INIT};

/// What the caller asks of one run.
pub struct RunRequest<'a> {
    /// Directory holding config.json; `root.path` is relative to it.
    pub bundle: &'a Path,
    pub spec: &'a Spec,
    /// Keep stdin attached (`-i`).
    pub interactive: bool,
    pub log_path: Option<&'a Path>,
    /// After SIGTERM or SIGINT, how long to wait before SIGKILL.
    pub stop_timeout: Duration,
    /// Where compiled seccomp filters are cached (`<root>/cache`), if anywhere.
    pub cache_dir: Option<&'a Path>,
}

/// The cgroup, destroyed on drop unless destroyed explicitly (to see the error).
struct CgroupGuard(Option<Cgroup>);

impl CgroupGuard {
    fn get(&self) -> &Cgroup {
        self.0.as_ref().expect("cgroup guard used after destroy")
    }
    fn destroy(mut self) -> anyhow::Result<()> {
        match self.0.take() {
            Some(cgroup) => cgroup.destroy(),
            None => Ok(()),
        }
    }
}

impl CgroupGuard {
    /// After the command ran, its exit code stays the result: a cgroup that cannot be
    /// removed now is said, and removing the record (rm, --rm, gc) tries again.
    fn destroy_or_warn(self) {
        let name = self.get().name().to_string();
        if let Err(e) = self.destroy() {
            eprintln!("mycontainer: warning: cannot remove cgroup {name}: {e:#}");
        }
    }
}

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        if let Some(cgroup) = self.0.take() {
            let _ = cgroup.destroy();
        }
    }
}

/// Runs the container described by `req` to completion. `on_started` gets the host pid
/// of the container's init once its command runs (the caller's state write then overlaps
/// with the command).
pub fn run(req: &RunRequest, on_started: &mut dyn FnMut(i32)) -> anyhow::Result<Outcome> {
    let spec = req.spec;
    let ns = Namespaces::from_spec(spec)?;
    let process_spec = spec.process().as_ref().context("the spec has no process")?;
    let exec = ExecTarget::new(
        &process_spec.args().clone().unwrap_or_default(),
        &process_spec.env().clone().unwrap_or_default(),
    )?;
    let terminal = process_spec.terminal().unwrap_or(false);
    let user = process_spec.user();
    let init = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_INIT))
        .is_some_and(|v| v == "true");
    let prepared_security = security::prepare_with_cache(spec, req.cache_dir)?;
    let linux = spec.linux().as_ref();
    let cgroup_name = linux
        .and_then(|l| l.cgroups_path().clone())
        .context("the spec has no linux.cgroupsPath")?;
    let cgroup_name = cgroup_name
        .to_string_lossy()
        .trim_start_matches('/')
        .to_string();

    let mut log = req.log_path.map(LogWriter::new);
    let cgroup = CgroupGuard(Some(
        Cgroup::create(&cgroup_name, linux.and_then(|l| l.resources().as_ref()))
            .with_context(|| format!("cannot create cgroup {cgroup_name}"))?,
    ));
    let mut steps = rootfs::plan(spec, req.bundle, &ns, &cgroup.get().view())?;
    // A network namespace prepared by the caller is joined first of all: before /sys
    // is mounted (it shows the devices of its mounter's namespace). The descriptor is
    // held until the child has joined it.
    let net_fd = match &ns.net_path {
        Some(path) => {
            let fd = std::fs::File::open(path)
                .with_context(|| format!("cannot open the network namespace {}", path.display()))?;
            steps.insert(
                0,
                Step::Setns {
                    fd: fd.as_raw_fd(),
                    nstype: libc::CLONE_NEWNET,
                    kind: "network",
                },
            );
            Some(fd)
        }
        None => None,
    };
    let mut setup = ChildSetup::new(
        steps,
        terminal,
        req.interactive,
        user,
        exec,
        prepared_security,
    )?;
    if init {
        setup.plan.init = Some(super::init::Title::prepare(&setup.plan.exec.argv)?);
    }
    let spawn = Spawn {
        flags: ns.clone_flags(),
        cgroup_ns: ns.cgroup,
        cgroup: cgroup.get(),
        what: "cannot clone the container's init with new namespaces",
    };
    let (mut child, master) = match launch(spawn, &mut setup.plan, setup.channel, setup.child_fds)?
    {
        Launched::Started { child, master } => (child, master),
        Launched::ExecFailed { code, reason } => {
            cgroup.destroy_or_warn();
            return Ok(Outcome {
                exit_code: code,
                exec_error: Some(reason),
                ..Default::default()
            });
        }
    };
    drop(net_fd);
    on_started(child.pid);

    setup.streams.master = master;
    let mut outcome = supervise(
        &mut child,
        &setup.signal_fd,
        setup.streams,
        &mut log,
        req.stop_timeout,
    );
    outcome.oom_killed = cgroup.get().oom_killed();
    outcome.memory_limit = cgroup.get().memory_limit();
    cgroup.destroy_or_warn();
    Ok(outcome)
}
