//! `--init`: a tiny PID 1 of our own (Docker's `--init`). The container's first process
//! forks before exec: the child becomes the command (PID 2), the parent stays as init,
//! forwarding the CLI's signals to the command and reaping every zombie. It is our code
//! but never a re-exec of our binary, so nothing of the runtime binary is reachable from
//! the container through an exec (CVE-2019-5736); it also makes itself non-dumpable.
//! Everything here is async-signal-safe: it runs in the child of a clone.

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
