//! Each container's own small tmpfs, mounted on its directory in the run directory
//! (`rundir::container_dir`), for what is bind-mounted read-write into it: the generated
//! /etc/hostname, /etc/hosts and /etc/resolv.conf (Docker's are writable too). Container
//! root can grow those files; on the run directory's shared tmpfs it could fill that, and
//! then no other container could be created on the host. On a tmpfs of its own it fills
//! only its own (as Docker's /dev/shm is a tmpfs per container). The init layer lives
//! there too (a read-only lowerdir: nothing the container can grow).
//!
//! Mounted in the host's mount namespace only while the container runs, as Docker's
//! /dev/shm: at each start, on top of the files written when the record was made (which
//! `cp` and `diff` of a stopped container use), the files then written into it
//! (`rundir::start_files`); detached once its state says "exited" (`rundir::unmark_live`:
//! the foreground run's and the supervisor's end, between restarts, the reclaim after a
//! kill -9 of either) or the record goes (`rm`, a `--rm` run's end, `gc` for a removed
//! state root's run directory). So an exited or created container holds no mount, and
//! the host's mount table, which every container start copies, does not grow with them.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::Context;

/// Room for the generated files and what the container adds to them; with the host's
/// network, /etc/hosts and /etc/resolv.conf are the host's, whatever their size (a hosts
/// file can be a block list of megabytes), so their sizes are added.
const ROOM: u64 = 1 << 20;

/// The init layer and the three files take about ten inodes; the container can make
/// none (only files are bind-mounted, and the init layer is a lowerdir).
const INODES: u32 = 64;

/// Whether `dir` is a mount point of a tmpfs (one `statfs`, two `stat`s).
pub(super) fn mounted(dir: &Path) -> bool {
    use nix::sys::statfs::{statfs, TMPFS_MAGIC};
    let parent = dir.parent().unwrap_or(Path::new("/"));
    let dev = |path: &Path| fs::metadata(path).map(|m| m.dev()).ok();
    statfs(dir).is_ok_and(|fs| fs.filesystem_type() == TMPFS_MAGIC) && dev(dir) != dev(parent)
}

/// Mounts the container's tmpfs on `dir` (an existing, empty directory) unless it is
/// there already.
pub(super) fn mount(dir: &Path) -> anyhow::Result<()> {
    if mounted(dir) {
        return Ok(());
    }
    let host_files: u64 = ["/etc/hosts", "/etc/resolv.conf"]
        .iter()
        .filter_map(|path| fs::metadata(path).ok())
        .map(|meta| meta.len())
        .sum();
    let size = (ROOM + host_files).div_ceil(4096) * 4096;
    use nix::mount::{mount, MsFlags};
    mount(
        Some("mycontainer-etc"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(format!("mode=0700,size={size},nr_inodes={INODES}").as_str()),
    )
    .with_context(|| {
        format!(
            "cannot mount a tmpfs on {} for the container's /etc files",
            dir.display()
        )
    })
}

/// Detaches the container's tmpfs from `dir` (its files go with it); nothing to do when
/// it is not mounted or `dir` is gone. Detached rather than unmounted: a mount namespace
/// that still holds the files (a container not yet reaped) keeps them until it ends.
pub(super) fn unmount(dir: &Path) -> anyhow::Result<()> {
    // A tmpfs mounted twice (a mount raced with another) is detached twice.
    for _ in 0..4 {
        match nix::mount::umount2(
            dir,
            nix::mount::MntFlags::MNT_DETACH | nix::mount::MntFlags::UMOUNT_NOFOLLOW,
        ) {
            Ok(()) => {}
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => return Ok(()),
            Err(err) => {
                return Err(std::io::Error::from(err))
                    .with_context(|| format!("cannot unmount {}", dir.display()))
            }
        }
    }
    Ok(())
}
