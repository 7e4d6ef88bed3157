//! Plans the container's filesystem: the overlay root, pivot_root, the spec's mounts,
//! /dev, masked and read-only paths. Produces [`Step`]s; nothing here touches the system,
//! so the plan is unit-tested without root.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context};
use libc::c_ulong;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};

use super::cgroups::CgroupView;
use super::namespaces::Namespaces;
use super::plan::Step;

/// Where the old root sits between pivot_root and its detach (inside the new root).
const PUT_OLD: &str = "/.mycontainer-oldroot";

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
            // options add nothing; "rw", "exec", "suid", "dev" are the defaults.
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

fn plan_mount(mount: &Mount, steps: &mut Vec<Step>) -> anyhow::Result<()> {
    let target = container_path(mount.destination())?;
    let options = parse_options(&mount.options().clone().unwrap_or_default());
    let typ = mount.typ().clone().unwrap_or_default();
    mkdir_parents(&target, steps)?;
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
        // After pivot_root the host's tree is reachable only under the old root.
        let relative = source.strip_prefix("/").unwrap_or(source);
        let mut flags = libc::MS_BIND;
        if options.recursive {
            flags |= libc::MS_REC;
        }
        steps.push(Step::Mount {
            source: Some(cstring(Path::new(PUT_OLD).join(relative))?),
            target: cstring(&target)?,
            fstype: None,
            flags,
            data: None,
        });
        if options.flags != 0 {
            // Bind mounts ignore other flags on creation: they take a remount.
            steps.push(Step::Mount {
                source: None,
                target: cstring(&target)?,
                fstype: None,
                flags: libc::MS_BIND | libc::MS_REMOUNT | options.flags,
                data: None,
            });
        }
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
    steps.push(Step::Mount {
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

/// Mounts the container's own cgroups read-only at the mount's destination: cgroup2
/// itself on a v2 host; else a tmpfs with a cgroup2 mount at `unified` (hybrid) and a
/// v1 mount of each hierarchy the container joined. Each is mounted read-write and then
/// made read-only per mount (a bind remount), never through the superblock, which the
/// host's mount of the same hierarchy shares.
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
    if let CgroupView::Split { unified, v1 } = cgroups {
        mounted[0] = (target.clone(), "tmpfs", Some("mode=755"));
        if *unified {
            mounted.push((target.join("unified"), "cgroup2", None));
        }
        for (name, controllers) in v1 {
            mounted.push((target.join(name), "cgroup", Some(controllers.as_str())));
        }
    }
    for (i, (dir, fstype, data)) in mounted.iter().enumerate() {
        if i > 0 {
            steps.push(Step::Mkdir {
                path: cstring(dir)?,
                mode: 0o755,
            });
        }
        steps.push(Step::Mount {
            source: Some(CString::new(*fstype)?),
            target: cstring(dir)?,
            fstype: Some(CString::new(*fstype)?),
            flags: FLAGS,
            data: data.map(CString::new).transpose()?,
        });
    }
    let read_only = mounted.into_iter().map(|(dir, _, _)| dir);
    for dir in read_only {
        steps.push(Step::Mount {
            source: None,
            target: cstring(&dir)?,
            fstype: None,
            flags: libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | FLAGS,
            data: None,
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
    steps.push(Step::Mkdir {
        path: cstring(rootfs.join(&PUT_OLD[1..]))?,
        mode: 0o700,
    });
    steps.push(Step::PivotRoot {
        new_root: cstring(&rootfs)?,
        put_old: cstring(&PUT_OLD[1..])?,
    });

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
    for mount in other_mounts {
        plan_mount(mount, &mut steps)?;
    }
    let spec_devices = linux.and_then(|l| l.devices().clone()).unwrap_or_default();
    plan_spec_devices(&spec_devices, &mut steps)?;
    if mounts.iter().any(|m| m.destination() == Path::new("/dev")) {
        for (name, major, minor) in DEVICES {
            steps.push(Step::Mknod {
                path: cstring(Path::new("/dev").join(name))?,
                mode: libc::S_IFCHR | 0o666,
                dev: libc::makedev(*major, *minor),
            });
        }
        for (target, link) in DEV_SYMLINKS {
            steps.push(Step::Symlink {
                target: CString::new(*target)?,
                link: CString::new(*link)?,
            });
        }
    }
    steps.push(Step::Detach {
        target: CString::new(PUT_OLD)?,
    });
    steps.push(Step::Rmdir {
        path: CString::new(PUT_OLD)?,
    });

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
        steps.push(Step::Mount {
            source: None,
            target: CString::new("/")?,
            fstype: None,
            flags: libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
            data: None,
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
    use crate::container::spec::{build, ImageDefaults, RootLayers, RunOptions, Volume};

    fn planned(opts: &RunOptions) -> (Vec<Step>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let layers = RootLayers {
            lowerdirs: vec![dir.path().join("l1"), dir.path().join("l0")],
            upperdir: dir.path().join("upper"),
            workdir: dir.path().join("work"),
        };
        let image = ImageDefaults {
            cmd: vec!["sh".into()],
            ..Default::default()
        };
        let built = build(&"b".repeat(64), dir.path(), &image, opts, &layers).unwrap();
        let ns = Namespaces::from_spec(&built.spec).unwrap();
        let view = CgroupView::Split {
            unified: true,
            v1: vec![("memory".into(), "memory".into())],
        };
        (plan(&built.spec, dir.path(), &ns, &view).unwrap(), dir)
    }

    fn position(steps: &[Step], wanted: impl Fn(&Step) -> bool) -> usize {
        steps.iter().position(wanted).expect("step missing")
    }

    #[test]
    fn root_is_private_then_overlay_then_pivot_then_old_root_detached() {
        let (steps, dir) = planned(&RunOptions::default());
        let private = position(
            &steps,
            |s| matches!(s, Step::Mount { flags, .. } if *flags == libc::MS_REC | libc::MS_PRIVATE),
        );
        let overlay = position(
            &steps,
            |s| matches!(s, Step::Mount { fstype: Some(t), .. } if t.as_bytes() == b"overlay"),
        );
        let pivot = position(&steps, |s| matches!(s, Step::PivotRoot { .. }));
        let detach = position(&steps, |s| matches!(s, Step::Detach { .. }));
        assert!(private < overlay && overlay < pivot && pivot < detach);
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

    #[test]
    fn dev_gets_devices_after_its_tmpfs_and_proc_is_masked_after_mounting() {
        let (steps, _dir) = planned(&RunOptions::default());
        let dev = position(
            &steps,
            |s| matches!(s, Step::Mount { target, .. } if target.as_bytes() == b"/dev"),
        );
        let null = position(
            &steps,
            |s| matches!(s, Step::Mknod { path, .. } if path.as_bytes() == b"/dev/null"),
        );
        let proc = position(
            &steps,
            |s| matches!(s, Step::Mount { target, .. } if target.as_bytes() == b"/proc"),
        );
        let kcore = position(
            &steps,
            |s| matches!(s, Step::Mask { path } if path.as_bytes() == b"/proc/kcore"),
        );
        assert!(dev < null && proc < kcore);
        assert!(steps.contains(&Step::LoopbackUp));
    }

    #[test]
    fn read_only_volume_is_bound_from_the_old_root_then_remounted() {
        let host = tempfile::tempdir().unwrap();
        let volume = Volume::parse(&format!("{}:/data/in:ro", host.path().display())).unwrap();
        let opts = RunOptions {
            volumes: vec![volume],
            read_only: true,
            ..Default::default()
        };
        let (steps, _dir) = planned(&opts);
        let bind = position(
            &steps,
            |s| matches!(s, Step::Mount { target, flags, .. } if target.as_bytes() == b"/data/in" && flags & libc::MS_REMOUNT == 0),
        );
        let Step::Mount {
            source: Some(source),
            ..
        } = &steps[bind]
        else {
            unreachable!()
        };
        assert!(source.to_str().unwrap().starts_with(PUT_OLD));
        assert!(
            matches!(&steps[bind + 1], Step::Mount { flags, .. } if flags & libc::MS_RDONLY != 0)
        );
        assert!(steps.contains(&Step::Mkdir {
            path: CString::new("/data").unwrap(),
            mode: 0o755
        }));
        // The read-only root comes after every mkdir it would forbid.
        let ro_root = position(
            &steps,
            |s| matches!(s, Step::Mount { target, flags, .. } if target.as_bytes() == b"/" && flags & libc::MS_RDONLY != 0),
        );
        assert!(steps[ro_root..]
            .iter()
            .all(|s| !matches!(s, Step::Mkdir { .. })));
    }

    #[test]
    fn host_network_skips_loopback_and_dotdot_is_refused() {
        let opts = RunOptions {
            network: crate::container::spec::Network::Host,
            ..Default::default()
        };
        let (steps, _dir) = planned(&opts);
        assert!(!steps.contains(&Step::LoopbackUp));
        assert!(container_path(Path::new("/a/../etc")).is_err());
    }

    #[test]
    fn spec_devices_are_made_with_their_owner_before_the_default_nodes() {
        let null = crate::container::devices::Device::parse("/dev/null:/dev/sub/mine:r").unwrap();
        let opts = RunOptions {
            devices: vec![null],
            ..Default::default()
        };
        let (steps, _dir) = planned(&opts);
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
}
