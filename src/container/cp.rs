//! `cp`: files between a container and the host (or a tar stream), through the
//! container's mounts as the container sees them.
//!
//! The container's root is a descriptor: `/proc/PID/root` of a running container
//! (lookups under it cross the container's own mounts), or, for a stopped one, its
//! overlay and volumes mounted in a private mount namespace (privmount.rs) while its
//! record is locked so it cannot start meanwhile. Every container path is resolved
//! under that descriptor with openat2 RESOLVE_IN_ROOT (symlinks and `..` stay inside);
//! below it, every entry is opened relative to its parent with O_NOFOLLOW, so a
//! container swapping a directory for a symlink mid-copy makes the copy fail, never
//! leave the root.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context};
use nix::errno::Errno;
use nix::fcntl::{openat2, readlinkat, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstatat, mkdirat, mknodat, Mode, SFlag};
use nix::unistd::{fchownat, linkat, symlinkat, Gid, Uid};

use super::fscopy::{self, open_dir_at, Owner, Rules};
use super::privmount::{self, View};
use super::record::{lock_dir, Record};
use super::state::Status;

/// Runs `work` with a descriptor of the container's root as the container sees it.
pub fn with_root<T: Send>(
    record: &Record,
    work: impl FnOnce(&OwnedFd) -> anyhow::Result<T> + Send,
) -> anyhow::Result<T> {
    match lock_dir(&record.dir, false)? {
        // Stopped: held locked (it cannot start) while its filesystem is mounted here.
        Some(_lock) => {
            // Its last mount left a volatile work dir that overlayfs refuses to reuse.
            super::control::reset_work_dir(record)?;
            let spec = oci_spec::runtime::Spec::load(record.config_path())
                .with_context(|| format!("cannot read {}", record.config_path().display()))?;
            // After a reboot its init layer and etc files are gone from the run dir.
            super::rundir::restore(record, &spec)?;
            let (lowerdirs, upper) = overlay_of(&spec)?;
            let binds = binds_of(&spec);
            let merged = record.merged_dir();
            let view = View {
                lowerdirs: &lowerdirs,
                upper: Some(upper),
                mountpoint: &merged,
                binds,
            };
            privmount::with_view(view, work)
        }
        None => {
            let state = record.load_state()?;
            let pid = match (state.status, state.pid) {
                (Status::Running, Some(pid)) => pid,
                _ => bail!(
                    "container {} is starting or stopping: try again",
                    &record.id[..12]
                ),
            };
            let root = running_root(record, pid)?;
            work(&root)
        }
    }
}

/// `/proc/PID/root` of the container's init, checked against pid reuse: the pidfd is
/// taken first, and the process must still be alive and the record still supervised
/// after the root is opened.
fn running_root(record: &Record, pid: i32) -> anyhow::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if raw < 0 {
        bail!("container {} is not running", &record.id[..12]);
    }
    // SAFETY: the descriptor was just returned to us and is owned by nothing else.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
    let root = nix::fcntl::open(
        format!("/proc/{pid}/root").as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("cannot open the root of container {}", &record.id[..12]))?;
    // SAFETY: pidfd_send_signal with signal 0 only checks that the process exists.
    let alive = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    } == 0;
    let same = record.load_state().is_ok_and(|s| s.pid == Some(pid));
    if !alive || !same || !record.is_supervised() {
        bail!(
            "container {} stopped while cp started: try again",
            &record.id[..12]
        );
    }
    Ok(root)
}

/// The overlay of a container's config.json: lowerdirs, and (upper, work).
pub(super) fn overlay_of(
    spec: &oci_spec::runtime::Spec,
) -> anyhow::Result<(Vec<PathBuf>, (PathBuf, PathBuf))> {
    let overlay = spec
        .mounts()
        .iter()
        .flatten()
        .find(|m| m.destination() == Path::new("/") && m.typ().as_deref() == Some("overlay"))
        .context("the container's config.json has no overlay root")?;
    let (mut lower, mut upper, mut work) = (Vec::new(), None, None);
    for option in overlay.options().iter().flatten() {
        if let Some(v) = option.strip_prefix("lowerdir=") {
            lower = v.split(':').map(PathBuf::from).collect();
        } else if let Some(v) = option.strip_prefix("upperdir=") {
            upper = Some(PathBuf::from(v));
        } else if let Some(v) = option.strip_prefix("workdir=") {
            work = Some(PathBuf::from(v));
        }
    }
    match (upper, work) {
        (Some(u), Some(w)) if !lower.is_empty() => Ok((lower, (u, w))),
        _ => bail!("the container's overlay root is incomplete in its config.json"),
    }
}

/// The container's bind mounts (volumes, etc files): source, destination, read-only.
fn binds_of(spec: &oci_spec::runtime::Spec) -> Vec<(PathBuf, PathBuf, bool)> {
    spec.mounts()
        .iter()
        .flatten()
        .filter(|m| m.typ().as_deref() == Some("bind"))
        .filter_map(|m| {
            let ro = m.options().iter().flatten().any(|o| o == "ro");
            Some((m.source().clone()?, m.destination().clone(), ro))
        })
        .collect()
}

fn how(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

/// The directory `path` inside the container's root (symlinks resolved inside it).
fn resolve_dir(root: &OwnedFd, path: &Path) -> nix::Result<OwnedFd> {
    let relative = path.strip_prefix("/").unwrap_or(path);
    let relative = if relative.as_os_str().is_empty() {
        Path::new(".")
    } else {
        relative
    };
    openat2(root, relative, how(OFlag::O_RDONLY | OFlag::O_DIRECTORY))
}

/// A path split into its parent and last name (None for "/", "x/." and "x/": the
/// directory itself, resolved whole), as `cp` reads its arguments.
struct Split {
    parent: PathBuf,
    name: Option<OsString>,
    /// "x/." : the contents of x, not x.
    contents: bool,
}

fn split(path: &str) -> Split {
    let contents = path.ends_with("/.") || path == ".";
    let trailing = path.ends_with('/') || contents;
    let p = Path::new(path);
    let last = p.components().next_back();
    match last {
        Some(Component::Normal(name)) if !trailing => Split {
            parent: p.parent().map(Path::to_path_buf).unwrap_or_default(),
            name: Some(name.to_os_string()),
            contents,
        },
        _ => Split {
            parent: p.to_path_buf(),
            name: None,
            contents,
        },
    }
}

/// What `cp` copies from or to on the host side.
pub enum HostSide<'a> {
    Path(&'a Path),
    /// A tar stream (stdin or stdout).
    Tar,
}

/// Ownership for `cp`: with `-a` as it was; else the destination's user (root inside
/// the container, the caller on the host).
fn rules(archive: bool, into_container: bool) -> Rules {
    let owner = if archive {
        Owner::Keep
    } else if into_container {
        Owner::Set(0, 0)
    } else {
        Owner::Set(
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    };
    Rules {
        owner,
        devices: into_container,
        strip_setid: !into_container,
    }
}

/// `cp CONTAINER:SRC DEST|-`.
pub fn copy_out(
    record: &Record,
    src: &str,
    dest: HostSide<'_>,
    out: &mut (dyn Write + Send),
    archive: bool,
) -> anyhow::Result<()> {
    let rules = rules(archive, false);
    with_root(record, |root| {
        let parts = split(src);
        let parent = resolve_dir(root, &parts.parent).map_err(|e| missing(e, src))?;
        // The source: (directory fd, name in it); "." when the path is a directory
        // taken whole.
        let (dir, name, base): (OwnedFd, OsString, OsString) = match &parts.name {
            Some(name) => {
                fstatat(&parent, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(|e| missing(e, src))?;
                (parent, name.clone(), name.clone())
            }
            None => {
                let base = Path::new(src)
                    .file_name()
                    .map(OsStr::to_os_string)
                    .unwrap_or_else(|| OsString::from("."));
                (parent, OsString::from("."), base)
            }
        };
        match dest {
            HostSide::Tar => {
                let mut builder = tar::Builder::new(out);
                builder.follow_symlinks(false);
                if parts.contents {
                    for (child, _) in fscopy::entries(&dir)? {
                        write_tar(&mut builder, &dir, &child, Path::new(&child))?;
                    }
                } else {
                    write_tar(&mut builder, &dir, &name, Path::new(&base))?;
                }
                builder.finish().context("cannot write the tar stream")?;
                Ok(())
            }
            HostSide::Path(host) => {
                let (host_dir, host_name) = host_target(host, parts.contents)?;
                match host_name {
                    Some(target) if !parts.contents => {
                        fscopy::copy_entry(&dir, &name, &host_dir, &target, rules)
                    }
                    Some(_) => unreachable!("contents go into a directory"),
                    None if parts.contents => {
                        let from = open_dir_at(&dir, &name)?;
                        fscopy::copy_contents(&from, &host_dir, rules)
                    }
                    None => fscopy::copy_entry(&dir, &name, &host_dir, &base, rules),
                }
                .with_context(|| format!("cannot copy {src} to {}", host.display()))
            }
        }
    })
}

/// The error for a container path that is not there (or resolves to nothing inside).
fn missing(err: Errno, path: &str) -> anyhow::Error {
    match err {
        Errno::ENOENT | Errno::ENOTDIR => {
            anyhow::anyhow!("no such file or directory in the container: {path}")
        }
        e => anyhow::Error::from(e).context(format!("cannot open {path} in the container")),
    }
}

/// Where a copy lands on the host: (directory, Some(new name)) for a DEST that does not
/// exist (or is a file), (DEST, None) for an existing directory to copy into.
fn host_target(host: &Path, contents: bool) -> anyhow::Result<(OwnedFd, Option<OsString>)> {
    let open = |p: &Path| -> anyhow::Result<OwnedFd> {
        Ok(std::fs::File::open(p)
            .with_context(|| format!("cannot open {}", p.display()))?
            .into())
    };
    if host.is_dir() {
        return Ok((open(host)?, None));
    }
    let name = host
        .file_name()
        .with_context(|| format!("invalid destination {}", host.display()))?;
    let parent = match host.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        bail!(
            "destination directory {} does not exist: create it first",
            parent.display()
        );
    }
    let parent = open(parent)?;
    if contents {
        mkdirat(&parent, name, Mode::from_bits_truncate(0o755))?;
        return Ok((open_dir_at(&parent, name)?, None));
    }
    Ok((parent, Some(name.to_os_string())))
}

/// Appends `name` in `dir` (recursively) to the tar as `path`, never following a link.
pub(super) fn write_tar<W: Write>(
    builder: &mut tar::Builder<W>,
    dir: &OwnedFd,
    name: &OsStr,
    path: &Path,
) -> anyhow::Result<()> {
    let st = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    let mut header = tar::Header::new_gnu();
    header.set_mode(st.st_mode & 0o7777);
    header.set_uid(st.st_uid as u64);
    header.set_gid(st.st_gid as u64);
    header.set_mtime(st.st_mtime.max(0) as u64);
    header.set_size(0);
    match kind {
        SFlag::S_IFDIR => {
            header.set_entry_type(tar::EntryType::Directory);
            builder.append_data(&mut header, path, std::io::empty())?;
            let sub = open_dir_at(dir, name)?;
            for (child, _) in fscopy::entries(&sub)? {
                write_tar(builder, &sub, &child, &path.join(&child))?;
            }
        }
        SFlag::S_IFREG => {
            let fd = nix::fcntl::openat(
                dir,
                name,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(st.st_size as u64);
            let file = std::fs::File::from(fd);
            builder.append_data(&mut header, path, file.take(st.st_size as u64))?;
        }
        SFlag::S_IFLNK => {
            let target = readlinkat(dir, name)?;
            header.set_entry_type(tar::EntryType::Symlink);
            builder.append_link(&mut header, path, &target)?;
        }
        SFlag::S_IFIFO | SFlag::S_IFCHR | SFlag::S_IFBLK => {
            header.set_entry_type(match kind {
                SFlag::S_IFIFO => tar::EntryType::Fifo,
                SFlag::S_IFCHR => tar::EntryType::Char,
                _ => tar::EntryType::Block,
            });
            let rdev = st.st_rdev;
            header.set_device_major(libc::major(rdev))?;
            header.set_device_minor(libc::minor(rdev))?;
            builder.append_data(&mut header, path, std::io::empty())?;
        }
        _ => {}
    }
    Ok(())
}

/// `cp SRC|- CONTAINER:DEST`.
pub fn copy_in(
    record: &Record,
    src: HostSide<'_>,
    input: &mut (dyn Read + Send),
    dest: &str,
    archive: bool,
) -> anyhow::Result<()> {
    let rules = rules(archive, true);
    // The host source, opened before the container's root: (directory, name, contents).
    let source = match src {
        HostSide::Path(path) => {
            let text = path.to_string_lossy().into_owned();
            let parts = split(&text);
            let parent = if parts.parent.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                parts.parent.clone()
            };
            let dir: OwnedFd = std::fs::File::open(&parent)
                .with_context(|| format!("cannot open {}", parent.display()))?
                .into();
            let name = parts.name.clone().unwrap_or_else(|| OsString::from("."));
            fstatat(&dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                .with_context(|| format!("cannot copy {}: it does not exist", path.display()))?;
            let base = path
                .file_name()
                .map(OsStr::to_os_string)
                .unwrap_or_else(|| OsString::from("."));
            Some((dir, name, base, parts.contents))
        }
        HostSide::Tar => None,
    };
    with_root(record, move |root| {
        let parts = split(dest);
        let existing = resolve_dir(root, Path::new(dest));
        match source {
            None => {
                let dir = existing.map_err(|e| match e {
                    Errno::ENOENT | Errno::ENOTDIR => anyhow::anyhow!(
                        "destination {dest} must be a directory in the container for a tar stream"
                    ),
                    e => missing(e, dest),
                })?;
                extract_tar(input, &dir, rules)
            }
            Some((dir, name, base, contents)) => {
                let (to_dir, to_name) = match existing {
                    Ok(d) => (d, None),
                    Err(Errno::ENOENT) if parts.name.is_some() => {
                        let parent =
                            resolve_dir(root, &parts.parent).map_err(|e| missing(e, dest))?;
                        (parent, parts.name.clone())
                    }
                    Err(Errno::ENOTDIR) if parts.name.is_some() => {
                        // An existing file (or a link to one): replaced.
                        let parent =
                            resolve_dir(root, &parts.parent).map_err(|e| missing(e, dest))?;
                        (parent, parts.name.clone())
                    }
                    Err(e) => return Err(missing(e, dest)),
                };
                let result = match (to_name, contents) {
                    (Some(target), false) => {
                        fscopy::copy_entry(&dir, &name, &to_dir, &target, rules)
                    }
                    (Some(target), true) => {
                        fscopy::prepare_name(&to_dir, &target)?;
                        mkdirat(&to_dir, target.as_os_str(), Mode::from_bits_truncate(0o755))
                            .or_else(|e| if e == Errno::EEXIST { Ok(()) } else { Err(e) })?;
                        let into = open_dir_at(&to_dir, &target)?;
                        let from = open_dir_at(&dir, &name)?;
                        fscopy::copy_contents(&from, &into, rules)
                    }
                    (None, true) => {
                        let from = open_dir_at(&dir, &name)?;
                        fscopy::copy_contents(&from, &to_dir, rules)
                    }
                    (None, false) => fscopy::copy_entry(&dir, &name, &to_dir, &base, rules),
                };
                result.with_context(|| format!("cannot copy into {dest} in the container"))
            }
        }
    })
}

/// The directory holding `path` (relative, cleaned) under `dir`, made when missing
/// (0755) and walked without following a symlink, and the last name.
fn walk_parent(dir: &OwnedFd, path: &Path, create: bool) -> anyhow::Result<(OwnedFd, OsString)> {
    let mut names: Vec<&OsStr> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(n) => names.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                bail!("tar entry {} leaves the destination", path.display())
            }
        }
    }
    let Some(last) = names.pop() else {
        return Ok((open_dir_at(dir, OsStr::new("."))?, OsString::from(".")));
    };
    let mut current = open_dir_at(dir, OsStr::new("."))?;
    for name in names {
        let next = match open_dir_at(&current, name) {
            Err(Errno::ENOENT) if create => {
                mkdirat(&current, name, Mode::from_bits_truncate(0o755))?;
                open_dir_at(&current, name)?
            }
            other => other.with_context(|| {
                format!(
                    "cannot open {} in the container (not a directory there)",
                    path.display()
                )
            })?,
        };
        current = next;
    }
    Ok((current, last.to_os_string()))
}

/// Unpacks a tar stream under `dir`, entry by entry, never following a symlink.
fn extract_tar(input: &mut dyn Read, dir: &OwnedFd, rules: Rules) -> anyhow::Result<()> {
    let mut archive = tar::Archive::new(input);
    for entry in archive.entries().context("cannot read the tar stream")? {
        let mut entry = entry.context("cannot read the tar stream")?;
        let path = entry
            .path()
            .context("invalid name in the tar stream")?
            .into_owned();
        let header = entry.header().clone();
        let (parent, name) = walk_parent(dir, &path, true)?;
        if name == "." {
            continue;
        }
        let uid = header.uid().unwrap_or(0) as u32;
        let gid = header.gid().unwrap_or(0) as u32;
        let (uid, gid) = match rules.owner {
            Owner::Keep => (uid, gid),
            Owner::Set(u, g) => (u, g),
        };
        let mode = Mode::from_bits_truncate(header.mode().unwrap_or(0o644) & 0o7777);
        let chown = |fd: &OwnedFd, name: &OsStr| {
            fchownat(
                fd,
                name,
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
        };
        let kind = header.entry_type();
        let is_dir = fscopy::prepare_name(&parent, &name)?;
        if is_dir && !kind.is_dir() {
            bail!(
                "cannot overwrite the directory {} with a non-directory",
                path.display()
            );
        }
        match kind {
            tar::EntryType::Directory => {
                if !is_dir {
                    mkdirat(&parent, name.as_os_str(), Mode::from_bits_truncate(0o700))?;
                }
                let d = open_dir_at(&parent, &name)?;
                nix::unistd::fchown(&d, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))?;
                nix::sys::stat::fchmod(d.as_fd(), mode)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let fd = fscopy::create_file(&parent, &name)?;
                let mut file = std::fs::File::from(fd);
                std::io::copy(&mut entry, &mut file)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                let fd = OwnedFd::from(file);
                nix::unistd::fchown(&fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))?;
                nix::sys::stat::fchmod(fd.as_fd(), mode)?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()?
                    .with_context(|| format!("symlink {} has no target", path.display()))?;
                symlinkat(target.as_os_str(), &parent, name.as_os_str())?;
                chown(&parent, &name)?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()?
                    .with_context(|| format!("hard link {} has no target", path.display()))?;
                let (tdir, tname) = walk_parent(dir, &target, false)?;
                linkat(
                    &tdir,
                    tname.as_os_str(),
                    &parent,
                    name.as_os_str(),
                    AtFlags::empty(),
                )
                .with_context(|| format!("cannot link {}", path.display()))?;
            }
            tar::EntryType::Fifo | tar::EntryType::Char | tar::EntryType::Block => {
                let sflag = match kind {
                    tar::EntryType::Fifo => SFlag::S_IFIFO,
                    tar::EntryType::Char => SFlag::S_IFCHR,
                    _ => SFlag::S_IFBLK,
                };
                let dev = libc::makedev(
                    header.device_major()?.unwrap_or(0),
                    header.device_minor()?.unwrap_or(0),
                );
                mknodat(&parent, name.as_os_str(), sflag, mode, dev)?;
                chown(&parent, &name)?;
            }
            // Pax and GNU extension headers are read by the tar crate itself.
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cp_arguments_split_as_docker_reads_them() {
        let s = split("/a/b");
        assert_eq!(
            (s.parent, s.name, s.contents),
            (PathBuf::from("/a"), Some("b".into()), false)
        );
        let s = split("/a/b/.");
        assert_eq!((s.name, s.contents), (None, true));
        let s = split("/a/b/");
        assert_eq!((s.parent, s.name), (PathBuf::from("/a/b/"), None));
        let s = split("/");
        assert_eq!(s.name, None);
    }
}
