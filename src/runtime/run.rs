//! `run`: the container's init. Prepares everything from the spec, creates the cgroup,
//! launches the init with its namespaces (`launch`), then relays it to its end
//! (`relay`). Every resource is held by a guard, so each failure path undoes what was
//! done (the container killed and reaped, the cgroup removed).

use std::path::Path;
use std::time::Duration;

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{bail, Context};
use oci_spec::runtime::Spec;

use super::cgroups::Cgroup;
use super::hooks::{self, ContainerHooks, HookStates};
use super::launch::{launch, Child, ChildSetup, Launched, Spawn, StdioMode};
use super::logfile::LogWriter;
use super::namespaces::{IdMaps, Namespaces};
use super::plan::Step;
use super::process::ExecTarget;
use super::relay::{supervise, BlockedSignals, Outcome, Streams};
use super::userns_join::JoinUser;
use super::{rootfs, security, ANNOTATION_INIT};
use nix::sys::signalfd::SignalFd;

/// What the caller asks of one run.
pub struct RunRequest<'a> {
    /// Directory holding config.json; `root.path` is relative to it.
    pub bundle: &'a Path,
    pub spec: &'a Spec,
    /// Keep stdin attached (`-i`).
    pub interactive: bool,
    pub log_path: Option<&'a Path>,
    /// Rotate the log (size and number of files).
    pub log_rotation: Option<super::logfile::Rotation>,
    /// After SIGTERM or SIGINT, how long to wait before SIGKILL.
    pub stop_timeout: Duration,
    /// Where compiled seccomp filters are cached (`<root>/cache`), if anywhere.
    pub cache_dir: Option<&'a Path>,
}

/// The cgroup, destroyed on drop unless destroyed explicitly (to see the error).
pub(super) struct CgroupGuard(Option<Cgroup>);

impl CgroupGuard {
    pub(super) fn get(&self) -> &Cgroup {
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
    /// removed now is said, and removing the record (rm, --rm, gc) tries again. True
    /// when it was removed.
    pub(super) fn destroy_or_warn(self) -> bool {
        let name = self.get().name().to_string();
        match self.destroy() {
            Ok(()) => true,
            Err(e) => {
                eprintln!("mycontainer: warning: cannot remove cgroup {name}: {e:#}");
                false
            }
        }
    }
}

impl CgroupGuard {
    /// The cgroup outlives us (`create`): the caller destroys it later.
    pub(super) fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        if let Some(cgroup) = self.0.take() {
            let _ = cgroup.destroy();
        }
    }
}

/// What `run` and `create` prepare the same way before the clone: the cgroup (with its
/// limits), the child's plan and the clone's namespaces.
pub(super) struct Prepared {
    pub(super) cgroup: CgroupGuard,
    pub(super) setup: ChildSetup,
    pub(super) ns: Namespaces,
    /// The namespaces joined by path, open until the child has joined them.
    pub(super) _joined: Vec<OwnedFd>,
    /// A pid namespace joined by path: the clone's thread enters it (`launch`).
    pub(super) pid_ns: Option<OwnedFd>,
    /// A new user namespace's maps.
    pub(super) id_maps: Option<IdMaps>,
}

pub(super) fn prepare(
    bundle: &Path,
    spec: &Spec,
    cache_dir: Option<&Path>,
    stdio: StdioMode,
) -> anyhow::Result<Prepared> {
    let ns = Namespaces::from_spec(spec)?;
    let id_maps = IdMaps::from_spec(spec, &ns)?;
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
    let prepared_security = security::prepare_with_cache(spec, cache_dir)?;
    let linux = spec.linux().as_ref();
    let cgroup_name = linux
        .and_then(|l| l.cgroups_path().clone())
        .context("the spec has no linux.cgroupsPath")?;
    let cgroup_name = cgroup_name
        .to_string_lossy()
        .trim_start_matches('/')
        .to_string();

    let cgroup = CgroupGuard(Some(
        Cgroup::create(&cgroup_name, linux.and_then(|l| l.resources().as_ref()))
            .with_context(|| format!("cannot create cgroup {cgroup_name}"))?,
    ));
    let mut steps = rootfs::plan(spec, bundle, &ns, &cgroup.get().view())?;
    // Joined first, before anything is mounted or named in them; the pid namespace by
    // the clone (see `launch`).
    let mut joined_fds = Vec::new();
    let mut pid_ns = None;
    let mut user_ns = None;
    for joined in Namespaces::joined(spec)? {
        let fd = joined.open()?;
        if joined.nstype == libc::CLONE_NEWPID {
            pid_ns = Some(fd);
            continue;
        }
        if joined.nstype == libc::CLONE_NEWUSER {
            user_ns = Some((fd, joined.path));
            continue;
        }
        steps.insert(
            joined_fds.len(),
            Step::Setns {
                fd: fd.as_raw_fd(),
                nstype: joined.nstype,
                kind: joined.kind,
            },
        );
        joined_fds.push(fd);
    }
    if id_maps.is_some() {
        // Nothing before the maps are written: every step needs the container's ids.
        steps.splice(0..0, [Step::AwaitCgroup, Step::BecomeNsRoot]);
    }
    let mut setup = ChildSetup::new(steps, terminal, stdio, user, exec, prepared_security)?;
    setup.plan.set_process_limits(process_spec);
    if let Some((user_fd, path)) = user_ns {
        // The child joins the pid namespace too, before the user namespace (see
        // userns_join.rs): the runtime's clone stays in its own.
        let join = JoinUser::prepare(spec, &ns, &path, &user_fd, pid_ns.as_ref())?;
        setup.plan.set_join_user(join);
        joined_fds.push(user_fd);
        joined_fds.extend(pid_ns.take());
    }
    let id_maps = id_maps.map(|mut maps| {
        maps.oom_score_adj = setup
            .plan
            .oom_score_adj
            .take()
            .map(|v| v.to_string_lossy().into_owned());
        maps
    });
    if init {
        setup.plan.init = Some(super::init::Title::prepare(&setup.plan.exec.argv)?);
    }
    Ok(Prepared {
        cgroup,
        setup,
        ns,
        _joined: joined_fds,
        pid_ns,
        id_maps,
    })
}

/// A relayed container's init, running: what `run` relays to its end and what the
/// handed-over start passes on to the small supervisor.
pub(super) struct RelayedInit {
    pub(super) cgroup: CgroupGuard,
    pub(super) child: Child,
    pub(super) master: Option<OwnedFd>,
    pub(super) setup: RelaySetup,
}

/// The parts of the child's setup that outlive the launch: the streams, the signalfd
/// and the blocked signals (unblocked when this is dropped).
pub(super) struct RelaySetup {
    pub(super) _blocked: BlockedSignals,
    pub(super) signal_fd: SignalFd,
    pub(super) streams: Streams,
}

/// How starting a relayed container went.
pub(super) enum RelayedStart {
    Running(Box<RelayedInit>),
    /// The command could not be executed: Docker's code (126/127) and why; the child is
    /// reaped and the cgroup removed.
    ExecFailed(i32, String),
}

/// Prepares and clones the container `req` describes with relayed stdio (the first half
/// of `run` and of the handed-over start): the namespaces joined by path are closed once
/// the child has joined them.
pub(super) fn start_relayed(req: &RunRequest) -> anyhow::Result<RelayedStart> {
    let Prepared {
        cgroup,
        setup,
        ns,
        _joined: joined,
        pid_ns,
        id_maps,
    } = prepare(
        req.bundle,
        req.spec,
        req.cache_dir,
        StdioMode::Relayed {
            interactive: req.interactive,
        },
    )?;
    let ChildSetup {
        _blocked,
        signal_fd,
        mut plan,
        channel,
        child_fds,
        streams,
    } = setup;
    let spawn = Spawn {
        flags: ns.spawn_flags(),
        cgroup_ns: ns.cgroup_by_spawn(),
        cgroup: cgroup.get(),
        what: "cannot clone the container's init with new namespaces",
        pid_ns: pid_ns.as_ref().map(|fd| fd.as_raw_fd()),
        on_hooks: None,
        id_maps: id_maps.as_ref(),
    };
    match launch(spawn, &mut plan, channel, child_fds)? {
        Launched::Started { child, master } => {
            // The child has joined them: the container's run does not need them open.
            drop(joined);
            drop(pid_ns);
            Ok(RelayedStart::Running(Box::new(RelayedInit {
                cgroup,
                child,
                master,
                setup: RelaySetup {
                    _blocked,
                    signal_fd,
                    streams,
                },
            })))
        }
        Launched::ExecFailed { code, reason } => {
            let _ = cgroup.destroy_or_warn();
            Ok(RelayedStart::ExecFailed(code, reason))
        }
    }
}

/// Runs the container described by `req` to completion. `on_started` gets the host pid
/// of the container's init once its command runs (the caller's state write then overlaps
/// with the command).
pub fn run(req: &RunRequest, on_started: &mut dyn FnMut(i32)) -> anyhow::Result<Outcome> {
    let mut log = req
        .log_path
        .map(|path| LogWriter::new(path).with_rotation(req.log_rotation));
    let RelayedInit {
        cgroup,
        mut child,
        master,
        mut setup,
    } = match start_relayed(req)? {
        RelayedStart::Running(init) => *init,
        RelayedStart::ExecFailed(code, reason) => {
            return Ok(Outcome {
                exit_code: code,
                exec_error: Some(reason),
                ..Default::default()
            })
        }
    };
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
    outcome.cgroup_removed = cgroup.destroy_or_warn();
    Ok(outcome)
}

/// What one `create` needs (the runtime CLI: runc's create/start split).
pub struct CreateRequest<'a> {
    /// Directory holding config.json; `root.path` is relative to it.
    pub bundle: &'a Path,
    pub spec: &'a Spec,
    pub cache_dir: Option<&'a Path>,
    /// The fifo `start` writes to (made by the caller, see `make_start_fifo`).
    pub start_fifo: &'a Path,
}

/// A created container: set up, waiting for `start`.
pub struct Created {
    /// Host pid of the container's init. It is no child of ours once we exit: it goes to
    /// our caller's subreaper (containerd's shim) or to init, which reaps it.
    pub pid: i32,
    /// The pty master, when the process asked for a terminal.
    pub console: Option<OwnedFd>,
}

/// Creates the fifo `start` releases a created container through (0600).
pub fn make_start_fifo(path: &Path) -> anyhow::Result<()> {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .with_context(|| format!("cannot create the start fifo {}", path.display()))
}

/// `create`: everything `run` does up to the container's execve, which waits for
/// `start` (`release`). The container's stdio is ours (or a pty whose master is
/// returned); its cgroup stays until the caller destroys it (`delete`). On failure
/// nothing is left (the child killed, the cgroup removed).
///
/// `on_hooks` (the runtime CLI, when config.json has hooks) is called with the
/// container's pid once its root filesystem is mounted, before pivot_root: it runs the
/// hooks of the runtime's namespace (prestart, createRuntime) and returns the state the
/// in-container hooks (createContainer there and then, startContainer after `start`)
/// get on their stdin (see hooks.rs).
pub fn create(
    req: &CreateRequest,
    on_hooks: Option<&mut dyn FnMut(i32) -> anyhow::Result<HookStates>>,
) -> anyhow::Result<Created> {
    let Prepared {
        cgroup,
        mut setup,
        ns,
        _joined,
        pid_ns,
        id_maps,
    } = prepare(req.bundle, req.spec, req.cache_dir, StdioMode::Inherited)?;
    let fifo = nix::fcntl::open(
        req.start_fifo,
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .with_context(|| format!("cannot open the start fifo {}", req.start_fifo.display()))?;
    setup.plan.wait_for_start(fifo.as_raw_fd());
    let mut writer = None;
    if on_hooks.is_some() {
        let hooks = ContainerHooks::prepare(req.spec, req.start_fifo)?;
        writer = Some(hooks.state_writer()?);
        setup.plan.set_hooks(hooks);
        let pivot = setup
            .plan
            .steps
            .iter()
            .position(|s| matches!(s, Step::PivotRoot { .. }))
            .context("the container's plan has no pivot_root")?;
        setup.plan.steps.insert(pivot, Step::ContainerHooks);
    }
    let mut hook_states = on_hooks.map(|on_hooks| {
        move |pid: libc::pid_t| -> anyhow::Result<()> {
            let states = on_hooks(pid)?;
            match &writer {
                Some(writer) => writer.write(&states),
                None => Ok(()),
            }
        }
    });
    let spawn = Spawn {
        flags: ns.spawn_flags(),
        cgroup_ns: ns.cgroup_by_spawn(),
        cgroup: cgroup.get(),
        what: "cannot clone the container's init with new namespaces",
        pid_ns: pid_ns.as_ref().map(|fd| fd.as_raw_fd()),
        on_hooks: hook_states
            .as_mut()
            .map(|f| f as &mut dyn FnMut(libc::pid_t) -> anyhow::Result<()>),
        id_maps: id_maps.as_ref(),
    };
    match launch(spawn, &mut setup.plan, setup.channel, setup.child_fds)? {
        Launched::Started { child, master } => {
            cgroup.keep();
            Ok(Created {
                pid: child.detach(),
                console: master,
            })
        }
        // Only after `start`: the child no longer reports it then.
        Launched::ExecFailed { reason, .. } => bail!("{reason}"),
    }
}

/// `start`: lets a created container go on to its execve (one byte on its start fifo,
/// which is then removed). A container that is gone fails with ENXIO (no reader).
///
/// With startContainer hooks (a hooks fifo next to the start fifo), waits until the
/// container tells how they went; `hook_paths` name them in the error.
pub fn release(start_fifo: &Path, hook_paths: &[std::path::PathBuf]) -> anyhow::Result<()> {
    use std::io::Write;
    let reply_path = hooks::reply_fifo(start_fifo);
    // Opened before the container can answer: its answer stays in the pipe for us.
    // Non-blocking to open (the container holds it read-write), blocking to read.
    let reply = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(&reply_path)
    {
        Ok(file) => {
            nix::fcntl::fcntl(
                &file,
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
            )
            .context("cannot make the hooks fifo blocking")?;
            Some(file)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => bail!("cannot open the hooks fifo {}: {e}", reply_path.display()),
    };
    let mut fifo = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(start_fifo)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENXIO) => anyhow::anyhow!("the container's process has exited"),
            _ => anyhow::anyhow!("cannot open the start fifo {}: {e}", start_fifo.display()),
        })?;
    fifo.write_all(b"s")
        .context("cannot write to the container's start fifo")?;
    std::fs::remove_file(start_fifo)
        .with_context(|| format!("cannot remove the start fifo {}", start_fifo.display()))?;
    if let Some(reply) = reply {
        let _ = std::fs::remove_file(&reply_path);
        hooks::read_start_outcome(reply, hook_paths)?;
    }
    Ok(())
}
