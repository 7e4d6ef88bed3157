//! `mycontainer image ...`: build, import, ls, inspect, tag, rm.

use anyhow::Context;
use clap::{Args, Subcommand};
use mycontainer_store::{Image, ImageSpec, ImportSource, Reference, Store};
use serde_json::json;

use super::progress::ByteProgress;
use super::Ctx;
use crate::builder;

#[derive(Args, Debug)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Build an image from a Containerfile (-f FILE CONTEXT, or a context directory
    /// holding one) or from a recipe: a built-in name (busybox, debian) or a recipe file
    Build(BuildArgs),
    /// Show the history of an image (its steps, newest first)
    History(HistoryArgs),
    /// Import a rootfs tarball (plain, gzip or zstd; "-" reads stdin) as a one-layer image
    Import(ImportArgs),
    /// List images
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Show an image's metadata as JSON
    Inspect(InspectArgs),
    /// Give an image another name
    Tag(TagArgs),
    /// Remove image names; delete the image when its last name goes
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Write images to an archive (OCI, or docker-archive with --format docker)
    Save(super::archive::SaveArgs),
    /// Load images from an archive (OCI or docker-archive, plain or compressed)
    Load(super::archive::LoadArgs),
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// The build context directory (with -f, or holding a Containerfile or Dockerfile);
    /// else a recipe: a built-in name (see recipes/) or the path of a recipe file (.toml)
    pub recipe: String,
    /// Debian mirror for debootstrap recipes (default: the recipe's, else the host's apt sources)
    #[arg(long)]
    pub mirror: Option<String>,
    /// The Containerfile or Dockerfile (default: CONTEXT/Containerfile, else CONTEXT/Dockerfile)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<std::path::PathBuf>,
    /// Name the image NAME[:TAG] (repeatable)
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    /// Set a build argument (an ARG's value): KEY=VALUE, or KEY to take ours
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// Build up to this stage (its name or index), not the last
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Run every step, reusing nothing from earlier builds
    #[arg(long)]
    pub no_cache: bool,
    /// Fixed times for a reproducible image: Unix seconds (default: $SOURCE_DATE_EPOCH)
    #[arg(long, value_name = "SECONDS")]
    pub timestamp: Option<u64>,
    /// Network of RUN steps: none (loopback only, the default) or host
    #[arg(long, value_enum, default_value = "none")]
    pub network: super::run::NetworkMode,
    /// Memory limit of RUN steps
    #[arg(short = 'm', long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// CPU quota of RUN steps, in CPUs
    #[arg(long, value_name = "N")]
    pub cpus: Option<String>,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Image name or id
    pub image: String,
    /// Do not cut long CREATED BY entries
    #[arg(long)]
    pub no_trunc: bool,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Tarball to import, or "-" for standard input
    pub file: String,
    /// Name for the image (NAME[:TAG], tag defaults to latest)
    pub name: Option<String>,
}

#[derive(Args, Debug)]
pub struct LsArgs {}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Image names or ids
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct TagArgs {
    /// Existing image (name or id)
    pub source: String,
    /// New name (NAME[:TAG])
    pub target: String,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Image names or ids
    #[arg(required = true)]
    pub images: Vec<String>,
}

pub fn main(ctx: &Ctx, args: ImageArgs) -> anyhow::Result<i32> {
    match args.command {
        ImageCommand::Build(args) => build_image(ctx, args),
        ImageCommand::History(args) => super::build::history(ctx, args),
        ImageCommand::Import(args) => import(ctx, args),
        ImageCommand::Ls(_) => list(ctx),
        ImageCommand::Inspect(args) => inspect(ctx, args),
        ImageCommand::Tag(args) => tag(ctx, args),
        ImageCommand::Rm(args) => remove(ctx, args),
        ImageCommand::Save(args) => super::archive::save(ctx, args),
        ImageCommand::Load(args) => super::archive::load(ctx, args),
    }
}

fn build_image(ctx: &Ctx, args: BuildArgs) -> anyhow::Result<i32> {
    if let Some(code) = super::build::containerfile_build(ctx, &args)? {
        return Ok(code);
    }
    let recipe = builder::Recipe::find(&args.recipe)?;
    // -t names it too; checked before any work is done.
    let extra_tags = args
        .tags
        .iter()
        .map(|t| Reference::parse(t).with_context(|| format!("invalid tag {t:?}: use NAME[:TAG]")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let options = builder::BuildOptions {
        mirror: args.mirror,
    };
    let store = ctx.store()?;
    let reporter = ByteProgress::new("importing", ctx.quiet);
    let image = builder::build(&store, &recipe, &options, &reporter)?;
    for reference in &extra_tags {
        store.tag(&image.id.to_string(), reference)?;
    }
    print_id(ctx, &image);
    Ok(0)
}

/// The image `name` for `run`, built first from its built-in recipe when it is missing
/// and builds automatically (so `mycontainer run busybox` works on a fresh machine).
pub fn ensure_image(ctx: &Ctx, store: &Store, name: &str) -> anyhow::Result<Image> {
    let reporter = ByteProgress::new("importing", ctx.quiet);
    builder::ensure_image(store, name, &reporter)
}

fn import(ctx: &Ctx, args: ImportArgs) -> anyhow::Result<i32> {
    // Parse the name first: a bad name must fail before any work is done.
    let name = args.name.as_deref().map(Reference::parse).transpose()?;
    let store = ctx.store()?;
    let progress = ByteProgress::new("importing", ctx.quiet);
    let spec = ImageSpec {
        created: Some(crate::timefmt::now_seconds()),
        created_by: Some(format!("mycontainer image import {}", args.file)),
        ..ImageSpec::default()
    };
    let source = if args.file == "-" {
        ImportSource::Stream(Box::new(std::io::stdin()))
    } else {
        ImportSource::File(std::path::Path::new(&args.file))
    };
    let (image, _) = store
        .import_image(source, &spec, name.as_ref(), &progress)
        .with_context(|| format!("cannot import {}", args.file))?;
    print_id(ctx, &image);
    Ok(0)
}

fn print_id(_ctx: &Ctx, image: &Image) {
    println!("{}", image.id);
}

fn list(ctx: &Ctx) -> anyhow::Result<i32> {
    let images = ctx.store()?.images()?;
    if ctx.quiet {
        for image in &images {
            println!("{}", image.id.short());
        }
        return Ok(0);
    }
    println!(
        "{:<30} {:<12} {:<14} {:<22} {:>10}",
        "REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"
    );
    for image in &images {
        let created = image.created().unwrap_or("-");
        let created = created.get(..19).unwrap_or(created).replace('T', " ");
        let size = human_size(image.size);
        let names = if image.names.is_empty() {
            vec!["<none>:<none>".to_string()]
        } else {
            image.names.clone()
        };
        for name in names {
            let (repo, tag) = name.rsplit_once(':').unwrap_or((&name, ""));
            println!(
                "{:<30} {:<12} {:<14} {:<22} {:>10}",
                repo,
                tag,
                image.id.short(),
                created,
                size
            );
        }
    }
    Ok(0)
}

fn inspect(ctx: &Ctx, args: InspectArgs) -> anyhow::Result<i32> {
    let store = ctx.store()?;
    let mut out = Vec::new();
    for wanted in &args.images {
        let image = store.image(wanted)?;
        out.push(json!({
            "Id": image.id,
            "RepoTags": image.names,
            "Digest": image.manifest_digest,
            "Created": image.created(),
            "Size": image.size,
            "Architecture": image.config.architecture().to_string(),
            "Os": image.config.os().to_string(),
            "Layers": image.layers,
            "Config": image.config.config(),
            "History": image.config.history(),
        }));
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(0)
}

fn tag(ctx: &Ctx, args: TagArgs) -> anyhow::Result<i32> {
    let target = Reference::parse(&args.target)?;
    ctx.store()?.tag(&args.source, &target)?;
    Ok(0)
}

fn remove(ctx: &Ctx, args: RmArgs) -> anyhow::Result<i32> {
    let store = ctx.store()?;
    for wanted in &args.images {
        let (names, deleted) = store.remove_image(wanted)?;
        if !ctx.quiet {
            for name in names {
                println!("Untagged: {name}");
            }
            if deleted {
                println!("Deleted: {wanted}");
            }
        }
    }
    Ok(0)
}

/// Sizes as `docker images` shows them (decimal units).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.3}{}", UNITS[unit]).replacen(".000", "", 1)
    }
}
