//! `run -d` returns once the container's command runs, not before its start is known:
//! a command that cannot be executed fails with Docker's 127 or 126 and why, a setup
//! that fails with 125 and why, as a foreground run does, and nothing runs on.

mod common;

use common::*;

/// The state of the only container named `name` once its supervisor has recorded it.
fn exited_state(w: &World, name: &str) -> serde_json::Value {
    let mut found = None;
    let recorded = wait_for(30, || {
        found = w
            .container_ids()
            .into_iter()
            .filter_map(|id| w.try_state(&id))
            .find(|s| s["name"] == name && s["status"] == "exited");
        found.is_some()
    });
    assert!(recorded, "container {name} was not recorded as exited");
    found.unwrap()
}

#[test]
fn run_d_fails_with_127_126_and_125_as_run_does_and_leaves_nothing_running() {
    let w = World::new();
    for (name, command, code, says) in [
        (
            "missing",
            "no-such-command",
            127,
            "executable file not found",
        ),
        ("denied", "/etc/passwd", 126, "permission denied"),
    ] {
        let out = w.run(&["-d", "--name", name], &[command]);
        assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
        assert_eq!(stdout(&out), "", "no id for a container that did not start");
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
        assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
        let state = exited_state(&w, name);
        assert_eq!(state["exit_code"], code, "{state}");
    }
    // A failure in the container's setup (its working directory cannot be made: the
    // rootfs has a file where the path needs a directory) is run's own: 125.
    let out = w.run(
        &["-d", "--name", "badwd", "-w", "/image-marker/sub"],
        &["true"],
    );
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot create directory /image-marker"),
        "{}",
        stderr(&out)
    );
    assert_eq!(exited_state(&w, "badwd")["exit_code"], 125);
    // With --rm the record goes too.
    let before = w.container_ids().len();
    let out = w.run(&["-d", "--rm"], &["no-such-command"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert!(wait_for(30, || w.container_ids().len() == before));
    // No supervisor stays for any of them, and no container cgroup.
    let root = w.root.to_string_lossy().into_owned();
    assert!(wait_for(30, || pids_with(&root).is_empty()));
    for id in w.container_ids() {
        assert_no_cgroup(&id);
    }
}
