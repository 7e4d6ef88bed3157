//! Verbs that act on existing containers: logs, rm, gc.

use clap::Args;

use super::Ctx;

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Container name or id
    pub container: String,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Container names or ids
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct GcArgs {}

pub fn logs(_ctx: &Ctx, _args: LogsArgs) -> anyhow::Result<i32> {
    anyhow::bail!("logs is not available yet")
}

pub fn rm(_ctx: &Ctx, _args: RmArgs) -> anyhow::Result<i32> {
    anyhow::bail!("rm is not available yet")
}

pub fn gc(ctx: &Ctx, _args: GcArgs) -> anyhow::Result<i32> {
    let report = ctx.store()?.gc()?;
    if !ctx.quiet {
        println!("{report}");
    }
    Ok(0)
}
