//! Which unpacked layer holds the copy of a path that an overlay of the layers would
//! show, read without mounting anything (the runtime mounts the overlay only inside the
//! container): a whiteout (char device 0/0) deletes a path, an opaque directory
//! (`trusted.overlay.opaque=y`) hides what the layers below have under it.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use crate::diff::get_xattr;

/// The layer (of `layers`, topmost first) whose copy of `relative` is the visible one,
/// or `None` when no layer has it or an upper layer deleted it. A symlink on the way
/// ends the search at its layer: the caller resolves it there.
pub fn visible_layer<'a>(layers: &'a [PathBuf], relative: &Path) -> Option<&'a Path> {
    let parts: Vec<&std::ffi::OsStr> = relative
        .components()
        .filter_map(|c| match c {
            Component::Normal(part) => Some(part),
            _ => None,
        })
        .collect();
    if parts.is_empty() {
        return None;
    }
    for layer in layers {
        let mut path = layer.clone();
        let mut hides_below = false;
        for (i, part) in parts.iter().enumerate() {
            path.push(part);
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                break; // not in this layer: the layers below decide, unless hidden
            };
            if meta.file_type().is_char_device() && meta.rdev() == 0 {
                return None; // whited out
            }
            if i + 1 == parts.len() || !meta.is_dir() {
                return Some(layer); // the path itself, or a file or symlink on its way
            }
            if get_xattr(&path, "trusted.overlay.opaque").as_deref() == Some(b"y") {
                hides_below = true;
            }
        }
        if hides_below {
            return None;
        }
    }
    None
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

    #[test]
    fn the_topmost_copy_wins_and_each_file_is_looked_up_on_its_own() {
        let (_dir, l) = layers(3);
        std::fs::write(l[2].join("etc/passwd"), "base").unwrap();
        std::fs::write(l[2].join("etc/group"), "base").unwrap();
        std::fs::write(l[0].join("etc/group"), "groupadd").unwrap();
        assert_eq!(
            visible_layer(&l, Path::new("etc/passwd")),
            Some(l[2].as_path())
        );
        assert_eq!(
            visible_layer(&l, Path::new("/etc/group")),
            Some(l[0].as_path())
        );
        assert_eq!(visible_layer(&l, Path::new("etc/shadow")), None);
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
        assert_eq!(visible_layer(&l, Path::new("etc/passwd")), None);
        std::fs::write(l[0].join("etc/passwd"), "again").unwrap();
        assert_eq!(
            visible_layer(&l, Path::new("etc/passwd")),
            Some(l[0].as_path())
        );

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
        assert_eq!(visible_layer(&l, Path::new("etc/group")), None);
    }
}
