//! Where a container's state lives under the state root, and the name of its cgroup:
//! one leaf every other file of `container/` may use.

use std::path::{Path, PathBuf};

/// Where the container's root is assembled (the spec's `root.path`, relative to the
/// record); a mount point only inside the container's mount namespace.
pub const MERGED_DIR: &str = "merged";

/// The cgroup of container `id` of the state root `root`, relative to the hierarchy
/// root(s): `mycontainer/<key>-<id>`, where the key (8 hex digits of the root path's
/// sha256) tells one state root's cgroups from another's, so `gc` reclaims its own
/// orphans and never touches another root's.
pub fn cgroup_name(root: &Path, id: &str) -> String {
    format!("{}{id}", cgroup_prefix(&root_key(root)))
}

/// What every cgroup name of the state root with key `key` starts with (see
/// [`cgroup_name`]).
pub fn cgroup_prefix(key: &str) -> String {
    format!("mycontainer/{key}-")
}

/// The state root's cgroup key (see [`cgroup_name`]).
pub fn root_key(root: &Path) -> String {
    use sha2::Digest as _;
    // Components, not the raw text: `/a/b/` and `/a//b` are the same root as `/a/b`.
    let normal: PathBuf = root.components().collect();
    let digest = sha2::Sha256::digest(normal.as_os_str().as_encoded_bytes());
    hex::encode(&digest[..4])
}

/// The state root of the record directory `dir` (`<root>/containers/<id>`).
pub fn root_of_record(dir: &Path) -> &Path {
    dir.parent().and_then(Path::parent).unwrap_or(dir)
}

pub(crate) fn containers_dir(root: &Path) -> PathBuf {
    root.join("containers")
}

pub(crate) fn names_dir(root: &Path) -> PathBuf {
    root.join("names")
}
