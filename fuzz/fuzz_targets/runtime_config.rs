//! `config.json` as the OCI runtime CLI (`mycontainer runtime create/run`) reads it: any
//! bytes are a spec or refused, and a spec's namespaces (created and joined),
//! capability sets and seccomp profile (compiled to BPF) are accepted or rejected with
//! an error, never a panic, and its hooks are read. The runtime's files are included by
//! path, unchanged; the mount and cgroup planning, which needs the host, is not covered.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oci_spec::runtime::Spec;

#[allow(dead_code)]
#[path = "../../src/runtime/namespaces.rs"]
mod namespaces;

// At the crate root: seccomp.rs names `super::syscalls`.
#[allow(dead_code)]
#[path = "../../src/runtime/security/caps.rs"]
mod caps;
#[allow(dead_code)]
#[path = "../../src/runtime/security/seccomp.rs"]
mod seccomp;
#[allow(dead_code)]
#[path = "../../src/runtime/security/bpf.rs"]
mod bpf;

#[path = "../../src/runtime/security/syscalls.rs"]
mod syscalls;

#[allow(dead_code)]
#[path = "../../src/cli/oci/hooks.rs"]
mod hooks;

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = serde_json::from_slice::<Spec>(data) else {
        return;
    };
    let _ = namespaces::Namespaces::from_spec(&spec);
    let _ = namespaces::Namespaces::joined(&spec);
    if let Some(process) = spec.process() {
        // CAP_CHECKPOINT_RESTORE (40) is the last capability of the kernels here.
        let _ = caps::CapMasks::from_spec(process.capabilities().as_ref(), 40);
    }
    if let Some(seccomp) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        if let Ok(compiled) = seccomp::compile(seccomp) {
            let _ = compiled.instruction_count();
        }
    }
    if let Some(hooks) = spec.hooks() {
        let _ = hooks::any_at_create(hooks);
    }
});
