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

/// The supervisor of `id` once it is the small binary: the full one hands over (execs
/// it) just after `run -d` returns.
fn small_supervisor_of(id: &str) -> i32 {
    let handed_over = wait_for(30, || {
        pids_with("supervise --lock-fd").into_iter().any(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(id))
                && fs::read_link(format!("/proc/{pid}/exe"))
                    .is_ok_and(|exe| exe.ends_with("mycontainer-supervisor"))
        })
    });
    assert!(
        handed_over,
        "the supervisor of {id} is not mycontainer-supervisor"
    );
    supervisor_of(id)
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
    let pid = small_supervisor_of(&id);
    assert_ne!(status_field(pid, "PPid:"), std::process::id().to_string());
    // What stays resident is the small binary, and the container's init is its child
    // (so the init's parent-death signal still ties it to the supervisor).
    let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(exe.ends_with("mycontainer-supervisor"), "{exe:?}");
    let init = w.state(&id)["pid"].as_i64().unwrap();
    assert_eq!(status_field(init as i32, "PPid:"), pid.to_string());
    assert_eq!(w.state(&id)["status"], "running");
    assert_eq!(status_field(pid, "Threads:"), "1");

    // What the supervisor holds once it has started: its exe turns small at the execve,
    // before the new image's start-up (the loader's files, the signalfd made later).
    let held = || -> (Vec<String>, Vec<(i32, String)>) {
        let mut fds: Vec<(i32, String)> = fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| {
                let e = e.ok()?;
                let fd = e.file_name().to_string_lossy().parse().ok()?;
                let target = fs::read_link(e.path()).ok()?;
                Some((fd, target.to_string_lossy().into_owned()))
            })
            .collect();
        fds.sort();
        let mut kinds: Vec<String> = fds
            .iter()
            .map(|(fd, target)| match target.as_str() {
                "/dev/null" if *fd <= 1 => "null".to_string(),
                t if *fd == 2 && t.ends_with("/supervisor.log") => "log".to_string(),
                t if t.ends_with(&id) => "record".to_string(),
                t if t.starts_with("socket:") => "socket".to_string(),
                t if t.starts_with("pipe:") => "pipe".to_string(),
                "anon_inode:[signalfd]" => "signalfd".to_string(),
                other => format!("unexpected {fd} -> {other}"),
            })
            .collect();
        kinds.sort();
        (kinds, fds)
    };
    // stdin and stdout (null), stderr (the record's supervisor.log), the record's lock,
    // the attach socket, the signalfd, and the container's stdin, stdout and stderr
    // pipes (-i). A descriptor it should not hold stays held, so waiting for the
    // start-up to end hides no leak.
    let expected = [
        "log", "null", "null", "pipe", "pipe", "pipe", "record", "signalfd", "socket",
    ];
    wait_for(30, || held().0 == expected);
    let (kinds, fds) = held();
    assert_eq!(kinds, expected, "{fds:?}");
    drop(leaked);
    ok(w.mc(&["stop", "-t", "0", "sv1"]));
    assert_eq!(ok(w.mc(&["wait", "sv1"])), "137\n");
}

#[test]
fn a_restarted_container_is_relayed_by_the_small_supervisor_again() {
    let w = World::new();
    let id = w.run_detached(
        &["--name", "sv2", "--restart", "always"],
        &["sh", "-c", "echo run; sleep 1000"],
    );
    let first = w.state(&id)["pid"].as_i64().unwrap();
    let pid = w.supervisor_pid(&id);
    // Killed before its echo, the first run would log nothing.
    w.wait_logged("sv2", "run\n");
    // The init dies; the same process records it (as the full binary), starts the
    // container again and becomes the small supervisor once more.
    // SAFETY: kill(2); the pid is the container's init, alive while the record says so.
    unsafe { libc::kill(first as i32, libc::SIGKILL) };
    assert!(wait_for(30, || {
        let state = w.state(&id);
        state["status"] == "running" && state["pid"].as_i64() != Some(first)
    }));
    let exe = || fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(
        wait_for(10, || exe().ends_with("mycontainer-supervisor")),
        "{:?}",
        exe()
    );
    let init = w.state(&id)["pid"].as_i64().unwrap();
    assert_eq!(status_field(init as i32, "PPid:"), pid.to_string());
    assert_eq!(w.state(&id)["restart_count"], 1);
    assert!(wait_for(10, || ok(w.mc(&["logs", "sv2"])) == "run\nrun\n"));
    ok(w.mc(&["stop", "-t", "0", "sv2"]));
    assert_eq!(ok(w.mc(&["wait", "sv2"])), "137\n");
}

#[test]
fn run_d_without_the_small_supervisor_fails_with_125_and_says_where_it_belongs() {
    let w = World::new();
    // Our binary alone in a directory, as a partial install would leave it.
    let lone = w.dir.path().join("lone");
    fs::create_dir(&lone).unwrap();
    fs::copy(BIN, lone.join("mycontainer")).unwrap();
    let out = std::process::Command::new(lone.join("mycontainer"))
        .env_remove("MYCONTAINER_ROOT")
        .arg("--root")
        .arg(&w.root)
        .args(["run", "-d", "--name", "sv3", "--rootfs"])
        .arg(&w.rootfs)
        .args(["sleep", "1000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("cannot find") && err.contains("lone/mycontainer-supervisor"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // Nothing runs: the record says why it did not start (written by the full
    // supervisor as it gives up, which may be just after the CLI has reported it).
    let status = || {
        ok(w.mc(&[
            "inspect",
            "--format",
            "{{.State.Status}} {{.State.ExitCode}}",
            "sv3",
        ]))
        .trim()
        .to_string()
    };
    assert!(wait_for(10, || status() == "exited 125"), "{}", status());
    let root = w.root.to_string_lossy().into_owned();
    assert!(pids_with("supervise --lock-fd").iter().all(|p| {
        !fs::read(format!("/proc/{p}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(&root))
            .unwrap_or(false)
    }));
}

/// (Resident kB, mapped kB) of the executable's read-only and code mappings of `pid`.
fn image_kb(pid: i32, exe: &std::path::Path) -> (u64, u64) {
    let smaps = fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let exe = exe.to_string_lossy();
    let (mut rss, mut size, mut ours) = (0, 0, false);
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields
            .first()
            .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
        {
            // A mapping's header: range, permissions, offset, device, inode, path.
            ours = fields.get(5) == Some(&exe.as_ref()) && !fields[1].contains('w');
        } else if ours {
            let kb = || fields[1].parse::<u64>().unwrap();
            match fields[0] {
                "Size:" => size += kb(),
                "Rss:" => rss += kb(),
                _ => {}
            }
        }
    }
    (rss, size)
}

#[test]
fn a_quiet_supervisor_gives_back_the_code_only_its_start_ran() {
    let w = World::new();
    let id = ok(w.run(&["-d", "--name", "sv-quiet"], &["sleep", "1000"]))
        .trim()
        .to_string();
    let pid = small_supervisor_of(&id);
    let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    // Start-up (libc's, argument parsing, setup) faults in most of the image (the
    // kernel maps 64 KiB around each touch: 492 of 540 kB of the debug build, about all
    // of the static release one); once relaying, a quiet supervisor keeps only what its
    // loop runs (about 380 kB of the debug build, whose libc is shared; 324 of 1,300
    // of the static one).
    let small = wait_for(30, || {
        let (rss, size) = image_kb(pid, &exe);
        size > 0 && rss * 5 < size * 4
    });
    assert!(small, "resident, mapped kB: {:?}", image_kb(pid, &exe));
    // And it still relays: the container stops as asked.
    ok(w.mc(&["stop", "-t", "0", "sv-quiet"]));
    assert_eq!(ok(w.mc(&["wait", "sv-quiet"])), "137\n");
}
