//! Image recipes: builds base images (busybox, debian, or a recipe file) into the store.
//! Everything here works on a [`Store`] and reports through [`Reporter`]; the CLI opens
//! the store and draws the progress.

pub mod build;
mod busybox;
mod cache;
pub mod containerfile;
mod context;
mod copy;
mod debootstrap;
mod recipe;
pub mod steps;
mod words;

use std::io::Cursor;

use anyhow::Context;
use mycontainer_store::{
    Error as StoreError, Image, ImageSpec, ImportSource, Progress, Reference, Store,
};
use oci_spec::image::ConfigBuilder;

pub use recipe::{Builder, Recipe};

/// How a build tells the user what it does: the bytes of the layer import (as
/// [`Progress`]) and status lines. The CLI draws a bar on a terminal and drops status
/// lines with -q.
pub trait Reporter: Progress {
    /// One line of status for the user.
    fn status(&self, line: &str);
}

/// What `image build` may change about a recipe.
pub struct BuildOptions {
    /// Overrides the recipe's Debian mirror.
    pub mirror: Option<String>,
}

/// Builds `recipe` and tags the image `name:TAG` for each of its tags.
pub fn build(
    store: &Store,
    recipe: &Recipe,
    options: &BuildOptions,
    reporter: &dyn Reporter,
) -> anyhow::Result<Image> {
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
    let scratch = store.temp_dir("build")?;

    let builder = recipe.builder.with_context(|| {
        format!(
            "recipe {} builds from an image (from = ...): build it with image build PATH.toml",
            recipe.name
        )
    })?;
    let (image, _) = match builder {
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
                reporter,
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
                built.and_then(|()| import_dir(store, &rootfs, &spec, &references[0], reporter));
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

/// Imports the directory `rootfs` as a one-layer image named `name`, through `tar`.
fn import_dir(
    store: &Store,
    rootfs: &std::path::Path,
    spec: &ImageSpec,
    name: &Reference,
    progress: &dyn Progress,
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
pub fn ensure_image(store: &Store, name: &str, reporter: &dyn Reporter) -> anyhow::Result<Image> {
    match store.image(name) {
        Err(StoreError::ImageNotFound(_)) => match Recipe::auto_build_for(name) {
            Some(recipe) => {
                reporter.status(&format!(
                    "image {name} not found: building it from the built-in recipe"
                ));
                build(store, &recipe, &BuildOptions { mirror: None }, reporter)
            }
            None => Err(StoreError::ImageNotFound(name.to_string()).into()),
        },
        other => other.map_err(Into::into),
    }
}

/// The image config and history a recipe gives, created at `created`.
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
    if !section.volumes.is_empty() {
        config = config.volumes(section.volumes.clone());
    }
    if !section.labels.is_empty() {
        config = config.labels(
            section
                .labels
                .clone()
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        );
    }
    Ok(ImageSpec {
        config: config.build().context("invalid [config] in recipe")?,
        created: Some(created.to_string()),
        created_by: Some(format!("mycontainer image build {}", recipe.name)),
    })
}
