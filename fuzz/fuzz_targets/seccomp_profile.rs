//! Docker seccomp profiles (`--security-opt seccomp=FILE.json`): any JSON is read or
//! refused without panicking, and a profile that reads is turned into an OCI filter for
//! a few bounding sets. The reader lives in the binary crate: its two files are included
//! by path, unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/runtime/security/caps.rs"]
mod caps;

/// The path seccomp.rs imports its capability helpers from.
mod runtime {
    pub mod security {
        pub use crate::caps::{mask_of_names, CapsError};
    }
}

#[allow(dead_code)]
#[path = "../../src/container/policy/seccomp.rs"]
mod seccomp;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(profile) = seccomp::parse(json) else {
        return;
    };
    for caps in [0u64, 1 << 21, u64::MAX] {
        let _ = profile.to_oci(&seccomp::Target::native(caps));
    }
});
