//! `container prune`, `system prune|df|check|boot`, `rename`.

use clap::{Args, Subcommand};

use super::format::{human_size, print_rows_with};
use super::Ctx;
use crate::container;

#[derive(Args, Debug)]
pub struct ContainerArgs {
    #[command(subcommand)]
    pub command: ContainerCommand,
}

#[derive(Subcommand, Debug)]
pub enum ContainerCommand {
    /// Remove every stopped container
    Prune(ForceArgs),
}

#[derive(Args, Debug)]
pub struct ForceArgs {
    /// Do not ask (nothing is asked: accepted for Docker's scripts)
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct SystemArgs {
    #[command(subcommand)]
    pub command: SystemCommand,
}

#[derive(Subcommand, Debug)]
pub enum SystemCommand {
    /// Remove stopped containers, dangling images (all unused with -a), and with
    /// --volumes the anonymous volumes no container uses
    Prune(SystemPruneArgs),
    /// Show the space images, containers and volumes take
    Df(DfArgs),
    /// Start the containers whose restart policy says they run after a reboot
    Boot,
    /// Verify the store (every blob's digest, every image down to its layers), the
    /// container records and the networks (configs, leases, bridges, nftables tables)
    /// against reality; exit 1 when something is wrong, one line per finding
    Check(CheckArgs),
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Fix what can be fixed: remove corrupt blobs and broken images, unpack missing
    /// layers again from their blobs, rebuild a corrupt index, remove leftovers, free
    /// stale leases, rebuild a network's unreadable config or missing bridge and rules
    #[arg(long)]
    pub repair: bool,
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

#[derive(Args, Debug)]
pub struct SystemPruneArgs {
    /// Remove every image no container uses, not only dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Remove the anonymous volumes no container uses too
    #[arg(long)]
    pub volumes: bool,
    /// Do not ask (nothing is asked: accepted for Docker's scripts)
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct DfArgs {
    /// Go template or json
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct RenameArgs {
    pub container: String,
    pub new_name: String,
}

fn print_removed(title: &str, ids: &[String]) {
    if !ids.is_empty() {
        println!("{title}:");
        for id in ids {
            println!("{id}");
        }
        println!();
    }
}

pub fn container(ctx: &Ctx, args: ContainerArgs) -> anyhow::Result<i32> {
    match args.command {
        ContainerCommand::Prune(_) => {
            let store = ctx.store()?;
            let (ids, bytes) = container::prune::prune_containers(&store)?;
            print_removed("Deleted Containers", &ids);
            println!("Total reclaimed space: {}", human_size(bytes));
            Ok(0)
        }
    }
}

/// `image prune [-a]`.
pub fn image_prune(ctx: &Ctx, all: bool) -> anyhow::Result<i32> {
    let store = ctx.store()?;
    let (ids, bytes) = container::prune::prune_images(&store, all)?;
    print_removed("Deleted Images", &ids);
    println!("Total reclaimed space: {}", human_size(bytes));
    Ok(0)
}

pub fn system(ctx: &Ctx, args: SystemArgs) -> anyhow::Result<i32> {
    let args = match args.command {
        // Opens the store itself (after nothing else touched it).
        SystemCommand::Check(args) => return check(ctx, args),
        SystemCommand::Boot => return super::policies::boot(ctx),
        other => other,
    };
    let store = ctx.store()?;
    match args {
        SystemCommand::Check(_) | SystemCommand::Boot => unreachable!("handled above"),
        SystemCommand::Prune(a) => {
            let (containers, c_bytes) = container::prune::prune_containers(&store)?;
            print_removed("Deleted Containers", &containers);
            let (volumes, v_bytes) = if a.volumes {
                container::volumes::prune(&ctx.root, false)?
            } else {
                (Vec::new(), 0)
            };
            print_removed("Deleted Volumes", &volumes);
            let (images, i_bytes) = container::prune::prune_images(&store, a.all)?;
            print_removed("Deleted Images", &images);
            println!(
                "Total reclaimed space: {}",
                human_size(c_bytes + v_bytes + i_bytes)
            );
            Ok(0)
        }
        SystemCommand::Df(a) => {
            let rows = container::prune::df(&store)?;
            if let Some(format) = a.format {
                let values = rows
                    .iter()
                    .map(|r| {
                        let mut v = serde_json::to_value(r)?;
                        v["Size"] = human_size(r.size).into();
                        v["Reclaimable"] = human_size(r.reclaimable).into();
                        v["TotalCount"] = r.total_count.into();
                        Ok(v)
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                print_rows_with(&format, &values, &[("TotalCount", "TOTAL")])?;
                return Ok(0);
            }
            println!("TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE");
            for r in rows {
                let pct = (r.reclaimable * 100)
                    .checked_div(r.size)
                    .map(|p| format!(" ({p}%)"))
                    .unwrap_or_default();
                println!(
                    "{:<16}{:<10}{:<10}{:<10}{}{pct}",
                    r.kind,
                    r.total_count,
                    r.active,
                    human_size(r.size),
                    human_size(r.reclaimable)
                );
            }
            Ok(0)
        }
    }
}

pub fn rename(ctx: &Ctx, args: RenameArgs) -> anyhow::Result<i32> {
    let record = container::find(&ctx.root, &args.container)?;
    container::rename::rename(&ctx.root, &record, &args.new_name)?;
    Ok(0)
}
