//! Verbs that act on existing containers: logs, rm, gc.

use std::path::Path;

use anyhow::Context;
use clap::Args;

use super::Ctx;
use crate::container;

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Container name or id (the log is <root>/containers/<id>/container.log)
    pub container: String,
    /// Keep printing new output until the container exits
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines ("all" for everything)
    #[arg(short = 'n', long, value_name = "N", default_value = "all")]
    pub tail: String,
    /// Prefix each line with its RFC 3339 timestamp
    #[arg(short, long)]
    pub timestamps: bool,
    /// Only output since this time (RFC 3339, Unix seconds, or a duration ago: 10m)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only output until this time (RFC 3339, Unix seconds, or a duration ago)
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Container names or ids
    #[arg(required = true)]
    pub containers: Vec<String>,
    /// Kill a running container first
    #[arg(short, long)]
    pub force: bool,
    /// Remove the container's anonymous volumes too
    #[arg(short, long)]
    pub volumes: bool,
}

#[derive(Args, Debug)]
pub struct GcArgs {}

/// Prints a container's output from `<root>/containers/<id>/container.log`, stdout to
/// stdout and stderr to stderr.
pub fn logs(ctx: &Ctx, args: LogsArgs) -> anyhow::Result<i32> {
    let record = container::find(&ctx.root, &args.container)?;
    let tail =
        match args.tail.as_str() {
            "all" => None,
            n => Some(n.parse::<usize>().with_context(|| {
                format!("invalid --tail {n:?}: give a number of lines or \"all\"")
            })?),
        };
    let path = record.log_path();
    let (since, until) = container::logs::time_bounds(&args.since, &args.until)?;
    let mut follower = container::logs::LogFollower::open(&path, tail, args.timestamps)
        .with_context(|| format!("cannot read {}", path.display()))?
        .window(since, until);
    if args.follow {
        follow(&record, &mut follower)?;
    } else {
        pump(&mut follower, &path)?;
    }
    if container::logs::output_lost(&path) {
        eprintln!(
            "mycontainer: warning: the log is incomplete: some output was lost when it \
             could not be written (disk full); free space under the state root"
        );
    }
    Ok(0)
}

/// Prints what the log holds now; a closed stdout ends quietly.
fn pump(follower: &mut container::logs::LogFollower, path: &Path) -> anyhow::Result<bool> {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let (mut out, mut err) = (stdout.lock(), stderr.lock());
    match follower.pump(&mut out, &mut err) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Prints the log as it grows until the container stops (nobody supervises it).
pub fn follow(
    record: &container::Record,
    follower: &mut container::logs::LogFollower,
) -> anyhow::Result<()> {
    let path = record.log_path();
    loop {
        // Checked before reading, so the output written before the exit is not missed.
        let running = record.is_supervised();
        if !pump(follower, &path)? || !running {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

pub fn rm(ctx: &Ctx, args: RmArgs) -> anyhow::Result<i32> {
    let mut failed = false;
    let store = ctx.store()?;
    for name in &args.containers {
        let result = container::find(&ctx.root, name)
            .and_then(|r| container::remove::remove(&store, &r, args.force, args.volumes));
        match result {
            // `rm -f` of a container that is not there: nothing to do, nothing printed.
            Err(err) if args.force && err.is::<container::NoSuchContainer>() => {}
            Ok(()) => {
                if !ctx.quiet {
                    println!("{name}");
                }
            }
            Err(err) => {
                eprintln!("mycontainer: {err:#}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        crate::exitcode::VERB_FAILED
    } else {
        0
    })
}

pub fn gc(ctx: &Ctx, _args: GcArgs) -> anyhow::Result<i32> {
    let collected = container::gc::collect(&ctx.root, &crate::registry::push::prune_push_cache)?;
    if !ctx.quiet {
        if collected.pruned > 0 {
            println!(
                "removed {} push cache entries of layers no longer stored",
                collected.pruned
            );
        }
        for id in &collected.reclaimed.removed {
            println!("removed orphaned container {id}");
        }
        for name in &collected.cgroups {
            println!("removed orphaned cgroup {name}");
        }
        for table in &collected.tables {
            println!("removed stale nftables table ip {table}");
        }
        for id in &collected.reclaimed.marked_exited {
            println!("marked container {id} exited (its mycontainer process was killed)");
        }
        println!("{}", collected.store);
    }
    Ok(0)
}
