//! Relaying a started container process until it exits: copies its output to the
//! terminal and the log, feeds it our stdin, forwards our signals, enforces the stop
//! grace period, and collects the exit status. `run` and `exec` both end here.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::SignalFd;
use nix::unistd;

use super::launch::Child;
use super::logfile::{LogWriter, Stream};
use super::process::ChildStdio;
use super::pty;

/// Signals the CLI passes on to the container (the runtime CLI's `run` too).
pub const FORWARDED: &[Signal] = &[
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// How long a stream may stay open once everything in it when the process exited has
/// been relayed. Whatever the process wrote is relayed however slow the reader (the
/// bytes waiting at its exit are counted and read first); only the wait for the end of
/// stream is bounded, since only a holder that outlives the process can delay it: a
/// background child of an `exec`'d process (the container goes on; `docker exec` waits
/// about 2 s for it too) or a host process holding the pipe. A container's init has no
/// such holder: every container relayed here has its own pid namespace, whose rest the
/// kernel has killed when the init is reaped, so the streams end as soon as they are
/// read. (The runtime CLI relays no init: its container writes to the caller's stdio,
/// and without a pid namespace its rest is killed before the init is reaped, see
/// `cli/oci/verbs.rs` `run`.)
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// How much a pty may still hold behind its line discipline's count (its buffer's limit
/// is 64 KiB, plus what the line discipline takes): owed at most this much more, so a
/// holder that keeps writing cannot keep the drain going.
const PTY_BEHIND: usize = 256 * 1024;

/// The bytes waiting to be read in a pipe or a pty master (FIONREAD); 0 when unknown.
fn waiting_bytes(fd: BorrowedFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into `n`, which we own.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) };
    if r < 0 {
        0
    } else {
        n.max(0) as usize
    }
}

/// How a run ended.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Docker's convention: the command's code, 128+N for signal N, 126/127 when the
    /// command could not be executed / was not found.
    pub exit_code: i32,
    pub oom_killed: bool,
    pub memory_limit: Option<u64>,
    /// Why the command did not start (126/127), one line.
    pub exec_error: Option<String>,
    /// The grace period after SIGTERM/SIGINT ran out and the container was killed.
    pub killed_after_timeout: bool,
    /// The runtime removed the container's cgroup: whoever removes the record next need
    /// not look for it again.
    pub cgroup_removed: bool,
}

/// Blocks the forwarded signals (and SIGCHLD) so they queue on a signalfd instead of
/// killing the CLI. They stay blocked after the run: a SIGINT arriving while we clean up
/// must not kill us halfway through removing the cgroup or the container directory (the
/// CLI exits right after the run anyway).
pub(super) struct BlockedSignals {
    pub(super) set: SigSet,
}

impl BlockedSignals {
    pub(super) fn block() -> anyhow::Result<BlockedSignals> {
        let mut set = SigSet::empty();
        for signal in FORWARDED {
            set.add(*signal);
        }
        set.add(Signal::SIGCHLD);
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
            .context("cannot block signals for the run")?;
        Ok(BlockedSignals { set })
    }
}

fn pipe() -> anyhow::Result<(OwnedFd, OwnedFd)> {
    unistd::pipe2(OFlag::O_CLOEXEC)
        .context("cannot create a pipe for the container's standard streams")
}

fn open_null() -> anyhow::Result<OwnedFd> {
    let null = std::fs::File::open("/dev/null")
        .context("cannot open /dev/null for the container's stdin")?;
    Ok(null.into())
}

/// The container's standard streams: what the child puts on 0, 1 and 2 (and the ends it
/// holds, to close in the parent after the clone), and our side of them. Never one of
/// our own descriptors: a process left in the container (exec's, say) could otherwise
/// read the caller's terminal or write to its files after we are gone. With a pty
/// (`terminal`) the child opens it, holding /dev/null until then, and sends us the
/// master; else pipes: stdin from /dev/null, or with `interactive` a pipe we copy our
/// stdin into; output and errors into pipes we copy out.
pub(super) fn container_stdio(
    terminal: bool,
    interactive: bool,
) -> anyhow::Result<(ChildStdio, Vec<OwnedFd>, Streams)> {
    let mut streams = Streams {
        out: None,
        err: None,
        master: None,
        stdin: None,
        stdin_open: interactive,
    };
    if terminal {
        let null = open_null()?;
        let stdio = ChildStdio::Terminal {
            size: pty::window_size(),
            null: null.as_raw_fd(),
        };
        return Ok((stdio, vec![null], streams));
    }
    let stdin = if interactive {
        let (read, write) = pipe()?;
        // Ours only (the child's end is another open file): a command that does not
        // read must not stall the copying of its output.
        fcntl(&write, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
            .context("cannot make the container's stdin pipe non-blocking")?;
        streams.stdin = Some(write);
        read
    } else {
        open_null()?
    };
    let (out_read, out_write) = pipe()?;
    let (err_read, err_write) = pipe()?;
    let stdio = ChildStdio::Fds([
        stdin.as_raw_fd(),
        out_write.as_raw_fd(),
        err_write.as_raw_fd(),
    ]);
    streams.out = Some(out_read);
    streams.err = Some(err_read);
    Ok((stdio, vec![stdin, out_write, err_write], streams))
}

/// The container's standard streams for a runtime CLI `create`: our own 0, 1 and 2, which
/// the caller (containerd's shim) opened for the container, or with a pty (`terminal`)
/// the one the child opens, whose master goes to the caller. Nothing is relayed.
pub(super) fn inherited_stdio(
    terminal: bool,
) -> anyhow::Result<(ChildStdio, Vec<OwnedFd>, Streams)> {
    let streams = Streams {
        out: None,
        err: None,
        master: None,
        stdin: None,
        stdin_open: false,
    };
    if terminal {
        let null = open_null()?;
        let stdio = ChildStdio::Terminal {
            size: None,
            null: null.as_raw_fd(),
        };
        return Ok((stdio, vec![null], streams));
    }
    Ok((ChildStdio::Fds([0, 1, 2]), Vec::new(), streams))
}

/// Writes everything to one of our descriptors, ignoring a closed terminal.
fn write_all_fd(fd: BorrowedFd, mut data: &[u8]) {
    while !data.is_empty() {
        match unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

/// Reads once; `None` at end of stream (EOF, or EIO from a pty whose slave is gone).
fn read_fd(fd: BorrowedFd, buf: &mut [u8]) -> Option<usize> {
    loop {
        match unistd::read(fd, buf) {
            Ok(0) => return None,
            Ok(n) => return Some(n),
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => return Some(0),
            Err(_) => return None,
        }
    }
}

/// Our side of the container's standard streams (see `container_stdio`).
pub(super) struct Streams {
    pub(super) out: Option<OwnedFd>,
    pub(super) err: Option<OwnedFd>,
    pub(super) master: Option<OwnedFd>,
    /// The container's stdin pipe (`-i` without `-t`), non-blocking.
    pub(super) stdin: Option<OwnedFd>,
    /// Copy our stdin into the pty master or the stdin pipe (`-i`), until its end.
    pub(super) stdin_open: bool,
}

/// Writes what it can of `pending` into the container's stdin pipe without blocking;
/// false once the pipe is unusable (the container closed its end).
fn feed_stdin(pipe: BorrowedFd, pending: &mut Vec<u8>) -> bool {
    while !pending.is_empty() {
        match unistd::write(pipe, pending) {
            Ok(n) => {
                pending.drain(..n);
            }
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => return true,
            Err(_) => return false,
        }
    }
    true
}

pub(super) fn supervise(
    child: &mut Child,
    signal_fd: &SignalFd,
    mut streams: Streams,
    log: &mut Option<LogWriter>,
    stop_timeout: Duration,
) -> Outcome {
    // Our terminal is raw while it feeds the container's pty (`-it`), so keys such as
    // ctrl-c reach the container as bytes; restored when the relay ends.
    let _raw_mode = if streams.master.is_some() && streams.stdin_open {
        pty::RawMode::enable(0)
    } else {
        None
    };
    let mut outcome = Outcome::default();
    let mut status: Option<i32> = None;
    let mut deadline: Option<Instant> = None;
    // After the exit: what each output stream (OUT, ERR, MASTER) still owes of what was
    // in it then, and, once nothing is owed, how long to wait for the streams' ends.
    let mut owed = [0usize; 3];
    let mut pty_behind = PTY_BEHIND;
    let mut drain_until: Option<Instant> = None;
    let mut buf = vec![0u8; 64 * 1024];
    // Stream slots, in poll order after the signalfd.
    const OUT: usize = 0;
    const ERR: usize = 1;
    const MASTER: usize = 2;
    const STDIN: usize = 3;
    // The container's stdin pipe, polled for room while `pending` holds what it did not
    // take yet (our stdin is not read meanwhile).
    const STDIN_PIPE: usize = 4;
    let mut pending: Vec<u8> = Vec::new();
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    loop {
        if status.is_some() || (!streams.stdin_open && pending.is_empty()) {
            // Nobody left to read it, or nothing more to give: the command sees its end.
            streams.stdin = None;
        }
        let relay_to = streams
            .master
            .as_ref()
            .or(streams.stdin.as_ref().filter(|_| pending.is_empty()));
        let open = [
            streams.out.as_ref().map(|f| f.as_fd()),
            streams.err.as_ref().map(|f| f.as_fd()),
            streams.master.as_ref().map(|f| f.as_fd()),
            if streams.stdin_open && relay_to.is_some() && status.is_none() {
                Some(stdin.as_fd())
            } else {
                None
            },
            streams
                .stdin
                .as_ref()
                .filter(|_| !pending.is_empty())
                .map(|f| f.as_fd()),
        ];
        if status.is_some() && open[..3].iter().all(Option::is_none) {
            break;
        }
        if status.is_some() && drain_until.is_none() && owed.iter().all(|n| *n == 0) {
            // A pty's count covers what its line discipline holds, not the buffer
            // behind it: owed until it is seen empty (poll pushes that buffer first),
            // up to PTY_BEHIND more.
            if let Some(master) = streams.master.as_ref().filter(|_| pty_behind > 0) {
                let mut probe = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
                let readable = poll(&mut probe, PollTimeout::ZERO).is_ok_and(|n| n > 0)
                    && probe[0]
                        .revents()
                        .is_some_and(|r| r.contains(PollFlags::POLLIN));
                if readable {
                    owed[MASTER] = waiting_bytes(master.as_fd()).clamp(1, pty_behind);
                    pty_behind -= owed[MASTER];
                }
            }
            if owed.iter().all(|n| *n == 0) {
                drain_until = Some(Instant::now() + DRAIN_TIMEOUT);
            }
        }
        let mut pollfds = vec![PollFd::new(signal_fd.as_fd(), PollFlags::POLLIN)];
        let mut slots = Vec::new();
        for (slot, fd) in open.iter().enumerate() {
            if let Some(fd) = fd {
                let events = if slot == STDIN_PIPE {
                    PollFlags::POLLOUT
                } else {
                    PollFlags::POLLIN
                };
                pollfds.push(PollFd::new(*fd, events));
                slots.push(slot);
            }
        }
        let now = Instant::now();
        let wake = match (status, drain_until, deadline) {
            (Some(_), Some(until), _) => Some(until),
            (None, _, Some(deadline)) => Some(deadline),
            _ => None,
        };
        let timeout = wake.map_or(PollTimeout::NONE, |t| {
            let ms = t
                .saturating_duration_since(now)
                .as_millis()
                .min(i32::MAX as u128) as i32;
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
        });
        match poll(&mut pollfds, timeout) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(_) => break,
        }
        let fired = |p: &PollFd| p.revents().is_some_and(|r| !r.is_empty());
        let signalled = fired(&pollfds[0]);
        // Which streams are ready; each is looked up again below, as handling one may
        // close another.
        let ready: Vec<usize> = pollfds[1..]
            .iter()
            .zip(slots)
            .filter(|(p, _)| fired(p))
            .map(|(_, slot)| slot)
            .collect();
        drop(pollfds);
        let now = Instant::now();
        if status.is_some() && drain_until.is_some_and(|t| now >= t) {
            // What the process wrote is relayed; something that outlives it holds the
            // output open (see DRAIN_TIMEOUT).
            break;
        }
        if status.is_none() && deadline.is_some_and(|t| now >= t) {
            child.kill(Signal::SIGKILL);
            outcome.killed_after_timeout = true;
            deadline = None;
        }
        if signalled {
            while let Ok(Some(info)) = signal_fd.read_signal() {
                let signal = info.ssi_signo as i32;
                if signal == libc::SIGCHLD {
                    continue;
                }
                if status.is_some() {
                    continue;
                }
                if signal == libc::SIGWINCH {
                    if let Some(master) = &streams.master {
                        pty::copy_window_size(
                            if pty::is_terminal(0) { 0 } else { 1 },
                            master.as_raw_fd(),
                        );
                        continue;
                    }
                }
                // Only the forwarded signals are in the signalfd's set.
                if let Ok(signal) = Signal::try_from(signal) {
                    child.kill(signal);
                }
                if (signal == libc::SIGTERM || signal == libc::SIGINT)
                    && deadline.is_none()
                    && !outcome.killed_after_timeout
                {
                    deadline = Some(Instant::now() + stop_timeout);
                }
            }
            if status.is_none() {
                if let Some(code) = child.try_wait() {
                    status = Some(code);
                    for (slot, stream) in [&streams.out, &streams.err, &streams.master]
                        .into_iter()
                        .enumerate()
                    {
                        owed[slot] = stream.as_ref().map_or(0, |f| waiting_bytes(f.as_fd()));
                    }
                }
            }
        }
        for slot in ready {
            if slot == STDIN_PIPE {
                let Some(pipe) = &streams.stdin else {
                    continue;
                };
                if !feed_stdin(pipe.as_fd(), &mut pending) {
                    pending.clear();
                    streams.stdin = None;
                    streams.stdin_open = false;
                }
                continue;
            }
            let fd = match slot {
                OUT => streams.out.as_ref().map(|f| f.as_fd()),
                ERR => streams.err.as_ref().map(|f| f.as_fd()),
                MASTER => streams.master.as_ref().map(|f| f.as_fd()),
                _ => Some(stdin.as_fd()),
            };
            let Some(fd) = fd else {
                continue;
            };
            let data = read_fd(fd, &mut buf);
            match (slot, data) {
                (STDIN, Some(n)) => {
                    if let Some(master) = &streams.master {
                        write_all_fd(master.as_fd(), &buf[..n]);
                    } else if let Some(pipe) = &streams.stdin {
                        pending.extend_from_slice(&buf[..n]);
                        if !feed_stdin(pipe.as_fd(), &mut pending) {
                            pending.clear();
                            streams.stdin = None;
                            streams.stdin_open = false;
                        }
                    }
                }
                (STDIN, None) => streams.stdin_open = false,
                (_, Some(0)) => owed[slot] = 0,
                (_, Some(n)) => {
                    owed[slot] = owed[slot].saturating_sub(n);
                    let (target, stream) = if slot == ERR {
                        (stderr.as_fd(), Stream::Stderr)
                    } else {
                        (stdout.as_fd(), Stream::Stdout)
                    };
                    write_all_fd(target, &buf[..n]);
                    if let Some(log) = log {
                        let _ = log.write(stream, &buf[..n]);
                    }
                }
                (OUT, None) => (streams.out, owed[OUT]) = (None, 0),
                (ERR, None) => (streams.err, owed[ERR]) = (None, 0),
                (MASTER, None) => (streams.master, owed[MASTER]) = (None, 0),
                _ => {}
            }
        }
    }
    outcome.exit_code = match status {
        Some(code) => code,
        None => child.wait(),
    };
    if !child.reaped {
        outcome.exit_code = child.wait();
    }
    outcome
}
