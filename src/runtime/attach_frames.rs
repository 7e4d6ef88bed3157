//! The attach socket's frames, shared by the client and the resumed server
//! (runtime/attach.rs) and the small supervisor's server (src/supervisor/server.rs, which
//! includes this file by path): one byte of kind, four of length (big endian), then the
//! payload.

/// Client -> server: bytes for the process's stdin.
pub const STDIN: u8 = 0;
/// Server -> client: the process's output.
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
/// Server -> client: the process ended; payload its exit code (i32).
pub const EXIT: u8 = 3;
/// Server -> client, first: flags (TTY, OPEN_STDIN).
pub const HELLO: u8 = 4;
/// Client -> server: the window size (rows, cols as u16).
pub const RESIZE: u8 = 5;
/// Client -> server: a signal for the process (i32).
pub const SIGNAL: u8 = 6;

pub const FLAG_TTY: u8 = 1;
pub const FLAG_OPEN_STDIN: u8 = 2;

/// A frame larger than this is a broken peer.
pub const MAX_FRAME: usize = 1 << 20;

/// One frame of `kind` carrying `payload`.
pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}
