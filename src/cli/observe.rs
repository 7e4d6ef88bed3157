//! Verbs that look at or adjust running containers: wait, top, pause, unpause, stats,
//! update.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use clap::Args;

use super::Ctx;
use crate::container::{self, control, limits::LimitFlags, stats, Status};
use crate::exitcode;

#[derive(Args, Debug)]
pub struct WaitArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct TopArgs {
    pub container: String,
    /// Options for the host's ps (default: -ef)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PauseArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Print one reading and exit
    #[arg(long)]
    pub no_stream: bool,
    /// Show every container (default: running ones)
    #[arg(short, long)]
    pub all: bool,
    /// Do not truncate ids
    #[arg(long)]
    pub no_trunc: bool,
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// Memory limit (e.g. 100M, 1g)
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Memory plus swap limit; -1 for unlimited swap
    #[arg(long, allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Number of CPUs (e.g. 0.5)
    #[arg(long)]
    pub cpus: Option<String>,
    /// Maximum number of processes (0 or -1: unlimited)
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Restart policy: no, on-failure[:MAX], always, unless-stopped (a running
    /// container's supervisor uses it from its next exit)
    #[arg(long, value_name = "POLICY")]
    pub restart: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Show events since this time (RFC 3339, Unix seconds, or a duration ago: 10m);
    /// without it only new events are shown
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Stop at this time (without it, keep following)
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// container=NAME, event=ACTION, type=container (repeatable)
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Output format: "json" for one JSON object per line
    #[arg(long)]
    pub format: Option<String>,
}

pub fn wait(ctx: &Ctx, args: WaitArgs) -> anyhow::Result<i32> {
    let mut failed = false;
    for name in &args.containers {
        match container::find(&ctx.root, name).and_then(|r| container::wait::wait(&ctx.root, &r)) {
            Ok(code) => println!("{code}"),
            Err(err) => {
                eprintln!("mycontainer: {err:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { exitcode::VERB_FAILED } else { 0 })
}

pub fn top(ctx: &Ctx, args: TopArgs) -> anyhow::Result<i32> {
    let record = container::find(&ctx.root, &args.container)?;
    let (header, rows) = container::top::top(&record, &args.ps_args)?;
    println!("{header}");
    for row in rows {
        println!("{row}");
    }
    Ok(0)
}

pub fn pause(ctx: &Ctx, args: PauseArgs) -> anyhow::Result<i32> {
    Ok(super::lifecycle::each(
        ctx,
        &args.containers,
        container::pause::pause,
    ))
}

pub fn unpause(ctx: &Ctx, args: PauseArgs) -> anyhow::Result<i32> {
    Ok(super::lifecycle::each(
        ctx,
        &args.containers,
        container::pause::unpause,
    ))
}

pub fn update(ctx: &Ctx, args: UpdateArgs) -> anyhow::Result<i32> {
    let restart = args
        .restart
        .as_deref()
        .map(container::restart::RestartPolicy::parse)
        .transpose()?;
    let limits = LimitFlags {
        memory: args.memory,
        memory_swap: args.memory_swap,
        cpus: args.cpus,
        pids_limit: args.pids_limit,
        ..Default::default()
    };
    let any_limit = limits.memory.is_some() || limits.cpus.is_some() || limits.pids_limit.is_some();
    let changes = if any_limit || restart.is_none() {
        Some(container::update::parse(&limits)?)
    } else {
        None
    };
    Ok(super::lifecycle::each(ctx, &args.containers, |record| {
        if let Some(changes) = &changes {
            container::update::update(record, changes)?;
        }
        if let Some(policy) = restart {
            container::update::update_restart(record, policy)?;
        }
        Ok(())
    }))
}

/// Go's `%.*g` (what Docker's size units print): `digits` significant digits, trailing
/// zeros dropped.
fn g_format(value: f64, digits: i32) -> String {
    if value == 0.0 {
        return "0".into();
    }
    // The exponent after rounding to `digits` digits decides the form, as in C and Go.
    let scientific = format!("{:.*e}", (digits - 1) as usize, value);
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if exponent >= digits || exponent < -4 {
        let sign = if exponent < 0 { '-' } else { '+' };
        return format!("{}e{sign}{:02}", trim_zeros(mantissa), exponent.abs());
    }
    let decimals = (digits - 1 - exponent).max(0) as usize;
    trim_zeros(&format!("{value:.decimals$}")).to_string()
}

fn trim_zeros(text: &str) -> &str {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    }
}

/// Docker's units: `binary` as BytesSize ("1.5MiB"), else as HumanSize with 3 digits
/// ("1.2kB").
fn size(bytes: u64, binary: bool) -> String {
    let (base, units, digits) = if binary {
        (1024.0, ["B", "KiB", "MiB", "GiB", "TiB", "PiB"], 4)
    } else {
        (1000.0, ["B", "kB", "MB", "GB", "TB", "PB"], 3)
    };
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= base && unit < units.len() - 1 {
        value /= base;
        unit += 1;
    }
    format!("{}{}", g_format(value, digits), units[unit])
}

/// One `stats` table row.
fn stats_row(id: &str, name: &str, f: &stats::Figures) -> [String; 8] {
    [
        id.to_string(),
        name.to_string(),
        format!("{:.2}%", f.cpu_percent),
        format!("{} / {}", size(f.memory, true), size(f.memory_limit, true)),
        format!("{:.2}%", f.memory_percent),
        format!("{} / {}", size(f.net.0, false), size(f.net.1, false)),
        format!("{} / {}", size(f.block.0, false), size(f.block.1, false)),
        f.pids.to_string(),
    ]
}

fn print_table(out: &mut impl Write, rows: &[[String; 8]]) {
    let header = [
        "CONTAINER ID",
        "NAME",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "NET I/O",
        "BLOCK I/O",
        "PIDS",
    ]
    .map(String::from);
    let all: Vec<&[String; 8]> = std::iter::once(&header).chain(rows).collect();
    let widths: Vec<usize> = (0..8)
        .map(|c| all.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in all {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if c < 7 {
                line.push_str(&" ".repeat(widths[c] - cell.chars().count() + 3));
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

/// The containers `stats` shows now: the named ones, else the running (or all) ones.
fn stats_targets(
    ctx: &Ctx,
    args: &StatsArgs,
) -> anyhow::Result<Vec<(container::Record, container::State)>> {
    if args.containers.is_empty() {
        return Ok(control::list(&ctx.root)?
            .into_iter()
            .filter(|(_, s)| args.all || s.status == Status::Running)
            .collect());
    }
    args.containers
        .iter()
        .map(|name| {
            let record = container::find(&ctx.root, name)?;
            let state = record.load_state()?;
            Ok((record, state))
        })
        .collect()
}

/// The first figures come from two readings 100 ms apart (not after 2 s, as Docker's);
/// a stream then refreshes every second.
pub fn stats(ctx: &Ctx, args: StatsArgs) -> anyhow::Result<i32> {
    let first_gap = Duration::from_millis(100);
    let refresh = Duration::from_secs(1);
    let clear = !args.no_stream && std::io::stdout().is_terminal();
    let mut previous: HashMap<String, stats::Sample> = HashMap::new();
    loop {
        let targets = stats_targets(ctx, &args)?;
        let unseen = targets
            .iter()
            .any(|(r, s)| s.status == Status::Running && !previous.contains_key(&r.id));
        if unseen {
            for (record, state) in &targets {
                if let Some(sample) = stats::sample(record, state) {
                    previous.entry(record.id.clone()).or_insert(sample);
                }
            }
            std::thread::sleep(first_gap);
        }
        let mut rows = Vec::new();
        let mut next = HashMap::new();
        for (record, state) in &targets {
            let id = if args.no_trunc {
                record.id.clone()
            } else {
                record.short_id().to_string()
            };
            let name = state.name.clone().unwrap_or_default();
            let figures = match (stats::sample(record, state), previous.get(&record.id)) {
                (Some(now), Some(before)) => {
                    let f = stats::figures(before, &now);
                    next.insert(record.id.clone(), now);
                    f
                }
                _ => stats::Figures::default(),
            };
            rows.push(stats_row(&id, &name, &figures));
        }
        previous = next;
        let out = std::io::stdout();
        let mut out = out.lock();
        if clear {
            let _ = write!(out, "\x1b[2J\x1b[H");
        }
        print_table(&mut out, &rows);
        let _ = out.flush();
        if args.no_stream {
            return Ok(0);
        }
        std::thread::sleep(refresh);
    }
}

/// `events`: the per-root event log, filtered; followed until --until (or forever).
pub fn events(ctx: &Ctx, args: EventsArgs) -> anyhow::Result<i32> {
    use container::events;
    let filter = events::Filter::parse(&args.filter)?;
    let json = match args.format.as_deref() {
        None => false,
        Some("json") | Some("{{json .}}") => true,
        Some(other) => anyhow::bail!("unsupported --format {other:?}: use json"),
    };
    let (since, until) = container::logs::time_bounds(&args.since, &args.until)?;
    // Without --since, only what happens from now on.
    let mut offset = match since {
        Some(_) => 0,
        None => events::read_from(&ctx.root, 0).1,
    };
    loop {
        let (found, next) = events::read_from(&ctx.root, offset);
        offset = next;
        let out = std::io::stdout();
        let mut out = out.lock();
        for event in found {
            if since.as_ref().is_some_and(|s| event.time < *s) || !filter.matches(&event) {
                continue;
            }
            if until.as_ref().is_some_and(|u| event.time > *u) {
                return Ok(0);
            }
            let line = if json {
                serde_json::to_string(&event)?
            } else {
                event.line()
            };
            if writeln!(out, "{line}").is_err() {
                return Ok(0);
            }
        }
        let _ = out.flush();
        if until.as_ref().is_some_and(|u| crate::timefmt::now() > *u) {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_dockers_units() {
        assert_eq!(size(0, true), "0B");
        assert_eq!(size(1536 * 1024, true), "1.5MiB");
        assert_eq!(size(64 << 20, true), "64MiB");
        assert_eq!(size(1_234_567, true), "1.177MiB");
        assert_eq!(size(1234, false), "1.23kB");
        assert_eq!(size(999, false), "999B");
        assert_eq!(size(999_999, false), "1e+03kB");
    }
}
