//! `mycontainer run` end to end, as root: isolation checked from inside the container and
//! from the host, process semantics, cleanup.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn the_command_is_pid_1_and_ps_sees_only_the_container() {
    let fx = Fixture::new();
    let out = ok(fx.run(&["--rm"], &["ps", "-o", "pid,comm"]));
    let rows: Vec<Vec<&str>> = out
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows, vec![vec!["1", "ps"]], "{out}");
    fx.assert_no_containers();
}

#[test]
fn hostname_is_set_in_both_flag_forms() {
    let fx = Fixture::new();
    assert_eq!(ok(fx.run(&["--rm", "-h", "box"], &["hostname"])), "box\n");
    assert_eq!(
        ok(fx.run(&["--rm", "--hostname=seed-form"], &["cat", "/etc/hostname"])),
        "seed-form\n"
    );
    // The host's name did not change.
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(host.trim(), "box");
}

#[test]
fn the_root_is_the_image_and_not_the_host() {
    let fx = Fixture::new();
    let out = ok(fx.run(&["--rm"], &["sh", "-c", "cat /image-marker; ls /"]));
    assert!(out.starts_with("from the image\n"), "{out}");
    assert!(
        !out.contains("work\n") && !out.contains("usr\n"),
        "host entries visible: {out}"
    );
    // The old root is detached: no mount refers to it.
    let mounts = ok(fx.run(&["--rm"], &["cat", "/proc/self/mountinfo"]));
    assert!(!mounts.contains("oldroot"), "{mounts}");
    assert!(mounts.lines().next().unwrap().contains(" / / "), "{mounts}");
}

#[test]
fn proc_dev_and_sys_work_inside() {
    let fx = Fixture::new();
    let script =
        "echo x > /dev/null && head -c 5 /dev/zero | wc -c && head -c 4 /dev/urandom | wc -c \
        && ls /dev/pts/ptmx && readlink /dev/ptmx && cat /proc/1/comm \
        && (touch /sys/x 2>/dev/null && echo sys-writable || echo sys-ro) \
        && wc -c < /proc/keys; cat /proc/self/mountinfo";
    let out = ok(fx.run(&["--rm"], &["sh", "-c", script]));
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("5"));
    assert_eq!(lines.next(), Some("4"));
    assert_eq!(lines.next(), Some("/dev/pts/ptmx"));
    assert_eq!(lines.next(), Some("pts/ptmx"));
    assert_eq!(lines.next(), Some("sh"));
    assert_eq!(lines.next(), Some("sys-ro"));
    // /proc/timer_list is masked (empty).
    assert_eq!(lines.next(), Some("0"));
    for target in [
        " /proc ",
        " /dev ",
        " /dev/pts ",
        " /dev/shm ",
        " /dev/mqueue ",
        " /sys ",
    ] {
        assert!(out.contains(target), "{target} not mounted: {out}");
    }
}

#[test]
fn env_workdir_and_user_apply() {
    let fx = Fixture::new();
    let env_file = fx.dir.path().join("env");
    fs::write(&env_file, "FROM_FILE=1\n# comment\n").unwrap();
    let out = ok(fx.run(
        &["--rm", "-e", "GREETING=hi there", "--env-file", env_file.to_str().unwrap(), "-w", "/work/dir", "-u", "65534:65534"],
        &["sh", "-c", "echo \"$GREETING|$FROM_FILE|$HOSTNAME\"; pwd; id -u; id -g; id -G; env | grep -c '^CARGO' || true"],
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("hi there|1|"), "{out}");
    assert_eq!(
        &lines[1..5],
        ["/work/dir", "65534", "65534", "65534"],
        "{out}"
    );
    // Nothing of the caller's environment leaks in.
    assert_eq!(lines[5], "0", "{out}");
}

#[test]
fn a_missing_absolute_host_dir_of_a_volume_is_created_as_docker_does() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let fx = Fixture::new();
    let missing = fx.dir.path().join("made/by/run");
    let volume = format!("{}:/data", missing.display());
    let out = fx.run(
        &["--rm", "-v", &volume],
        &["sh", "-c", "echo inside > /data/file"],
    );
    ok(out);
    let meta = fs::metadata(&missing).unwrap();
    assert!(meta.is_dir());
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
    assert_eq!(meta.permissions().mode() & 0o777, 0o755);
    assert_eq!(
        fs::read_to_string(missing.join("file")).unwrap(),
        "inside\n"
    );
    // A relative host path is not a directory to create (Docker reads it as a volume
    // name): refused, nothing made.
    let out = fx.run(&["--rm", "-v", "relative/dir:/data"], &["true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

#[test]
fn volumes_are_shared_and_read_only_ones_refuse_writes() {
    let fx = Fixture::new();
    let rw = fx.dir.path().join("rw");
    let ro = fx.dir.path().join("ro");
    fs::create_dir_all(&rw).unwrap();
    fs::create_dir_all(&ro).unwrap();
    fs::write(ro.join("in"), "host data\n").unwrap();
    let flags = [
        "--rm".to_string(),
        "-v".into(),
        format!("{}:/data", rw.display()),
        "-v".into(),
        format!("{}:/config:ro", ro.display()),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let out = fx.run(
        &flags,
        &[
            "sh",
            "-c",
            "echo written > /data/out && cat /config/in && echo no > /config/x",
        ],
    );
    assert_eq!(stdout(&out), "host data\n");
    assert!(
        !out.status.success(),
        "writing to a read-only volume succeeded"
    );
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read_to_string(rw.join("out")).unwrap(), "written\n");
    assert!(!ro.join("x").exists());
    fx.assert_no_containers();
}

#[test]
fn stdin_is_attached_only_with_dash_i() {
    let fx = Fixture::new();
    let mut child = fx
        .run_cmd(&["--rm", "-i"], &["sh", "-c", "tr a-z A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(ok(out), "HELLO\n");
    // Without -i the container reads end-of-file at once.
    let out = ok(fx.run(&["--rm"], &["sh", "-c", "cat; echo done"]));
    assert_eq!(out, "done\n");
}

#[test]
fn dash_t_gives_a_real_terminal_with_our_window_size() {
    let fx = Fixture::new();
    let pty = nix::pty::openpty(
        Some(&nix::pty::Winsize {
            ws_row: 33,
            ws_col: 101,
            ws_xpixel: 0,
            ws_ypixel: 0,
        }),
        None,
    )
    .unwrap();
    let slave: OwnedFd = pty.slave;
    let kept_slave = slave.try_clone().unwrap();
    let mut cmd = fx.run_cmd(
        &["--rm", "-it"],
        &[
            "sh",
            "-c",
            "test -t 0 && test -t 1 && echo IS-A-TTY; stty size; tty",
        ],
    );
    cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave));
    let mut child = cmd.spawn().unwrap();
    let status = child.wait().unwrap();
    let mut master = fs::File::from(pty.master);
    // Read whatever the run printed (non-blocking: the slave is closed now).
    // SAFETY: sets O_NONBLOCK on a descriptor this test owns.
    unsafe {
        let fd = master.as_raw_fd();
        libc::fcntl(
            fd,
            libc::F_SETFL,
            libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK,
        );
    }
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&text);
    assert!(status.success(), "{status:?}: {text}");
    assert!(text.contains("IS-A-TTY"), "{text}");
    assert!(text.contains("33 101"), "window size not passed on: {text}");
    assert!(
        text.contains("/dev/pts/0"),
        "the pty is not the container's own: {text}"
    );
    // The terminal was put back as it was (raw mode only while the container ran).
    let termios = nix::sys::termios::tcgetattr(&kept_slave).unwrap();
    use nix::sys::termios::LocalFlags;
    assert!(termios
        .local_flags
        .contains(LocalFlags::ICANON | LocalFlags::ECHO));
    fx.assert_no_containers();
}

#[test]
fn exit_codes_follow_docker() {
    let fx = Fixture::new();
    assert_eq!(
        fx.run(&["--rm"], &["sh", "-c", "exit 3"]).status.code(),
        Some(3)
    );
    // A signal N becomes 128+N (with --init, the command is not PID 1 and can be killed).
    assert_eq!(
        fx.run(&["--rm", "--init"], &["sh", "-c", "kill -9 $$"])
            .status
            .code(),
        Some(137)
    );
    let out = fx.run(&["--rm"], &["no-such-command"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(
        stderr(&out).contains("executable file not found"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    let out = fx.run(&["--rm"], &["/etc/passwd"]);
    assert_eq!(out.status.code(), Some(126));
    assert!(
        stderr(&out).contains("permission denied"),
        "{}",
        stderr(&out)
    );
    // mycontainer's own failure: 125 with one line.
    let out = fx.run(&["--rm", "-v", "/tmp:relative-target"], &["true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("-v"), "{}", stderr(&out));
    fx.assert_no_containers();
}

#[test]
fn a_failing_setup_step_is_reported_and_cleaned_up() {
    let fx = Fixture::new();
    let out = fx.run(&["--rm", "-w", "/image-marker/sub"], &["true"]);
    assert_eq!(out.status.code(), Some(125));
    let err = stderr(&out);
    assert!(
        err.contains("cannot create directory /image-marker"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    fx.assert_no_containers();
}

#[test]
fn writes_are_copy_on_write() {
    let fx = Fixture::new();
    ok(fx.run(
        &["--name", "first"],
        &[
            "sh",
            "-c",
            "echo changed > /image-marker && echo new > /new-file",
        ],
    ));
    let out = ok(fx.run(
        &["--rm"],
        &["sh", "-c", "cat /image-marker; ls /new-file 2>&1 || true"],
    ));
    assert!(out.starts_with("from the image\n"), "{out}");
    assert!(out.contains("No such file"), "{out}");
    assert_eq!(
        fs::read_to_string(fx.rootfs.join("image-marker")).unwrap(),
        "from the image\n"
    );
    assert!(!fx.rootfs.join("new-file").exists());
    // The change lives in the first container's upper dir, until rm.
    let ids = fx.container_ids();
    assert_eq!(ids.len(), 1);
    let upper = fx.root.join("containers").join(&ids[0]).join("upper");
    assert_eq!(fs::read_to_string(upper.join("new-file")).unwrap(), "new\n");
    ok(fx.cmd().args(["rm", "first"]).output().unwrap());
    fx.assert_no_containers();
}

#[test]
fn twenty_parallel_runs_all_succeed() {
    let fx = Fixture::new();
    let children: Vec<_> = (0..20)
        .map(|i| {
            fx.run_cmd(
                &["--rm"],
                &["sh", "-c", &format!("echo run-{i} > /tmp/x && cat /tmp/x")],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        assert_eq!(ok(child.wait_with_output().unwrap()), format!("run-{i}\n"));
    }
    fx.assert_no_containers();
}

#[test]
fn the_host_mount_table_does_not_change() {
    let fx = Fixture::new();
    let ours = fx.dir.path().to_string_lossy().into_owned();
    let netns = run_dir(&fx.root)
        .join("netns")
        .to_string_lossy()
        .into_owned();
    let relevant = || -> Vec<String> {
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| {
                l.contains(&ours)
                    || l.contains(&netns)
                    || l.contains("overlay")
                    || l.contains(" /proc ")
                    || l.contains(" /dev ")
            })
            .map(String::from)
            .collect()
    };
    let before = relevant();
    // It runs until we close its stdin (a fixed `sleep 2` could end before the
    // mount table was read on a loaded machine).
    let mut child = fx
        .run_cmd(
            &["--rm", "-i", "-v", &format!("{}:/v", fx.rootfs.display())],
            &["cat"],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    fx.wait_running();
    // The one mount a run adds to the host's table: its network namespace, bound under
    // the run directory's netns/ (as Docker's under /run/docker/netns), gone when the
    // run ends.
    let (namespaces, during): (Vec<String>, Vec<String>) = relevant()
        .into_iter()
        .partition(|l| l.contains(" nsfs ") && l.contains(&netns));
    assert_eq!(namespaces.len(), 1, "{namespaces:?}");
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    let after = relevant();
    assert_eq!(before, during);
    assert_eq!(before, after);
}

#[test]
fn sigterm_to_the_cli_is_forwarded_then_escalates_after_the_grace_period() {
    let fx = Fixture::new();
    // `sleep` as PID 1 has no SIGTERM handler, so the kernel ignores SIGTERM for it: the
    // CLI must kill it after --stop-timeout.
    let marker = format!("{}", 700_000 + std::process::id() % 100_000);
    let mut child = fx
        .run_cmd(&["--rm", "--stop-timeout", "1"], &["sleep", &marker])
        .spawn()
        .unwrap();
    assert!(
        wait_for(30, || pids_with(&format!("sleep {marker}")).len() == 2),
        "container did not start"
    );
    // Two processes with that command line may also be the CLI and a child it forked
    // that has not exec'd yet (nft, making the default bridge): the container runs once
    // its state says so.
    let id = fx.wait_running();
    let start = Instant::now();
    // SAFETY: signals the child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let took = start.elapsed();
    assert_eq!(status.code(), Some(137));
    assert!(
        took >= Duration::from_millis(900),
        "killed before the grace period: {took:?}"
    );
    assert!(pids_with(&format!("sleep {marker}")).is_empty());
    fx.assert_no_containers();
    assert_no_cgroup(&id);

    // With --init, SIGTERM reaches the command, which dies of it: 128+15. Also as a
    // non-root user: init runs as the command's user, so it may signal it.
    for user in ["0", "1000"] {
        let mut child = fx
            .run_cmd(&["--rm", "--init", "-u", user], &["sleep", &marker])
            .spawn()
            .unwrap();
        // The CLI, our init and the command.
        assert!(wait_for(30, || pids_with(&format!("sleep {marker}")).len() == 3));
        let id = fx.container_ids().pop().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        // SAFETY: as above.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        assert_eq!(child.wait().unwrap().code(), Some(143), "user {user}");
        assert!(pids_with(&format!("sleep {marker}")).is_empty());
        fx.assert_no_containers();
        assert_no_cgroup(&id);
    }
}

#[test]
fn sigkill_of_the_cli_kills_the_container_and_the_next_command_reclaims_it() {
    let fx = Fixture::new();
    let marker = format!("{}", 800_000 + std::process::id() % 100_000);
    let start_and_kill = |flags: &[&str]| {
        let mut child = fx.run_cmd(flags, &["sleep", &marker]).spawn().unwrap();
        assert!(wait_for(30, || pids_with(&format!("sleep {marker}")).len() == 2));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            wait_for(30, || pids_with(&format!("sleep {marker}")).is_empty()),
            "the container outlived its CLI"
        );
    };
    start_and_kill(&["--rm"]);
    let id = fx.container_ids().pop().unwrap();
    assert_eq!(
        fx.container_ids().len(),
        1,
        "the record of a killed run waits for the next command"
    );
    // A killed process may still be closing its descriptors after its command line is
    // gone, so give gc a few tries.
    let mut out = String::new();
    let reclaimed = wait_for(30, || {
        out = ok(fx.cmd().arg("gc").output().unwrap());
        out.contains("removed orphaned container")
    });
    assert!(reclaimed, "{out}");
    fx.assert_no_containers();
    assert_no_cgroup(&id);

    start_and_kill(&["--name", "kept"]);
    // Any command reclaims first: the kept one is marked exited and can be removed. (As
    // above, the dying init may hold the record's lock a moment longer: retry.)
    let ids = fx.container_ids();
    assert_eq!(ids.len(), 1);
    assert!(ids[0] != id, "the first record should be gone");
    let state_path = fx.root.join("containers").join(&ids[0]).join("state.json");
    let mut state = String::new();
    let exited = wait_for(30, || {
        ok(fx.cmd().args(["logs", "kept"]).output().unwrap());
        state = fs::read_to_string(&state_path).unwrap();
        state.contains("\"exited\"")
    });
    assert!(exited, "{state}");
    ok(fx.cmd().args(["rm", "kept"]).output().unwrap());
    fx.assert_no_containers();
    assert_no_cgroup(&ids[0]);
}

#[test]
fn logs_keep_both_streams_with_timestamps() {
    let fx = Fixture::new();
    let out = fx.run(
        &["--name", "talker"],
        &["sh", "-c", "echo out1; echo err1 >&2; printf partial"],
    );
    assert_eq!(stdout(&out), "out1\npartial");
    assert_eq!(stderr(&out), "err1\n");
    let logs = fx.cmd().args(["logs", "talker"]).output().unwrap();
    assert_eq!(stdout(&logs), "out1\npartial");
    assert_eq!(stderr(&logs), "err1\n");
    let ids = fx.container_ids();
    let raw = fs::read_to_string(
        fx.root
            .join("containers")
            .join(&ids[0])
            .join("container.log"),
    )
    .unwrap();
    let first = raw.lines().find(|l| l.contains("out1")).unwrap();
    let fields: Vec<&str> = first.splitn(4, ' ').collect();
    assert!(
        fields[0].ends_with('Z') && fields[0].contains('T'),
        "{first}"
    );
    assert_eq!(&fields[1..], ["stdout", "F", "out1"]);
    // A stopped container keeps its state until rm.
    let state =
        fs::read_to_string(fx.root.join("containers").join(&ids[0]).join("state.json")).unwrap();
    assert!(state.contains("\"exit_code\": 0"), "{state}");
    ok(fx.cmd().args(["rm", "talker"]).output().unwrap());
    let out = fx.cmd().args(["logs", "talker"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    fx.assert_no_containers();
}

#[test]
fn names_are_unique_while_the_container_exists() {
    let fx = Fixture::new();
    ok(fx.run(&["--name", "dup"], &["true"]));
    let out = fx.run(&["--name", "dup"], &["true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("already in use"), "{}", stderr(&out));
    ok(fx.cmd().args(["rm", "dup"]).output().unwrap());
    ok(fx.run(&["--rm", "--name", "dup"], &["true"]));
    fx.assert_no_containers();
}

#[test]
fn network_none_has_only_loopback_up_and_host_shares_ours() {
    let fx = Fixture::new();
    let out = ok(fx.run(
        &["--rm", "--network", "none"],
        &[
            "sh",
            "-c",
            "ls /sys/class/net; cat /sys/class/net/lo/operstate /sys/class/net/lo/flags",
        ],
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "lo", "{out}");
    let flags = u32::from_str_radix(lines[2].trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "lo is not up: {out}");
    // "The host" is the test's own namespace (see tests/common): only lo.
    let out = ok(fx.run(&["--rm", "--network", "host"], &["ls", "/sys/class/net"]));
    assert_eq!(out.lines().collect::<Vec<_>>(), links());
}

#[test]
fn init_is_pid_1_and_reaps_orphans() {
    let fx = Fixture::new();
    // The background sleep is reparented to PID 1 when sh exits; init must reap it.
    let out = ok(fx.run(&["--rm", "--init"], &["sh", "-c", "cat /proc/1/comm; echo $$; (sleep 0.1 &) ; sleep 0.3; ps -o stat,comm | grep -c Z || true"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "init");
    assert_eq!(lines[1], "2");
    assert_eq!(lines[2], "0", "zombie left: {out}");
}

#[test]
fn usage_is_printed_without_arguments_and_for_help() {
    let out = std::process::Command::new(BIN).output().unwrap();
    assert!(stderr(&out).contains("Usage") || stdout(&out).contains("Usage"));
    for verb in ["run", "logs", "rm", "gc"] {
        let out = std::process::Command::new(BIN)
            .args([verb, "--help"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{verb} --help");
        assert!(stdout(&out).contains("Usage"), "{verb}: {}", stdout(&out));
    }
}

#[test]
fn the_container_sees_its_own_cgroup_as_root() {
    let fx = Fixture::new();
    let out = ok(fx.run(&["--rm"], &["cat", "/proc/self/cgroup"]));
    assert!(!out.is_empty());
    for line in out.lines() {
        assert!(
            line.ends_with(":/"),
            "cgroup namespace does not start at the container's cgroup: {out}"
        );
    }
}

#[test]
fn a_running_container_cannot_be_removed() {
    let fx = Fixture::new();
    let mut child = fx
        .run_cmd(&["--name", "busy", "--init"], &["sleep", "1000"])
        .spawn()
        .unwrap();
    wait_until_running(&fx);
    let out = fx.cmd().args(["rm", "busy"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is running"), "{}", stderr(&out));
    // SAFETY: signals the child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(143));
    ok(fx.cmd().args(["rm", "busy"]).output().unwrap());
    fx.assert_no_containers();
}

#[test]
fn read_only_root_keeps_tmpfs_and_volumes_writable() {
    let fx = Fixture::new();
    let out = fx.run(
        &["--rm", "--read-only", "--tmpfs", "/scratch"],
        &["sh", "-c", "echo ok > /scratch/f && cat /scratch/f && echo x > /dev/shm/y && echo no > /image-marker"],
    );
    assert_eq!(stdout(&out), "ok\n");
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
    assert!(!out.status.success());
    assert_eq!(
        fs::read_to_string(fx.rootfs.join("image-marker")).unwrap(),
        "from the image\n"
    );
    fx.assert_no_containers();
}

#[test]
fn masked_and_read_only_proc_paths_are_enforced_unless_privileged() {
    let fx = Fixture::new();
    let script = "wc -c < /proc/timer_list; (echo 1 > /proc/sys/kernel/printk) 2>&1 | grep -c Read-only; true";
    let out = ok(fx.run(&["--rm"], &["sh", "-c", script]));
    assert_eq!(out, "0\n1\n");
    let out = ok(fx.run(&["--rm", "--privileged"], &["sh", "-c", script]));
    let lines: Vec<&str> = out.lines().collect();
    assert_ne!(lines[0], "0", "masked under --privileged: {out}");
    assert_eq!(lines[1], "0", "read-only under --privileged: {out}");
}

#[test]
fn containers_get_a_generated_name_and_rm_force_kills_a_running_one() {
    let fx = Fixture::new();
    ok(fx.run(&[], &["sh", "-c", "echo named-by-us"]));
    let ids = fx.container_ids();
    let state =
        fs::read_to_string(fx.root.join("containers").join(&ids[0]).join("state.json")).unwrap();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    let name = state["name"].as_str().unwrap().to_string();
    assert!(name.contains('_'), "{name}");
    assert_eq!(
        ok(fx.cmd().args(["logs", &name]).output().unwrap()),
        "named-by-us\n"
    );
    ok(fx.cmd().args(["rm", &name]).output().unwrap());

    let mut child = fx
        .run_cmd(&["--name", "victim"], &["sleep", "1000"])
        .spawn()
        .unwrap();
    wait_until_running(&fx);
    ok(fx.cmd().args(["rm", "-f", "victim"]).output().unwrap());
    assert_eq!(child.wait().unwrap().code(), Some(137));
    fx.assert_no_containers();
}

#[test]
fn signals_are_forwarded_to_a_command_that_handles_them() {
    let fx = Fixture::new();
    let script = "trap 'echo got-usr1' USR1; trap 'echo got-hup; exit 7' HUP; echo ready; \
                  while :; do sleep 0.05; done";
    let mut child = fx
        .run_cmd(&["--rm"], &["sh", "-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    let mut read_until = |needle: &str, seen: &mut Vec<u8>| {
        while !String::from_utf8_lossy(seen).contains(needle) {
            let n = stdout.read(&mut buf).unwrap();
            assert!(
                n > 0,
                "output ended before {needle:?}: {}",
                String::from_utf8_lossy(seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
    };
    read_until("ready", &mut seen);
    // SAFETY: signals the child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGUSR1) };
    read_until("got-usr1", &mut seen);
    // SAFETY: as above.
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    read_until("got-hup", &mut seen);
    assert_eq!(child.wait().unwrap().code(), Some(7));
    fx.assert_no_containers();
}

#[test]
fn words_after_the_command_belong_to_it_even_when_they_look_like_our_flags() {
    let fx = Fixture::new();
    // -u and -w are run flags too; after the command they are the command's.
    assert_eq!(ok(fx.run(&["--rm"], &["id", "-u"])).trim(), "0");
    assert_eq!(
        ok(fx.run(&["--rm"], &["echo", "-w", "--name", "x"])).trim(),
        "-w --name x"
    );
}

/// Waits until the fixture's one container records that its command runs.
fn wait_until_running(fx: &Fixture) {
    assert!(wait_for(30, || {
        let state = fx
            .container_ids()
            .first()
            .map(|id| fx.root.join("containers").join(id).join("state.json"));
        state
            .and_then(|p| fs::read_to_string(p).ok())
            .is_some_and(|s| s.contains("\"running\""))
    }));
}

/// Docker's init layer: /etc/mtab is a symlink to /proc/mounts (`df` and `mount` read
/// it) unless the image has its own, which it keeps; with a read-only root too, and a
/// container started again still has it.
#[test]
fn etc_mtab_links_to_proc_mounts_unless_the_image_has_one() {
    let fx = Fixture::new();
    let out = ok(fx.run(
        &["--rm"],
        &[
            "sh",
            "-c",
            "readlink /etc/mtab; grep -c . /etc/mtab; df / >/dev/null && echo df-ok",
        ],
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "/proc/mounts", "{out}");
    assert!(lines[1].parse::<u32>().unwrap() > 0, "{out}");
    assert_eq!(lines[2], "df-ok", "{out}");
    assert_eq!(
        ok(fx.run(&["--rm", "--read-only"], &["readlink", "/etc/mtab"])),
        "/proc/mounts\n"
    );
    // The image's /etc keeps its mode: the init layer (with an /etc 0755) is below it.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(fx.rootfs.join("etc"), fs::Permissions::from_mode(0o750)).unwrap();
    assert_eq!(
        ok(fx.run(&["--rm"], &["stat", "-c", "%a", "/etc"])),
        "750\n"
    );
    fx.assert_no_containers();

    let own = Fixture::new();
    fs::write(own.rootfs.join("etc/mtab"), "the image's own\n").unwrap();
    assert_eq!(
        ok(own.run(&["--rm"], &["cat", "/etc/mtab"])),
        "the image's own\n"
    );
    own.assert_no_containers();
}

#[test]
fn each_test_has_a_network_namespace_of_its_own() {
    let w = World::new();
    let host = std::fs::read_link("/proc/self/ns/net").unwrap();
    let ours = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    assert_ne!(
        host, ours,
        "the test thread is still in the process's namespace"
    );
    assert_eq!(links(), vec!["lo".to_string()]);
    // What the test starts inherits it: a container given "the host's" network sees
    // only the test's loopback (the host has other interfaces), and it is up.
    let inside = ok(w.run(&["--network", "host"], &["cat", "/proc/net/dev"]));
    let names: Vec<&str> = inside
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(names, vec!["lo"], "{inside}");
    let flags = ok(w.run(&["--network", "host"], &["cat", "/sys/class/net/lo/flags"]));
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "lo is down");
}
