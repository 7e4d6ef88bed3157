//! `mycontainer-supervisor`: the long-lived half of a detached container's supervisor,
//! a binary of its own so that what stays resident per container is small (std and
//! libc only, no clap/serde/reqwest pages).
//!
//! The full `mycontainer supervise` starts the container (network, cgroup, clone), tells
//! the CLI it runs, then execs this binary in the same process: the container's init
//! stays our child (its parent-death signal still aims at us), and we inherit the
//! record's lock, the attach socket and the container's stdio. Here we only relay: the
//! output into the log (rotated) and to attached clients, their input into the
//! container, their resizes and signals; we forward the signals we get, run the
//! healthcheck by spawning `mycontainer supervise-health` each interval, and reap. When
//! the init has exited and its output is drained, we exec `mycontainer supervise
//! --resume`, which records the exit and carries out the restart policy (and execs us
//! again for the next run).

#![deny(unsafe_op_in_unsafe_fn)]

#[allow(dead_code)]
#[path = "../runtime/attach_frames.rs"]
mod attach_frames;
#[allow(dead_code)]
#[path = "../runtime/logfile.rs"]
mod logfile;
#[allow(dead_code)]
#[path = "../timefmt.rs"]
mod timefmt;

mod relay;
mod server;
mod trim;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::process::ExitCode;

/// What `mycontainer supervise` hands over, from our command line.
pub struct Args {
    pub root: PathBuf,
    pub id: String,
    /// The full binary, for the helpers and the way back.
    pub exe: PathBuf,
    pub lock_fd: i32,
    pub listen_fd: i32,
    /// Host pid of the container's init (our child).
    pub pid: i32,
    /// CLOCK_MONOTONIC milliseconds when this run began, and the restart backoff's next
    /// delay: passed back for the restart policy.
    pub began_ms: u64,
    pub backoff_ms: u64,
    pub out_fd: Option<i32>,
    pub err_fd: Option<i32>,
    pub master_fd: Option<i32>,
    pub stdin_fd: Option<i32>,
    /// `-i`: clients' input reaches the container.
    pub open_stdin: bool,
    pub log: PathBuf,
    pub max_size: u64,
    pub max_files: u32,
    pub stop_timeout_s: u64,
    /// The healthcheck's interval (0: none).
    pub health_ms: u64,
}

fn parse(args: Vec<OsString>) -> Result<Args, String> {
    let mut it = args.into_iter();
    if it.next().as_deref() != Some("supervise".as_ref()) {
        return Err("usage: mycontainer-supervisor supervise --lock-fd N ... (started by mycontainer, not by hand)".into());
    }
    let mut a = Args {
        root: PathBuf::new(),
        id: String::new(),
        exe: PathBuf::new(),
        lock_fd: -1,
        listen_fd: -1,
        pid: 0,
        began_ms: 0,
        backoff_ms: 0,
        out_fd: None,
        err_fd: None,
        master_fd: None,
        stdin_fd: None,
        open_stdin: false,
        log: PathBuf::new(),
        max_size: u64::MAX,
        max_files: 1,
        stop_timeout_s: 10,
        health_ms: 0,
    };
    while let Some(flag) = it.next() {
        let flag = flag
            .into_string()
            .map_err(|_| "invalid argument".to_string())?;
        if flag == "--open-stdin" {
            a.open_stdin = true;
            continue;
        }
        let value = it
            .next()
            .ok_or_else(|| format!("missing value after {flag}"))?;
        let text = || value.to_str().unwrap_or("").to_string();
        let num = || -> Result<u64, String> {
            text()
                .parse::<u64>()
                .map_err(|_| format!("invalid value for {flag}"))
        };
        let fd = || -> Result<i32, String> {
            text()
                .parse::<i32>()
                .ok()
                .filter(|fd| *fd > 2)
                .ok_or_else(|| format!("invalid descriptor for {flag}"))
        };
        match flag.as_str() {
            "--root" => a.root = PathBuf::from(value),
            "--id" => a.id = text(),
            "--exe" => a.exe = PathBuf::from(value),
            "--log" => a.log = PathBuf::from(OsString::from_vec(value.into_vec())),
            "--lock-fd" => a.lock_fd = fd()?,
            "--listen-fd" => a.listen_fd = fd()?,
            "--out-fd" => a.out_fd = Some(fd()?),
            "--err-fd" => a.err_fd = Some(fd()?),
            "--master-fd" => a.master_fd = Some(fd()?),
            "--stdin-fd" => a.stdin_fd = Some(fd()?),
            "--pid" => a.pid = num()? as i32,
            "--began-ms" => a.began_ms = num()?,
            "--backoff-ms" => a.backoff_ms = num()?,
            "--max-size" => a.max_size = num()?,
            "--max-files" => a.max_files = num()? as u32,
            "--stop-timeout" => a.stop_timeout_s = num()?,
            "--health-ms" => a.health_ms = num()?,
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    if a.id.is_empty() || a.lock_fd < 0 || a.listen_fd < 0 || a.pid <= 0 {
        return Err("--id, --lock-fd, --listen-fd and --pid are required".into());
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse(std::env::args_os().skip(1).collect()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("mycontainer-supervisor: {e}");
            return ExitCode::from(125);
        }
    };
    // Returns only when the way back (exec of the full binary) failed. Our stderr is the
    // record's supervisor.log: the line has the shape of the full binary's failures
    // (src/container/supervisor_log.rs), and the next command's reclaim puts it in the
    // state's error.
    let err = relay::run(&args);
    eprintln!(
        "{} its supervisor failed: cannot run {} to record the container's exit: {err}",
        timefmt::now(),
        args.exe.display()
    );
    ExitCode::from(125)
}
