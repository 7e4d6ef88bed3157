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

/// When a run ends, what a client has not taken yet (and the exit code) is written to
/// it with blocking writes that give up only after this long without any byte taken
/// (SO_SNDTIMEO bounds a write that makes no progress, not the whole): a client that
/// merely waits for a CPU on a busy machine gets all of it; one that is stopped or
/// wedged (a suspended `attach`, a terminal held by ctrl-s) costs this once, and its
/// `attach` then reads the exit code from the record. It was 1 s, which a busy machine
/// reached, and the client lost the end of the output.
pub const STALLED_CLIENT: std::time::Duration = std::time::Duration::from_secs(10);

/// One frame of `kind` carrying `payload`.
pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}
