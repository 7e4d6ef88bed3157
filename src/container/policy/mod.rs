//! Docker's security policy, decided while the spec is built: the default capability
//! set (`caps.rs`), the default seccomp profile and the reader of Docker's JSON profiles
//! (`seccomp.rs`), and the device allowlist with `--device` (`devices.rs`). The results
//! go into config.json; the runtime only applies what config.json says.

pub mod caps;
pub mod devices;
pub mod seccomp;

#[cfg(test)]
mod tests;

pub use caps::DEFAULT_CAPS;
pub use seccomp::{default_seccomp_for_caps, seccomp_from_docker_profile_for_caps};
