//! Verbs that act on existing containers: logs, rm, gc.

use std::io::Write;

use anyhow::Context;
use clap::Args;

use super::Ctx;
use crate::container;

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Container name or id (the log is <root>/containers/<id>/container.log)
    pub container: String,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Container names or ids
    #[arg(required = true)]
    pub containers: Vec<String>,
    /// Kill a running container first
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct GcArgs {}

/// Prints a container's output from `<root>/containers/<id>/container.log`, stdout to
/// stdout and stderr to stderr.
pub fn logs(ctx: &Ctx, args: LogsArgs) -> anyhow::Result<i32> {
    let record = container::find(&ctx.root, &args.container)?;
    let path = record.log_path();
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let (mut out, mut err) = (stdout.lock(), stderr.lock());
    match crate::runtime::replay_log(&path, &mut out, &mut err) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let _ = out.flush();
    Ok(0)
}

pub fn rm(ctx: &Ctx, args: RmArgs) -> anyhow::Result<i32> {
    let mut failed = false;
    for name in &args.containers {
        let result = container::find(&ctx.root, name)
            .and_then(|r| container::remove(&ctx.root, &r, args.force));
        match result {
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
        super::EXIT_RUNTIME_FAILED
    } else {
        0
    })
}

pub fn gc(ctx: &Ctx, _args: GcArgs) -> anyhow::Result<i32> {
    let reclaimed = container::reclaim_orphans(&ctx.root)?;
    let report = ctx.store()?.gc()?;
    if !ctx.quiet {
        for id in &reclaimed.removed {
            println!("removed orphaned container {id}");
        }
        for id in &reclaimed.marked_exited {
            println!("marked container {id} exited (its mycontainer process was killed)");
        }
        println!("{report}");
    }
    Ok(0)
}
