//! The detached supervisor as a process: it outlives the CLI that started it, holds no
//! descriptor it does not need (nothing its caller left open), and runs one thread.

mod common;

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Stdio;

use common::*;

fn supervisor_of(id: &str) -> i32 {
    let found = pids_with("supervise --lock-fd")
        .into_iter()
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(id))
                .unwrap_or(false)
        })
        .collect::<Vec<_>>();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0]
}

fn status_field(pid: i32, key: &str) -> String {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
        .unwrap()
}

#[test]
fn the_supervisor_outlives_its_cli_and_holds_only_what_it_needs() {
    let w = World::new();
    // The CLI leaves a descriptor open without close-on-exec, as a careless caller
    // (a shell's `3<file`) would.
    let leaked = fs::File::open(w.dir.path()).unwrap();
    let leaked_fd = leaked.as_raw_fd();
    let mut cmd = w.cmd();
    cmd.args(["run", "-d", "-i", "--name", "sv1", "--rootfs"])
        .arg(&w.rootfs)
        .args(["sleep", "1000"])
        .stdin(Stdio::null());
    // SAFETY: dup2 (async-signal-safe) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(leaked_fd, 40) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let cli = cmd.output().unwrap();
    let id = ok(cli).trim().to_string();
    // The CLI has exited; the supervisor is no child of ours (init or a subreaper
    // adopted it) and the container runs.
    let pid = supervisor_of(&id);
    assert_ne!(status_field(pid, "PPid:"), std::process::id().to_string());
    assert_eq!(w.state(&id)["status"], "running");
    assert_eq!(status_field(pid, "Threads:"), "1");

    let mut fds: Vec<(i32, String)> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let fd = e.file_name().to_string_lossy().parse().unwrap();
            let target = fs::read_link(e.path())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (fd, target)
        })
        .collect();
    fds.sort();
    let kinds: Vec<String> = fds
        .iter()
        .map(|(fd, target)| match target.as_str() {
            "/dev/null" if *fd <= 2 => "null".to_string(),
            t if t.ends_with(&id) => "record".to_string(),
            t if t.starts_with("socket:") => "socket".to_string(),
            t if t.starts_with("pipe:") => "pipe".to_string(),
            "anon_inode:[signalfd]" => "signalfd".to_string(),
            other => format!("unexpected {fd} -> {other}"),
        })
        .collect();
    let mut sorted = kinds.clone();
    sorted.sort();
    // stdio, the record's lock, the attach socket, the signalfd, and the container's
    // stdin, stdout and stderr pipes (-i).
    assert_eq!(
        sorted,
        ["null", "null", "null", "pipe", "pipe", "pipe", "record", "signalfd", "socket"],
        "{fds:?}"
    );
    drop(leaked);
    ok(w.mc(&["stop", "-t", "0", "sv1"]));
    assert_eq!(ok(w.mc(&["wait", "sv1"])), "137\n");
}
