//! `mycontainer network create | ls | inspect | rm`.

use clap::{Args, Subcommand};

use super::Ctx;
use crate::container::network::manage;

#[derive(Args, Debug)]
pub struct NetworkArgs {
    #[command(subcommand)]
    pub command: NetworkCommand,
}

#[derive(Subcommand, Debug)]
pub enum NetworkCommand {
    /// Create a bridge network whose containers reach each other by name
    Create(CreateArgs),
    /// List networks
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Show networks as JSON (subnet, gateway, attached containers)
    Inspect(InspectArgs),
    /// Remove networks no container uses
    #[command(alias = "remove")]
    Rm(RmArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    pub name: String,
    /// The network's IPv4 subnet (CIDR); default: a free private one
    #[arg(long)]
    pub subnet: Option<String>,
    /// Containers reach only each other: no route out, no masquerade
    #[arg(long)]
    pub internal: bool,
}

#[derive(Args, Debug)]
pub struct LsArgs {}

#[derive(Args, Debug)]
pub struct InspectArgs {
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    #[arg(required = true)]
    pub names: Vec<String>,
}

pub fn main(ctx: &Ctx, args: NetworkArgs) -> anyhow::Result<i32> {
    match args.command {
        NetworkCommand::Create(a) => {
            let config = manage::create(&ctx.root, &a.name, a.subnet.as_deref(), a.internal)?;
            println!("{}", config.id);
        }
        NetworkCommand::Ls(_) => {
            let rows = manage::list(&ctx.root)?;
            if ctx.quiet {
                for (id, name, _) in rows {
                    println!(
                        "{}",
                        if id.is_empty() {
                            name
                        } else {
                            id[..12].to_string()
                        }
                    );
                }
            } else {
                println!("{:<14}{:<20}{:<10}SCOPE", "NETWORK ID", "NAME", "DRIVER");
                for (id, name, driver) in rows {
                    let short = if id.len() >= 12 { &id[..12] } else { "" };
                    println!("{short:<14}{name:<20}{driver:<10}local");
                }
            }
        }
        NetworkCommand::Inspect(a) => {
            let mut all = Vec::new();
            for name in &a.names {
                all.push(manage::inspect(&ctx.root, name)?);
            }
            println!("{}", serde_json::to_string_pretty(&all)?);
        }
        NetworkCommand::Rm(a) => {
            let mut failed = None;
            for name in &a.names {
                match manage::remove(&ctx.root, name) {
                    Ok(removed) => println!("{removed}"),
                    Err(e) => {
                        eprintln!("mycontainer: {e:#}");
                        failed = Some(1);
                    }
                }
            }
            if let Some(code) = failed {
                return Ok(code);
            }
        }
    }
    Ok(0)
}

#[derive(Args, Debug)]
pub struct PortArgs {
    /// The container (name or id)
    pub container: String,
}

/// `mycontainer port NAME`: its published ports, as `docker port` prints them.
pub fn port(ctx: &Ctx, args: PortArgs) -> anyhow::Result<i32> {
    let record = crate::container::find(&ctx.root, &args.container)?;
    if let Some(attachment) = crate::container::network::attachment(&ctx.root, &record.id) {
        for p in &attachment.ports {
            println!("{}", p.show());
        }
    }
    Ok(0)
}
