//! The root of a container as the store hands it out: like containerd's snapshotter
//! `Prepare`, one call holds an image's layers for a container and returns the overlay
//! that makes its root, so nothing above the store re-derives layer order or digests.

use std::path::PathBuf;

use crate::error::Result;
use crate::image::Image;
use crate::Store;

/// An overlay root: read-only layers under a container's private upper dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootMount {
    /// Layer directories in overlayfs order: nearest (top) layer first.
    pub lowerdirs: Vec<PathBuf>,
    pub upperdir: PathBuf,
    pub workdir: PathBuf,
}

impl Store {
    /// Holds `image`'s layers for `holder` (a container id: `image rm` and gc leave the
    /// layers alone until [`Store::release_layers`]) and returns the root over them with
    /// the container's `upperdir` and `workdir`.
    pub fn root_mount(
        &self,
        image: &Image,
        holder: &str,
        upperdir: PathBuf,
        workdir: PathBuf,
    ) -> Result<RootMount> {
        let diff_ids: Vec<_> = image.layers.iter().map(|l| l.diff_id.clone()).collect();
        self.hold_layers(holder, &diff_ids)?;
        Ok(RootMount {
            // The image lists its base layer first; overlayfs wants the top one first.
            lowerdirs: diff_ids.iter().rev().map(|d| self.layer_dir(d)).collect(),
            upperdir,
            workdir,
        })
    }
}
