//! Which unpacked layer holds the copy of a path that an overlay of the layers would
//! show, read without mounting anything (the runtime mounts the overlay only inside the
//! container). The lookup follows overlayfs: a directory merges the layers that have it
//! as a directory, from the topmost down to the first opaque one
//! (`trusted.overlay.opaque=y`) and never past a layer where the name is a whiteout
//! (char device 0/0) or not a directory; symlinks are resolved in the merged view, with
//! the root of the layers as "/".

use std::ffi::{OsStr, OsString};
use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use crate::diff::get_xattr;

/// Symlinks followed before giving up, as the kernel's limit.
const MAX_SYMLINKS: usize = 40;

/// The layer (of `layers`, topmost first) whose copy of `path` is the one the overlay
/// shows, and that copy's path in it (symlinks resolved): `None` when no layer has it,
/// an upper layer deleted it, or the path does not resolve.
pub fn visible_layer<'a>(layers: &'a [PathBuf], path: &Path) -> Option<(&'a Path, PathBuf)> {
    let mut pending: Vec<OsString> = components_reversed(path);
    // The merged directory reached so far: its path and the layers that make it up.
    let mut dir: Vec<OsString> = Vec::new();
    let mut stack: Vec<usize> = (0..layers.len()).collect();
    let mut links = 0;
    while let Some(name) = pending.pop() {
        if name == ".." {
            // Re-walk from the root: the parent's stack is not kept.
            dir.pop();
            let rest: Vec<OsString> = dir.drain(..).rev().collect();
            pending.extend(rest);
            stack = (0..layers.len()).collect();
            continue;
        }
        let relative: PathBuf = dir.iter().chain(std::iter::once(&name)).collect();
        let (top, meta) = topmost_entry(layers, &stack, &relative)?;
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_SYMLINKS {
                return None;
            }
            let target = std::fs::read_link(layers[top].join(&relative)).ok()?;
            if target.is_absolute() {
                dir.clear();
                stack = (0..layers.len()).collect();
            }
            pending.extend(components_reversed(&target));
            continue;
        }
        if pending.is_empty() {
            return Some((layers[top].as_path(), layers[top].join(&relative)));
        }
        if !meta.is_dir() {
            return None;
        }
        stack = merged_stack(layers, &stack, top, &relative);
        dir.push(name);
    }
    None
}

/// The topmost layer of `stack` that has `relative`, with its metadata; `None` when a
/// whiteout comes first or no layer has it.
fn topmost_entry(
    layers: &[PathBuf],
    stack: &[usize],
    relative: &Path,
) -> Option<(usize, Metadata)> {
    for &i in stack {
        let Ok(meta) = std::fs::symlink_metadata(layers[i].join(relative)) else {
            continue;
        };
        if is_whiteout(&meta) {
            return None;
        }
        return Some((i, meta));
    }
    None
}

/// The layers that make up directory `relative`, whose topmost copy is in `top`.
fn merged_stack(layers: &[PathBuf], parent: &[usize], top: usize, relative: &Path) -> Vec<usize> {
    let mut stack = vec![top];
    if is_opaque(&layers[top].join(relative)) {
        return stack;
    }
    for &i in parent.iter().skip_while(|&&i| i != top).skip(1) {
        let path = layers[i].join(relative);
        match std::fs::symlink_metadata(&path) {
            Err(_) => continue,
            Ok(meta) if meta.is_dir() => {
                stack.push(i);
                if is_opaque(&path) {
                    break;
                }
            }
            Ok(_) => break, // a whiteout or a non-directory ends the merge
        }
    }
    stack
}

fn is_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn is_opaque(dir: &Path) -> bool {
    get_xattr(dir, "trusted.overlay.opaque").as_deref() == Some(b"y")
}

/// Normal and ".." components of `path`, last first (a stack to pop from).
fn components_reversed(path: &Path) -> Vec<OsString> {
    let mut parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some(OsStr::new("..").to_os_string()),
            _ => None,
        })
        .collect();
    parts.reverse();
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(n: usize) -> (tempfile::TempDir, Vec<PathBuf>) {
        let dir = tempfile::tempdir().unwrap();
        let all = (0..n)
            .map(|i| {
                let layer = dir.path().join(format!("l{i}"));
                std::fs::create_dir_all(layer.join("etc")).unwrap();
                layer
            })
            .collect();
        (dir, all)
    }

    fn whiteout(path: &Path) {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mknod of a NUL-terminated path we own.
        assert_eq!(
            unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, 0) },
            0
        );
    }

    fn layer_of<'a>(all: &'a [PathBuf], path: &str) -> Option<&'a Path> {
        visible_layer(all, Path::new(path)).map(|(layer, _)| layer)
    }

    #[test]
    fn the_topmost_copy_wins_and_each_file_is_looked_up_on_its_own() {
        let (_dir, l) = layers(3);
        std::fs::write(l[2].join("etc/passwd"), "base").unwrap();
        std::fs::write(l[2].join("etc/group"), "base").unwrap();
        std::fs::write(l[0].join("etc/group"), "groupadd").unwrap();
        assert_eq!(layer_of(&l, "etc/passwd"), Some(l[2].as_path()));
        assert_eq!(layer_of(&l, "/etc/group"), Some(l[0].as_path()));
        assert_eq!(layer_of(&l, "etc/shadow"), None);
        assert_eq!(
            visible_layer(&l, Path::new("/etc/../etc/group")).map(|(_, p)| p),
            Some(l[0].join("etc/group"))
        );
    }

    #[test]
    fn symlinks_resolve_in_the_merged_view() {
        let (_dir, l) = layers(3);
        // layer 1 links passwd into /usr/etc and has an old copy there; layer 0 updates it
        std::fs::create_dir_all(l[1].join("usr/etc")).unwrap();
        std::os::unix::fs::symlink("/usr/etc/passwd", l[1].join("etc/passwd")).unwrap();
        std::fs::write(l[1].join("usr/etc/passwd"), "old").unwrap();
        std::fs::create_dir_all(l[0].join("usr/etc")).unwrap();
        std::fs::write(l[0].join("usr/etc/passwd"), "new").unwrap();
        let (layer, path) = visible_layer(&l, Path::new("etc/passwd")).unwrap();
        assert_eq!(layer, l[0].as_path());
        assert_eq!(std::fs::read_to_string(path).unwrap(), "new");
        // a link cannot climb out of the layers' root
        std::os::unix::fs::symlink("../../../../../../etc/hostname", l[0].join("etc/escape"))
            .unwrap();
        assert_eq!(layer_of(&l, "etc/escape"), None);
    }

    #[test]
    fn a_directory_above_hides_a_lower_non_directory() {
        let (_dir, l) = layers(2);
        // lower: /opt is a file; upper: /opt is a directory without the file
        std::fs::write(l[1].join("opt"), "file").unwrap();
        std::fs::create_dir_all(l[0].join("opt")).unwrap();
        std::fs::create_dir_all(l[1].join("srv/conf")).unwrap();
        std::fs::write(l[1].join("srv/conf/x"), "lower").unwrap();
        std::os::unix::fs::symlink("/elsewhere", l[0].join("srv")).unwrap();
        assert_eq!(layer_of(&l, "opt/anything"), None);
        // upper /srv is a symlink: the lower directory of that name is not reachable
        assert_eq!(layer_of(&l, "srv/conf/x"), None);
    }

    #[test]
    fn whiteouts_and_opaque_directories_hide_lower_copies() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return; // whiteouts are devices and opaque markers trusted xattrs: root only
        }
        let (_dir, l) = layers(3);
        std::fs::write(l[2].join("etc/passwd"), "base").unwrap();
        whiteout(&l[1].join("etc/passwd"));
        assert_eq!(layer_of(&l, "etc/passwd"), None);
        std::fs::write(l[0].join("etc/passwd"), "again").unwrap();
        assert_eq!(layer_of(&l, "etc/passwd"), Some(l[0].as_path()));

        let (_dir, l) = layers(2);
        std::fs::write(l[1].join("etc/group"), "base").unwrap();
        let opaque =
            std::ffi::CString::new(l[0].join("etc").as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: lsetxattr with NUL-terminated strings and a one-byte value we own.
        let rc = unsafe {
            libc::lsetxattr(
                opaque.as_ptr(),
                c"trusted.overlay.opaque".as_ptr(),
                b"y".as_ptr().cast(),
                1,
                0,
            )
        };
        assert_eq!(rc, 0);
        assert_eq!(layer_of(&l, "etc/group"), None);
    }
}
