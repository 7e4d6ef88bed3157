//! Attaching to a supervised process's stdio through a unix socket (as conmon's attach
//! socket): the server side lives in the relay loop (output to every client as it goes
//! to the log, input from any client, resizes and signals from them), the client side
//! is `attach`'s loop. Frames both ways: one byte of kind, four of length (big endian),
//! then the payload.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};

use anyhow::{bail, Context};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd;

use super::pty;

use super::attach_frames::{
    frame, EXIT, FLAG_OPEN_STDIN, FLAG_TTY, HELLO, MAX_FRAME, RESIZE, SIGNAL, STDERR, STDIN, STDOUT,
};

/// Takes the complete frames off the front of `buf`; None when the peer sent garbage.
fn take_frames(buf: &mut Vec<u8>) -> Option<Vec<(u8, Vec<u8>)>> {
    let mut frames = Vec::new();
    let mut at = 0;
    while buf.len() - at >= 5 {
        let len = u32::from_be_bytes([buf[at + 1], buf[at + 2], buf[at + 3], buf[at + 4]]) as usize;
        if len > MAX_FRAME {
            return None;
        }
        if buf.len() - at - 5 < len {
            break;
        }
        frames.push((buf[at], buf[at + 5..at + 5 + len].to_vec()));
        at += 5 + len;
    }
    buf.drain(..at);
    Some(frames)
}

struct Client {
    sock: UnixStream,
    backlog: Vec<u8>,
}

/// The attach socket's server side in this binary: the listener (kept across the runs
/// of a restarting container) and, after a run the small supervisor relayed (it serves
/// the clients meanwhile, src/supervisor/server.rs), the clients still attached.
pub struct Server {
    listener: UnixListener,
    clients: Vec<Client>,
}

impl Server {
    /// Serves `listener` (bound by the caller, non-blocking here).
    pub fn new(listener: UnixListener) -> anyhow::Result<Server> {
        listener
            .set_nonblocking(true)
            .context("cannot make the attach socket non-blocking")?;
        Ok(Server {
            listener,
            clients: Vec::new(),
        })
    }

    /// The server of a run the small supervisor relayed: its listener and the clients
    /// still attached, who get the exit code (`end`).
    pub fn resumed(
        listener: UnixListener,
        clients: Vec<std::os::fd::OwnedFd>,
    ) -> anyhow::Result<Server> {
        let mut server = Server::new(listener)?;
        server.clients = clients
            .into_iter()
            .map(|fd| Client {
                sock: UnixStream::from(fd),
                backlog: Vec::new(),
            })
            .collect();
        Ok(server)
    }

    /// The listener, to hand over to the small supervisor.
    pub fn listener_fd(&self) -> std::os::fd::RawFd {
        self.listener.as_raw_fd()
    }

    /// The run ended with `exit_code`: tells the clients (see `STALLED_CLIENT`) and
    /// lets them go. The listener stays for the next run.
    pub fn end(&mut self, exit_code: i32) {
        for mut client in self.clients.drain(..) {
            client
                .backlog
                .extend_from_slice(&frame(EXIT, &exit_code.to_be_bytes()));
            if client.sock.set_nonblocking(false).is_ok()
                && client
                    .sock
                    .set_write_timeout(Some(super::attach_frames::STALLED_CLIENT))
                    .is_ok()
            {
                let _ = client.sock.write_all(&client.backlog);
            }
        }
    }
}

/// What `attach` asks of its session.
pub struct ClientOptions {
    /// The sequence that detaches (empty: none).
    pub detach_keys: Vec<u8>,
    /// Forward our signals to the process (only without a terminal, as Docker).
    pub sig_proxy: bool,
    /// Send our stdin (when the process has an open one).
    pub stdin: bool,
}

/// How an attach session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientEnd {
    /// The process exited with this code.
    Exited(i32),
    /// The detach keys were typed.
    Detached,
    /// The supervisor went away without saying how the process ended.
    Closed,
}

/// Finds the detach keys in what is typed: bytes that may start them are held until
/// they turn out not to (then passed on).
struct Escape<'a> {
    keys: &'a [u8],
    matched: usize,
}

impl Escape<'_> {
    /// Appends to `out` what goes to the process; true when the keys were typed.
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        for &byte in input {
            if self.keys.is_empty() {
                out.push(byte);
                continue;
            }
            if byte != self.keys[self.matched] {
                out.extend_from_slice(&self.keys[..self.matched]);
                self.matched = 0;
                if byte != self.keys[0] {
                    out.push(byte);
                    continue;
                }
            }
            self.matched += 1;
            if self.matched == self.keys.len() {
                return true;
            }
        }
        false
    }
}

/// Sends a frame; a supervisor that stopped reading (its container ended) is not an
/// error: what it still sends, the exit code above all, is read to the end.
fn send(sock: &mut UnixStream, kind: u8, payload: &[u8]) {
    let _ = sock.write_all(&frame(kind, payload));
}

fn send_size(sock: &mut UnixStream) {
    if let Some(size) = pty::window_size() {
        let mut payload = size.ws_row.to_be_bytes().to_vec();
        payload.extend_from_slice(&size.ws_col.to_be_bytes());
        send(sock, RESIZE, &payload);
    }
}

fn write_out(fd: i32, mut data: &[u8]) {
    // SAFETY: our standard output or error, open for our whole lifetime.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    while !data.is_empty() {
        match unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

/// `attach`'s session on a connected socket: our stdin to the process (the detach keys
/// end it), its output to our stdout/stderr, our window size and signals to it.
pub fn client(mut sock: UnixStream, opts: &ClientOptions) -> anyhow::Result<ClientEnd> {
    let mut input = Vec::new();
    // The hello comes at once, from a live supervisor.
    let hello = loop {
        let mut buf = [0u8; 4096];
        let n = sock
            .read(&mut buf)
            .context("cannot read from the container's attach socket")?;
        if n == 0 {
            return Ok(ClientEnd::Closed);
        }
        input.extend_from_slice(&buf[..n]);
        let Some(mut frames) = take_frames(&mut input) else {
            bail!("the container's supervisor sent garbage on its attach socket");
        };
        if !frames.is_empty() {
            let (kind, payload) = frames.remove(0);
            if kind != HELLO || payload.len() != 1 {
                bail!("the container's supervisor sent garbage on its attach socket");
            }
            // Anything after the hello is output: put back.
            let mut rest = Vec::new();
            for (kind, payload) in frames {
                rest.extend_from_slice(&frame(kind, &payload));
            }
            rest.extend_from_slice(&input);
            input = rest;
            break payload[0];
        }
    };
    let tty = hello & FLAG_TTY != 0;
    let mut read_stdin = opts.stdin && hello & FLAG_OPEN_STDIN != 0;
    // A terminal stays raw while it types into the container's (restored by Drop).
    let _raw = if tty && read_stdin {
        pty::RawMode::enable(0)
    } else {
        None
    };
    let mut signals = SigSet::empty();
    if tty {
        signals.add(Signal::SIGWINCH);
        send_size(&mut sock);
    } else if opts.sig_proxy {
        for signal in super::relay::FORWARDED {
            if *signal != Signal::SIGWINCH {
                signals.add(*signal);
            }
        }
    }
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&signals), None)
        .context("cannot block signals for attach")?;
    let signal_fd = SignalFd::with_flags(&signals, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .context("cannot create a signalfd for attach")?;
    let mut escape = Escape {
        keys: &opts.detach_keys,
        matched: 0,
    };
    let stdin = std::io::stdin();
    let mut buf = vec![0u8; 64 * 1024];
    // Output already read with the hello.
    let mut pending_input = input;
    loop {
        let Some(frames) = take_frames(&mut pending_input) else {
            bail!("the container's supervisor sent garbage on its attach socket");
        };
        for (kind, payload) in frames {
            match kind {
                STDOUT => write_out(1, &payload),
                STDERR => write_out(2, &payload),
                EXIT if payload.len() == 4 => {
                    let code = i32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                    return Ok(ClientEnd::Exited(code));
                }
                _ => bail!("the container's supervisor sent garbage on its attach socket"),
            }
        }
        let mut fds = vec![
            PollFd::new(sock.as_fd(), PollFlags::POLLIN),
            PollFd::new(signal_fd.as_fd(), PollFlags::POLLIN),
        ];
        if read_stdin {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e).context("cannot poll the attach session"),
        }
        let fired: Vec<bool> = fds
            .iter()
            .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if fired[0] {
            match sock.read(&mut buf) {
                Ok(0) => return Ok(ClientEnd::Closed),
                Ok(n) => pending_input.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return Ok(ClientEnd::Closed),
            }
        }
        if fired[1] {
            while let Ok(Some(info)) = signal_fd.read_signal() {
                let signal = info.ssi_signo as i32;
                if signal == libc::SIGWINCH {
                    send_size(&mut sock);
                } else {
                    send(&mut sock, SIGNAL, &signal.to_be_bytes());
                }
            }
        }
        if fired.get(2) == Some(&true) {
            match unistd::read(stdin.as_fd(), &mut buf) {
                Ok(0) => read_stdin = false,
                Ok(n) => {
                    let mut out = Vec::with_capacity(n);
                    let detach = escape.feed(&buf[..n], &mut out);
                    if !out.is_empty() {
                        send(&mut sock, STDIN, &out);
                    }
                    if detach {
                        return Ok(ClientEnd::Detached);
                    }
                }
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(_) => read_stdin = false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_anywhere_come_out_whole() {
        let mut bytes = frame(STDOUT, b"hello");
        bytes.extend_from_slice(&frame(EXIT, &7i32.to_be_bytes()));
        let mut buf = Vec::new();
        let mut seen = Vec::new();
        for byte in bytes {
            buf.push(byte);
            seen.extend(take_frames(&mut buf).unwrap());
        }
        assert_eq!(
            seen,
            vec![
                (STDOUT, b"hello".to_vec()),
                (EXIT, 7i32.to_be_bytes().to_vec())
            ]
        );
        assert!(buf.is_empty());
        let mut huge = vec![STDIN, 0xff, 0xff, 0xff, 0xff];
        assert!(take_frames(&mut huge).is_none());
    }

    #[test]
    fn detach_keys_are_held_then_passed_on_when_they_do_not_complete() {
        let keys = [0x10, 0x11];
        let mut escape = Escape {
            keys: &keys,
            matched: 0,
        };
        let mut out = Vec::new();
        assert!(!escape.feed(b"ab\x10", &mut out));
        assert_eq!(out, b"ab");
        assert!(!escape.feed(b"c\x10", &mut out));
        assert_eq!(out, b"ab\x10c");
        assert!(escape.feed(b"\x11zz", &mut out));
        assert_eq!(out, b"ab\x10c");
        let mut none = Escape {
            keys: &[],
            matched: 0,
        };
        let mut out = Vec::new();
        assert!(!none.feed(b"\x10\x11", &mut out));
        assert_eq!(out, b"\x10\x11");
    }
}
