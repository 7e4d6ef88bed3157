//! The relay loop: poll the signalfd, the container's output, its stdin pipe (while
//! input waits), the attach socket and its clients; on the init's exit drain the
//! output to its end, then exec the full binary to record the exit.

use std::ffi::OsString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::logfile::{LogWriter, Rotation, Stream};
use crate::server::{Request, Server};
use crate::Args;

/// How long the output may stay open once everything in it at the init's exit has been
/// read. The container has a pid namespace of its own, so when its init is reaped the
/// kernel has killed everything else in it and the streams end as soon as they are
/// read, however slow the reading (a slow disk, a slow attached client, a busy
/// machine). Only a holder outside the container (a host process that opened the pipe)
/// can keep them open: that wait, and only it, is bounded.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// How much a pty may still hold behind its line discipline's count (see the CLI's
/// relay, src/runtime/relay.rs).
const PTY_BEHIND: usize = 256 * 1024;

/// The bytes waiting in a pipe or a pty master (FIONREAD); 0 when unknown.
fn waiting_bytes(fd: RawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into `n`, which we own.
    let r = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    if r < 0 {
        0
    } else {
        n.max(0) as usize
    }
}

/// Whether `fd` has input right now (for a pty master, poll first pushes what waits
/// behind its line discipline).
fn readable_now(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll(2) over one pollfd we own, without waiting.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & libc::POLLIN != 0
}

/// The signals passed on to the container (as the full binary's relay does).
const FORWARDED: [i32; 7] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
];

fn cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor number; fails harmlessly if it is not open.
    let r = unsafe { libc::fcntl(fd, libc::F_SETFD, if on { libc::FD_CLOEXEC } else { 0 }) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn owned(fd: Option<RawFd>) -> io::Result<Option<OwnedFd>> {
    match fd {
        None => Ok(None),
        Some(fd) => {
            cloexec(fd, true)?;
            // SAFETY: the descriptor was handed to us on the command line, ours alone.
            Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
        }
    }
}

fn raw(fd: &Option<OwnedFd>) -> Option<RawFd> {
    use std::os::fd::AsRawFd;
    fd.as_ref().map(|f| f.as_raw_fd())
}

fn monotonic_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into a timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Reads once into `buf`'s spare capacity, replacing its contents; None at the end of
/// the stream (EOF, or EIO from a pty whose slave is gone); Some(0) when nothing is
/// there.
fn read_fd(fd: RawFd, buf: &mut Vec<u8>) -> Option<usize> {
    buf.clear();
    loop {
        // SAFETY: read(2) into the vector's allocation, of its capacity.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.capacity()) };
        if n > 0 {
            // SAFETY: read(2) initialised the first n bytes (n <= capacity).
            unsafe { buf.set_len(n as usize) };
            return Some(n as usize);
        }
        if n == 0 {
            return None;
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EAGAIN) => return Some(0),
            _ => return None,
        }
    }
}

/// Writes all of `data` to `fd` (a pty master), giving up on an error.
fn write_all_fd(fd: RawFd, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: write(2) from a buffer we own.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n > 0 {
            data = &data[n as usize..];
        } else if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        } else {
            return;
        }
    }
}

/// Writes what the non-blocking stdin pipe takes of `pending`; false once it is
/// unusable (the container closed its end).
fn feed_stdin(fd: RawFd, pending: &mut Vec<u8>) -> bool {
    while !pending.is_empty() {
        // SAFETY: write(2) from a buffer we own.
        let n = unsafe { libc::write(fd, pending.as_ptr().cast(), pending.len()) };
        if n >= 0 {
            pending.drain(..n as usize);
            continue;
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EAGAIN) => return true,
            _ => return false,
        }
    }
    true
}

fn exit_code(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    }
}

fn signal_fd() -> io::Result<OwnedFd> {
    // SAFETY: sigset_t manipulation on a set we own, then sigprocmask and signalfd.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        for signal in FORWARDED {
            libc::sigaddset(&mut set, signal);
        }
        if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// The signals queued on the signalfd.
fn read_signals(fd: RawFd) -> Vec<i32> {
    let mut signals = Vec::new();
    loop {
        // SAFETY: signalfd_siginfo is plain data; read(2) fills it.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: read(2) into the struct above, of its size.
        let n = unsafe { libc::read(fd, (&mut info as *mut libc::signalfd_siginfo).cast(), size) };
        if n as usize != size {
            return signals;
        }
        signals.push(info.ssi_signo as i32);
    }
}

fn kill(pid: i32, signal: i32) {
    // SAFETY: kill(2); the init is our unreaped child, so its pid is not reused.
    unsafe { libc::kill(pid, signal) };
}

/// The healthcheck of this run: `mycontainer supervise-health` each interval, one at a
/// time; it records the result and acts on it.
fn spawn_health(args: &Args) -> Option<i32> {
    let since = monotonic_ms().saturating_sub(args.began_ms);
    let child = Command::new(&args.exe)
        .arg("--root")
        .arg(&args.root)
        .arg("supervise-health")
        .arg(since.to_string())
        .arg(&args.id)
        .env_remove("MYCONTAINER_ROOT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    // Reaped by the SIGCHLD loop (waitpid(-1)), not through `child`.
    Some(child.id() as i32)
}

/// Relays until the container's init has exited and its output is drained, then
/// execs the full binary; returns only if that exec failed.
pub fn run(args: &Args) -> io::Error {
    match relay(args) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

enum Never {}

fn relay(args: &Args) -> io::Result<Never> {
    cloexec(args.lock_fd, true)?;
    cloexec(args.listen_fd, true)?;
    let signals = signal_fd()?;
    let sig_fd = {
        use std::os::fd::AsRawFd;
        signals.as_raw_fd()
    };
    // SAFETY: handed to us on the command line, ours alone.
    let listener = unsafe { UnixListener::from_raw_fd(args.listen_fd) };
    let mut out = owned(args.out_fd)?;
    let mut err = owned(args.err_fd)?;
    let mut master = owned(args.master_fd)?;
    let mut stdin = owned(args.stdin_fd)?;
    let tty = master.is_some();
    let mut server = Server::new(listener, tty, args.open_stdin);
    let mut log = LogWriter::new(&args.log).with_rotation(Some(Rotation {
        max_size: args.max_size,
        max_files: args.max_files,
    }));
    let pid = args.pid;
    let interval = Duration::from_millis(args.health_ms);
    let mut next_health = (args.health_ms > 0).then(|| Instant::now() + interval);
    let mut health_pid: Option<i32> = None;
    let mut status: Option<i32> = None;
    let mut deadline: Option<Instant> = None;
    // After the exit: what each stream (out, err, master) still owes of what was in it
    // then, and, once nothing is owed, how long to wait for the streams' ends.
    let mut owed = [0usize; 3];
    let mut pty_behind = PTY_BEHIND;
    let mut drain_until: Option<Instant> = None;
    let mut pending: Vec<u8> = Vec::new();
    // Not zeroed: pages are touched only as output fills them.
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    // A SIGCHLD may have come before the signalfd existed (while we were exec'd).
    let mut reap_now = true;
    crate::trim::release_startup_pages();
    loop {
        if status.is_some() || (!args.open_stdin && pending.is_empty()) {
            stdin = None;
        }
        if reap_now {
            reap_now = false;
            loop {
                let mut wstatus = 0;
                // SAFETY: waitpid(2) for any child, without blocking.
                let reaped = unsafe { libc::waitpid(-1, &mut wstatus, libc::WNOHANG) };
                if reaped <= 0 {
                    break;
                }
                if reaped == pid && status.is_none() {
                    status = Some(exit_code(wstatus));
                    for (slot, fd) in [raw(&out), raw(&err), raw(&master)].into_iter().enumerate() {
                        owed[slot] = fd.map_or(0, waiting_bytes);
                    }
                } else if Some(reaped) == health_pid {
                    health_pid = None;
                    next_health = Some(Instant::now() + interval);
                }
            }
        }
        if status.is_some() && out.is_none() && err.is_none() && master.is_none() {
            break;
        }
        if status.is_some() && drain_until.is_none() && owed.iter().all(|n| *n == 0) {
            // A pty's count covers what its line discipline holds, not the buffer behind
            // it: owed until it is seen empty, up to PTY_BEHIND more.
            if let Some(fd) = raw(&master).filter(|fd| pty_behind > 0 && readable_now(*fd)) {
                owed[2] = waiting_bytes(fd).clamp(1, pty_behind);
                pty_behind -= owed[2];
            }
            if owed.iter().all(|n| *n == 0) {
                drain_until = Some(Instant::now() + DRAIN_TIMEOUT);
            }
        }
        // An attached client too far behind holds the output back (the container waits
        // in its writes, as with Docker's attach) until it catches up or stalls.
        let held = server.behind();
        // Poll slots: 0 signalfd, 1 out, 2 err, 3 master, 4 stdin pipe, then the server.
        let streams = [raw(&out), raw(&err), raw(&master)];
        let mut pollfds = vec![libc::pollfd {
            fd: sig_fd,
            events: libc::POLLIN,
            revents: 0,
        }];
        for fd in streams {
            pollfds.push(libc::pollfd {
                fd: fd.filter(|_| !held).unwrap_or(-1),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        pollfds.push(libc::pollfd {
            fd: raw(&stdin).filter(|_| !pending.is_empty()).unwrap_or(-1),
            events: libc::POLLOUT,
            revents: 0,
        });
        let server_at = pollfds.len();
        let take_input = status.is_none() && pending.is_empty();
        for (fd, events) in server.poll_fds(take_input) {
            pollfds.push(libc::pollfd {
                fd,
                events,
                revents: 0,
            });
        }
        let now = Instant::now();
        let wake = match status {
            Some(_) => drain_until,
            None => [deadline, next_health.filter(|_| health_pid.is_none())]
                .into_iter()
                .flatten()
                .min(),
        };
        let wake = [wake, server.stall_deadline()].into_iter().flatten().min();
        let timeout = wake.map_or(-1, |t| {
            t.saturating_duration_since(now)
                .as_millis()
                .min(i32::MAX as u128) as i32
        });
        // SAFETY: poll(2) over the array above, of its length.
        let n = unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        let revents: Vec<i16> = pollfds.iter().map(|p| p.revents).collect();
        for request in server.handle(&revents[server_at..]) {
            match request {
                Request::Input(data) if status.is_none() => {
                    if let Some(master) = raw(&master).filter(|_| args.open_stdin) {
                        write_all_fd(master, &data);
                    } else if let Some(pipe) = raw(&stdin) {
                        pending.extend_from_slice(&data);
                        if !feed_stdin(pipe, &mut pending) {
                            pending.clear();
                            stdin = None;
                        }
                    }
                }
                Request::Resize(rows, cols) => {
                    if let Some(master) = raw(&master) {
                        let size = libc::winsize {
                            ws_row: rows,
                            ws_col: cols,
                            ws_xpixel: 0,
                            ws_ypixel: 0,
                        };
                        // SAFETY: TIOCSWINSZ reads the winsize we own.
                        unsafe { libc::ioctl(master, libc::TIOCSWINSZ, &size) };
                    }
                }
                Request::Signal(signal) if status.is_none() && signal > 0 && signal < 65 => {
                    kill(pid, signal)
                }
                _ => {}
            }
        }
        let now = Instant::now();
        server.drop_stalled(now);
        if status.is_some() && drain_until.is_some_and(|t| now >= t) {
            // Something outside the container's pid namespace holds the output open.
            break;
        }
        if status.is_none() && deadline.is_some_and(|t| now >= t) {
            kill(pid, libc::SIGKILL);
            deadline = None;
        }
        if status.is_none() && health_pid.is_none() && next_health.is_some_and(|t| now >= t) {
            health_pid = spawn_health(args);
            next_health = match health_pid {
                Some(_) => None,
                None => Some(now + interval),
            };
        }
        if revents[0] != 0 {
            for signal in read_signals(sig_fd) {
                if signal == libc::SIGCHLD {
                    reap_now = true;
                    continue;
                }
                if status.is_some() || (signal == libc::SIGWINCH && master.is_some()) {
                    continue;
                }
                kill(pid, signal);
                if (signal == libc::SIGTERM || signal == libc::SIGINT) && deadline.is_none() {
                    deadline = Some(Instant::now() + Duration::from_secs(args.stop_timeout_s));
                }
            }
        }
        if revents[4] != 0 {
            if let Some(pipe) = raw(&stdin) {
                if !feed_stdin(pipe, &mut pending) {
                    pending.clear();
                    stdin = None;
                }
            }
        }
        for (slot, fd) in streams.into_iter().enumerate() {
            let Some(fd) = fd.filter(|_| revents[slot + 1] != 0) else {
                continue;
            };
            match read_fd(fd, &mut buf) {
                Some(0) => owed[slot] = 0,
                Some(n) => {
                    owed[slot] = owed[slot].saturating_sub(n);
                    let is_err = slot == 1;
                    server.broadcast(is_err, &buf[..n]);
                    let stream = if is_err {
                        Stream::Stderr
                    } else {
                        Stream::Stdout
                    };
                    let _ = log.write(stream, &buf[..n]);
                }
                None => {
                    owed[slot] = 0;
                    match slot {
                        0 => out = None,
                        1 => err = None,
                        _ => master = None,
                    }
                }
            }
        }
    }
    let code = match status {
        Some(code) => code,
        None => wait(pid),
    };
    if let Some(health) = health_pid {
        wait(health);
    }
    drop(log);
    resume(args, code, server)
}

fn wait(pid: i32) -> i32 {
    loop {
        let mut wstatus = 0;
        // SAFETY: waitpid(2) on our own child.
        let r = unsafe { libc::waitpid(pid, &mut wstatus, 0) };
        if r == pid {
            return exit_code(wstatus);
        }
        if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return 255;
        }
    }
}

/// Back to the full binary: `mycontainer --root R supervise --lock-fd L --resume CODE
/// BEGAN_MS BACKOFF_MS LISTEN_FD CLIENT_FDS ID`.
fn resume(args: &Args, code: i32, server: Server) -> io::Result<Never> {
    let (listen_fd, clients) = server.into_fds();
    for fd in [args.lock_fd, listen_fd].iter().chain(&clients) {
        cloexec(*fd, false)?;
    }
    let clients = if clients.is_empty() {
        "-".to_string()
    } else {
        clients
            .iter()
            .map(|fd| fd.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let argv: Vec<OsString> = vec![
        "--root".into(),
        args.root.clone().into(),
        "supervise".into(),
        "--lock-fd".into(),
        args.lock_fd.to_string().into(),
        "--resume".into(),
        code.to_string().into(),
        args.began_ms.to_string().into(),
        args.backoff_ms.to_string().into(),
        listen_fd.to_string().into(),
        clients.into(),
        args.id.clone().into(),
    ];
    Err(Command::new(&args.exe)
        .args(argv)
        .env_remove("MYCONTAINER_ROOT")
        .exec())
}
