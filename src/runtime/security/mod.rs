//! Process security: capabilities, no_new_privs and the seccomp filter, prepared before
//! the container's init is cloned and applied in it without allocating.
//! STUB: the real implementation lands on the `security` branch; this keeps the API stable.
#![allow(dead_code)]

use oci_spec::runtime::{LinuxSeccomp, Spec};

/// Docker's default capability set, as OCI names ("CAP_CHOWN", ...).
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Everything computed before clone (capability masks, compiled BPF), so the child only
/// makes raw syscalls.
#[derive(Debug, Default)]
pub struct Prepared {}

/// Reads `spec.process.capabilities`, `spec.process.no_new_privileges` and
/// `spec.linux.seccomp` and compiles them. Runs in the parent, before clone.
pub fn prepare(_spec: &Spec) -> anyhow::Result<Prepared> {
    Ok(Prepared {})
}

impl Prepared {
    /// In the child, before setgroups/setgid/setuid: drops the bounding set and keeps
    /// capabilities across the uid change. Async-signal-safe.
    pub fn before_user_switch(&self) -> Result<(), nix::errno::Errno> {
        Ok(())
    }

    /// In the child, after the uid change, just before execve: sets the effective,
    /// permitted, inheritable and ambient sets, no_new_privs, and loads the seccomp
    /// filter last. Async-signal-safe.
    pub fn after_user_switch(&self) -> Result<(), nix::errno::Errno> {
        Ok(())
    }
}

/// Docker's default seccomp profile as an OCI `LinuxSeccomp` (EPERM for what it blocks).
pub fn default_seccomp() -> Option<LinuxSeccomp> {
    None
}

/// Parses a Docker seccomp profile (JSON) into an OCI `LinuxSeccomp`.
pub fn seccomp_from_docker_profile(_json: &str) -> anyhow::Result<LinuxSeccomp> {
    anyhow::bail!("seccomp profiles are not supported yet")
}
