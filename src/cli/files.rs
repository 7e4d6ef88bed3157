//! `cp`, `diff`, `export`: a container's files.

use std::path::Path;

use anyhow::bail;
use clap::Args;

use super::Ctx;
use crate::container::{self, cp::HostSide};

#[derive(Args, Debug)]
pub struct CpArgs {
    /// Keep owners (uid/gid) as they are
    #[arg(short, long)]
    pub archive: bool,
    /// CONTAINER:SRC_PATH, a host path, or - (a tar stream on stdin)
    pub src: String,
    /// CONTAINER:DEST_PATH, a host path, or - (a tar stream on stdout)
    pub dest: String,
}

/// `CONTAINER:PATH` as the docker CLI splits it: a colon before any slash, and not a
/// path that starts with / or . (those are local).
fn container_path(arg: &str) -> Option<(&str, &str)> {
    if arg.starts_with(['/', '.']) {
        return None;
    }
    let (name, path) = arg.split_once(':')?;
    (!name.is_empty() && !name.contains('/')).then_some((name, path))
}

pub fn cp(ctx: &Ctx, args: CpArgs) -> anyhow::Result<i32> {
    match (container_path(&args.src), container_path(&args.dest)) {
        (Some((name, src)), None) => {
            let record = container::find(&ctx.root, name)?;
            let src = if src.is_empty() { "/" } else { src };
            let mut out = std::io::BufWriter::new(std::io::stdout());
            let dest = if args.dest == "-" {
                HostSide::Tar
            } else {
                HostSide::Path(Path::new(&args.dest))
            };
            container::cp::copy_out(&record, src, dest, &mut out, args.archive)?;
            std::io::Write::flush(&mut out)?;
        }
        (None, Some((name, dest))) => {
            let record = container::find(&ctx.root, name)?;
            let dest = if dest.is_empty() { "/" } else { dest };
            let mut input = std::io::stdin();
            let src = if args.src == "-" {
                HostSide::Tar
            } else {
                HostSide::Path(Path::new(&args.src))
            };
            container::cp::copy_in(&record, src, &mut input, dest, args.archive)?;
        }
        (Some(_), Some(_)) => {
            bail!("copying between containers is not supported: copy through the host")
        }
        (None, None) => {
            bail!("cp needs a container path: CONTAINER:PATH as its source or destination")
        }
    }
    Ok(0)
}
