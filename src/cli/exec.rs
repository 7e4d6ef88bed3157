//! `mycontainer exec`: a command inside a running container.

use clap::Args;

use super::Ctx;
use crate::container::{self, exec::ExecOptions};

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Keep stdin attached
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a terminal
    #[arg(short, long)]
    pub tty: bool,
    /// Set an environment variable (KEY=VALUE)
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User to run as: NAME, UID, NAME:GROUP or UID:GID
    #[arg(short, long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    pub container: String,
    /// Command and arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

pub fn exec(ctx: &Ctx, args: ExecArgs) -> anyhow::Result<i32> {
    let record = container::find(&ctx.root, &args.container)?;
    container::exec::exec(
        &ctx.root,
        &record,
        &ExecOptions {
            command: args.command,
            env: args.env,
            workdir: args.workdir,
            user: args.user,
            tty: args.tty,
            interactive: args.interactive,
        },
    )
}
