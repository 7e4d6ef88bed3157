//! The state root's permissions, checked once at start-up by every command.
//!
//! What is under `<root>` makes any local user root if they can reach it: setuid
//! binaries and file capabilities in image layers and in containers' upper dirs (which
//! container root writes), secrets in config.json and logs, shared layers to write into,
//! lock files to hold. So `<root>` is 0700 (Docker's is 0710, for user-namespace remaps
//! we do not have), and so are `containers/`, `layers/` and `tmp/` below it, in case
//! someone opens `<root>` up again; secrets are 0600 and lock files 0600.
//!
//! A new root is created 0700. An existing one that is wider is tightened to 0700, as
//! dockerd chmods its data-root at every start: the directory named as the state root
//! is the state root. Two exceptions are left alone, with a warning: a directory that
//! belongs to another user, and a sticky one (`--root /tmp`), which is shared by design
//! and would break for everyone else.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;

/// Directories under the root that hold layers, upper dirs and records.
const PRIVATE_SUBDIRS: [&str; 3] = ["containers", "layers", "tmp"];

/// Creates `root` 0700 if missing, and tightens it (and its private subdirectories) when
/// they are wider and ours. Returns a warning to print when a wide root is not ours to
/// change.
pub fn prepare(root: &Path) -> anyhow::Result<Option<String>> {
    if let Some(parent) = root.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    match fs::DirBuilder::new().mode(0o700).create(root) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(e).with_context(|| {
                format!(
                    "cannot create the state root {}: run as root or pick one with --root DIR",
                    root.display()
                )
            })
        }
        _ => {}
    }
    let meta = fs::metadata(root).with_context(|| format!("cannot stat {}", root.display()))?;
    if !meta.is_dir() {
        anyhow::bail!(
            "the state root {} is not a directory: use --root DIR",
            root.display()
        );
    }
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if is_wide(&meta) {
        let refusal = if meta.uid() != euid {
            Some(format!("it belongs to uid {}", meta.uid()))
        } else if meta.mode() & libc::S_ISVTX != 0 {
            Some("it is a sticky directory, shared with other users".to_string())
        } else {
            None
        };
        if let Some(reason) = refusal {
            return Ok(Some(format!(
                "the state root {} has mode {:o}: other users can reach its images and containers; use a private directory with --root (not changed for you: {reason})",
                root.display(),
                meta.mode() & 0o7777,
            )));
        }
        make_private(root)?;
    }
    for name in PRIVATE_SUBDIRS {
        let dir = root.join(name);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() && is_wide(&meta) && meta.uid() == euid => {
                make_private(&dir)?
            }
            _ => {}
        }
    }
    Ok(None)
}

/// Group or other may do anything, or a special bit (setgid, sticky) is set.
fn is_wide(meta: &fs::Metadata) -> bool {
    meta.mode() & 0o7077 != 0
}

fn make_private(dir: &Path) -> anyhow::Result<()> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} private (chmod 700)", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn a_new_root_is_private_and_parents_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("a/root");
        assert!(prepare(&root).unwrap().is_none());
        assert_eq!(mode(&root), 0o700);
        // The parents are made as create_dir_all makes them.
        assert_ne!(mode(&dir.path().join("a")), 0o700);
    }

    #[test]
    fn a_wide_root_of_ours_is_tightened_with_its_private_subdirs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        for sub in ["store", "containers", "layers", "tmp", "names"] {
            fs::create_dir_all(root.join(sub)).unwrap();
            fs::set_permissions(root.join(sub), fs::Permissions::from_mode(0o755)).unwrap();
        }
        fs::write(root.join("store/oci-layout"), "{}").unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o2755)).unwrap();
        assert!(prepare(&root).unwrap().is_none());
        assert_eq!(mode(&root), 0o700);
        for sub in ["containers", "layers", "tmp"] {
            assert_eq!(mode(&root.join(sub)), 0o700, "{sub}");
        }
        assert_eq!(mode(&root.join("names")), 0o755, "not private: left alone");
    }

    #[test]
    fn a_sticky_root_is_only_warned_about() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("shared");
        fs::create_dir(&root).unwrap();
        fs::write(root.join("somebody-elses-file"), "x").unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o1777)).unwrap();
        let warning = prepare(&root).unwrap().expect("a warning");
        assert!(warning.contains("sticky"), "{warning}");
        assert_eq!(mode(&root), 0o1777);
        // A plain directory with other files in it is the state root all the same.
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(prepare(&root).unwrap().is_none());
        assert_eq!(mode(&root), 0o700);
    }
}
