//! Exit codes as Docker gives them. Every layer may use this module (it depends on
//! nothing of ours), so the runtime, the container records and the CLI agree on what a
//! code means: 125 the tool failed, 126 the command cannot be executed, 127 it was not
//! found, 128+N it died of signal N, anything else is the command's own code.

/// mycontainer itself failed (bad flags, a setup step, a missing image).
pub const TOOL_FAILED: i32 = 125;

/// A managing verb failed (rm, stop, kill, start, inspect, logs, commit; exec into a
/// missing or stopped container): the docker CLI exits 1 for a daemon's error, and keeps
/// 125 for `run` and `create` failing on their own.
pub const VERB_FAILED: i32 = 1;

/// The command exists but cannot be executed (permissions, bad format).
pub const CANNOT_EXECUTE: i32 = 126;

/// The command was not found.
pub const NOT_FOUND: i32 = 127;

/// Killed by SIGKILL: the OOM killer, `kill -9`, or a supervisor that died (137).
pub const KILLED: i32 = signaled(libc::SIGKILL);

/// The code for a process that died of `signal` (128+N, as a shell reports it; not N
/// itself, which would read as the command's own code).
pub const fn signaled(signal: i32) -> i32 {
    128 + signal
}

/// The code for a `waitpid` status: the exit code, or 128+N for signal N (255 for a
/// status that is neither, which waitpid without WUNTRACED never returns). Only
/// arithmetic: safe in a child between clone and exec.
pub fn from_wait_status(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        signaled(libc::WTERMSIG(status))
    } else {
        255
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_map_to_128_plus_n() {
        assert_eq!(KILLED, 137);
        assert_eq!(signaled(libc::SIGTERM), 143);
        // Wait statuses as the kernel encodes them: exit code in the second byte,
        // terminating signal in the low seven bits.
        assert_eq!(from_wait_status(3 << 8), 3);
        assert_eq!(from_wait_status(libc::SIGKILL), 137);
    }
}
