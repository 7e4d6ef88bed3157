//! Behaviour tests (root) of Docker's default profile and of profiles read from Docker's
//! JSON: each spec is applied in a forked child by the runtime's own harness
//! (`runtime::security::tests`), which probes syscalls and prints /proc/self/status.

use crate::runtime::security::tests::{run, run_busybox, spec, time_in_child};
use crate::runtime::security::{prepare, seccomp};

use super::seccomp::{default_seccomp, default_seccomp_for_caps, seccomp_from_docker_profile};
use super::DEFAULT_CAPS;

const DOCKER_MASK: &str = "00000000a80425fb";

#[test]
fn root_gets_docker_caps_and_the_default_filter() {
    let spec = spec(DEFAULT_CAPS, DEFAULT_CAPS, &[], false, default_seccomp());
    let report = run(&spec, None);
    assert_eq!(report.field("CapEff"), DOCKER_MASK);
    assert_eq!(report.field("CapPrm"), DOCKER_MASK);
    assert_eq!(report.field("CapBnd"), DOCKER_MASK);
    assert_eq!(report.field("CapAmb"), "0000000000000000");
    assert_eq!(report.field("Seccomp"), "2");
    assert_eq!(
        report.field("NoNewPrivs"),
        "0",
        "not requested, so not forced on"
    );
    assert_eq!(report.field("Uid"), "0\t0\t0\t0");

    assert_eq!(report.probe("keyctl"), libc::EPERM);
    assert_eq!(report.probe("mount"), libc::EPERM);
    assert_eq!(report.probe("unshare_user_ns"), libc::EPERM);
    assert_eq!(
        report.probe("clone3"),
        libc::ENOSYS,
        "clone3 answers ENOSYS so libcs fall back"
    );
    assert_eq!(report.probe("vsock"), libc::EPERM);
    assert_eq!(report.probe("unix_socket"), 0);
    assert_eq!(report.probe("uname"), 0);
    assert_eq!(report.probe("personality_query"), 0);
    assert_eq!(
        report.probe("mkdir"),
        libc::ENOENT,
        "ordinary calls reach the kernel"
    );
}

#[test]
fn shell_pipelines_work_under_the_default_filter() {
    let script = "echo hello | cat; ls / >/dev/null && echo listed; \
                  sleep 0 & wait; echo waited; (id -u) | tr 0 z";
    for uid in [None, Some(1000)] {
        let granted: &[&str] = if uid.is_none() { DEFAULT_CAPS } else { &[] };
        let report = run_busybox(
            &spec(DEFAULT_CAPS, granted, &[], false, default_seccomp()),
            uid,
            &["sh", "-c", script],
        );
        let expected_id = if uid.is_none() { "z" } else { "1zzz" };
        assert_eq!(
            report.status,
            format!("hello\nlisted\nwaited\n{expected_id}\n"),
            "uid {uid:?}"
        );
    }
}

#[test]
fn seccomp_blocks_mount_even_when_caps_allow_it() {
    // SYS_ADMIN held, but the filter built for the default caps still forbids mount: the
    // EPERM comes from seccomp, not from the capability check.
    let mut granted: Vec<&str> = DEFAULT_CAPS.to_vec();
    granted.push("CAP_SYS_ADMIN");
    let filtered = run(
        &spec(&granted, &granted, &[], false, default_seccomp()),
        None,
    );
    assert_eq!(filtered.probe("mount"), libc::EPERM);
    assert_eq!(filtered.field("Seccomp"), "2");

    // With the profile evaluated for those caps (Docker's --cap-add SYS_ADMIN), mount
    // reaches the kernel (ENOENT: the probe's target does not exist).
    let with_admin = default_seccomp_for_caps(&granted).unwrap();
    let allowed = run(
        &spec(&granted, &granted, &[], false, Some(with_admin)),
        None,
    );
    assert_eq!(allowed.probe("mount"), libc::ENOENT);
    assert_eq!(
        allowed.probe("clone3"),
        libc::EINVAL,
        "clone3 reaches the kernel too"
    );

    // Unconfined: no filter at all.
    let unconfined = run(&spec(&granted, &granted, &[], false, None), None);
    assert_eq!(
        unconfined.probe("clone_user_ns"),
        0,
        "the kernel itself allows it"
    );
    assert_eq!(unconfined.probe("unshare_user_ns"), 0);
    assert_eq!(unconfined.field("Seccomp"), "0");
    assert_eq!(unconfined.probe("mount"), libc::ENOENT);
    assert_ne!(unconfined.probe("keyctl"), libc::EPERM);
}

#[test]
fn docker_json_profile_with_custom_errno() {
    let json = r#"{
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["uname"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["definitely_not_a_syscall"], "action": "SCMP_ACT_ERRNO"}
        ]
    }"#;
    let profile = seccomp_from_docker_profile(json).unwrap();
    assert_eq!(profile.flags().as_ref().map(Vec::len), Some(2));
    let report = run(
        &spec(DEFAULT_CAPS, DEFAULT_CAPS, &[], false, Some(profile)),
        None,
    );
    assert_eq!(report.field("Seccomp"), "2");
    assert_eq!(report.probe("mkdir"), libc::EACCES);
    assert_eq!(report.probe("uname"), libc::EPERM);
    assert_ne!(
        report.probe("keyctl"),
        libc::EPERM,
        "everything else is allowed"
    );
}

/// Prints what seccomp costs; run with
/// `cargo test --release --bin mycontainer measure_seccomp -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn measure_seccomp_costs() {
    const ROUNDS: u32 = 200;
    let per = |total: std::time::Duration| total / ROUNDS;

    let start = std::time::Instant::now();
    for _ in 0..ROUNDS {
        std::hint::black_box(default_seccomp());
    }
    let evaluate = per(start.elapsed());

    let profile = default_seccomp().unwrap();
    let start = std::time::Instant::now();
    for _ in 0..ROUNDS {
        std::hint::black_box(seccomp::compile(&profile).unwrap());
    }
    let compile = per(start.elapsed());

    let start = std::time::Instant::now();
    for _ in 0..ROUNDS {
        std::hint::black_box(seccomp::cache_key(&profile));
    }
    let hash = per(start.elapsed());

    let cache = tempfile::tempdir().unwrap();
    seccomp::compile_cached(&profile, cache.path()).unwrap();
    let start = std::time::Instant::now();
    for _ in 0..ROUNDS {
        std::hint::black_box(seccomp::compile_cached(&profile, cache.path()).unwrap());
    }
    let cached = per(start.elapsed());

    let compiled = seccomp::compile(&profile).unwrap();
    println!(
        "default profile: one filter, {} BPF instructions",
        compiled.instruction_count()
    );
    println!("evaluate Docker-format default -> LinuxSeccomp: {evaluate:?}");
    println!("compile LinuxSeccomp -> BPF (one filter):     {compile:?}");
    println!("cache key (serialise + sha256):                {hash:?}");
    println!("cache hit (key + read + decode):               {cached:?}");

    const CALLS: u64 = 1_000_000;
    let bare = prepare(&spec(DEFAULT_CAPS, DEFAULT_CAPS, &[], true, None)).unwrap();
    let filtered = prepare(&spec(DEFAULT_CAPS, DEFAULT_CAPS, &[], true, Some(profile))).unwrap();
    let (bare_setup, bare_loop) = time_in_child(&bare, CALLS);
    let (_, filtered_loop) = time_in_child(&filtered, CALLS);
    let loads: Vec<u64> = (0..5)
        .map(|_| time_in_child(&filtered, 0).0 / 1000)
        .collect();
    let tiny_profile = seccomp_from_docker_profile(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["keyctl"], "action": "SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let tiny = prepare(&spec(
        DEFAULT_CAPS,
        DEFAULT_CAPS,
        &[],
        true,
        Some(tiny_profile),
    ))
    .unwrap();
    let tiny_loads: Vec<u64> = (0..5).map(|_| time_in_child(&tiny, 0).0 / 1000).collect();
    println!(
        "after_user_switch without filter: {} us; with the default filter, 5 runs (us): {loads:?}; \
         with a 1-rule filter (us): {tiny_loads:?}",
        bare_setup / 1000
    );
    println!(
        "getppid: {} ns/call unfiltered, {} ns/call filtered",
        bare_loop / CALLS,
        filtered_loop / CALLS
    );
}
