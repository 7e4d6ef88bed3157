//! Waiting without timing assumptions, shared by the common fixtures and the registry
//! ones: a wait gives up only as a failure bound (stretched on slow machines), and what
//! a test waits for is a state, never a duration.
#![allow(dead_code)]

use std::fs;
use std::time::{Duration, Instant};

/// How much slower than a normal machine this one is: `MYCONTAINER_TEST_SLOWDOWN`
/// (scripts/test-cgroup2 sets it for its software-emulated VM), else 1. It only
/// stretches how long a wait gives up after; nothing asserts a duration.
pub fn slowdown() -> u64 {
    std::env::var("MYCONTAINER_TEST_SLOWDOWN")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n: &u64| *n >= 1)
        .unwrap_or(1)
}

/// Waits until `cond` holds, up to `secs` seconds.
pub fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs * slowdown());
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// Whether process `pid` runs (a zombie is dead for our purposes: it only waits to be
/// reaped).
pub fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}
