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
use nix::unistd::{fchown, fchownat, symlinkat, Gid, Uid};

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
}

impl Owner {
    fn of(self, st: &nix::sys::stat::FileStat) -> (Uid, Gid) {
        match self {
            Owner::Keep => (Uid::from_raw(st.st_uid), Gid::from_raw(st.st_gid)),
        }
    }
}

/// Gives `fd` the owner, permission bits and times of `st`.
pub fn apply_meta(fd: &OwnedFd, st: &nix::sys::stat::FileStat, owner: Owner) -> nix::Result<()> {
    let (uid, gid) = owner.of(st);
    fchown(fd, Some(uid), Some(gid))?;
    // After chown, which clears setuid bits.
    fchmod(fd, Mode::from_bits_truncate(st.st_mode & 0o7777))?;
    futimens(
        fd,
        &TimeSpec::new(st.st_atime, st.st_atime_nsec),
        &TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
    )
}

/// Copies everything in `src` into `dst` (both open directories); existing entries in
/// `dst` are an error (the caller gives an empty or fresh directory).
pub fn copy_contents(src: &OwnedFd, dst: &OwnedFd, owner: Owner) -> anyhow::Result<()> {
    for (name, _) in entries(src)? {
        copy_entry(src, &name, dst, &name, owner)
            .with_context(|| format!("cannot copy {}", name.to_string_lossy()))?;
    }
    Ok(())
}

/// Copies the entry `name` of `src_dir` to `dst_name` in `dst_dir`, recursively.
pub fn copy_entry(
    src_dir: &OwnedFd,
    name: &OsStr,
    dst_dir: &OwnedFd,
    dst_name: &OsStr,
    owner: Owner,
) -> anyhow::Result<()> {
    let st = fstatat(src_dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    match kind {
        SFlag::S_IFDIR => {
            let from = open_dir_at(src_dir, name)?;
            mkdirat(dst_dir, dst_name, Mode::from_bits_truncate(0o700))?;
            let to = open_dir_at(dst_dir, dst_name)?;
            copy_contents(&from, &to, owner)?;
            apply_meta(&to, &st, owner)?;
        }
        SFlag::S_IFREG => {
            let from = openat(
                src_dir,
                name,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            let to = openat(
                dst_dir,
                dst_name,
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            )?;
            let (mut r, mut w) = (std::fs::File::from(from), std::fs::File::from(to));
            std::io::copy(&mut r, &mut w)?;
            let to = OwnedFd::from(w);
            apply_meta(&to, &st, owner)?;
        }
        SFlag::S_IFLNK => {
            let target = readlinkat(src_dir, name)?;
            symlinkat(target.as_os_str(), dst_dir, dst_name)?;
            let (uid, gid) = owner.of(&st);
            fchownat(
                dst_dir,
                dst_name,
                Some(uid),
                Some(gid),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )?;
        }
        SFlag::S_IFIFO | SFlag::S_IFCHR | SFlag::S_IFBLK => {
            mknodat(
                dst_dir,
                dst_name,
                kind,
                Mode::from_bits_truncate(st.st_mode & 0o777),
                st.st_rdev,
            )?;
            let (uid, gid) = owner.of(&st);
            fchownat(
                dst_dir,
                dst_name,
                Some(uid),
                Some(gid),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )?;
        }
        // Sockets are not content.
        _ => {}
    }
    Ok(())
}

/// True when the open directory `dir` has no entries.
pub fn is_empty(dir: &OwnedFd) -> anyhow::Result<bool> {
    Ok(entries(dir)?.is_empty())
}

/// The stat of an open descriptor.
pub fn stat(fd: &OwnedFd) -> nix::Result<nix::sys::stat::FileStat> {
    fstat(fd.as_fd())
}
