//! Which containers use an image: what `image rm` must not pull from under them
//! (`commit` and `start` need the image's config and layers).

use std::path::Path;

use super::paths::containers_dir;
use super::record::list_ids;
use super::state::{State, Status};

/// A container that uses an image.
#[derive(Debug, Clone)]
pub struct ImageUser {
    /// The first 12 hex digits of its id.
    pub short_id: String,
    pub running: bool,
}

/// Containers (running or not) whose image is the one with config digest `image_id`.
pub fn containers_using(root: &Path, image_id: &str) -> anyhow::Result<Vec<ImageUser>> {
    let mut users = Vec::new();
    for id in list_ids(root)? {
        let Ok(state) = State::load(&containers_dir(root).join(&id).join("state.json")) else {
            continue;
        };
        if state.image_id.as_deref() == Some(image_id) {
            users.push(ImageUser {
                short_id: id[..12].to_string(),
                running: state.status == Status::Running,
            });
        }
    }
    Ok(users)
}
