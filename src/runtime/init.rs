//! `--init`: a tiny PID 1 of our own (Docker's `--init`). The container's first process
//! forks before exec: the child becomes the command (PID 2), the parent stays as init,
//! forwarding the CLI's signals to the command and reaping every zombie. It is our code
//! but never a re-exec of our binary, so nothing of the runtime binary is reachable from
//! the container through an exec (CVE-2019-5736); it also makes itself non-dumpable.
//! Everything here is async-signal-safe: it runs in the child of a clone; the title
//! (see [`Title`]) is prepared by the parent.

use std::ffi::CString;

/// The command line our init shows in /proc/1/cmdline. Init is the CLI forked, so its
/// argv area still holds the host's command line (volume paths, the state root), which
/// every process of the container can read. The parent finds that area (fields
/// arg_start and arg_end of /proc/self/stat) and prepares `mycontainer-init -- CMD...`
/// cut or padded with NULs to its exact length; init copies it over the area.
/// (PR_SET_MM would move the area instead, but needs CAP_SYS_RESOURCE.)
pub struct Title {
    start: usize,
    bytes: Vec<u8>,
}

impl Title {
    pub fn prepare(command: &[CString]) -> anyhow::Result<Title> {
        let stat = std::fs::read_to_string("/proc/self/stat")
            .map_err(|e| anyhow::anyhow!("cannot read /proc/self/stat: {e}"))?;
        let (start, end) = argv_area(&stat)
            .ok_or_else(|| anyhow::anyhow!("cannot find the argv area in /proc/self/stat"))?;
        let mut bytes = b"mycontainer-init\0--\0".to_vec();
        for arg in command {
            bytes.extend_from_slice(arg.as_bytes_with_nul());
        }
        bytes.resize(end - start, 0);
        // The kernel reads past arg_end when the area's last byte is not a NUL.
        if let Some(last) = bytes.last_mut() {
            *last = 0;
        }
        Ok(Title { start, bytes })
    }

    /// Writes the title over this process's argv area (allocation-free).
    pub fn apply(&self) {
        // SAFETY: the area [start, start + len) is this process's argv strings on its
        // initial stack, as the kernel reported it to the parent we are a fork-like
        // copy of (no CLONE_VM: writing here changes only our own copy). It is
        // writable, and no Rust reference points into it: std keeps the raw argv
        // pointers and reads them only in env::args, which init never calls.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.bytes.as_ptr(),
                self.start as *mut u8,
                self.bytes.len(),
            );
        }
    }
}

/// arg_start and arg_end (fields 48 and 49) of a /proc/PID/stat line. The second field
/// (comm) may hold spaces and parentheses: fields are counted after its last `)`.
fn argv_area(stat: &str) -> Option<(usize, usize)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(48 - 3);
    let start: usize = fields.next()?.parse().ok()?;
    let end: usize = fields.next()?.parse().ok()?;
    (start > 0 && end > start).then_some((start, end))
}

/// Our `--init`: PID 1 that forwards the CLI's signals to the command and reaps every
/// zombie, exiting with the command's status. It never execs; the caller has named it,
/// made it non-dumpable (its /proc/1/exe is our binary), closed every inherited
/// descriptor and confined it like the command.
pub fn run(worker: libc::pid_t, signals: &libc::sigset_t) -> ! {
    // SAFETY: raw syscalls on our own process; sigwaitinfo writes into a null info.
    unsafe {
        loop {
            let signal = libc::sigwaitinfo(signals, std::ptr::null_mut());
            if signal < 0 && *libc::__errno_location() != libc::EINTR {
                // Cannot wait for signals (a seccomp profile without rt_sigtimedwait):
                // end the container rather than spin.
                libc::kill(worker, libc::SIGKILL);
                libc::_exit(crate::exitcode::KILLED);
            }
            if signal == libc::SIGCHLD {
                loop {
                    let mut status = 0;
                    let pid = libc::waitpid(-1, &mut status, libc::WNOHANG);
                    if pid <= 0 {
                        break;
                    }
                    if pid == worker {
                        libc::_exit(crate::exitcode::from_wait_status(status));
                    }
                }
            } else if signal > 0 {
                libc::kill(worker, signal);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_argv_area_after_a_comm_with_spaces_and_parens() {
        let mut stat = String::from("42 (a) b) S");
        for field in 4..=52 {
            stat.push_str(&format!(" {field}"));
        }
        assert_eq!(argv_area(&stat), Some((48, 49)));
        assert_eq!(argv_area("42 (x) S 1 2"), None);
    }

    #[test]
    fn the_title_fills_the_area_exactly_and_ends_with_a_nul() {
        let title = Title::prepare(&[c"sh".into(), c"-c".into()]).unwrap();
        let own = std::fs::read("/proc/self/cmdline").unwrap();
        assert_eq!(title.bytes.len(), own.len());
        assert_eq!(title.bytes.last(), Some(&0));
        let shown = b"mycontainer-init\0--\0sh\0-c\0";
        let n = shown.len().min(own.len() - 1);
        assert_eq!(&title.bytes[..n], &shown[..n]);
    }
}
