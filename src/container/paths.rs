//! Where a container's state lives under the state root, and the name of its cgroup:
//! one leaf every other file of `container/` may use.

use std::path::{Path, PathBuf};

/// Where the container's root is assembled (the spec's `root.path`, relative to the
/// record); a mount point only inside the container's mount namespace.
pub const MERGED_DIR: &str = "merged";

/// The cgroup of container `id`, relative to the hierarchy root(s).
pub fn cgroup_name(id: &str) -> String {
    format!("mycontainer/{id}")
}

pub(crate) fn containers_dir(root: &Path) -> PathBuf {
    root.join("containers")
}

pub(crate) fn names_dir(root: &Path) -> PathBuf {
    root.join("names")
}
