//! What one `run --rm` does only once: work the start path must not repeat (issue 20).
//! Counted with strace on the real binary and every process it starts.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

/// The calls `trace` (strace's `-e trace=` list) of one `run --rm --network none true`,
/// from every process of the run, one line each.
fn traced_run(fx: &Fixture, trace: &str) -> Vec<String> {
    let log = fx.dir.path().join("strace.log");
    let status = Command::new("strace")
        // -y: descriptors shown with their paths (`write(5</a/tasks>, "0", 1)`)
        .args(["-f", "-qq", "-y", "-e", &format!("trace={trace}"), "-o"])
        .arg(&log)
        .arg(BIN)
        .env_remove("MYCONTAINER_ROOT")
        .arg("--root")
        .arg(&fx.root)
        .args(["run", "--rm", "--network", "none", "--rootfs"])
        .arg(&fx.rootfs)
        .arg("true")
        .stdin(Stdio::null())
        .status()
        .expect("strace is needed for this test");
    assert!(status.success(), "run --rm under strace failed");
    std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The quoted path of a traced call (`rmdir("/a/b") = 0` -> `/a/b`).
fn path_of(line: &str) -> Option<&str> {
    line.split('"').nth(1)
}

#[test]
fn a_rm_run_reads_its_own_cgroup_file_at_most_once() {
    let fx = Fixture::new();
    let calls = traced_run(&fx, "openat");
    // Layout detection, the container's /sys/fs/cgroup view and what it inherits all
    // come from one read (none on a cgroup2 host, where nothing needs it).
    let reads = calls
        .iter()
        .filter(|l| path_of(l) == Some("/proc/self/cgroup"))
        .count();
    assert!(
        reads <= 1,
        "/proc/self/cgroup read {reads} times: {calls:#?}"
    );
    fx.assert_no_containers();
}

#[test]
fn a_rm_run_removes_its_cgroup_once() {
    let fx = Fixture::new();
    let calls = traced_run(&fx, "mkdir,rmdir");
    // The container's cgroup directories (mycontainer/<id> in every hierarchy): made
    // once, removed once (by the runtime as the container ended; the record's removal
    // does not look again).
    let ours = |l: &&String| {
        path_of(l).is_some_and(|p| {
            let p = Path::new(p);
            p.starts_with("/sys/fs/cgroup")
                && p.parent()
                    .is_some_and(|parent| parent.ends_with("mycontainer"))
        })
    };
    let made: Vec<&str> = calls
        .iter()
        .filter(ours)
        .filter(|l| l.contains("mkdir(") && l.ends_with("= 0"))
        .filter_map(|l| path_of(l))
        .collect();
    assert!(!made.is_empty(), "no container cgroup made: {calls:#?}");
    let mut removals: HashMap<&str, usize> = HashMap::new();
    for line in calls.iter().filter(ours).filter(|l| l.contains("rmdir(")) {
        *removals.entry(path_of(line).unwrap()).or_default() += 1;
    }
    for dir in &made {
        assert_eq!(
            removals.get(dir),
            Some(&1),
            "{dir} not removed exactly once: {calls:#?}"
        );
        assert!(!Path::new(dir).exists(), "{dir} left behind");
    }
    let again: Vec<_> = removals.iter().filter(|(_, n)| **n > 1).collect();
    assert!(again.is_empty(), "removed more than once: {again:?}");
    fx.assert_no_containers();
}

#[test]
fn a_rm_run_joins_each_v1_cgroup_with_one_write_from_the_container_itself() {
    let fx = Fixture::new();
    let calls = traced_run(&fx, "execve,write");
    // The CLI is the first process strace saw exec.
    let pid_of = |l: &str| l.split_whitespace().next().unwrap_or("").to_string();
    let cli = pid_of(calls.iter().find(|l| l.contains("execve(")).unwrap());
    // (pid, tasks file) of every write to a v1 `tasks` file
    let joins: Vec<(String, &str)> = calls
        .iter()
        .filter(|l| l.contains(" write(") || l.contains("]write("))
        .filter_map(|l| {
            let path = l.split('<').nth(1)?.split('>').next()?;
            path.ends_with("/tasks").then(|| (pid_of(l), path))
        })
        .collect();
    if !Path::new("/sys/fs/cgroup/pids/tasks").exists() {
        // cgroup2: the clone places the child; nothing writes a tasks file
        assert!(joins.is_empty(), "{joins:?}");
        fx.assert_no_containers();
        return;
    }
    assert!(!joins.is_empty(), "no v1 join: {calls:#?}");
    let mut seen = HashMap::new();
    for (pid, path) in &joins {
        // never the CLI moving its own thread in and out: the container's process
        // moves itself, into the container's cgroups only
        assert_ne!(pid, &cli, "the CLI wrote {path}: {joins:?}");
        assert!(
            Path::new(path)
                .parent()
                .and_then(Path::parent)
                .is_some_and(|p| p.ends_with("mycontainer")),
            "a write outside the container's cgroups: {path}"
        );
        *seen.entry(*path).or_insert(0) += 1;
    }
    // one write per hierarchy
    assert!(seen.values().all(|n| *n == 1), "{joins:?}");
    fx.assert_no_containers();
}

/// A `--rm` record goes only after its container's /etc tmpfs (src/container/etcfs.rs)
/// is detached: once the record is gone nothing of its run may stay mounted, not even
/// until the run directory's turn (a fixture's leak check caught one in that window).
#[test]
fn a_rm_run_detaches_its_etc_tmpfs_before_its_record_goes() {
    let fx = Fixture::new();
    let calls = traced_run(&fx, "umount2,rename");
    let entries = run_dir(&fx.root).join("containers");
    let detached = calls.iter().position(|l| {
        l.contains("umount2(")
            && l.ends_with("= 0")
            && path_of(l).is_some_and(|p| Path::new(p).starts_with(&entries))
    });
    let record_gone = calls
        .iter()
        .position(|l| l.contains("rename(") && l.contains("/.removing-"));
    let (Some(detached), Some(record_gone)) = (detached, record_gone) else {
        panic!("no detach of the /etc tmpfs or no removal of the record: {calls:#?}");
    };
    assert!(
        detached < record_gone,
        "the record went before its /etc tmpfs: {calls:#?}"
    );
    fx.assert_no_containers();
}
