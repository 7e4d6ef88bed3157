//! Copies a directory tree between two open directories without ever following a
//! symlink: every entry is opened relative to its parent's descriptor with `O_NOFOLLOW`,
//! symlinks are copied as links, so a hostile tree (an image, a container's root)
//! cannot steer a read or a write outside the two directories. Used to fill a volume
//! from the image and by `cp`.

use std::ffi::{CStr, OsStr};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use anyhow::Context;
use nix::dir::{Dir, Type};
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, fstat, fstatat, futimens, mkdirat, mknodat, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

/// Opens `name` in `dir` as a directory, never following a symlink.
pub fn open_dir_at(dir: impl AsFd, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// The names in the directory `dir` (without `.` and `..`).
pub fn entries(dir: &OwnedFd) -> anyhow::Result<Vec<(std::ffi::OsString, Option<Type>)>> {
    let again = open_dir_at(dir, OsStr::new(".")).context("cannot reopen a directory")?;
    let mut listing = Dir::from_fd(again).context("cannot list a directory")?;
    let mut names = Vec::new();
    for entry in listing.iter() {
        let entry = entry.context("cannot list a directory")?;
        let name: &CStr = entry.file_name();
        let bytes = name.to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        names.push((OsStr::from_bytes(bytes).to_os_string(), entry.file_type()));
    }
    Ok(names)
}

/// Who owns what is copied.
#[derive(Debug, Clone, Copy)]
pub enum Owner {
    /// The source's owner and group (a volume filled from its image, `cp -a`).
    Keep,
    /// This uid and gid (`cp` without `-a`).
    Set(u32, u32),
}

/// How a copy treats what it copies.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub owner: Owner,
    /// Copy device nodes (an image's content); skipped when copying to the host, where
    /// a node a container made could open a host device.
    pub devices: bool,
    /// Drop setuid and setgid bits (copying out of a container to the host).
    pub strip_setid: bool,
}

impl Rules {
    /// Everything as it is: filling a volume from its image.
    pub const KEEP: Rules = Rules {
        owner: Owner::Keep,
        devices: true,
        strip_setid: false,
    };

    fn mode(&self, st: &nix::sys::stat::FileStat) -> Mode {
        let mut bits = st.st_mode & 0o7777;
        if self.strip_setid {
            bits &= !0o6000;
        }
        Mode::from_bits_truncate(bits)
    }
}

impl Owner {
    fn of(self, st: &nix::sys::stat::FileStat) -> (Uid, Gid) {
        match self {
            Owner::Keep => (Uid::from_raw(st.st_uid), Gid::from_raw(st.st_gid)),
            Owner::Set(u, g) => (Uid::from_raw(u), Gid::from_raw(g)),
        }
    }
}

/// Gives `fd` the owner, permission bits and times of `st`.
pub fn apply_meta(fd: &OwnedFd, st: &nix::sys::stat::FileStat, rules: Rules) -> nix::Result<()> {
    let (uid, gid) = rules.owner.of(st);
    fchown(fd, Some(uid), Some(gid))?;
    // After chown, which clears setuid bits.
    fchmod(fd, rules.mode(st))?;
    futimens(
        fd,
        &TimeSpec::new(st.st_atime, st.st_atime_nsec),
        &TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
    )
}

/// Copies everything in `src` into `dst` (both open directories), merging into
/// directories that exist and replacing other entries of the same name (a symlink in
/// `dst` is replaced, never followed).
pub fn copy_contents(src: &OwnedFd, dst: &OwnedFd, rules: Rules) -> anyhow::Result<()> {
    for (name, _) in entries(src)? {
        copy_entry(src, &name, dst, &name, rules)
            .with_context(|| format!("cannot copy {}", name.to_string_lossy()))?;
    }
    Ok(())
}

/// Removes `name` in `dir` unless it is a directory; true when a directory is there.
fn clear_for(dir: &OwnedFd, name: &OsStr) -> nix::Result<bool> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits() => Ok(true),
        Ok(_) => unlinkat(dir, name, UnlinkatFlags::NoRemoveDir).map(|()| false),
        Err(nix::errno::Errno::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Copies the entry `name` of `src_dir` to `dst_name` in `dst_dir`, recursively.
pub fn copy_entry(
    src_dir: &OwnedFd,
    name: &OsStr,
    dst_dir: &OwnedFd,
    dst_name: &OsStr,
    rules: Rules,
) -> anyhow::Result<()> {
    let owner = rules.owner;
    let st = fstatat(src_dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    let is_dir = clear_for(dst_dir, dst_name)?;
    if is_dir && kind != SFlag::S_IFDIR {
        anyhow::bail!(
            "cannot overwrite the directory {} with a non-directory",
            dst_name.to_string_lossy()
        );
    }
    match kind {
        SFlag::S_IFDIR => {
            let from = open_dir_at(src_dir, name)?;
            if !is_dir {
                mkdirat(dst_dir, dst_name, Mode::from_bits_truncate(0o700))?;
            }
            let to = open_dir_at(dst_dir, dst_name)?;
            copy_contents(&from, &to, rules)?;
            apply_meta(&to, &st, rules)?;
        }
        SFlag::S_IFREG => {
            let from = openat(
                src_dir,
                name,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            let to = create_file(dst_dir, dst_name)?;
            let (mut r, mut w) = (std::fs::File::from(from), std::fs::File::from(to));
            std::io::copy(&mut r, &mut w)?;
            let to = OwnedFd::from(w);
            apply_meta(&to, &st, rules)?;
        }
        SFlag::S_IFLNK => {
            let target = readlinkat(src_dir, name)?;
            symlinkat(target.as_os_str(), dst_dir, dst_name)?;
            chown_link_or_node(dst_dir, dst_name, owner.of(&st))?;
        }
        SFlag::S_IFCHR | SFlag::S_IFBLK if !rules.devices => {}
        SFlag::S_IFIFO | SFlag::S_IFCHR | SFlag::S_IFBLK => {
            mknodat(
                dst_dir,
                dst_name,
                kind,
                Mode::from_bits_truncate(st.st_mode & 0o777),
                st.st_rdev,
            )?;
            chown_link_or_node(dst_dir, dst_name, owner.of(&st))?;
        }
        // Sockets are not content.
        _ => {}
    }
    Ok(())
}

/// Gives the symlink or node `name` in `dir` its owner (never following a link).
fn chown_link_or_node(dir: &OwnedFd, name: &OsStr, (uid, gid): (Uid, Gid)) -> nix::Result<()> {
    fchownat(
        dir,
        name,
        Some(uid),
        Some(gid),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
}

/// Creates the new regular file `name` in `dir` (0600 until its metadata is applied),
/// never through a symlink.
pub fn create_file(dir: &OwnedFd, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(
        dir,
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
}

/// Makes `name` in `dir` ready to be created: a non-directory there is removed; true
/// when a directory is there (to merge into).
pub fn prepare_name(dir: &OwnedFd, name: &OsStr) -> nix::Result<bool> {
    clear_for(dir, name)
}

/// True when the open directory `dir` has no entries.
pub fn is_empty(dir: &OwnedFd) -> anyhow::Result<bool> {
    Ok(entries(dir)?.is_empty())
}

/// The stat of an open descriptor.
pub fn stat(fd: &OwnedFd) -> nix::Result<nix::sys::stat::FileStat> {
    fstat(fd.as_fd())
}
