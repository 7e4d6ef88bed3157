//! `update --restart` on running containers, `wait` on containers that restart, and
//! RestartCount across a user's `start`, as Docker's daemon does them.

mod common;

use std::process::Stdio;

use common::*;

/// Waits for a file the test creates in the container, removes it and exits 3.
const ON_SIGNAL_EXIT_3: &str =
    "while [ ! -e /tmp/go ]; do sleep 0.05; done; rm /tmp/go; echo run; exit 3";

fn trigger(w: &World, name: &str) {
    // The container may be between runs: try until one takes it.
    assert!(wait_for(20, || w
        .mc(&["exec", name, "touch", "/tmp/go"])
        .status
        .success()));
}

fn running(w: &World, name: &str) -> bool {
    let state = inspect(w, name);
    state["State"]["Status"] == "running"
}

#[test]
fn update_restart_applies_from_the_next_exit_and_wait_returns_each_exit() {
    let w = World::new();
    w.run_detached(&["--name", "ru1"], &["sh", "-c", ON_SIGNAL_EXIT_3]);
    assert_eq!(
        inspect(&w, "ru1")["HostConfig"]["RestartPolicy"]["Name"],
        "no"
    );
    ok(w.mc(&["update", "--restart", "on-failure:2", "ru1"]));
    // Shown at once.
    let policy = &inspect(&w, "ru1")["HostConfig"]["RestartPolicy"];
    assert_eq!(policy["Name"], "on-failure", "{policy}");
    assert_eq!(policy["MaximumRetryCount"], 2, "{policy}");

    // wait returns at the exit of the current run, though the container restarts.
    let waiter = w
        .cmd()
        .args(["wait", "ru1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Triggered once wait polls for this run's exit: a wait that read the state only
    // after the restart would wait for the next run's, which never comes.
    let polling = wait_for(30, || sleeps_between_polls(waiter.id()));
    assert!(polling, "wait never polled");
    trigger(&w, "ru1");
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "3\n");
    assert!(wait_for(20, || inspect(&w, "ru1")["RestartCount"] == 1));
    assert!(wait_for(20, || running(&w, "ru1")));
    // Running again means no longer restarting (a stale flag made stop and kill skip
    // the signal, taking the container for one between runs).
    assert_eq!(inspect(&w, "ru1")["State"]["Restarting"], false);

    // Back to no: the next exit is the last.
    ok(w.mc(&["update", "--restart", "no", "ru1"]));
    trigger(&w, "ru1");
    assert_eq!(ok(w.mc(&["wait", "ru1"])), "3\n");
    let state = inspect(&w, "ru1");
    assert_eq!(state["State"]["Status"], "exited", "{state}");
    assert_eq!(state["RestartCount"], 1);
    assert_eq!(state["HostConfig"]["RestartPolicy"]["Name"], "no");
    assert_eq!(ok(w.mc(&["logs", "ru1"])), "run\nrun\n");

    // A user's start counts from zero again, as Docker's.
    ok(w.mc(&["start", "ru1"]));
    assert_eq!(inspect(&w, "ru1")["RestartCount"], 0);
}

#[test]
fn wait_on_a_crash_loop_returns_the_next_exit() {
    let w = World::new();
    w.run_detached(
        &["--name", "ru2", "--restart", "always"],
        &["sh", "-c", "sleep 0.2; exit 5"],
    );
    // Whether it is running or waiting to restart, the next exit answers.
    for _ in 0..2 {
        let mut waiter = w
            .cmd()
            .args(["wait", "ru2"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        assert!(
            wait_for(30, || waiter.try_wait().unwrap().is_some()),
            "wait did not return while the container restarts"
        );
        let out = waiter.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "5\n");
    }
    ok(w.mc(&["stop", "ru2"]));
}

#[test]
fn update_restart_refuses_an_rm_container_and_a_bad_policy() {
    let w = World::new();
    w.run_detached(&["--rm", "--name", "ru3"], &["sleep", "100"]);
    let out = w.mc(&["update", "--restart", "always", "ru3"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--rm"), "{}", stderr(&out));
    let out = w.mc(&["update", "--restart", "sometimes", "ru3"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("invalid restart policy"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        inspect(&w, "ru3")["HostConfig"]["RestartPolicy"]["Name"],
        "no"
    );
}
