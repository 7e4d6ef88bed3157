//! One foreground `run`: creates the record, writes its config.json and state, hands the
//! bundle to the runtime, records how it ended, and cleans up on every path.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use mycontainer_store::{Image, RootMount, Store};

use super::network;
use super::spec::{self, ImageDefaults, Network, RunOptions};
use super::state::{now_unix, State, Status};
use crate::exitcode;
use crate::runtime::{self, RunRequest};

/// What `run` needs besides the flags.
pub struct RunInput {
    /// The image reference as given (for the state file).
    pub image: String,
    pub defaults: ImageDefaults,
    /// What the container's root is made of.
    pub root: RootSource,
    pub options: RunOptions,
    pub auto_remove: bool,
    /// The image's config digest, when it came from the store (for `commit`).
    pub image_id: Option<String>,
    pub interactive: bool,
    pub stop_timeout: Duration,
    /// The signal `stop` sends before the timeout (`--stop-signal`, STOPSIGNAL).
    pub stop_signal: i32,
    /// `--restart` (carried out by the detached supervisor).
    pub restart: super::restart::RestartPolicy,
    /// The healthcheck (run by the detached supervisor).
    pub healthcheck: Option<super::health::HealthConfig>,
    pub log_opts: super::state::LogOpts,
}

/// Where a container's root comes from.
pub enum RootSource {
    /// A stored image: its layers, held for the container.
    Image(Box<Image>),
    /// A directory used as the only layer (`--rootfs`).
    Dir(PathBuf),
}

fn human_bytes(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// Creates the record, holds the image's layers and writes config.json, and the first
/// state when `save_created` (the detached supervisor starts from it; a foreground --rm
/// run saves its first state once its command runs: until then `ps` does not list it,
/// and a CLI killed in between leaves a stateless record that reclaim removes). Returns
/// the spec written. On failure nothing is left behind but an exited record (or nothing with
/// --rm).
/// overlayfs cannot take an upper directory that is itself on overlayfs (a state root
/// inside a Docker container, for one): the kernel's bare EINVAL at mount time says
/// nothing, so say what it is and what to do before anything is created.
fn refuse_overlay_state_root(root: &std::path::Path) -> anyhow::Result<()> {
    let on_overlay = nix::sys::statfs::statfs(root)
        .is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::OVERLAYFS_SUPER_MAGIC);
    if on_overlay {
        anyhow::bail!(
            "the state root {} is on overlayfs, which cannot hold a container's writable layer: pass --root on an ext4, xfs, btrfs or tmpfs filesystem",
            root.display()
        );
    }
    Ok(())
}

pub(super) fn prepare(
    store: &Store,
    input: &RunInput,
    save_created: bool,
) -> anyhow::Result<(super::Record, State, oci_spec::runtime::Spec)> {
    refuse_overlay_state_root(store.root())?;
    // The one record a run looks at besides its own: the holder of its name, which may
    // be a dead `--rm` run (no sweep of the others before `run`, see reclaim.rs).
    if let Some(name) = &input.options.name {
        if let Err(err) = super::reclaim::reclaim_name(store.root(), name) {
            eprintln!("mycontainer: warning: {err:#}");
        }
    }
    let record = super::create(store.root(), input.options.name.as_deref())?;
    // The container keeps its image's layers alive: `image rm` and gc leave them alone
    // until the container is removed (delete_locked releases the hold).
    let root = match &input.root {
        RootSource::Image(image) => {
            store.root_mount(image, &record.id, record.upper_dir(), record.work_dir())
        }
        RootSource::Dir(dir) => Ok(RootMount {
            lowerdirs: vec![dir.clone()],
            upperdir: record.upper_dir(),
            workdir: record.work_dir(),
        }),
    };
    let mut root = match root {
        Ok(root) => root,
        Err(err) => {
            let _ = super::discard(store, &record, Some(&record.name));
            return Err(err).context("cannot record the layers this container uses");
        }
    };
    match super::rundir::init_layer(&record) {
        Ok(dir) => root.lowerdirs.push(dir),
        Err(err) => {
            let _ = super::discard(store, &record, Some(&record.name));
            return Err(err);
        }
    }
    let mut state = State {
        id: record.id.clone(),
        name: Some(record.name.clone()),
        image: input.image.clone(),
        command: Vec::new(),
        entrypoint_len: 0,
        status: Status::Created,
        pid: None,
        exit_code: None,
        oom_killed: false,
        error: None,
        auto_remove: input.auto_remove,
        created_at: now_unix(),
        started_at: None,
        finished_at: None,
        image_id: input.image_id.clone(),
        stop_timeout: input.stop_timeout.as_secs(),
        stop_signal: input.stop_signal,
        restart_policy: input.restart,
        restart_count: 0,
        restarting: false,
        healthcheck: input.healthcheck.clone(),
        log_opts: input.log_opts,
        open_stdin: input.interactive,
    };
    // The volumes are found or made, and filled, under the volumes lock, which is held
    // until config.json names them (what keeps `volume rm` from taking them).
    let mut options = input.options.clone();
    let attached = super::volumes::attach(
        store.root(),
        &record.merged_dir(),
        &root.lowerdirs,
        &mut options,
        &input.defaults.volumes,
    );
    let (volumes_lock, made) = match attached {
        Ok(attached) => attached,
        Err(err) => return Err(record_failure(store, &record, &mut state, err)),
    };
    let written = write_bundle(&record, input, &options, &root, &mut state);
    drop(volumes_lock);
    if written.is_err() {
        // Nothing names them: they are this run's alone.
        let _ = super::volumes::remove_anonymous(store.root(), &made);
    }
    let written = written.and_then(|spec| {
        if save_created {
            record.save_state(&state)?;
        }
        Ok(spec)
    });
    match written {
        Ok(spec) => {
            let image = [("image", state.image.clone())];
            super::events::emit(
                store.root(),
                &record.id,
                Some(&record.name),
                "create",
                &image,
            );
            Ok((record, state, spec))
        }
        Err(err) => Err(record_failure(store, &record, &mut state, err)),
    }
}

/// Records a run that failed before or while starting (exit [`exitcode::TOOL_FAILED`]
/// and the reason), or removes it with --rm; returns the setup error, which is what the
/// user needs to see (a cleanup error is secondary and only printed).
pub(super) fn record_failure(
    store: &Store,
    record: &super::Record,
    state: &mut State,
    err: anyhow::Error,
) -> anyhow::Error {
    state.exit_code = Some(exitcode::TOOL_FAILED);
    state.error = Some(format!("{err:#}"));
    if let Err(cleanup) = finish(store, record, state) {
        eprintln!("mycontainer: {cleanup:#}");
    }
    err
}

/// Records how the container ended (or removes it with --rm).
pub(super) fn finish(
    store: &Store,
    record: &super::Record,
    state: &mut State,
) -> anyhow::Result<()> {
    finish_after(store, record, state, false)
}

/// [`finish`], the cgroup left alone when the runtime removed it (`cgroup_removed`).
fn finish_after(
    store: &Store,
    record: &super::Record,
    state: &mut State,
    cgroup_removed: bool,
) -> anyhow::Result<()> {
    // `rename` may have changed the name while it ran.
    if let Ok(on_disk) = record.load_state() {
        state.name = on_disk.name;
    }
    if state.started_at.is_some() {
        let name = state.name.as_deref();
        if state.oom_killed {
            super::events::emit(store.root(), &record.id, name, "oom", &[]);
        }
        let code = state.exit_code.unwrap_or(0).to_string();
        let attrs = [("exitCode", code), ("image", state.image.clone())];
        super::events::emit(store.root(), &record.id, name, "die", &attrs);
    }
    if state.auto_remove {
        super::record::discard_after(store, record, state.name.as_deref(), cgroup_removed)
    } else {
        state.status = Status::Exited;
        state.pid = None;
        state.finished_at = Some(now_unix());
        record.save_state(state)
    }
}

/// Runs the container in the foreground and returns the exit code for the CLI.
pub fn run(store: &Store, input: RunInput) -> anyhow::Result<i32> {
    // A --rm run has nothing to keep if its CLI dies before its command runs: its first
    // state is the running one. Any other record says from the start what it is.
    let (record, mut state, spec) = prepare(store, &input, !input.auto_remove)?;
    let result = start_and_wait(store, &record, &spec, input.interactive, &mut state);
    match result {
        Ok(outcome) => {
            state.exit_code = Some(outcome.exit_code);
            state.oom_killed = outcome.oom_killed;
            state.error = outcome.exec_error.clone();
            finish_after(store, &record, &mut state, outcome.cgroup_removed)?;
            let label = &record.name;
            if let Some(reason) = &outcome.exec_error {
                eprintln!("mycontainer: {reason}");
            }
            if outcome.oom_killed {
                let limit = outcome
                    .memory_limit
                    .map(|l| format!(" (limit {})", human_bytes(l)))
                    .unwrap_or_default();
                // The container's own code stands: when its PID 1 survived the OOM
                // killer (a child was its victim), that is only a warning.
                if outcome.exit_code == exitcode::KILLED {
                    eprintln!("mycontainer: container {label} was killed: out of memory{limit}");
                } else {
                    eprintln!(
                        "mycontainer: warning: a process in container {label} was killed: out of memory{limit}"
                    );
                }
            }
            if outcome.exit_code == exitcode::signaled(libc::SIGSYS) {
                eprintln!(
                    "mycontainer: container {label} was killed by SIGSYS: its seccomp profile forbids a system call it made"
                );
            }
            if outcome.killed_after_timeout {
                eprintln!(
                    "mycontainer: container {label} did not stop within {}s: killed",
                    input.stop_timeout.as_secs()
                );
            }
            Ok(outcome.exit_code)
        }
        Err(err) => Err(record_failure(store, &record, &mut state, err)),
    }
}

/// `run -d`: prepares the record, hands it to a detached supervisor and returns once the
/// container's command runs. Returns the id, or the exit code when it could not start.
pub fn run_detached(store: &Store, input: RunInput) -> anyhow::Result<Result<String, i32>> {
    // The first state is saved unsynced: spawn_supervisor makes the record durable
    // while the supervisor starts the container, off the path the CLI waits on.
    let (record, mut state, _spec) = prepare(store, &input, false)?;
    if let Err(err) = state.save(&record.state_path(), false) {
        return Err(record_failure(store, &record, &mut state, err));
    }
    let id = record.id.clone();
    match super::detach::spawn_supervisor(store.root(), record)? {
        super::detach::Started::Running => Ok(Ok(id)),
        super::detach::Started::ExecFailed(code, reason) => {
            eprintln!("mycontainer: {reason}");
            Ok(Err(code))
        }
    }
}

/// The detached supervisor's work (`mycontainer supervise ID`): runs the record's
/// config.json, reports the start on `report`, waits, records the end, and starts it
/// again as long as its restart policy says so (see restart.rs); then cleans up.
/// The waiting happens in the small supervisor (handover.rs), which execs us again
/// with `resumed` when the container has exited.
pub fn supervise(
    store: &Store,
    record: &super::Record,
    resumed: Option<super::handover::Resumed>,
    report: &mut dyn FnMut(super::detach::Report),
) -> anyhow::Result<i32> {
    use super::detach::Report;
    use super::{handover, health, restart};
    let mut state = record.load_state()?;
    let mut backoff = restart::Backoff::default();
    let mut first = true;
    let mut ended = None;
    // The attach socket lives as long as we do, across restarts.
    let mut server = match resumed {
        Some(resumed) => {
            backoff = restart::Backoff::resumed(resumed.backoff_ms);
            first = false;
            ended = Some((resumed.code, resumed.ran));
            runtime::attach::Server::resumed(resumed.listener.into(), resumed.clients)?
        }
        None => match super::attach::listen(record) {
            Ok(server) => server,
            Err(err) => {
                report(Report::Failed(format!("{err:#}")));
                return Err(record_failure(store, record, &mut state, err));
            }
        },
    };
    loop {
        let (result, ran, health_restart) = if let Some((code, ran)) = ended.take() {
            let outcome = handover::ended(store, record, code);
            (Ok(outcome), ran, health::take_restart_marker(&record.dir))
        } else {
            if !first && restart::stopped_by_user(record) {
                // A user's stop or kill came after the delay's last look: no new run.
                state.restarting = false;
                super::attach::unlisten(record);
                record.save_state(&state)?;
                return Ok(state.exit_code.unwrap_or(0));
            }
            if !first {
                if let Err(err) = super::control::reset_work_dir(record) {
                    state.restarting = false;
                    state.error = Some(format!("cannot restart: {err:#}"));
                    record.save_state(&state)?;
                    return Err(err);
                }
            }
            let began = std::time::Instant::now();
            let began_ms = handover::monotonic_ms();
            let spec = oci_spec::runtime::Spec::load(record.config_path())
                .with_context(|| format!("cannot read {}", record.config_path().display()));
            let result = spec.and_then(|spec| {
                let handing = handover::Handing {
                    small: &handover::small_supervisor()?,
                    record,
                    root: store.root(),
                    listen_fd: server.listener_fd(),
                    began_ms,
                    backoff_ms: backoff.next_ms(),
                };
                handover::start(store, record, &spec, &mut state, handing, &mut |_| {
                    report(Report::Running);
                })
            });
            (result, began.elapsed(), false)
        };
        let (code, may_restart) = match result {
            Ok(outcome) => {
                state.exit_code = Some(outcome.exit_code);
                state.oom_killed = outcome.oom_killed;
                state.error = outcome.exec_error.clone();
                let exec_failed = outcome.exec_error.is_some();
                if let Some(reason) = outcome.exec_error {
                    report(Report::ExecFailed(outcome.exit_code, reason));
                }
                // A command that cannot be executed fails the same way each time.
                (outcome.exit_code, !exec_failed)
            }
            Err(err) => {
                state.exit_code = Some(exitcode::TOOL_FAILED);
                state.error = Some(format!("{err:#}"));
                report(Report::Failed(format!("{err:#}")));
                (exitcode::TOOL_FAILED, !first)
            }
        };
        first = false;
        let exit_code = state.exit_code.unwrap_or(code);
        // `update --restart` while it ran: the decision is the new policy's.
        restart::adopt_pending(record, &mut state);
        let restart = may_restart
            && !state.auto_remove
            && !restart::stopped_by_user(record)
            && (health_restart
                || state
                    .restart_policy
                    .restarts_after(exit_code, state.restart_count));
        if !restart {
            state.restarting = false;
            super::attach::unlisten(record);
            let finished = finish(store, record, &mut state);
            // Attached clients learn the exit code once the record says it.
            server.end(exit_code);
            finished?;
            return Ok(code);
        }
        // Exited for now: ps shows "Restarting (code) ... ago" while we wait.
        state.restarting = true;
        state.restart_count += 1;
        restart::record_exit(record, state.restart_count, exit_code);
        let finished = finish(store, record, &mut state);
        server.end(exit_code);
        finished?;
        if !wait_unless_stopped(record, backoff.after_run(ran)) {
            state.restarting = false;
            super::attach::unlisten(record);
            record.save_state(&state)?;
            return Ok(code);
        }
    }
}

/// Sleeps `delay`, looking for a user's stop every 50 ms; false when one came.
fn wait_unless_stopped(record: &super::Record, delay: Duration) -> bool {
    let deadline = std::time::Instant::now() + delay;
    loop {
        if super::restart::stopped_by_user(record) {
            return false;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// Builds the OCI spec from the image defaults and flags, writes it to config.json and
/// returns it.
fn write_bundle(
    record: &super::Record,
    input: &RunInput,
    options: &RunOptions,
    root: &RootMount,
    state: &mut State,
) -> anyhow::Result<oci_spec::runtime::Spec> {
    let mut options = options.clone();
    let store_root = record
        .dir
        .parent()
        .and_then(Path::parent)
        .context("the record has no state root")?;
    match &options.network {
        Network::Bridge(_) => {
            options.netns_path = Some(network::netns_path(store_root, &record.id));
        }
        Network::Container(target) => {
            let (id, path) = joined_network(store_root, target, &record.id)?;
            options.network = Network::Container(id);
            options.netns_path = Some(path);
        }
        Network::None | Network::Host => {}
    }
    let built = spec::build(&record.id, &record.dir, &input.defaults, &options, root)?;
    let hostname = built.spec.hostname().clone().unwrap_or_default();
    record.write_etc_files(&hostname, &options)?;
    state.command = built.args.clone();
    state.entrypoint_len = spec::entrypoint(&input.defaults, &input.options).len();
    serde_json::to_vec(&built.spec)
        .map_err(std::io::Error::from)
        .and_then(|bytes| super::write_private(&record.config_path(), &bytes))
        .with_context(|| format!("cannot write {}", record.config_path().display()))?;
    Ok(built.spec)
}

/// `--network container:TARGET`: TARGET's id and the namespace to join (its mounted
/// one when it is on a bridge network, else its init's).
fn joined_network(root: &Path, target: &str, own: &str) -> anyhow::Result<(String, PathBuf)> {
    let other = super::find(root, target)
        .map_err(|e| anyhow::anyhow!("cannot join the network of container {target}: {e:#}"))?;
    if other.id == own {
        anyhow::bail!("a container cannot join its own network namespace");
    }
    let state = other.load_state()?;
    let pid = match (state.status, state.pid) {
        (super::Status::Running, Some(pid)) => pid,
        _ => anyhow::bail!(
            "cannot join the network of container {target}: it is not running (start it first)"
        ),
    };
    let mounted = network::netns_path(root, &other.id);
    let path = if network::attachment(root, &other.id).is_some() {
        mounted
    } else {
        PathBuf::from(format!("/proc/{pid}/ns/net"))
    };
    Ok((other.id.clone(), path))
}

/// The network a spec attaches its container to at each start (bridge networks).
pub(super) fn network_of(spec: &oci_spec::runtime::Spec) -> Option<String> {
    spec.annotations()
        .as_ref()?
        .get(network::ANNOTATION_NETWORK)
        .cloned()
}

/// What a container's peers call it: its name, hostname, aliases, and its own
/// `--add-host` entries (from the spec's annotations).
fn identity(state: &State, spec: &oci_spec::runtime::Spec) -> network::Identity {
    let annotation = |key: &str| -> Vec<String> {
        spec.annotations()
            .as_ref()
            .and_then(|a| a.get(key))
            .map(|v| {
                v.split(',')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    };
    network::Identity {
        name: state.name.clone().unwrap_or_default(),
        hostname: spec.hostname().clone().unwrap_or_default(),
        aliases: annotation(network::ANNOTATION_ALIASES),
        extra_hosts: annotation(network::ANNOTATION_EXTRA_HOSTS)
            .iter()
            .filter_map(|pair| pair.split_once('='))
            .map(|(n, ip)| (n.to_string(), ip.to_string()))
            .collect(),
        ports: network::ports::wanted(spec.annotations().as_ref()),
    }
}

/// Starts the container and waits for it (in the foreground), its bridge network
/// attached around the run.
pub(super) fn start_and_wait(
    store: &Store,
    record: &super::Record,
    spec: &oci_spec::runtime::Spec,
    interactive: bool,
    state: &mut State,
) -> anyhow::Result<runtime::Outcome> {
    // The container's own tmpfs for its etc files, written from the spec (detached once
    // the state says exited, see rundir::start_files).
    super::rundir::start_files(record, spec)?;
    // A bridge network: its namespace, veth, address and lease, made at each start and
    // released on every way out (a kill -9 of ours leaves them to gc).
    let attached = attach_network(store, record, spec, state)?;
    let outcome = start_and_wait_attached(store, record, spec, interactive, state);
    if attached {
        release_network(store, record);
    }
    outcome
}

/// Attaches the container to its bridge network, if it has one; true when it did.
pub(super) fn attach_network(
    store: &Store,
    record: &super::Record,
    spec: &oci_spec::runtime::Spec,
    state: &State,
) -> anyhow::Result<bool> {
    let Some(name) = network_of(spec) else {
        return Ok(false);
    };
    let who = identity(state, spec);
    match network::attach(store.root(), &record.id, &name, &who) {
        Ok(_) => Ok(true),
        Err(err) => {
            // A full address pool or a taken port may be held by containers whose CLI
            // died (no sweep runs before `run`): reclaimed, and tried once more when
            // that freed anything.
            let freed = super::reclaim_orphans(store.root())
                .is_ok_and(|r| !r.removed.is_empty() || !r.marked_exited.is_empty());
            if !freed {
                return Err(err);
            }
            network::attach(store.root(), &record.id, &name, &who)?;
            Ok(true)
        }
    }
}

pub(super) fn release_network(store: &Store, record: &super::Record) {
    if let Err(e) = network::release(store.root(), &record.id) {
        eprintln!("mycontainer: warning: cannot remove the container's network: {e:#}");
    }
}

/// Records that the container's command runs as `pid` (state.json, the start event).
/// `durable`: the state is synced before this returns (the detached supervisor syncs it
/// itself once it has told the CLI the command runs, see handover.rs).
pub(super) fn mark_started(
    store: &Store,
    record: &super::Record,
    state: &mut State,
    pid: i32,
    durable: bool,
) {
    state.status = Status::Running;
    // A restart's wait is over: inspect says running again, not restarting.
    state.restarting = false;
    state.pid = Some(pid);
    state.started_at = Some(now_unix());
    state.finished_at = None;
    state.exit_code = None;
    state.error = None;
    state.oom_killed = false;
    // The lock, not this file, is what marks the record as alive; a failed write
    // only makes `ps` less precise.
    let _ = state.save(&record.state_path(), durable && !state.auto_remove);
    let image = [("image", state.image.clone())];
    super::events::emit(
        store.root(),
        &record.id,
        state.name.as_deref(),
        "start",
        &image,
    );
}

fn start_and_wait_attached(
    store: &Store,
    record: &super::Record,
    spec: &oci_spec::runtime::Spec,
    interactive: bool,
    state: &mut State,
) -> anyhow::Result<runtime::Outcome> {
    let log_path = record.log_path();
    let cache_dir = store.root().join("cache");
    let request = RunRequest {
        bundle: &record.dir,
        spec,
        interactive,
        log_path: Some(&log_path),
        log_rotation: Some(runtime::logfile::Rotation {
            max_size: state.log_opts.max_size,
            max_files: state.log_opts.max_files,
        }),
        stop_timeout: Duration::from_secs(state.stop_timeout),
        cache_dir: Some(&cache_dir),
    };
    runtime::run(&request, &mut |pid| {
        mark_started(store, record, state, pid, true)
    })
}
