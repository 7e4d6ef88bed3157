//! Where the binary keeps a state root's run directory (see src/container/rundir.rs),
//! so fixtures remove it with their root.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

/// The run directory of state root `root`: under `/run/mycontainer`, named with the
/// root's key (8 hex digits of its path's sha256, as src/container/paths.rs).
pub fn run_dir(root: &Path) -> PathBuf {
    use sha2::Digest as _;
    let normal: PathBuf = root.components().collect();
    let digest = sha2::Sha256::digest(normal.as_os_str().as_encoded_bytes());
    Path::new("/run/mycontainer").join(hex::encode(&digest[..4]))
}

/// Removes `root`'s run directory (for fixtures whose root is about to go).
pub fn remove_run_dir(root: &Path) {
    let _ = fs::remove_dir_all(run_dir(root));
}
