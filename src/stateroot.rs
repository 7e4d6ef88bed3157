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
//! is the state root. A root that someone else could already have planted files in is
//! refused instead, since a symlink or a directory of theirs in it (`cache`, say, where
//! the seccomp program is kept) would steer what root writes and later trusts: a root
//! that belongs to another user (who can always swap its entries), a sticky one
//! (`--root /tmp`, shared by design), and a wide one holding an entry of another user
//! (at its top or one level below, in a directory that was open too).

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;

/// Directories under the root that hold layers, upper dirs and records.
const PRIVATE_SUBDIRS: [&str; 3] = ["containers", "layers", "tmp"];

/// Creates `root` 0700 if missing, and tightens it (and its private subdirectories) when
/// they are wider and ours. Fails on a root others could have planted files in (see the
/// module's comment).
pub fn prepare(root: &Path) -> anyhow::Result<()> {
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
    if meta.uid() != euid {
        anyhow::bail!(
            "the state root {} belongs to uid {}, who can plant or swap files in it: chown it to uid {euid} or use a directory of your own with --root",
            root.display(),
            meta.uid()
        );
    }
    if is_wide(&meta) {
        if meta.mode() & libc::S_ISVTX != 0 {
            anyhow::bail!(
                "the state root {} is a sticky directory (mode {:o}) shared with other users, who can plant files in it: use a private directory with --root",
                root.display(),
                meta.mode() & 0o7777
            );
        }
        refuse_foreign_entries(root, euid, true)?;
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
    Ok(())
}

/// Fails when `dir` (a state root that was open to others) holds an entry of another
/// user; with `deeper`, looks the same way into each of its directories that others
/// could write into. An entry that cannot be looked at counts as foreign.
fn refuse_foreign_entries(dir: &Path, euid: u32, deeper: bool) -> anyhow::Result<()> {
    let entries = fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let path = entry.path();
        let meta = fs::symlink_metadata(&path)
            .with_context(|| format!("cannot stat {}", path.display()))?;
        if meta.uid() != euid {
            anyhow::bail!(
                "the state root {} was open to other users and holds {}, which belongs to uid {}: remove what you did not make, or use another directory with --root",
                root_of(dir, deeper).display(),
                path.display(),
                meta.uid()
            );
        }
        if deeper && meta.is_dir() && meta.mode() & 0o022 != 0 {
            refuse_foreign_entries(&path, euid, false)?;
        }
    }
    Ok(())
}

fn root_of(dir: &Path, top: bool) -> &Path {
    if top {
        dir
    } else {
        dir.parent().unwrap_or(dir)
    }
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
        prepare(&root).unwrap();
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
        prepare(&root).unwrap();
        assert_eq!(mode(&root), 0o700);
        for sub in ["containers", "layers", "tmp"] {
            assert_eq!(mode(&root.join(sub)), 0o700, "{sub}");
        }
        assert_eq!(mode(&root.join("names")), 0o755, "not private: left alone");
    }

    #[test]
    fn a_sticky_root_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("shared");
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o1777)).unwrap();
        let err = format!("{:#}", prepare(&root).unwrap_err());
        assert!(err.contains("sticky"), "{err}");
        assert_eq!(mode(&root), 0o1777);
    }

    #[test]
    fn a_wide_root_is_tightened_only_when_every_entry_near_its_top_is_ours() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("cache")).unwrap();
        fs::write(root.join("somefile"), "x").unwrap();
        fs::set_permissions(root.join("cache"), fs::Permissions::from_mode(0o777)).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o777)).unwrap();
        // Another user's entry one level down, in a directory that was open.
        let planted = root.join("cache/seccomp-x.bpf");
        fs::write(&planted, "x").unwrap();
        nix::unistd::chown(&planted, Some(65534.into()), None).unwrap();
        let err = format!("{:#}", prepare(&root).unwrap_err());
        assert!(
            err.contains("seccomp-x.bpf") && err.contains("65534"),
            "{err}"
        );
        assert_eq!(mode(&root), 0o777, "left as it was");
        fs::remove_file(&planted).unwrap();
        prepare(&root).unwrap();
        assert_eq!(mode(&root), 0o700);
    }

    #[test]
    fn a_root_of_another_user_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("theirs");
        fs::create_dir(&root).unwrap();
        nix::unistd::chown(&root, Some(65534.into()), None).unwrap();
        let err = format!("{:#}", prepare(&root).unwrap_err());
        assert!(err.contains("belongs to uid 65534"), "{err}");
    }
}
