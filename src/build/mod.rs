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
    let created = recipe.created.clone().unwrap_or_else(now_rfc3339);
    let spec = image_spec(recipe, &created)?;
    let progress = ByteProgress::new("importing", ctx.quiet);
    let scratch = store.temp_dir("build")?;

    let (image, _) = match recipe.builder {
        Builder::Busybox => {
            let section = recipe
                .busybox
                .as_ref()
                .context("recipe has no [busybox] section")?;
            let mtime = parse_rfc3339(&created)
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
#[allow(dead_code)] // called by `run`, which lands with the runtime
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

/// The current time as RFC 3339 UTC (`2026-11-29T02:00:00Z`).
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format_rfc3339(secs)
}

pub fn format_rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.frac](Z|+00:00)`.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let num = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let days = days_from_civil(y, m, d);
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

// Howard Hinnant's civil-calendar algorithms (public domain).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2024-01-01T00:00:00Z"), Some(1_704_067_200));
        assert_eq!(format_rfc3339(1_704_067_200), "2024-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
