//! Issue 11 from inside real containers: what the CLI holds while it starts a process in
//! a container (its descriptors, its binary, its terminal) stays out of the container's
//! reach, for run, run -d, start and exec.

mod common;

use std::fs;
use std::path::Path;

use common::*;

/// Force-removes every container before the fixture's leak checks.
struct World {
    fx: Fixture,
}

impl World {
    fn new() -> World {
        World { fx: Fixture::new() }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.fx.remove_all();
    }
}

impl std::ops::Deref for World {
    type Target = Fixture;
    fn deref(&self) -> &Fixture {
        &self.fx
    }
}

const SECRET: &str = "host-secret-6f1c";

/// Run inside the container from its working directory: reads `host-secret` and writes
/// `written-by-container` in the directory and up to four levels above it.
const REACH_UP: &str = "for d in . .. ../.. ../../.. ../../../..; do \
     cat $d/host-secret 2>/dev/null; touch $d/written-by-container 2>/dev/null; done; \
     echo ran";

/// Puts the secret in the test's directory and the state root: a working directory in
/// a record (or any directory the CLI holds in the state root) sees one of them within
/// four levels up.
fn plant_secrets(w: &World) {
    fs::create_dir_all(&w.root).unwrap();
    for dir in [w.dir.path(), &w.root] {
        fs::write(dir.join("host-secret"), SECRET).unwrap();
    }
}

/// Paths under `dir` named `written-by-container`.
fn written(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name() == "written-by-container" {
            found.push(path.display().to_string());
        } else if entry
            .file_type()
            .is_ok_and(|t| t.is_dir() && !t.is_symlink())
        {
            found.extend(written(&path));
        }
    }
    found
}

/// The command must not have run, the CLI must have said which working directory it
/// refused, and nothing of the host may have been read or written.
#[track_caller]
fn assert_refused(w: &World, out: &std::process::Output, workdir: &str) {
    let (stdout, stderr) = (stdout(out), stderr(out));
    assert!(
        !stdout.contains(SECRET),
        "{workdir}: read a host file: {stdout}"
    );
    assert!(
        !stdout.contains("ran"),
        "{workdir}: the command ran: {stdout}"
    );
    assert_eq!(out.status.code(), Some(125), "{workdir}: {stdout} {stderr}");
    assert!(
        stderr.contains(workdir) && stderr.lines().count() == 1,
        "{workdir}: {stderr}"
    );
    assert_eq!(written(w.dir.path()), Vec::<String>::new(), "{workdir}");
}

#[test]
fn run_with_a_working_directory_in_a_cli_descriptor_reaches_nothing_of_the_host() {
    let w = World::new();
    plant_secrets(&w);
    for fd in 3..=10 {
        let workdir = format!("/proc/self/fd/{fd}");
        let out = w.run(&["--rm", "-w", &workdir], &["sh", "-c", REACH_UP]);
        assert_refused(&w, &out, &workdir);
    }
    w.assert_no_containers();
}

#[test]
fn run_d_and_start_with_a_working_directory_in_a_cli_descriptor_reach_nothing() {
    let w = World::new();
    plant_secrets(&w);
    for fd in 3..=10 {
        let workdir = format!("/proc/self/fd/{fd}");
        let name = format!("detached-{fd}");
        let mut cmd = w.cmd();
        cmd.args(["run", "-d", "--name", &name, "-w", &workdir, "--rootfs"])
            .arg(&w.rootfs)
            .args(["sh", "-c", REACH_UP])
            .stdin(std::process::Stdio::null());
        let out = cmd.output().unwrap();
        assert_refused(&w, &out, &workdir);
        // The record stays (as Docker's created container); starting it fails the same
        // (once the supervisor that failed has let go of it).
        if w.mc(&["inspect", &name]).status.success() {
            let mut out = w.mc(&["start", &name]);
            while stderr(&out).contains("busy") {
                std::thread::sleep(std::time::Duration::from_millis(50));
                out = w.mc(&["start", &name]);
            }
            assert_refused(&w, &out, &workdir);
        }
    }
}

#[test]
fn an_image_whose_working_dir_is_a_cli_descriptor_fails_cleanly() {
    let w = World::new();
    plant_secrets(&w);
    let recipe = w.dir.path().join("fdwork.toml");
    fs::write(
        &recipe,
        r#"name = "fdwork"
tags = ["latest"]
builder = "busybox"
created = "2024-01-01T00:00:00Z"

[busybox]
host_paths = ["/bin/busybox"]

[config]
cmd = ["/bin/sh", "-c", "for d in . .. ../.. ../../.. ../../../..; do cat $d/host-secret 2>/dev/null; touch $d/written-by-container 2>/dev/null; done; echo ran"]
working_dir = "/proc/self/fd/3"
"#,
    )
    .unwrap();
    ok(w.cmd()
        .args(["image", "build"])
        .arg(&recipe)
        .output()
        .unwrap());
    let out = w.mc(&["run", "--rm", "fdwork"]);
    assert_refused(&w, &out, "/proc/self/fd/3");
    let out = w.mc(&["run", "-d", "fdwork"]);
    assert_refused(&w, &out, "/proc/self/fd/3");
}

#[test]
fn exec_with_a_working_directory_in_a_cli_descriptor_reaches_nothing() {
    let w = World::new();
    plant_secrets(&w);
    w.run_detached(&["--name", "target"], &["sleep", "60"]);
    for fd in 3..=10 {
        let workdir = format!("/proc/self/fd/{fd}");
        let out = w.mc(&["exec", "-w", &workdir, "target", "sh", "-c", REACH_UP]);
        assert_refused(&w, &out, &workdir);
    }
    // The container is unharmed.
    assert_eq!(ok(w.mc(&["exec", "target", "echo", "fine"])), "fine\n");
}

#[test]
fn exec_refuses_a_working_directory_outside_its_root() {
    let w = World::new();
    // A process of the container (not its init, whose namespaces exec joins) in a mount
    // namespace of its own, with a tmpfs on /tmp that the container's root does not reach.
    w.run_detached(
        &["--name", "split", "--cap-add", "SYS_ADMIN"],
        &[
            "sh",
            "-c",
            "unshare -m sh -c 'mount -t tmpfs none /tmp && echo elsewhere > /tmp/f && exec sleep 60' & \
             echo $! > /split-pid; exec sleep 60",
        ],
    );
    let mut pid = String::new();
    assert!(wait_for(10, || {
        pid = stdout(&w.mc(&["exec", "split", "cat", "/split-pid"]))
            .trim()
            .to_string();
        !pid.is_empty()
            && w.mc(&["exec", "split", "cat", &format!("/proc/{pid}/root/tmp/f")])
                .stdout
                .starts_with(b"elsewhere")
    }));
    for workdir in [format!("/proc/{pid}/root/tmp"), format!("/proc/{pid}/root")] {
        let out = w.mc(&["exec", "-w", &workdir, "split", "sh", "-c", "echo ran"]);
        assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
        assert!(!stdout(&out).contains("ran"), "{}", stdout(&out));
        assert!(
            stderr(&out).contains(&workdir)
                && stderr(&out).contains("outside the container's root"),
            "{}",
            stderr(&out)
        );
    }
}
