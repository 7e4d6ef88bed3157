//! A container's last output is never lost: after its init exits, what is still in its
//! pipes is relayed to the end however slow the reader (a consumer that pauses, a
//! supervisor that gets little CPU, an attached client that falls behind). Only a
//! holder that outlives the process (an exec'd command's background child) is waited
//! for with a bound.

mod common;
mod probe;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

/// `probe burst MB`'s stdout: MB MiB of numbered 16-byte lines.
fn burst(mb: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(mb << 20);
    for line in 0..(mb << 20) / 16 {
        out.extend_from_slice(format!("{line:015}\n").as_bytes());
    }
    out
}

/// Where the first difference is, for a readable failure (not the whole megabyte).
fn mismatch(got: &[u8], want: &[u8]) -> String {
    let at = got.iter().zip(want).take_while(|(a, b)| a == b).count();
    format!(
        "got {} bytes, want {}; first difference at byte {at}",
        got.len(),
        want.len()
    )
}

/// A directory shared with the container at /out, and probe installed in its rootfs.
fn setup(w: &World) -> std::path::PathBuf {
    probe::install(&w.rootfs);
    let shared = w.dir.path().join("out");
    std::fs::create_dir(&shared).unwrap();
    shared
}

fn volume(shared: &Path) -> String {
    format!("{}:/out", shared.display())
}

/// Foreground `run`: the container leaves 1 MiB in its stdout pipe (grown to 1 MiB) and
/// exits while the reader of `run`'s stdout pauses 250 ms after each 64 KiB. The relay
/// gave up 2 s after the exit (this run lost about half of the megabyte); it now reads
/// the pipe to its end.
#[test]
fn run_relays_a_final_burst_in_full_to_a_reader_that_pauses() {
    let w = World::new();
    let shared = setup(&w);
    let mut child = w
        .run_cmd(
            &["--rm", "--network", "none", "-v", &volume(&shared)],
            &["probe", "burst", "1", "/out/done"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    // The whole burst is in the container's pipe before the reader takes anything.
    assert!(
        wait_for(60, || shared.join("done").exists()),
        "the container did not write its burst"
    );
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        std::thread::sleep(Duration::from_millis(250));
    }
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(child.wait().unwrap().success(), "{err}");
    let want = burst(1);
    assert!(got == want, "{}", mismatch(&got, &want));
    assert!(err.contains("burst-end"), "{err}");
}

/// Stops and continues a process so that it runs about 2 ms in every 300: a machine so
/// busy that its reader gets little CPU. Continues it when dropped.
struct Throttle {
    pid: i32,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Throttle {
    fn start(pid: i32) -> Throttle {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                // SAFETY: kill(2) on the supervisor this test started.
                unsafe { libc::kill(pid, libc::SIGSTOP) };
                std::thread::sleep(Duration::from_millis(298));
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGCONT) };
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Throttle {
            pid,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Throttle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // SAFETY: as above; the process may be gone, which kill reports harmlessly.
        unsafe { libc::kill(self.pid, libc::SIGCONT) };
    }
}

/// `run -d` + `logs`: the container leaves 1 MiB in its pipe and exits while its
/// supervisor runs 2 ms in every 300. The supervisor stopped reading 2 s after the exit
/// (the log lost most of the megabyte); it now reads to the end, and `logs` has it all.
#[test]
fn logs_keep_a_final_burst_that_a_slowed_supervisor_drains() {
    let w = World::new();
    let shared = setup(&w);
    let id = w.run_detached(
        &[
            "--name",
            "burst-log",
            "--network",
            "none",
            "-v",
            &volume(&shared),
        ],
        &[
            "sh",
            "-c",
            "until [ -e /out/go ]; do sleep 0.05; done; exec probe burst 1 /out/done",
        ],
    );
    let supervisor = w.supervisor_pid(&id);
    let small = || {
        std::fs::read_link(format!("/proc/{supervisor}/exe"))
            .is_ok_and(|exe| exe.ends_with("mycontainer-supervisor"))
    };
    assert!(wait_for(30, small), "the small supervisor never took over");
    let throttle = Throttle::start(supervisor);
    std::fs::write(shared.join("go"), "").unwrap();
    // Slowed while it drains: until it execs the full binary to record the exit.
    let drained = wait_for(300, || !small());
    drop(throttle);
    assert!(drained, "the supervisor did not finish draining");
    let exited = wait_for(60, || {
        w.try_state(&id)
            .is_some_and(|s| s["status"] == "exited" || s["status"] == "stopped")
    });
    assert!(exited, "the container did not end: {:?}", w.try_state(&id));
    let out = w.mc(&["logs", "burst-log"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let want = burst(1);
    assert!(out.stdout == want, "{}", mismatch(&out.stdout, &want));
    assert_eq!(stderr(&out), "burst-end\n");
    assert_eq!(w.state(&id)["exit_code"], 0, "{:?}", w.state(&id));
}

/// `attach`: the container writes 50 MB and exits while the attached client takes
/// nothing for a second, then reads on. The supervisor dropped a client 4 MB behind
/// (attach lost the rest and said so); it now holds the container's output back until
/// the client catches up (as Docker's attach does), so the client gets every byte and
/// the exit code.
#[test]
fn attach_gets_all_of_a_large_final_burst_though_it_pauses() {
    let w = World::new();
    let shared = setup(&w);
    let line = "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopq";
    assert_eq!(line.len() + 1, 64);
    let script = format!(
        "until [ -e /out/go ]; do echo waiting; sleep 0.1; done; \
         yes {line} | head -c 52428800; echo END; exit 3"
    );
    w.run_detached(
        &[
            "--name",
            "burst-attach",
            "--network",
            "none",
            "-v",
            &volume(&shared),
        ],
        &["sh", "-c", &script],
    );
    let mut attach: Child = w
        .cmd()
        .args(["attach", "--no-stdin", "burst-attach"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = attach.stdout.take().unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    // Attached once its output flows.
    while !got.ends_with(b"waiting\n") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "attach ended early: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    std::fs::write(shared.join("go"), "").unwrap();
    // The client takes nothing for a while: far more than 4 MB is written meanwhile
    // unless the container waits for it.
    std::thread::sleep(Duration::from_secs(1));
    stdout.read_to_end(&mut got).unwrap();
    let mut err = String::new();
    attach
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let code = attach.wait().unwrap().code();
    // What follows the last "waiting" line: the 50 MB and END.
    let start = got
        .windows(8)
        .rposition(|w| w == b"waiting\n")
        .map_or(0, |at| at + 8);
    let tail = &got[start..];
    assert_eq!(tail.len(), 52428800 + 4, "attach said: {err}");
    assert!(tail.ends_with(b"END\n"));
    let whole = format!("{line}\n").repeat(52428800 / 64);
    assert!(
        &tail[..52428800] == whole.as_bytes(),
        "{}",
        mismatch(&tail[..52428800], whole.as_bytes())
    );
    assert_eq!(code, Some(3), "{err}");
}

/// The bound: a background child of an exec'd command keeps the output open and never
/// ends, so `exec` returns after the command's exit with all its output, without
/// waiting for the child (as `docker exec`, which waits about 2 s); a container's own
/// run ends as soon as its init does (the kernel kills the rest of its pid namespace).
#[test]
fn a_holder_that_outlives_the_command_does_not_hold_exec_or_run() {
    let w = World::new();
    w.run_detached(
        &["--name", "holder", "--network", "none"],
        &["sleep", "1000"],
    );
    let mut exec = w.spawn(&["exec", "holder", "sh", "-c", "sleep 1000 & echo hi"]);
    let ended = wait_for(30, || exec.try_wait().unwrap().is_some());
    if !ended {
        let _ = exec.kill();
    }
    assert!(ended, "exec waited for its command's background child");
    let out = exec.wait_with_output().unwrap();
    assert_eq!(ok(out), "hi\n");
    let mut run = w
        .run_cmd(
            &["--rm", "--network", "none"],
            &["sh", "-c", "sleep 1000 & echo hi"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ended = wait_for(30, || run.try_wait().unwrap().is_some());
    if !ended {
        let _ = run.kill();
    }
    assert!(ended, "run waited for a background child of its init");
    assert_eq!(ok(run.wait_with_output().unwrap()), "hi\n");
}
