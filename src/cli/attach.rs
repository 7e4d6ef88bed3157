//! `attach NAME`: connects to a detached container's stdio through its supervisor.

use clap::{ArgAction, Args};

use super::Ctx;
use crate::container::{self, attach};

#[derive(Args, Debug)]
pub struct AttachArgs {
    /// Keys that detach and leave the container running (Docker's syntax: ctrl-<letter>,
    /// comma-separated)
    #[arg(long, value_name = "KEYS", default_value = attach::DEFAULT_DETACH_KEYS)]
    pub detach_keys: String,
    /// Do not send our stdin to the container
    #[arg(long)]
    pub no_stdin: bool,
    /// Pass the signals we receive on to the container (without a terminal)
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub sig_proxy: bool,
    pub container: String,
}

pub fn attach(ctx: &Ctx, args: AttachArgs) -> anyhow::Result<i32> {
    let detach_keys = attach::parse_detach_keys(&args.detach_keys)?;
    let record = container::find(&ctx.root, &args.container)?;
    attach::attach(
        &ctx.root,
        &record,
        &attach::AttachOptions {
            detach_keys,
            sig_proxy: args.sig_proxy,
            no_stdin: args.no_stdin,
        },
    )
}
