//! The container lifecycle: `run -d` with its detached supervisor, ps, logs, stop, kill,
//! rm, inspect, start, commit, and what happens when supervisors are killed or two
//! clients act on one container at once. Real containers (busybox rootfs); each test
//! checks that no process, cgroup or mount is left.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

fn supervisor_pids(id: &str) -> Vec<i32> {
    pids_with("supervise --lock-fd")
        .into_iter()
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(id))
                .unwrap_or(false)
        })
        .collect()
}

fn init_pid(w: &World, id: &str) -> i32 {
    w.state(id)["pid"].as_i64().unwrap() as i32
}

fn status(w: &World, id: &str) -> String {
    w.state(id)["status"].as_str().unwrap().to_string()
}

fn wait_exited(w: &World, id: &str) {
    assert!(
        wait_for(20, || status(w, id) == "exited"),
        "container {id} did not exit: {}",
        w.state(id)
    );
}

#[test]
fn run_d_returns_at_once_and_a_detached_supervisor_owns_the_container() {
    let w = World::new();
    let id = w.run_detached(&["--name", "sleeper"], &["sleep", "1000"]);
    // It returned while its command still runs (no wall-clock bound: a slow machine,
    // such as the emulated cgroup v2 VM, may take seconds to start a container).
    assert_eq!(status(&w, &id), "running");
    let pid = init_pid(&w, &id);
    assert!(alive(pid));
    // The container's init sits in its cgroup; its supervisor runs in its own session.
    let cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        cgroup
            .lines()
            .any(|l| l.contains("/mycontainer/") && l.ends_with(&format!("-{id}"))),
        "{cgroup}"
    );
    // Its supervisor is the init's parent, in a session of its own (found by parent: a
    // supervisor's cmdline is briefly empty while it execs the small binary).
    let supervisors = [parent_pid(pid)];
    assert!(
        supervisor_pids(&id).len() <= 1,
        "{:?}",
        supervisor_pids(&id)
    );
    assert_eq!(
        session_of(supervisors[0]),
        supervisors[0],
        "supervisor is not a session leader"
    );
    // The init's stdin is /dev/null; its stdout goes to the supervisor, not the CLI.
    let stdin = fs::read_link(format!("/proc/{pid}/fd/0")).unwrap();
    assert_eq!(stdin.to_string_lossy(), "/dev/null");
    // Another command does not take the running container for an orphan.
    ok(w.mc(&["gc"]));
    assert_eq!(status(&w, &id), "running");
    assert!(alive(pid));

    ok(w.mc(&["rm", "-f", "sleeper"]));
    assert!(wait_for(10, || !alive(pid)));
    assert!(wait_for(10, || supervisor_pids(&id).is_empty()));
    w.assert_no_containers();
    assert_no_cgroup(&id);
}

#[test]
fn run_d_supervisor_keeps_no_descriptor_the_caller_left_open() {
    let w = World::new();
    // The caller leaves descriptor 9 open (not close-on-exec) on a file of its own: the
    // supervisor (spawned without a fork-time hook) must close it itself, and neither
    // it nor the container's init may keep it for the container's lifetime.
    let marker = w.dir.path().join("callers-open-file");
    fs::write(&marker, "x").unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("exec \"$@\" 9<\"$MARKER\"")
        .arg("sh")
        .arg(BIN)
        .arg("--root")
        .arg(&w.root)
        .args(["run", "-d", "--rootfs"])
        .arg(&w.rootfs)
        .args(["sleep", "60"])
        .env("MARKER", &marker)
        .env_remove("MYCONTAINER_ROOT")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let id = ok(out).trim().to_string();
    let pid = init_pid(&w, &id);
    let supervisor = parent_pid(pid);
    let holds_marker = |pid: i32| {
        fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| fs::read_link(e.unwrap().path()).ok())
            .any(|target| target == marker)
    };
    // The probe sees an open descriptor of the file (ours, held for the check).
    let held = fs::File::open(&marker).unwrap();
    assert!(holds_marker(std::process::id() as i32));
    drop(held);
    assert!(
        !holds_marker(supervisor),
        "the supervisor kept the caller's descriptor"
    );
    assert!(
        !holds_marker(pid),
        "the container's init got the caller's descriptor"
    );
    // And the supervisor is in a session of its own, which it made itself.
    assert_eq!(
        session_of(supervisor),
        supervisor,
        "supervisor is not a session leader"
    );
    ok(w.mc(&["rm", "-f", &id]));
    assert!(wait_for(10, || !alive(pid)));
    w.assert_no_containers();
    assert_no_cgroup(&id);
}

#[test]
fn run_d_t_gives_the_container_a_terminal_and_logs_what_it_prints() {
    let w = World::new();
    let id = w.run_detached(&["-t"], &["sh", "-c", "tty; echo through-the-pty"]);
    wait_exited(&w, &id);
    let logs = ok(w.mc(&["logs", &id]));
    // The pty turns "\n" into "\r\n", as under Docker.
    assert_eq!(logs, "/dev/pts/0\r\nthrough-the-pty\r\n");
    assert_eq!(w.state(&id)["exit_code"], 0);
    assert_no_cgroup(&id);
}

#[test]
fn ps_lists_running_containers_and_with_a_all_of_them() {
    let w = World::new();
    let up = w.run_detached(&["--name", "up-one"], &["sleep", "1000"]);
    let done = w.run_detached(&["--name", "done-one"], &["sh", "-c", "exit 3"]);
    wait_exited(&w, &done);

    let ps = ok(w.mc(&["ps"]));
    let lines: Vec<&str> = ps.lines().collect();
    assert!(lines[0].starts_with("CONTAINER ID"), "{ps}");
    for column in ["IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"] {
        assert!(lines[0].contains(column), "{ps}");
    }
    assert_eq!(lines.len(), 2, "{ps}");
    assert!(lines[1].starts_with(&up[..12]), "{ps}");
    assert!(lines[1].contains("Up "), "{ps}");
    assert!(lines[1].ends_with("up-one"), "{ps}");
    assert!(lines[1].contains("\"sleep 1000\""), "{ps}");

    let all = ok(w.mc(&["ps", "-a"]));
    let exited = all.lines().find(|l| l.contains("done-one")).unwrap();
    assert!(exited.contains("Exited (3) "), "{all}");
    assert!(exited.contains(" ago"), "{all}");

    let ids = ok(w.mc(&["ps", "-a", "-q"]));
    let mut ids: Vec<&str> = ids.lines().collect();
    ids.sort();
    let mut expected = vec![&up[..12], &done[..12]];
    expected.sort();
    assert_eq!(ids, expected);
    let full = ok(w.mc(&["ps", "-q", "--no-trunc"]));
    assert_eq!(full.trim(), up);
    // Any unique prefix names a container.
    ok(w.mc(&["stop", "-t", "0", &up[..5]]));
    assert_eq!(ok(w.mc(&["ps", "-q"])), "");
}

#[test]
fn logs_replays_streams_tails_stamps_and_follows() {
    let w = World::new();
    let id = w.run_detached(&[], &["sh", "-c", "echo one; echo two >&2; echo three"]);
    wait_exited(&w, &id);
    let out = w.mc(&["logs", &id]);
    assert_eq!(ok(out.clone()), "one\nthree\n");
    assert_eq!(stderr(&out), "two\n");
    // The streams are read separately, so "two" may be recorded after "three": the
    // tail is the last record of either.
    let tail = w.mc(&["logs", "--tail", "1", &id]);
    let last = format!("{}{}", ok(tail.clone()), stderr(&tail));
    assert!(last == "three\n" || last == "two\n", "{last:?}");
    let tail = w.mc(&["logs", "--tail", "3", &id]);
    assert_eq!(ok(tail.clone()), "one\nthree\n");
    assert_eq!(stderr(&tail), "two\n");
    let stamped = ok(w.mc(&["logs", "-t", &id]));
    for line in stamped.lines() {
        let (stamp, text) = line.split_once(' ').unwrap();
        assert!(
            stamp.len() == 30 && stamp.ends_with('Z') && stamp.contains('T'),
            "{line}"
        );
        assert!(text == "one" || text == "three", "{line}");
    }

    // -f prints output as it comes and returns when the container exits: it shows the
    // first line while the container waits for the test, then the rest once let go.
    let id = w.run_detached(
        &[],
        &[
            "sh",
            "-c",
            "echo first; until [ -e /tmp/go ]; do sleep 0.05; done; echo second",
        ],
    );
    let mut follow = w.spawn(&["logs", "-f", &id]);
    let mut lines = BufReader::new(follow.stdout.take().unwrap());
    let mut first = String::new();
    lines.read_line(&mut first).unwrap();
    assert_eq!(first, "first\n");
    assert!(follow.try_wait().unwrap().is_none(), "logs -f ended early");
    ok(w.mc(&["exec", &id, "touch", "/tmp/go"]));
    let mut rest = String::new();
    lines.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "second\n");
    assert!(follow.wait().unwrap().success());
    assert_eq!(status(&w, &id), "exited");
}

#[test]
fn stop_sends_sigterm_then_sigkill_after_the_timeout() {
    let w = World::new();
    // A shell as PID 1 with a TERM trap exits on SIGTERM.
    let polite = w.run_detached(
        &[],
        &[
            "sh",
            "-c",
            "trap 'echo bye; exit 0' TERM; echo ready; while true; do sleep 0.1; done",
        ],
    );
    // PID 1 without a handler ignores SIGTERM: only SIGKILL stops it. Its own stop
    // timeout is an hour, so a stop that ignored `-t 1` would take an hour, not 1 s:
    // told apart without a tight time bound.
    let stubborn = w.run_detached(&["--stop-timeout", "3600"], &["sleep", "3600"]);
    let (p1, p2) = (init_pid(&w, &polite), init_pid(&w, &stubborn));
    // A SIGTERM before the trap is set would be ignored too (a fixed sleep here lost
    // that race under load).
    w.wait_logged(&polite, "ready\n");

    assert_eq!(ok(w.mc(&["stop", &polite])).trim(), polite);
    // Exit code 0: it ended on SIGTERM, before the grace period's SIGKILL (137).
    assert_eq!(w.state(&polite)["exit_code"], 0);
    assert_eq!(ok(w.mc(&["logs", &polite])), "ready\nbye\n");

    let started = Instant::now();
    ok(w.mc(&["stop", "-t", "1", &stubborn]));
    let took = started.elapsed();
    assert!(
        // At least the -t 1 grace period, and not the container's hour (the upper
        // bound only tells 1 s from 3600 s; any load fits in it).
        took >= Duration::from_millis(900) && took < Duration::from_secs(600),
        "{took:?}"
    );
    assert_eq!(w.state(&stubborn)["exit_code"], 137);
    assert!(!alive(p1) && !alive(p2));
    // Stopping a stopped container is fine; the records stay (no --rm).
    ok(w.mc(&["stop", &stubborn]));
    assert_eq!(w.container_ids().len(), 2);
    assert_no_cgroup(&polite);
    assert_no_cgroup(&stubborn);
}

#[test]
fn kill_delivers_the_signal_and_refuses_stopped_containers() {
    let w = World::new();
    let id = w.run_detached(
        &["--name", "trapper"],
        &[
            "sh",
            "-c",
            "trap 'echo got-usr1' USR1; echo ready; while true; do sleep 0.1; done",
        ],
    );
    // The trap is set once it says so (a USR1 before would be ignored by PID 1).
    w.wait_logged("trapper", "ready");
    ok(w.mc(&["kill", "-s", "USR1", "trapper"]));
    assert!(wait_for(30, || ok(w.mc(&["logs", "trapper"])).contains("got-usr1")));
    assert_eq!(status(&w, &id), "running");
    ok(w.mc(&["kill", "trapper"]));
    wait_exited(&w, &id);
    assert_eq!(w.state(&id)["exit_code"], 137);
    let again = w.mc(&["kill", "trapper"]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("is not running"),
        "{}",
        stderr(&again)
    );
    let bad = w.mc(&["kill", "-s", "NOPE", "trapper"]);
    assert_eq!(bad.status.code(), Some(1));
}

#[test]
fn rm_refuses_a_running_container_and_rm_f_and_rm_flag_clean_everything() {
    let w = World::new();
    let id = w.run_detached(&["--name", "busy"], &["sleep", "1000"]);
    let pid = init_pid(&w, &id);
    let refused = w.mc(&["rm", "busy"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("is running"),
        "{}",
        stderr(&refused)
    );
    assert!(alive(pid));
    ok(w.mc(&["rm", "-f", "busy"]));
    assert!(!alive(pid));
    w.assert_no_containers();
    assert_no_cgroup(&id);
    // The name is free again.
    let again = w.run_detached(&["--name", "busy"], &["true"]);
    wait_exited(&w, &again);
    ok(w.mc(&["rm", "busy"]));

    // --rm: the supervisor removes the record when the command ends.
    let gone = w.run_detached(&["--rm"], &["sh", "-c", "sleep 0.3"]);
    assert!(wait_for(10, || w.container_ids().is_empty()));
    assert_no_cgroup(&gone);
    assert!(wait_for(10, || supervisor_pids(&gone).is_empty()));
    // stop of a --rm container: it stops and is gone when stop returns (stop waits for
    // its supervisor, which removes it). This failed once under load: stop's own mark
    // (stopped-by-user, a file in the record) landed while the supervisor removed the
    // directory, whose rmdir then failed; the supervisor gave up, stop returned.
    let stopped = w.run_detached(&["--rm", "--name", "ephemeral"], &["sleep", "1000"]);
    ok(w.mc(&["stop", "-t", "1", "ephemeral"]));
    assert!(w.container_ids().is_empty());
    assert_no_cgroup(&stopped);
}

/// `rm` of a container whose record says exited while its supervisor still holds the
/// record (it records the exit first, then detaches mounts and network and exits) waits
/// for the supervisor instead of saying "is running" (round 38: `rm` right after the
/// state said exited). The test holds the record's lock as such a supervisor does.
#[test]
fn rm_of_an_exited_container_waits_for_its_supervisor_to_let_go() {
    use std::os::fd::AsRawFd;
    let w = World::new();
    let id = w.run_detached(&["--name", "finishing"], &["true"]);
    wait_exited(&w, &id);
    assert!(wait_for(30, || supervisor_pids(&id).is_empty()));
    let record = fs::File::open(w.root.join("containers").join(&id)).unwrap();
    // SAFETY: flock on a descriptor we own.
    assert_eq!(unsafe { libc::flock(record.as_raw_fd(), libc::LOCK_EX) }, 0);
    let mut rm = w.spawn(&["rm", "finishing"]);
    // It polls (sleeping between looks) instead of failing.
    let polling = wait_for(30, || {
        rm.try_wait().unwrap().is_some() || sleeps_between_polls(rm.id())
    });
    assert!(polling);
    assert!(
        rm.try_wait().unwrap().is_none(),
        "rm did not wait: {}",
        stderr(&rm.wait_with_output().unwrap())
    );
    drop(record);
    assert_eq!(ok(rm.wait_with_output().unwrap()).trim(), "finishing");
    assert!(!w.root.join("containers").join(&id).exists());
}

/// A detached supervisor's stdio is /dev/null: what it fails to do is written in the
/// record (supervisor.log), and the next commands warn until the removal is done.
#[test]
fn a_supervisor_that_cannot_remove_its_rm_record_says_why() {
    let w = World::new();
    let id = w.run_detached(&["--rm", "--name", "pinned"], &["sleep", "1000"]);
    let pinned = w.root.join("containers").join(&id).join("upper/pinned");
    fs::write(&pinned, "x").unwrap();
    let chattr = std::process::Command::new("chattr")
        .arg("+i")
        .arg(&pinned)
        .output()
        .unwrap();
    if !chattr.status.success() {
        eprintln!(
            "skipped: chattr +i is not supported here: {}",
            stderr(&chattr)
        );
        ok(w.mc(&["rm", "-f", "pinned"]));
        return;
    }
    ok(w.mc(&["stop", "-t", "0", "pinned"]));
    let doomed = w.root.join("containers").join(format!(".removing-{id}"));
    let log = fs::read_to_string(doomed.join("supervisor.log")).unwrap_or_default();
    let pinned = doomed.join("upper/pinned");
    let unpin = || {
        std::process::Command::new("chattr")
            .arg("-i")
            .arg(&pinned)
            .status()
            .unwrap()
    };
    if !(log.contains("its supervisor failed") && log.contains("cannot remove")) {
        unpin();
        panic!("supervisor.log: {log:?}");
    }
    // The next command tries again, and says why it cannot.
    let ps = w.mc(&["ps", "-a"]);
    let warned = stderr(&ps).contains("cannot remove");
    assert!(unpin().success());
    assert!(warned, "{}", stderr(&ps));
    // Once the file can go, the next command finishes the removal.
    let ps = w.mc(&["ps", "-a"]);
    assert_eq!(stderr(&ps), "");
    assert!(w.container_ids().is_empty(), "{:?}", w.container_ids());
    assert_no_cgroup(&id);
    // The name is free again.
    let again = w.run_detached(&["--name", "pinned"], &["true"]);
    wait_exited(&w, &again);
}

#[test]
fn inspect_shows_state_config_and_limits_like_docker() {
    let w = World::new();
    let vol = w.dir.path().join("vol");
    fs::create_dir(&vol).unwrap();
    let volume = format!("{}:/data:ro", vol.display());
    let id = w.run_detached(
        &[
            "--name",
            "insp",
            "-h",
            "inspected",
            "-e",
            "GREETING=hi",
            "-w",
            "/tmp",
            "-m",
            "64m",
            "--pids-limit",
            "50",
            "--cpus",
            "0.5",
            "--cap-drop",
            "NET_RAW",
            "-v",
            &volume,
        ],
        &["sleep", "1000"],
    );
    let out = ok(w.mc(&["inspect", "insp"]));
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let c = &json[0];
    assert_eq!(c["Id"], id.as_str());
    assert_eq!(c["Name"], "/insp");
    assert_eq!(c["Path"], "sleep");
    assert_eq!(c["Args"], serde_json::json!(["1000"]));
    assert_eq!(c["State"]["Status"], "running");
    assert_eq!(c["State"]["Running"], true);
    let pid = c["State"]["Pid"].as_i64().unwrap();
    assert!(pid > 0 && alive(pid as i32));
    assert!(c["State"]["StartedAt"].as_str().unwrap().starts_with("20"));
    assert_eq!(c["State"]["FinishedAt"], "0001-01-01T00:00:00Z");
    assert_eq!(c["Config"]["Hostname"], "inspected");
    assert_eq!(c["Config"]["WorkingDir"], "/tmp");
    let env = c["Config"]["Env"].as_array().unwrap();
    assert!(env.iter().any(|e| e == "GREETING=hi"), "{env:?}");
    assert_eq!(c["HostConfig"]["Memory"], 64 << 20);
    assert_eq!(c["HostConfig"]["NanoCpus"], 500_000_000);
    assert_eq!(c["HostConfig"]["PidsLimit"], 50);
    assert_eq!(c["HostConfig"]["CapDrop"], serde_json::json!(["NET_RAW"]));
    assert_eq!(c["HostConfig"]["AutoRemove"], false);
    assert_eq!(c["Mounts"][0]["Destination"], "/data");
    assert_eq!(c["Mounts"][0]["RW"], false);
    assert!(c["LogPath"].as_str().unwrap().ends_with("container.log"));

    ok(w.mc(&["kill", "insp"]));
    wait_exited(&w, &id);
    let json: serde_json::Value = serde_json::from_str(&ok(w.mc(&["inspect", &id[..8]]))).unwrap();
    assert_eq!(json[0]["State"]["Status"], "exited");
    assert_eq!(json[0]["State"]["Running"], false);
    assert_eq!(json[0]["State"]["ExitCode"], 137);
    assert_ne!(json[0]["State"]["FinishedAt"], "0001-01-01T00:00:00Z");
    let missing = w.mc(&["inspect", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(stdout(&missing).trim(), "[]");
}

#[test]
fn start_reruns_a_stopped_container_with_its_files() {
    let w = World::new();
    let id = w.run_detached(
        &["--name", "again"],
        &["sh", "-c", "echo run >> /runs; wc -l < /runs; exit 5"],
    );
    wait_exited(&w, &id);
    // -a: prints this run's output and returns its exit code.
    let attached = w.mc(&["start", "-a", "again"]);
    assert_eq!(attached.status.code(), Some(5), "{}", stderr(&attached));
    assert_eq!(stdout(&attached), "2\n");
    assert_eq!(ok(w.mc(&["start", "again"])).trim(), "again");
    wait_exited(&w, &id);
    assert_eq!(ok(w.mc(&["logs", "--tail", "1", "again"])), "3\n");
    assert_eq!(w.state(&id)["exit_code"], 5);
    assert_no_cgroup(&id);
}

#[test]
fn exec_joins_the_containers_namespaces_and_cgroup_with_its_rules() {
    let w = World::new();
    let id = w.run_detached(
        &[
            "--name",
            "host",
            "-h",
            "inner",
            "--cap-drop",
            "ALL",
            "--cap-add",
            "CHOWN",
        ],
        &["sh", "-c", "echo made-by-init > /tmp/file; sleep 1000"],
    );
    let pid = init_pid(&w, &id);
    assert!(wait_for(30, || w
        .mc(&["exec", "host", "cat", "/tmp/file"])
        .stdout
        .starts_with(b"made-by-init")));
    for ns in ["pid", "mnt", "net", "uts", "ipc", "cgroup"] {
        let host_view = fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        let inside = ok(w.mc(&["exec", "host", "readlink", &format!("/proc/self/ns/{ns}")]));
        assert_eq!(inside.trim(), host_view.to_string_lossy(), "{ns} namespace");
    }
    assert_eq!(ok(w.mc(&["exec", "host", "hostname"])), "inner\n");
    // In the pid namespace: the init (sh, which exec'd its last command) is PID 1 there.
    assert_eq!(
        ok(w.mc(&["exec", "host", "cat", "/proc/1/comm"])),
        "sleep\n"
    );
    // In the cgroup, seen from the host while it runs.
    let mut sleeper = w
        .cmd()
        .args(["exec", "host", "sleep", "999"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let procs = format!("-{id}");
    assert!(wait_for(30, || pids_with("sleep 999").into_iter().any(
        |p| {
            fs::read_to_string(format!("/proc/{p}/cgroup"))
                .is_ok_and(|c| c.lines().any(|l| l.ends_with(&procs)))
        }
    )));
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    // The same capability rules as run: CHOWN only; none for a non-root user.
    let caps = ok(w.mc(&["exec", "host", "grep", "CapEff", "/proc/self/status"]));
    assert_eq!(caps.split_whitespace().last().unwrap(), "0000000000000001");
    let nobody = ok(w.mc(&[
        "exec",
        "-u",
        "nobody",
        "-w",
        "/tmp",
        "-e",
        "X=y",
        "host",
        "sh",
        "-c",
        "id -u; pwd; echo $X; grep CapEff /proc/self/status",
    ]));
    assert_eq!(nobody, "65534\n/tmp\ny\nCapEff:\t0000000000000000\n");
    // Exit codes pass through; a command exec cannot start is 126, as Docker.
    assert_eq!(
        w.mc(&["exec", "host", "sh", "-c", "exit 9"]).status.code(),
        Some(9)
    );
    let missing = w.mc(&["exec", "host", "no-such-command"]);
    assert_eq!(missing.status.code(), Some(126));
    assert!(
        stderr(&missing).contains("not found"),
        "{}",
        stderr(&missing)
    );
    // -t: a pty from the container's own devpts, its output copied to ours.
    let tty = ok(w.mc(&["exec", "-t", "host", "sh", "-c", "tty; echo in-pty"]));
    assert!(tty.starts_with("/dev/pts/"), "{tty:?}");
    assert!(tty.contains("in-pty"), "{tty:?}");
    // -i passes stdin.
    let mut cat = w
        .cmd()
        .args(["exec", "-i", "host", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    cat.stdin
        .take()
        .unwrap()
        .write_all(b"through stdin\n")
        .unwrap();
    assert_eq!(ok(cat.wait_with_output().unwrap()), "through stdin\n");
    // A stopped container cannot be exec'd into.
    ok(w.mc(&["stop", "-t", "0", "host"]));
    let stopped = w.mc(&["exec", "host", "true"]);
    assert_eq!(stopped.status.code(), Some(1));
    assert!(
        stderr(&stopped).contains("not running"),
        "{}",
        stderr(&stopped)
    );
}

/// exec's command is born in the container's pid namespace as a child of the CLI; the
/// process that joined the namespaces for it (in the host's pid namespace) is gone.
#[test]
fn exec_leaves_only_the_command_as_the_clis_child_in_the_containers_pid_namespace() {
    let w = World::new();
    let id = w.run_detached(&["--name", "spawned"], &["sleep", "1000"]);
    let mut cli = w
        .cmd()
        .args(["exec", "spawned", "sleep", "4711"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let cli_pid = cli.id() as i32;
    let children = |pid: i32| -> Vec<i32> {
        fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    let command = || {
        pids_with("sleep 4711").into_iter().find(|&p| {
            p != cli_pid
                && fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c.starts_with(b"sleep\0"))
        })
    };
    assert!(
        wait_for(30, || command().is_some()),
        "the exec'd sleep never ran"
    );
    let sleeper = command().unwrap();
    // The joining process exits (and is reaped) once it has reported the command.
    assert!(
        wait_for(30, || children(cli_pid) == vec![sleeper]),
        "the CLI's children: {:?}, the command: {sleeper}",
        children(cli_pid)
    );
    let status = fs::read_to_string(format!("/proc/{sleeper}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(field("PPid:"), vec![cli_pid.to_string()]);
    // Two pids: the host's and the container's (where the init is 1).
    let nspid = field("NSpid:");
    assert_eq!(nspid.len(), 2, "{status}");
    assert_ne!(nspid[1], "1");
    let init = init_pid(&w, &id);
    assert_eq!(
        fs::read_link(format!("/proc/{sleeper}/ns/pid")).unwrap(),
        fs::read_link(format!("/proc/{init}/ns/pid")).unwrap()
    );
    let _ = cli.kill();
    let _ = cli.wait();
}

#[test]
fn exec_works_in_a_foreground_container_too() {
    let w = World::new();
    let mut fg = w
        .run_cmd(&["--name", "fg"], &["sh", "-c", "sleep 1000"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    w.wait_running();
    assert_eq!(
        ok(w.mc(&["exec", "fg", "cat", "/proc/1/cmdline"])),
        "sleep\x001000\0"
    );
    ok(w.mc(&["stop", "-t", "1", "fg"]));
    let status = fg.wait().unwrap();
    assert_eq!(status.code(), Some(137));
}

#[test]
fn commit_turns_the_upper_dir_into_an_image_with_deletions() {
    let w = World::new();
    // An image in the store, from the built-in busybox recipe.
    ok(w.mc(&["run", "--rm", "busybox", "true"]));
    let base = w.mc(&[
        "run",
        "--name",
        "changer",
        "busybox",
        "sh",
        "-c",
        "echo added > /added; rm /bin/vi; mkdir -p /etc/newdir; echo x > /etc/newdir/f",
    ]);
    ok(base);
    let out = ok(w.mc(&["commit", "changer", "changed:v1"]));
    assert!(out.trim().starts_with("sha256:"), "{out}");
    let seen = ok(w.mc(&["run", "--rm", "changed:v1", "sh", "-c",
        "cat /added /etc/newdir/f; test -e /bin/vi && echo vi-still-there || echo vi-gone; ls /bin/busybox"]));
    assert_eq!(seen, "added\nx\nvi-gone\n/bin/busybox\n");
    // The image config is carried over: the default command still runs (sh, stdin empty).
    ok(w.mc(&["run", "--rm", "changed:v1"]));
    // The base image is untouched.
    let base = ok(w.mc(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "test -e /bin/vi && echo vi-here",
    ]));
    assert_eq!(base, "vi-here\n");
    // A --rootfs container has no image to build on.
    let dir_run = w.run_detached(&["--name", "from-dir"], &["true"]);
    wait_exited(&w, &dir_run);
    let refused = w.mc(&["commit", "from-dir", "x:1"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("not a stored image"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn a_killed_supervisor_takes_its_container_down_and_ps_tells_the_truth() {
    let w = World::new();
    let id = w.run_detached(&["--name", "victim"], &["sleep", "300"]);
    let pid = init_pid(&w, &id);
    // The init's parent: its cmdline is briefly empty while it execs the small binary.
    let supervisor = parent_pid(pid);
    // SAFETY: SIGKILL to the supervisor process this test started.
    assert_eq!(unsafe { libc::kill(supervisor, libc::SIGKILL) }, 0);
    // The container dies with it (parent-death signal).
    assert!(wait_for(10, || !alive(pid)));
    // The next command notices: exited, the cgroup reclaimed.
    let all = ok(w.mc(&["ps", "-a"]));
    assert!(all.contains("Exited (137)"), "{all}");
    assert_eq!(status(&w, &id), "exited");
    assert!(w.state(&id)["error"].as_str().unwrap().contains("killed"));
    // When it died is not known: not the time of the reclaim (Docker's zero time).
    let inspected: serde_json::Value =
        serde_json::from_str(&ok(w.mc(&["inspect", "victim"]))).unwrap();
    assert_eq!(inspected[0]["State"]["FinishedAt"], "0001-01-01T00:00:00Z");
    assert_no_cgroup(&id);
    assert_eq!(ok(w.mc(&["ps", "-q"])), "");
    // It can be started again and removed.
    ok(w.mc(&["start", "victim"]));
    assert_eq!(status(&w, &id), "running");
    ok(w.mc(&["rm", "-f", "victim"]));
    w.assert_no_containers();
}

#[test]
fn a_killed_foreground_cli_leaves_nothing_that_gc_does_not_reclaim() {
    let w = World::new();
    let mut cli = w
        .run_cmd(&["--name", "fg-victim"], &["sleep", "300"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let id = w.wait_running();
    let pid = init_pid(&w, &id);
    cli.kill().unwrap();
    cli.wait().unwrap();
    assert!(wait_for(10, || !alive(pid)));
    let gc = ok(w.mc(&["gc"]));
    assert!(
        gc.contains(&format!("marked container {id} exited")),
        "{gc}"
    );
    assert_no_cgroup(&id);
    assert!(ok(w.mc(&["ps", "-a"])).contains("Exited (137)"));
}

#[test]
fn two_clients_on_one_container_at_once_behave() {
    let w = World::new();
    // Two stops at once: both succeed, the container is stopped once.
    let id = w.run_detached(&["--name", "twice"], &["sleep", "300"]);
    let a = w.spawn(&["stop", "-t", "1", "twice"]);
    let b = w.spawn(&["stop", "-t", "1", "twice"]);
    ok(a.wait_with_output().unwrap());
    ok(b.wait_with_output().unwrap());
    assert_eq!(w.state(&id)["exit_code"], 137);

    // stop and rm -f at once: the container ends up removed, nothing leaks.
    let id = w.run_detached(&["--name", "contested"], &["sleep", "300"]);
    let pid = init_pid(&w, &id);
    let stop = w.spawn(&["stop", "-t", "5", "contested"]);
    let rm = w.spawn(&["rm", "-f", "contested"]);
    ok(rm.wait_with_output().unwrap());
    let stop = stop.wait_with_output().unwrap();
    // stop either saw it stop, or found it already removed.
    assert!(
        stop.status.success() || stderr(&stop).contains("no such container"),
        "{}",
        stderr(&stop)
    );
    assert!(!alive(pid));
    assert!(!w.container_ids().contains(&id));
    assert_no_cgroup(&id);

    // ps while containers are being started: never an error, never a warning.
    let starters: Vec<_> = (0..4)
        .map(|i| {
            w.spawn(&[
                "run",
                "-d",
                "--name",
                &format!("par{i}"),
                "--rootfs",
                w.rootfs.to_str().unwrap(),
                "sleep",
                "1000",
            ])
        })
        .collect();
    for _ in 0..20 {
        let ps = w.mc(&["ps", "-a"]);
        assert!(
            ps.status.success() && stderr(&ps).is_empty(),
            "{}",
            stderr(&ps)
        );
    }
    for s in starters {
        ok(s.wait_with_output().unwrap());
    }
    assert_eq!(ok(w.mc(&["ps", "-q"])).lines().count(), 4);
}

#[test]
fn users_and_groups_are_looked_up_in_the_layer_the_container_sees() {
    let w = World::new();
    ok(w.mc(&["run", "--rm", "busybox", "true"]));
    // Layer 2 adds a user (passwd and group); layer 3 only a group, as `groupadd` in a
    // later build step would.
    ok(w.mc(&["run", "--name", "adduser", "busybox", "sh", "-c",
        "echo 'alice:x:1000:1000::/home/alice:/bin/sh' >> /etc/passwd; echo 'alice:x:1000:' >> /etc/group"]));
    ok(w.mc(&["commit", "adduser", "users:1"]));
    ok(w.mc(&[
        "run",
        "--name",
        "addgroup",
        "users:1",
        "sh",
        "-c",
        "echo 'team:x:4242:alice' >> /etc/group",
    ]));
    ok(w.mc(&["commit", "addgroup", "users:2"]));
    let ids = ok(w.mc(&["run", "--rm", "-u", "alice:team", "users:2", "id"]));
    assert!(
        ids.contains("uid=1000") && ids.contains("gid=4242"),
        "{ids}"
    );
    // Without a group, alice's supplementary groups come from the top layer too.
    let ids = ok(w.mc(&["run", "--rm", "-u", "alice", "users:2", "id", "-G"]));
    assert!(ids.split_whitespace().any(|g| g == "4242"), "{ids}");
    // A later layer that deletes /etc/passwd takes the names away.
    ok(w.mc(&["run", "--name", "nopasswd", "users:2", "rm", "/etc/passwd"]));
    ok(w.mc(&["commit", "nopasswd", "users:3"]));
    let refused = w.mc(&["run", "--rm", "-u", "alice", "users:3", "true"]);
    assert_eq!(refused.status.code(), Some(125));
    assert!(
        stderr(&refused).contains("cannot find user \"alice\""),
        "{}",
        stderr(&refused)
    );
    w.remove_all();
}

/// Docker's exit codes for the managing verbs: 1 when they fail (125 is `run`'s own
/// failure), and `rm -f` of a container that is not there succeeds silently (scripts
/// under `set -e` clean up with it).
#[test]
fn managing_verbs_exit_1_and_rm_f_of_a_missing_container_exits_0() {
    let w = World::new();
    let id = w.run_detached(&["--name", "busy"], &["sleep", "1000"]);
    let running = w.mc(&["rm", "busy"]);
    assert_eq!(running.status.code(), Some(1), "{}", stderr(&running));
    assert_eq!(status(&w, &id), "running");
    for verb in [
        &["inspect", "nope"][..],
        &["rm", "nope"],
        &["stop", "nope"],
        &["kill", "nope"],
        &["logs", "nope"],
        &["start", "nope"],
        &["exec", "nope", "true"],
    ] {
        let out = w.mc(verb);
        assert_eq!(out.status.code(), Some(1), "{verb:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("no such container"), "{verb:?}");
    }
    let gone = w.mc(&["rm", "-f", "nope"]);
    assert_eq!(gone.status.code(), Some(0), "{}", stderr(&gone));
    assert_eq!(stdout(&gone), "");
    assert_eq!(stderr(&gone), "");
    // With a real one beside it: that one is removed and named, the missing one ignored.
    let mixed = w.mc(&["rm", "-f", "nope", "busy"]);
    assert_eq!(mixed.status.code(), Some(0), "{}", stderr(&mixed));
    assert_eq!(stdout(&mixed), "busy\n");
    // exec into a stopped container: 1; a command that cannot start: 126 (Docker's
    // "exec failed").
    let id = w.run_detached(&["--name", "idle"], &["sleep", "1000"]);
    let missing_cmd = w.mc(&["exec", "idle", "no-such-command"]);
    assert_eq!(
        missing_cmd.status.code(),
        Some(126),
        "{}",
        stderr(&missing_cmd)
    );
    ok(w.mc(&["stop", "-t", "0", "idle"]));
    wait_exited(&w, &id);
    let stopped = w.mc(&["exec", "idle", "true"]);
    assert_eq!(stopped.status.code(), Some(1), "{}", stderr(&stopped));
    // run's own failure stays 125.
    let refused = w.run(&["-d", "--restart", "sometimes"], &["true"]);
    assert_eq!(refused.status.code(), Some(125));
}

/// `exec -t` sets TERM=xterm as Docker does (and as `run -t` does), unless -e sets TERM;
/// without -t there is no TERM.
#[test]
fn exec_t_sets_term_unless_the_user_did() {
    let w = World::new();
    w.run_detached(&["--name", "termless"], &["sleep", "1000"]);
    let term = |args: &[&str]| -> String {
        let mut all = vec!["exec"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["termless", "sh", "-c", "echo \"TERM=$TERM\""]);
        ok(w.mc(&all)).trim().to_string()
    };
    assert_eq!(term(&["-t"]), "TERM=xterm");
    assert_eq!(term(&["-t", "-e", "TERM=vt100"]), "TERM=vt100");
    assert_eq!(term(&[]), "TERM=");
}

/// Resumes the stopped supervisors even when the test fails, so the guard's `rm -f`
/// does not wait for them for ever.
struct Resume(Vec<i32>);

impl Drop for Resume {
    fn drop(&mut self) {
        for &pid in &self.0 {
            // SAFETY: kill with a pid and a signal number.
            unsafe { libc::kill(pid, libc::SIGCONT) };
        }
    }
}

#[test]
fn stop_and_rm_f_wait_for_a_slow_supervisor_instead_of_giving_up() {
    // Both used to give up 10 s after SIGKILL while a busy machine's supervisor was
    // merely slow to record the exit: stop with "did not stop after SIGKILL: its
    // supervisor still holds ...", rm -f with "is running: stop it first, or use rm -f".
    // A stopped supervisor is the slowest there is.
    let w = World::new();
    let id = w.run_detached(&[], &["sleep", "300"]);
    let doomed = w.run_detached(&[], &["sleep", "300"]);
    let (init, doomed_init) = (init_pid(&w, &id), init_pid(&w, &doomed));
    let supervisors = vec![parent_pid(init), parent_pid(doomed_init)];
    let resume = Resume(supervisors.clone());
    for &pid in &supervisors {
        // SAFETY: kill with a pid and a signal number.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    }
    let mut stop = w.spawn(&["stop", "-t", "0", &id]);
    let mut rm = w.spawn(&["rm", "-f", &doomed]);
    // SIGKILL needs no supervisor: the inits die (zombies until the supervisors reap them).
    assert!(wait_for(10, || !alive(init) && !alive(doomed_init)));
    // Past the old 10 s limit, both are still waiting rather than failing.
    std::thread::sleep(Duration::from_secs(11));
    assert!(stop.try_wait().unwrap().is_none(), "stop gave up");
    assert!(rm.try_wait().unwrap().is_none(), "rm -f gave up");
    drop(resume);
    let out = stop.wait_with_output().unwrap();
    assert_eq!(ok(out).trim(), id);
    assert_eq!(w.state(&id)["status"], "exited");
    assert_eq!(w.state(&id)["exit_code"], 137);
    assert!(!alive(init));
    assert_no_cgroup(&id);
    let out = rm.wait_with_output().unwrap();
    assert_eq!(ok(out).trim(), doomed);
    assert_eq!(w.container_ids(), vec![id]);
    assert_no_cgroup(&doomed);
}
