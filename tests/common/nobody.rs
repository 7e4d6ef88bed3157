//! Acting as a plain host user (uid/gid 65534, no supplementary groups), for the tests
//! that attack our host files from outside root.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Output, Stdio};

use super::{stderr, stdout};

/// Runs `args` on the host as uid/gid 65534 without supplementary groups: a real
/// setuid(2) in the child, which drops every capability before the exec. (`setpriv
/// --reuid` keeps root's effective capabilities until its own execve, whose path
/// lookup then passes any directory mode: useless to test exec permissions.)
pub fn as_nobody(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .uid(65534)
        .gid(65534)
        .stdin(Stdio::null())
        .output()
        .or_else(|e| {
            // A failed exec is the child's answer, as a shell would print it.
            Ok::<Output, std::io::Error>(Output {
                status: std::process::ExitStatus::from_raw(126 << 8),
                stdout: Vec::new(),
                stderr: format!("{}: {e}", args[0]).into_bytes(),
            })
        })
        .unwrap()
}

/// `args` run as nobody fails with "Permission denied".
#[track_caller]
pub fn assert_denied(args: &[&str]) {
    let out = as_nobody(args);
    assert!(
        !out.status.success() && stderr(&out).contains("Permission denied"),
        "nobody could run {args:?}: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
}
