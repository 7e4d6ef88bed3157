//! The spec's `linux` section: namespaces, cgroup, masked and read-only paths, the
//! device policy, resource limits and seccomp.

use std::fs;
use std::path::PathBuf;

use anyhow::{bail, Context};
use oci_spec::runtime::{Linux, LinuxBuilder, LinuxNamespaceBuilder, LinuxNamespaceType};

use super::{Network, RunOptions};
use crate::container::policy::{self, devices};

/// Docker's masked paths: hidden behind /dev/null (files) or an empty read-only tmpfs.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The `linux` section; `seccomp` is the profile chosen by [`security_opts`].
pub(super) fn linux(
    cgroup: &str,
    opts: &RunOptions,
    seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
) -> anyhow::Result<Linux> {
    let namespaces = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Cgroup,
    ];
    let mut namespaces = namespaces
        .into_iter()
        .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build())
        .collect::<Result<Vec<_>, _>>()?;
    match &opts.network {
        Network::None => namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .build()?,
        ),
        Network::Host => {}
        Network::Bridge(_) | Network::Container(_) => {
            let path = opts
                .netns_path
                .clone()
                .context("no network namespace was resolved for the container")?;
            namespaces.push(
                LinuxNamespaceBuilder::default()
                    .typ(LinuxNamespaceType::Network)
                    .path(path)
                    .build()?,
            );
        }
    }

    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(PathBuf::from(cgroup))
        .masked_paths(if opts.privileged {
            vec![]
        } else {
            MASKED_PATHS.iter().map(|p| p.to_string()).collect()
        })
        .readonly_paths(if opts.privileged {
            vec![]
        } else {
            READONLY_PATHS.iter().map(|p| p.to_string()).collect()
        });
    // Docker's device policy: which nodes the container may use, and its --device nodes.
    let (device_nodes, device_rules) = devices::config(opts.privileged, &opts.devices)?;
    let mut resources = opts.limits.resources().cloned().unwrap_or_default();
    resources.set_devices(Some(device_rules));
    linux = linux.resources(resources);
    if !device_nodes.is_empty() {
        linux = linux.devices(device_nodes);
    }
    if let Some(seccomp) = seccomp {
        linux = linux.seccomp(seccomp);
    }
    Ok(linux.build()?)
}

/// `--security-opt` values: `no-new-privileges[:true]`, `seccomp=unconfined|PROFILE.json`.
pub(super) struct SecurityOpts {
    pub no_new_privileges: bool,
    pub seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
}

/// `bounding` is the container's bounding set: Docker's profile allows some syscalls
/// only with a capability (mount with SYS_ADMIN, say), so it is evaluated for that set.
pub(super) fn security_opts(
    opts: &RunOptions,
    bounding: &[String],
) -> anyhow::Result<SecurityOpts> {
    let mut no_new_privileges = false;
    let mut seccomp = if opts.privileged {
        None
    } else {
        Some(policy::default_seccomp_for_caps(bounding)?)
    };
    for opt in &opts.security_opts {
        let (key, value) = opt
            .split_once(['=', ':'])
            .map(|(k, v)| (k, Some(v)))
            .unwrap_or((opt.as_str(), None));
        match (key, value) {
            ("no-new-privileges", None | Some("true")) => no_new_privileges = true,
            ("no-new-privileges", Some("false")) => no_new_privileges = false,
            ("seccomp", Some("unconfined")) => seccomp = None,
            ("seccomp", Some(path)) => {
                let json = fs::read_to_string(path)
                    .with_context(|| format!("cannot read seccomp profile {path} (--security-opt)"))?;
                seccomp = Some(policy::seccomp_from_docker_profile_for_caps(&json, bounding).with_context(|| {
                    format!("invalid seccomp profile {path} (--security-opt)")
                })?);
            }
            _ => bail!("unsupported --security-opt {opt:?}: use no-new-privileges, seccomp=unconfined or seccomp=PROFILE.json"),
        }
    }
    Ok(SecurityOpts {
        no_new_privileges,
        seccomp,
    })
}
