//! `mycontainer image save|load`: parse and call into `crate::archive`.

use std::io::{BufWriter, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;

use super::registry::TerminalReporter;
use super::Ctx;
use crate::archive::{self, ArchiveFormat, LoadInput};

#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Images to save (names or ids)
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Write to this file ("-" or none: standard output)
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Archive format
    #[arg(long, value_enum, default_value = "oci")]
    pub format: ArchiveFormat,
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Read from this file, plain or gzip/zstd-compressed ("-" or none: standard input)
    #[arg(short, long)]
    pub input: Option<PathBuf>,
}

pub fn save(ctx: &Ctx, args: SaveArgs) -> anyhow::Result<i32> {
    let store = ctx.store()?;
    // `-o -` is standard output, as everywhere else.
    let output = args.output.filter(|o| o.as_os_str() != "-");
    let Some(output) = output else {
        let stdout = std::io::stdout();
        if stdout.is_terminal() {
            bail!(
                "refusing to write an archive to a terminal: give -o FILE or redirect the output"
            );
        }
        let mut out = BufWriter::new(stdout.lock());
        archive::save(&store, &args.images, args.format, &mut out)?;
        return Ok(0);
    };
    // Written next to the target and renamed: a failed save leaves no partial archive.
    let name = output
        .file_name()
        .with_context(|| format!("{} is not a file name", output.display()))?;
    let partial = output.with_file_name(format!(
        ".{}.partial-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> anyhow::Result<()> {
        let file = crate::umask::create_for_caller(&partial)
            .with_context(|| format!("cannot create {}", output.display()))?;
        let mut out = BufWriter::new(file);
        archive::save(&store, &args.images, args.format, &mut out)?;
        let file = out
            .into_inner()
            .map_err(|e| anyhow::anyhow!("cannot write {}: {}", output.display(), e.error()))?;
        file.sync_all()
            .with_context(|| format!("cannot write {}", output.display()))?;
        std::fs::rename(&partial, &output)
            .with_context(|| format!("cannot write {}", output.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result?;
    Ok(0)
}

pub fn load(ctx: &Ctx, args: LoadArgs) -> anyhow::Result<i32> {
    let store = ctx.store()?;
    let reporter = TerminalReporter::new(ctx.quiet);
    // `-i -` is standard input, as everywhere else.
    let file = args.input.as_ref().filter(|i| i.as_os_str() != "-");
    let input = match file {
        Some(path) => LoadInput::File(path),
        None => {
            if std::io::stdin().is_terminal() {
                bail!("no archive to load: give -i FILE or pipe one into standard input");
            }
            LoadInput::Stream(Box::new(std::io::stdin().lock()))
        }
    };
    let what = file.map_or("standard input".to_string(), |p| p.display().to_string());
    let loaded =
        archive::load(&store, input, &reporter).with_context(|| format!("cannot load {what}"))?;
    reporter.done();
    let mut stdout = std::io::stdout().lock();
    for (image, names) in loaded {
        if names.is_empty() {
            writeln!(stdout, "Loaded image ID: {}", image.id)?;
        }
        for name in names {
            writeln!(stdout, "Loaded image: {name}")?;
        }
    }
    Ok(0)
}
