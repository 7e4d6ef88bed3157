//! Plans the container's filesystem: the overlay root, pivot_root, the spec's mounts,
//! /dev, masked and read-only paths. Produces [`Step`]s; nothing here touches the system,
//! so the plan is unit-tested without root.
//!
//! The order is the defence against the image (the class of runc's CVE-2021-30465): only
//! host paths the runtime chose are used while the host's root is reachable (the root
//! mount, and the bind sources, opened as detached mounts); pivot_root then detaches the
//! host's root, and only after that is any container path (a mount target, its parents,
//! /etc, /dev, /proc...) looked up, inside the new root and without magic links. An image
//! symlink, or one the container left in its upper dir for the next start, can then only
//! lead somewhere inside the container.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context};
use libc::c_ulong;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};

use super::cgroups::CgroupView;
#[cfg(test)]
use super::cgroups::V1View;
use super::namespaces::Namespaces;
use super::plan::Step;

/// The device nodes of a fresh /dev: (name, major, minor), all 0666 as in runc.
const DEVICES: &[(&str, u32, u32)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

const DEV_SYMLINKS: &[(&str, &str)] = &[
    ("pts/ptmx", "/dev/ptmx"),
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
];

pub fn cstring(path: impl AsRef<Path>) -> anyhow::Result<CString> {
    let path = path.as_ref();
    CString::new(path.as_os_str().as_bytes())
        .with_context(|| format!("path {} contains a NUL byte", path.display()))
}

/// A container path made absolute and clean; `..` is refused.
fn container_path(path: &Path) -> anyhow::Result<PathBuf> {
    let mut clean = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => clean.push(part),
            Component::ParentDir | Component::Prefix(_) => {
                bail!("container path {} must not contain '..'", path.display())
            }
        }
    }
    Ok(clean)
}

/// mkdir steps for every ancestor of `path` (not `path` itself).
fn mkdir_parents(path: &Path, steps: &mut Vec<Step>) -> anyhow::Result<()> {
    let mut ancestors: Vec<&Path> = path.ancestors().skip(1).collect();
    ancestors.reverse();
    for dir in ancestors.into_iter().filter(|d| *d != Path::new("/")) {
        steps.push(Step::Mkdir {
            path: cstring(dir)?,
            mode: 0o755,
        });
    }
    Ok(())
}

/// Mount options split into mount(2) flags, filesystem data and whether it is a bind.
#[derive(Debug, Default, PartialEq, Eq)]
struct Options {
    flags: c_ulong,
    data: Vec<String>,
    bind: bool,
    recursive: bool,
}

fn parse_options(options: &[String]) -> Options {
    let mut parsed = Options::default();
    for option in options {
        // As mount(8) and runc: options apply in order, so a later "exec" undoes an
        // earlier "noexec" (Docker's --tmpfs defaults come first, the user's after).
        let cleared = match option.as_str() {
            "rw" => libc::MS_RDONLY,
            "exec" => libc::MS_NOEXEC,
            "suid" => libc::MS_NOSUID,
            "dev" => libc::MS_NODEV,
            _ => 0,
        };
        parsed.flags &= !cleared;
        let flag = match option.as_str() {
            "ro" => libc::MS_RDONLY,
            "nosuid" => libc::MS_NOSUID,
            "nodev" => libc::MS_NODEV,
            "noexec" => libc::MS_NOEXEC,
            "sync" => libc::MS_SYNCHRONOUS,
            "strictatime" => libc::MS_STRICTATIME,
            "relatime" => libc::MS_RELATIME,
            "noatime" => libc::MS_NOATIME,
            "nodiratime" => libc::MS_NODIRATIME,
            "bind" => {
                parsed.bind = true;
                0
            }
            "rbind" => {
                parsed.bind = true;
                parsed.recursive = true;
                0
            }
            // The whole tree is made rprivate before anything is mounted, so propagation
            // options add nothing; "rw", "exec", "suid", "dev" only clear (above).
            "private" | "rprivate" | "slave" | "rslave" | "shared" | "rshared" | "rw" | "exec"
            | "suid" | "dev" => 0,
            other => {
                parsed.data.push(other.to_string());
                0
            }
        };
        parsed.flags |= flag;
    }
    parsed
}

/// Mount flags as mount_setattr attributes to (set, clear). A bind takes only per-mount
/// flags: the superblock's (sync...) are the host's, as a bind remount would leave them.
fn mount_attrs(flags: c_ulong) -> (u64, u64) {
    let mut set = 0;
    let mut clear = 0;
    for (flag, attr) in [
        (libc::MS_RDONLY, libc::MOUNT_ATTR_RDONLY),
        (libc::MS_NOSUID, libc::MOUNT_ATTR_NOSUID),
        (libc::MS_NODEV, libc::MOUNT_ATTR_NODEV),
        (libc::MS_NOEXEC, libc::MOUNT_ATTR_NOEXEC),
        (libc::MS_NODIRATIME, libc::MOUNT_ATTR_NODIRATIME),
    ] {
        if flags & flag != 0 {
            set |= attr;
        }
    }
    // The access-time mode is one field: setting one clears the others.
    for (flag, attr) in [
        (libc::MS_NOATIME, libc::MOUNT_ATTR_NOATIME),
        (libc::MS_STRICTATIME, libc::MOUNT_ATTR_STRICTATIME),
        (libc::MS_RELATIME, libc::MOUNT_ATTR_RELATIME),
    ] {
        if flags & flag != 0 {
            set |= attr;
            clear |= libc::MOUNT_ATTR__ATIME;
        }
    }
    (set, clear)
}

/// Plans one spec mount: a bind's source is opened into the next slot by a step in
/// `opens` (before pivot_root), everything on the container's side goes to `steps`.
///
/// In a user namespace proc and sysfs are created before pivot_root too (see
/// [`Step::OpenFs`]) and attached at their place after it; without a network namespace
/// of its own the kernel refuses it a sysfs, which is then the host's, bound read-only
/// (as in runc).
fn plan_mount(
    mount: &Mount,
    ns: &Namespaces,
    opens: &mut Vec<Step>,
    steps: &mut Vec<Step>,
) -> anyhow::Result<()> {
    let target = container_path(mount.destination())?;
    let mut options = parse_options(&mount.options().clone().unwrap_or_default());
    let typ = mount.typ().clone().unwrap_or_default();
    mkdir_parents(&target, steps)?;
    let plain = !options.bind && options.data.is_empty();
    if ns.user && plain && typ == "sysfs" && !ns.net {
        steps.push(Step::Mkdir {
            path: cstring(&target)?,
            mode: 0o755,
        });
        let slot = opens.len();
        opens.push(Step::OpenTree {
            source: cstring("/sys")?,
            recursive: true,
            slot,
        });
        options.flags |= libc::MS_RDONLY;
        let (set, clear) = mount_attrs(options.flags);
        steps.push(Step::Bind {
            slot,
            source: cstring("/sys")?,
            target: cstring(&target)?,
            set,
            clear,
        });
        return Ok(());
    }
    if ns.user && plain && (typ == "proc" || typ == "sysfs") {
        steps.push(Step::Mkdir {
            path: cstring(&target)?,
            mode: 0o755,
        });
        let slot = opens.len();
        let (set, _) = mount_attrs(options.flags);
        opens.push(Step::OpenFs {
            fstype: cstring(&typ)?,
            attrs: set,
            slot,
        });
        steps.push(Step::Bind {
            slot,
            source: cstring(&typ)?,
            target: cstring(&target)?,
            set: 0,
            clear: 0,
        });
        return Ok(());
    }
    if options.bind || typ == "bind" {
        let source = mount
            .source()
            .as_ref()
            .with_context(|| format!("bind mount on {} has no source", target.display()))?;
        if !source.is_absolute() {
            bail!(
                "bind mount source {} must be an absolute host path",
                source.display()
            );
        }
        let meta = std::fs::metadata(source)
            .with_context(|| format!("bind mount source {} does not exist", source.display()))?;
        if meta.is_dir() {
            steps.push(Step::Mkdir {
                path: cstring(&target)?,
                mode: 0o755,
            });
        } else {
            steps.push(Step::CreateFile {
                path: cstring(&target)?,
            });
        }
        let slot = opens.len();
        opens.push(Step::OpenTree {
            source: cstring(source)?,
            recursive: options.recursive,
            slot,
        });
        let (set, clear) = mount_attrs(options.flags);
        steps.push(Step::Bind {
            slot,
            source: cstring(source)?,
            target: cstring(&target)?,
            set,
            clear,
        });
        return Ok(());
    }
    steps.push(Step::Mkdir {
        path: cstring(&target)?,
        mode: 0o755,
    });
    let source = mount
        .source()
        .clone()
        .unwrap_or_else(|| PathBuf::from(&typ));
    steps.push(Step::MountFs {
        source: Some(cstring(source)?),
        target: cstring(&target)?,
        fstype: Some(cstring(&typ)?),
        flags: options.flags,
        data: if options.data.is_empty() {
            None
        } else {
            Some(CString::new(options.data.join(","))?)
        },
    });
    Ok(())
}

/// Mounts the cgroup view read-only at the mount's destination: cgroup2 itself on a v2
/// host; else a tmpfs with a cgroup2 mount at `unified` (hybrid), a v1 mount of each
/// hierarchy of the view (inside the cgroup namespace each shows the container's
/// cgroup where it joined one, else the one it inherited, never a host root: see
/// cgroups/view.rs) and a link per controller of a co-mounted one. Each is mounted read-write and then made read-only per mount
/// (mount_setattr), never through the superblock, which the host's mount of the same
/// hierarchy shares.
fn plan_cgroup_mount(
    mount: &Mount,
    cgroups: &CgroupView,
    steps: &mut Vec<Step>,
) -> anyhow::Result<()> {
    const FLAGS: c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    let target = container_path(mount.destination())?;
    mkdir_parents(&target, steps)?;
    steps.push(Step::Mkdir {
        path: cstring(&target)?,
        mode: 0o755,
    });
    let mut mounted = vec![(target.clone(), "cgroup2", None)];
    let mut links: &[(String, String)] = &[];
    if let CgroupView::Split { unified, v1 } = cgroups {
        mounted[0] = (target.clone(), "tmpfs", Some("mode=755"));
        if *unified {
            mounted.push((target.join("unified"), "cgroup2", None));
        }
        for (name, data) in &v1.mounts {
            mounted.push((target.join(name), "cgroup", Some(data.as_str())));
        }
        links = &v1.links;
    }
    for (i, (dir, fstype, data)) in mounted.iter().enumerate() {
        if i > 0 {
            steps.push(Step::Mkdir {
                path: cstring(dir)?,
                mode: 0o755,
            });
        }
        steps.push(Step::MountFs {
            source: Some(CString::new(*fstype)?),
            target: cstring(dir)?,
            fstype: Some(CString::new(*fstype)?),
            flags: FLAGS,
            data: data.map(CString::new).transpose()?,
        });
    }
    // In the tmpfs, before it is made read-only.
    for (link, points_to) in links {
        steps.push(Step::Symlink {
            target: CString::new(points_to.as_str())?,
            link: cstring(target.join(link))?,
        });
    }
    let read_only = mounted.into_iter().map(|(dir, _, _)| dir);
    let (set, clear) = mount_attrs(libc::MS_RDONLY | FLAGS);
    for dir in read_only {
        steps.push(Step::SetAttr {
            target: cstring(&dir)?,
            set,
            clear,
        });
    }
    Ok(())
}

/// The spec's `linux.devices`: each node (and its parent directories) with its mode and
/// owner. Planned before the default nodes, so a spec node at a default path wins (the
/// later mknod finds it there), as in runc.
fn plan_spec_devices(devices: &[LinuxDevice], steps: &mut Vec<Step>) -> anyhow::Result<()> {
    for device in devices {
        let path = container_path(device.path())?;
        let kind = match device.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
            LinuxDeviceType::B => libc::S_IFBLK,
            LinuxDeviceType::P => libc::S_IFIFO,
            LinuxDeviceType::A => {
                bail!("device {} has type a: give b, c, u or p", path.display())
            }
        };
        let number = |n: i64| u32::try_from(n).ok();
        let (Some(major), Some(minor)) = (number(device.major()), number(device.minor())) else {
            bail!(
                "device {} has an invalid major or minor number",
                path.display()
            );
        };
        mkdir_parents(&path, steps)?;
        let path = cstring(&path)?;
        steps.push(Step::Mknod {
            path: path.clone(),
            mode: kind | (device.file_mode().unwrap_or(0o666) & 0o7777),
            dev: libc::makedev(major, minor),
        });
        if device.uid().is_some() || device.gid().is_some() {
            // -1 (u32::MAX) leaves that id as it is: root, who made the node
            steps.push(Step::Chown {
                path,
                uid: device.uid().unwrap_or(u32::MAX),
                gid: device.gid().unwrap_or(u32::MAX),
            });
        }
    }
    Ok(())
}

/// A device of a user namespace's container: the host's node at `path` bound on the same
/// container path (its source opened into the next slot by a step in `opens`).
fn plan_device_bind(
    path: &Path,
    opens: &mut Vec<Step>,
    steps: &mut Vec<Step>,
) -> anyhow::Result<()> {
    let target = container_path(path)?;
    mkdir_parents(&target, steps)?;
    steps.push(Step::CreateFile {
        path: cstring(&target)?,
    });
    let slot = opens.len();
    opens.push(Step::OpenTree {
        source: cstring(path)?,
        recursive: false,
        slot,
    });
    steps.push(Step::Bind {
        slot,
        source: cstring(path)?,
        target: cstring(&target)?,
        set: 0,
        clear: 0,
    });
    Ok(())
}

/// The spec's root mount: a first mount on "/" (our overlay of the image layers), to be
/// mounted on `root.path` before pivot_root.
fn root_mount(mounts: &[Mount]) -> Option<&Mount> {
    mounts.first().filter(|m| m.destination() == Path::new("/"))
}

/// Mounts the root: the spec's "/" mount when there is one, else a bind of `root.path`
/// onto itself (pivot_root needs a mount point).
fn plan_root(
    root_mount: Option<&Mount>,
    rootfs: &Path,
    steps: &mut Vec<Step>,
) -> anyhow::Result<()> {
    match root_mount {
        Some(mount) => {
            let typ = mount.typ().clone().unwrap_or_default();
            if typ != "overlay" {
                bail!("a mount on / must be an overlay, not {typ:?}");
            }
            let options = parse_options(&mount.options().clone().unwrap_or_default());
            let data = options.data.join(",");
            // mount(2) copies at most one page of options.
            if data.len() >= 4096 {
                bail!("the image has too many layers for one overlay mount ({} bytes of options): flatten it", data.len());
            }
            steps.push(Step::Mount {
                source: Some(CString::new("overlay")?),
                target: cstring(rootfs)?,
                fstype: Some(CString::new("overlay")?),
                flags: options.flags,
                data: Some(CString::new(data)?),
            });
        }
        None => steps.push(Step::Mount {
            source: Some(cstring(rootfs)?),
            target: cstring(rootfs)?,
            fstype: None,
            flags: libc::MS_BIND | libc::MS_REC,
            data: None,
        }),
    }
    Ok(())
}

/// The /proc/sys file of sysctl `key` (`net.ipv4.ip_forward` or `net/ipv4/ip_forward`),
/// refused unless it belongs to a namespace the container has of its own: anything
/// else would change the host. As runc: IPC sysctls (kernel.msg*, kernel.sem,
/// kernel.shm*, fs.mqueue.*) with a new ipc namespace, net.* with a new network one,
/// kernel.hostname and kernel.domainname with a new uts one.
pub fn sysctl_path(key: &str, ns: &Namespaces) -> anyhow::Result<String> {
    let dotted = key.replace('/', ".");
    if dotted.split('.').any(|p| p.is_empty() || p == "..") || dotted.contains('\0') {
        bail!("invalid sysctl {key:?}");
    }
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let own = if IPC.contains(&dotted.as_str()) || dotted.starts_with("fs.mqueue.") {
        ns.ipc
    } else if dotted.starts_with("net.") {
        ns.net
    } else if dotted == "kernel.hostname" || dotted == "kernel.domainname" {
        ns.uts
    } else {
        bail!(
            "sysctl {key:?} is not namespaced: setting it would change the host (only ipc, \
             net.* and uts sysctls are allowed)"
        );
    };
    if !own {
        bail!(
            "sysctl {key:?} needs a namespace of the container's own (it would change the host's)"
        );
    }
    Ok(format!("/proc/sys/{}", dotted.replace('.', "/")))
}

/// The whole filesystem setup of the child, in order. A mount of type "cgroup" (Docker's
/// /sys/fs/cgroup) shows `cgroups`, mounted once the child is in its cgroup namespace.
pub fn plan(
    spec: &Spec,
    bundle: &Path,
    ns: &Namespaces,
    cgroups: &CgroupView,
) -> anyhow::Result<Vec<Step>> {
    let root = spec.root().as_ref().context("the spec has no root")?;
    let rootfs = bundle.join(root.path());
    let linux = spec.linux().as_ref();
    let mut steps = Vec::new();

    // Nothing we mount may propagate back to the host.
    steps.push(Step::Mount {
        source: None,
        target: CString::new("/")?,
        fstype: None,
        flags: libc::MS_REC | libc::MS_PRIVATE,
        data: None,
    });
    let mounts = spec.mounts().clone().unwrap_or_default();
    let root_mount = root_mount(&mounts);
    plan_root(root_mount, &rootfs, &mut steps)?;

    let skip = usize::from(root_mount.is_some());
    let (cgroup_mounts, other_mounts): (Vec<&Mount>, Vec<&Mount>) = mounts[skip..]
        .iter()
        .partition(|m| m.typ().as_deref() == Some("cgroup"));
    // A volume or tmpfs the user put at or under /sys/fs/cgroup wins over our view, as
    // in Docker (the view is mounted last and would hide it).
    let cgroup_mounts: Vec<&Mount> = cgroup_mounts
        .into_iter()
        .filter(|c| {
            !other_mounts
                .iter()
                .any(|m| m.destination().starts_with(c.destination()))
        })
        .collect();
    // The bind sources are opened while the host's root is ours; every other step of a
    // mount waits until it is gone.
    let mut opens = Vec::new();
    let mut mounting = Vec::new();
    for mount in other_mounts {
        plan_mount(mount, ns, &mut opens, &mut mounting)?;
    }
    let spec_devices = linux.and_then(|l| l.devices().clone()).unwrap_or_default();
    let mut devices = Vec::new();
    if ns.user {
        // No mknod in a user namespace: the host's nodes are bound instead, as in runc.
        for device in &spec_devices {
            plan_device_bind(device.path(), &mut opens, &mut devices)?;
        }
    } else {
        plan_spec_devices(&spec_devices, &mut devices)?;
    }
    let fresh_dev = mounts.iter().any(|m| m.destination() == Path::new("/dev"));
    if fresh_dev {
        for (name, major, minor) in DEVICES {
            let path = Path::new("/dev").join(name);
            if ns.user {
                plan_device_bind(&path, &mut opens, &mut devices)?;
                continue;
            }
            devices.push(Step::Mknod {
                path: cstring(path)?,
                mode: libc::S_IFCHR | 0o666,
                dev: libc::makedev(*major, *minor),
            });
        }
    }
    steps.extend(opens);
    // The spec's mounts are attached before pivot_root, their targets resolved inside the
    // root filesystem's descriptor (RESOLVE_IN_ROOT, no magic links, attached by
    // descriptor), so that createContainer hooks see them; every step that takes a
    // container path with a plain path syscall (mknod, lchown, symlink, sysctl writes,
    // chdir) and the masks come after pivot_root, once the host's root is detached.
    steps.push(Step::OpenRoot {
        path: cstring(&rootfs)?,
    });
    steps.extend(mounting);
    steps.push(Step::PivotRoot {
        new_root: cstring(&rootfs)?,
    });
    steps.extend(devices);
    if fresh_dev {
        for (target, link) in DEV_SYMLINKS {
            steps.push(Step::Symlink {
                target: CString::new(*target)?,
                link: CString::new(*link)?,
            });
        }
    }
    let mut sysctls: Vec<_> = linux
        .and_then(|l| l.sysctl().clone())
        .unwrap_or_default()
        .into_iter()
        .collect();
    sysctls.sort();
    for (key, value) in sysctls {
        steps.push(Step::Sysctl {
            path: CString::new(sysctl_path(&key, ns)?)?,
            value: CString::new(value)?,
        });
    }
    for path in linux
        .and_then(|l| l.masked_paths().clone())
        .unwrap_or_default()
    {
        steps.push(Step::Mask {
            path: cstring(container_path(Path::new(&path))?)?,
        });
    }
    for path in linux
        .and_then(|l| l.readonly_paths().clone())
        .unwrap_or_default()
    {
        steps.push(Step::ReadonlyBind {
            path: cstring(container_path(Path::new(&path))?)?,
        });
    }

    let process = spec.process().as_ref().context("the spec has no process")?;
    let cwd = container_path(process.cwd())?;
    mkdir_parents(&cwd.join("x"), &mut steps)?;
    if ns.uts {
        if let Some(hostname) = spec.hostname() {
            steps.push(Step::SetHostname {
                name: CString::new(hostname.as_str())?,
            });
        }
    }
    if ns.net {
        steps.push(Step::LoopbackUp);
    }
    // The root is ready: from here on the container must be in its cgroup.
    steps.push(Step::AwaitCgroup);
    if ns.cgroup {
        steps.push(Step::UnshareCgroup);
        // Without its own cgroup namespace a cgroup mount would show the host's tree.
        for mount in cgroup_mounts {
            plan_cgroup_mount(mount, cgroups, &mut steps)?;
        }
    }
    // Last: every mkdir above may need a writable root.
    if root.readonly() == Some(true) {
        steps.push(Step::SetAttr {
            target: CString::new("/")?,
            set: libc::MOUNT_ATTR_RDONLY,
            clear: 0,
        });
    }
    steps.push(Step::Chdir {
        path: cstring(&cwd)?,
    });
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxBuilder, LinuxDeviceBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, MountBuilder,
        ProcessBuilder, RootBuilder, SpecBuilder,
    };

    /// What a test asks of its container's spec (what the flags of `run` set).
    #[derive(Default)]
    struct Asked {
        /// (host dir, container path, read-only), as `-v`.
        volumes: Vec<(PathBuf, &'static str, bool)>,
        read_only: bool,
        host_network: bool,
        devices: Vec<LinuxDevice>,
    }

    fn mount(destination: &str, typ: &str, source: &Path, options: &[&str]) -> Mount {
        MountBuilder::default()
            .destination(destination)
            .typ(typ)
            .source(source)
            .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
            .build()
            .unwrap()
    }

    /// A spec laid out as a container's is: the overlay of two layers under `dir` on "/",
    /// the default filesystems (/proc, /dev, /sys, the cgroup view), /etc files bound
    /// from `dir`, the volumes, masked and read-only paths, and the namespaces.
    fn container_spec(dir: &Path, asked: &Asked) -> Spec {
        let overlay = format!(
            "lowerdir={}:{},upperdir={},workdir={}",
            dir.join("l1").display(),
            dir.join("l0").display(),
            dir.join("upper").display(),
            dir.join("work").display(),
        );
        let overlay: Vec<&str> = overlay.split(',').chain(["volatile"]).collect();
        let fs = |typ: &str| PathBuf::from(typ);
        let mut mounts = vec![
            mount("/", "overlay", &fs("overlay"), &overlay),
            mount("/proc", "proc", &fs("proc"), &["nosuid", "noexec", "nodev"]),
            mount("/dev", "tmpfs", &fs("tmpfs"), &["nosuid", "mode=755"]),
            mount(
                "/dev/pts",
                "devpts",
                &fs("devpts"),
                &["nosuid", "newinstance"],
            ),
            mount("/dev/shm", "tmpfs", &fs("tmpfs"), &["nosuid", "mode=1777"]),
            mount("/dev/mqueue", "mqueue", &fs("mqueue"), &["nosuid", "nodev"]),
            mount("/sys", "sysfs", &fs("sysfs"), &["nosuid", "ro"]),
            mount("/sys/fs/cgroup", "cgroup", &fs("cgroup"), &["nosuid", "ro"]),
        ];
        for name in ["hostname", "hosts", "resolv.conf"] {
            let source = dir.join(name);
            std::fs::write(&source, "").unwrap();
            let target = format!("/etc/{name}");
            mounts.push(mount(&target, "bind", &source, &["rbind", "rprivate"]));
        }
        for (host, container, read_only) in &asked.volumes {
            let options: &[&str] = if *read_only {
                &["rbind", "rprivate", "ro"]
            } else {
                &["rbind", "rprivate"]
            };
            mounts.push(mount(container, "bind", host, options));
        }
        let mut namespaces = vec![
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Cgroup,
        ];
        if !asked.host_network {
            namespaces.push(LinuxNamespaceType::Network);
        }
        let namespaces = namespaces
            .into_iter()
            .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build().unwrap())
            .collect::<Vec<_>>();
        let linux = LinuxBuilder::default()
            .namespaces(namespaces)
            .masked_paths(vec!["/proc/kcore".to_string(), "/proc/keys".to_string()])
            .readonly_paths(vec!["/proc/sys".to_string()])
            .devices(asked.devices.clone())
            .build()
            .unwrap();
        SpecBuilder::default()
            .root(
                RootBuilder::default()
                    .path("merged")
                    .readonly(asked.read_only)
                    .build()
                    .unwrap(),
            )
            .hostname("box")
            .process(
                ProcessBuilder::default()
                    .args(vec!["sh".to_string()])
                    .cwd("/")
                    .build()
                    .unwrap(),
            )
            .mounts(mounts)
            .linux(linux)
            .build()
            .unwrap()
    }

    fn planned(asked: &Asked) -> (Vec<Step>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let spec = container_spec(dir.path(), asked);
        let ns = Namespaces::from_spec(&spec).unwrap();
        let view = CgroupView::Split {
            unified: true,
            v1: V1View {
                mounts: vec![
                    ("memory".into(), "memory".into()),
                    ("cpu,cpuacct".into(), "cpu,cpuacct".into()),
                ],
                links: vec![("cpu".into(), "cpu,cpuacct".into())],
            },
        };
        (plan(&spec, dir.path(), &ns, &view).unwrap(), dir)
    }

    fn position(steps: &[Step], wanted: impl Fn(&Step) -> bool) -> usize {
        steps.iter().position(wanted).expect("step missing")
    }

    /// A plan with a volume of a fresh host dir at `container`.
    fn with_volume(container: &'static str, read_only: bool) -> (Vec<Step>, tempfile::TempDir) {
        let host = tempfile::tempdir().unwrap();
        let asked = Asked {
            volumes: vec![(host.path().to_path_buf(), container, read_only)],
            read_only,
            ..Default::default()
        };
        (planned(&asked).0, host)
    }

    #[test]
    fn later_options_undo_earlier_flags_as_mount_does() {
        let options =
            |list: &[&str]| parse_options(&list.iter().map(|o| o.to_string()).collect::<Vec<_>>());
        let parsed = options(&["nosuid", "nodev", "noexec", "size=4m", "exec"]);
        assert_eq!(parsed.flags, libc::MS_NOSUID | libc::MS_NODEV);
        assert_eq!(parsed.data, ["size=4m"]);
        assert_eq!(options(&["ro", "rw"]).flags, 0);
        assert_eq!(options(&["exec", "noexec"]).flags, libc::MS_NOEXEC);
    }

    #[test]
    fn root_is_private_then_overlay_then_sources_then_pivot_with_the_old_root_detached() {
        let (steps, dir) = planned(&Asked::default());
        let private = position(
            &steps,
            |s| matches!(s, Step::Mount { flags, .. } if *flags == libc::MS_REC | libc::MS_PRIVATE),
        );
        let overlay = position(
            &steps,
            |s| matches!(s, Step::Mount { fstype: Some(t), .. } if t.as_bytes() == b"overlay"),
        );
        let open = position(&steps, |s| matches!(s, Step::OpenTree { .. }));
        let pivot = position(&steps, |s| matches!(s, Step::PivotRoot { .. }));
        assert!(private < overlay && overlay < open && open < pivot);
        let Step::Mount {
            data: Some(data), ..
        } = &steps[overlay]
        else {
            unreachable!()
        };
        let data = data.to_str().unwrap();
        let l1 = dir.path().join("l1");
        assert!(
            data.starts_with(&format!("lowerdir={}:", l1.display())),
            "{data}"
        );
        assert_eq!(
            steps.last(),
            Some(&Step::Chdir {
                path: CString::new("/").unwrap()
            })
        );
    }

    /// The defence itself: host paths of ours first; then, until pivot_root (which
    /// detaches the host's root), only the mount steps, whose container paths are
    /// resolved inside the root filesystem's descriptor (openat2 RESOLVE_IN_ROOT) and
    /// attached by descriptor; every step that takes a container path with a plain path
    /// syscall comes after pivot_root; after it no step may take a host path, and
    /// nothing names an old root inside the container.
    #[test]
    fn no_container_path_is_looked_up_outside_the_root_before_the_host_root_is_detached() {
        let (steps, host) = with_volume("/data/in", false);
        let root = position(&steps, |s| matches!(s, Step::OpenRoot { .. }));
        let pivot = position(&steps, |s| matches!(s, Step::PivotRoot { .. }));
        assert!(root < pivot);
        for step in &steps[..root] {
            assert!(
                matches!(step, Step::Mount { .. } | Step::OpenTree { .. }),
                "{step:?} before the root filesystem is opened"
            );
        }
        for step in &steps[root + 1..pivot] {
            assert!(
                matches!(
                    step,
                    Step::Mkdir { .. }
                        | Step::CreateFile { .. }
                        | Step::Bind { .. }
                        | Step::MountFs { .. }
                        | Step::SetAttr { .. }
                ),
                "{step:?} before pivot_root does not resolve in the root's descriptor"
            );
        }
        for step in &steps[pivot + 1..] {
            assert!(
                !matches!(step, Step::Mount { .. } | Step::OpenTree { .. }),
                "{step:?} after pivot_root takes a host path"
            );
        }
        assert!(steps.iter().all(|s| !format!("{s:?}").contains("oldroot")));
        // Every source is opened into its own slot, and attached from that slot.
        let opened: Vec<(usize, &CString)> = steps
            .iter()
            .filter_map(|s| match s {
                Step::OpenTree { slot, source, .. } => Some((*slot, source)),
                _ => None,
            })
            .collect();
        let bound: Vec<(usize, &CString)> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Bind { slot, source, .. } => Some((*slot, source)),
                _ => None,
            })
            .collect();
        assert_eq!(opened, bound);
        assert_eq!(
            opened.iter().map(|(slot, _)| *slot).collect::<Vec<_>>(),
            (0..opened.len()).collect::<Vec<_>>()
        );
        // /etc/hostname, /etc/hosts, /etc/resolv.conf and the volume.
        assert_eq!(opened.len(), 4);
        assert_eq!(opened[3].1.as_bytes(), host.path().as_os_str().as_bytes());
        assert_eq!(crate::runtime::plan::Slots::for_steps(&steps).len(), 4);
    }

    #[test]
    fn dev_gets_devices_after_its_tmpfs_and_proc_is_masked_after_mounting() {
        let (steps, _dir) = planned(&Asked::default());
        let dev = position(
            &steps,
            |s| matches!(s, Step::MountFs { target, .. } if target.as_bytes() == b"/dev"),
        );
        let null = position(
            &steps,
            |s| matches!(s, Step::Mknod { path, .. } if path.as_bytes() == b"/dev/null"),
        );
        let proc = position(
            &steps,
            |s| matches!(s, Step::MountFs { target, .. } if target.as_bytes() == b"/proc"),
        );
        let kcore = position(
            &steps,
            |s| matches!(s, Step::Mask { path } if path.as_bytes() == b"/proc/kcore"),
        );
        assert!(dev < null && proc < kcore);
        assert!(steps.contains(&Step::LoopbackUp));
    }

    #[test]
    fn read_only_volume_is_opened_before_pivot_and_attached_read_only_after() {
        let (steps, host) = with_volume("/data/in", true);
        let open = position(
            &steps,
            |s| matches!(s, Step::OpenTree { source, .. } if source.as_bytes() == host.path().as_os_str().as_bytes()),
        );
        let pivot = position(&steps, |s| matches!(s, Step::PivotRoot { .. }));
        let data = position(
            &steps,
            |s| matches!(s, Step::Mkdir { path, .. } if path.as_bytes() == b"/data"),
        );
        let bind = position(
            &steps,
            |s| matches!(s, Step::Bind { target, .. } if target.as_bytes() == b"/data/in"),
        );
        let root = position(&steps, |s| matches!(s, Step::OpenRoot { .. }));
        assert!(open < root && root < data && data < bind && bind < pivot);
        let Step::OpenTree { recursive, .. } = &steps[open] else {
            unreachable!()
        };
        assert!(*recursive, "-v is an rbind");
        assert!(
            matches!(&steps[bind], Step::Bind { set, .. } if set & libc::MOUNT_ATTR_RDONLY != 0)
        );
        // The read-only root comes after every mkdir it would forbid.
        let ro_root = position(
            &steps,
            |s| matches!(s, Step::SetAttr { target, set, .. } if target.as_bytes() == b"/" && set & libc::MOUNT_ATTR_RDONLY != 0),
        );
        assert!(steps[ro_root..]
            .iter()
            .all(|s| !matches!(s, Step::Mkdir { .. } | Step::CreateFile { .. })));
    }

    #[test]
    fn cgroup_view_is_mounted_in_the_namespace_then_made_read_only_per_mount() {
        let (steps, _dir) = planned(&Asked::default());
        let unshare = position(&steps, |s| *s == Step::UnshareCgroup);
        for dir in [
            "/sys/fs/cgroup",
            "/sys/fs/cgroup/unified",
            "/sys/fs/cgroup/memory",
            "/sys/fs/cgroup/cpu,cpuacct",
        ] {
            let mounted = position(
                &steps,
                |s| matches!(s, Step::MountFs { target, flags, .. } if target.as_bytes() == dir.as_bytes() && flags & libc::MS_RDONLY == 0),
            );
            let read_only = position(
                &steps,
                |s| matches!(s, Step::SetAttr { target, set, .. } if target.as_bytes() == dir.as_bytes() && set & libc::MOUNT_ATTR_RDONLY != 0),
            );
            assert!(unshare < mounted && mounted < read_only, "{dir}");
        }
        // Every hierarchy of the view, joined or not; a co-mounted one gets its links
        // in the tmpfs before the tmpfs is made read-only.
        let link = position(
            &steps,
            |s| matches!(s, Step::Symlink { target, link } if target.as_bytes() == b"cpu,cpuacct" && link.as_bytes() == b"/sys/fs/cgroup/cpu"),
        );
        let tmpfs_read_only = position(
            &steps,
            |s| matches!(s, Step::SetAttr { target, .. } if target.as_bytes() == b"/sys/fs/cgroup"),
        );
        assert!(link < tmpfs_read_only);
    }

    #[test]
    fn bind_flags_become_mount_attributes() {
        assert_eq!(mount_attrs(0), (0, 0));
        assert_eq!(
            mount_attrs(libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_SYNCHRONOUS),
            (libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID, 0)
        );
        assert_eq!(
            mount_attrs(libc::MS_NOATIME | libc::MS_NODEV),
            (
                libc::MOUNT_ATTR_NOATIME | libc::MOUNT_ATTR_NODEV,
                libc::MOUNT_ATTR__ATIME
            )
        );
    }

    #[test]
    fn host_network_skips_loopback_and_dotdot_is_refused() {
        let asked = Asked {
            host_network: true,
            ..Default::default()
        };
        let (steps, _dir) = planned(&asked);
        assert!(!steps.contains(&Step::LoopbackUp));
        assert!(container_path(Path::new("/a/../etc")).is_err());
    }

    #[test]
    fn spec_devices_are_made_with_their_owner_before_the_default_nodes() {
        // As `--device /dev/null:/dev/sub/mine` gives it: the host node's numbers,
        // mode and owner.
        let null = LinuxDeviceBuilder::default()
            .path("/dev/sub/mine")
            .typ(LinuxDeviceType::C)
            .major(1)
            .minor(3)
            .file_mode(0o666u32)
            .uid(0u32)
            .gid(0u32)
            .build()
            .unwrap();
        let asked = Asked {
            devices: vec![null],
            ..Default::default()
        };
        let (steps, _dir) = planned(&asked);
        let mine = position(
            &steps,
            |s| matches!(s, Step::Mknod { path, mode, dev } if path.as_bytes() == b"/dev/sub/mine" && *mode == libc::S_IFCHR | 0o666 && *dev == libc::makedev(1, 3)),
        );
        let parent = position(
            &steps,
            |s| matches!(s, Step::Mkdir { path, .. } if path.as_bytes() == b"/dev/sub"),
        );
        let default_null = position(
            &steps,
            |s| matches!(s, Step::Mknod { path, .. } if path.as_bytes() == b"/dev/null"),
        );
        assert!(parent < mine && mine < default_null);
        assert!(matches!(
            &steps[mine + 1],
            Step::Chown { uid: 0, gid: 0, .. }
        ));
    }

    /// In a user namespace nothing is mknod'ed (the host's nodes are bound) and proc and
    /// sysfs are created while the host's are still mounted (before pivot_root), then
    /// attached at their place; every attached slot was filled before pivot_root.
    #[test]
    fn a_user_namespace_binds_devices_and_creates_proc_and_sysfs_before_pivot_root() {
        let dir = tempfile::tempdir().unwrap();
        let spec = container_spec(dir.path(), &Asked::default());
        let mut ns = Namespaces::from_spec(&spec).unwrap();
        ns.user = true;
        let view = CgroupView::Split {
            unified: true,
            v1: V1View::default(),
        };
        let steps = plan(&spec, dir.path(), &ns, &view).unwrap();
        assert!(!steps.iter().any(|s| matches!(s, Step::Mknod { .. })));
        let pivot = position(&steps, |s| matches!(s, Step::PivotRoot { .. }));
        let opened = |typ: &[u8]| {
            position(
                &steps,
                |s| matches!(s, Step::OpenFs { fstype, .. } if fstype.as_bytes() == typ),
            )
        };
        assert!(opened(b"proc") < pivot && opened(b"sysfs") < pivot);
        let Step::OpenFs { attrs, .. } = &steps[opened(b"sysfs")] else {
            unreachable!()
        };
        assert!(attrs & libc::MOUNT_ATTR_RDONLY != 0);
        assert!(!steps.iter().any(
            |s| matches!(s, Step::MountFs { fstype: Some(t), .. } if t.as_bytes() == b"proc")
        ));
        let null = position(
            &steps,
            |s| matches!(s, Step::Bind { source, target, .. } if source.as_bytes() == b"/dev/null" && target.as_bytes() == b"/dev/null"),
        );
        assert!(null > pivot);
        let filled: Vec<usize> = steps[..pivot]
            .iter()
            .filter_map(|s| match s {
                Step::OpenTree { slot, .. } | Step::OpenFs { slot, .. } => Some(*slot),
                _ => None,
            })
            .collect();
        for step in &steps[pivot..] {
            if let Step::Bind { slot, .. } = step {
                assert!(filled.contains(slot), "slot {slot} never filled");
            }
        }
        assert_eq!(
            crate::runtime::plan::Slots::for_steps(&steps).len(),
            filled.len()
        );

        // Without its own network namespace: the host's sysfs, bound read-only.
        ns.net = false;
        let steps = plan(&spec, dir.path(), &ns, &view).unwrap();
        assert!(!steps
            .iter()
            .any(|s| matches!(s, Step::OpenFs { fstype, .. } if fstype.as_bytes() == b"sysfs")));
        let sys = position(
            &steps,
            |s| matches!(s, Step::Bind { source, target, set, .. } if source.as_bytes() == b"/sys" && target.as_bytes() == b"/sys" && set & libc::MOUNT_ATTR_RDONLY != 0),
        );
        assert!(sys > position(&steps, |s| matches!(s, Step::OpenRoot { .. })));
    }
}
