//! Process security: capabilities, no_new_privs and the seccomp filter, prepared before
//! the container's init is cloned and applied in it without allocating.
//!
//! Order in the child (the same as runc's):
//! 1. `before_user_switch`: drop the bounding set, keep capabilities across setuid, and,
//!    when no_new_privs is NOT requested, load seccomp now: loading a filter needs either
//!    no_new_privs or CAP_SYS_ADMIN, and only now do we still hold CAP_SYS_ADMIN. The filter
//!    must then allow what the runtime does afterwards (setgroups, setresgid, setresuid,
//!    capset, prctl, execve), as Docker's default does.
//! 2. the runtime's setgroups/setgid/setuid.
//! 3. `after_user_switch`: capset (effective, permitted, inheritable), ambient set,
//!    no_new_privs when requested, then seccomp if it was not loaded in step 1.
//!
//! So both root and non-root containers run with `Seccomp: 2`, and NoNewPrivs is only on
//! when asked for.

mod bpf;
mod caps;
pub(crate) mod seccomp;
mod syscalls;

#[cfg(test)]
pub(crate) mod tests;

use std::cell::Cell;
use std::path::Path;

use anyhow::Context;
use nix::errno::Errno;
use oci_spec::runtime::Spec;

pub use caps::{mask_of_names, CapMasks, CapsError};
pub use seccomp::CompiledSeccomp;

/// Everything computed before clone (capability masks, compiled BPF), so the child only
/// makes raw syscalls.
#[derive(Debug, Default)]
pub struct Prepared {
    /// None when the spec has no `process` (nothing to apply).
    caps: Option<CapMasks>,
    no_new_privs: bool,
    seccomp: Option<CompiledSeccomp>,
    /// Set in the child once the filter is installed, so it is installed exactly once.
    seccomp_loaded: Cell<bool>,
}

/// Reads `spec.process.capabilities`, `spec.process.no_new_privileges` and
/// `spec.linux.seccomp` and compiles them. Runs in the parent, before clone.
/// Capabilities the runtime itself does not hold (or the kernel does not know) are left
/// out of the sets rather than failing the run (see [`CapMasks::clamp_to`]).
/// Compiles the seccomp profile in memory; see [`prepare_with_cache`].
#[cfg(test)]
pub fn prepare(spec: &Spec) -> anyhow::Result<Prepared> {
    prepare_with_cache(spec, None)
}

/// [`prepare`], reusing compiled seccomp filters from `cache_dir`
/// (`<root>/cache/seccomp-<sha256>.bpf`) when given, and filling the cache when not there.
pub fn prepare_with_cache(spec: &Spec, cache_dir: Option<&Path>) -> anyhow::Result<Prepared> {
    let caps = match spec.process() {
        Some(process) => {
            let last_cap = caps::read_last_cap()?;
            let wanted = CapMasks::from_spec(process.capabilities().as_ref(), last_cap)?;
            Some(wanted.clamp_to(&caps::ProcessCaps::current()?))
        }
        None => None,
    };
    let no_new_privs = spec
        .process()
        .as_ref()
        .and_then(|p| p.no_new_privileges())
        .unwrap_or(false);
    let seccomp = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(profile) => Some(
            match cache_dir {
                Some(dir) => seccomp::compile_cached(profile, dir),
                None => seccomp::compile(profile),
            }
            .context("cannot prepare the container's seccomp filter")?,
        ),
        None => None,
    };
    Ok(Prepared {
        caps,
        no_new_privs,
        seccomp,
        seccomp_loaded: Cell::new(false),
    })
}

impl Prepared {
    /// In the child, before setgroups/setgid/setuid: drops the bounding set and keeps
    /// capabilities across the uid change; loads seccomp here when no_new_privs is not
    /// requested (see the module docs). Async-signal-safe.
    pub fn before_user_switch(&self) -> Result<(), Errno> {
        if let Some(caps) = &self.caps {
            caps.drop_bounding()?;
            caps::set_keep_caps(true)?;
        }
        if !self.no_new_privs && caps::has_effective_sys_admin() {
            self.load_seccomp()?;
        }
        Ok(())
    }

    /// In the child, after the uid change, just before execve: sets the effective,
    /// permitted, inheritable and ambient sets, no_new_privs, and loads the seccomp
    /// filter last (unless `before_user_switch` already did). Async-signal-safe.
    pub fn after_user_switch(&self) -> Result<(), Errno> {
        if let Some(caps) = &self.caps {
            caps.apply_sets()?;
            caps.apply_ambient()?;
        }
        if self.no_new_privs {
            // SAFETY: prctl with integer arguments only.
            let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
            if rc != 0 {
                return Err(Errno::last());
            }
        }
        // Without no_new_privs this needs CAP_SYS_ADMIN, which the process keeps only if
        // its spec grants it; otherwise the kernel answers EACCES and the run fails rather
        // than running unconfined.
        self.load_seccomp()
    }

    fn load_seccomp(&self) -> Result<(), Errno> {
        if self.seccomp_loaded.get() {
            return Ok(());
        }
        if let Some(seccomp) = &self.seccomp {
            seccomp.load()?;
        }
        self.seccomp_loaded.set(true);
        Ok(())
    }
}
