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
    // As Docker: the new image runs what the container ran (its entrypoint, and its
    // command as Cmd), so `commit` of `run IMAGE CMD` keeps CMD.
    let mut config = base.config.config().clone().unwrap_or_default();
    if !state.command.is_empty() {
        let split = state.entrypoint_len.min(state.command.len());
        let (entrypoint, cmd) = state.command.split_at(split);
        config.set_entrypoint((!entrypoint.is_empty()).then(|| entrypoint.to_vec()));
        config.set_cmd((!cmd.is_empty()).then(|| cmd.to_vec()));
    }
    let spec = ImageSpec {
        config,
        created: Some(crate::timefmt::rfc3339_seconds(super::state::now_unix())),
        created_by: Some(format!("mycontainer commit {}", record.short_id())),
    };
    store
        .commit_dir(&base, &record.upper_dir(), &spec, Some(&reference))
        .with_context(|| format!("cannot commit container {}", record.display_name()))
}
