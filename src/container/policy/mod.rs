//! Docker's policy, decided while the spec is built: the device allowlist with
//! `--device` (`devices.rs`). The results go into config.json; the runtime only applies
//! what config.json says.

pub mod devices;
