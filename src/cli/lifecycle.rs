//! Verbs on running and stopped containers: ps, stop, kill, start, inspect, commit, and
//! the hidden `supervise` that `run -d` and `start` launch.

use std::io::Write;
use std::os::fd::RawFd;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use super::Ctx;
use crate::container::{self, control, detach, State, Status};
use crate::exitcode;

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Show all containers (default: running ones)
    #[arg(short, long)]
    pub all: bool,
    /// Do not truncate ids and commands
    #[arg(long)]
    pub no_trunc: bool,
    /// Filter: status=, name=, label=KEY[=VALUE], ancestor=IMAGE, id=
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Go template ({{.Names}}\t{{.Status}}, {{json .}}, table ...) or json
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait after SIGTERM before SIGKILL (default: the container's --stop-timeout)
    #[arg(short = 't', long = "time", value_name = "SECONDS")]
    pub time: Option<u64>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal to send (name like TERM or SIGTERM, or a number)
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StartArgs {
    /// Attach: print the container's output and return its exit code
    #[arg(short, long)]
    pub attach: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
    /// Go template ({{.State.Status}}, {{json .Config.Labels}}) or json
    #[arg(short, long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct CommitArgs {
    pub container: String,
    /// The new image's NAME[:TAG]
    pub image: String,
}

#[derive(Args, Debug)]
pub struct SuperviseArgs {
    #[arg(long)]
    pub lock_fd: RawFd,
    #[arg(long)]
    pub status_fd: RawFd,
    pub id: String,
}

/// Docker's approximate durations: "3 seconds", "About a minute", "2 hours".
pub fn human_duration(secs: u64) -> String {
    let minutes = secs / 60;
    let hours = minutes / 60;
    match secs {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 120 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours < 2 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 14 => format!("{} days", hours / 24),
        _ if hours < 24 * 90 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 730 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", hours / 24 / 365),
    }
}

/// ps's STATUS of a record, with what only the cgroup and the health file know.
fn live_status(record: &container::Record, state: &State, now: u64) -> String {
    status_text(
        state,
        now,
        container::pause::is_paused(record, state),
        state
            .healthcheck
            .as_ref()
            .and_then(|_| container::health::Health::load(&record.dir))
            .map(|h| h.status),
    )
}

fn status_text(state: &State, now: u64, paused: bool, health: Option<String>) -> String {
    let since = |t: Option<u64>| human_duration(now.saturating_sub(t.unwrap_or(now)));
    match state.status {
        Status::Exited if state.restarting => format!(
            "Restarting ({}) {} ago",
            state.exit_code.unwrap_or(0),
            since(state.finished_at)
        ),
        Status::Created => "Created".into(),
        Status::Running if paused => format!("Up {} (Paused)", since(state.started_at)),
        Status::Running => match health {
            Some(health) if health == "starting" => {
                format!("Up {} (health: starting)", since(state.started_at))
            }
            Some(health) => format!("Up {} ({health})", since(state.started_at)),
            None => format!("Up {}", since(state.started_at)),
        },
        // No finish time: its supervisor was killed, and when it died is not known.
        Status::Exited if state.finished_at.is_none() => {
            format!("Exited ({})", state.exit_code.unwrap_or(0))
        }
        Status::Exited => format!(
            "Exited ({}) {} ago",
            state.exit_code.unwrap_or(0),
            since(state.finished_at)
        ),
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

/// A container's published ports as ps shows them (`0.0.0.0:8080->80/tcp, ...`, runs
/// collapsed as Docker's: `0.0.0.0:8000-8002->8000-8002/tcp`).
fn ports_text(root: &std::path::Path, id: &str) -> String {
    container::network::attachment(root, id)
        .map(|a| container::network::ports::display(&a.ports))
        .unwrap_or_default()
}

/// One container as `ps --format` sees it (Docker's field names).
fn ps_row(
    root: &std::path::Path,
    record: &container::Record,
    state: &State,
    now: u64,
    no_trunc: bool,
) -> serde_json::Value {
    let labels = container::inspect::labels_of(record);
    let command = format!("\"{}\"", state.command.join(" "));
    serde_json::json!({
        "ID": if no_trunc { record.id.as_str() } else { record.short_id() },
        "Image": state.image,
        "Command": if no_trunc { command } else { truncate(&command, 22) },
        "CreatedAt": crate::timefmt::rfc3339_seconds(state.created_at),
        "RunningFor": format!("{} ago", human_duration(now.saturating_sub(state.created_at))),
        "State": match state.status {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
        },
        "Status": live_status(record, state, now),
        "Names": state.name.clone().unwrap_or_default(),
        "Labels": labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
        "Ports": ports_text(root, &record.id),
        "Mounts": "",
        "Networks": "",
        "Size": "",
    })
}

pub fn ps(ctx: &Ctx, args: PsArgs) -> anyhow::Result<i32> {
    let now = container::state::now_unix();
    let filters = super::filters::Filters::parse(
        &args.filter,
        &["status", "name", "label", "ancestor", "id"],
    )?;
    // A status filter shows stopped containers without -a, as Docker.
    let all = args.all || filters.has("status");
    let shown: Vec<_> = control::list(&ctx.root)?
        .into_iter()
        .filter(|(_, state)| all || state.status == Status::Running || state.restarting)
        .map(|(record, mut state)| {
            // A supervisor killed while it waited to restart left "restarting" behind.
            state.restarting = state.restarting && record.is_supervised();
            (record, state)
        })
        .filter(|(record, state)| super::filters::ps_matches(&filters, record, state))
        .collect();
    if let Some(format) = &args.format {
        let rows: Vec<serde_json::Value> = shown
            .iter()
            .map(|(record, state)| ps_row(&ctx.root, record, state, now, args.no_trunc))
            .collect();
        super::format::print_rows_with(
            format,
            &rows,
            &[("ID", "CONTAINER ID"), ("RunningFor", "CREATED")],
        )?;
        return Ok(0);
    }
    let out = std::io::stdout();
    let mut out = out.lock();
    // -q (the global --quiet) prints ids only.
    if ctx.quiet {
        for (record, _) in &shown {
            let id = if args.no_trunc {
                &record.id
            } else {
                record.short_id()
            };
            let _ = writeln!(out, "{id}");
        }
        return Ok(0);
    }
    let mut rows = vec![[
        "CONTAINER ID".to_string(),
        "IMAGE".into(),
        "COMMAND".into(),
        "CREATED".into(),
        "STATUS".into(),
        "PORTS".into(),
        "NAMES".into(),
    ]];
    for (record, state) in &shown {
        let command = format!("\"{}\"", state.command.join(" "));
        rows.push([
            if args.no_trunc {
                record.id.clone()
            } else {
                record.short_id().to_string()
            },
            if args.no_trunc {
                state.image.clone()
            } else {
                truncate(&state.image, 40)
            },
            if args.no_trunc {
                command
            } else {
                truncate(&command, 22)
            },
            format!(
                "{} ago",
                human_duration(now.saturating_sub(state.created_at))
            ),
            live_status(record, state, now),
            ports_text(&ctx.root, &record.id),
            state.name.clone().unwrap_or_default(),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|col| {
            rows.iter()
                .map(|r| r[col].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in &rows {
        let mut line = String::new();
        for (col, cell) in row.iter().enumerate() {
            if col == 6 {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(widths[col] - cell.chars().count() + 3));
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    Ok(0)
}

/// Runs `action` on each named container, printing the name on success (as Docker).
/// Runs `action` on each named container, printing its name or the error; exit 1 if
/// any failed (Docker's managing verbs).
pub(super) fn each(
    ctx: &Ctx,
    names: &[String],
    mut action: impl FnMut(&container::Record) -> anyhow::Result<()>,
) -> i32 {
    let mut failed = false;
    for name in names {
        match container::find(&ctx.root, name).and_then(|r| action(&r)) {
            Ok(()) => println!("{name}"),
            Err(err) => {
                eprintln!("mycontainer: {err:#}");
                failed = true;
            }
        }
    }
    if failed {
        exitcode::VERB_FAILED
    } else {
        0
    }
}

pub fn stop(ctx: &Ctx, args: StopArgs) -> anyhow::Result<i32> {
    Ok(each(ctx, &args.containers, |record| {
        let timeout = match args.time {
            Some(t) => t,
            None => record.load_state()?.stop_timeout,
        };
        control::stop(record, Duration::from_secs(timeout))
    }))
}

pub fn kill(ctx: &Ctx, args: KillArgs) -> anyhow::Result<i32> {
    let signal = container::signals::parse_signal(&args.signal)?;
    Ok(each(ctx, &args.containers, |record| {
        control::kill(record, signal)
    }))
}

pub fn start(ctx: &Ctx, args: StartArgs) -> anyhow::Result<i32> {
    if args.attach {
        let [name] = args.containers.as_slice() else {
            bail!("start -a takes one container");
        };
        let record = container::find(&ctx.root, name)?;
        let offset_tail = Some(0);
        let mut follower =
            container::logs::LogFollower::open(&record.log_path(), offset_tail, false)
                .with_context(|| format!("cannot read {}", record.log_path().display()))?;
        if let Some(code) = control::start(&ctx.root, &record)? {
            return Ok(code);
        }
        super::container::follow(&record, &mut follower)?;
        let state = record.load_state()?;
        return Ok(state.exit_code.unwrap_or(0));
    }
    let mut code = 0;
    for name in &args.containers {
        match container::find(&ctx.root, name).and_then(|r| control::start(&ctx.root, &r)) {
            Ok(None) => println!("{name}"),
            Ok(Some(exit)) => code = exit,
            Err(err) => {
                eprintln!("mycontainer: {err:#}");
                code = exitcode::VERB_FAILED;
            }
        }
    }
    Ok(code)
}

pub fn inspect(ctx: &Ctx, args: InspectArgs) -> anyhow::Result<i32> {
    let mut found = Vec::new();
    let mut failed = false;
    for name in &args.containers {
        match container::find(&ctx.root, name).and_then(|r| {
            let state = control::observed(&r, r.load_state()?);
            Ok(container::inspect::inspect(&r, &state))
        }) {
            Ok(value) => found.push(value),
            Err(err) => {
                eprintln!("mycontainer: {err:#}");
                failed = true;
            }
        }
    }
    match &args.format {
        Some(format) => super::format::print_each(format, &found)?,
        None => println!("{}", serde_json::to_string_pretty(&found)?),
    }
    Ok(if failed { exitcode::VERB_FAILED } else { 0 })
}

pub fn commit(ctx: &Ctx, args: CommitArgs) -> anyhow::Result<i32> {
    let record = container::find(&ctx.root, &args.container)?;
    let image = container::commit::commit(&ctx.root, &record, &args.image)?;
    println!("{}", image.id);
    Ok(0)
}

/// The detached supervisor (`run -d`, `start`); its stdio is /dev/null.
pub fn supervise(ctx: &Ctx, args: SuperviseArgs) -> anyhow::Result<i32> {
    let mut handover = detach::adopt(&ctx.root, &args.id, args.lock_fd, args.status_fd)?;
    let status = &mut handover.status;
    let store = ctx.store()?;
    // Once the container runs this process execs the small supervisor
    // (container/handover.rs): nothing of this binary stays resident.
    container::run::supervise(&store, &handover.record, None, &mut |report| {
        status.report(report)
    })
}

/// `mycontainer --root ROOT supervise --lock-fd N --status-fd M ID` (what
/// `detach::spawn_supervisor` runs), read without clap; None for any other command line.
pub fn supervise_entry() -> Option<i32> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if let Some(code) = small_supervisor_entry(&args) {
        return Some(code);
    }
    let [flag, root, verb, lock_flag, lock_fd, status_flag, status_fd, id] = args.as_slice() else {
        return None;
    };
    let words = [flag, verb, lock_flag, status_flag].map(|a| a.to_str());
    if words
        != [
            Some("--root"),
            Some("supervise"),
            Some("--lock-fd"),
            Some("--status-fd"),
        ]
    {
        return None;
    }
    let args = SuperviseArgs {
        lock_fd: lock_fd.to_str()?.parse().ok()?,
        status_fd: status_fd.to_str()?.parse().ok()?,
        id: id.to_str()?.to_string(),
    };
    let ctx = Ctx {
        root: std::path::PathBuf::from(root),
        quiet: true,
    };
    let id = args.id.clone();
    container::supervisor_log::record_panics(&ctx.root, &id);
    Some(match supervise(&ctx, args) {
        Ok(code) => code,
        Err(err) => {
            container::supervisor_log::record_failure(&ctx.root, &id, &err);
            eprintln!("mycontainer: {err:#}");
            exitcode::TOOL_FAILED
        }
    })
}

/// The small supervisor's calls back into this binary (container/handover.rs), read
/// without clap: `--root ROOT supervise --lock-fd N --resume CODE BEGAN_MS BACKOFF_MS
/// LISTEN_FD CLIENT_FDS ID` once the container has exited, and `--root ROOT
/// supervise-health SINCE_MS ID` for each healthcheck. None for any other command line.
fn small_supervisor_entry(args: &[std::ffi::OsString]) -> Option<i32> {
    let words: Vec<&str> = args.iter().map(|a| a.to_str()).collect::<Option<_>>()?;
    let result = match words.as_slice() {
        ["--root", root, "supervise", "--lock-fd", lock_fd, "--resume", code, began, backoff, listen, clients, id] =>
        {
            let clients: Vec<RawFd> = match *clients {
                "-" => Vec::new(),
                list => list
                    .split(',')
                    .map(|fd| fd.parse().ok())
                    .collect::<Option<_>>()?,
            };
            let root = std::path::PathBuf::from(root);
            container::supervisor_log::record_panics(&root, id);
            let resumed = resume(
                &root,
                id,
                lock_fd.parse().ok()?,
                code.parse().ok()?,
                began.parse().ok()?,
                backoff.parse().ok()?,
                listen.parse().ok()?,
                &clients,
            );
            if let Err(err) = &resumed {
                container::supervisor_log::record_failure(&root, id, err);
            }
            resumed
        }
        ["--root", root, "supervise-health", since, id] => {
            let since = std::time::Duration::from_millis(since.parse().ok()?);
            let root = std::path::PathBuf::from(root);
            container::find(&root, id)
                .and_then(|record| container::health::tick(&root, &record, since))
                .map(|()| 0)
        }
        _ => return None,
    };
    Some(match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("mycontainer: {err:#}");
            exitcode::TOOL_FAILED
        }
    })
}

#[allow(clippy::too_many_arguments)]
fn resume(
    root: &std::path::Path,
    id: &str,
    lock_fd: RawFd,
    code: i32,
    began_ms: u64,
    backoff_ms: u64,
    listen_fd: RawFd,
    clients: &[RawFd],
) -> anyhow::Result<i32> {
    let record = detach::adopt_lock(root, id, lock_fd)?;
    let resumed =
        container::handover::adopt_resumed(code, began_ms, backoff_ms, listen_fd, clients)?;
    let ctx = Ctx {
        root: root.to_path_buf(),
        quiet: true,
    };
    let store = ctx.store()?;
    container::run::supervise(&store, &record, Some(resumed), &mut |_| {})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_docker() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(3), "3 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(600), "10 minutes");
        assert_eq!(human_duration(3 * 3600), "3 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
    }
}
