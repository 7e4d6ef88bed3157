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

#[derive(Args, Debug)]
pub struct DiffArgs {
    pub container: String,
}

/// `diff`: A, C, D lines of what the container changed.
pub fn diff(ctx: &Ctx, args: DiffArgs) -> anyhow::Result<i32> {
    let record = container::find(&ctx.root, &args.container)?;
    for change in container::diff::diff(&record)? {
        println!("{} {}", change.kind, change.path);
    }
    Ok(0)
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    pub container: String,
    /// Write to this file instead of stdout
    #[arg(short, long)]
    pub output: Option<std::path::PathBuf>,
}

/// `export`: the container's filesystem as a tar.
pub fn export(ctx: &Ctx, args: ExportArgs) -> anyhow::Result<i32> {
    use anyhow::Context;
    let record = container::find(&ctx.root, &args.container)?;
    match &args.output {
        Some(path) => {
            let file = crate::umask::create_for_caller(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let mut out = std::io::BufWriter::new(file);
            container::diff::export(&record, &mut out)?;
            std::io::Write::flush(&mut out)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        None => {
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                bail!("export writes a tar: redirect stdout or use -o FILE");
            }
            let mut out = std::io::BufWriter::new(std::io::stdout());
            container::diff::export(&record, &mut out)?;
            std::io::Write::flush(&mut out)?;
        }
    }
    Ok(0)
}
