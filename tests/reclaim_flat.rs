//! Costs that stay flat with many running containers (issue 20): the orphan reclaim
//! sweeps every live container only before the verbs that list or manage many (`ps`,
//! `gc`, `system`...); a verb on named containers reclaims just those, and `run` only
//! the holder of its `--name`. What users see after a kill -9 stays the same.

mod common;

use std::fs;
use std::path::Path;

use common::*;

/// Kills the container's supervisor with SIGKILL and waits for its init to die with it.
fn kill_supervisor(w: &World, id: &str) {
    let pid = w.state(id)["pid"].as_i64().unwrap() as i32;
    let supervisor = w.supervisor_pid(id);
    // SAFETY: SIGKILL to the supervisor this test started.
    assert_eq!(unsafe { libc::kill(supervisor, libc::SIGKILL) }, 0);
    assert!(wait_for(10, || !alive(pid)));
}

fn live_marker(w: &World, id: &str) -> std::path::PathBuf {
    run_dir(&w.root).join("live").join(id)
}

/// Each verb sees and cleans the container whose supervisor was killed: `ps` (a sweep),
/// `inspect`, `wait` and `start` (the named record alone), and `run --name` and `rename`
/// to a dead `--rm` container's name (its holder alone); a `run` without that name
/// leaves the other dead records to the verbs that look at them.
#[test]
fn a_killed_supervisor_is_seen_and_cleaned_by_ps_inspect_wait_start_run_name_and_rename() {
    let w = World::new();
    let listed = w.run_detached(&["--name", "flat-ps"], &["sleep", "300"]);
    let inspected = w.run_detached(&["--name", "flat-inspect"], &["sleep", "300"]);
    let waited = w.run_detached(&["--name", "flat-wait"], &["sleep", "300"]);
    let started = w.run_detached(&["--name", "flat-start"], &["sleep", "300"]);
    let named = w.run_detached(&["--rm", "--name", "flat-name"], &["sleep", "300"]);
    for id in [&listed, &inspected, &waited, &started, &named] {
        kill_supervisor(&w, id);
    }

    // A run that names none of them reclaims none of them (nor reads them: see the
    // strace test below); each stays as its killed supervisor left it.
    ok(w.run(&["--rm"], &["true"]));
    for id in [&listed, &inspected, &waited, &started, &named] {
        assert_eq!(w.state(id)["status"], "running", "{id} reclaimed by run");
        assert!(live_marker(&w, id).exists());
    }

    // inspect: exited (137, killed with its supervisor), its cgroup freed.
    let shown: serde_json::Value =
        serde_json::from_str(&ok(w.mc(&["inspect", "flat-inspect"]))).unwrap();
    assert_eq!(shown[0]["State"]["Status"], "exited", "{shown}");
    assert_eq!(shown[0]["State"]["ExitCode"], 137, "{shown}");
    assert_eq!(w.state(&inspected)["status"], "exited");
    assert!(!live_marker(&w, &inspected).exists());
    assert_no_cgroup(&inspected);
    // Only that one: the others are still as they were.
    assert_eq!(w.state(&waited)["status"], "running");

    // wait: returns at once with the code of its end.
    assert_eq!(ok(w.mc(&["wait", "flat-wait"])).trim(), "137");
    assert_no_cgroup(&waited);

    // start: it runs again, under a new supervisor.
    ok(w.mc(&["start", "flat-start"]));
    assert_eq!(w.state(&started)["status"], "running");
    assert!(alive(w.supervisor_pid(&started)));

    // run --name: the dead --rm container is removed and its name is free.
    assert!(w.root.join("containers").join(&named).exists());
    let again = w.run_detached(&["--rm", "--name", "flat-name"], &["sleep", "300"]);
    assert_ne!(again, named);
    assert!(!w.root.join("containers").join(&named).exists());
    assert!(!live_marker(&w, &named).exists());
    assert_no_cgroup(&named);
    // rename to the name of a dead --rm container: its holder is reclaimed first.
    kill_supervisor(&w, &again);
    ok(w.mc(&["rename", "flat-start", "flat-name"]));
    assert!(!w.root.join("containers").join(&again).exists());
    assert_no_cgroup(&again);

    // ps: the sweep finds the last one.
    assert_eq!(w.state(&listed)["status"], "running");
    let all = ok(w.mc(&["ps", "-a", "--no-trunc"]));
    assert!(
        all.lines()
            .any(|line| line.starts_with(&listed) && line.contains("Exited (137)")),
        "{all}"
    );
    assert_eq!(w.state(&listed)["status"], "exited");
    assert!(!live_marker(&w, &listed).exists());
    assert_no_cgroup(&listed);
    ok(w.mc(&["rm", "-f", "flat-name"]));
    assert!(!w.root.join("containers").join(&started).exists());
}

/// The record directories `strace` saw the traced command touch (any path with a record
/// id in it, under the state root or the run directory), from its log.
fn touched_ids(log: &Path, ids: &[String]) -> Vec<String> {
    let text = fs::read_to_string(log).unwrap();
    ids.iter()
        .filter(|id| text.contains(id.as_str()))
        .cloned()
        .collect()
}

/// `mycontainer ARGS` under `strace -f` (file system calls), logged to `log`.
fn traced(w: &World, log: &Path, args: &[&str]) {
    let out = std::process::Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=%file,%desc", "-o"])
        .arg(log)
        .arg(BIN)
        .env_remove("MYCONTAINER_ROOT")
        .arg("--root")
        .arg(&w.root)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("strace is needed for this test");
    ok(out);
}

/// With several running containers, `run --rm` opens, stats and locks none of their
/// records, and `exec C` none but C's (before, the reclaim before every command looked at
/// each live one); `ps` still looks at all of them.
#[test]
fn run_and_exec_touch_no_other_running_containers_record() {
    let w = World::new();
    let target = w.run_detached(&["--name", "flat-target"], &["sleep", "300"]);
    let others: Vec<String> = (0..4)
        .map(|_| w.run_detached(&[], &["sleep", "300"]))
        .collect();
    // A dead one among them, which a sweep would reclaim.
    kill_supervisor(&w, &others[0]);
    let log = w.dir.path().join("strace.log");

    // Named: a generated name (one of 400) that happens to be one of the others' would
    // rightly make run read that name's owner, and the test would fail 1 run in 100.
    traced(
        &w,
        &log,
        &[
            "run",
            "--rm",
            "--name",
            "flat-probe",
            "--network",
            "none",
            "--rootfs",
            w.rootfs.to_str().unwrap(),
            "true",
        ],
    );
    let mut everyone = others.clone();
    everyone.push(target.clone());
    assert_eq!(touched_ids(&log, &everyone), Vec::<String>::new(), "run");

    traced(&w, &log, &["exec", "flat-target", "true"]);
    assert_eq!(touched_ids(&log, &others), Vec::<String>::new(), "exec");
    assert_eq!(
        touched_ids(&log, std::slice::from_ref(&target)),
        vec![target.clone()]
    );
    assert_eq!(
        w.state(&others[0])["status"],
        "running",
        "not reclaimed yet"
    );

    // The sweep of `ps` looks at every live one, and reclaims the dead one.
    traced(&w, &log, &["ps", "-q"]);
    assert_eq!(touched_ids(&log, &everyone), everyone);
    assert_eq!(w.state(&others[0])["status"], "exited");
    assert_no_cgroup(&others[0]);
}

/// No sweep runs before `run`, so an address pool that looks full may be held by a
/// container whose supervisor was killed: `run` reclaims the live ones and tries again
/// before it fails.
#[test]
fn a_full_address_pool_held_by_a_killed_container_is_reclaimed_by_run() {
    let w = World::new();
    // A /30: one address besides the gateway.
    ok(w.mc(&["network", "create", "tiny", "--subnet", "10.79.3.0/30"]));
    let dead = w.run_detached(
        &["--name", "pool-dead", "--network", "tiny"],
        &["sleep", "300"],
    );
    let full = w.run(&["--rm", "--network", "tiny"], &["true"]);
    assert_eq!(full.status.code(), Some(125), "{}", stderr(&full));
    assert!(
        stderr(&full).contains("no free address"),
        "{}",
        stderr(&full)
    );
    kill_supervisor(&w, &dead);
    assert_eq!(w.state(&dead)["status"], "running");
    let inside = ok(w.run(
        &["--rm", "--network", "tiny"],
        &["ip", "-4", "-o", "addr", "show", "eth0"],
    ));
    assert!(inside.contains("10.79.3.2/30"), "{inside}");
    assert_eq!(w.state(&dead)["status"], "exited");
    assert_no_cgroup(&dead);
    ok(w.mc(&["rm", "pool-dead"]));
    ok(w.mc(&["network", "rm", "tiny"]));
}
