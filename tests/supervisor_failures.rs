//! A detached supervisor's own failures reach the record: its stderr is the record's
//! supervisor.log, and `inspect` and `ps` show the failure once the next command finds
//! the record orphaned.

mod common;

use std::fs;
use std::process::Stdio;

use common::*;

/// Starts a detached container (`run -d` with `run_flags`) from a copy of the two
/// binaries, waits for the small supervisor to take over, removes the copy's full half
/// and lets the command exit 3: the supervisor's exec back into the full binary then
/// fails for real. Returns the World, the removed binary's path and the container's id
/// once the supervisor is gone.
fn break_the_supervisor_of(run_flags: &[&str]) -> (World, std::path::PathBuf, String) {
    let w = World::new();
    // A copy of the two binaries whose full half we then remove.
    let bin = w.dir.path().join("bin");
    fs::create_dir(&bin).unwrap();
    let full = bin.join("mycontainer");
    fs::copy(BIN, &full).unwrap();
    let small = std::path::Path::new(BIN).with_file_name("mycontainer-supervisor");
    fs::copy(&small, bin.join("mycontainer-supervisor")).unwrap();
    let shared = w.dir.path().join("out");
    fs::create_dir(&shared).unwrap();
    let out = std::process::Command::new(&full)
        .env_remove("MYCONTAINER_ROOT")
        .arg("--root")
        .arg(&w.root)
        .args(["run", "-d"])
        .args(run_flags)
        .args(["--network", "none", "-v"])
        .arg(format!("{}:/out", shared.display()))
        .arg("--rootfs")
        .arg(&w.rootfs)
        .args([
            "sh",
            "-c",
            "until [ -e /out/go ]; do sleep 0.05; done; exit 3",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let id = ok(out).trim().to_string();
    let init = w.state(&id)["pid"].as_i64().unwrap() as i32;
    let supervisor = parent_pid(init);
    let handed_over = wait_for(30, || {
        fs::read_link(format!("/proc/{supervisor}/exe"))
            .is_ok_and(|exe| exe.ends_with("mycontainer-supervisor"))
    });
    assert!(handed_over, "the small supervisor never took over");
    fs::remove_file(&full).unwrap();
    fs::write(shared.join("go"), "").unwrap();
    assert!(
        wait_for(30, || !alive(supervisor)),
        "the supervisor outlived its failed exec"
    );
    (w, full, id)
}

/// The small supervisor execs the full binary back to record the exit; when that binary
/// is gone (an upgrade that moved it, a removed install), the exec fails for real. Its
/// message went to /dev/null and the record said only that the supervisor was killed
/// (exit 137); it is now in supervisor.log, in inspect's State.Error, and the exit code
/// is 125 (the tool failed).
#[test]
fn the_small_supervisors_failed_exec_back_is_logged_and_shown_by_inspect_and_ps() {
    let (w, full, id) = break_the_supervisor_of(&["--name", "orphan"]);
    let log = w.root.join("containers").join(&id).join("supervisor.log");
    let logged = fs::read_to_string(&log).unwrap_or_default();
    assert!(
        logged.contains("its supervisor failed: cannot run")
            && logged.contains(&full.display().to_string())
            && logged.contains("No such file or directory"),
        "supervisor.log: {logged:?}"
    );
    let state = inspect(&w, "orphan")["State"].clone();
    assert_eq!(state["Status"], "exited", "{state}");
    assert_eq!(state["ExitCode"], 125, "{state}");
    let error = state["Error"].as_str().unwrap_or_default();
    assert!(
        error.contains("its supervisor failed: cannot run") && error.contains("supervisor.log"),
        "{error}"
    );
    let ps = ok(w.mc(&[
        "ps",
        "-a",
        "--filter",
        "name=orphan",
        "--format",
        "{{.Status}}",
    ]));
    assert!(ps.starts_with("Exited (125)"), "{ps}");
    // The record is whole: it can be removed, and nothing is left (World's checks).
    ok(w.mc(&["rm", "orphan"]));
}

/// The same failure for a `--rm` container: the next command finds it orphaned and
/// removes the record, supervisor.log with it. Why it ended must survive that: the `die`
/// event (`mycontainer events`) carries the exit code 125 and the supervisor's error.
/// Before, no `die` event was logged at all, and the error was lost with the record.
#[test]
fn a_removed_containers_supervisor_failure_is_kept_in_its_die_event() {
    let (w, full, id) = break_the_supervisor_of(&["--rm", "--name", "gone"]);
    // The next command reclaims the orphan: a --rm record is removed.
    ok(w.mc(&["ps", "-a"]));
    w.assert_no_containers();
    let events = ok(w.mc(&[
        "events",
        "--since",
        "1h",
        "--until",
        "0s",
        "--format",
        "json",
        "--filter",
        "event=die",
    ]));
    let die: Vec<serde_json::Value> = events
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["ID"] == id.as_str())
        .collect();
    assert_eq!(die.len(), 1, "die events of {id}: {events}");
    let attrs = &die[0]["Attributes"];
    assert_eq!(attrs["exitCode"], "125", "{attrs}");
    assert_eq!(attrs["name"], "gone", "{attrs}");
    let error = attrs["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("its supervisor failed: cannot run")
            && error.contains(&full.display().to_string())
            && error.contains("No such file or directory"),
        "{attrs}"
    );
}
