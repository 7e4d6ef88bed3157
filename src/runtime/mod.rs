//! The runtime: turns an OCI runtime-spec config.json plus a rootfs into a supervised process.
#![allow(dead_code)]

pub mod cgroups;
pub mod security;
