//! The runtime CLI's verbs over `runtime::create`/`release` and the record in
//! `state.rs`. Nothing supervises a container between commands: after `create` its
//! process belongs to our caller (containerd's shim is a subreaper and reaps it), and
//! every verb reads its status from the process itself.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use nix::errno::Errno;
use nix::sys::signal::{kill as send_signal, SigSet, Signal};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, Spec};

use super::cgroup_path;
use super::hooks;
use super::lock::Lock;
use super::log::Logger;
use super::state::{self, Record, Status};
use super::{CreateArgs, Format, KillArgs, ListArgs, PsArgs, RunArgs};
use crate::runtime::{self, cgroups::Cgroup};

pub struct Ctx<'a> {
    pub root: PathBuf,
    pub logger: &'a Logger,
    /// `--systemd-cgroup`: cgroupsPath is `slice:prefix:name` (see cgroup_path.rs).
    pub systemd_cgroup: bool,
}

/// `create`: the container set up and waiting for `start`, its record written, its pid
/// in `--pid-file`. Whatever fails leaves nothing behind.
pub fn create(ctx: &Ctx, args: &CreateArgs) -> anyhow::Result<Record> {
    let _lock = Lock::take(&ctx.root, &args.id)?;
    if args.preserve_fds > 0 {
        bail!("--preserve-fds is not supported: pass the descriptors as stdio instead");
    }
    let bundle = std::fs::canonicalize(&args.bundle)
        .with_context(|| format!("cannot open the bundle {}", args.bundle.display()))?;
    let config = bundle.join("config.json");
    let mut spec = Spec::load(&config)
        .map_err(|e| anyhow::anyhow!("cannot load {}: {e}", config.display()))?;
    let terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    match (terminal, &args.console_socket) {
        (true, None) => bail!(
            "the process asks for a terminal (process.terminal): pass --console-socket to \
             receive it"
        ),
        (false, Some(_)) => bail!(
            "--console-socket needs a process with a terminal: set process.terminal in \
             config.json"
        ),
        _ => {}
    }
    for warning in unsupported(&spec) {
        ctx.logger.warn(&warning);
    }
    let mut linux = spec.linux().clone().unwrap_or_default();
    let asked = linux
        .cgroups_path()
        .as_ref()
        .map(|p| p.to_string_lossy().into_owned());
    let cgroup = cgroup_path::resolve(asked.as_deref(), ctx.systemd_cgroup, &args.id)?;
    let cgroup_parents = runtime::cgroups::missing_parents(&cgroup)?;
    linux.set_cgroups_path(Some(PathBuf::from(&cgroup)));
    let mut resources = linux.resources().clone().unwrap_or_default();
    let mut devices = resources.devices().clone().unwrap_or_default();
    devices.extend(default_allowed_devices());
    resources.set_devices(Some(devices));
    linux.set_resources(Some(resources));
    spec.set_linux(Some(linux));
    let root_path = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .context("config.json has no root")?;

    let dir = state::make_container_dir(&ctx.root, &args.id)?;
    let mut record = Record {
        id: args.id.clone(),
        pid: 0,
        start_time: 0,
        bundle: bundle.clone(),
        rootfs: bundle.join(root_path),
        created: crate::timefmt::now(),
        annotations: spec
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        cgroup,
        cgroup_parents,
        hooks: spec.hooks().clone(),
    };
    let result = create_in(ctx, args, &spec, &mut record);
    if result.is_err() {
        if record.pid > 0 {
            let _ = send_signal(Pid::from_raw(record.pid), Signal::SIGKILL);
        }
        if let Ok(cgroup) = Cgroup::open(&record.cgroup) {
            let _ = cgroup.destroy();
        }
        runtime::cgroups::remove_parents(&record.cgroup_parents);
        let _ = std::fs::remove_dir_all(&dir);
    }
    result.map(|()| record)
}

fn create_in(ctx: &Ctx, args: &CreateArgs, spec: &Spec, record: &mut Record) -> anyhow::Result<()> {
    record.save(&ctx.root)?;
    let fifo = record.start_fifo(&ctx.root);
    runtime::make_start_fifo(&fifo)?;
    let hooks = record.hooks.clone().filter(hooks::any_at_create);
    let mut run_hooks = hooks.as_ref().map(|hooks| {
        let record = &*record;
        move |pid: i32| -> anyhow::Result<runtime::HookStates> {
            let state = |status| {
                let mut at = record.clone();
                at.pid = pid;
                serde_json::to_vec(&at.oci_state_as(status))
            };
            let creating = state(Status::Creating)?;
            hooks::run_all("prestart", hooks.prestart().as_ref(), &creating)?;
            hooks::run_all("createRuntime", hooks.create_runtime().as_ref(), &creating)?;
            Ok(runtime::HookStates {
                create_container: creating,
                start_container: state(Status::Created)?,
            })
        }
    });
    let created = runtime::create(
        &runtime::CreateRequest {
            bundle: &record.bundle,
            spec,
            cache_dir: Some(&ctx.root.join("cache")),
            start_fifo: &fifo,
        },
        run_hooks
            .as_mut()
            .map(|f| f as &mut dyn FnMut(i32) -> anyhow::Result<runtime::HookStates>),
    )?;
    record.pid = created.pid;
    record.start_time = state::proc_stat(created.pid)
        .map(|(_, start)| start)
        .context("the container's process exited during create")?;
    if let (Some(master), Some(socket)) = (created.console, &args.console_socket) {
        send_console(socket, master)?;
    }
    record.save(&ctx.root)?;
    if let Some(pid_file) = &args.pid_file {
        let pid_file = std::path::absolute(pid_file)
            .with_context(|| format!("cannot resolve {}", pid_file.display()))?;
        state::write_atomic(&pid_file, created.pid.to_string().as_bytes())?;
    }
    Ok(())
}

/// The devices every container may use whatever its device rules say, appended after
/// them as runc does (a bundle from `spec` denies all): null, zero, full, random,
/// urandom, tty, console, ptmx, the pty slaves and /dev/net/tun.
fn default_allowed_devices() -> Vec<LinuxDeviceCgroup> {
    let char_device = |major: i64, minor: Option<i64>| {
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(true);
        rule.set_typ(Some(LinuxDeviceType::C));
        rule.set_major(Some(major));
        rule.set_minor(minor);
        rule.set_access(Some("rwm".to_string()));
        rule
    };
    vec![
        char_device(1, Some(3)),
        char_device(1, Some(5)),
        char_device(1, Some(7)),
        char_device(1, Some(8)),
        char_device(1, Some(9)),
        char_device(5, Some(0)),
        char_device(5, Some(1)),
        char_device(5, Some(2)),
        char_device(136, None),
        char_device(10, Some(200)),
    ]
}

/// What config.json asks for that this runtime does not do, said rather than ignored.
fn unsupported(spec: &Spec) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(process) = spec.process() {
        if process.apparmor_profile().is_some() {
            warnings.push("process.apparmorProfile is ignored (no AppArmor here)".into());
        }
        if process.selinux_label().is_some() {
            warnings.push("process.selinuxLabel is ignored (no SELinux here)".into());
        }
    }
    warnings
}

/// Hands the pty master to whoever listens on `socket` (SCM_RIGHTS), as runc does.
pub(super) fn send_console(socket: &Path, master: OwnedFd) -> anyhow::Result<()> {
    let stream = UnixStream::connect(socket)
        .with_context(|| format!("cannot connect to the console socket {}", socket.display()))?;
    let fds = [master.as_raw_fd()];
    let name = b"/dev/ptmx";
    sendmsg::<()>(
        stream.as_raw_fd(),
        &[IoSlice::new(name)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .with_context(|| format!("cannot send the pty to {}", socket.display()))?;
    Ok(())
}

pub fn start(ctx: &Ctx, id: &str) -> anyhow::Result<()> {
    let _lock = Lock::take(&ctx.root, id)?;
    let record = Record::load(&ctx.root, id)?;
    match record.status(&ctx.root) {
        Status::Created => {
            let start_hooks: Vec<PathBuf> = record
                .hooks
                .as_ref()
                .and_then(|h| h.start_container().clone())
                .unwrap_or_default()
                .iter()
                .map(|h| h.path().clone())
                .collect();
            runtime::release(&record.start_fifo(&ctx.root), &start_hooks)
                .with_context(|| format!("cannot start container {id}"))?;
            if let Some(hooks) = &record.hooks {
                let state = serde_json::to_vec(&record.oci_state_as(Status::Running))?;
                for warning in hooks::run_all_warn("poststart", hooks.poststart().as_ref(), &state)
                {
                    ctx.logger.warn(&warning);
                }
            }
            Ok(())
        }
        Status::Creating => bail!("cannot start container {id}: it is still being created"),
        Status::Running | Status::Paused => {
            bail!("cannot start container {id}: it is already running")
        }
        Status::Stopped => {
            bail!("cannot start container {id}: it has stopped (delete it and create it again)")
        }
    }
}

pub fn state(ctx: &Ctx, id: &str) -> anyhow::Result<()> {
    let record = Record::load(&ctx.root, id)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&record.oci_state(&ctx.root))?
    );
    Ok(())
}

/// `KILL`, `SIGKILL`, `kill` or `9`.
fn parse_signal(text: &str) -> anyhow::Result<Signal> {
    if let Ok(number) = text.parse::<i32>() {
        return Signal::try_from(number)
            .map_err(|_| anyhow::anyhow!("invalid signal {text:?}: no signal has that number"));
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>()
        .map_err(|_| anyhow::anyhow!("invalid signal {text:?}: use a name like TERM or a number"))
}

/// The wording containerd's shim recognises ("container not running") for a
/// container whose process is gone.
fn not_running(id: &str) -> anyhow::Error {
    anyhow::anyhow!("cannot signal container {id}: container not running")
}

pub fn kill(ctx: &Ctx, args: &KillArgs) -> anyhow::Result<()> {
    let signal = parse_signal(&args.signal)?;
    let _lock = Lock::take(&ctx.root, &args.id)?;
    let record = Record::load(&ctx.root, &args.id)?;
    if matches!(record.status(&ctx.root), Status::Stopped | Status::Creating) && !args.all {
        return Err(not_running(&args.id));
    }
    if args.all {
        let cgroup = Cgroup::open(&record.cgroup)?;
        for pid in cgroup.pids() {
            // A process may exit meanwhile: that is what was asked.
            let _ = send_signal(Pid::from_raw(pid), signal);
        }
        return Ok(());
    }
    match send_signal(Pid::from_raw(record.pid), signal) {
        Ok(()) => Ok(()),
        Err(Errno::ESRCH) => Err(not_running(&args.id)),
        Err(e) => Err(e).with_context(|| format!("cannot signal container {}", args.id)),
    }
}

pub fn delete(ctx: &Ctx, id: &str, force: bool) -> anyhow::Result<()> {
    let _lock = Lock::take(&ctx.root, id)?;
    let dir = state::container_dir(&ctx.root, id);
    let record = match Record::load(&ctx.root, id) {
        Ok(record) => record,
        // An aborted create may have left a directory without a state file.
        Err(_) if force || dir.exists() && !dir.join(state::STATE_FILE).exists() => {
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("cannot remove {}", dir.display()))?;
            }
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let status = record.status(&ctx.root);
    if matches!(status, Status::Running | Status::Paused | Status::Creating) && !force {
        bail!(
            "cannot delete container {id}: it is {}: stop it first, or use --force",
            status.as_str()
        );
    }
    if status == Status::Paused {
        // Thawed first, so that nothing is left frozen in the middle of dying.
        let _ = Cgroup::open(&record.cgroup).and_then(|c| c.thaw());
    }
    if record.alive() {
        let _ = send_signal(Pid::from_raw(record.pid), Signal::SIGKILL);
    }
    // Kills whatever is left in the cgroup and waits until it is empty.
    Cgroup::open(&record.cgroup)
        .and_then(|cgroup| cgroup.destroy())
        .with_context(|| format!("cannot remove the cgroup of container {id}"))?;
    runtime::cgroups::remove_parents(&record.cgroup_parents);
    if let Some(hooks) = &record.hooks {
        let state = serde_json::to_vec(&record.oci_state_as(Status::Stopped))?;
        for warning in hooks::run_all_warn("poststop", hooks.poststop().as_ref(), &state) {
            ctx.logger.warn(&warning);
        }
    }
    std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))
}

/// `run`: create (we stay the parent), start, and unless `--detach` wait for the
/// container, forwarding our signals, then delete it; our exit code is its own.
pub fn run(ctx: &Ctx, args: &RunArgs) -> anyhow::Result<i32> {
    let record = create(ctx, &args.create)?;
    if let Err(e) = start(ctx, &record.id) {
        let _ = delete(ctx, &record.id, true);
        return Err(e);
    }
    if args.detach {
        return Ok(0);
    }
    // runtime::create left these blocked (SIGCHLD and the forwarded ones): they queue.
    let mut set = SigSet::empty();
    for signal in std::iter::once(&Signal::SIGCHLD).chain(runtime::FORWARDED) {
        set.add(*signal);
    }
    let pid = Pid::from_raw(record.pid);
    let own_pid_namespace = is_pid_namespace_init(record.pid);
    // Seen exited, not reaped yet (WNOWAIT): its pid stays taken meanwhile.
    loop {
        match waitid(
            Id::Pid(pid),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
        ) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(_) => break,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e).context("cannot wait for the container's process"),
        }
        let signal = set.wait().context("cannot wait for signals")?;
        if signal != Signal::SIGCHLD {
            let _ = send_signal(pid, signal);
        }
    }
    if !own_pid_namespace {
        // As runc: the rest of a container that shares a pid namespace dies with its
        // init, before the init is reaped, so none of it outlives the init (the kernel
        // does this for a pid namespace's init), `--keep` or not.
        if let Err(e) = Cgroup::open(&record.cgroup).and_then(|cgroup| cgroup.kill_all()) {
            ctx.logger.warn(&format!("{e:#}"));
        }
    }
    let code = loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => break code,
            Ok(WaitStatus::Signaled(_, signal, _)) => break 128 + signal as i32,
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e).context("cannot wait for the container's process"),
        }
    };
    if !args.keep {
        delete(ctx, &record.id, true)?;
    }
    Ok(code)
}

/// Whether `pid` is the init (pid 1) of its pid namespace, from the last `NSpid` field
/// of its status; false when that cannot be read (then its cgroup's processes are killed
/// at its exit, which costs nothing more when the kernel has done it already).
fn is_pid_namespace_init(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("NSpid:"))
            .and_then(|ids| ids.split_whitespace().last())
            == Some("1")
    })
}

pub fn list(ctx: &Ctx, args: &ListArgs) -> anyhow::Result<()> {
    let mut records = Vec::new();
    for id in state::list_ids(&ctx.root)? {
        // One that went away meanwhile is no longer listed.
        if let Ok(record) = Record::load(&ctx.root, &id) {
            records.push(record);
        }
    }
    if args.quiet {
        for record in &records {
            println!("{}", record.id);
        }
        return Ok(());
    }
    if args.format == Format::Json {
        let states: Vec<_> = records.iter().map(|r| r.oci_state(&ctx.root)).collect();
        println!("{}", serde_json::to_string(&states)?);
        return Ok(());
    }
    let mut rows = vec![[
        "ID".to_string(),
        "PID".into(),
        "STATUS".into(),
        "BUNDLE".into(),
        "CREATED".into(),
        "OWNER".into(),
    ]];
    for record in &records {
        let status = record.status(&ctx.root);
        let pid = if status == Status::Stopped {
            0
        } else {
            record.pid
        };
        rows.push([
            record.id.clone(),
            pid.to_string(),
            status.as_str().into(),
            record.bundle.display().to_string(),
            record.created.clone(),
            "root".into(),
        ]);
    }
    print_table(&rows);
    Ok(())
}

fn print_table<const N: usize>(rows: &[[String; N]]) {
    let mut widths = [0; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}   ", width = widths[i]));
            }
        }
        println!("{}", line.trim_end());
    }
}

pub fn ps(ctx: &Ctx, args: &PsArgs) -> anyhow::Result<()> {
    let record = Record::load(&ctx.root, &args.id)?;
    let pids = Cgroup::open(&record.cgroup)?.pids();
    if args.format == Format::Json {
        if !args.ps_options.is_empty() {
            bail!("ps options cannot be used with --format json (it lists pids only)");
        }
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(());
    }
    let options: Vec<&str> = if args.ps_options.is_empty() {
        vec!["-ef"]
    } else {
        args.ps_options.iter().map(String::as_str).collect()
    };
    let out = std::process::Command::new("ps")
        .args(&options)
        .stdin(std::process::Stdio::null())
        .output()
        .context("cannot run ps(1): is procps installed?")?;
    if !out.status.success() {
        bail!(
            "ps {} failed: {}",
            options.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    print!("{}", ps_rows(&String::from_utf8_lossy(&out.stdout), &pids)?);
    Ok(())
}

/// ps(1)'s header and the rows whose PID column is one of `pids`.
fn ps_rows(output: &str, pids: &[i32]) -> anyhow::Result<String> {
    let mut lines = output.lines();
    let header = lines.next().unwrap_or_default();
    let column = header
        .split_whitespace()
        .position(|h| h == "PID")
        .context("the ps options leave out the PID column: add it (e.g. -o pid,comm)")?;
    let mut shown = format!("{header}\n");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(column)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            shown.push_str(line);
            shown.push('\n');
        }
    }
    Ok(shown)
}

/// `pause` (`freeze`) or `resume`: the container's cgroup frozen or thawed.
pub fn pause(ctx: &Ctx, id: &str, freeze: bool) -> anyhow::Result<()> {
    let _lock = Lock::take(&ctx.root, id)?;
    let record = Record::load(&ctx.root, id)?;
    let (from, verb) = if freeze {
        (Status::Running, "pause")
    } else {
        (Status::Paused, "resume")
    };
    let status = record.status(&ctx.root);
    if status != from {
        bail!(
            "cannot {verb} container {id}: it is {}, not {}",
            status.as_str(),
            from.as_str()
        );
    }
    Cgroup::open(&record.cgroup)
        .and_then(|c| if freeze { c.freeze() } else { c.thaw() })
        .with_context(|| format!("cannot {verb} container {id}"))
}

/// `update --resources FILE|-`: new cgroup limits (an OCI linux.resources JSON) for a
/// created, running or paused container.
pub fn update(ctx: &Ctx, id: &str, resources: &Path) -> anyhow::Result<()> {
    let _lock = Lock::take(&ctx.root, id)?;
    let record = Record::load(&ctx.root, id)?;
    if matches!(record.status(&ctx.root), Status::Stopped | Status::Creating) {
        bail!("cannot update container {id}: container not running");
    }
    let text = if resources == Path::new("-") {
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut text)
            .context("cannot read the resources from stdin")?;
        text
    } else {
        std::fs::read(resources).with_context(|| format!("cannot read {}", resources.display()))?
    };
    let resources: oci_spec::runtime::LinuxResources = serde_json::from_slice(&text)
        .context("cannot parse the resources: expected an OCI linux.resources JSON object")?;
    Cgroup::open(&record.cgroup)
        .and_then(|c| c.update(&resources))
        .with_context(|| format!("cannot update container {id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_rows_keep_the_header_and_the_containers_pids() {
        let out = "UID PID PPID CMD\nroot 1 0 init\nroot 42 1 sleep 5\nroot 420 1 x\n";
        assert_eq!(
            ps_rows(out, &[42]).unwrap(),
            "UID PID PPID CMD\nroot 42 1 sleep 5\n"
        );
        assert!(ps_rows("COMMAND\nsh\n", &[1]).is_err());
    }
}
