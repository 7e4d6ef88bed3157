//! A container's filesystem seen from the host without showing it to the host: a
//! thread that unshares its own mount namespace, mounts the overlay there (and, for a
//! stopped container, its volumes), works on it through descriptors and ends. The
//! mounts die with the thread's namespace, whatever happens to this process (kill -9
//! included): nothing is left to clean up.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use nix::fcntl::{open, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::stat::Mode;

/// What to mount at `mountpoint` (a directory of ours, e.g. the record's `merged/`).
pub struct View<'a> {
    /// Overlay lowerdirs, nearest first.
    pub lowerdirs: &'a [PathBuf],
    /// The upper and work dirs, for a container's read-write root; None for the image
    /// alone (read-only).
    pub upper: Option<(PathBuf, PathBuf)>,
    pub mountpoint: &'a Path,
    /// Bind mounts to add (host source, container destination, read-only), resolved
    /// inside the mounted root, as a stopped container's volumes.
    pub binds: Vec<(PathBuf, PathBuf, bool)>,
}

fn overlay_path(p: &Path) -> anyhow::Result<&str> {
    let s = p
        .to_str()
        .with_context(|| format!("layer path {} is not UTF-8", p.display()))?;
    if s.contains([':', ',']) {
        bail!(
            "layer path {s} contains ':' or ',', which overlayfs cannot take: use another --root"
        );
    }
    Ok(s)
}

/// Mounts `view` in a private mount namespace of a new thread and runs `work` with a
/// descriptor of the mounted root; returns what `work` returns.
pub fn with_view<T: Send>(
    view: View<'_>,
    work: impl FnOnce(&OwnedFd) -> anyhow::Result<T> + Send,
) -> anyhow::Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(move || -> anyhow::Result<T> {
                // CLONE_FS first: the thread may not share its root and cwd with the
                // others when it changes its mount namespace.
                unshare(CloneFlags::CLONE_FS | CloneFlags::CLONE_NEWNS)
                    .context("cannot make a private mount namespace")?;
                mount(
                    None::<&str>,
                    "/",
                    None::<&str>,
                    MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                    None::<&str>,
                )
                .context("cannot make the private mount namespace private")?;
                mount_view(&view)?;
                let root = open(
                    view.mountpoint,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .with_context(|| format!("cannot open {}", view.mountpoint.display()))?;
                work(&root)
            })
            .join()
            .unwrap_or_else(|_| bail!("the thread holding the container's mounts panicked"))
    })
}

fn mount_view(view: &View<'_>) -> anyhow::Result<()> {
    let lower = view
        .lowerdirs
        .iter()
        .map(|d| overlay_path(d))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut options = format!("lowerdir={}", lower.join(":"));
    let mut flags = MsFlags::empty();
    match &view.upper {
        Some((upper, work)) => {
            // volatile, as the runtime mounts it (the caller gave a fresh work dir;
            // `start` gives the next one).
            options.push_str(&format!(
                ",upperdir={},workdir={},volatile",
                overlay_path(upper)?,
                overlay_path(work)?
            ));
        }
        None if lower.len() == 1 => {
            // overlayfs needs two lowerdirs without an upper: a read-only bind instead.
            mount(
                Some(view.lowerdirs[0].as_path()),
                view.mountpoint,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .context("cannot bind the image's layer")?;
            return mount(
                None::<&str>,
                view.mountpoint,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .context("cannot make the image's layer read-only");
        }
        None => flags |= MsFlags::MS_RDONLY,
    }
    mount(
        Some("overlay"),
        view.mountpoint,
        Some("overlay"),
        flags,
        Some(options.as_str()),
    )
    .with_context(|| {
        format!(
            "cannot mount the container's root on {}",
            view.mountpoint.display()
        )
    })?;
    for (source, destination, read_only) in &view.binds {
        bind_inside(view.mountpoint, source, destination, *read_only)?;
    }
    Ok(())
}

/// Bind-mounts the host directory `source` on `destination` resolved inside `root`
/// (openat2 RESOLVE_IN_ROOT: a symlink in the container cannot move the mount out),
/// through the /proc/self/fd path of the resolved descriptor.
fn bind_inside(
    root: &Path,
    source: &Path,
    destination: &Path,
    read_only: bool,
) -> anyhow::Result<()> {
    use nix::fcntl::{openat2, OpenHow, ResolveFlag};
    let root_fd =
        std::fs::File::open(root).with_context(|| format!("cannot open {}", root.display()))?;
    let relative = destination
        .strip_prefix("/")
        .unwrap_or(destination)
        .to_path_buf();
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let target = match openat2(&root_fd, &relative, how) {
        Ok(fd) => fd,
        // The container never mounted it there (it failed first): nothing to show.
        Err(nix::errno::Errno::ENOENT) => return Ok(()),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot open the mount point {}", destination.display()))
        }
    };
    let proc_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&target));
    mount(
        Some(source),
        proc_path.as_str(),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .with_context(|| {
        format!(
            "cannot mount {} on {}",
            source.display(),
            destination.display()
        )
    })?;
    if read_only {
        // Opened again: the first descriptor names the directory under the new mount.
        let mounted = openat2(&root_fd, &relative, how)
            .with_context(|| format!("cannot open the mount {}", destination.display()))?;
        let proc_path = format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&mounted)
        );
        mount(
            None::<&str>,
            proc_path.as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .with_context(|| format!("cannot make {} read-only", destination.display()))?;
    }
    Ok(())
}
