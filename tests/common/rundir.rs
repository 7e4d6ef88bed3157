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
    let dir = run_dir(root);
    detach_mounts_below(&dir);
    let _ = fs::remove_dir_all(dir);
}

/// What a reboot does to `root`'s run directory: its mounts (network namespaces) are
/// gone and the tmpfs is empty.
pub fn reboot_run_dir(root: &Path) {
    let dir = run_dir(root);
    detach_mounts_below(&dir);
    fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("cannot remove {}: {e}", dir.display()));
}

/// The ids whose directory in `root`'s run directory is a mount point (the container's
/// own tmpfs for its /etc files, see src/container/etcfs.rs).
pub fn container_mounts(root: &Path) -> Vec<String> {
    let containers = run_dir(root).join("containers");
    let table = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter_map(|point| Path::new(point).strip_prefix(&containers).ok())
        .map(|id| id.to_string_lossy().into_owned())
        .collect()
}

/// Detaches every mount below `dir`, deepest first.
fn detach_mounts_below(dir: &Path) {
    let table = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|point| point.starts_with(dir) && point != dir)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for point in points {
        let path = std::ffi::CString::new(point.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: umount2 on a NUL-terminated path of a mount this test's root made.
        unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
    }
}
