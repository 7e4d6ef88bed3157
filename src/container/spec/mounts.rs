//! The spec's mounts: the overlay root first, then Docker's defaults, the record's etc
//! files, `-v` volumes and `--tmpfs`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use mycontainer_store::RootMount;
use oci_spec::runtime::{Mount, MountBuilder};

use super::RunOptions;

/// All mounts of the container, in the order the runtime makes them; `dir` is the
/// record's run directory holding the etc files.
pub(super) fn mounts(
    opts: &RunOptions,
    dir: &Path,
    root: &RootMount,
) -> anyhow::Result<Vec<Mount>> {
    let mut mounts = vec![overlay_root(root)?];
    mounts.extend(default_mounts(opts.shm_size.unwrap_or(DEFAULT_SHM_SIZE))?);
    mounts.extend(etc_mounts(dir, opts.read_only)?);
    for volume in &opts.volumes {
        if volume.host.as_os_str().is_empty() {
            bail!(
                "volume for {} was not created before the spec was built",
                volume.container.display()
            );
        }
        mounts.push(bind_mount(
            &volume.host,
            &volume.container,
            volume.read_only,
        )?);
    }
    for tmpfs in &opts.tmpfs {
        mounts.push(tmpfs_mount(tmpfs)?);
    }
    Ok(mounts)
}

/// The container's root as the spec's first mount: an overlay on "/" of the image layers
/// under the container's upper dir. The runtime mounts it on `root.path` inside the
/// container's mount namespace, so the host never sees it. `volatile` skips the syncs
/// overlayfs would do on unmount: a container's writes need not survive a host crash,
/// and the sync of the upper filesystem is the slowest part of a short run.
pub(super) fn overlay_root(layers: &RootMount) -> anyhow::Result<Mount> {
    let path = |d: &PathBuf| -> anyhow::Result<String> {
        let s = d
            .to_str()
            .with_context(|| format!("layer path {} is not UTF-8", d.display()))?;
        if s.contains([':', ',']) {
            bail!("layer path {s} contains ':' or ',', which overlayfs cannot take: use another --root");
        }
        Ok(s.to_string())
    };
    let lower = layers
        .lowerdirs
        .iter()
        .map(path)
        .collect::<anyhow::Result<Vec<_>>>()?;
    if lower.is_empty() {
        bail!("the image has no layers");
    }
    let options = vec![
        format!("lowerdir={}", lower.join(":")),
        format!("upperdir={}", path(&layers.upperdir)?),
        format!("workdir={}", path(&layers.workdir)?),
        "volatile".to_string(),
    ];
    // The kernel copies one page of mount data (mount(2), and fsconfig per value); past
    // it the layer list would be cut short. With the default root each layer takes 94
    // bytes (/var/lib/mycontainer/layers/<64 hex>:), so about 40 layers fit.
    let length = options.join(",").len();
    let limit = MOUNT_DATA_MAX;
    if length > limit {
        bail!(
            "the image has {} layers, whose paths make {length} bytes of overlay mount \
             options, over the kernel's limit of {limit}: flatten the image (create a \
             container of it, export and import it) or use a --root with a shorter path",
            lower.len()
        );
    }
    Ok(MountBuilder::default()
        .destination("/")
        .typ("overlay")
        .source("overlay")
        .options(options)
        .build()?)
}

/// The most bytes of mount options the kernel takes: a page with its final NUL (4 KiB
/// pages; larger pages take more, this is the least).
const MOUNT_DATA_MAX: usize = 4095;

/// The files the record writes for the container (see `Record::write_etc_files`) and
/// bind-mounts over /etc/<name>.
pub const ETC_FILES: [&str; 3] = ["hostname", "hosts", "resolv.conf"];

/// Bind mounts of the record's etc files (in `dir`) over /etc/{hostname,hosts,resolv.conf};
/// read-only with a read-only root, as in Docker.
pub(super) fn etc_mounts(dir: &Path, read_only: bool) -> anyhow::Result<Vec<Mount>> {
    ETC_FILES
        .iter()
        .map(|name| {
            bind_mount(
                &dir.join(name),
                Path::new("/etc").join(name).as_path(),
                read_only,
            )
        })
        .collect()
}

pub(super) fn bind_mount(
    source: &Path,
    destination: &Path,
    read_only: bool,
) -> anyhow::Result<Mount> {
    let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
    if read_only {
        options.push("ro".into());
    }
    Ok(MountBuilder::default()
        .destination(destination)
        .typ("bind")
        .source(source)
        .options(options)
        .build()?)
}

fn mount(destination: &str, typ: &str, options: &[&str]) -> anyhow::Result<Mount> {
    Ok(MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(typ)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()?)
}

/// Docker's /dev/shm size when `--shm-size` is not given.
pub const DEFAULT_SHM_SIZE: u64 = 64 << 20;

/// The runc/Docker default mounts: /proc, /dev (tmpfs), /dev/pts, /dev/shm of
/// `shm_size` bytes, /dev/mqueue, /sys and the container's cgroups at /sys/fs/cgroup
/// (read-only).
pub(super) fn default_mounts(shm_size: u64) -> anyhow::Result<Vec<Mount>> {
    let shm_size = format!("size={}k", shm_size.div_ceil(1024));
    Ok(vec![
        mount("/proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        // Source "shm", as Docker names it in /proc/mounts.
        MountBuilder::default()
            .destination("/dev/shm")
            .typ("tmpfs")
            .source("shm")
            .options(
                ["nosuid", "noexec", "nodev", "mode=1777", &shm_size]
                    .iter()
                    .map(|o| o.to_string())
                    .collect::<Vec<_>>(),
            )
            .build()?,
        mount("/dev/mqueue", "mqueue", &["nosuid", "noexec", "nodev"])?,
        mount("/sys", "sysfs", &["nosuid", "noexec", "nodev", "ro"])?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        )?,
    ])
}

pub(super) fn tmpfs_mount(value: &str) -> anyhow::Result<Mount> {
    let (path, extra) = value.split_once(':').unwrap_or((value, ""));
    if !path.starts_with('/') || path == "/" {
        bail!("invalid value {value:?} for --tmpfs: use an absolute container path, optionally with :OPTIONS");
    }
    let mut options: Vec<String> = vec!["nosuid".into(), "nodev".into(), "noexec".into()];
    options.extend(extra.split(',').filter(|o| !o.is_empty()).map(String::from));
    Ok(MountBuilder::default()
        .destination(path)
        .typ("tmpfs")
        .source("tmpfs")
        .options(options)
        .build()?)
}
