//! Resolves `-u USER[:GROUP]` against the image's /etc/passwd and /etc/group.
//!
//! Semantics follow Docker (runc's user lookup):
//! - USER is a name or a uid; a passwd entry matches by name, or by uid when USER is
//!   numeric. A numeric USER with no entry runs with that uid, gid 0 and home "/".
//!   An unknown name is an error.
//! - GROUP (optional) is a name or a gid, looked up the same way in /etc/group; it
//!   replaces the primary gid, and then no supplementary groups are added (as in runc).
//! - Without GROUP the supplementary groups are the groups listing the user's name.
//!
//! For an image, each file is read from the layer whose copy the overlay shows
//! (whiteouts and opaque directories honoured, see `mycontainer_store::visible_layer`).
//! The files are read inside that root with the root as "/": symlinks are resolved as
//! the container would see them and can never lead out of the rootfs (openat2 with
//! RESOLVE_IN_ROOT; a userspace walk with the same rule on kernels before 5.6).
//! Only a regular file is read: the image (or, for exec, the container's root) decides
//! what is at /etc/passwd, and a fifo there would hang the command while a device
//! node would have the host open (and read) one of its own devices. So the file is
//! first opened with O_PATH, which runs no driver and never blocks, checked with
//! fstat, and only then opened for reading through /proc/self/fd, which opens that very
//! inode whatever happens to the name meanwhile.

use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context};
use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};

/// The identity the container's process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// $HOME from passwd, when known.
    pub home: Option<String>,
}

impl ResolvedUser {
    /// The process's supplementary groups as runc sets them for Docker: the primary
    /// group first, then the user's other groups (for run and exec alike).
    pub fn groups_with_primary(&self) -> Vec<u32> {
        let mut groups = vec![self.gid];
        groups.extend(self.additional_gids.iter().filter(|g| **g != self.gid));
        groups
    }
}

/// /etc/passwd and /etc/group larger than this are refused (a hostile image could
/// otherwise make us read without bound).
const MAX_DB_SIZE: u64 = 16 << 20;

/// Symlinks followed before giving up, as the kernel's limit.
const MAX_SYMLINKS: usize = 40;

/// One /etc/passwd entry (fields we use).
#[derive(Debug, Clone, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

/// One /etc/group entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Lines that do not parse (comments, NIS "+" entries, junk) are skipped, as libc does.
fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?.trim();
            if name.is_empty() || name.starts_with('#') {
                return None;
            }
            let _password = fields.next()?;
            let uid = fields.next()?.trim().parse().ok()?;
            let gid = fields.next()?.trim().parse().ok()?;
            let _gecos = fields.next();
            let home = fields.next().unwrap_or("").to_string();
            Some(PasswdEntry {
                name: name.to_string(),
                uid,
                gid,
                home,
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?.trim();
            if name.is_empty() || name.starts_with('#') {
                return None;
            }
            let _password = fields.next()?;
            let gid = fields.next()?.trim().parse().ok()?;
            let members = fields
                .next()
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .collect();
            Some(GroupEntry {
                name: name.to_string(),
                gid,
                members,
            })
        })
        .collect()
}

/// Where an account database is read from, for messages: "image" (run) or "container"
/// (exec, the container's live root).
#[derive(Debug, Clone, Copy)]
enum Place {
    Image,
    Container,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Place::Image => "image",
            Place::Container => "container",
        })
    }
}

/// Opens `path` (absolute, as seen inside the container) under `rootfs`, treating
/// `rootfs` as "/", for reading; it must be a regular file. Ok(None) when it does not
/// exist.
fn open_in_root(rootfs: &Path, path: &str, place: Place) -> anyhow::Result<Option<File>> {
    let root = File::open(rootfs)
        .with_context(|| format!("cannot open the container rootfs {}", rootfs.display()))?;
    let relative = path.trim_start_matches('/');
    // `path` comes from visible_layer, which resolved its symlinks already: one found
    // now was swapped in since (a live container's root) and is refused as not a file.
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    match openat2(&root, relative, how) {
        Ok(fd) => open_regular(File::from(fd), path, place).map(Some),
        Err(Errno::ENOENT) => Ok(None),
        Err(Errno::ENOSYS) => open_in_root_by_walking(rootfs, relative, place),
        Err(e) => Err(e).with_context(|| {
            format!(
                "cannot open {path} in the container rootfs {}",
                rootfs.display()
            )
        }),
    }
}

/// Fallback for kernels without openat2: resolve each component ourselves, restarting at
/// `rootfs` for absolute symlinks and never going above it with "..", then open the
/// result without following a final symlink.
fn open_in_root_by_walking(
    rootfs: &Path,
    relative: &str,
    place: Place,
) -> anyhow::Result<Option<File>> {
    let resolved = resolve_in_root(rootfs, relative)
        .with_context(|| format!("cannot resolve /{relative} in {}", rootfs.display()))?;
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&resolved);
    match opened {
        Ok(file) => open_regular(file, &format!("/{relative}"), place).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot open {}", resolved.display())),
    }
}

/// Turns an O_PATH descriptor into one open for reading, if it is a regular file (see
/// the module comment). O_NONBLOCK as well, should anything but a regular file slip by.
fn open_regular(path_fd: File, path: &str, place: Place) -> anyhow::Result<File> {
    let meta = path_fd
        .metadata()
        .with_context(|| format!("cannot stat {path} in the {place}"))?;
    if !meta.file_type().is_file() {
        bail!(
            "{path} in the {place} is not a regular file (it is {}): replace it with a regular file",
            kind_of(&meta.file_type())
        );
    }
    let fd_path = format!("/proc/self/fd/{}", path_fd.as_raw_fd());
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(&fd_path)
        .with_context(|| format!("cannot open {path} in the {place} (through {fd_path})"))
}

fn kind_of(file_type: &std::fs::FileType) -> &'static str {
    if file_type.is_fifo() {
        "a fifo"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_symlink() {
        "a symlink"
    } else {
        "not a file"
    }
}

/// The host path of `relative` inside `rootfs`, with symlinks resolved as if `rootfs`
/// were "/". The result is always under `rootfs`.
fn resolve_in_root(rootfs: &Path, relative: &str) -> std::io::Result<PathBuf> {
    let mut resolved: Vec<OsString> = Vec::new();
    let mut pending: Vec<OsString> = components_reversed(Path::new(relative));
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate: PathBuf = std::iter::once(rootfs.as_os_str())
            .chain(resolved.iter().map(|s| s.as_os_str()))
            .chain(std::iter::once(part.as_os_str()))
            .collect();
        match std::fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(std::io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = std::fs::read_link(&candidate)?;
                if target.is_absolute() {
                    resolved.clear();
                }
                pending.extend(components_reversed(&target));
            }
            // Missing components stay as they are: the open then reports "not found".
            _ => resolved.push(part),
        }
    }
    Ok(std::iter::once(rootfs.as_os_str())
        .chain(resolved.iter().map(|s| s.as_os_str()))
        .collect())
}

/// Normal and ".." components of `path`, last first (a stack to pop from).
fn components_reversed(path: &Path) -> Vec<OsString> {
    let mut parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    parts.reverse();
    parts
}

/// Reads an account database from the layer that shows it; Ok(None) when none does.
fn read_visible_db(layers: &[PathBuf], path: &str, place: Place) -> anyhow::Result<Option<String>> {
    let Some((layer, file)) = mycontainer_store::visible_layer(layers, Path::new(path)) else {
        return Ok(None);
    };
    // Opened again inside that layer with RESOLVE_IN_ROOT: whatever the lookup saw, the
    // open cannot leave the layer.
    let inside = file.strip_prefix(layer).unwrap_or(&file);
    read_db(layer, &format!("/{}", inside.display()), place)
}

/// Reads an account database from the rootfs; Ok(None) when it does not exist.
fn read_db(rootfs: &Path, path: &str, place: Place) -> anyhow::Result<Option<String>> {
    let Some(file) = open_in_root(rootfs, path, place)? else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    file.take(MAX_DB_SIZE + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {path} in {}", rootfs.display()))?;
    if bytes.len() as u64 > MAX_DB_SIZE {
        bail!(
            "{path} in {} is larger than {} MiB: refusing to parse it",
            rootfs.display(),
            MAX_DB_SIZE >> 20
        );
    }
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// Resolves `spec` ("", "name", "uid", "name:group", "uid:gid") inside `rootfs`.
pub fn resolve(rootfs: &Path, spec: &str) -> anyhow::Result<ResolvedUser> {
    resolve_at(&[rootfs.to_path_buf()], spec, Place::Container)
}

/// Resolves `spec` in an image's unpacked layers (topmost first), reading /etc/passwd
/// and /etc/group each from the layer whose copy the container will see: a layer that
/// only added a group (`groupadd`) counts, and a deleted file is gone.
pub fn resolve_in_layers(layers: &[PathBuf], spec: &str) -> anyhow::Result<ResolvedUser> {
    resolve_at(layers, spec, Place::Image)
}

fn resolve_at(layers: &[PathBuf], spec: &str, place: Place) -> anyhow::Result<ResolvedUser> {
    let shown = layers.first().map_or(Path::new("/"), PathBuf::as_path);
    let (user, group) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    // Docker: an empty user means root; "-u :grp" keeps root as the user.
    let user = if user.is_empty() { "0" } else { user };
    let numeric_uid: Option<u32> = user.parse().ok();

    let passwd = read_visible_db(layers, "/etc/passwd", place)?
        .map(|t| parse_passwd(&t))
        .unwrap_or_default();
    let entry = passwd
        .iter()
        .find(|e| e.name == user || Some(e.uid) == numeric_uid);
    let (uid, mut gid, name, home) = match (entry, numeric_uid) {
        (Some(e), _) => (e.uid, e.gid, Some(e.name.as_str()), e.home.clone()),
        (None, Some(uid)) => (uid, 0, None, String::new()),
        (None, None) => bail!(
            "cannot find user {user:?} in {}/etc/passwd: use a user defined in the image or a numeric uid",
            shown.display()
        ),
    };

    let groups = read_visible_db(layers, "/etc/group", place)?
        .map(|t| parse_group(&t))
        .unwrap_or_default();
    let mut additional_gids = Vec::new();
    match group {
        Some(group) if !group.is_empty() => {
            let numeric_gid: Option<u32> = group.parse().ok();
            let found = groups
                .iter()
                .find(|g| g.name == group || Some(g.gid) == numeric_gid);
            gid = match (found, numeric_gid) {
                (Some(g), _) => g.gid,
                (None, Some(gid)) => gid,
                (None, None) => bail!(
                    "cannot find group {group:?} in {}/etc/group: use a group defined in the image or a numeric gid",
                    shown.display()
                ),
            };
        }
        _ => {
            if let Some(name) = name {
                for g in groups
                    .iter()
                    .filter(|g| g.members.iter().any(|m| m == name))
                {
                    if !additional_gids.contains(&g.gid) {
                        additional_gids.push(g.gid);
                    }
                }
            }
        }
    }

    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home: Some(if home.is_empty() {
            "/".to_string()
        } else {
            home
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
alice:x:1000:1000:Alice:/home/alice:/bin/sh
broken line without colons
bob:x:notanumber:1:bad uid:/home/bob:/bin/sh
nohome:x:1002:1002::
";

    const GROUP: &str = "\
root:x:0:
wheel:x:10:root,alice
alice:x:1000:
audio:x:29:alice, bob
staff:x:50:
";

    fn rootfs(passwd: Option<&str>, group: Option<&str>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        if let Some(passwd) = passwd {
            std::fs::write(dir.path().join("etc/passwd"), passwd).unwrap();
        }
        if let Some(group) = group {
            std::fs::write(dir.path().join("etc/group"), group).unwrap();
        }
        dir
    }

    fn user(uid: u32, gid: u32, groups: &[u32], home: &str) -> ResolvedUser {
        ResolvedUser {
            uid,
            gid,
            additional_gids: groups.to_vec(),
            home: Some(home.to_string()),
        }
    }

    #[test]
    fn resolves_names_and_numbers() {
        let dir = rootfs(Some(PASSWD), Some(GROUP));
        let root = dir.path();
        assert_eq!(resolve(root, "").unwrap(), user(0, 0, &[10], "/root"));
        assert_eq!(
            resolve(root, "alice").unwrap(),
            user(1000, 1000, &[10, 29], "/home/alice")
        );
        assert_eq!(
            resolve(root, "1000").unwrap(),
            user(1000, 1000, &[10, 29], "/home/alice")
        );
        assert_eq!(
            resolve(root, "alice:audio").unwrap(),
            user(1000, 29, &[], "/home/alice")
        );
        assert_eq!(
            resolve(root, "alice:50").unwrap(),
            user(1000, 50, &[], "/home/alice")
        );
        assert_eq!(
            resolve(root, "alice:4242").unwrap(),
            user(1000, 4242, &[], "/home/alice")
        );
        assert_eq!(
            resolve(root, "daemon").unwrap(),
            user(1, 1, &[], "/usr/sbin")
        );
        assert_eq!(resolve(root, "nohome").unwrap(), user(1002, 1002, &[], "/"));
        assert_eq!(resolve(root, ":staff").unwrap(), user(0, 50, &[], "/root"));
    }

    #[test]
    fn numeric_uid_not_in_passwd_runs_with_gid_zero() {
        let dir = rootfs(Some(PASSWD), Some(GROUP));
        assert_eq!(
            resolve(dir.path(), "4242").unwrap(),
            user(4242, 0, &[], "/")
        );
        assert_eq!(
            resolve(dir.path(), "4242:7").unwrap(),
            user(4242, 7, &[], "/")
        );
    }

    #[test]
    fn unknown_names_are_clear_errors() {
        let dir = rootfs(Some(PASSWD), Some(GROUP));
        let err = resolve(dir.path(), "mallory").unwrap_err().to_string();
        assert!(
            err.contains("\"mallory\"") && err.contains("/etc/passwd"),
            "{err}"
        );
        let err = resolve(dir.path(), "alice:nogroup")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"nogroup\"") && err.contains("/etc/group"),
            "{err}"
        );
        // Lines that do not parse are skipped, not matched.
        assert!(resolve(dir.path(), "bob").is_err());
    }

    #[test]
    fn missing_files_allow_numeric_ids_only() {
        let dir = rootfs(None, None);
        assert_eq!(resolve(dir.path(), "").unwrap(), user(0, 0, &[], "/"));
        assert_eq!(
            resolve(dir.path(), "1000:1000").unwrap(),
            user(1000, 1000, &[], "/")
        );
        assert!(resolve(dir.path(), "alice").is_err());
        assert!(resolve(dir.path(), "0:wheel").is_err());
    }

    #[test]
    fn symlinks_resolve_inside_the_rootfs_only() {
        // A "host" passwd outside the rootfs that must never be read.
        let outside = tempfile::tempdir().unwrap();
        let host_passwd = outside.path().join("passwd");
        std::fs::write(&host_passwd, "mallory:x:666:666::/evil:/bin/sh\n").unwrap();

        let dir = rootfs(None, Some(GROUP));
        let root = dir.path();
        // Absolute symlink: pointing at the host's file by its host path, it must be read
        // as <rootfs><that path>, which does not exist.
        symlink(&host_passwd, root.join("etc/passwd")).unwrap();
        let err = resolve(root, "mallory").unwrap_err().to_string();
        assert!(err.contains("cannot find user"), "{err}");
        assert!(resolve(root, "666").unwrap().home == Some("/".into()));

        // Relative escape: ../../.. is clamped at the rootfs.
        std::fs::remove_file(root.join("etc/passwd")).unwrap();
        let mut escape = PathBuf::new();
        for _ in 0..32 {
            escape.push("..");
        }
        symlink(
            escape.join(host_passwd.strip_prefix("/").unwrap()),
            root.join("etc/passwd"),
        )
        .unwrap();
        assert!(resolve(root, "mallory").is_err());

        // An absolute symlink inside the image is followed within the rootfs.
        std::fs::remove_file(root.join("etc/passwd")).unwrap();
        std::fs::create_dir_all(root.join("usr/share/base")).unwrap();
        std::fs::write(root.join("usr/share/base/passwd"), PASSWD).unwrap();
        symlink("/usr/share/base/passwd", root.join("etc/passwd")).unwrap();
        assert_eq!(resolve(root, "alice").unwrap().uid, 1000);
    }

    #[test]
    fn userspace_walk_matches_the_kernel_rule() {
        let outside = tempfile::tempdir().unwrap();
        let dir = rootfs(Some(PASSWD), None);
        let root = dir.path();
        symlink(outside.path(), root.join("escape")).unwrap();
        symlink("../../../../etc", root.join("etc/up")).unwrap();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        symlink("/a", root.join("a/b/loop")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();

        let resolved = resolve_in_root(root, "escape/passwd").unwrap();
        assert_eq!(
            resolved,
            root.join(outside.path().strip_prefix("/").unwrap())
                .join("passwd")
        );
        assert!(resolved.starts_with(root));
        assert_eq!(
            resolve_in_root(root, "etc/up/passwd").unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(
            resolve_in_root(root, "a/b/loop/b").unwrap(),
            root.join("a/b")
        );
        assert_eq!(
            resolve_in_root(root, "../../etc/passwd").unwrap(),
            root.join("etc/passwd")
        );
        let err = resolve_in_root(root, "loop1").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
        let opened = open_in_root_by_walking(root, "etc/up/passwd", Place::Image)
            .unwrap()
            .unwrap();
        drop(opened);
        assert!(open_in_root_by_walking(root, "escape/passwd", Place::Image)
            .unwrap()
            .is_none());
    }

    #[test]
    fn oversized_database_is_refused() {
        let dir = rootfs(None, None);
        let file = File::create(dir.path().join("etc/passwd")).unwrap();
        file.set_len(MAX_DB_SIZE + 1).unwrap();
        let err = resolve(dir.path(), "alice").unwrap_err().to_string();
        assert!(err.contains("larger than"), "{err}");
    }

    /// resolve() on another thread, so that a regression hangs no longer than `secs`.
    fn resolve_within(root: &Path, spec: &str, secs: u64) -> anyhow::Result<ResolvedUser> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (root, spec) = (root.to_path_buf(), spec.to_string());
        std::thread::spawn(move || tx.send(resolve(&root, &spec)));
        rx.recv_timeout(std::time::Duration::from_secs(secs))
            .expect("the lookup blocked")
    }

    #[test]
    fn fifos_and_devices_are_refused_without_opening_them() {
        // SAFETY: geteuid has no preconditions.
        let as_root = unsafe { libc::geteuid() } == 0;
        let dir = rootfs(None, Some(GROUP));
        let passwd = std::ffi::CString::new(
            dir.path()
                .join("etc/passwd")
                .into_os_string()
                .into_encoded_bytes(),
        )
        .unwrap();
        // SAFETY: mkfifo of a NUL-terminated path we own.
        assert_eq!(unsafe { libc::mkfifo(passwd.as_ptr(), 0o644) }, 0);
        let err = format!("{:#}", resolve_within(dir.path(), "alice", 5).unwrap_err());
        assert!(
            err.contains("/etc/passwd in the container is not a regular file (it is a fifo)"),
            "{err}"
        );
        if as_root {
            // /dev/zero as /etc/group: reading it would never end.
            std::fs::remove_file(dir.path().join("etc/group")).unwrap();
            std::fs::remove_file(dir.path().join("etc/passwd")).unwrap();
            std::fs::write(dir.path().join("etc/passwd"), PASSWD).unwrap();
            let group = std::ffi::CString::new(
                dir.path()
                    .join("etc/group")
                    .into_os_string()
                    .into_encoded_bytes(),
            )
            .unwrap();
            // SAFETY: mknod of a NUL-terminated path we own.
            let rc =
                unsafe { libc::mknod(group.as_ptr(), libc::S_IFCHR | 0o644, libc::makedev(1, 5)) };
            assert_eq!(rc, 0);
            let err = format!("{:#}", resolve_within(dir.path(), "alice", 5).unwrap_err());
            assert!(
                err.contains(
                    "/etc/group in the container is not a regular file (it is a character device)"
                ),
                "{err}"
            );
        }
    }

    #[test]
    fn parsers_skip_malformed_lines() {
        let users = parse_passwd(PASSWD);
        assert_eq!(users.len(), 4);
        assert!(users.iter().all(|u| u.name != "bob"));
        let groups = parse_group(GROUP);
        let audio = groups.iter().find(|g| g.name == "audio").unwrap();
        assert_eq!(audio.members, vec!["alice", "bob"]);
    }
}
