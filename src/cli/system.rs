//! `mycontainer system ...`: whole-state-root verbs.

use clap::{Args, Subcommand};

use super::Ctx;
use crate::container;

#[derive(Args, Debug)]
pub struct SystemArgs {
    #[command(subcommand)]
    command: SystemCommand,
}

#[derive(Subcommand, Debug)]
enum SystemCommand {
    /// Verify the store (every blob's digest, every image down to its layers, temp
    /// leftovers) and the container records against reality; exit 1 when something is
    /// wrong, one line per finding
    Check(CheckArgs),
}

#[derive(Args, Debug)]
struct CheckArgs {
    /// Fix what can be fixed: remove corrupt blobs and broken images, unpack missing
    /// layers again from their blobs, rebuild a corrupt index, remove leftovers
    #[arg(long)]
    repair: bool,
}

pub fn main(ctx: &Ctx, args: SystemArgs) -> anyhow::Result<i32> {
    match args.command {
        SystemCommand::Check(args) => check(ctx, args),
    }
}

fn check(ctx: &Ctx, args: CheckArgs) -> anyhow::Result<i32> {
    let findings = container::check::check(&ctx.root, args.repair)?;
    for finding in &findings {
        println!("{finding}");
    }
    let unrepaired = findings.iter().filter(|f| f.repair.is_none()).count();
    if findings.is_empty() && !ctx.quiet {
        println!("no problems found");
    }
    // Exit 1 while anything is still wrong: all found without --repair, or what the
    // repair could not fix.
    Ok(if unrepaired > 0 { 1 } else { 0 })
}
