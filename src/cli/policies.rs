//! What the restart policies and healthchecks need from the command line: `system
//! boot` (start what the policies say should run after a reboot), `generate systemd`
//! (units that call it, or own one container) and `healthcheck run`.

use clap::{Args, Subcommand};

use super::Ctx;
use crate::container;
use crate::exitcode;

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(subcommand)]
    pub command: GenerateCommand,
}

#[derive(Subcommand, Debug)]
pub enum GenerateCommand {
    /// Print a systemd unit running `system boot`, or one owning container NAME
    Systemd {
        /// The container the unit owns (default: the boot unit for every container)
        name: Option<String>,
    },
}

/// `system boot`: starts the containers whose restart policy says they run after a
/// reboot; prints each name started.
pub fn boot(ctx: &Ctx) -> anyhow::Result<i32> {
    let mut code = 0;
    for booted in container::boot::boot(&ctx.root)? {
        match booted.result {
            Ok(None) => println!("{}", booted.name),
            Ok(Some(_)) => code = exitcode::VERB_FAILED,
            Err(err) => {
                eprintln!("mycontainer: cannot start {}: {err:#}", booted.name);
                code = exitcode::VERB_FAILED;
            }
        }
    }
    Ok(code)
}

pub fn generate(ctx: &Ctx, args: GenerateArgs) -> anyhow::Result<i32> {
    let GenerateCommand::Systemd { name } = args.command;
    let exe = std::env::current_exe()
        .map_err(|e| anyhow::anyhow!("cannot find our own executable: {e}"))?;
    match name {
        None => print!("{}", container::systemd::boot_unit(&exe, &ctx.root)),
        Some(name) => {
            let record = container::find(&ctx.root, &name)?;
            let state = record.load_state()?;
            print!(
                "{}",
                container::systemd::container_unit(&exe, &ctx.root, &record, &state)
            );
        }
    }
    Ok(0)
}

#[derive(Args, Debug)]
pub struct HealthcheckArgs {
    #[command(subcommand)]
    pub command: HealthcheckCommand,
}

#[derive(Subcommand, Debug)]
pub enum HealthcheckCommand {
    /// Run a container's healthcheck once; exit 0 when healthy, 1 when not
    Run { container: String },
}

pub fn healthcheck(ctx: &Ctx, args: HealthcheckArgs) -> anyhow::Result<i32> {
    let HealthcheckCommand::Run { container: name } = args.command;
    let record = container::find(&ctx.root, &name)?;
    let status = container::health::run_once(&ctx.root, &record)?;
    println!("{status}");
    Ok(if status == "healthy" {
        0
    } else {
        exitcode::VERB_FAILED
    })
}
