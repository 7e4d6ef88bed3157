//! Docker's device policy, written into the spec: which device nodes a container may
//! open or create (`linux.resources.devices`, enforced by the runtime's device cgroup)
//! and the `--device` nodes it gets (`linux.devices`, created by the runtime).
//!
//! mknod is allowed (CAP_MKNOD is a default capability, and `c *:* m`, `b *:* m` let the
//! node be made), but opening a node works only for the devices listed here: a node of
//! a host disk, /dev/kvm or /dev/kmsg made inside the container cannot be used.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;

use anyhow::{bail, Context};
use oci_spec::runtime::LinuxDeviceType::{self, A, B, C};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceBuilder, LinuxDeviceCgroup};

/// One rule: (allow, type, major, minor, access); `None` is any.
type Rule = (
    bool,
    LinuxDeviceType,
    Option<i64>,
    Option<i64>,
    &'static str,
);

/// What Docker puts in the spec (moby's oci/defaults.go, DefaultLinuxSpec): deny
/// everything, allow the basic nodes, and deny /dev/fuse explicitly.
const DOCKER_RULES: &[Rule] = &[
    (false, A, None, None, "rwm"),
    (true, C, Some(1), Some(5), "rwm"),     // zero
    (true, C, Some(1), Some(3), "rwm"),     // null
    (true, C, Some(1), Some(9), "rwm"),     // urandom
    (true, C, Some(1), Some(8), "rwm"),     // random
    (true, C, Some(5), Some(0), "rwm"),     // tty
    (true, C, Some(5), Some(1), "rwm"),     // console
    (false, C, Some(10), Some(229), "rwm"), // fuse
];

/// What runc appends to every container's rules (libcontainer/specconv AllowedDevices),
/// which is part of what a Docker container gets: mknod of any node, the pty nodes,
/// /dev/full and /dev/net/tun (the basics it repeats are left out: already allowed).
/// Our runtime applies the spec as it is, so the policy writes these itself.
const RUNC_RULES: &[Rule] = &[
    (true, C, None, None, "m"),
    (true, B, None, None, "m"),
    (true, C, Some(1), Some(7), "rwm"),    // full
    (true, C, Some(136), None, "rwm"),     // /dev/pts/*
    (true, C, Some(5), Some(2), "rwm"),    // ptmx
    (true, C, Some(10), Some(200), "rwm"), // net/tun
];

fn rule(&(allow, typ, major, minor, access): &Rule) -> LinuxDeviceCgroup {
    let mut rule = LinuxDeviceCgroup::default();
    rule.set_allow(allow);
    rule.set_typ(Some(typ));
    rule.set_major(major);
    rule.set_minor(minor);
    rule.set_access(Some(access.to_string()));
    rule
}

/// `--device HOST[:CONTAINER][:PERMISSIONS]`, resolved against the host's node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub host: PathBuf,
    pub container: PathBuf,
    /// Letters of rwm: what the cgroup allows on it.
    pub access: String,
    block: bool,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
}

/// "r", "rw", "rwm"...: each letter at most once (Docker's validDeviceMode).
fn is_access(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 3
        && text.chars().all(|c| "rwm".contains(c))
        && text
            .chars()
            .enumerate()
            .all(|(i, c)| !text[..i].contains(c))
}

impl Device {
    /// Parses as Docker does (a second field that is a valid mode is the mode) and
    /// looks the node up on the host, following symlinks (/dev/disk/by-id/...).
    pub fn parse(value: &str) -> anyhow::Result<Device> {
        let parts: Vec<&str> = value.split(':').collect();
        let (host, container, access) = match parts.as_slice() {
            [host] => (*host, *host, "rwm"),
            [host, mode] if is_access(mode) => (*host, *host, *mode),
            [host, container] => (*host, *container, "rwm"),
            [host, container, mode] => (*host, *container, *mode),
            _ => bail!("invalid value {value:?} for --device: use HOST[:CONTAINER][:PERMISSIONS]"),
        };
        if !is_access(access) {
            bail!("invalid permissions {access:?} in --device {value:?}: use letters of rwm");
        }
        if !container.starts_with('/') || container == "/" {
            bail!("invalid value {value:?} for --device: the container path must be absolute");
        }
        let meta = std::fs::metadata(host)
            .with_context(|| format!("invalid value {value:?} for --device: cannot stat {host}"))?;
        let kind = meta.file_type();
        if !kind.is_char_device() && !kind.is_block_device() {
            bail!("invalid value {value:?} for --device: {host} is not a device node");
        }
        let rdev = meta.rdev();
        Ok(Device {
            host: PathBuf::from(host),
            container: PathBuf::from(container),
            access: access.to_string(),
            block: kind.is_block_device(),
            major: u64::from(libc::major(rdev)),
            minor: u64::from(libc::minor(rdev)),
            mode: meta.permissions().mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
        })
    }

    fn typ(&self) -> LinuxDeviceType {
        if self.block {
            B
        } else {
            C
        }
    }

    /// The node the runtime creates: same type, numbers, mode and owner as on the host.
    fn node(&self) -> anyhow::Result<LinuxDevice> {
        Ok(LinuxDeviceBuilder::default()
            .path(&self.container)
            .typ(self.typ())
            .major(self.major as i64)
            .minor(self.minor as i64)
            .file_mode(self.mode)
            .uid(self.uid)
            .gid(self.gid)
            .build()?)
    }
}

/// The spec's device nodes (`linux.devices`) and device rules
/// (`linux.resources.devices`): Docker's defaults with each `--device` allowed, or
/// everything for `--privileged` (whose `--device` nodes are still created).
pub fn config(
    privileged: bool,
    devices: &[Device],
) -> anyhow::Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>)> {
    let nodes = devices
        .iter()
        .map(Device::node)
        .collect::<anyhow::Result<Vec<_>>>()?;
    if privileged {
        return Ok((nodes, vec![rule(&(true, A, None, None, "rwm"))]));
    }
    let mut rules: Vec<LinuxDeviceCgroup> = DOCKER_RULES.iter().map(rule).collect();
    for device in devices {
        let mut allowed = rule(&(true, device.typ(), None, None, "rwm"));
        allowed.set_major(Some(device.major as i64));
        allowed.set_minor(Some(device.minor as i64));
        allowed.set_access(Some(device.access.clone()));
        rules.push(allowed);
    }
    rules.extend(RUNC_RULES.iter().map(rule));
    Ok((nodes, rules))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(rules: &[LinuxDeviceCgroup]) -> Vec<String> {
        rules
            .iter()
            .map(|r| format!("{}{r}", if r.allow() { "+" } else { "-" }))
            .collect()
    }

    #[test]
    fn default_rules_are_dockers_and_runcs() {
        let (nodes, rules) = config(false, &[]).unwrap();
        assert!(nodes.is_empty());
        let rules = shown(&rules);
        assert_eq!(rules[0], "-a *:* rwm");
        for allowed in [
            "+c 1:3 rwm",
            "+c 1:5 rwm",
            "+c 1:7 rwm",
            "+c 1:8 rwm",
            "+c 1:9 rwm",
            "+c 5:0 rwm",
            "+c 5:1 rwm",
            "+c 5:2 rwm",
            "+c 136:* rwm",
            "+c 10:200 rwm",
            "+c *:* m",
            "+b *:* m",
        ] {
            assert!(
                rules.contains(&allowed.to_string()),
                "{allowed} in {rules:?}"
            );
        }
        // fuse is denied before mknod of any node is allowed again, as Docker and runc do
        let fuse = rules.iter().position(|r| r == "-c 10:229 rwm").unwrap();
        let mknod = rules.iter().position(|r| r == "+c *:* m").unwrap();
        assert!(fuse < mknod);
        let (_, privileged) = config(true, &[]).unwrap();
        assert_eq!(shown(&privileged), ["+a *:* rwm"]);
    }

    #[test]
    fn device_flags_parse_as_dockers() {
        let null = Device::parse("/dev/null").unwrap();
        assert_eq!(null.container, PathBuf::from("/dev/null"));
        assert_eq!((null.block, null.major, null.minor), (false, 1, 3));
        assert_eq!(null.access, "rwm");
        let renamed = Device::parse("/dev/null:/dev/mine:r").unwrap();
        assert_eq!(renamed.container, PathBuf::from("/dev/mine"));
        assert_eq!(renamed.access, "r");
        // a second field that is a mode is the mode
        let moded = Device::parse("/dev/null:rw").unwrap();
        assert_eq!(
            (moded.container.to_str(), moded.access.as_str()),
            (Some("/dev/null"), "rw")
        );
        for bad in [
            "/dev/null:/dev/x:rx",
            "/dev/null:/dev/x:rr",
            "/dev/null:dev/x",
            "/etc/hostname",
            "/does/not/exist",
            "/dev/null:/a:r:w",
        ] {
            assert!(Device::parse(bad).is_err(), "{bad}");
        }
        let (nodes, rules) = config(false, &[renamed]).unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].path(), &PathBuf::from("/dev/mine"));
        assert_eq!(nodes[0].file_mode(), Some(0o666));
        assert!(shown(&rules).contains(&"+c 1:3 r".to_string()));
    }
}
