//! `mycontainer image ...`: build, import, ls, inspect, tag, rm.

use anyhow::Context;
use clap::{Args, Subcommand};
use mycontainer_store::{Image, ImageSpec, ImportSource, Reference, Store};
use serde_json::json;

use super::format::human_size;
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
    /// Remove dangling images (every image no container uses with -a)
    Prune(PruneArgs),
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove every image no container uses, not only dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not ask (nothing is asked: accepted for Docker's scripts)
    #[arg(short, long)]
    pub force: bool,
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
    /// Network of RUN steps: bridge (the default network, as Docker), none, host, or a
    /// network's name
    #[arg(long, default_value = "bridge", value_name = "NETWORK")]
    pub network: String,
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
pub struct LsArgs {
    /// Show whole image ids
    #[arg(long)]
    pub no_trunc: bool,
    /// Filter: reference=GLOB, dangling=true|false, label=KEY[=VALUE]
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Go template ({{.Repository}}:{{.Tag}}, {{json .}}, table ...) or json
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Image names or ids
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Go template or json
    #[arg(short, long)]
    pub format: Option<String>,
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
    /// Remove every name of an image given by id; for an image a container uses,
    /// remove the name and keep the image (untagged) for the container
    #[arg(short, long)]
    pub force: bool,
}

pub fn main(ctx: &Ctx, args: ImageArgs) -> anyhow::Result<i32> {
    match args.command {
        ImageCommand::Build(args) => build_image(ctx, args),
        ImageCommand::History(args) => super::build::history(ctx, args),
        ImageCommand::Import(args) => import(ctx, args),
        ImageCommand::Ls(args) => list(ctx, args),
        ImageCommand::Inspect(args) => inspect(ctx, args),
        ImageCommand::Tag(args) => tag(ctx, args),
        ImageCommand::Rm(args) => remove(ctx, args),
        ImageCommand::Save(args) => super::archive::save(ctx, args),
        ImageCommand::Load(args) => super::archive::load(ctx, args),
        ImageCommand::Prune(args) => super::system::image_prune(ctx, args.all),
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

fn list(ctx: &Ctx, args: LsArgs) -> anyhow::Result<i32> {
    let filters =
        super::filters::Filters::parse(&args.filter, &["reference", "dangling", "label"])?;
    let (images, damaged) = ctx.store()?.scan_images()?;
    // A damaged image is named on stderr, so the listing of the others stays intact for
    // scripts and one bad blob never hides the rest.
    for image in &damaged {
        let name = image
            .names
            .first()
            .cloned()
            .unwrap_or_else(|| image.manifest_digest.to_string());
        eprintln!(
            "mycontainer: warning: image {name} is damaged: {}; remove it with `mycontainer image rm {name}`",
            image.reason
        );
    }
    // One row per name (`<none>:<none>` for a dangling image), each matched on its own.
    let mut rows: Vec<(&Image, String)> = Vec::new();
    for image in &images {
        let labels = image
            .config
            .config()
            .as_ref()
            .and_then(|c| c.labels().clone())
            .unwrap_or_default()
            .into_iter()
            .collect();
        let names: Vec<Option<String>> = if image.names.is_empty() {
            vec![None]
        } else {
            image.names.iter().cloned().map(Some).collect()
        };
        for name in names {
            let as_list: Vec<String> = name.iter().cloned().collect();
            if super::filters::image_matches(&filters, &as_list, &labels) {
                rows.push((image, name.unwrap_or_else(|| "<none>:<none>".into())));
            }
        }
    }
    if ctx.quiet {
        let mut seen = std::collections::BTreeSet::new();
        for (image, _) in &rows {
            if seen.insert(image.id.to_string()) {
                println!("{}", image.id.short());
            }
        }
        return Ok(0);
    }
    // As `docker images`: newest first (then by name).
    let created = |image: &Image| image.created().and_then(crate::timefmt::parse).unwrap_or(0);
    rows.sort_by(|(a, a_name), (b, b_name)| {
        created(b).cmp(&created(a)).then_with(|| a_name.cmp(b_name))
    });
    let now = crate::container::state::now_unix();
    let values: Vec<serde_json::Value> = rows
        .iter()
        .map(|(image, name)| {
            let (repo, tag) = name.rsplit_once(':').unwrap_or((name, ""));
            let since = match image.created().and_then(crate::timefmt::parse) {
                Some(at) => format!(
                    "{} ago",
                    super::lifecycle::human_duration(now.saturating_sub(at))
                ),
                None => "N/A".to_string(),
            };
            json!({
                "Repository": repo,
                "Tag": tag,
                "ID": if args.no_trunc { image.id.to_string() } else { image.id.short().to_string() },
                "Digest": image.manifest_digest.to_string(),
                "CreatedAt": image.created().unwrap_or(""),
                "CreatedSince": since,
                "Size": human_size(image.size),
            })
        })
        .collect();
    let headers = [("ID", "IMAGE ID"), ("CreatedSince", "CREATED")];
    // Docker's default: a table whose columns grow to fit long names and tags.
    let format = args
        .format
        .as_deref()
        .unwrap_or("table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}");
    if values.is_empty() && args.format.is_none() {
        println!("REPOSITORY   TAG       IMAGE ID   CREATED   SIZE");
        return Ok(0);
    }
    super::format::print_rows_with(format, &values, &headers)?;
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
    match &args.format {
        Some(format) => super::format::print_each(format, &out)?,
        None => println!("{}", serde_json::to_string_pretty(&out)?),
    }
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
        // A damaged image has no config to compare with containers: it is removed as it is.
        let image = store.image(wanted).ok();
        let by_name = Reference::parse(wanted)
            .ok()
            .map(|r| r.to_string())
            .is_some_and(|n| image.as_ref().is_some_and(|i| i.names.contains(&n)));
        let mut keep_for_containers = false;
        if let Some(image) = &image {
            // As Docker: an id names every tag of the image, so it takes -f to drop
            // several names at once; one name of several is just untagged.
            if !by_name && image.names.len() > 1 && !args.force {
                anyhow::bail!(
                    "cannot remove image {wanted}: it is tagged {}; remove the names one by one or use -f",
                    image.names.join(", ")
                );
            }
            let last_name = !by_name || image.names.len() <= 1;
            let users =
                crate::container::usage::containers_using(&ctx.root, &image.id.to_string())?;
            if let (true, Some(user)) = (last_name, users.first()) {
                if !args.force {
                    anyhow::bail!(
                        "cannot remove image {wanted}: container {} uses it ({}); remove the container first, or use -f to remove only the name",
                        user.short_id,
                        if user.running { "running" } else { "stopped" },
                    );
                }
                keep_for_containers = true;
            }
        }
        let (names, deleted) = if keep_for_containers {
            (store.untag_image(wanted)?, false)
        } else {
            store.remove_image(wanted)?
        };
        if !ctx.quiet {
            for name in names {
                println!("Untagged: {name}");
            }
            if deleted {
                match &image {
                    Some(image) => println!("Deleted: {}", image.id),
                    None => println!("Deleted: {wanted}"),
                }
            }
        }
    }
    Ok(0)
}
