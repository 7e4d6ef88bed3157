//! The attach socket's server (the protocol of src/runtime/attach.rs, whose client is
//! `mycontainer attach`): frames of one byte of kind, four of length (big endian), the
//! payload. Output goes to every client, input comes from any; while a client is
//! `MAX_BACKLOG` behind, the relay holds the output back (as Docker's attach slows the
//! container to its slowest client), and a client that takes nothing for
//! `STALLED_CLIENT` meanwhile is dropped.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Instant;

use crate::attach_frames::{
    frame, FLAG_OPEN_STDIN, FLAG_TTY, HELLO, MAX_FRAME, RESIZE, SIGNAL, STDERR, STDIN, STDOUT,
};

/// While a client is this far behind, no more output is read.
const MAX_BACKLOG: usize = 4 << 20;

pub enum Request {
    Input(Vec<u8>),
    Resize(u16, u16),
    Signal(i32),
}

struct Client {
    sock: UnixStream,
    input: Vec<u8>,
    backlog: Vec<u8>,
    /// When it last took output (or had none waiting).
    progress: Instant,
}

impl Client {
    fn behind(&self) -> bool {
        self.backlog.len() > MAX_BACKLOG
    }
}

pub struct Server {
    listener: UnixListener,
    clients: Vec<Client>,
    hello: u8,
}

impl Server {
    pub fn new(listener: UnixListener, tty: bool, open_stdin: bool) -> Server {
        let _ = listener.set_nonblocking(true);
        Server {
            listener,
            clients: Vec::new(),
            hello: (if tty { FLAG_TTY } else { 0 })
                | (if open_stdin { FLAG_OPEN_STDIN } else { 0 }),
        }
    }

    /// The descriptors to poll and their events: the listener, then each client.
    pub fn poll_fds(&self, take_input: bool) -> Vec<(RawFd, i16)> {
        let mut fds = vec![(self.listener.as_raw_fd(), libc::POLLIN)];
        for client in &self.clients {
            let mut events = 0;
            if take_input {
                events |= libc::POLLIN;
            }
            if !client.backlog.is_empty() {
                events |= libc::POLLOUT;
            }
            fds.push((client.sock.as_raw_fd(), events));
        }
        fds
    }

    /// Acts on the events polled for `poll_fds` (same order).
    pub fn handle(&mut self, revents: &[i16]) -> Vec<Request> {
        let mut requests = Vec::new();
        let mut gone = vec![false; self.clients.len()];
        for (index, client) in self.clients.iter_mut().enumerate() {
            let Some(&events) = revents.get(index + 1) else {
                continue;
            };
            if events & libc::POLLOUT != 0 && !flush(client) {
                gone[index] = true;
                continue;
            }
            if events & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
                && !receive(client, &mut requests)
            {
                gone[index] = true;
            }
        }
        let mut index = 0;
        self.clients.retain(|_| {
            index += 1;
            !gone[index - 1]
        });
        if revents.first().is_some_and(|e| e & libc::POLLIN != 0) {
            while let Ok((sock, _)) = self.listener.accept() {
                if sock.set_nonblocking(true).is_err() {
                    continue;
                }
                let mut client = Client {
                    sock,
                    input: Vec::new(),
                    backlog: frame(HELLO, &[self.hello]),
                    progress: Instant::now(),
                };
                if flush(&mut client) {
                    self.clients.push(client);
                }
            }
        }
        requests
    }

    pub fn broadcast(&mut self, stderr: bool, data: &[u8]) {
        let bytes = frame(if stderr { STDERR } else { STDOUT }, data);
        self.clients.retain_mut(|client| {
            if client.backlog.is_empty() {
                client.progress = Instant::now();
            }
            client.backlog.extend_from_slice(&bytes);
            flush(client)
        });
    }

    /// Some client is so far behind that no more output should be read for now.
    pub fn behind(&self) -> bool {
        self.clients.iter().any(Client::behind)
    }

    /// When the first client that is behind counts as stalled, if it takes nothing.
    pub fn stall_deadline(&self) -> Option<Instant> {
        self.clients
            .iter()
            .filter(|c| c.behind())
            .map(|c| c.progress + crate::attach_frames::STALLED_CLIENT)
            .min()
    }

    /// Drops the clients behind that took nothing for `STALLED_CLIENT` (a suspended
    /// `attach`, a terminal held by ctrl-s): the container goes on without them.
    pub fn drop_stalled(&mut self, now: Instant) {
        self.clients
            .retain(|c| !(c.behind() && now >= c.progress + crate::attach_frames::STALLED_CLIENT));
    }

    /// Hands the listener and the clients on (to `mycontainer supervise --resume`, which
    /// tells them the exit code once it is recorded): what each client has not taken
    /// yet is sent first (see `STALLED_CLIENT` for one that takes nothing).
    pub fn into_fds(self) -> (RawFd, Vec<RawFd>) {
        let mut clients = Vec::new();
        for mut client in self.clients {
            if client.sock.set_nonblocking(false).is_ok()
                && client
                    .sock
                    .set_write_timeout(Some(crate::attach_frames::STALLED_CLIENT))
                    .is_ok()
                && client.sock.write_all(&client.backlog).is_ok()
            {
                clients.push(client.sock.into_raw_fd());
            }
        }
        (self.listener.into_raw_fd(), clients)
    }
}

fn flush(client: &mut Client) -> bool {
    while !client.backlog.is_empty() {
        match client.sock.write(&client.backlog) {
            Ok(0) => return false,
            Ok(n) => {
                client.backlog.drain(..n);
                client.progress = Instant::now();
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

fn receive(client: &mut Client, requests: &mut Vec<Request>) -> bool {
    let mut buf = [0u8; 16 * 1024];
    let alive = loop {
        match client.sock.read(&mut buf) {
            Ok(0) => break false,
            Ok(n) => client.input.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break false,
        }
    };
    let input = &mut client.input;
    let mut at = 0;
    while input.len() - at >= 5 {
        let len = u32::from_be_bytes([input[at + 1], input[at + 2], input[at + 3], input[at + 4]])
            as usize;
        if len > MAX_FRAME {
            return false;
        }
        if input.len() - at - 5 < len {
            break;
        }
        let (kind, payload) = (input[at], &input[at + 5..at + 5 + len]);
        match (kind, payload.len()) {
            (STDIN, _) => requests.push(Request::Input(payload.to_vec())),
            (RESIZE, 4) => requests.push(Request::Resize(
                u16::from_be_bytes([payload[0], payload[1]]),
                u16::from_be_bytes([payload[2], payload[3]]),
            )),
            (SIGNAL, 4) => requests.push(Request::Signal(i32::from_be_bytes([
                payload[0], payload[1], payload[2], payload[3],
            ]))),
            _ => return false,
        }
        at += 5 + len;
    }
    input.drain(..at);
    alive
}
