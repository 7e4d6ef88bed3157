//! `mycontainer run`: flags -> container record -> runtime.

use clap::Args;

use super::Ctx;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Image to run
    pub image: String,
    /// Command and arguments (default: the image's)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

pub fn main(_ctx: &Ctx, _args: RunArgs) -> anyhow::Result<i32> {
    anyhow::bail!("run is not available yet")
}
