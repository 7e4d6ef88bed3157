//! `mycontainer image ...`

use clap::{Args, Subcommand};

use super::Ctx;

#[derive(Args, Debug)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// List images
    Ls,
}

pub fn main(_ctx: &Ctx, _args: ImageArgs) -> anyhow::Result<i32> {
    anyhow::bail!("not yet")
}
