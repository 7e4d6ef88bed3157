//! Issue 11 from inside real containers: what the CLI holds while it starts a process in
//! a container (its descriptors, its binary, its terminal) stays out of the container's
//! reach, for run, run -d, start and exec.

mod common;
mod probe;

use std::fs;
use std::path::Path;

use common::*;

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
/// refused (exiting 125, mycontainer's own failure), and nothing of the host may have
/// been read or written.
#[track_caller]
fn assert_refused(w: &World, out: &std::process::Output, workdir: &str) {
    assert_refused_with(w, out, workdir, 125);
}

/// [`assert_refused`] for a verb whose failure exits `code` (`start`: 1, as Docker).
#[track_caller]
fn assert_refused_with(w: &World, out: &std::process::Output, workdir: &str, code: i32) {
    let (stdout, stderr) = (stdout(out), stderr(out));
    assert!(
        !stdout.contains(SECRET),
        "{workdir}: read a host file: {stdout}"
    );
    assert!(
        !stdout.contains("ran"),
        "{workdir}: the command ran: {stdout}"
    );
    assert_eq!(
        out.status.code(),
        Some(code),
        "{workdir}: {stdout} {stderr}"
    );
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
            assert_refused_with(&w, &out, &workdir, 1);
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
    w.run_detached(&["--name", "target"], &["sleep", "1000"]);
    for fd in 3..=10 {
        let workdir = format!("/proc/self/fd/{fd}");
        let out = w.mc(&["exec", "-w", &workdir, "target", "sh", "-c", REACH_UP]);
        // exec's own failure is Docker's 126.
        assert_refused_with(&w, &out, &workdir, 126);
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
            "unshare -m sh -c 'mount -t tmpfs none /tmp && echo elsewhere > /tmp/f && exec sleep 1000' & \
             echo $! > /split-pid; exec sleep 1000",
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
        assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
        assert!(!stdout(&out).contains("ran"), "{}", stdout(&out));
        assert!(
            stderr(&out).contains(&workdir)
                && stderr(&out).contains("outside the container's root"),
            "{}",
            stderr(&out)
        );
    }
}

/// Runs `probe race` in a container started with `flags`, then `exec true` in it 50
/// times with `exec_cli` (a copy of our binary, say) behind `wrapper`; returns the
/// racer's log. The racer looks for a host file through /proc/PID/root at `host_marker`.
fn race_execs(
    w: &World,
    flags: &[&str],
    wrapper: &[&Path],
    exec_cli: &Path,
    host_marker: &Path,
) -> String {
    probe::install(&w.rootfs);
    let racer = format!("probe race {}; sleep 1000", host_marker.display());
    let mut all = vec!["--name", "raced"];
    all.extend_from_slice(flags);
    w.run_detached(&all, &["sh", "-c", &racer]);
    assert!(wait_for(10, || w
        .mc(&["exec", "raced", "test", "-e", "/race.log"])
        .status
        .success()));
    for _ in 0..50 {
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut cmd = std::process::Command::new(first);
                cmd.args(rest).arg(exec_cli);
                cmd
            }
            None => std::process::Command::new(exec_cli),
        };
        // Our streams are /dev/null: what the CLI hands the command is another test's.
        let status = cmd
            .env_remove("MYCONTAINER_ROOT")
            .arg("--root")
            .arg(&w.root)
            .args(["exec", "raced", "true"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "exec failed: {status:?}");
    }
    ok(w.mc(&["exec", "raced", "touch", "/race.stop"]));
    let mut log = String::new();
    assert!(wait_for(10, || {
        log = stdout(&w.mc(&["exec", "raced", "cat", "/race.log"]));
        log.ends_with("done\n")
    }));
    let kinds = [
        "exe ",
        "exe-open",
        "exe-write ",
        "exe-write-refused",
        "root",
        "cwd",
        "fd ",
        "fd-write",
    ];
    let counts: Vec<String> = kinds
        .iter()
        .map(|k| {
            format!(
                "{}: {}",
                k.trim(),
                log.lines().filter(|l| l.starts_with(k)).count()
            )
        })
        .collect();
    eprintln!("racer: denied {}, {}", denied(&log), counts.join(", "));
    log
}

/// How often the racer met a process that was still starting and refused it.
fn denied(log: &str) -> u64 {
    log.lines()
        .find_map(|l| l.strip_prefix("denied "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_container_process_cannot_reach_what_exec_holds_before_its_command_runs() {
    let w = World::new();
    let marker = w.dir.path().join("host-marker");
    fs::write(&marker, "untouched\n").unwrap();
    let cli = Path::new(BIN);
    let log = race_execs(&w, &[], &[], cli, &marker);
    // With Docker's default capabilities (no CAP_SYS_PTRACE) every process exec starts
    // is out of reach (non-dumpable) until its command runs: no handle on our binary.
    // The racer may still catch a process just after its execve (the container's own
    // command, holding only its pipes and /dev/null): that is allowed, a host file is not.
    assert_racer_reached_nothing_of_the_host(&log, &marker);
    assert!(
        !log.lines().any(|l| l.starts_with("exe")),
        "a handle on our binary: {log}"
    );
    // The racer did meet the processes while they were starting.
    assert!(denied(&log) > 0, "{log}");
}

/// What a racer may see of a process `exec` starts: nothing of the host's (no host root,
/// no host file among its descriptors, no working directory but the container's `/`),
/// and nothing it could write.
fn assert_racer_reached_nothing_of_the_host(log: &str, marker: &Path) {
    for line in log.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("root" | "fd-write" | "exe-write") => panic!("{line}\n{log}"),
            Some("fd") => {
                let target = words.nth(2).unwrap_or("");
                assert!(
                    !target.starts_with('/') || target.starts_with("/dev/"),
                    "a host file: {line}\n{log}"
                );
            }
            Some("cwd") => {
                assert_eq!(words.nth(1), Some("/"), "{line}\n{log}");
            }
            _ => {}
        }
    }
    assert_eq!(fs::read_to_string(marker).unwrap(), "untouched\n");
}

/// With CAP_SYS_PTRACE the racer may see the process exec starts (as with runc), but
/// only once it is inside every namespace of the container holding nothing of the
/// host's but our binary, which it cannot write.
fn assert_ptrace_racer_reached_nothing(log: &str, marker: &Path, copy: &Path) {
    assert_racer_reached_nothing_of_the_host(log, marker);
    assert!(
        fs::read(copy).unwrap() == fs::read(BIN).unwrap(),
        "the copy of our binary was changed through a handle from the container"
    );
    let handles = log.lines().filter(|l| l.starts_with("exe-open")).count();
    let refused = log
        .lines()
        .filter(|l| l.starts_with("exe-write-refused"))
        .count();
    assert_eq!(handles, refused, "{log}");
    // The racer did get hold of the binary: what it could not do was write it.
    assert!(handles > 0, "{log}");
}

#[test]
fn with_cap_sys_ptrace_exec_exposes_no_host_file_and_no_writable_binary() {
    let w = World::new();
    let marker = w.dir.path().join("host-marker");
    fs::write(&marker, "untouched\n").unwrap();
    // A copy nothing else runs, so only our protection keeps it from being written
    // once the execs are over (a running binary is busy).
    let copy = w.dir.path().join("mycontainer-copy");
    fs::copy(BIN, &copy).unwrap();
    let log = race_execs(&w, &["--cap-add", "SYS_PTRACE"], &[], &copy, &marker);
    assert_ptrace_racer_reached_nothing(&log, &marker, &copy);
}

#[test]
fn with_cap_sys_ptrace_and_no_open_tree_exec_runs_from_a_sealed_copy() {
    let w = World::new();
    let marker = w.dir.path().join("host-marker");
    fs::write(&marker, "untouched\n").unwrap();
    let copy = w.dir.path().join("mycontainer-copy");
    fs::copy(BIN, &copy).unwrap();
    // open_tree answers ENOSYS, as before Linux 5.2: the CLI falls back to a memfd.
    let wrapper = [probe::binary(), Path::new("no-open-tree")];
    let log = race_execs(&w, &["--privileged"], &wrapper, &copy, &marker);
    assert_ptrace_racer_reached_nothing(&log, &marker, &copy);
    assert!(
        log.lines()
            .filter(|l| l.starts_with("exe-open"))
            .any(|l| l.contains("memfd:")),
        "{log}"
    );
}

/// A pty pair: the master (the "host terminal" as its user sees it) and the slave that
/// commands get as their standard streams and controlling terminal.
struct Pty {
    master: std::fs::File,
    slave: std::fs::File,
}

impl Pty {
    fn open() -> Pty {
        use std::os::fd::FromRawFd;
        // SAFETY: posix_openpt/grantpt/unlockpt/ptsname_r on a descriptor we own; the
        // name buffer is ours.
        unsafe {
            let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
            assert!(master >= 0);
            assert_eq!(libc::grantpt(master), 0);
            assert_eq!(libc::unlockpt(master), 0);
            let mut name = [0 as libc::c_char; 64];
            assert_eq!(libc::ptsname_r(master, name.as_mut_ptr(), name.len()), 0);
            let slave = libc::open(
                name.as_ptr(),
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            );
            assert!(slave >= 0);
            assert_eq!(
                libc::fcntl(master, libc::F_SETFL, libc::O_NONBLOCK),
                0,
                "non-blocking master"
            );
            Pty {
                master: std::fs::File::from_raw_fd(master),
                slave: std::fs::File::from_raw_fd(slave),
            }
        }
    }

    /// Runs `mycontainer ARGS` with the slave as its stdin, stdout, stderr and
    /// controlling terminal, as from a shell on this terminal; returns its exit code.
    fn run(&self, w: &World, args: &[&str]) -> i32 {
        use std::os::unix::process::CommandExt;
        let mut cmd = w.cmd();
        cmd.args(args)
            .stdin(self.slave.try_clone().unwrap())
            .stdout(self.slave.try_clone().unwrap())
            .stderr(self.slave.try_clone().unwrap());
        // SAFETY: setsid and ioctl are async-signal-safe; they run in the forked child.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.status().unwrap().code().unwrap_or(-1)
    }

    /// Everything written to the terminal so far.
    fn output(&self) -> String {
        use std::io::Read;
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = (&self.master).read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&all).replace("\r\n", "\n")
    }

    /// Types `text` on the terminal.
    fn type_in(&self, text: &str) {
        use std::io::Write;
        (&self.master).write_all(text.as_bytes()).unwrap();
    }
}

#[test]
fn exec_never_hands_the_callers_terminal_to_the_container() {
    let w = World::new();
    w.run_detached(&["--name", "term"], &["sleep", "1000"]);
    let pty = Pty::open();
    let show = "for i in 0 1 2; do readlink /proc/self/fd/$i; done";
    for flags in [&[][..], &["-i"][..]] {
        let mut args = vec!["exec"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["term", "sh", "-c", show]);
        assert_eq!(pty.run(&w, &args), 0);
        let seen = pty.output();
        let fds: Vec<&str> = seen.lines().collect();
        assert_eq!(fds.len(), 3, "{flags:?}: {seen:?}");
        for fd in fds {
            assert!(
                fd.starts_with("pipe:") || fd == "/dev/null",
                "{flags:?}: the command holds {fd}: {seen:?}"
            );
        }
    }
    // Processes left behind in the container, reading from every stream they were
    // given and writing to the terminal later.
    let leave = "rm -f /injected; (cat > /stolen0 &); (cat <&1 > /stolen1 &); \
                 (cat <&2 > /stolen2 &); \
                 (sleep 0.5; echo injected-later >&2; touch /injected) & echo started";
    for flags in [&[][..], &["-i"][..]] {
        let mut args = vec!["exec"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["term", "sh", "-c", leave]);
        assert_eq!(pty.run(&w, &args), 0);
        assert!(pty.output().contains("started"));
        // Typed on the caller's terminal once exec has returned.
        pty.type_in("typed-after-exec\n");
        // Once the late writer has written (not after a fixed time, which a loaded
        // machine can outlast, making the check below pass without testing anything).
        assert!(wait_for(30, || w
            .mc(&["exec", "term", "test", "-e", "/injected"])
            .status
            .success()));
        let later = pty.output();
        assert!(!later.contains("injected-later"), "{flags:?}: {later:?}");
        let stolen = ok(w.mc(&["exec", "term", "sh", "-c", "cat /stolen*"]));
        assert!(!stolen.contains("typed-after"), "{flags:?}: {stolen:?}");
    }
    // Output still reaches the caller, exit codes pass through, -i still feeds stdin.
    assert_eq!(pty.run(&w, &["exec", "term", "echo", "hello"]), 0);
    assert_eq!(pty.output(), "hello\n");
    assert_eq!(
        pty.run(&w, &["exec", "term", "sh", "-c", "echo oops >&2; exit 5"]),
        5
    );
    assert_eq!(pty.output(), "oops\n");
    let mut cat = w
        .cmd()
        .args(["exec", "-i", "term", "cat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // More than a pipe holds, so the copy has to wait for the command to read; written
    // from a thread while the output is read, as cat echoes it back.
    let mut stdin = cat.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let line = "through stdin\n".repeat(20_000);
        stdin.write_all(line.as_bytes()).unwrap();
    });
    let out = ok(cat.wait_with_output().unwrap());
    writer.join().unwrap();
    assert_eq!(out.len(), "through stdin\n".len() * 20_000);
    assert!(out.lines().all(|l| l == "through stdin"));
    // A command that never reads its stdin does not hold up exec.
    let mut ignore = w
        .cmd()
        .args(["exec", "-i", "term", "true"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let _ = ignore.stdin.take().unwrap().write_all(&vec![b'x'; 1 << 20]);
    }
    assert!(ignore.wait().unwrap().success());
}

#[test]
fn run_i_gives_the_container_a_pipe_not_the_callers_terminal() {
    let w = World::new();
    let pty = Pty::open();
    let code = pty.run(
        &w,
        &[
            "run",
            "--rm",
            "-i",
            "--rootfs",
            &w.rootfs.display().to_string(),
            "sh",
            "-c",
            "for i in 0 1 2; do readlink /proc/self/fd/$i; done",
        ],
    );
    assert_eq!(code, 0);
    let seen = pty.output();
    assert_eq!(seen.lines().count(), 3, "{seen:?}");
    assert!(seen.lines().all(|fd| fd.starts_with("pipe:")), "{seen:?}");
    w.assert_no_containers();
}
