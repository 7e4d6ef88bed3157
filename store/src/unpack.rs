//! Unpacks one layer tarball into a directory that nobody else writes to.
//!
//! Every entry name is cleaned and checked: `..` is rejected, absolute names are
//! resolved inside the layer (`/etc/passwd` is `etc/passwd`, as GNU tar and containerd
//! do), no entry is written through a symlink, and hardlinks may only point at files already
//! unpacked inside the layer. OCI whiteouts become overlayfs whiteouts (`.wh.NAME` ->
//! char device 0/0 at NAME, `.wh..wh..opq` -> `trusted.overlay.opaque=y`).

use std::collections::HashSet;
use std::ffi::{CString, OsStr};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tar::{Archive, Entry, EntryType};

use crate::error::{Error, Result};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// Longer entry names than PATH_MAX cannot be created anyway; refuse them early.
const MAX_NAME_LEN: usize = 4096;

#[derive(Debug, Default, Clone, Copy)]
pub struct UnpackStats {
    pub entries: u64,
    pub bytes: u64,
}

/// Metadata applied to directories after all their children are written, so that
/// read-only directories and directory mtimes come out right. `dev`/`ino` name the
/// directory this entry created or found: a later entry may have replaced it (by a
/// file, a symlink or another directory), and then this metadata is not applied.
struct DirMeta {
    rel: PathBuf,
    dev: u64,
    ino: u64,
    mode: u32,
    owner: Option<(u64, u64)>,
    mtime: u64,
}

pub(crate) struct Unpacker {
    root: PathBuf,
    /// Relative directories known to be real directories (created or checked by us).
    known_dirs: HashSet<PathBuf>,
    dirs: Vec<DirMeta>,
    as_root: bool,
    buffer: Vec<u8>,
    stats: UnpackStats,
}

impl Unpacker {
    pub(crate) fn new(root: &Path) -> Unpacker {
        let mut known_dirs = HashSet::new();
        known_dirs.insert(PathBuf::new());
        Unpacker {
            root: root.to_path_buf(),
            known_dirs,
            dirs: Vec::new(),
            // SAFETY: geteuid has no preconditions.
            as_root: unsafe { libc::geteuid() } == 0,
            buffer: vec![0; 256 * 1024],
            stats: UnpackStats::default(),
        }
    }

    /// Unpacks every entry of `reader` and returns the reader, positioned after the
    /// end-of-archive marker, so the caller can hash what follows.
    pub(crate) fn unpack<R: Read>(mut self, reader: R) -> Result<(UnpackStats, R)> {
        // Whatever the umask and whatever the archive's "./" entry says (see
        // unpack_entry): a layer root is a normal 0755 dir.
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io("cannot chmod", &self.root, e))?;
        let mut archive = Archive::new(reader);
        let entries = archive.entries().map_err(|e| bad_tar(&e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| bad_tar(&e))?;
            let raw_name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            self.unpack_entry(&mut entry, &raw_name)
                .map_err(|e| match e {
                    // The path is our staging directory's: of no use to the user.
                    Error::Io { cause, .. } if cause.kind() == io::ErrorKind::UnexpectedEof => {
                        Error::BadInput(format!("the tar is truncated inside entry {raw_name:?}"))
                    }
                    other => other,
                })?;
            self.stats.entries += 1;
        }
        self.finish_dirs()?;
        Ok((self.stats, archive.into_inner()))
    }

    fn unpack_entry<R: Read>(&mut self, entry: &mut Entry<R>, raw_name: &str) -> Result<()> {
        if raw_name.len() > MAX_NAME_LEN {
            let shown: String = raw_name.chars().take(64).collect();
            return Err(Error::hostile(
                format!("{shown}..."),
                "has a name longer than PATH_MAX",
            ));
        }
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let rel = clean_name(raw_name)?;
        let Some(rel) = rel else {
            // The archive root itself (".", "./" or "/"): its metadata is ignored, and
            // the layer root stays the 0755 directory of the store's user set above (as
            // Docker's and containerd's snapshot directories are). The archive's owner
            // and mode bits (setuid, sticky, world-writable) there would apply to a
            // directory of the host's store, not to anything inside a container: the
            // container's "/" is its upper dir's. containerd applies a "/" entry's
            // metadata to the root; this rule deliberately wins over that.
            return Ok(());
        };
        let file_name = rel
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        self.ensure_parent(&parent, raw_name)?;

        if file_name == OPAQUE_MARKER {
            let dir = self.root.join(&parent);
            return set_xattr(&dir, "trusted.overlay.opaque", b"y")
                .map_err(|e| Error::io("cannot mark opaque", &dir, e));
        }
        if let Some(hidden) = file_name.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(Error::hostile(raw_name, "is a whiteout of an invalid name"));
            }
            let target = self.root.join(&parent).join(hidden);
            self.clear_target(&target, true)?;
            return mknod(&target, libc::S_IFCHR, 0, 0, 0)
                .map_err(|e| Error::io("cannot create whiteout", &target, e));
        }

        let path = self.root.join(&rel);
        let header = entry.header();
        let mode = header.mode().map_err(|e| bad_header(raw_name, &e))? & 0o7777;
        let owner = if self.as_root {
            Some((
                header.uid().map_err(|e| bad_header(raw_name, &e))?,
                header.gid().map_err(|e| bad_header(raw_name, &e))?,
            ))
        } else {
            None
        };
        let mtime = header.mtime().unwrap_or(0);

        match kind {
            EntryType::Directory => {
                // Created first, looked at only when the name is taken (a fresh layer
                // seldom repeats a name: one failed stat per entry showed in profiles).
                match fs::create_dir(&path) {
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        if !path.symlink_metadata().is_ok_and(|m| m.is_dir()) {
                            self.clear_target(&path, false)?;
                            fs::create_dir(&path)
                                .map_err(|e| Error::io("cannot create directory", &path, e))?;
                        }
                    }
                    other => other.map_err(|e| Error::io("cannot create directory", &path, e))?,
                }
                self.known_dirs.insert(rel.clone());
                self.apply_xattrs(entry, &path)?;
                self.record_dir(rel, entry)?;
                return Ok(());
            }
            EntryType::Regular | EntryType::Continuous => {
                let expected = entry
                    .header()
                    .entry_size()
                    .map_err(|e| bad_header(raw_name, &e))?;
                // O_EXCL never follows a symlink: whatever holds the name is cleared
                // only when the create finds it.
                let mut file = match create_file(&path) {
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        self.clear_target(&path, true)?;
                        create_file(&path)
                    }
                    other => other,
                }
                .map_err(|e| Error::io("cannot create", &path, e))?;
                let written = copy_entry(entry, &mut file, &mut self.buffer)
                    .map_err(|e| Error::io("cannot write", &path, e))?;
                if written != expected {
                    return Err(Error::BadInput(format!(
                        "the tar is truncated: entry {raw_name:?} has {written} of {expected} bytes"
                    )));
                }
                self.stats.bytes += written;
                // Through the open file: no path walked again for each of them.
                self.apply_xattrs(entry, &path)?;
                return apply_dir_metadata(&file, &path, mode, owner, mtime);
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| Error::hostile(raw_name, "is a symlink without a target"))?;
                let target = OsStr::from_bytes(&target);
                match std::os::unix::fs::symlink(target, &path) {
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        self.clear_target(&path, true)?;
                        std::os::unix::fs::symlink(target, &path)
                    }
                    other => other,
                }
                .map_err(|e| Error::io("cannot create symlink", &path, e))?;
            }
            EntryType::Link => {
                let target_raw = entry
                    .link_name_bytes()
                    .ok_or_else(|| Error::hostile(raw_name, "is a hardlink without a target"))?;
                let target_name = String::from_utf8_lossy(&target_raw).into_owned();
                let target_rel = clean_name(&target_name)
                    .map_err(|_| {
                        Error::hostile(
                            raw_name,
                            format!("is a hardlink to {target_name:?}, outside the layer"),
                        )
                    })?
                    .ok_or_else(|| Error::hostile(raw_name, "is a hardlink to the layer root"))?;
                let target = self.checked_existing(&target_rel, raw_name)?;
                if target == path {
                    return Ok(());
                }
                self.clear_target(&path, true)?;
                fs::hard_link(&target, &path)
                    .map_err(|e| Error::io("cannot create hardlink", &path, e))?;
                // A hardlink shares the target's inode: its metadata is the target's.
                return Ok(());
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let file_type = match kind {
                    EntryType::Char => libc::S_IFCHR,
                    EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                self.clear_target(&path, true)?;
                mknod(&path, file_type, mode, major, minor)
                    .map_err(|e| Error::io("cannot create device node", &path, e))?;
            }
            other => {
                return Err(Error::hostile(
                    raw_name,
                    format!("has an unsupported type {other:?}"),
                ));
            }
        }
        self.apply_xattrs(entry, &path)?;
        apply_metadata(&path, kind == EntryType::Symlink, mode, owner, mtime)
    }

    /// Makes sure every directory above an entry is a real directory inside the layer,
    /// creating missing ones; a symlink on the way means the entry would escape.
    fn ensure_parent(&mut self, parent: &Path, raw_name: &str) -> Result<()> {
        if self.known_dirs.contains(parent) {
            return Ok(());
        }
        let mut rel = PathBuf::new();
        for component in parent.components() {
            rel.push(component);
            if self.known_dirs.contains(&rel) {
                continue;
            }
            let path = self.root.join(&rel);
            match path.symlink_metadata() {
                Ok(meta) if meta.is_dir() => {}
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(Error::hostile(
                        raw_name,
                        format!("would be written through the symlink {:?}", rel),
                    ));
                }
                Ok(_) => {
                    return Err(Error::hostile(
                        raw_name,
                        format!("has a parent {:?} that is not a directory", rel),
                    ));
                }
                Err(_) => {
                    fs::create_dir(&path)
                        .map_err(|e| Error::io("cannot create directory", &path, e))?;
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                        .map_err(|e| Error::io("cannot chmod", &path, e))?;
                }
            }
            self.known_dirs.insert(rel.clone());
        }
        Ok(())
    }

    /// The absolute path of an existing non-directory inside the layer, reached without
    /// following any symlink (the hardlink target check).
    fn checked_existing(&mut self, rel: &Path, raw_name: &str) -> Result<PathBuf> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        let escape = || {
            Error::hostile(
                raw_name,
                format!(
                    "is a hardlink to {:?}, which is not a file in this layer",
                    rel
                ),
            )
        };
        if !self.known_dirs.contains(parent) {
            let mut walked = PathBuf::new();
            for component in parent.components() {
                walked.push(component);
                let is_dir = self
                    .root
                    .join(&walked)
                    .symlink_metadata()
                    .is_ok_and(|m| m.is_dir());
                if !is_dir {
                    return Err(escape());
                }
            }
        }
        let path = self.root.join(rel);
        match path.symlink_metadata() {
            Ok(meta) if !meta.is_dir() => Ok(path),
            _ => Err(escape()),
        }
    }

    /// Removes whatever is at `path` so the new entry can take its place. A directory is
    /// only replaced by a non-directory when `replace_dirs` is set.
    fn clear_target(&mut self, path: &Path, replace_dirs: bool) -> Result<()> {
        match path.symlink_metadata() {
            Err(_) => Ok(()),
            Ok(meta) if meta.is_dir() => {
                if !replace_dirs {
                    return Ok(());
                }
                fs::remove_dir_all(path).map_err(|e| Error::io("cannot replace", path, e))?;
                let rel = path.strip_prefix(&self.root).unwrap_or(path).to_path_buf();
                self.known_dirs.retain(|d| !d.starts_with(&rel));
                Ok(())
            }
            Ok(_) => fs::remove_file(path).map_err(|e| Error::io("cannot replace", path, e)),
        }
    }

    fn record_dir<R: Read>(&mut self, rel: PathBuf, entry: &Entry<R>) -> Result<()> {
        let path = self.root.join(&rel);
        let meta = path
            .symlink_metadata()
            .map_err(|e| Error::io("cannot stat", &path, e))?;
        let header = entry.header();
        let name = rel.display().to_string();
        let owner = if self.as_root {
            Some((
                header.uid().map_err(|e| bad_header(&name, &e))?,
                header.gid().map_err(|e| bad_header(&name, &e))?,
            ))
        } else {
            None
        };
        self.dirs.push(DirMeta {
            rel,
            dev: meta.dev(),
            ino: meta.ino(),
            mode: header.mode().map_err(|e| bad_header(&name, &e))? & 0o7777,
            owner,
            mtime: header.mtime().unwrap_or(0),
        });
        Ok(())
    }

    fn apply_xattrs<R: Read>(&self, entry: &mut Entry<R>, path: &Path) -> Result<()> {
        let Some(extensions) = entry.pax_extensions().map_err(|e| bad_tar(&e))? else {
            return Ok(());
        };
        for extension in extensions {
            let extension = extension.map_err(|e| bad_tar(&e))?;
            let Ok(key) = extension.key() else { continue };
            let Some(name) = key.strip_prefix("SCHILY.xattr.") else {
                continue;
            };
            match set_xattr(path, name, extension.value_bytes()) {
                Ok(()) => {}
                // Filesystems without xattr support, or trusted.* without privilege:
                // tar does the same and carries on.
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP) | Some(libc::EPERM)) => {}
                Err(e) => return Err(Error::io("cannot set xattr", path, e)),
            }
        }
        Ok(())
    }

    /// Deepest directories first, so setting a parent's mtime comes after its children.
    /// Each directory is reached from the layer root without following any symlink and
    /// must still be the one its entry made: a later file `a` after a directory `a`
    /// keeps its own mode and mtime, and a symlink put in its place is never chmod'ed.
    fn finish_dirs(&mut self) -> Result<()> {
        let root = open_dir_nofollow(libc::AT_FDCWD, &c_path(&self.root)?)
            .map_err(|e| Error::io("cannot open", &self.root, e))?;
        for dir in self.dirs.iter().rev() {
            let path = self.root.join(&dir.rel);
            let fd = match open_beneath(&root, &dir.rel) {
                Ok(fd) => fd,
                // Replaced by a non-directory or a symlink, here or above.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::ELOOP)) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("cannot open", &path, e)),
            };
            let meta = File::from(fd);
            let stat = meta
                .metadata()
                .map_err(|e| Error::io("cannot stat", &path, e))?;
            if (stat.dev(), stat.ino()) != (dir.dev, dir.ino) {
                // Another directory took its name: that one's entry says its metadata.
                continue;
            }
            apply_dir_metadata(&meta, &path, dir.mode, dir.owner, dir.mtime)?;
        }
        Ok(())
    }
}

/// Turns an archive name into a relative path with no `.`, `..` or root components.
/// An absolute name is taken inside the layer (leading slashes dropped, as GNU tar and
/// containerd do; umoci writes `/` entries). Returns None for the archive root itself
/// (`.`, `./`, `/`). `..` is refused anywhere, so `/../x` cannot climb out either.
pub(crate) fn clean_name(raw: &str) -> Result<Option<PathBuf>> {
    if raw.as_bytes().contains(&0) {
        return Err(Error::hostile(raw, "has a NUL byte in its name"));
    }
    let mut clean = PathBuf::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(Error::hostile(raw, "escapes the layer with '..'")),
            name => clean.push(name),
        }
    }
    Ok((!clean.as_os_str().is_empty()).then_some(clean))
}

fn copy_entry<R: Read>(
    entry: &mut Entry<R>,
    file: &mut File,
    buffer: &mut [u8],
) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        let n = match entry.read(buffer) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        file.write_all(&buffer[..n])?;
        total += n as u64;
    }
}

fn apply_metadata(
    path: &Path,
    is_symlink: bool,
    mode: u32,
    owner: Option<(u64, u64)>,
    mtime: u64,
) -> Result<()> {
    let c_path = c_path(path)?;
    if let Some((uid, gid)) = owner {
        // SAFETY: c_path is a valid NUL-terminated string; lchown does not follow links.
        let rc = unsafe { libc::lchown(c_path.as_ptr(), uid as libc::uid_t, gid as libc::gid_t) };
        if rc != 0 {
            return Err(Error::io("cannot chown", path, io::Error::last_os_error()));
        }
    }
    if !is_symlink {
        // After chown, which clears setuid/setgid bits.
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io("cannot chmod", path, e))?;
    }
    let time = libc::timespec {
        tv_sec: mtime.min(i64::MAX as u64) as libc::time_t,
        tv_nsec: 0,
    };
    let times = [time, time];
    // SAFETY: valid path and a two-element timespec array; AT_SYMLINK_NOFOLLOW keeps
    // symlinks from redirecting the call.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(Error::io(
            "cannot set times on",
            path,
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Opens a directory relative to `dirfd` without following a symlink at the last
/// component.
fn open_dir_nofollow(dirfd: libc::c_int, name: &CString) -> io::Result<OwnedFd> {
    // SAFETY: valid NUL-terminated name; the returned descriptor is owned by us.
    let fd = unsafe {
        libc::openat(
            dirfd,
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by openat and is not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens the directory `rel` under `root`, no component of it followed if it is a
/// symlink (ELOOP or ENOTDIR then): one openat2 (RESOLVE_BENEATH |
/// RESOLVE_NO_SYMLINKS), or, on a kernel without it (before 5.6), one openat per
/// component.
fn open_beneath(root: &OwnedFd, rel: &Path) -> io::Result<OwnedFd> {
    let name = CString::new(rel.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    match openat2_dir_beneath(root, &name) {
        // EAGAIN: a rename raced openat2's RESOLVE_BENEATH check; the walk needs none.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EAGAIN)) => {
            open_beneath_walk(root, rel)
        }
        other => other,
    }
}

fn openat2_dir_beneath(root: &OwnedFd, name: &CString) -> io::Result<OwnedFd> {
    // SAFETY: open_how is a plain C struct for which all-zero is valid.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    loop {
        // SAFETY: a descriptor we own, a valid NUL-terminated name, and an open_how
        // passed with its true size; the returned descriptor is owned by us.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root.as_raw_fd(),
                name.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            // SAFETY: fd was just returned by openat2 and is not owned elsewhere.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) });
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

/// [`open_beneath`] one component at a time.
fn open_beneath_walk(root: &OwnedFd, rel: &Path) -> io::Result<OwnedFd> {
    let mut current = root.try_clone()?;
    for component in rel.components() {
        let name = CString::new(component.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        current = open_dir_nofollow(current.as_raw_fd(), &name)?;
    }
    Ok(current)
}

/// Creates a new regular file (0600 until its metadata is applied), never through a
/// symlink; AlreadyExists when anything holds the name.
fn create_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// apply_metadata on an open directory or regular file.
fn apply_dir_metadata(
    dir: &File,
    path: &Path,
    mode: u32,
    owner: Option<(u64, u64)>,
    mtime: u64,
) -> Result<()> {
    let fd = dir.as_raw_fd();
    if let Some((uid, gid)) = owner {
        // SAFETY: fchown on a descriptor we own; no memory is passed.
        let rc = unsafe { libc::fchown(fd, uid as libc::uid_t, gid as libc::gid_t) };
        if rc != 0 {
            return Err(Error::io("cannot chown", path, io::Error::last_os_error()));
        }
    }
    // After chown, which clears setuid/setgid bits.
    dir.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("cannot chmod", path, e))?;
    let time = libc::timespec {
        tv_sec: mtime.min(i64::MAX as u64) as libc::time_t,
        tv_nsec: 0,
    };
    let times = [time, time];
    // SAFETY: a descriptor we own and a two-element timespec array.
    let rc = unsafe { libc::futimens(fd, times.as_ptr()) };
    if rc != 0 {
        return Err(Error::io(
            "cannot set times on",
            path,
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn mknod(
    path: &Path,
    file_type: libc::mode_t,
    mode: u32,
    major: u32,
    minor: u32,
) -> io::Result<()> {
    let c_path = c_path(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: valid NUL-terminated path; mknod takes no other pointers.
    let rc = unsafe {
        libc::mknod(
            c_path.as_ptr(),
            file_type | (mode & 0o7777),
            libc::makedev(major, minor),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub(crate) fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let c_path = c_path(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let c_name = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: valid NUL-terminated strings and a value slice with its true length;
    // lsetxattr does not follow symlinks.
    let rc = unsafe {
        libc::lsetxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn c_path(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::hostile(path.display().to_string(), "has a NUL byte in its name"))
}

fn bad_tar(e: &io::Error) -> Error {
    if e.kind() == io::ErrorKind::UnexpectedEof || e.to_string().contains("unexpected EOF") {
        return Error::BadInput(format!("the tar is truncated: {}", one_line(e)));
    }
    Error::BadInput(format!("not a valid tar archive: {}", one_line(e)))
}

fn bad_header(name: &str, e: &io::Error) -> Error {
    Error::BadInput(format!(
        "entry {name:?} has a corrupt header: {}",
        one_line(e)
    ))
}

/// The tar crate quotes raw header bytes in its messages; keep them short and printable.
fn one_line(e: &io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" when getting").next().unwrap_or(&text);
    // Raw header bytes (random input) must not reach the terminal: only printable ASCII.
    let mut shown: String = text
        .chars()
        .take(80)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if text.chars().count() > 80 {
        shown.push_str("...");
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_names() {
        assert_eq!(clean_name("./a/./b/").unwrap(), Some(PathBuf::from("a/b")));
        assert_eq!(clean_name("./").unwrap(), None);
        assert_eq!(clean_name("a//b").unwrap(), Some(PathBuf::from("a/b")));
        assert_eq!(clean_name("/").unwrap(), None);
        assert_eq!(clean_name("//").unwrap(), None);
        assert_eq!(clean_name("/etc/").unwrap(), Some(PathBuf::from("etc")));
        assert_eq!(
            clean_name("/etc/passwd").unwrap(),
            Some(PathBuf::from("etc/passwd"))
        );
    }

    /// Both ways of opening a directory beneath the layer root agree, and neither
    /// follows a symlink anywhere on the path nor opens a non-directory.
    #[test]
    fn open_beneath_follows_no_symlink_either_way() {
        let dir = std::env::temp_dir().join(format!("open-beneath-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let outside = dir.join("outside");
        let root = dir.join("root");
        fs::create_dir_all(outside.join("inner")).unwrap();
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a/file"), b"x").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("a/link")).unwrap();
        std::os::unix::fs::symlink("b", root.join("a/rel")).unwrap();
        let fd = open_dir_nofollow(libc::AT_FDCWD, &c_path(&root).unwrap()).unwrap();
        for (rel, expected) in [
            ("a/b", None),
            ("a", None),
            ("a/link", Some(libc::ELOOP)),
            ("a/link/inner", Some(libc::ELOOP)),
            ("a/rel", Some(libc::ELOOP)),
            ("a/file", Some(libc::ENOTDIR)),
            ("a/missing", Some(libc::ENOENT)),
        ] {
            let one = open_beneath(&fd, Path::new(rel)).map(drop);
            let walk = open_beneath_walk(&fd, Path::new(rel)).map(drop);
            for (how, got) in [("openat2", one), ("walk", walk)] {
                match expected {
                    None => assert!(got.is_ok(), "{how} {rel}: {got:?}"),
                    Some(errno) => {
                        let err = got.expect_err(&format!("{how} opened {rel}"));
                        // A symlink at the last component gives ENOTDIR or ELOOP.
                        let ok = err.raw_os_error() == Some(errno)
                            || (errno == libc::ELOOP && err.raw_os_error() == Some(libc::ENOTDIR));
                        assert!(ok, "{how} {rel}: {err}");
                    }
                }
            }
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rejects_escaping_names() {
        for bad in ["../x", "a/../../x", "/../x", "/etc/../../x", "a/..", "a\0b"] {
            let err = clean_name(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }
}
