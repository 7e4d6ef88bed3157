//! `attach` to detached containers through their supervisor's socket: input and output
//! with pipes and with a terminal (a pty made here, the test playing the user's
//! terminal), several clients, detach keys, resizes, signals, and the socket's access.

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::{Arc, Mutex};

use common::*;

/// An `attach` process whose output is collected by a thread.
struct Attached {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<Vec<u8>>>,
}

impl Attached {
    fn start(w: &World, args: &[&str]) -> Attached {
        let mut child = w
            .cmd()
            .arg("attach")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let mut stdout = child.stdout.take().unwrap();
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Attached {
            stdin: child.stdin.take(),
            child,
            out,
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    fn output(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    fn sees(&self, text: &str) -> bool {
        wait_for(10, || self.output().contains(text))
    }

    /// Waits for the exit; returns the code and stderr.
    fn finish(mut self) -> (Option<i32>, String) {
        drop(self.stdin.take());
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let ended = wait_for(20, || self.child.try_wait().unwrap().is_some());
        assert!(ended, "attach did not end: {}", self.output());
        (self.child.wait().unwrap().code(), err)
    }

    /// Whether the process blocked `signal` (its signals are proxied from then on).
    fn blocks(&self, signal: i32) -> bool {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("SigBlk:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .is_some_and(|mask| mask & (1 << (signal - 1)) != 0)
    }
}

fn ps_status(w: &World, name: &str) -> String {
    ok(w.mc(&[
        "ps",
        "-a",
        "--filter",
        &format!("name={name}"),
        "--format",
        "{{.Status}}",
    ]))
}

fn socket_path(w: &World, id: &str) -> std::path::PathBuf {
    w.root.join("containers").join(id).join("attach.sock")
}

#[test]
fn attach_feeds_stdin_prints_output_and_returns_the_exit_code() {
    let w = World::new();
    let id = w.run_detached(
        &["-i", "--name", "a-read"],
        &[
            "sh",
            "-c",
            "read line; echo got:$line; echo err:$line >&2; exit 3",
        ],
    );
    let mut a = Attached::start(&w, &["a-read"]);
    a.write(b"hello\n");
    let (code, err) = a.finish();
    assert_eq!(code, Some(3), "{err}");
    assert_eq!(
        String::from_utf8_lossy(&a_output_of(&w, "a-read")),
        "got:hello\nerr:hello\n"
    );
    // What attach printed: stdout on stdout, stderr on stderr.
    assert_eq!(w.state(&id)["exit_code"], 3);
    assert!(err.contains("err:hello"), "{err}");
    assert!(
        !socket_path(&w, &id).exists(),
        "the socket outlived the container"
    );
}

/// The container's log (stdout and stderr).
fn a_output_of(w: &World, name: &str) -> Vec<u8> {
    let out = w.mc(&["logs", name]);
    assert!(out.status.success());
    let mut all = out.stdout;
    all.extend_from_slice(&out.stderr);
    all
}

#[test]
fn two_clients_see_all_output_and_type_into_one_stdin_and_detach_keys_leave_it_running() {
    let w = World::new();
    w.run_detached(&["-i", "--name", "a-cat"], &["cat"]);
    let mut a = Attached::start(&w, &["a-cat"]);
    let mut b = Attached::start(&w, &["--detach-keys", "ctrl-a,b", "a-cat"]);
    // Both are connected once what one types comes back to the other.
    let mut n = 0;
    let both = wait_for(30, || {
        n += 1;
        a.write(format!("ping{n}\n").as_bytes());
        std::thread::sleep(std::time::Duration::from_millis(50));
        b.output().contains("ping")
    });
    assert!(both, "the second client saw nothing: {:?}", b.output());
    b.write(b"from-b\n");
    assert!(a.sees("from-b\n"), "{:?}", a.output());
    assert!(b.sees("from-b\n"), "{:?}", b.output());

    // ctrl-p ctrl-q detaches the first, the second's own keys the second.
    a.write(b"\x10\x11");
    let (code, err) = a.finish();
    assert_eq!(code, Some(0), "{err}");
    b.write(b"tail\x01b");
    let (code, err) = b.finish();
    assert_eq!(code, Some(0), "{err}");
    assert!(
        ps_status(&w, "a-cat").starts_with("Up"),
        "{}",
        ps_status(&w, "a-cat")
    );

    // The keys never reached the container; what preceded them in the same read did,
    // and its stdin stayed open for the next client.
    let mut c = Attached::start(&w, &["a-cat"]);
    c.write(b"again\n");
    assert!(c.sees("again\n"), "{:?}", c.output());
    // The supervisor relays a read to its clients before it writes it to the log.
    let mut log = Vec::new();
    let logged = wait_for(30, || {
        log = a_output_of(&w, "a-cat");
        String::from_utf8_lossy(&log).contains("tailagain\n")
    });
    assert!(logged, "{log:?}");
    assert!(
        !log.iter().any(|b| [0x01, 0x10, 0x11].contains(b)),
        "{log:?}"
    );
    ok(w.mc(&["stop", "-t", "1", "a-cat"]));
    let (code, _) = c.finish();
    // cat, the container's PID 1, has no handler for SIGTERM: stop kills it.
    assert_eq!(code, Some(137));
}

#[test]
fn attach_to_a_stopped_or_missing_container_fails_with_1() {
    let w = World::new();
    let id = w.run_detached(&["--name", "a-done"], &["true"]);
    assert!(wait_for(10, || w.state(&id)["status"] == "exited"));
    let out = w.mc(&["attach", "a-done"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot attach to stopped container a-done"),
        "{}",
        stderr(&out)
    );
    let out = w.mc(&["attach", "a-nothing"]);
    assert_eq!(out.status.code(), Some(1));
    let out = w.mc(&["attach", "--detach-keys", "ctrl-1", "a-done"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("invalid detach keys"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn signals_are_proxied_to_the_container_unless_sig_proxy_is_false() {
    let w = World::new();
    let script = "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.1; done";
    w.run_detached(&["-i", "--name", "a-sig"], &["sh", "-c", script]);
    // A TERM that came before the trap would find a PID 1 with no handler (ignored).
    w.wait_logged("a-sig", "ready");
    // --sig-proxy=false: a TERM ends attach alone.
    let plain = Attached::start(&w, &["--sig-proxy=false", "a-sig"]);
    let pid = plain.child.id() as i32;
    // Connected (and past its setup) once it prints nothing but waits: its stdin is
    // read from then on; give it its hello by waiting for its poll.
    assert!(wait_for(10, || std::fs::read_to_string(format!(
        "/proc/{pid}/wchan"
    ))
    .is_ok_and(|w| w.contains("poll"))));
    // SAFETY: kill on a child of ours.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let (code, _) = plain.finish();
    assert_eq!(code, None, "attach without a proxy dies of the signal");
    assert!(ps_status(&w, "a-sig").starts_with("Up"));

    let proxied = Attached::start(&w, &["a-sig"]);
    assert!(wait_for(10, || proxied.blocks(libc::SIGTERM)));
    // SAFETY: kill on a child of ours.
    unsafe { libc::kill(proxied.child.id() as i32, libc::SIGTERM) };
    assert!(proxied.sees("got-term"), "{:?}", proxied.output());
    let (code, err) = proxied.finish();
    assert_eq!(code, Some(7), "{err}");
}

fn set_size(fd: &OwnedFd, rows: u16, cols: u16) {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize we own, on a pty we hold.
    assert_eq!(
        unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &size) },
        0
    );
}

#[test]
fn attach_with_a_terminal_is_raw_passes_resizes_and_detaches() {
    let w = World::new();
    let id = w.run_detached(
        &["-it", "--name", "a-tty"],
        &["sh", "-c", "while read line; do stty size; done"],
    );
    // Our side plays the user's terminal: attach gets the slave as its controlling tty.
    let pty = nix::pty::openpty(None, None).unwrap();
    set_size(&pty.master, 40, 100);
    let slave = &pty.slave;
    let mut cmd = w.cmd();
    cmd.args(["attach", "a-tty"])
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave.try_clone().unwrap());
    // SAFETY: only setsid and ioctl (async-signal-safe) between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let out = Arc::new(Mutex::new(Vec::new()));
    let mut reader = std::fs::File::from(pty.master.try_clone().unwrap());
    let sink = out.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let mut master = std::fs::File::from(pty.master.try_clone().unwrap());
    let seen = |text: &str| {
        wait_for(10, || {
            String::from_utf8_lossy(&out.lock().unwrap()).contains(text)
        })
    };
    // Raw while attached: no echo, no line discipline on our side.
    let raw = wait_for(30, || {
        nix::sys::termios::tcgetattr(slave).is_ok_and(|t| {
            !t.local_flags
                .contains(nix::sys::termios::LocalFlags::ICANON)
        })
    });
    assert!(raw, "attach did not make its terminal raw");
    // The size our terminal had when attach connected, then after a resize (the kernel
    // sends attach SIGWINCH).
    master.write_all(b"stty size\n").unwrap();
    assert!(
        seen("40 100"),
        "{}",
        String::from_utf8_lossy(&out.lock().unwrap())
    );
    set_size(&pty.master, 50, 120);
    let mut resized = false;
    for _ in 0..50 {
        master.write_all(b"stty size\n").unwrap();
        if wait_for(1, || {
            String::from_utf8_lossy(&out.lock().unwrap()).contains("50 120")
        }) {
            resized = true;
            break;
        }
    }
    assert!(resized, "{}", String::from_utf8_lossy(&out.lock().unwrap()));
    // ctrl-p ctrl-q: attach leaves, its terminal restored, the shell goes on.
    master.write_all(b"\x10\x11").unwrap();
    assert!(wait_for(10, || child.try_wait().unwrap().is_some()));
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let restored = nix::sys::termios::tcgetattr(slave).unwrap();
    assert!(restored
        .local_flags
        .contains(nix::sys::termios::LocalFlags::ICANON));
    assert!(ps_status(&w, "a-tty").starts_with("Up"));
    assert_eq!(w.state(&id)["status"], "running");
}

#[test]
fn the_socket_is_root_only_and_goes_with_the_container() {
    let w = World::new();
    let id = w.run_detached(&["-i", "--name", "a-sock"], &["cat"]);
    let path = socket_path(&w, &id);
    let meta = std::fs::metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), 0);
    // A user other than root cannot connect (through the record's directory, so no
    // path is too long for a unix socket address).
    let dir = std::fs::File::open(path.parent().unwrap()).unwrap();
    let fd = dir.as_raw_fd();
    let script = format!(
        "import socket, errno\ns = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect('/proc/self/fd/{fd}/attach.sock')\n    print('connected')\nexcept OSError as e:\n    print(errno.errorcode[e.errno])\n"
    );
    let mut cmd = std::process::Command::new("/usr/bin/python3");
    cmd.args(["-c", &script]).uid(65534).gid(65534);
    // SAFETY: fcntl on a descriptor we own, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::fcntl(fd, libc::F_SETFD, 0);
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert_eq!(stdout(&out).trim(), "EACCES", "{}", stderr(&out));
    // Root can, by the same path.
    let mut cmd = std::process::Command::new("/usr/bin/python3");
    cmd.args(["-c", &script]);
    // SAFETY: as above.
    unsafe {
        cmd.pre_exec(move || {
            libc::fcntl(fd, libc::F_SETFD, 0);
            Ok(())
        });
    }
    assert_eq!(stdout(&cmd.output().unwrap()).trim(), "connected");
    // The container's process does not hold it.
    let pid = w.state(&id)["pid"].as_i64().unwrap();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let target = std::fs::read_link(fd.unwrap().path()).unwrap_or_default();
        assert!(!target.to_string_lossy().contains("socket"), "{target:?}");
    }
    ok(w.mc(&["rm", "-f", "a-sock"]));
    assert!(!path.exists());
    assert!(!path.parent().unwrap().exists());
}

/// The unix sockets process `pid` has open.
fn sockets_of(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                .filter(|target| target.to_string_lossy().starts_with("socket:"))
                .count()
        })
        .unwrap_or(0)
}

/// A client that stops reading is dropped by the supervisor once it has taken nothing
/// for `STALLED_CLIENT` while 4 MB behind (the container's output waits for a slow
/// client, not for a wedged one); attach then says so at once, and that the container
/// still runs, instead of waiting for an exit code that will not come (it waited 5 s,
/// then said only "lost the connection").
#[test]
fn a_client_dropped_for_not_reading_is_told_the_container_still_runs() {
    let w = World::new();
    let line = "x".repeat(1000);
    let id = w.run_detached(&["--name", "flood"], &["yes", &line]);
    let supervisor = w.supervisor_pid(&id);
    let before = sockets_of(supervisor);
    let a = Attached::start(&w, &["--no-stdin", "flood"]);
    assert!(a.sees(&line));
    assert!(wait_for(10, || sockets_of(supervisor) == before + 1));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(a.child.id() as i32, libc::SIGSTOP) };
    let dropped = wait_for(30, || sockets_of(supervisor) == before);
    // SAFETY: as above.
    unsafe { libc::kill(a.child.id() as i32, libc::SIGCONT) };
    assert!(dropped, "the supervisor kept a client that does not read");
    let (code, err) = a.finish();
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("did not read the output fast enough") && err.contains("still runs"),
        "{err}"
    );
    assert!(ps_status(&w, "flood").starts_with("Up"));
    ok(w.mc(&["rm", "-f", "flood"]));
}

/// A client that takes nothing for a while when the run ends (stopped here; on a busy
/// machine, one that waits for a CPU) still gets the rest of the output and the exit
/// code: the supervisor gives up on a client only after a long stall (it gave up after
/// 1 s, and the client lost the end of the output).
#[test]
fn a_client_that_stalls_at_the_end_still_gets_all_output_and_the_exit_code() {
    let w = World::new();
    let script =
        "trap 'yes | head -c 2000000; exit 7' USR1; echo ready; while :; do sleep 0.1; done";
    let id = w.run_detached(&["--name", "stall"], &["sh", "-c", script]);
    // A USR1 that came before the trap would find a PID 1 with no handler (ignored).
    w.wait_logged("stall", "ready");
    let init = w.state(&id)["pid"].as_i64().unwrap() as i32;
    let a = Attached::start(&w, &["--no-stdin", "stall"]);
    assert!(
        wait_for(10, || a.blocks(libc::SIGTERM)),
        "attach never connected"
    );
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(a.child.id() as i32, libc::SIGSTOP) };
    ok(w.mc(&["kill", "-s", "USR1", "stall"]));
    // The output (far more than a socket holds) waits in the supervisor for the client.
    assert!(wait_for(30, || !alive(init)), "the container did not end");
    // Past the old 1 s limit, and well inside `STALLED_CLIENT` (10 s), which counts from
    // the first write the client did not take: on a busy machine that can be seconds
    // before the init's end.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // SAFETY: as above.
    unsafe { libc::kill(a.child.id() as i32, libc::SIGCONT) };
    let out = a.out.clone();
    let (code, err) = a.finish();
    assert_eq!(code, Some(7), "{err}");
    let out = out.lock().unwrap();
    assert_eq!(
        out.iter().filter(|b| **b == b'y').count(),
        1_000_000,
        "{err}"
    );
}

/// A `--rm` container whose client the supervisor let go at the end (stopped here, it
/// took nothing for `STALLED_CLIENT`) is removed before attach reads its record; attach
/// still returns its exit code, from the "die" event its supervisor logged (it said to
/// use `wait` next time).
#[test]
fn a_client_let_go_by_a_removed_rm_container_still_gets_its_exit_code() {
    let w = World::new();
    let script =
        "trap 'yes | head -c 2000000; exit 7' USR1; echo ready; while :; do sleep 0.1; done";
    let id = w.run_detached(&["--rm", "--name", "gone"], &["sh", "-c", script]);
    w.wait_logged("gone", "ready");
    let a = Attached::start(&w, &["--no-stdin", "gone"]);
    assert!(
        wait_for(10, || a.blocks(libc::SIGTERM)),
        "attach never connected"
    );
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(a.child.id() as i32, libc::SIGSTOP) };
    ok(w.mc(&["kill", "-s", "USR1", "gone"]));
    let removed = wait_for(60, || !w.root.join("containers").join(&id).exists());
    // SAFETY: as above.
    unsafe { libc::kill(a.child.id() as i32, libc::SIGCONT) };
    assert!(removed, "the --rm container was not removed");
    let (code, err) = a.finish();
    assert_eq!(code, Some(7), "{err}");
    assert!(err.is_empty(), "{err}");
}
