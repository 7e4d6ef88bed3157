//! `mycontainer-runtime`: runc's command line, driven as containerd's shim drives it
//! (create with our stdio or a console socket, start, state, kill, delete), on real
//! containers. The test process is a child subreaper, as the shim is, so it reaps the
//! containers and reads their exit status.

mod common;

use std::fs::{self, File};
use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::symlink;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Once;

use common::{build_busybox_rootfs, ok, stderr, stdout, wait_for, BIN};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde_json::{json, Value};

/// Orphaned container processes come to us (as to containerd's shim) to be reaped.
fn become_subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: prctl on our own process.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };
        assert_eq!(rc, 0, "cannot become a child subreaper");
    });
}

struct Rt {
    dir: tempfile::TempDir,
    root: PathBuf,
    bin: PathBuf,
    ids: Vec<String>,
}

impl Rt {
    fn new() -> Rt {
        become_subreaper();
        let dir = tempfile::Builder::new()
            .prefix("mycontainer-rt-test-")
            .tempdir()
            .unwrap();
        let bin = dir.path().join("mycontainer-runtime");
        symlink(BIN, &bin).unwrap();
        let root = dir.path().join("state");
        Rt {
            root,
            bin,
            dir,
            ids: Vec::new(),
        }
    }

    /// A unique container id (cgroups are shared by every test process on the host).
    fn id(&mut self, name: &str) -> String {
        let id = format!("{name}-{}", std::process::id());
        self.ids.push(id.clone());
        id
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--root").arg(&self.root);
        cmd.stdin(Stdio::null());
        cmd
    }

    fn rt(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// A bundle made by our own `spec`, with a busybox rootfs, `edit`ed.
    fn bundle(&self, name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
        let bundle = self.dir.path().join(name);
        fs::create_dir_all(&bundle).unwrap();
        ok(self
            .cmd()
            .args(["spec", "--bundle"])
            .arg(&bundle)
            .output()
            .unwrap());
        build_busybox_rootfs(&bundle.join("rootfs"));
        let path = bundle.join("config.json");
        let mut config: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        edit(&mut config);
        fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        bundle
    }

    /// `create` with the container's stdout and stderr into `out` (the runtime exits;
    /// the container keeps the file).
    fn create(&self, bundle: &Path, id: &str, out: &Path, extra: &[&str]) -> Output {
        let file = File::create(out).unwrap();
        self.cmd()
            .arg("create")
            .args(extra)
            .arg("--bundle")
            .arg(bundle)
            .arg(id)
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .output()
            .unwrap()
    }

    /// `create` of `bundle` as `id` must fail with exit 1: what it said.
    fn create_refused(&self, bundle: &Path, id: &str) -> String {
        let out = self.dir.path().join(format!("{id}.out"));
        assert_eq!(self.create(bundle, id, &out, &[]).status.code(), Some(1));
        fs::read_to_string(&out).unwrap()
    }

    fn state(&self, id: &str) -> Value {
        serde_json::from_str(&ok(self.rt(&["state", id]))).unwrap()
    }

    fn status(&self, id: &str) -> String {
        self.state(id)["status"].as_str().unwrap().to_string()
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = self.rt(&["delete", "--force", id]);
        }
        if std::thread::panicking() {
            return;
        }
        for id in &self.ids {
            common::assert_no_cgroup(&format!("rt-{id}"));
            assert_no_cgroup_at(&format!("mycontainer/rt-{id}"));
            assert!(!self.root.join(id).exists(), "state of {id} left behind");
        }
    }
}

/// The directories of cgroup `path` (below the roots) that exist, in any hierarchy.
fn cgroup_dirs(path: &str) -> Vec<PathBuf> {
    let mut dirs = vec![Path::new("/sys/fs/cgroup").join(path)];
    for hierarchy in fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        dirs.push(hierarchy.path().join(path));
    }
    dirs.retain(|d| d.is_dir());
    dirs
}

fn assert_no_cgroup_at(path: &str) {
    let left = cgroup_dirs(path);
    assert!(left.is_empty(), "cgroup left behind: {left:?}");
}

/// The cgroup of `pid` in the cgroup2 tree (v2 and hybrid hosts), as the host sees it.
fn unified_cgroup_of(pid: i64) -> String {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_else(|| panic!("no cgroup2 line in {text}"))
        .to_string()
}

fn noninteractive(args: &[&str]) -> impl FnOnce(&mut Value) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    move |config: &mut Value| {
        config["process"]["terminal"] = json!(false);
        config["process"]["args"] = json!(args);
    }
}

/// Reaps `pid` (our orphan) and returns its exit code, 128+N for signal N.
fn reap(pid: i32) -> i32 {
    let mut code = None;
    assert!(
        wait_for(20, || {
            match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, c)) => code = Some(c),
                Ok(WaitStatus::Signaled(_, s, _)) => code = Some(128 + s as i32),
                Ok(_) => {}
                Err(e) => panic!("cannot wait for {pid}: {e}"),
            }
            code.is_some()
        }),
        "container process {pid} did not exit"
    );
    code.unwrap()
}

fn file_contains(path: &Path, text: &str) -> bool {
    fs::read_to_string(path).unwrap_or_default().contains(text)
}

/// Creates and starts `id` from `bundle` with its output in `out`, and returns that
/// output once the container's script has said "done".
#[track_caller]
fn create_start_until_done(rt: &Rt, bundle: &Path, id: &str, out: &Path) -> String {
    let created = rt.create(bundle, id, out, &[]);
    assert!(created.status.success(), "{:?}", fs::read_to_string(out));
    ok(rt.rt(&["start", id]));
    assert!(
        wait_for(20, || file_contains(out, "done")),
        "{:?}",
        fs::read_to_string(out)
    );
    fs::read_to_string(out).unwrap()
}

/// `text`'s lines with each run of blanks made one space (uid_map's aligned columns).
fn squeezed_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn create_start_state_kill_delete_through_every_status() {
    let mut rt = Rt::new();
    let id = rt.id("life");
    let script = "trap 'echo got-usr1; exit 7' USR1; echo started-$$; \
                  while :; do sleep 0.05; done";
    let bundle = rt.bundle("life", noninteractive(&["sh", "-c", script]));
    let out = rt.dir.path().join("life.out");
    let pid_file = rt.dir.path().join("life.pid");
    let created = rt.create(
        &bundle,
        &id,
        &out,
        &["--pid-file", pid_file.to_str().unwrap()],
    );
    ok(created);

    // Created: set up, its command not started.
    let state = rt.state(&id);
    assert_eq!(state["status"], "created");
    assert_eq!(state["id"], id.as_str());
    assert_eq!(state["ociVersion"], "1.2.0");
    assert_eq!(state["bundle"], bundle.to_str().unwrap());
    let pid = state["pid"].as_i64().unwrap() as i32;
    assert_eq!(fs::read_to_string(&pid_file).unwrap(), pid.to_string());
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains("while"),
        "the command ran before start"
    );
    assert!(!file_contains(&out, "started"));
    // Its pid namespace and hostname are the container's.
    let ours = fs::read_link("/proc/self/ns/pid").unwrap();
    assert_ne!(fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap(), ours);

    let listed = stdout(&rt.rt(&["list"]));
    assert!(listed
        .lines()
        .any(|l| l.starts_with(&id) && l.contains("created")));

    ok(rt.rt(&["start", &id]));
    // PID 1 of its namespace, writing to the stdout create was given.
    assert!(wait_for(10, || file_contains(&out, "started-1")));
    assert_eq!(rt.status(&id), "running");

    // Invalid transitions.
    let again = rt.rt(&["start", &id]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already running"),
        "{}",
        stderr(&again)
    );
    let delete = rt.rt(&["delete", &id]);
    assert_eq!(delete.status.code(), Some(1));
    assert!(stderr(&delete).contains("running"), "{}", stderr(&delete));
    let taken = rt.create(&bundle, &id, &rt.dir.path().join("taken.out"), &[]);
    assert_eq!(taken.status.code(), Some(1));
    assert!(fs::read_to_string(rt.dir.path().join("taken.out"))
        .unwrap()
        .contains("already exists"));

    // A signal by name reaches the command, whose exit status is ours to read.
    ok(rt.rt(&["kill", &id, "USR1"]));
    assert_eq!(reap(pid), 7);
    assert!(file_contains(&out, "got-usr1"));
    let state = rt.state(&id);
    assert_eq!(state["status"], "stopped");
    assert_eq!(state["pid"], 0);

    let kill = rt.rt(&["kill", &id, "KILL"]);
    assert_eq!(kill.status.code(), Some(1));
    assert!(stderr(&kill).contains("container not running"));
    let start = rt.rt(&["start", &id]);
    assert!(stderr(&start).contains("stopped"), "{}", stderr(&start));

    ok(rt.rt(&["delete", &id]));
    let gone = rt.rt(&["state", &id]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(stderr(&gone).contains("does not exist"));
    common::assert_no_cgroup(&format!("rt-{id}"));
}

#[test]
fn kill_takes_numbers_and_all_reaches_every_process() {
    let mut rt = Rt::new();
    let id = rt.id("killall");
    let script = "trap 'exit 3' TERM; sleep 1000 & echo ready; \
                  while :; do sleep 0.05; done";
    let bundle = rt.bundle("killall", noninteractive(&["sh", "-c", script]));
    let out = rt.dir.path().join("k.out");
    ok(rt.create(&bundle, &id, &out, &[]));
    let pid = rt.state(&id)["pid"].as_i64().unwrap() as i32;
    ok(rt.rt(&["start", &id]));
    assert!(wait_for(10, || file_contains(&out, "ready")));
    let pids: Vec<i32> =
        serde_json::from_str(&ok(rt.rt(&["ps", "--format", "json", &id]))).unwrap();
    assert!(pids.contains(&pid) && pids.len() >= 2, "{pids:?}");

    let sleeper = *pids
        .iter()
        .find(|p| {
            fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default() == b"sleep\x001000\x00"
        })
        .expect("the background sleep is in the container's cgroup");

    // ps with ps(1)'s options (runc's form): the header and exactly the container's
    // processes, in the columns asked for.
    let table = ok(rt.rt(&["ps", &id, "--", "-o", "pid,comm"]));
    let mut lines = table.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["PID", "COMMAND"]
    );
    let mut shown: Vec<i32> = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.len(), 2, "{table}");
        shown.push(fields[0].parse().unwrap());
        if fields[0] == sleeper.to_string() {
            assert_eq!(fields[1], "sleep", "{table}");
        }
    }
    assert!(shown.contains(&pid) && shown.contains(&sleeper), "{table}");
    // Every row is the container's (a short-lived `sleep 0.05` may have gone since).
    for p in &shown {
        let cgroup = fs::read_to_string(format!("/proc/{p}/cgroup")).unwrap_or_default();
        assert!(
            cgroup.is_empty() || cgroup.contains(&format!("rt-{id}")),
            "{p}: {cgroup}"
        );
    }
    // Without the PID column the rows cannot be picked: said, not guessed.
    let refused = rt.rt(&["ps", &id, "--", "-o", "comm"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("PID column"),
        "{}",
        stderr(&refused)
    );
    let refused = rt.rt(&["ps", "--format", "json", &id, "--", "-ef"]);
    assert_eq!(refused.status.code(), Some(1));

    // --all: USR1 to every process; the init (no handler, PID 1) ignores it, the
    // background sleep dies of it.
    ok(rt.rt(&["kill", "--all", &id, "SIGUSR1"]));
    assert!(wait_for(10, || {
        fs::read(format!("/proc/{sleeper}/cmdline")).unwrap_or_default() != b"sleep\x001000\x00"
    }));
    assert_eq!(rt.status(&id), "running");
    // 15 = TERM, caught by the trap.
    ok(rt.rt(&["kill", &id, "15"]));
    assert_eq!(reap(pid), 3);
    let bad = rt.rt(&["kill", &id, "NOPE"]);
    assert!(stderr(&bad).contains("invalid signal"));
    ok(rt.rt(&["delete", &id]));
}

#[test]
fn delete_force_kills_a_running_container_and_a_created_one_is_deletable() {
    let mut rt = Rt::new();
    let running = rt.id("force");
    let created = rt.id("created");
    let bundle = rt.bundle("force", noninteractive(&["sleep", "1000"]));
    ok(rt.create(&bundle, &running, &rt.dir.path().join("f.out"), &[]));
    ok(rt.create(&bundle, &created, &rt.dir.path().join("c.out"), &[]));
    let pid = rt.state(&running)["pid"].as_i64().unwrap() as i32;
    let created_pid = rt.state(&created)["pid"].as_i64().unwrap() as i32;
    ok(rt.rt(&["start", &running]));
    assert_eq!(rt.status(&running), "running");

    ok(rt.rt(&["delete", "--force", &running]));
    assert_eq!(reap(pid), 128 + libc::SIGKILL);
    // A created container is deleted without --force (its process killed), as runc does.
    ok(rt.rt(&["delete", &created]));
    assert_eq!(reap(created_pid), 128 + libc::SIGKILL);
    // --force on a container that is not there is fine (containerd retries deletes).
    ok(rt.rt(&["delete", "--force", &running]));
    let missing = rt.rt(&["delete", &running]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stdout(&rt.rt(&["list", "-q"])).trim().is_empty());
}

#[test]
fn a_missing_command_fails_create_and_one_that_cannot_run_exits_126_after_start() {
    let mut rt = Rt::new();
    // As runc: create looks the command up in the container, and says why.
    let missing = rt.id("nocmd");
    let bundle = rt.bundle("nocmd", noninteractive(&["no-such-command"]));
    let out = rt.dir.path().join("n.out");
    let created = rt.create(&bundle, &missing, &out, &[]);
    assert_eq!(created.status.code(), Some(1));
    let said = fs::read_to_string(&out).unwrap();
    assert!(
        said.contains("\"no-such-command\": executable file not found in $PATH"),
        "{said}"
    );
    assert!(!rt.root.join(&missing).exists());
    common::assert_no_cgroup(&format!("rt-{missing}"));

    // Present but not executable: found at create, fails at its execve after start.
    let id = rt.id("noexec");
    let bundle = rt.bundle("noexec", noninteractive(&["/etc/passwd"]));
    ok(rt.create(&bundle, &id, &rt.dir.path().join("x.out"), &[]));
    let pid = rt.state(&id)["pid"].as_i64().unwrap() as i32;
    ok(rt.rt(&["start", &id]));
    assert_eq!(reap(pid), 126);
    assert_eq!(rt.status(&id), "stopped");
    ok(rt.rt(&["delete", &id]));
}

#[test]
fn a_failed_create_leaves_nothing_and_its_error_is_in_the_json_log() {
    let mut rt = Rt::new();
    let id = rt.id("badmount");
    let bundle = rt.bundle("badmount", |config| {
        noninteractive(&["true"])(config);
        config["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/data", "type": "bind", "source": "/no/such/dir",
            "options": ["rbind"]
        }));
    });
    let log = rt.dir.path().join("log.json");
    let out = rt
        .cmd()
        .args(["--log", log.to_str().unwrap(), "--log-format", "json"])
        .args(["create", "--bundle", bundle.to_str().unwrap(), &id])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let line = fs::read_to_string(&log).unwrap();
    let record: Value = serde_json::from_str(line.lines().last().unwrap()).unwrap();
    assert_eq!(record["level"], "error");
    let msg = record["msg"].as_str().unwrap();
    assert!(msg.contains("/no/such/dir"), "{msg}");
    assert!(record["time"].as_str().unwrap().ends_with('Z'));
    assert!(!rt.root.join(&id).exists());
    common::assert_no_cgroup(&format!("rt-{id}"));

    // The text format, for an unknown container.
    let text_log = rt.dir.path().join("log.txt");
    let out = rt
        .cmd()
        .args(["--log", text_log.to_str().unwrap(), "start", "nosuch"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = fs::read_to_string(&text_log).unwrap();
    assert!(
        text.contains("level=error msg=\"container nosuch does not exist\""),
        "{text}"
    );
}

#[test]
fn run_waits_returns_the_exit_code_and_cleans_up() {
    let mut rt = Rt::new();
    let id = rt.id("run");
    let bundle = rt.bundle(
        "run",
        noninteractive(&["sh", "-c", "echo out-$(hostname); echo err >&2; exit 4"]),
    );
    let out = rt
        .cmd()
        .args(["run", "--bundle", bundle.to_str().unwrap(), &id])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert_eq!(stdout(&out), "out-mycontainer\n");
    assert_eq!(stderr(&out), "err\n");
    assert!(!rt.root.join(&id).exists());

    // --detach: started, left to us.
    let detached = rt.id("rund");
    let bundle = rt.bundle("rund", noninteractive(&["sleep", "1000"]));
    let status = rt
        .cmd()
        .args([
            "run",
            "--detach",
            "--bundle",
            bundle.to_str().unwrap(),
            &detached,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(rt.status(&detached), "running");
    let pid = rt.state(&detached)["pid"].as_i64().unwrap() as i32;
    let listed: Vec<Value> =
        serde_json::from_str(&ok(rt.rt(&["list", "--format", "json"]))).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], detached.as_str());
    assert_eq!(listed[0]["status"], "running");
    ok(rt.rt(&["delete", "--force", &detached]));
    reap(pid);
}

/// Receives one descriptor (the pty master) from a runtime connecting to `listener`.
fn receive_fd(listener: &UnixListener) -> OwnedFd {
    let (stream, _) = listener.accept().unwrap();
    let mut buf = [0u8; 256];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!(RawFd);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )
    .unwrap();
    for c in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the kernel just gave us this descriptor.
            return unsafe { OwnedFd::from_raw_fd(fds[0]) };
        }
    }
    panic!("no descriptor received");
}

#[test]
fn console_socket_gets_the_pty_of_a_spec_default_shell() {
    let mut rt = Rt::new();
    let id = rt.id("tty");
    // `spec`'s default process as is: `sh` with a terminal.
    let bundle = rt.bundle("tty", |_| {});
    let socket = rt.dir.path().join("console.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let receiver = std::thread::spawn(move || receive_fd(&listener));
    // Without the socket, a terminal is refused.
    let refused = rt.create(&bundle, &id, &rt.dir.path().join("r.out"), &[]);
    assert_eq!(refused.status.code(), Some(1));
    ok(rt.create(
        &bundle,
        &id,
        &rt.dir.path().join("t.out"),
        &["--console-socket", socket.to_str().unwrap()],
    ));
    let master = File::from(receiver.join().unwrap());
    let pid = rt.state(&id)["pid"].as_i64().unwrap() as i32;
    ok(rt.rt(&["start", &id]));

    let mut writer = master.try_clone().unwrap();
    writer
        .write_all(b"tty; echo answer-$((6*7)) $$\nexit 5\n")
        .unwrap();
    let mut seen = String::new();
    let mut reader = master;
    let mut buf = [0u8; 4096];
    while !seen.contains("answer-42 1") {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    assert!(seen.contains("answer-42 1"), "{seen:?}");
    assert!(seen.contains("/dev/pts/0"), "{seen:?}");
    assert_eq!(reap(pid), 5);
    ok(rt.rt(&["delete", &id]));
}

#[test]
fn spec_writes_a_runnable_default_and_refuses_to_overwrite() {
    let rt = Rt::new();
    let dir = rt.dir.path().join("spec");
    fs::create_dir(&dir).unwrap();
    ok(rt.rt(&["spec", "--bundle", dir.to_str().unwrap()]));
    let config: Value =
        serde_json::from_slice(&fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["root"]["path"], "rootfs");
    assert_eq!(config["process"]["terminal"], true);
    assert_eq!(config["process"]["args"], json!(["sh"]));
    let again = rt.rt(&["spec", "--bundle", dir.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("exists already"));

    let features: Value = serde_json::from_str(&ok(rt.rt(&["features"]))).unwrap();
    assert_eq!(features["ociVersionMax"], "1.2.0");
    assert!(features["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .contains(&json!("pid")));
    assert!(features["linux"]["capabilities"]
        .as_array()
        .unwrap()
        .contains(&json!("CAP_SYS_ADMIN")));
    assert_eq!(features["hooks"].as_array().unwrap().len(), 6);

    // `mycontainer runtime ...` is the same command line.
    let via_main = Command::new(BIN)
        .args(["runtime", "--root"])
        .arg(&rt.root)
        .args(["list", "-q"])
        .output()
        .unwrap();
    assert!(via_main.status.success(), "{}", stderr(&via_main));
}

#[test]
fn exec_inline_and_detached_with_a_process_file() {
    let mut rt = Rt::new();
    let id = rt.id("exec");
    let bundle = rt.bundle("exec", noninteractive(&["sleep", "1000"]));
    ok(rt.create(&bundle, &id, &rt.dir.path().join("e.out"), &[]));
    let init = rt.state(&id)["pid"].as_i64().unwrap() as i32;
    // Not before start: the waiting init is still our binary.
    let early = rt.rt(&["exec", &id, "true"]);
    assert_eq!(early.status.code(), Some(1));
    assert!(
        stderr(&early).contains("it is created"),
        "{}",
        stderr(&early)
    );
    ok(rt.rt(&["start", &id]));

    // Inline: relayed, our exit code is the command's; -u, --cwd and -e apply.
    let out = rt.rt(&[
        "exec",
        "-u",
        "65534:65534",
        "--cwd",
        "/tmp",
        "-e",
        "FOO=bar",
        &id,
        "sh",
        "-c",
        "echo $(id -u):$(id -g) $PWD $FOO $(cat /proc/1/comm); exit 6",
    ]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert_eq!(stdout(&out), "65534:65534 /tmp bar sleep\n");
    let missing = rt.rt(&["exec", &id, "/no/such"]);
    assert_eq!(missing.status.code(), Some(127));

    // --process --detach --pid-file: as containerd's shim execs; we reap it.
    let process = rt.dir.path().join("process.json");
    fs::write(
        &process,
        serde_json::to_vec(&json!({
            "args": ["sh", "-c", "echo detached-$$; exit 9"],
            "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}
        }))
        .unwrap(),
    )
    .unwrap();
    let pid_file = rt.dir.path().join("exec.pid");
    let out_file = rt.dir.path().join("exec.out");
    let status = rt
        .cmd()
        .args(["exec", "--detach", "--process"])
        .arg(&process)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(&id)
        .stdout(File::create(&out_file).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    let pid: i32 = fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    assert_eq!(reap(pid), 9);
    // Its pid in the container's namespace is not 1: it joined, it is not the init.
    let said = fs::read_to_string(&out_file).unwrap();
    assert!(
        said.starts_with("detached-") && said != "detached-1\n",
        "{said}"
    );

    // Not in a stopped container.
    ok(rt.rt(&["kill", &id, "KILL"]));
    assert_eq!(reap(init), 128 + libc::SIGKILL);
    let refused = rt.rt(&["exec", &id, "true"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("stopped"), "{}", stderr(&refused));
    ok(rt.rt(&["delete", &id]));
}

/// An exec whose command cannot start fails fast, in the process born in the container's
/// pid namespace. The runtime must reap that process, not the one that cloned it: when
/// the failure could overtake the report of its pid, the CLI reaped the wrong one, left
/// a zombie in the container's pid namespace to its reaper (this test), and the init,
/// killed, could not finish exiting (it waits until every process in its namespace is
/// reaped). Many failing execs in a row, then: none may leave a process behind.
#[test]
fn failing_execs_leave_no_process_in_the_containers_pid_namespace() {
    let mut rt = Rt::new();
    let id = rt.id("failexec");
    let bundle = rt.bundle("failexec", noninteractive(&["sleep", "1000"]));
    ok(rt.create(&bundle, &id, &rt.dir.path().join("f.out"), &[]));
    ok(rt.rt(&["start", &id]));
    let init = rt.state(&id)["pid"].as_i64().unwrap() as i32;
    let namespace = ns_of(&init.to_string(), "pid");
    let others_in_namespace = || -> Vec<String> {
        fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|p| p.parse::<i32>().is_ok_and(|p| p != init))
            .filter(|p| {
                fs::read_link(format!("/proc/{p}/ns/pid"))
                    .is_ok_and(|l| l.to_string_lossy() == namespace)
            })
            .collect()
    };
    for round in 0..30 {
        let missing = rt.rt(&["exec", &id, "/no/such"]);
        assert_eq!(missing.status.code(), Some(127), "{}", stderr(&missing));
        let left = others_in_namespace();
        assert!(
            left.is_empty(),
            "exec {round} left {left:?} in the container"
        );
    }
    ok(rt.rt(&["kill", &id, "KILL"]));
    assert_eq!(reap(init), 128 + libc::SIGKILL);
    ok(rt.rt(&["delete", &id]));
}

/// The container's limit file `name` (cgroup2, or the v1 hierarchy that has it).
fn cgroup_file(id: &str, name: &str) -> PathBuf {
    let mut candidates = vec![PathBuf::from(format!("/sys/fs/cgroup/mycontainer/rt-{id}"))];
    for hierarchy in fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        candidates.push(
            hierarchy
                .path()
                .join("mycontainer")
                .join(format!("rt-{id}")),
        );
    }
    candidates
        .into_iter()
        .map(|dir| dir.join(name))
        .find(|f| f.exists())
        .unwrap_or_else(|| panic!("no {name} for {id}"))
}

#[test]
fn pause_freezes_resume_thaws_and_update_changes_limits() {
    let mut rt = Rt::new();
    let id = rt.id("pause");
    let bundle = rt.bundle("pause", |config| {
        noninteractive(&[
            "sh",
            "-c",
            "i=0; while :; do i=$((i+1)); echo $i; sleep 0.01; done",
        ])(config);
        config["linux"]["resources"]["pids"] = json!({"limit": 100});
    });
    let out = rt.dir.path().join("p.out");
    ok(rt.create(&bundle, &id, &out, &[]));
    ok(rt.rt(&["start", &id]));
    assert!(wait_for(10, || file_contains(&out, "\n3\n")));

    let early = rt.rt(&["resume", &id]);
    assert!(stderr(&early).contains("not paused"), "{}", stderr(&early));
    ok(rt.rt(&["pause", &id]));
    assert_eq!(rt.status(&id), "paused");
    let events = fs::read_to_string(cgroup_file(&id, "cgroup.events")).unwrap();
    assert!(events.contains("frozen 1"), "{events}");
    // Frozen: the counter stands still.
    let before = fs::read_to_string(&out).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(fs::read_to_string(&out).unwrap(), before);
    let exec = rt.rt(&["exec", &id, "true"]);
    assert_eq!(exec.status.code(), Some(1));
    let start = rt.rt(&["start", &id]);
    assert_eq!(start.status.code(), Some(1));
    ok(rt.rt(&["resume", &id]));
    assert_eq!(rt.status(&id), "running");
    let lines = before.lines().count();
    assert!(wait_for(10, || fs::read_to_string(&out)
        .unwrap()
        .lines()
        .count()
        > lines + 2));

    // update: from a file and from stdin (containerd's way).
    let resources = rt.dir.path().join("resources.json");
    fs::write(&resources, r#"{"pids": {"limit": 50}}"#).unwrap();
    ok(rt.rt(&["update", "--resources", resources.to_str().unwrap(), &id]));
    assert_eq!(
        fs::read_to_string(cgroup_file(&id, "pids.max"))
            .unwrap()
            .trim(),
        "50"
    );
    let mut child = rt
        .cmd()
        .args(["update", "-r", "-", &id])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"pids": {"limit": 70}}"#)
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(
        fs::read_to_string(cgroup_file(&id, "pids.max"))
            .unwrap()
            .trim(),
        "70"
    );
    let bad = rt.rt(&["update", "-r", "/no/such.json", &id]);
    assert_eq!(bad.status.code(), Some(1));

    // A paused container is deleted with --force (thawed, killed).
    ok(rt.rt(&["pause", &id]));
    let refused = rt.rt(&["delete", &id]);
    assert_eq!(refused.status.code(), Some(1));
    ok(rt.rt(&["delete", "--force", &id]));
}

/// Debian's containerd on a private socket, root and state (no CRI), stopped on drop.
struct Containerd {
    dir: PathBuf,
    socket: PathBuf,
    daemon: std::process::Child,
    namespace: String,
}

impl Containerd {
    fn start(dir: &Path) -> Containerd {
        let which = Command::new("sh")
            .args(["-c", "command -v containerd && command -v ctr"])
            .output()
            .unwrap();
        assert!(
            which.status.success(),
            "containerd and ctr are needed (apt-get install containerd; scripts/test does)"
        );
        let socket = dir.join("containerd.sock");
        let config = dir.join("config.toml");
        fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n",
                root = dir.join("root").display(),
                state = dir.join("state").display(),
                sock = socket.display(),
            ),
        )
        .unwrap();
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(dir.join("containerd.log")).unwrap())
            .spawn()
            .unwrap();
        let ctrd = Containerd {
            dir: dir.to_path_buf(),
            socket,
            daemon,
            namespace: format!("rt-test-{}", std::process::id()),
        };
        assert!(
            wait_for(30, || ctrd.ctr(&["version"]).status.success()),
            "containerd did not come up: {}",
            fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
        );
        ctrd
    }

    fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("-a")
            .arg(&self.socket)
            .args(["-n", &self.namespace])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // After a failed assertion: what is left goes through the shim and our runtime.
        for id in stdout(&self.ctr(&["container", "ls", "-q"])).lines() {
            let _ = self.ctr(&["task", "delete", "--force", id]);
            let _ = self.ctr(&["container", "delete", id]);
        }
        // SAFETY: kill of the daemon we spawned (still our unreaped child).
        unsafe { libc::kill(self.daemon.id() as i32, libc::SIGTERM) };
        let _ = self.daemon.wait();
        // Its snapshots are mounted under its root until it unmounts them.
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let ours = self.dir.to_string_lossy().into_owned();
        for line in mounts.lines().rev() {
            if let Some(target) = line.split(' ').nth(4).filter(|t| t.starts_with(&ours)) {
                let _ = nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}

#[test]
fn containerd_runs_an_image_through_the_runtime_cli() {
    let mut rt = Rt::new();
    let ctrd = Containerd::start(rt.dir.path());
    // Our own busybox image, saved by us and imported by ctr.
    let mc_root = rt.dir.path().join("mc");
    let archive = rt.dir.path().join("busybox.tar");
    let mc = |args: &[&str]| {
        ok(Command::new(BIN)
            .env_remove("MYCONTAINER_ROOT")
            .arg("--root")
            .arg(&mc_root)
            .args(args)
            .output()
            .unwrap())
    };
    mc(&["image", "build", "busybox"]);
    mc(&["image", "save", "busybox", "-o", archive.to_str().unwrap()]);
    ok(ctrd.ctr(&["image", "import", archive.to_str().unwrap()]));
    let image = "docker.io/library/busybox:latest";
    let runtime = rt.bin.to_str().unwrap().to_string();
    let runtime_root = rt.dir.path().join("runc-root");
    let runtime_root = runtime_root.to_str().unwrap().to_string();
    let run = |extra: &[&str], id: &str, command: &[&str]| {
        let mut args = vec![
            "run",
            "--runc-binary",
            &runtime,
            "--runc-root",
            &runtime_root,
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[image, id]);
        args.extend_from_slice(command);
        ctrd.ctr(&args)
    };

    // Output and exit code, then --rm removes it.
    let once = rt.id("ctr-once");
    let out = run(
        &["--rm"],
        &once,
        &["sh", "-c", "echo hello from $$; exit 3"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello from 1\n");

    // A long one: exec into it, kill it, delete it.
    let long = rt.id("ctr-long");
    ok(run(&["-d"], &long, &["sleep", "1000"]));
    let tasks = stdout(&ctrd.ctr(&["task", "ls"]));
    assert!(
        tasks
            .lines()
            .any(|l| l.starts_with(&long) && l.contains("RUNNING")),
        "{tasks}"
    );
    // The exec'd command stays until its line has reached us: with a command that exits
    // right after printing, ctr returned its exit code without the line (round 29; the
    // output copy in containerd's client or shim can end before all of it is read).
    let mut exec = Command::new("ctr")
        .arg("-a")
        .arg(&ctrd.socket)
        .args(["-n", &ctrd.namespace])
        .args(["task", "exec", "--exec-id", "e1", &long, "sh", "-c"])
        .arg(
            "echo in-exec $(cat /proc/1/comm); while [ ! -e /tmp/go ]; do sleep 0.05; done; exit 2",
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut output = std::io::BufReader::new(exec.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut output, &mut line).unwrap();
    assert_eq!(line, "in-exec sleep\n");
    ok(ctrd.ctr(&["task", "exec", "--exec-id", "e2", &long, "touch", "/tmp/go"]));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut output, &mut rest).unwrap();
    assert_eq!(rest, "");
    let exec = exec.wait_with_output().unwrap();
    assert_eq!(exec.status.code(), Some(2), "{}", stderr(&exec));
    // The shim keeps each namespace's containers under <runc-root>/<namespace>.
    let namespace_root = Path::new(&runtime_root).join(&ctrd.namespace);
    let state: Value = serde_json::from_str(&ok(Command::new(&rt.bin)
        .arg("--root")
        .arg(&namespace_root)
        .args(["state", &long])
        .output()
        .unwrap()))
    .unwrap();
    assert_eq!(state["status"], "running");
    // containerd's cgroupsPath (/<namespace>/<id>) is where the container is.
    assert_eq!(
        unified_cgroup_of(state["pid"].as_i64().unwrap()),
        format!("/{}/{long}", ctrd.namespace)
    );
    ok(ctrd.ctr(&["task", "kill", "-s", "KILL", &long]));
    assert!(wait_for(20, || {
        stdout(&ctrd.ctr(&["task", "ls"]))
            .lines()
            .any(|l| l.starts_with(&long) && l.contains("STOPPED"))
    }));
    ok(ctrd.ctr(&["task", "delete", &long]));
    ok(ctrd.ctr(&["container", "delete", &long]));

    // A command that is not there: containerd shows our error (from our --log).
    let bad = rt.id("ctr-bad");
    let out = run(&["--rm"], &bad, &["no-such-command"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("exec: \"no-such-command\": executable file not found in $PATH"),
        "{}",
        stderr(&out)
    );

    // Nothing left: no containers, no runtime state, no cgroups (checked on drop), no
    // processes.
    assert!(stdout(&ctrd.ctr(&["container", "ls", "-q"]))
        .trim()
        .is_empty());
    let left: Vec<_> = fs::read_dir(&namespace_root)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "runtime state left: {left:?}");
    assert_no_cgroup_at(&ctrd.namespace);
    ok(ctrd.ctr(&["image", "rm", image]));
    // Every shim has gone (each exits once its container is deleted).
    let shim = format!("-namespace {}", ctrd.namespace);
    assert!(
        wait_for(20, || common::pids_with(&shim).is_empty()),
        "shims left: {:?}",
        common::pids_with(&shim)
    );
    drop(ctrd);
}

/// A hook that writes the state on its stdin (and $HOOK_ENV) to `file`.
fn writing_hook(file: &Path) -> Value {
    json!({
        "path": "/bin/sh",
        "args": ["sh", "-c", format!("cat > {}; echo \"$HOOK_ENV\" >> {}", file.display(), file.display())],
        "env": ["HOOK_ENV=from-the-hook-env"],
        "timeout": 30
    })
}

#[test]
fn hooks_get_the_state_on_stdin_at_each_point() {
    let mut rt = Rt::new();
    let id = rt.id("hooks");
    let dir = rt.dir.path().to_path_buf();
    let bundle = rt.bundle("hooks", |config| {
        noninteractive(&["sleep", "1000"])(config);
        config["annotations"] = json!({"org.example.key": "value"});
        config["hooks"] = json!({
            "prestart": [writing_hook(&dir.join("prestart.json"))],
            "createRuntime": [writing_hook(&dir.join("createRuntime.json"))],
            "poststart": [writing_hook(&dir.join("poststart.json"))],
            "poststop": [writing_hook(&dir.join("poststop.json"))],
        });
    });
    ok(rt.create(&bundle, &id, &dir.join("h.out"), &[]));
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    let read = |name: &str| -> (Value, String) {
        let text = fs::read_to_string(dir.join(name)).unwrap();
        let (json_text, env) = text.rsplit_once('}').unwrap();
        (
            serde_json::from_str(&format!("{json_text}}}")).unwrap(),
            env.trim().to_string(),
        )
    };
    for point in ["prestart.json", "createRuntime.json"] {
        let (state, env) = read(point);
        assert_eq!(state["id"], id.as_str());
        assert_eq!(state["status"], "creating");
        assert_eq!(state["pid"], pid);
        assert_eq!(state["bundle"], bundle.to_str().unwrap());
        assert_eq!(state["annotations"]["org.example.key"], "value");
        assert_eq!(env, "from-the-hook-env");
    }
    assert!(!dir.join("poststart.json").exists());
    ok(rt.rt(&["start", &id]));
    let (state, _) = read("poststart.json");
    assert_eq!(state["status"], "running");
    assert_eq!(state["pid"], pid);
    assert!(!dir.join("poststop.json").exists());
    ok(rt.rt(&["delete", "--force", &id]));
    let (state, _) = read("poststop.json");
    assert_eq!(state["status"], "stopped");
    assert_eq!(state["id"], id.as_str());
    reap(pid as i32);
}

#[test]
fn a_failing_or_slow_create_hook_fails_create_and_leaves_nothing() {
    let mut rt = Rt::new();
    let failing = rt.id("hookfail");
    let bundle = rt.bundle("hookfail", |config| {
        noninteractive(&["sleep", "1000"])(config);
        config["hooks"] = json!({"createRuntime": [{
            "path": "/bin/sh", "args": ["sh", "-c", "echo network setup failed >&2; exit 3"]
        }]});
    });
    let out = rt.dir.path().join("f.out");
    let created = rt.create(&bundle, &failing, &out, &[]);
    assert_eq!(created.status.code(), Some(1));
    let said = fs::read_to_string(&out).unwrap();
    assert!(
        said.contains("createRuntime hook #0 (/bin/sh) failed"),
        "{said}"
    );
    assert!(said.contains("network setup failed"), "{said}");
    assert!(!rt.root.join(&failing).exists());
    common::assert_no_cgroup(&format!("rt-{failing}"));

    let slow = rt.id("hookslow");
    let bundle = rt.bundle("hookslow", |config| {
        noninteractive(&["true"])(config);
        config["hooks"] = json!({"prestart": [{
            "path": "/bin/sleep", "args": ["sleep", "1000"], "timeout": 1
        }]});
    });
    let said = rt.create_refused(&bundle, &slow);
    assert!(said.contains("within its timeout of 1s"), "{said}");
    assert!(!rt.root.join(&slow).exists());
}

/// A hook (run by the host's or the container's sh) appending `point` to `order` and
/// keeping its stdin in `<dir>/<point>.json` and what `extra` prints in
/// `<dir>/<point>.seen`.
fn recording_hook(dir: &str, point: &str, extra: &str) -> Value {
    let script = format!(
        "echo {point} >> {dir}/order; cat > {dir}/{point}.json; {{ {extra} ; }} > {dir}/{point}.seen"
    );
    json!({"path": "/bin/sh", "args": ["sh", "-c", script], "timeout": 30})
}

fn ns_of(pid: &str, kind: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn in_container_hooks_run_in_its_namespaces_in_order_with_the_state() {
    let mut rt = Rt::new();
    let id = rt.id("inhooks");
    let shared = rt.dir.path().join("shared");
    fs::create_dir(&shared).unwrap();
    let host_dir = shared.to_str().unwrap().to_string();
    let rootfs = rt.dir.path().join("inhooks/rootfs");
    let seen = "for n in mnt pid uts; do readlink /proc/self/ns/$n; done; hostname; \
                grep -c \" ROOTFS \" /proc/self/mountinfo; test -x ROOTFS/bin/busybox && echo rootfs";
    let seen = seen.replace("ROOTFS", rootfs.to_str().unwrap());
    let bundle = rt.bundle("inhooks", |config| {
        noninteractive(&["sleep", "1000"])(config);
        config["hostname"] = json!("hooked");
        config["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/shared", "type": "bind", "source": host_dir,
            "options": ["rbind", "rw"]
        }));
        config["hooks"] = json!({
            "prestart": [recording_hook(&host_dir, "prestart", "true")],
            "createRuntime": [recording_hook(&host_dir, "createRuntime", "true")],
            // The host's path, in the container's namespaces before pivot_root.
            "createContainer": [recording_hook(&host_dir, "createContainer", &seen)],
            // The container's path (its busybox), after pivot_root.
            "startContainer": [recording_hook(
                "/shared", "startContainer",
                "for n in mnt pid uts; do readlink /proc/self/ns/$n; done; hostname; \
                 ls /shared/order && echo shared; cat /proc/self/status | grep ^Uid")],
            "poststart": [recording_hook(&host_dir, "poststart", "true")],
        });
    });
    let out = rt.dir.path().join("inhooks.out");
    ok(rt.create(&bundle, &id, &out, &[]));
    let order = || fs::read_to_string(shared.join("order")).unwrap();
    assert_eq!(order(), "prestart\ncreateRuntime\ncreateContainer\n");
    let pid = rt.state(&id)["pid"].as_i64().unwrap().to_string();
    let json = |point: &str| -> Value {
        serde_json::from_slice(&fs::read(shared.join(format!("{point}.json"))).unwrap()).unwrap()
    };
    let state = json("createContainer");
    assert_eq!(state["id"], id.as_str());
    assert_eq!(state["status"], "creating");
    assert_eq!(state["pid"].to_string(), pid);
    assert_eq!(state["bundle"], bundle.to_str().unwrap());
    // In the container's mount, pid and uts namespaces, not the runtime's, with the root
    // filesystem mounted (a mount point there, which it is not on the host).
    let lines = fs::read_to_string(shared.join("createContainer.seen")).unwrap();
    let lines: Vec<&str> = lines.lines().collect();
    let container_ns = [ns_of(&pid, "mnt"), ns_of(&pid, "pid"), ns_of(&pid, "uts")];
    assert_eq!(lines[..3], container_ns, "{lines:?}");
    assert_ne!(lines[0], ns_of("self", "mnt"));
    assert_ne!(lines[1], ns_of("self", "pid"));
    // The hostname is set after pivot_root (as in runc): still the host's copy here.
    let host_name = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(lines[3], host_name.trim(), "{lines:?}");
    assert_eq!(lines[4], "1", "{lines:?}");
    assert_eq!(lines[5], "rootfs", "{lines:?}");
    let host_mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!host_mounts.contains(&format!(" {} ", rootfs.display())));
    assert!(!shared.join("startContainer.json").exists());

    ok(rt.rt(&["start", &id]));
    assert_eq!(
        order(),
        "prestart\ncreateRuntime\ncreateContainer\nstartContainer\npoststart\n"
    );
    let state = json("startContainer");
    assert_eq!(state["status"], "created");
    assert_eq!(state["pid"].to_string(), pid);
    assert_eq!(state["id"], id.as_str());
    let lines = fs::read_to_string(shared.join("startContainer.seen")).unwrap();
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines[..3], container_ns, "{lines:?}");
    assert_eq!(lines[3], "hooked");
    assert_eq!(lines[5], "shared", "{lines:?}");
    assert!(lines[6].starts_with("Uid:\t0\t"), "{lines:?}");
    assert_eq!(rt.status(&id), "running");
    ok(rt.rt(&["delete", "--force", &id]));
    reap(pid.parse().unwrap());
}

/// A createContainer hook sees the container's mounts (a bind's content, its /proc) at
/// the root filesystem's path, as runc's does: they are attached before pivot_root.
#[test]
fn a_create_container_hook_sees_the_binds_and_proc_of_the_container() {
    let mut rt = Rt::new();
    let id = rt.id("hookmounts");
    let shared = rt.dir.path().join("hookshared");
    fs::create_dir(&shared).unwrap();
    let host_dir = shared.to_str().unwrap().to_string();
    let data = rt.dir.path().join("hookdata");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("from-host"), "").unwrap();
    let data = data.to_str().unwrap().to_string();
    let rootfs = rt.dir.path().join("hookmounts/rootfs");
    let seen = "ls ROOTFS/data; test -e ROOTFS/proc/1/stat && echo proc; \
                readlink ROOTFS/proc/1/ns/pid"
        .replace("ROOTFS", rootfs.to_str().unwrap());
    let bundle = rt.bundle("hookmounts", |config| {
        noninteractive(&["sleep", "1000"])(config);
        config["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/data", "type": "bind", "source": data,
            "options": ["rbind", "ro"]
        }));
        config["hooks"] = json!({
            "createContainer": [recording_hook(&host_dir, "createContainer", &seen)],
        });
    });
    let out = rt.dir.path().join("hookmounts.out");
    let created = rt.create(&bundle, &id, &out, &[]);
    assert!(created.status.success(), "{:?}", fs::read_to_string(&out));
    let pid = rt.state(&id)["pid"].as_i64().unwrap().to_string();
    let seen = fs::read_to_string(shared.join("createContainer.seen")).unwrap();
    assert_eq!(
        seen.lines().collect::<Vec<_>>(),
        ["from-host", "proc", ns_of(&pid, "pid").as_str()],
        "{seen}"
    );
    // Nothing of it reached the host: the mounts are in the container's namespace.
    assert!(!rootfs.join("data/from-host").exists());
    assert!(!rootfs.join("proc/1").exists());
    ok(rt.rt(&["delete", "--force", &id]));
    reap(pid.parse().unwrap());
}

#[test]
fn a_failing_or_slow_in_container_hook_fails_create_or_start_and_leaves_nothing() {
    let mut rt = Rt::new();
    let failing = rt.id("cchookfail");
    let bundle = rt.bundle("cchookfail", |config| {
        noninteractive(&["sleep", "1000"])(config);
        config["hooks"] = json!({"createContainer": [{
            "path": "/bin/sh", "args": ["sh", "-c", "cat >/dev/null; echo no device here >&2; exit 4"]
        }]});
    });
    let said = rt.create_refused(&bundle, &failing);
    assert!(
        said.contains(
            "createContainer hook #0 (/bin/sh) failed: it exited with status 4: no device here"
        ),
        "{said}"
    );
    assert!(!rt.root.join(&failing).exists());
    common::assert_no_cgroup(&format!("rt-{failing}"));

    // A hook past its timeout is killed with what it started.
    let marker = format!("{}", 400000 + std::process::id());
    let slow = rt.id("cchookslow");
    let bundle = rt.bundle("cchookslow", |config| {
        noninteractive(&["true"])(config);
        config["hooks"] = json!({"createContainer": [{
            "path": "/bin/sh", "args": ["sh", "-c", format!("sleep {marker}; true")], "timeout": 1
        }]});
    });
    let said = rt.create_refused(&bundle, &slow);
    assert!(
        said.contains(
            "createContainer hook #0 (/bin/sh) failed: it did not finish within its timeout"
        ),
        "{said}"
    );
    assert!(!rt.root.join(&slow).exists());
    common::assert_no_cgroup(&format!("rt-{slow}"));
    assert!(
        wait_for(10, || common::pids_with(&format!("sleep {marker}"))
            .is_empty()),
        "the hook's sleep was left running"
    );

    // startContainer: create succeeds, start fails with the hook's words, the container
    // is stopped and deletable, and its command never ran.
    let start_fails = rt.id("schookfail");
    let ran = rt.dir.path().join("ran");
    let ran_dir = ran.parent().unwrap().to_str().unwrap().to_string();
    let bundle = rt.bundle("schookfail", |config| {
        noninteractive(&["sh", "-c", "touch /host/ran-command; sleep 1000"])(config);
        config["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/host", "type": "bind", "source": ran_dir, "options": ["rbind", "rw"]
        }));
        config["hooks"] = json!({"startContainer": [{
            "path": "/bin/sh", "args": ["sh", "-c", "echo not today >&2; exit 5"]
        }]});
    });
    let out = rt.dir.path().join("schookfail.out");
    ok(rt.create(&bundle, &start_fails, &out, &[]));
    let pid = rt.state(&start_fails)["pid"].as_i64().unwrap() as i32;
    let started = rt.rt(&["start", &start_fails]);
    assert_eq!(started.status.code(), Some(1));
    let said = String::from_utf8_lossy(&started.stderr);
    assert!(
        said.contains(
            "startContainer hook #0 (/bin/sh) failed: it exited with status 5: not today"
        ),
        "{said}"
    );
    assert_eq!(reap(pid), 1);
    assert_eq!(rt.status(&start_fails), "stopped");
    assert!(!rt.dir.path().join("ran-command").exists());
    ok(rt.rt(&["delete", &start_fails]));
    assert!(!rt.root.join(&start_fails).exists());
}

#[test]
fn process_limits_groups_sysctl_and_seccomp_conditions_apply() {
    let mut rt = Rt::new();
    let id = rt.id("limits");
    let script = "ulimit -n; ulimit -Hn; cat /proc/self/oom_score_adj; \
                  grep Groups /proc/self/status; cat /proc/sys/net/ipv4/ip_forward; \
                  cat /proc/sys/kernel/shmmni; \
                  kill -0 $$ && echo zero-allowed; kill -CONT $$ && echo cont-allowed";
    let bundle = rt.bundle("limits", |config| {
        noninteractive(&["sh", "-c", script])(config);
        config["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654}]);
        config["process"]["oomScoreAdj"] = json!(432);
        config["process"]["user"]["additionalGids"] = json!([10, 20]);
        config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"});
        // kill(pid, 0) is refused with EPERM; other signals pass (argument condition).
        config["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                          "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}]}]
        });
    });
    let out = rt
        .cmd()
        .args(["run", "--bundle", bundle.to_str().unwrap(), &id])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<String> = stdout(&out).lines().map(|l| l.trim().to_string()).collect();
    assert_eq!(lines[0], "321");
    assert_eq!(lines[1], "654");
    assert_eq!(lines[2], "432");
    assert_eq!(
        lines[3].split_whitespace().collect::<Vec<_>>(),
        ["Groups:", "10", "20"]
    );
    assert_eq!(lines[4], "1");
    assert_eq!(lines[5], "1234");
    assert_eq!(&lines[6..], ["cont-allowed"]);

    // A sysctl that is not the container's own is refused: it would change the host.
    let host_swappiness = fs::read_to_string("/proc/sys/vm/swappiness").unwrap();
    let attack = rt.id("sysctl");
    let bundle = rt.bundle("sysctl", |config| {
        noninteractive(&["true"])(config);
        config["linux"]["sysctl"] = json!({"vm.swappiness": "7"});
    });
    let said = rt.create_refused(&bundle, &attack);
    assert!(said.contains("is not namespaced"), "{said}");
    assert_eq!(
        fs::read_to_string("/proc/sys/vm/swappiness").unwrap(),
        host_swappiness
    );
    // Nor a net.* one when the container shares the host's network namespace.
    let shared = rt.id("sysnet");
    let bundle = rt.bundle("sysnet", |config| {
        noninteractive(&["true"])(config);
        let namespaces = config["linux"]["namespaces"].as_array_mut().unwrap();
        namespaces.retain(|n| n["type"] != "network");
        config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    });
    let said = rt.create_refused(&bundle, &shared);
    assert!(
        said.contains("needs a namespace of the container's own"),
        "{said}"
    );
}

#[test]
fn a_container_joins_another_ones_network_namespace_by_path() {
    let mut rt = Rt::new();
    let first = rt.id("netns-a");
    let bundle = rt.bundle("netns-a", noninteractive(&["sleep", "1000"]));
    ok(rt.create(&bundle, &first, &rt.dir.path().join("a.out"), &[]));
    let pid = rt.state(&first)["pid"].as_i64().unwrap();
    let theirs = fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();

    let second = rt.id("netns-b");
    let path = format!("/proc/{pid}/ns/net");
    let bundle = rt.bundle("netns-b", |config| {
        noninteractive(&["readlink", "/proc/self/ns/net"])(config);
        for ns in config["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "network" {
                ns["path"] = json!(path);
            }
        }
    });
    let out = rt
        .cmd()
        .args(["run", "--bundle", bundle.to_str().unwrap(), &second])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), theirs.to_str().unwrap());
    assert_ne!(fs::read_link("/proc/self/ns/net").unwrap(), theirs);

    // A namespace path that cannot be opened fails create, saying which.
    let third = rt.id("netns-c");
    let bundle = rt.bundle("netns-c", |config| {
        noninteractive(&["true"])(config);
        config["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "ipc", "path": "/no/such/ns"}));
    });
    let said = rt.create_refused(&bundle, &third);
    assert!(said.contains("/no/such/ns"), "{said}");
    ok(rt.rt(&["delete", "--force", &first]));
    reap(pid as i32);
}

/// Creates a container (with a memory limit) whose config asks for `cgroups_path` (ID
/// replaced by its id); returns its id and pid.
fn create_in_cgroup(rt: &mut Rt, name: &str, cgroups_path: &str, extra: &[&str]) -> (String, i64) {
    let id = rt.id(name);
    let path = cgroups_path.replace("ID", &id);
    let bundle = rt.bundle(name, |config| {
        noninteractive(&["sleep", "1000"])(config);
        config["linux"]["cgroupsPath"] = json!(path);
        config["linux"]["resources"]["memory"] = json!({"limit": 64 << 20});
    });
    let out = rt.dir.path().join(format!("{name}.out"));
    let created = rt.create(&bundle, &id, &out, extra);
    assert!(
        created.status.success(),
        "{}",
        fs::read_to_string(&out).unwrap()
    );
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    (id, pid)
}

fn memory_cgroup_of(pid: i64) -> String {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    text.lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let controllers = f.nth(1)?;
            controllers
                .split(',')
                .any(|c| c == "memory")
                .then(|| f.next())?
        })
        .map(str::to_string)
        .unwrap_or_default()
}

#[test]
fn cgroups_path_absolute_relative_and_systemd_forms_are_honoured_and_removed() {
    let mut rt = Rt::new();
    let tag = format!("mctestcg{}", std::process::id());
    let v1_memory = Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists();

    // Absolute (containerd's /<namespace>/<id>): below the roots, in every hierarchy.
    let (abs, pid) = create_in_cgroup(&mut rt, "cg-abs", &format!("/{tag}/ID"), &[]);
    let expected = format!("/{tag}/{abs}");
    assert_eq!(unified_cgroup_of(pid), expected);
    if v1_memory {
        assert_eq!(memory_cgroup_of(pid), expected);
        let limit = Path::new("/sys/fs/cgroup/memory").join(&expected[1..]);
        assert_eq!(
            fs::read_to_string(limit.join("memory.limit_in_bytes"))
                .unwrap()
                .trim(),
            (64u64 << 20).to_string()
        );
    }
    assert!(cgroup_dirs(&format!("mycontainer/rt-{abs}")).is_empty());
    // A parent that existed before stays; one create made goes with the container.
    let kept = format!("{tag}-kept");
    let own_parent = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        Path::new("/sys/fs/cgroup").join(&kept)
    } else {
        Path::new("/sys/fs/cgroup/unified").join(&kept)
    };
    fs::create_dir(&own_parent).unwrap();
    let (in_kept, kept_pid) = create_in_cgroup(&mut rt, "cg-kept", &format!("/{kept}/ID"), &[]);
    assert_eq!(unified_cgroup_of(kept_pid), format!("/{kept}/{in_kept}"));

    // Relative: below the runtime's own cgroup (on v2 its parent).
    let own = unified_cgroup_of(std::process::id() as i64);
    let base = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        Path::new(&own)
            .parent()
            .unwrap_or(Path::new("/"))
            .to_path_buf()
    } else {
        PathBuf::from(&own)
    };
    let (rel, rel_pid) = create_in_cgroup(&mut rt, "cg-rel", &format!("{tag}-rel/ID"), &[]);
    let rel_expected = base.join(format!("{tag}-rel/{rel}"));
    assert_eq!(unified_cgroup_of(rel_pid), rel_expected.to_str().unwrap());

    // --systemd-cgroup slice:prefix:name: the unit's path, made with cgroupfs.
    let id = rt.id("cg-sd");
    let bundle = rt.bundle("cg-sd", |config| {
        noninteractive(&["sleep", "1000"])(config);
        config["linux"]["cgroupsPath"] = json!(format!("{tag}-a.slice:pfx:{id}"));
    });
    let out = rt.dir.path().join("cg-sd.out");
    let created = rt
        .cmd()
        .arg("--systemd-cgroup")
        .args(["create", "--bundle", bundle.to_str().unwrap(), &id])
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(rt.dir.path().join("cg-sd.err")).unwrap())
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        fs::read_to_string(rt.dir.path().join("cg-sd.err")).unwrap()
    );
    let sd_pid = rt.state(&id)["pid"].as_i64().unwrap();
    assert_eq!(
        unified_cgroup_of(sd_pid),
        format!("/{tag}.slice/{tag}-a.slice/pfx-{id}.scope")
    );
    // Not of that form: refused, saying which form.
    let bad = rt.id("cg-bad");
    let bundle = rt.bundle("cg-bad", |config| {
        noninteractive(&["true"])(config);
        config["linux"]["cgroupsPath"] = json!("/not/systemd");
    });
    let refused = rt
        .cmd()
        .arg("--systemd-cgroup")
        .args(["create", "--bundle", bundle.to_str().unwrap(), &bad])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("slice:prefix:name"),
        "{}",
        stderr(&refused)
    );
    // And `..` is refused without systemd.
    let dots = rt.id("cg-dots");
    let bundle = rt.bundle("cg-dots", |config| {
        noninteractive(&["true"])(config);
        config["linux"]["cgroupsPath"] = json!("/a/../b");
    });
    let refused = rt.rt(&["create", "--bundle", bundle.to_str().unwrap(), &dots]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("invalid cgroupsPath"),
        "{}",
        stderr(&refused)
    );

    // delete removes each cgroup and the levels create made, in every hierarchy.
    for (id, pid) in [
        (&abs, pid),
        (&in_kept, kept_pid),
        (&rel, rel_pid),
        (&id, sd_pid),
    ] {
        ok(rt.rt(&["delete", "--force", id]));
        reap(pid as i32);
    }
    assert_no_cgroup_at(&tag);
    assert_no_cgroup_at(&format!("{tag}.slice"));
    assert_no_cgroup_at(&rel_expected.parent().unwrap().to_string_lossy()[1..]);
    assert!(
        own_parent.is_dir(),
        "a parent create did not make was removed"
    );
    assert!(cgroup_dirs(&format!("{kept}/{in_kept}")).is_empty());
    fs::remove_dir(&own_parent).unwrap();
}

/// The spec's namespace entry of `typ` given `path`.
fn join_namespace(config: &mut Value, typ: &str, path: &str) {
    let list = config["linux"]["namespaces"].as_array_mut().unwrap();
    list.retain(|ns| ns["type"] != typ);
    list.push(json!({"type": typ, "path": path}));
}

#[test]
fn a_container_joins_another_ones_pid_namespace_and_sees_its_processes() {
    let mut rt = Rt::new();
    let first = rt.id("pidns-a");
    let bundle = rt.bundle("pidns-a", noninteractive(&["sleep", "1000"]));
    ok(rt.create(&bundle, &first, &rt.dir.path().join("a.out"), &[]));
    ok(rt.rt(&["start", &first]));
    let pid = rt.state(&first)["pid"].as_i64().unwrap();
    assert!(wait_for(20, || fs::read_to_string(format!(
        "/proc/{pid}/comm"
    ))
    .is_ok_and(|c| c == "sleep\n")));
    let theirs = fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap();

    let second = rt.id("pidns-b");
    let path = format!("/proc/{pid}/ns/pid");
    let bundle = rt.bundle("pidns-b", |config| {
        noninteractive(&[
            "sh",
            "-c",
            "cat /proc/1/comm; echo me=$$; readlink /proc/self/ns/pid",
        ])(config);
        join_namespace(config, "pid", &path);
    });
    let out = rt
        .cmd()
        .args(["run", "--bundle", bundle.to_str().unwrap(), &second])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    // The first container's init is pid 1 of the namespace we are in; we are not.
    assert_eq!(lines[0], "sleep", "{text}");
    assert_ne!(lines[1], "me=1", "{text}");
    assert_eq!(lines[2], theirs.to_str().unwrap(), "{text}");
    assert_ne!(fs::read_link("/proc/self/ns/pid").unwrap(), theirs);

    // A path that is no pid namespace is refused, saying so.
    let third = rt.id("pidns-c");
    let net = format!("/proc/{pid}/ns/net");
    let bundle = rt.bundle("pidns-c", |config| {
        noninteractive(&["true"])(config);
        join_namespace(config, "pid", &net);
    });
    let said = rt.create_refused(&bundle, &third);
    assert!(said.contains("namespace of another type"), "{said}");
    let fourth = rt.id("pidns-d");
    let bundle = rt.bundle("pidns-d", |config| {
        noninteractive(&["true"])(config);
        join_namespace(config, "pid", "/proc/self/stat");
    });
    let said = rt.create_refused(&bundle, &fourth);
    assert!(said.contains("not a namespace"), "{said}");

    ok(rt.rt(&["delete", "--force", &first]));
    reap(pid as i32);
}

#[test]
fn a_container_joins_a_mount_namespace_by_path_and_sets_its_root_up_there() {
    let mut rt = Rt::new();
    // A mount namespace kept by a bind mount of its nsfs file (on a private mount, as
    // the kernel requires), as `ip netns` keeps network ones.
    let holder = rt.dir.path().join("mntns");
    fs::create_dir(&holder).unwrap();
    let sh = |script: &str| {
        let out = Command::new("sh").args(["-c", script]).output().unwrap();
        assert!(out.status.success(), "{script}: {}", stderr(&out));
    };
    let h = holder.display();
    let _unmount = Unmount(vec![holder.join("ns"), holder.clone()]);
    sh(&format!(
        "mount --bind {h} {h} && mount --make-private {h} && touch {h}/ns && unshare --mount={h}/ns true"
    ));
    let ns_ino = fs::metadata(holder.join("ns")).map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.ino()
    });
    let id = rt.id("mntns");
    let path = holder.join("ns").to_str().unwrap().to_string();
    let bundle = rt.bundle("mntns", |config| {
        noninteractive(&["sleep", "1000"])(config);
        join_namespace(config, "mount", &path);
    });
    let out = rt.dir.path().join("m.out");
    let created = rt.create(&bundle, &id, &out, &[]);
    let pid = rt.state(&id)["pid"].as_i64();
    assert!(
        created.status.success(),
        "{}",
        fs::read_to_string(&out).unwrap()
    );
    let pid = pid.unwrap();
    let ns = fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap();
    assert_eq!(
        ns.to_str().unwrap(),
        format!("mnt:[{}]", ns_ino.as_ref().unwrap())
    );
    // Its root is the bundle's rootfs, set up inside that namespace.
    let root_has = |p: &str| Path::new(&format!("/proc/{pid}/root{p}")).exists();
    assert!(root_has("/bin/busybox") && !root_has(rt.dir.path().to_str().unwrap()));
    ok(rt.rt(&["delete", "--force", &id]));
    reap(pid as i32);
}

/// Unmounts its paths (deepest first as given) on drop, failed assertion or not.
struct Unmount(Vec<PathBuf>);

impl Drop for Unmount {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = nix::mount::umount2(path.as_path(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// The runtime commands `commands` started at once (each its argument list), waited for.
fn concurrently(rt: &Rt, bundle: &Path, commands: &[&[&str]]) -> Vec<Output> {
    let children: Vec<_> = commands
        .iter()
        .map(|args| {
            let mut cmd = rt.cmd();
            for arg in args.iter() {
                cmd.arg(if *arg == "BUNDLE" {
                    bundle.to_str().unwrap()
                } else {
                    arg
                });
            }
            // A created container keeps its stdio: a file, not a pipe we would wait on.
            let err = tempfile::tempfile_in(rt.dir.path()).unwrap();
            let child = cmd
                .stdout(Stdio::null())
                .stderr(err.try_clone().unwrap())
                .spawn()
                .unwrap();
            (child, err)
        })
        .collect();
    children
        .into_iter()
        .map(|(mut child, mut err)| {
            let status = child.wait().unwrap();
            let mut stderr = Vec::new();
            std::io::Seek::rewind(&mut err).unwrap();
            err.read_to_end(&mut stderr).unwrap();
            Output {
                status,
                stdout: Vec::new(),
                stderr,
            }
        })
        .collect()
}

/// Whatever state container `id` is in, it is whole: a record with a live process in
/// its cgroup (`Some(pid)`), or nothing at all (no record, lock file or cgroup).
fn consistent(rt: &Rt, id: &str) -> Option<i64> {
    let cgroup = format!("mycontainer/rt-{id}");
    let state = rt.rt(&["state", id]);
    if !state.status.success() {
        assert!(
            stderr(&state).contains("does not exist"),
            "{}",
            stderr(&state)
        );
        assert!(!rt.root.join(id).exists(), "a directory without a record");
        assert!(
            !rt.root.join(format!(".lock:{id}")).exists(),
            "lock file left"
        );
        assert_no_cgroup_at(&cgroup);
        return None;
    }
    let state: Value = serde_json::from_str(&stdout(&state)).unwrap();
    let pid = state["pid"].as_i64().unwrap();
    assert!(pid > 0, "{state}");
    assert_eq!(state["status"], "created", "{state}");
    let procs: Vec<String> = cgroup_dirs(&cgroup)
        .iter()
        .map(|d| fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default())
        .collect();
    assert!(
        !procs.is_empty() && procs.iter().all(|p| p.trim() == pid.to_string()),
        "container {pid} not alone in its cgroup: {procs:?}"
    );
    Some(pid)
}

#[test]
fn concurrent_commands_on_one_id_leave_it_whole() {
    let mut rt = Rt::new();
    let id = rt.id("race");
    let bundle = rt.bundle("race", noninteractive(&["sleep", "1000"]));
    let create: &[&str] = &["create", "--bundle", "BUNDLE", &id];
    let delete: &[&str] = &["delete", "--force", &id];

    // Four creates of one id: one wins, the others are told the id is taken.
    let outs = concurrently(&rt, &bundle, &[create, create, create, create]);
    let won = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(won, 1, "{:?}", outs.iter().map(stderr).collect::<Vec<_>>());
    for lost in outs.iter().filter(|o| !o.status.success()) {
        assert!(stderr(lost).contains("already exists"), "{}", stderr(lost));
    }
    let pid = consistent(&rt, &id).expect("the winner's container");
    ok(rt.rt(delete));
    reap(pid as i32);

    // create racing delete --force, again and again: each round ends whole.
    for _ in 0..6 {
        let outs = concurrently(&rt, &bundle, &[create, delete, delete]);
        for out in &outs[1..] {
            assert!(out.status.success(), "delete: {}", stderr(out));
        }
        if let Some(pid) = consistent(&rt, &id) {
            assert!(outs[0].status.success());
            ok(rt.rt(delete));
            reap(pid as i32);
        }
        assert!(consistent(&rt, &id).is_none());
    }

    // kill racing delete of a running container.
    for _ in 0..4 {
        ok(rt.create(&bundle, &id, &rt.dir.path().join("race.out"), &[]));
        ok(rt.rt(&["start", &id]));
        let pid = rt.state(&id)["pid"].as_i64().unwrap();
        let kill: &[&str] = &["kill", &id, "KILL"];
        let outs = concurrently(&rt, &bundle, &[kill, delete, kill]);
        assert!(outs[1].status.success(), "delete: {}", stderr(&outs[1]));
        for out in [&outs[0], &outs[2]] {
            let said = stderr(out);
            assert!(
                out.status.success()
                    || said.contains("not running")
                    || said.contains("does not exist"),
                "kill: {said}"
            );
        }
        reap(pid as i32);
        assert!(consistent(&rt, &id).is_none());
    }
}

/// Host uid (and gid) of the container's root in the user namespace tests.
const MAPPED_ROOT: u32 = 100000;

fn uid_of_process(pid: &str) -> String {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn a_user_namespace_maps_root_to_an_unprivileged_host_id_that_cannot_reach_the_host() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut rt = Rt::new();
    // The mapped root must reach its root filesystem and the bind sources (as with
    // runc, the directories on the way must be searchable by it).
    fs::set_permissions(rt.dir.path(), fs::Permissions::from_mode(0o711)).unwrap();
    let shared = rt.dir.path().join("usershared");
    fs::create_dir(&shared).unwrap();
    std::os::unix::fs::chown(&shared, Some(MAPPED_ROOT), Some(MAPPED_ROOT)).unwrap();
    let secret = rt.dir.path().join("secret");
    fs::write(&secret, "host secret\n").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let host_ro = rt.dir.path().join("hostro");
    fs::create_dir(&host_ro).unwrap();
    fs::write(host_ro.join("file"), "untouched\n").unwrap();
    let script = "cat /proc/self/uid_map /proc/self/gid_map; echo id=$(id -u):$(id -g); \
                  touch /shared/made-inside; \
                  cat /secret 2>/dev/null && echo READ-SECRET || echo secret-denied; \
                  mount -o remount,rw,bind /hostro 2>/dev/null; \
                  echo x 2>/dev/null > /hostro/file && echo WROTE-HOST || echo host-file-held; \
                  mount -t tmpfs none /hostro && echo mine > /hostro/file && echo tmpfs-over-hostro; \
                  echo x > /dev/null && head -c1 /dev/zero | od -An -tx1; echo done; sleep 1000";
    let id = rt.id("userns");
    let paths = (
        shared.to_str().unwrap().to_string(),
        secret.to_str().unwrap().to_string(),
        host_ro.to_str().unwrap().to_string(),
    );
    let bundle = rt.bundle("userns", |config| {
        noninteractive(&["sh", "-c", script])(config);
        config["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        let map = json!([{"containerID": 0, "hostID": MAPPED_ROOT, "size": 65536}]);
        config["linux"]["uidMappings"] = map.clone();
        config["linux"]["gidMappings"] = map;
        let mounts = config["mounts"].as_array_mut().unwrap();
        // cgroup v1 hierarchies (this hybrid host) cannot be mounted in a user namespace.
        mounts.retain(|m| m["type"] != "cgroup");
        mounts.push(json!({"destination": "/shared", "type": "bind", "source": paths.0, "options": ["rbind", "rw"]}));
        mounts.push(json!({"destination": "/secret", "type": "bind", "source": paths.1, "options": ["bind", "rw"]}));
        mounts.push(json!({"destination": "/hostro", "type": "bind", "source": paths.2, "options": ["rbind", "ro"]}));
        // Every capability the attacks need, in the user namespace.
        let caps = json!(["CAP_SYS_ADMIN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_CHOWN", "CAP_FOWNER", "CAP_SETUID", "CAP_SETGID"]);
        for set in ["bounding", "effective", "permitted"] {
            config["process"]["capabilities"][set] = caps.clone();
        }
    });
    let chowned = Command::new("chown")
        .args(["-R", "-h", &format!("{MAPPED_ROOT}:{MAPPED_ROOT}")])
        .arg(bundle.join("rootfs"))
        .status()
        .unwrap();
    assert!(chowned.success());
    let out = rt.dir.path().join("userns.out");
    let said = create_start_until_done(&rt, &bundle, &id, &out);
    let lines = squeezed_lines(&said);
    let expected = [
        "0 100000 65536",
        "0 100000 65536",
        "id=0:0",
        "secret-denied",
        "host-file-held",
        "tmpfs-over-hostro",
        "00",
        "done",
    ];
    assert_eq!(lines, expected, "{said}");
    // Outside, the container's root is an ordinary host user.
    let pid = rt.state(&id)["pid"].as_i64().unwrap().to_string();
    assert_eq!(uid_of_process(&pid), MAPPED_ROOT.to_string());
    assert_ne!(ns_of(&pid, "user"), ns_of("self", "user"));
    let made = fs::metadata(shared.join("made-inside")).unwrap();
    assert_eq!((made.uid(), made.gid()), (MAPPED_ROOT, MAPPED_ROOT));
    // Even remounted read-write (its CAP_SYS_ADMIN is the user namespace's, which owns
    // that mount) the host's file is not its own; and the tmpfs it mounted over the
    // host's directory stayed in its namespace: the host's files are as they were.
    assert_eq!(
        fs::read_to_string(host_ro.join("file")).unwrap(),
        "untouched\n"
    );
    assert_eq!(fs::read_dir(&host_ro).unwrap().count(), 1);

    // exec joins the user namespace first: the same ids, inside and out.
    let out = rt.rt(&[
        "exec",
        &id,
        "sh",
        "-c",
        "cat /proc/self/uid_map; id -u; cat /secret",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let said = squeezed_lines(&stdout(&out));
    assert_eq!(said, ["0 100000 65536", "0"]);
    ok(rt.rt(&["delete", "--force", &id]));
    reap(pid.parse().unwrap());
}

#[test]
fn user_namespace_configs_without_maps_or_with_bad_ones_are_refused_and_leave_nothing() {
    let mut rt = Rt::new();
    let no_maps = rt.id("usernomap");
    let bundle = rt.bundle("usernomap", |config| {
        noninteractive(&["true"])(config);
        config["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
    });
    let said = rt.create_refused(&bundle, &no_maps);
    assert!(said.contains("needs linux.uidMappings"), "{said}");

    let maps_only = rt.id("usermaponly");
    let bundle = rt.bundle("usermaponly", |config| {
        noninteractive(&["true"])(config);
        config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 1}]);
    });
    let said = rt.create_refused(&bundle, &maps_only);
    assert!(said.contains("need a user namespace"), "{said}");

    // Two ranges mapping the same container ids: the kernel refuses the map.
    let overlapping = rt.id("useroverlap");
    let bundle = rt.bundle("useroverlap", |config| {
        noninteractive(&["true"])(config);
        config["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        let map = json!([
            {"containerID": 0, "hostID": 100000, "size": 10},
            {"containerID": 5, "hostID": 200000, "size": 10}
        ]);
        config["linux"]["uidMappings"] = map.clone();
        config["linux"]["gidMappings"] = map;
    });
    let said = rt.create_refused(&bundle, &overlapping);
    assert!(
        said.contains("cannot write the container's uid_map"),
        "{said}"
    );
    assert!(!rt.root.join(&overlapping).exists());
    common::assert_no_cgroup(&format!("rt-{overlapping}"));
}

/// A pod's user namespace (and network namespace), made outside the runtime: `unshare`
/// holding them with `sleep`, the maps written by us (host root). Killed on drop.
struct NsHolder {
    child: std::process::Child,
}

impl NsHolder {
    fn new(map: &str) -> NsHolder {
        NsHolder::with(map, &[])
    }

    /// With `extra` unshare flags (`--pid --fork --kill-child`: a pid namespace, its init
    /// the sleep, killed with the holder).
    fn with(map: &str, extra: &[&str]) -> NsHolder {
        let child = Command::new("unshare")
            .args(["--user", "--net"])
            .args(extra)
            .args(["sleep", "1000"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let holder = NsHolder { child };
        let pid = holder.pid();
        assert!(
            wait_for(20, || fs::read_link(format!("/proc/{pid}/ns/user")).ok()
                != fs::read_link("/proc/self/ns/user").ok()),
            "unshare made no user namespace"
        );
        fs::write(format!("/proc/{pid}/uid_map"), map).unwrap();
        fs::write(format!("/proc/{pid}/gid_map"), map).unwrap();
        holder
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// The processes in the holder's user namespace (the holder included).
    fn members(&self) -> Vec<String> {
        let theirs = ns_of(&self.pid(), "user");
        let mut found = Vec::new();
        for entry in fs::read_dir("/proc").unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.parse::<u32>().is_ok()
                && fs::read_link(entry.path().join("ns/user"))
                    .is_ok_and(|l| l.to_string_lossy() == theirs)
            {
                found.push(name);
            }
        }
        found
    }
}

impl Drop for NsHolder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bundle whose container joins `holder`'s user and network namespaces by path, its
/// rootfs owned by the mapped root, running `script` with capabilities enough for the
/// attacks (in the joined namespace).
fn joining_bundle(rt: &Rt, name: &str, holder: &NsHolder, script: &str, secret: &Path) -> PathBuf {
    let pid = holder.pid();
    let secret = secret.to_str().unwrap().to_string();
    let bundle = rt.bundle(name, |config| {
        noninteractive(&["sh", "-c", script])(config);
        join_namespace(config, "user", &format!("/proc/{pid}/ns/user"));
        join_namespace(config, "network", &format!("/proc/{pid}/ns/net"));
        let mounts = config["mounts"].as_array_mut().unwrap();
        // cgroup v1 hierarchies (this hybrid host) cannot be mounted in a user namespace.
        mounts.retain(|m| m["type"] != "cgroup");
        mounts.push(json!({"destination": "/secret", "type": "bind", "source": secret, "options": ["bind", "rw"]}));
        let caps = json!(["CAP_SYS_ADMIN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_MKNOD", "CAP_CHOWN", "CAP_FOWNER", "CAP_SETUID", "CAP_SETGID"]);
        for set in ["bounding", "effective", "permitted"] {
            config["process"]["capabilities"][set] = caps.clone();
        }
    });
    let chowned = Command::new("chown")
        .args(["-R", "-h", &format!("{MAPPED_ROOT}:{MAPPED_ROOT}")])
        .arg(bundle.join("rootfs"))
        .status()
        .unwrap();
    assert!(chowned.success());
    bundle
}

/// Kubernetes' `hostUsers: false` with a pod user namespace: the container joins a user
/// namespace made elsewhere (first, so the namespaces it creates are owned by it), writes
/// no maps, and its root has that namespace's powers only.
#[test]
fn a_container_joins_a_user_namespace_by_path_and_its_root_stays_unprivileged_on_the_host() {
    use std::os::unix::fs::PermissionsExt;
    let mut rt = Rt::new();
    // The mapped root must reach its root filesystem (as with runc).
    fs::set_permissions(rt.dir.path(), fs::Permissions::from_mode(0o711)).unwrap();
    let secret = rt.dir.path().join("secret");
    fs::write(&secret, "host secret\n").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let holder = NsHolder::new(&format!("0 {MAPPED_ROOT} 65536"));
    let script = "cat /proc/self/uid_map /proc/self/gid_map; \
                  readlink /proc/self/ns/user; readlink /proc/self/ns/net; echo id=$(id -u):$(id -g); \
                  cat /secret 2>&1; touch /dev/made-file && echo dev-writable; \
                  mknod /dev/made-null c 1 3 2>&1; \
                  mount -t tmpfs none /dev/shm && echo own-mounts; \
                  echo done; sleep 1000";
    let bundle = joining_bundle(&rt, "userjoin", &holder, script, &secret);
    let id = rt.id("userjoin");
    let out = rt.dir.path().join("userjoin.out");
    let said = create_start_until_done(&rt, &bundle, &id, &out);
    let lines = squeezed_lines(&said);
    let hpid = holder.pid();
    let expected = [
        format!("0 {MAPPED_ROOT} 65536"),
        format!("0 {MAPPED_ROOT} 65536"),
        ns_of(&hpid, "user"),
        ns_of(&hpid, "net"),
        "id=0:0".to_string(),
        "cat: can't open '/secret': Permission denied".to_string(),
        "dev-writable".to_string(),
        "mknod: /dev/made-null: Operation not permitted".to_string(),
        "own-mounts".to_string(),
        "done".to_string(),
    ];
    assert_eq!(lines, expected, "{said}");
    // Outside: the holder's namespaces, the container's root an ordinary host user.
    let pid = rt.state(&id)["pid"].as_i64().unwrap().to_string();
    assert_eq!(ns_of(&pid, "user"), ns_of(&hpid, "user"));
    assert_eq!(ns_of(&pid, "net"), ns_of(&hpid, "net"));
    assert_ne!(ns_of(&pid, "mnt"), ns_of(&hpid, "mnt"));
    assert_eq!(uid_of_process(&pid), MAPPED_ROOT.to_string());
    assert_eq!(fs::read_to_string(&secret).unwrap(), "host secret\n");
    // The maps are the holder's, as they were: nothing was written.
    assert_eq!(
        fs::read_to_string(format!("/proc/{pid}/uid_map"))
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["0", &MAPPED_ROOT.to_string(), "65536"]
    );
    // exec joins the same user namespace first.
    let out = rt.rt(&[
        "exec",
        &id,
        "sh",
        "-c",
        "id -u; readlink /proc/self/ns/user",
    ]);
    assert_eq!(
        stdout(&out).lines().collect::<Vec<_>>(),
        ["0", ns_of(&hpid, "user").as_str()],
        "{}",
        stderr(&out)
    );
    ok(rt.rt(&["delete", "--force", &id]));
    reap(pid.parse().unwrap());
    assert_eq!(holder.members(), [hpid]);
}

/// A pod sharing its pid namespace too: the pid namespace (owned by the pod's user
/// namespace) is joined along with the user namespace, and the state's pid is the
/// container's host pid.
#[test]
fn a_container_joins_a_pod_user_and_pid_namespace_and_sees_its_processes() {
    use std::os::unix::fs::PermissionsExt;
    let mut rt = Rt::new();
    fs::set_permissions(rt.dir.path(), fs::Permissions::from_mode(0o711)).unwrap();
    let secret = rt.dir.path().join("secret");
    fs::write(&secret, "x\n").unwrap();
    let holder = NsHolder::with(
        &format!("0 {MAPPED_ROOT} 65536"),
        &["--pid", "--fork", "--kill-child"],
    );
    let hpid = holder.pid();
    let pid_ns = format!("/proc/{hpid}/ns/pid_for_children");
    assert!(
        wait_for(20, || fs::read_link(&pid_ns)
            .is_ok_and(|l| l != fs::read_link("/proc/self/ns/pid").unwrap())),
        "unshare made no pid namespace"
    );
    let script = "echo self=$$; cat /proc/1/cmdline | tr '\\0' ' '; echo; echo done; sleep 1000";
    let bundle = joining_bundle(&rt, "userpid", &holder, script, &secret);
    let path = bundle.join("config.json");
    let mut config: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    join_namespace(&mut config, "pid", &pid_ns);
    fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let id = rt.id("userpid");
    let out = rt.dir.path().join("userpid.out");
    let said = create_start_until_done(&rt, &bundle, &id, &out);
    let lines: Vec<&str> = said.lines().map(str::trim).collect();
    assert_ne!(lines[0], "self=1", "{said}");
    assert_eq!(lines[1], "sleep 1000", "{said}");
    let pid = rt.state(&id)["pid"].as_i64().unwrap().to_string();
    assert_eq!(
        ns_of(&pid, "pid"),
        fs::read_link(&pid_ns).unwrap().to_string_lossy()
    );
    assert_eq!(ns_of(&pid, "user"), ns_of(&hpid, "user"));
    assert_eq!(uid_of_process(&pid), MAPPED_ROOT.to_string());
    // The host pid the state gives is the process that said it ran (its NSpid's last
    // entry is the pid it printed).
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert_eq!(
        nspid.split_whitespace().last().unwrap(),
        lines[0].trim_start_matches("self="),
        "{status}"
    );
    ok(rt.rt(&["delete", "--force", &id]));
    reap(pid.parse().unwrap());
}

#[test]
fn a_bad_user_namespace_path_or_other_maps_fail_create_and_leave_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let mut rt = Rt::new();
    fs::set_permissions(rt.dir.path(), fs::Permissions::from_mode(0o711)).unwrap();
    let secret = rt.dir.path().join("secret");
    fs::write(&secret, "x\n").unwrap();
    let holder = NsHolder::new(&format!("0 {MAPPED_ROOT} 65536"));
    let hpid = holder.pid();
    let refused = |rt: &mut Rt, name: &str, edit: &dyn Fn(&mut Value)| -> String {
        let id = rt.id(name);
        let bundle = joining_bundle(rt, name, &holder, "echo RAN", &secret);
        let path = bundle.join("config.json");
        let mut config: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        edit(&mut config);
        fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let said = rt.create_refused(&bundle, &id);
        assert!(!said.contains("RAN"), "{said}");
        assert!(!rt.root.join(&id).exists(), "state of {id} left behind");
        common::assert_no_cgroup(&format!("rt-{id}"));
        assert_no_cgroup_at(&format!("mycontainer/rt-{id}"));
        // No process of ours is left in the namespace.
        assert_eq!(holder.members(), std::slice::from_ref(&hpid), "{said}");
        said
    };
    let said = refused(&mut rt, "usernopath", &|c| {
        join_namespace(c, "user", "/no/such/userns")
    });
    assert!(
        said.contains("cannot open the user namespace /no/such/userns"),
        "{said}"
    );
    let net = format!("/proc/{hpid}/ns/net");
    let said = refused(&mut rt, "usernotuser", &|c| join_namespace(c, "user", &net));
    assert!(said.contains("a namespace of another type"), "{said}");
    let said = refused(&mut rt, "userown", &|c| {
        join_namespace(c, "user", "/proc/self/ns/user")
    });
    assert!(said.contains("is the runtime's own"), "{said}");
    // Maps beside the path must be the namespace's own (as runc requires): these are
    // checked in the namespace, after the cgroup and the clone, which are undone.
    let said = refused(&mut rt, "usermaps", &|c| {
        let map = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
        c["linux"]["uidMappings"] = map.clone();
        c["linux"]["gidMappings"] = map;
    });
    assert!(
        said.contains("has another uid map than linux.uidMappings"),
        "{said}"
    );
    // The namespace's own maps are accepted.
    let id = rt.id("usermatch");
    let bundle = joining_bundle(&rt, "usermatch", &holder, "cat /proc/self/gid_map", &secret);
    let path = bundle.join("config.json");
    let mut config: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let map = json!([{"containerID": 0, "hostID": MAPPED_ROOT, "size": 65536}]);
    config["linux"]["uidMappings"] = map.clone();
    config["linux"]["gidMappings"] = map;
    fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let out = rt
        .cmd()
        .args(["run", "--bundle", bundle.to_str().unwrap(), &id])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).split_whitespace().collect::<Vec<_>>(),
        ["0", &MAPPED_ROOT.to_string(), "65536"]
    );
}

#[test]
fn a_user_namespace_without_its_own_network_gets_the_hosts_sysfs_read_only_and_hooks_run_in_it() {
    use std::os::unix::fs::PermissionsExt;
    let mut rt = Rt::new();
    fs::set_permissions(rt.dir.path(), fs::Permissions::from_mode(0o711)).unwrap();
    let shared = rt.dir.path().join("usershared");
    fs::create_dir(&shared).unwrap();
    std::os::unix::fs::chown(&shared, Some(MAPPED_ROOT), Some(MAPPED_ROOT)).unwrap();
    let host_dir = shared.to_str().unwrap().to_string();
    let id = rt.id("usernonet");
    let script =
        "test -d /sys/kernel && echo sys; touch /sys/kernel/x 2>/dev/null || echo sys-ro; \
                  echo done; sleep 1000";
    let bundle = rt.bundle("usernonet", |config| {
        noninteractive(&["sh", "-c", script])(config);
        let namespaces = config["linux"]["namespaces"].as_array_mut().unwrap();
        namespaces.retain(|n| n["type"] != "network");
        namespaces.push(json!({"type": "user"}));
        let map = json!([{"containerID": 0, "hostID": MAPPED_ROOT, "size": 65536}]);
        config["linux"]["uidMappings"] = map.clone();
        config["linux"]["gidMappings"] = map;
        config["mounts"]
            .as_array_mut()
            .unwrap()
            .retain(|m| m["type"] != "cgroup");
        // The host's sh, in the container's user namespace: its root, a host id outside.
        config["hooks"] = json!({"createContainer": [recording_hook(
            &host_dir, "createContainer",
            "id -u; grep ^Uid /proc/self/status; readlink /proc/self/ns/user")]});
    });
    let chowned = Command::new("chown")
        .args(["-R", "-h", &format!("{MAPPED_ROOT}:{MAPPED_ROOT}")])
        .arg(bundle.join("rootfs"))
        .status()
        .unwrap();
    assert!(chowned.success());
    let out = rt.dir.path().join("usernonet.out");
    let created = rt.create(&bundle, &id, &out, &[]);
    assert!(created.status.success(), "{:?}", fs::read_to_string(&out));
    let pid = rt.state(&id)["pid"].as_i64().unwrap().to_string();
    let seen = fs::read_to_string(shared.join("createContainer.seen")).unwrap();
    let seen: Vec<&str> = seen.lines().collect();
    assert_eq!(seen[0], "0", "{seen:?}");
    assert!(
        seen[1].starts_with("Uid:\t0\t"),
        "in the namespace its root: {seen:?}"
    );
    assert_eq!(seen[2], ns_of(&pid, "user"));
    ok(rt.rt(&["start", &id]));
    assert!(
        wait_for(20, || file_contains(&out, "done")),
        "{:?}",
        fs::read_to_string(&out)
    );
    assert_eq!(fs::read_to_string(&out).unwrap(), "sys\nsys-ro\ndone\n");
    assert_eq!(ns_of(&pid, "net"), ns_of("self", "net"));
    ok(rt.rt(&["delete", "--force", &id]));
    reap(pid.parse().unwrap());
}

/// `create` killed while a createContainer hook runs: the container's process and the
/// hook die with it (parent-death signals, then the pid namespace), and `delete
/// --force` reclaims the rest (checked by `Rt`'s drop: no state, no cgroup).
#[test]
fn a_create_killed_during_a_container_hook_leaves_nothing_running() {
    let mut rt = Rt::new();
    let id = rt.id("hookkill");
    let marker = format!("{}", 500000 + std::process::id());
    let bundle = rt.bundle("hookkill", |config| {
        noninteractive(&["sleep", "1000"])(config);
        config["hooks"] = json!({"createContainer": [{
            "path": "/bin/sh", "args": ["sh", "-c", format!("sleep {marker}; true")]
        }]});
    });
    let mut create = rt
        .cmd()
        .args(["create", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sleeping = format!("sleep {marker}");
    assert!(
        wait_for(20, || !common::pids_with(&sleeping).is_empty()),
        "the hook never ran"
    );
    // The container's process: create's child, ours (a subreaper's) once create dies.
    let mut children = Vec::new();
    for task in fs::read_dir(format!("/proc/{}/task", create.id())).unwrap() {
        let listed = fs::read_to_string(task.unwrap().path().join("children")).unwrap();
        children.extend(listed.split_whitespace().map(|p| p.parse::<i32>().unwrap()));
    }
    assert_eq!(children.len(), 1, "{children:?}");
    create.kill().unwrap();
    create.wait().unwrap();
    // Killed by its parent-death signal (as the shim would, we reap it).
    assert_eq!(reap(children[0]), 128 + libc::SIGKILL);
    assert!(
        wait_for(20, || common::pids_with(&sleeping).is_empty()),
        "the hook outlived create"
    );
    ok(rt.rt(&["delete", "--force", &id]));
}

/// A config.json with a `cgroup` mount (as `spec` writes it) gets the same view as
/// `run`: on v1 and hybrid hosts the hierarchies the container joined and those it
/// inherited below the host's root (never a host root), read-only, the container's
/// limit in it.
#[test]
fn the_cgroup_mount_shows_the_hierarchies_read_only_with_the_limits() {
    let mut rt = Rt::new();
    let id = rt.id("cgview");
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let limit_file = if v2 {
        "memory.max"
    } else {
        "memory/memory.limit_in_bytes"
    };
    let script = format!(
        "ls /sys/fs/cgroup | sort | tr '\\n' ' '; echo; cat /sys/fs/cgroup/{limit_file}; \
         echo 1 > /sys/fs/cgroup/{limit_file}"
    );
    let bundle = rt.bundle("cgview", |config| {
        noninteractive(&["sh", "-c", &script])(config);
        config["linux"]["resources"]["memory"] = json!({"limit": 64 << 20});
    });
    let out = rt
        .cmd()
        .args(["run", "--bundle", bundle.to_str().unwrap(), &id])
        .output()
        .unwrap();
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}{}", stderr(&out));
    if v2 {
        assert!(lines[0].contains("cgroup.controllers"), "{text}");
    } else {
        // Worked out from the host's view of a created twin's cgroups.
        let twin = rt.id("cgview-twin");
        let bundle = rt.bundle("cgview-twin", |config| {
            noninteractive(&["sleep", "1000"])(config);
            config["linux"]["resources"]["memory"] = json!({"limit": 64 << 20});
        });
        let twin_out = rt.dir.path().join("cgview-twin.out");
        ok(rt.create(&bundle, &twin, &twin_out, &[]));
        let pid = rt.state(&twin)["pid"].as_i64().unwrap();
        let listing = common::cgroup_view_listing(pid);
        ok(rt.rt(&["delete", "--force", &twin]));
        assert!(listing.split(' ').any(|d| d == "memory"), "{listing}");
        assert_eq!(lines[0].trim_end(), listing);
    }
    assert_eq!(lines[1], "67108864");
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
}

/// runc's rule for a container without a pid namespace of its own: once its init has
/// exited, the rest of the container is killed before the init is reaped, so no process
/// of the container outlives it (with a pid namespace of its own the kernel does that).
/// Checked from inside: a background process watches the init with `kill -0` (true while
/// it is an unreaped zombie) and leaves a mark once it is reaped; it must never get to,
/// and be dead when `run` returns. With `--keep` too (before: it lived on until
/// `delete`, and left its mark).
#[test]
fn without_a_pid_namespace_the_rest_of_the_container_dies_before_its_init_is_reaped() {
    let mut rt = Rt::new();
    let shared = rt.dir.path().join("shared");
    fs::create_dir(&shared).unwrap();
    let script =
        "(while kill -0 $$ 2>/dev/null; do usleep 1000; done; echo reaped > /shared/seen) & \
                  echo $! > /shared/bg; echo init-done; exit 3";
    let source = shared.to_str().unwrap().to_string();
    let bundle = rt.bundle("nopidns", move |config| {
        noninteractive(&["sh", "-c", script])(config);
        config["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != "pid");
        config["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/shared", "type": "bind", "source": source,
            "options": ["rbind", "rw"]
        }));
    });
    for keep in [true, false] {
        let _ = fs::remove_file(shared.join("seen"));
        let _ = fs::remove_file(shared.join("bg"));
        let id = rt.id(if keep { "nopidns-keep" } else { "nopidns" });
        let mut cmd = rt.cmd();
        cmd.arg("run");
        if keep {
            cmd.arg("--keep");
        }
        let out = cmd
            .args(["--bundle", bundle.to_str().unwrap(), &id])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        assert_eq!(stdout(&out), "init-done\n");
        let bg: i32 = fs::read_to_string(shared.join("bg"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let outlived = common::alive(bg);
        let seen = shared.join("seen").exists();
        // Our orphan (we are a subreaper): reaped whatever happened.
        if !outlived {
            let _ = waitpid(Pid::from_raw(bg), Some(WaitPidFlag::WNOHANG));
        }
        assert!(
            !outlived && !seen,
            "keep={keep}: a process of the container outlived its init (alive when run returned: {outlived}, saw the init reaped: {seen})"
        );
        if keep {
            assert_eq!(rt.status(&id), "stopped");
            ok(rt.rt(&["delete", &id]));
        }
        assert!(!rt.root.join(&id).exists());
    }
}
