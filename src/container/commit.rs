//! `commit`: a container's upper dir becomes a new layer on top of its image.

use std::path::Path;

use anyhow::Context;
use mycontainer_store::{Image, ImageSpec, Reference, Store};

use super::Record;

/// Stores the container's changes as a new image named `name` (image config carried
/// over unchanged) and returns it.
pub fn commit(root: &Path, record: &Record, name: &str) -> anyhow::Result<Image> {
    let state = record.load_state()?;
    let reference = Reference::parse(name)
        .with_context(|| format!("invalid image name {name:?}: use NAME[:TAG]"))?;
    let image_id = state.image_id.as_deref().with_context(|| {
        format!(
            "container {} was run from a directory ({}), not a stored image: there is no image to commit onto",
            record.display_name(),
            state.image
        )
    })?;
    let store = Store::open(root)?;
    let base = store.image(image_id).with_context(|| {
        format!(
            "the image of container {} ({image_id}) is gone from the store",
            record.display_name()
        )
    })?;
    let spec = ImageSpec {
        config: base.config.config().clone().unwrap_or_default(),
        created: Some(crate::timefmt::rfc3339_seconds(super::state::now_unix())),
        created_by: Some(format!("mycontainer commit {}", record.short_id())),
    };
    store
        .commit_dir(&base, &record.upper_dir(), &spec, Some(&reference))
        .with_context(|| format!("cannot commit container {}", record.display_name()))
}
