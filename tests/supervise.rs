//! Observing and adjusting running containers: wait, top, pause/unpause, stats, update.
//! Real containers (busybox rootfs); figures are checked against the cgroup files read
//! here, from outside, on cgroup v1/hybrid and v2 hosts alike.

mod common;

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use common::*;

/// Whether the host is cgroup v2 only (else hybrid or legacy v1).
fn unified_host() -> bool {
    PathBuf::from("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The directory of the container's cgroup carrying `controller` ("" for the one
/// without controllers: cgroup2's core files, such as cpu.stat and cgroup.freeze).
fn cgroup_dir(id: &str, controller: &str) -> PathBuf {
    let base = PathBuf::from("/sys/fs/cgroup");
    if unified_host() {
        return container_cgroup_in(&base.join("mycontainer"), id);
    }
    let hierarchy = match controller {
        "" => "unified",
        "cpu" => "cpu",
        other => other,
    };
    container_cgroup_in(&base.join(hierarchy).join("mycontainer"), id)
}

fn read_file(path: PathBuf) -> String {
    fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

/// The container's CPU time in µs, from its cgroup2 cpu.stat.
fn cpu_usec(id: &str) -> u64 {
    let text = read_file(cgroup_dir(id, "").join("cpu.stat"));
    text.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
        .expect("cpu.stat has usage_usec")
}

fn memory_limit_file(id: &str) -> String {
    let file = if unified_host() {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    read_file(cgroup_dir(id, "memory").join(file))
}

#[test]
fn wait_prints_each_exit_code_and_fails_for_a_missing_container() {
    let w = World::new();
    w.run_detached(&["--name", "w-three"], &["sh", "-c", "sleep 0.3; exit 3"]);
    w.run_detached(&["--name", "w-zero"], &["true"]);
    let out = w.mc(&["wait", "w-three", "w-zero"]);
    assert_eq!(ok(out), "3\n0\n");
    // A stopped container answers at once; a missing one is an error (exit 1), and
    // the others are still waited for.
    let out = w.mc(&["wait", "w-three", "w-missing"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "3\n");
    assert!(
        stderr(&out).contains("no such container: w-missing"),
        "{}",
        stderr(&out)
    );
    // A killed container reports 128+9.
    w.run_detached(&["--name", "w-killed"], &["sleep", "1000"]);
    ok(w.mc(&["kill", "w-killed"]));
    assert_eq!(ok(w.mc(&["wait", "w-killed"])), "137\n");
}

#[test]
fn top_lists_the_containers_processes_and_only_them() {
    let w = World::new();
    let marker = format!("top-marker-{}", std::process::id());
    let id = w.run_detached(
        &["--name", "t1"],
        &[
            "sh",
            "-c",
            &format!("sleep 1000 & exec sleep 1001 # {marker}"),
        ],
    );
    let out = ok(w.mc(&["top", "t1"]));
    let mut lines = out.lines();
    let header = lines.next().unwrap();
    assert!(header.contains("PID") && header.contains("CMD"), "{out}");
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(rows.iter().any(|r| r.contains("sleep 1000")), "{out}");
    assert!(rows.iter().any(|r| r.contains("sleep 1001")), "{out}");
    // Exactly the processes of the container's cgroup, by pid.
    let init = w.state(&id)["pid"].as_i64().unwrap();
    assert!(
        rows.iter()
            .any(|r| r.split_whitespace().nth(1) == Some(&init.to_string())),
        "{out}"
    );
    // ps options pass through.
    let out = ok(w.mc(&["top", "t1", "-o", "pid,comm"]));
    assert_eq!(
        out.lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["PID", "COMMAND"]
    );
    assert_eq!(
        out.lines().filter(|l| l.contains("sleep")).count(),
        2,
        "{out}"
    );
    // Options without a PID column cannot be matched.
    let out = w.mc(&["top", "t1", "-o", "comm"]);
    assert_eq!(out.status.code(), Some(1));
    ok(w.mc(&["rm", "-f", "t1"]));
    let out = w.mc(&["top", "t1"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn pause_freezes_a_busy_loop_until_unpause() {
    let w = World::new();
    let id = w.run_detached(&["--name", "p1"], &["sh", "-c", "while :; do :; done"]);
    // It runs: its CPU time advances.
    let start = cpu_usec(&id);
    assert!(
        wait_for(10, || cpu_usec(&id) > start + 20_000),
        "the loop does not run"
    );
    ok(w.mc(&["pause", "p1"]));
    // Frozen: the cgroup says so, and its CPU time stands still.
    let frozen = cpu_usec(&id);
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(cpu_usec(&id), frozen, "CPU time advanced while paused");
    }
    if unified_host() || cgroup_dir(&id, "").exists() {
        assert_eq!(read_file(cgroup_dir(&id, "").join("cgroup.freeze")), "1");
    }
    let ps = ok(w.mc(&["ps"]));
    assert!(ps.contains("(Paused)"), "{ps}");
    let state = &inspect(&w, "p1")["State"];
    assert_eq!(state["Status"], "paused");
    assert_eq!(state["Paused"], true);
    // exec cannot join a frozen container (exit 1, as Docker).
    let exec = w.mc(&["exec", "p1", "true"]);
    assert_eq!(exec.status.code(), Some(1));
    assert!(stderr(&exec).contains("is paused"), "{}", stderr(&exec));
    // Pausing twice, or unpausing a running container, is refused (exit 1).
    let again = w.mc(&["pause", "p1"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already paused"),
        "{}",
        stderr(&again)
    );
    ok(w.mc(&["unpause", "p1"]));
    assert!(
        wait_for(10, || cpu_usec(&id) > frozen + 20_000),
        "the loop did not resume"
    );
    assert!(!ok(w.mc(&["ps"])).contains("(Paused)"));
    let not_paused = w.mc(&["unpause", "p1"]);
    assert_eq!(not_paused.status.code(), Some(1));
    ok(w.mc(&["rm", "-f", "p1"]));
    assert_no_cgroup(&id);
    // A stopped container cannot be paused.
    w.run_detached(&["--name", "p2"], &["true"]);
    ok(w.mc(&["wait", "p2"]));
    let out = w.mc(&["pause", "p2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is not running"), "{}", stderr(&out));
}

#[test]
fn stop_and_kill_end_a_paused_container() {
    let w = World::new();
    // stop: the SIGTERM is handled as soon as the container is thawed.
    w.run_detached(
        &["--name", "ps1"],
        &[
            "sh",
            "-c",
            "trap 'exit 7' TERM; echo ready; while :; do sleep 0.05; done",
        ],
    );
    // Paused before it set its trap, the thawed PID 1 would ignore the SIGTERM and
    // end by the SIGKILL 30 s later (137): pause once the trap is set.
    w.wait_logged("ps1", "ready");
    ok(w.mc(&["pause", "ps1"]));
    ok(w.mc(&["stop", "-t", "30", "ps1"]));
    assert_eq!(ok(w.mc(&["wait", "ps1"])), "7\n");
    // kill: SIGKILL ends it.
    let id = w.run_detached(&["--name", "ps2"], &["sleep", "1000"]);
    ok(w.mc(&["pause", "ps2"]));
    ok(w.mc(&["kill", "ps2"]));
    assert_eq!(ok(w.mc(&["wait", "ps2"])), "137\n");
    assert_no_cgroup(&id);
    // rm -f of a paused container leaves nothing.
    let id = w.run_detached(&["--name", "ps3"], &["sleep", "1000"]);
    ok(w.mc(&["pause", "ps3"]));
    ok(w.mc(&["rm", "-f", "ps3"]));
    assert_no_cgroup(&id);
}

/// The cells of the `stats` row of `name`.
fn stats_row(out: &str, name: &str) -> Vec<String> {
    let line = out
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
        .unwrap_or_else(|| panic!("no row for {name}: {out}"));
    // Columns are separated by at least 3 spaces; cells hold single spaces.
    line.split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect()
}

#[test]
fn stats_figures_match_the_cgroup_files() {
    let w = World::new();
    let busy = w.run_detached(
        &["--name", "s-busy", "--network", "none"],
        &["sh", "-c", "while :; do :; done"],
    );
    let idle = w.run_detached(
        &["--name", "s-idle", "--memory", "64m", "--network", "none"],
        &["sh", "-c", "sleep 1000 & sleep 1001 & wait"],
    );
    assert!(wait_for(10, || {
        read_file(cgroup_dir(&idle, "pids").join("pids.current")) == "3"
    }));
    let out = ok(w.mc(&["stats", "--no-stream"]));
    let header: Vec<&str> = out
        .lines()
        .next()
        .unwrap()
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "CONTAINER ID",
            "NAME",
            "CPU %",
            "MEM USAGE / LIMIT",
            "MEM %",
            "NET I/O",
            "BLOCK I/O",
            "PIDS"
        ]
    );
    let row = stats_row(&out, "s-idle");
    assert_eq!(row[0], &idle[..12]);
    // The limit is the cgroup's, the pids are pids.current.
    assert_eq!(memory_limit_file(&idle), (64u64 << 20).to_string());
    assert!(row[3].ends_with(" / 64MiB"), "{row:?}");
    assert_eq!(
        row[7],
        read_file(cgroup_dir(&idle, "pids").join("pids.current"))
    );
    assert_eq!(row[5], "0B / 0B", "no network: {row:?}");
    // Memory in use: at most what the cgroup charges in all.
    let usage_file = if unified_host() {
        "memory.current"
    } else {
        "memory.usage_in_bytes"
    };
    let charged: u64 = read_file(cgroup_dir(&idle, "memory").join(usage_file))
        .parse()
        .unwrap();
    let shown = row[3].split(" / ").next().unwrap();
    assert!(shown.ends_with("B") && shown != "0B", "{row:?}");
    let kib: f64 = shown.trim_end_matches("KiB").parse().unwrap_or(f64::MAX);
    assert!(
        kib * 1024.0 <= charged as f64 * 1.5,
        "{shown} vs {charged} charged"
    );
    // The busy loop uses CPU; the sleeping container almost none.
    let busy_row = stats_row(&out, "s-busy");
    let busy_cpu: f64 = busy_row[2].trim_end_matches('%').parse().unwrap();
    assert!(busy_cpu > 0.0, "{busy_row:?}");
    assert_eq!(
        busy_row[7],
        read_file(cgroup_dir(&busy, "pids").join("pids.current"))
    );
    // Named containers only; a missing one is an error.
    let out = ok(w.mc(&["stats", "--no-stream", "s-idle"]));
    assert_eq!(out.lines().count(), 2, "{out}");
    let out = w.mc(&["stats", "--no-stream", "s-missing"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn update_changes_the_cgroup_files_and_the_record() {
    let w = World::new();
    let id = w.run_detached(&["--name", "u1", "--memory", "64m"], &["sleep", "1000"]);
    // Hybrid hosts: without a CPU limit the container joins no cpu hierarchy at start;
    // the update below creates its cgroup there and moves the running process in.
    if !unified_host() {
        assert!(!cgroup_dir(&id, "cpu").exists());
    }
    ok(w.mc(&[
        "update",
        "--memory",
        "128m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "50",
        "u1",
    ]));
    assert_eq!(memory_limit_file(&id), (128u64 << 20).to_string());
    assert_eq!(read_file(cgroup_dir(&id, "pids").join("pids.max")), "50");
    if unified_host() {
        assert_eq!(
            read_file(cgroup_dir(&id, "cpu").join("cpu.max")),
            "50000 100000"
        );
    } else {
        assert_eq!(
            read_file(cgroup_dir(&id, "cpu").join("cpu.cfs_quota_us")),
            "50000"
        );
        assert_eq!(
            read_file(cgroup_dir(&id, "cpu").join("cpu.cfs_period_us")),
            "100000"
        );
        let pid = inspect(&w, "u1")["State"]["Pid"].to_string();
        let procs = read_file(cgroup_dir(&id, "cpu").join("cgroup.procs"));
        assert!(procs.lines().any(|l| l == pid), "{pid} not in {procs}");
    }
    let host = &inspect(&w, "u1")["HostConfig"];
    assert_eq!(host["Memory"], 128u64 << 20);
    assert_eq!(host["NanoCpus"], 500_000_000u64);
    assert_eq!(host["PidsLimit"], 50);
    // The pids limit holds inside at once: a 60th process cannot be made.
    let out = w.mc(&[
        "exec",
        "u1",
        "sh",
        "-c",
        "for i in $(seq 60); do sleep 100 & done; wait",
    ]);
    assert!(!out.status.success(), "60 processes under a limit of 50");
    // A stopped container keeps the new limits for its next start.
    ok(w.mc(&["stop", "-t", "0", "u1"]));
    ok(w.mc(&["update", "--memory", "96m", "u1"]));
    assert_eq!(inspect(&w, "u1")["HostConfig"]["Memory"], 96u64 << 20);
    ok(w.mc(&["start", "u1"]));
    assert_eq!(memory_limit_file(&id), (96u64 << 20).to_string());
    assert_eq!(read_file(cgroup_dir(&id, "pids").join("pids.max")), "50");
    // Bad input: no flag, a bad size, a missing container (exit 1, nothing changed).
    for args in [
        &["update", "u1"][..],
        &["update", "--memory", "lots", "u1"],
        &["update", "--memory", "32m", "u-missing"],
    ] {
        let out = w.mc(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
    }
    assert_eq!(memory_limit_file(&id), (96u64 << 20).to_string());
}

/// The supervisors of this test's containers (their command lines name our root).
fn supervisors(w: &World, id: &str) -> Vec<i32> {
    let root = w.root.to_string_lossy().into_owned();
    pids_with("supervise --lock-fd")
        .into_iter()
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    let c = String::from_utf8_lossy(&c);
                    c.contains(&root) && c.contains(id)
                })
                .unwrap_or(false)
        })
        .collect()
}

/// Whether a supervisor holds the record's lock. Unlike its command line, which is
/// briefly empty while the supervisor execs between its two binaries, the lock is held
/// without a gap from the start to the end.
fn supervised(w: &World, id: &str) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(dir) = fs::File::open(w.root.join("containers").join(id)) else {
        return false;
    };
    // SAFETY: flock(2) on a descriptor we own; a shared lock conflicts only with the
    // supervisor's exclusive one, and is released when `dir` closes.
    unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) != 0 }
}

fn restart_count(w: &World, id: &str) -> u64 {
    w.state(id)["restart_count"].as_u64().unwrap_or(0)
}

#[test]
fn on_failure_restarts_a_crash_loop_max_times_then_gives_up() {
    let w = World::new();
    let id = w.run_detached(
        &["--name", "r-fail", "--restart", "on-failure:3"],
        &["sh", "-c", "echo ran; exit 5"],
    );
    // wait returns at the next exit, as Docker's, though the container restarts.
    assert_eq!(ok(w.mc(&["wait", "r-fail"])), "5\n");
    // The supervisor gives up after the first run and 3 restarts.
    assert!(wait_for(30, || !supervised(&w, &id)));
    let info = inspect(&w, "r-fail");
    assert_eq!(info["RestartCount"], 3);
    assert_eq!(info["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(info["HostConfig"]["RestartPolicy"]["MaximumRetryCount"], 3);
    assert_eq!(info["State"]["Status"], "exited");
    assert_eq!(info["State"]["Restarting"], false);
    assert_eq!(ok(w.mc(&["logs", "r-fail"])), "ran\nran\nran\nran\n");
    assert!(supervisors(&w, &id).is_empty());
    assert_no_cgroup(&id);
    // A success is not a failure: no restart.
    w.run_detached(&["--name", "r-ok", "--restart", "on-failure"], &["true"]);
    assert_eq!(ok(w.mc(&["wait", "r-ok"])), "0\n");
    assert_eq!(inspect(&w, "r-ok")["RestartCount"], 0);
    // The default policy is no.
    w.run_detached(&["--name", "r-no"], &["sh", "-c", "exit 4"]);
    assert_eq!(ok(w.mc(&["wait", "r-no"])), "4\n");
    let info = inspect(&w, "r-no");
    assert_eq!(info["RestartCount"], 0);
    assert_eq!(info["HostConfig"]["RestartPolicy"]["Name"], "no");
}

#[test]
fn always_restarts_until_stop_and_start_resumes_the_loop() {
    let w = World::new();
    let id = w.run_detached(
        &["--name", "r-always", "--restart", "always"],
        &["sh", "-c", "echo ran; exit 1"],
    );
    // ps shows it between runs (the delay grows: 100 ms, 200 ms, ...).
    let mut seen = String::new();
    assert!(
        wait_for(30, || {
            seen = ok(w.mc(&["ps"]));
            seen.contains("Restarting (1)")
        }),
        "{seen}"
    );
    assert!(wait_for(30, || restart_count(&w, &id) >= 3));
    ok(w.mc(&["stop", "r-always"]));
    // stop returns once the supervisor is gone: nothing restarts it any more.
    assert!(supervisors(&w, &id).is_empty());
    let count = restart_count(&w, &id);
    let state = w.state(&id);
    assert_eq!(state["status"], "exited");
    assert_eq!(state["restarting"], false);
    assert!(!ok(w.mc(&["ps", "-a"])).contains("Restarting"));
    // start resumes the policy.
    ok(w.mc(&["start", "r-always"]));
    assert!(wait_for(30, || restart_count(&w, &id) > count));
    // kill ends it as well, and rm -f leaves nothing.
    ok(w.mc(&["kill", "r-always"]));
    assert!(wait_for(10, || !supervised(&w, &id)));
    ok(w.mc(&["rm", "-f", "r-always"]));
    assert_no_cgroup(&id);
}

#[test]
fn kill_then_start_at_any_moment_of_a_restart_loop_both_take_effect() {
    // Each kill lands somewhere in the loop: in a run, between runs, as a run ends. A
    // kill whose stop mark the supervisor saw just as the run ended failed with "is not
    // running" (the loop ended on the mark, then the kill read the exited state; round
    // 10 of the suite), and a kill between runs returned before the loop ended, so a
    // start right after it found the old supervisor still there and did nothing.
    let w = World::new();
    let id = w.run_detached(
        &["--name", "r-race", "--restart", "always"],
        &["sh", "-c", "exit 1"],
    );
    for trial in 0..20 {
        let out = w.mc(&["kill", "r-race"]);
        assert!(
            out.status.success(),
            "trial {trial}: kill failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Docker's kill waits for the container to be gone.
        assert!(
            !supervised(&w, &id),
            "trial {trial}: kill returned while the container's supervisor still runs"
        );
        ok(w.mc(&["start", "r-race"]));
        assert!(
            supervised(&w, &id),
            "trial {trial}: start returned and nothing runs the container: {}",
            w.state(&id)
        );
    }
    ok(w.mc(&["rm", "-f", "r-race"]));
    assert!(supervisors(&w, &id).is_empty());
    assert_no_cgroup(&id);
}

#[test]
fn unless_stopped_restarts_a_clean_exit_and_rm_f_ends_the_loop() {
    let w = World::new();
    let id = w.run_detached(
        &["--name", "r-unless", "--restart", "unless-stopped"],
        &["sh", "-c", "echo ran; sleep 0.1"],
    );
    assert!(wait_for(30, || restart_count(&w, &id) >= 2));
    ok(w.mc(&["rm", "-f", "r-unless"]));
    assert!(supervisors(&w, &id).is_empty());
    assert!(w.container_ids().is_empty());
    assert_no_cgroup(&id);
}

#[test]
fn a_restart_policy_is_refused_with_rm_or_when_misspelled() {
    let w = World::new();
    for (flags, message) in [
        (&["--rm", "--restart", "always"][..], "conflicting options"),
        (&["--restart", "sometimes"][..], "invalid restart policy"),
        (&["--restart", "on-failure:x"][..], "invalid restart policy"),
    ] {
        let out = w.run(flags, &["true"]);
        assert_eq!(out.status.code(), Some(125), "{flags:?}");
        assert!(
            stderr(&out).contains(message),
            "{flags:?}: {}",
            stderr(&out)
        );
    }
    // --rm with the policy "no" is fine.
    ok(w.run(&["--rm", "--restart", "no"], &["true"]));
    w.assert_no_containers();
}

#[test]
fn system_boot_starts_what_the_policies_say_after_a_reboot() {
    let w = World::new();
    let always = w.run_detached(
        &["--name", "b-always", "--restart", "always"],
        &["sleep", "1000"],
    );
    let unless = w.run_detached(
        &["--name", "b-unless", "--restart", "unless-stopped"],
        &["sleep", "1000"],
    );
    let stopped = w.run_detached(
        &["--name", "b-stopped", "--restart", "unless-stopped"],
        &["sleep", "1000"],
    );
    let failure = w.run_detached(
        &["--name", "b-failure", "--restart", "on-failure"],
        &["sleep", "1000"],
    );
    let none = w.run_detached(&["--name", "b-no"], &["sleep", "1000"]);
    ok(w.mc(&["stop", "-t", "0", "b-stopped"]));
    // A stopped always container starts at boot too (Docker's daemon restart does).
    ok(w.mc(&["stop", "-t", "0", "b-always"]));
    // The "reboot": every supervisor dies at once; the next command's reclaim records
    // the containers as killed (137) and removes their cgroups.
    for id in [&unless, &failure, &none] {
        let supervisor = w.supervisor_pid(id);
        // SAFETY: SIGKILL to a supervisor this test started.
        assert_eq!(unsafe { libc::kill(supervisor, libc::SIGKILL) }, 0);
    }
    for id in [&unless, &failure, &none] {
        assert!(wait_for(10, || !supervised(&w, id)));
    }
    let out = ok(w.mc(&["system", "boot"]));
    let mut started: Vec<&str> = out.lines().collect();
    started.sort();
    assert_eq!(started, ["b-always", "b-failure", "b-unless"]);
    for id in [&always, &unless, &failure] {
        assert_eq!(w.state(id)["status"], "running", "{id}");
        // Supervised again: its init's parent is one of our two binaries.
        let exe = fs::read_link(format!("/proc/{}/exe", w.supervisor_pid(id))).unwrap();
        let name = exe.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            ["mycontainer", "mycontainer-supervisor"].contains(&name.as_str()),
            "{id}'s init has parent {exe:?}"
        );
    }
    for id in [&stopped, &none] {
        assert_eq!(w.state(id)["status"], "exited", "{id}");
    }
    // Booting again starts nothing more.
    assert_eq!(ok(w.mc(&["system", "boot"])), "");
    w.remove_all();
}

#[test]
fn generate_systemd_prints_a_boot_unit_and_a_unit_per_container() {
    let w = World::new();
    let root = w.root.to_string_lossy().into_owned();
    let unit = ok(w.mc(&["generate", "systemd"]));
    assert!(
        unit.contains(&format!("ExecStart={BIN} --root {root} system boot")),
        "{unit}"
    );
    assert!(
        unit.contains("Type=oneshot") && unit.contains("WantedBy=multi-user.target"),
        "{unit}"
    );
    w.run_detached(&["--name", "g1", "--stop-timeout", "7"], &["true"]);
    let unit = ok(w.mc(&["generate", "systemd", "g1"]));
    assert!(
        unit.contains(&format!("ExecStart={BIN} --root {root} start -a g1")),
        "{unit}"
    );
    assert!(
        unit.contains(&format!("ExecStop={BIN} --root {root} stop -t 7 g1")),
        "{unit}"
    );
    assert!(unit.contains("TimeoutStopSec=67\n"), "{unit}");
    assert!(unit.contains("Restart=on-failure"), "{unit}");
    w.run_detached(&["--name", "g2", "--restart", "always"], &["sleep", "1000"]);
    let unit = ok(w.mc(&["generate", "systemd", "g2"]));
    assert!(unit.contains("Restart=no"), "{unit}");
    let out = w.mc(&["generate", "systemd", "g-missing"]);
    assert_eq!(out.status.code(), Some(1));
    w.remove_all();
}

fn health(w: &World, name: &str) -> serde_json::Value {
    inspect(w, name)["State"]["Health"].clone()
}

#[test]
fn a_healthcheck_turns_healthy_then_unhealthy_and_inspect_keeps_the_last_results() {
    let w = World::new();
    w.run_detached(
        &[
            "--name",
            "h1",
            "--health-cmd",
            "test -e /tmp/ok && echo fine",
            "--health-interval",
            "100ms",
            "--health-retries",
            "2",
        ],
        &["sh", "-c", "touch /tmp/ok; exec sleep 1000"],
    );
    let mut ps = String::new();
    assert!(
        wait_for(30, || {
            ps = ok(w.mc(&["ps"]));
            ps.contains("(healthy)")
        }),
        "{ps}"
    );
    let h = health(&w, "h1");
    assert_eq!(h["Status"], "healthy");
    // The newest result: a check that ran before the touch failed, and is kept too.
    let newest = h["Log"].as_array().unwrap().last().unwrap();
    assert_eq!(newest["ExitCode"], 0, "{h}");
    assert_eq!(newest["Output"], "fine\n", "{h}");
    // The check runs inside the container: removing the file there breaks it.
    ok(w.mc(&["exec", "h1", "rm", "/tmp/ok"]));
    assert!(wait_for(30, || ok(w.mc(&["ps"])).contains("(unhealthy)")));
    assert!(wait_for(30, || health(&w, "h1")["Log"]
        .as_array()
        .unwrap()
        .len()
        == 5));
    let h = health(&w, "h1");
    assert_eq!(h["Status"], "unhealthy");
    assert!(h["FailingStreak"].as_u64().unwrap() >= 2, "{h}");
    assert_eq!(h["Log"][4]["ExitCode"], 1);
    // No action asked: it keeps running.
    assert_eq!(inspect(&w, "h1")["State"]["Status"], "running");
    let config = &inspect(&w, "h1")["Config"]["Healthcheck"];
    assert_eq!(config["Interval"], 100_000_000u64);
    assert_eq!(config["Retries"], 2);
    w.remove_all();
}

#[test]
fn health_on_failure_kill_and_restart_act_on_an_unhealthy_container() {
    let w = World::new();
    let check = |command| {
        [
            "--health-cmd",
            command,
            "--health-interval",
            "100ms",
            "--health-retries",
            "1",
        ]
    };
    w.run_detached(
        &[
            &["--name", "h-kill", "--health-on-failure", "kill"][..],
            &check("false")[..],
        ]
        .concat(),
        &["sleep", "1000"],
    );
    assert_eq!(ok(w.mc(&["wait", "h-kill"])), "137\n");
    assert_eq!(inspect(&w, "h-kill")["RestartCount"], 0);
    // restart: started again although its restart policy is "no". Each run's /tmp is
    // new, so each run is healthy until it has logged its line.
    let id = w.run_detached(
        &[
            &["--name", "h-restart", "--health-on-failure", "restart"][..],
            &["--tmpfs", "/tmp"][..],
            &check("test ! -e /tmp/ran")[..],
        ]
        .concat(),
        &["sh", "-c", "echo run; touch /tmp/ran; exec sleep 1000"],
    );
    assert!(wait_for(30, || restart_count(&w, &id) >= 2));
    assert!(ok(w.mc(&["logs", "h-restart"])).matches("run\n").count() >= 2);
    ok(w.mc(&["stop", "-t", "0", "h-restart"]));
    assert!(supervisors(&w, &id).is_empty());
    w.remove_all();
}

#[test]
fn health_starts_as_starting_times_out_and_runs_by_hand() {
    let w = World::new();
    // Failures within the start period do not count.
    w.run_detached(
        &[
            "--name",
            "h-start",
            "--health-cmd",
            "false",
            "--health-interval",
            "100ms",
            "--health-start-period",
            "1h",
        ],
        &["sleep", "1000"],
    );
    assert!(wait_for(30, || health(&w, "h-start")["Log"]
        .as_array()
        .unwrap()
        .len()
        >= 2));
    let h = health(&w, "h-start");
    assert_eq!(
        (h["Status"].as_str(), h["FailingStreak"].as_u64()),
        (Some("starting"), Some(0))
    );
    assert!(ok(w.mc(&["ps"])).contains("(health: starting)"));
    // A check that outlives its timeout fails with -1.
    w.run_detached(
        &[
            "--name",
            "h-slow",
            "--health-cmd",
            "sleep 30",
            "--health-interval",
            "100ms",
            "--health-timeout",
            "200ms",
            "--health-retries",
            "1",
        ],
        &["sleep", "1000"],
    );
    assert!(wait_for(60, || health(&w, "h-slow")["Status"] == "unhealthy"));
    let h = health(&w, "h-slow");
    assert_eq!(h["Log"][0]["ExitCode"], -1);
    assert!(
        h["Log"][0]["Output"].as_str().unwrap().contains("timeout"),
        "{h}"
    );
    // healthcheck run: one check now, counted.
    w.run_detached(
        &[
            "--name",
            "h-hand",
            "--health-cmd",
            "test -e /tmp/ok",
            "--health-interval",
            "1h",
        ],
        &["sleep", "1000"],
    );
    let out = w.mc(&["healthcheck", "run", "h-hand"]);
    assert_eq!(
        (out.status.code(), stdout(&out).as_str()),
        (Some(1), "unhealthy\n")
    );
    ok(w.mc(&["exec", "h-hand", "touch", "/tmp/ok"]));
    assert_eq!(ok(w.mc(&["healthcheck", "run", "h-hand"])), "healthy\n");
    assert_eq!(health(&w, "h-hand")["Status"], "healthy");
    assert_eq!(health(&w, "h-hand")["Log"].as_array().unwrap().len(), 2);
    // No healthcheck, or a bad flag.
    w.run_detached(&["--name", "h-none"], &["sleep", "1000"]);
    let out = w.mc(&["healthcheck", "run", "h-none"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("has no healthcheck"),
        "{}",
        stderr(&out)
    );
    assert!(inspect(&w, "h-none")["State"]["Health"].is_null());
    let out = w.run(
        &["--health-cmd", "true", "--health-interval", "soon"],
        &["true"],
    );
    assert_eq!(out.status.code(), Some(125));
    let out = w.run(
        &["--health-on-failure", "explode", "--health-cmd", "true"],
        &["true"],
    );
    assert_eq!(out.status.code(), Some(125));
    w.remove_all();
}

#[test]
fn logs_rotate_keeping_at_most_the_files_asked_and_follow_across_rotation() {
    let w = World::new();
    let id = w.run_detached(
        &[
            "--name",
            "l-rot",
            "--log-opt",
            "max-size=4k",
            "--log-opt",
            "max-file=2",
        ],
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 500 ]; do echo line $i; i=$((i+1)); done",
        ],
    );
    assert_eq!(ok(w.mc(&["wait", "l-rot"])), "0\n");
    let dir = w.root.join("containers").join(&id);
    let mut logs: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("container.log"))
        .collect();
    logs.sort();
    assert_eq!(logs, ["container.log", "container.log.1"]);
    for name in &logs {
        assert!(
            fs::metadata(dir.join(name)).unwrap().len() <= 4096,
            "{name}"
        );
    }
    // logs reads both files, in order: the newest lines, contiguous, up to the last.
    let out = ok(w.mc(&["logs", "l-rot"]));
    let numbers: Vec<u32> = out
        .lines()
        .map(|l| l.strip_prefix("line ").unwrap().parse().unwrap())
        .collect();
    assert_eq!(*numbers.last().unwrap(), 499);
    assert!(numbers.len() < 500, "nothing was rotated away");
    assert!(numbers.windows(2).all(|p| p[1] == p[0] + 1), "{numbers:?}");
    // Rotation is on by default: 10 MiB, 3 files.
    let id = w.run_detached(&["--name", "l-default"], &["true"]);
    assert_eq!(w.state(&id)["log_opts"]["max_size"], 10u64 << 20);
    assert_eq!(w.state(&id)["log_opts"]["max_files"], 3);
    let out = w.run(&["--log-opt", "max-file=0"], &["true"]);
    assert_eq!(out.status.code(), Some(125));
    // logs -f follows the log while it rotates (max-file=50: nothing is dropped).
    let mut follow = w.cmd();
    follow
        .args(["logs", "-f", "l-follow"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let id = w.run_detached(
        &[
            "--name",
            "l-follow",
            "--log-opt",
            "max-size=4k",
            "--log-opt",
            "max-file=50",
        ],
        &[
            "sh",
            "-c",
            "sleep 0.5; i=0; while [ $i -lt 600 ]; do echo line $i; i=$((i+1)); \
             [ $((i % 40)) = 0 ] && sleep 0.05; done; true",
        ],
    );
    let follower = follow.spawn().unwrap();
    let out = follower.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let expected: String = (0..600).map(|i| format!("line {i}\n")).collect();
    assert_eq!(text, expected, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir
        .parent()
        .unwrap()
        .join(&id)
        .join("container.log.3")
        .exists());
    // --since/--until: a window in the future holds nothing, one in the past everything.
    assert_eq!(
        ok(w.mc(&["logs", "--since", "2100-01-01T00:00:00Z", "l-rot"])),
        ""
    );
    assert_eq!(
        ok(w.mc(&["logs", "--until", "2000-01-01T00:00:00Z", "l-rot"])),
        ""
    );
    assert_eq!(
        ok(w.mc(&["logs", "--since", "1h", "l-rot"])),
        ok(w.mc(&["logs", "l-rot"]))
    );
    let out = w.mc(&["logs", "--since", "whenever", "l-rot"]);
    assert_eq!(out.status.code(), Some(1));
}

/// The `events` lines of the last hour up to now, as (action, name) pairs.
fn events(w: &World, extra: &[&str]) -> Vec<(String, String)> {
    let out = ok(w.mc(&[
        &[
            "events", "--since", "1h", "--until", "0s", "--format", "json",
        ][..],
        extra,
    ]
    .concat()));
    out.lines()
        .map(|l| {
            let e: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                e["Action"].as_str().unwrap().to_string(),
                e["Attributes"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

#[test]
fn events_record_create_start_die_health_and_destroy() {
    let w = World::new();
    w.run_detached(&["--name", "e1"], &["sh", "-c", "exit 3"]);
    ok(w.mc(&["wait", "e1"]));
    ok(w.mc(&["rm", "e1"]));
    let seen = events(&w, &["--filter", "container=e1"]);
    let actions: Vec<&str> = seen.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(actions, ["create", "start", "die", "destroy"], "{seen:?}");
    // The text form, as Docker's: exit code and name among the attributes.
    let out = ok(w.mc(&[
        "events",
        "--since",
        "1h",
        "--until",
        "0s",
        "--filter",
        "event=die",
    ]));
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.contains(" container die ") && out.contains("exitCode=3") && out.contains("name=e1"),
        "{out}"
    );
    // A healthcheck's status changes are events too.
    w.run_detached(
        &[
            "--name",
            "e2",
            "--health-cmd",
            "true",
            "--health-interval",
            "100ms",
        ],
        &["sleep", "1000"],
    );
    assert!(wait_for(30, || events(
        &w,
        &["--filter", "event=health_status"]
    )
    .contains(&(
        "health_status: healthy".to_string(),
        "e2".to_string()
    ))));
    // Without --since only new events; --until ends the stream.
    let out = ok(w.mc(&["events", "--until", "0s"]));
    assert_eq!(out, "");
    let out = w.mc(&["events", "--filter", "colour=red", "--until", "0s"]);
    assert_eq!(out.status.code(), Some(1));
    w.remove_all();
}
