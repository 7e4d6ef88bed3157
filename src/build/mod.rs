//! Image recipes: builds base images (busybox, debian, or a recipe file) into the store.

mod busybox;
mod debootstrap;
mod recipe;

use std::io::Cursor;

use anyhow::Context;
use mycontainer_store::{Error as StoreError, Image, ImageSpec, ImportSource, Reference, Store};
use oci_spec::image::ConfigBuilder;

pub use recipe::{Builder, Recipe};

use crate::cli::progress::ByteProgress;
use crate::cli::Ctx;

pub struct BuildOptions {
    /// Overrides the recipe's Debian mirror.
    pub mirror: Option<String>,
}

/// Builds `recipe` and tags the image `name:TAG` for each of its tags.
pub fn build(ctx: &Ctx, recipe: &Recipe, options: &BuildOptions) -> anyhow::Result<Image> {
    let store = ctx.store()?;
    let mut references = recipe
        .tags
        .iter()
        .map(|tag| Reference::parse(&format!("{}:{tag}", recipe.name)))
        .collect::<Result<Vec<_>, _>>()?;
    if references.is_empty() {
        references.push(Reference::parse(&recipe.name)?);
    }
    let created = recipe
        .created
        .clone()
        .unwrap_or_else(crate::timefmt::now_seconds);
    let spec = image_spec(recipe, &created)?;
    let progress = ByteProgress::new("importing", ctx.quiet);
    let scratch = store.temp_dir("build")?;

    let (image, _) = match recipe.builder {
        Builder::Busybox => {
            let section = recipe
                .busybox
                .as_ref()
                .context("recipe has no [busybox] section")?;
            let mtime = crate::timefmt::parse(&created)
                .with_context(|| format!("recipe created time {created:?} is not RFC 3339"))?;
            let tar = busybox::layer_tar(section, mtime, scratch.path())?;
            store.import_image(
                ImportSource::Stream(Box::new(Cursor::new(tar))),
                &spec,
                Some(&references[0]),
                &progress,
            )?
        }
        Builder::Debootstrap => {
            let section = recipe
                .debootstrap
                .as_ref()
                .context("recipe has no [debootstrap] section")?;
            let mirror = debootstrap::pick_mirror(options.mirror.as_deref(), section)?;
            let rootfs = scratch.path().join("rootfs");
            let built = debootstrap::bootstrap(section, &mirror, &rootfs);
            let built =
                built.and_then(|()| import_dir(&store, &rootfs, &spec, &references[0], &progress));
            // Never leave a mount behind, whatever happened.
            debootstrap::unmount_below(scratch.path())?;
            built?
        }
    };
    for reference in &references[1..] {
        store.tag(&image.id.to_string(), reference)?;
    }
    store.image(&references[0].to_string()).map_err(Into::into)
}

fn import_dir(
    store: &Store,
    rootfs: &std::path::Path,
    spec: &ImageSpec,
    name: &Reference,
    progress: &ByteProgress,
) -> anyhow::Result<(Image, mycontainer_store::ImportedLayer)> {
    let mut tar = debootstrap::tar_stream(rootfs)?;
    let stdout = tar.stdout.take().context("tar has no stdout")?;
    let imported = store.import_image(
        ImportSource::Stream(Box::new(stdout)),
        spec,
        Some(name),
        progress,
    );
    let status = tar.wait().context("cannot wait for tar")?;
    if !status.success() {
        anyhow::bail!("tar of {} failed ({status})", rootfs.display());
    }
    Ok(imported?)
}

/// Returns the image `name`, building it first when it is missing and a built-in recipe
/// of that name builds automatically (so `mycontainer run busybox` works on a fresh
/// machine).
pub fn ensure_image(ctx: &Ctx, name: &str) -> anyhow::Result<Image> {
    let store = ctx.store()?;
    match store.image(name) {
        Err(StoreError::ImageNotFound(_)) => match Recipe::auto_build_for(name) {
            Some(recipe) => {
                if !ctx.quiet {
                    eprintln!("image {name} not found: building it from the built-in recipe");
                }
                build(ctx, &recipe, &BuildOptions { mirror: None })
            }
            None => Err(StoreError::ImageNotFound(name.to_string()).into()),
        },
        other => other.map_err(Into::into),
    }
}

fn image_spec(recipe: &Recipe, created: &str) -> anyhow::Result<ImageSpec> {
    let section = &recipe.config;
    let mut config = ConfigBuilder::default();
    if !section.cmd.is_empty() {
        config = config.cmd(section.cmd.clone());
    }
    if !section.entrypoint.is_empty() {
        config = config.entrypoint(section.entrypoint.clone());
    }
    if !section.env.is_empty() {
        config = config.env(section.env.clone());
    }
    if let Some(dir) = &section.working_dir {
        config = config.working_dir(dir.clone());
    }
    if let Some(user) = &section.user {
        config = config.user(user.clone());
    }
    Ok(ImageSpec {
        config: config.build().context("invalid [config] in recipe")?,
        created: Some(created.to_string()),
        created_by: Some(format!("mycontainer image build {}", recipe.name)),
    })
}
