//! The run directory (src/container/rundir.rs): what need not survive a reboot lives on
//! a tmpfs under /run/mycontainer; every command works once a reboot emptied it; the
//! orphan reclaim before each command looks only at the containers it marks live.

mod common;

use std::fs;
use std::path::Path;

use common::*;

fn on_tmpfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
}

/// Kills the container's supervisor with SIGKILL and waits for its init to die with it.
fn kill_supervisor(w: &World, id: &str) {
    let pid = w.state(id)["pid"].as_i64().unwrap() as i32;
    // The init's parent (a supervisor's cmdline is briefly empty while it execs).
    let supervisor = parent_pid(pid);
    // SAFETY: SIGKILL to the supervisor this test started.
    assert_eq!(unsafe { libc::kill(supervisor, libc::SIGKILL) }, 0);
    assert!(wait_for(10, || !alive(pid)));
}

#[test]
fn a_containers_etc_files_and_init_layer_live_in_the_run_directory_on_tmpfs() {
    let w = World::new();
    let id = w.run_detached(
        &[
            "--name",
            "web",
            "--hostname",
            "box",
            "--add-host",
            "db:10.1.2.3",
        ],
        &["sleep", "300"],
    );
    let run = run_dir(&w.root);
    assert!(on_tmpfs(&run), "{} is not on a tmpfs", run.display());
    let mine = run.join("containers").join(&id);
    for name in ["hostname", "hosts", "resolv.conf", "init/etc/mtab"] {
        assert!(
            fs::symlink_metadata(mine.join(name)).is_ok(),
            "{name} not in the run dir"
        );
        assert!(
            !w.root.join("containers").join(&id).join(name).exists(),
            "{name} still in the record"
        );
    }
    assert_eq!(
        fs::read_link(run.join("root")).unwrap(),
        w.root,
        "the run dir names its state root"
    );
    // What the container sees is those files.
    let inside = ok(w.mc(&[
        "exec",
        "web",
        "sh",
        "-c",
        "cat /etc/hostname; grep -w db /etc/hosts; readlink /etc/mtab",
    ]));
    assert_eq!(inside, "box\n10.1.2.3\tdb\n/proc/mounts\n");
    // The bind mounts' targets come from the init layer: nothing in the upper dir (on
    // disk), so diff shows nothing either.
    let upper = w.root.join("containers").join(&id).join("upper");
    assert!(
        !upper.join("etc").exists(),
        "the etc stubs were made in the upper dir"
    );
    assert_eq!(ok(w.mc(&["diff", "web"])), "");
    // A running container is marked live; rm takes its run files and marker.
    assert!(run.join("live").join(&id).exists());
    ok(w.mc(&["rm", "-f", "web"]));
    assert!(!mine.exists());
    assert!(!run.join("live").join(&id).exists());
}

#[test]
fn every_command_works_after_a_reboot_emptied_the_run_directory() {
    let w = World::new();
    let flags = [
        "--name",
        "rebooted",
        "--dns",
        "192.0.2.53",
        "--add-host",
        "db:10.1.2.3",
    ];
    let id = w.run_detached(&flags, &["sleep", "300"]);
    let kept = w.run(&["--name", "kept"], &["true"]);
    ok(kept);
    // A reboot: every process dies and the tmpfs is empty.
    kill_supervisor(&w, &id);
    reboot_run_dir(&w.root);
    // The first command looks at every record: the one that said "running" is exited.
    let all = ok(w.mc(&["ps", "-a"]));
    assert!(all.contains("Exited (137)"), "{all}");
    assert_eq!(w.state(&id)["status"], "exited");
    assert!(run_dir(&w.root).join("swept").exists());
    // A stopped container's files, through its overlay (the init layer is a lowerdir).
    let copied = w.dir.path().join("copied");
    ok(w.mc(&["cp", "kept:/image-marker", copied.to_str().unwrap()]));
    assert_eq!(fs::read_to_string(&copied).unwrap(), "from the image\n");
    assert_eq!(ok(w.mc(&["diff", "kept"])), "");
    // start writes its run files again, from its config.json.
    ok(w.mc(&["start", "rebooted"]));
    assert!(wait_for(10, || w.state(&id)["status"] == "running"));
    let inside = ok(w.mc(&[
        "exec",
        "rebooted",
        "sh",
        "-c",
        "cat /etc/hostname; grep -c 192.0.2.53 /etc/resolv.conf; grep -w db /etc/hosts; readlink /etc/mtab",
    ]));
    assert_eq!(
        inside,
        format!("{}\n1\n10.1.2.3\tdb\n/proc/mounts\n", &id[..12])
    );
    assert_eq!(ok(w.mc(&["start", "-a", "kept"])), "");
    ok(w.mc(&["rm", "-f", "rebooted", "kept"]));
    // gc too, after another reboot.
    reboot_run_dir(&w.root);
    ok(w.mc(&["gc"]));
    w.assert_no_containers();
}

#[test]
fn a_killed_supervisor_is_reclaimed_through_its_live_marker_and_exited_records_are_not_read() {
    let w = World::new();
    let id = w.run_detached(&["--name", "victim"], &["sleep", "300"]);
    let marker = run_dir(&w.root).join("live").join(&id);
    assert!(marker.exists(), "a running container is marked live");
    // An exited container has no marker: the reclaim before each command never reads
    // its state. Make one that lies ("running", as a record the reclaim must not look
    // at) to show it: only gc, which reads every record, fixes it.
    ok(w.run(&["--name", "liar"], &["true"]));
    let inspected: serde_json::Value =
        serde_json::from_str(&ok(w.mc(&["inspect", "liar"]))).unwrap();
    let liar = inspected[0]["Id"].as_str().unwrap().to_string();
    assert!(!run_dir(&w.root).join("live").join(&liar).exists());
    let state_path = w.root.join("containers").join(&liar).join("state.json");
    let mut state = w.state(&liar);
    state["status"] = "running".into();
    state["pid"] = 1.into();
    fs::write(&state_path, serde_json::to_vec(&state).unwrap()).unwrap();

    kill_supervisor(&w, &id);
    let all = ok(w.mc(&["ps", "-a"]));
    assert_eq!(w.state(&id)["status"], "exited", "{all}");
    assert_eq!(w.state(&id)["exit_code"], 137);
    assert!(!marker.exists(), "its marker went with the reclaim");
    assert_no_cgroup(&id);
    assert_eq!(w.state(&liar)["status"], "running", "not read by the sweep");
    let gc = ok(w.mc(&["gc"]));
    assert!(
        gc.contains(&format!("marked container {liar} exited")),
        "{gc}"
    );
    assert_eq!(w.state(&liar)["status"], "exited");
}

#[test]
fn a_killed_foreground_cli_is_reclaimed_by_the_next_command() {
    let w = World::new();
    let mut cli = w
        .run_cmd(&["--rm", "--name", "fg"], &["sleep", "300"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let id = w.wait_running();
    let pid = w.state(&id)["pid"].as_i64().unwrap() as i32;
    assert!(run_dir(&w.root).join("live").join(&id).exists());
    cli.kill().unwrap();
    cli.wait().unwrap();
    assert!(wait_for(10, || !alive(pid)));
    ok(w.mc(&["ps", "-a"]));
    w.assert_no_containers();
    assert!(!run_dir(&w.root).join("live").join(&id).exists());
    assert!(!run_dir(&w.root).join("containers").join(&id).exists());
    assert_no_cgroup(&id);
}

/// `mycontainer --root ROOT ARGS...` for a root outside the test's World.
fn mc_in(root: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN)
        .env_remove("MYCONTAINER_ROOT")
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// A state root in a temp dir the test deletes (dropping the first) to stand for a
/// root removed by its user.
fn doomed_root() -> (tempfile::TempDir, std::path::PathBuf) {
    let gone = tempfile::Builder::new()
        .prefix("mycontainer-test-")
        .tempdir()
        .unwrap();
    let root = gone.path().join("root");
    (gone, root)
}

/// A state root that ran one container and was then removed, leaving what a killed
/// container leaves in its run directory: its network namespace bind-mounted under
/// netns/, `times` times (stacked). Returns the root's (gone) path.
fn removed_root_with_a_namespace_mounted(w: &World, times: usize) -> std::path::PathBuf {
    let (gone, root) = doomed_root();
    let rootfs = w.rootfs.to_str().unwrap();
    ok(mc_in(&root, &["run", "--rm", "--rootfs", rootfs, "true"]));
    let netns = run_dir(&root).join("netns");
    fs::create_dir_all(&netns).unwrap();
    let left = netns.join("0".repeat(64));
    fs::write(&left, "").unwrap();
    for _ in 0..times {
        let mounted = std::process::Command::new("mount")
            .args(["--bind", "/proc/self/ns/net"])
            .arg(&left)
            .status()
            .unwrap();
        assert!(mounted.success());
    }
    drop(gone);
    root
}

/// Neither the run directory of `root` nor where gc moves it before the removal is
/// left, and nothing stays mounted below either.
fn assert_run_dir_gone(root: &std::path::Path) {
    let dir = run_dir(root);
    let key = dir.file_name().unwrap().to_str().unwrap();
    let aside = dir.with_file_name(format!(".gone-{key}"));
    let table = fs::read_to_string("/proc/self/mountinfo").unwrap();
    for left in [&dir, &aside] {
        assert!(!left.exists(), "gc left {}", left.display());
        assert!(
            !table.contains(left.to_str().unwrap()),
            "a mount is left below {}",
            left.display()
        );
    }
}

#[test]
fn gc_removes_the_run_directory_of_a_removed_state_root() {
    let w = World::new();
    let (gone, root) = doomed_root();
    let rootfs = w.rootfs.to_str().unwrap();
    ok(mc_in(
        &root,
        &["run", "--name", "left", "--rootfs", rootfs, "true"],
    ));
    assert!(run_dir(&root).is_dir());
    ok(mc_in(&root, &["rm", "left"]));
    drop(gone);
    assert!(run_dir(&root).is_dir(), "nothing removed it yet");
    ok(w.mc(&["gc"]));
    assert!(!run_dir(&root).exists());
}

/// A root removed with a container record in it whose own tmpfs (for its /etc files,
/// src/container/etcfs.rs) is still mounted in the run directory (the test mounts one:
/// an exited container holds none, but a run killed at the wrong moment before its root
/// was deleted may leave it): gc detaches it.
#[test]
fn gc_removes_a_removed_roots_run_directory_with_a_containers_tmpfs_mounted() {
    let w = World::new();
    let (gone, root) = doomed_root();
    let rootfs = w.rootfs.to_str().unwrap();
    ok(mc_in(
        &root,
        &["run", "--name", "kept", "--rootfs", rootfs, "true"],
    ));
    let containers = run_dir(&root).join("containers");
    assert_eq!(container_mounts(&root), Vec::<String>::new(), "exited");
    let id = fs::read_dir(&containers)
        .unwrap()
        .next()
        .expect("the record's run directory")
        .unwrap()
        .path();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "mycontainer-etc"])
        .arg(&id)
        .status()
        .unwrap();
    assert!(mounted.success());
    assert_eq!(container_mounts(&root).len(), 1);
    drop(gone);
    ok(w.mc(&["gc"]));
    assert_run_dir_gone(&root);
}

/// A root removed while one of its containers' network namespaces was still mounted in
/// its run directory (its supervisor killed, then the root deleted): gc detaches the
/// mount and removes the directory instead of failing "busy" on every run.
#[test]
fn gc_removes_a_removed_roots_run_directory_with_a_namespace_still_mounted() {
    let w = World::new();
    // Twice, stacked: one detach lifts only the top mount.
    let root = removed_root_with_a_namespace_mounted(&w, 2);
    ok(w.mc(&["gc"]));
    assert_run_dir_gone(&root);
}

/// Every state root's gc sweeps the one run base, so gcs run at once (users, parallel
/// test runs) meet over the same removed roots' directories: each must succeed, and
/// between them remove every such directory and detach every namespace mounted there.
#[test]
fn gcs_running_at_once_all_succeed_and_remove_every_removed_roots_run_directory() {
    let w = World::new();
    let doomed: Vec<_> = (0..12)
        .map(|_| removed_root_with_a_namespace_mounted(&w, 1))
        .collect();
    let gcs: Vec<_> = (0..6)
        .map(|_| {
            std::process::Command::new(BIN)
                .env_remove("MYCONTAINER_ROOT")
                .arg("--root")
                .arg(&w.root)
                .arg("gc")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for gc in gcs {
        ok(gc.wait_with_output().unwrap());
    }
    for root in &doomed {
        assert_run_dir_gone(root);
    }
}

/// Ages every live marker of `root`'s run directory past gc's grace for a start in
/// progress (two minutes), as if its containers had been killed an hour ago.
fn age_live_markers(root: &Path) {
    let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for marker in fs::read_dir(run_dir(root).join("live")).unwrap().flatten() {
        fs::File::options()
            .write(true)
            .open(marker.path())
            .unwrap()
            .set_modified(an_hour_ago)
            .unwrap();
    }
}

/// A root deleted after its container was killed with its supervisor leaves the
/// container's live marker, its /etc tmpfs and its (empty) cgroup. gc cannot tell such a
/// root from one only another mount namespace sees: it keeps them while the marker is
/// young (a start in progress there, before its cgroup exists), then, with no process
/// in any of the root's cgroups, removes the run directory and those cgroups.
#[test]
fn gc_reclaims_a_removed_roots_run_directory_and_cgroups_once_a_killed_containers_marker_is_old() {
    let w = World::new();
    let (gone, root) = doomed_root();
    let rootfs = w.rootfs.to_str().unwrap();
    let run = [
        "run", "-d", "--name", "killed", "--rootfs", rootfs, "sleep", "1000",
    ];
    let id = ok(mc_in(&root, &run)).trim().to_string();
    let state = root.join("containers").join(&id).join("state.json");
    let state: serde_json::Value = serde_json::from_slice(&fs::read(state).unwrap()).unwrap();
    let pid = state["pid"].as_i64().unwrap() as i32;
    // SAFETY: SIGKILL to the supervisor (the init's parent) this test started.
    assert_eq!(unsafe { libc::kill(parent_pid(pid), libc::SIGKILL) }, 0);
    assert!(
        wait_for(10, || !alive(pid)),
        "the init outlived its supervisor"
    );
    let marker = run_dir(&root).join("live").join(&id);
    assert!(marker.exists());
    assert!(!container_cgroups(&id).is_empty(), "its cgroup is left");
    assert_eq!(
        container_mounts(&root),
        vec![id.clone()],
        "its /etc tmpfs is left"
    );
    drop(gone);
    ok(w.mc(&["gc"]));
    assert!(
        marker.exists(),
        "gc removed a run directory with a young marker"
    );
    age_live_markers(&root);
    ok(w.mc(&["gc"]));
    assert_run_dir_gone(&root);
    assert_no_cgroup(&id);
}

#[test]
fn gc_keeps_the_run_directory_of_a_root_only_another_mount_namespace_sees() {
    let w = World::new();
    ok(w.mc(&["ps"]));
    // The run directories' tmpfs must be shared with the namespace below, or it would
    // mount its own and nothing would be tested.
    assert!(on_tmpfs(Path::new("/run/mycontainer")));
    let dir = tempfile::Builder::new()
        .prefix("mycontainer-test-")
        .tempdir()
        .unwrap();
    let hidden_root = dir.path().join("mnt").join("root");
    fs::create_dir(dir.path().join("mnt")).unwrap();
    let (ready, gc_done) = (dir.path().join("ready"), dir.path().join("gc-done"));
    // A state root on a tmpfs that only this private mount namespace sees, with a
    // running container; it waits for the gc outside, then uses the container.
    let script = format!(
        r#"set -e
mount -t tmpfs hidden {mnt}
mc() {{ {bin} --root {root} "$@"; }}
mc run -d --name hidden --rootfs {rootfs} sleep 1000 >/dev/null
touch {ready}
while [ ! -e {gc_done} ]; do sleep 0.05; done
mc exec hidden cat /etc/hostname
mc rm -f hidden >/dev/null
echo done"#,
        mnt = dir.path().join("mnt").display(),
        bin = BIN,
        root = hidden_root.display(),
        rootfs = w.rootfs.display(),
        ready = ready.display(),
        gc_done = gc_done.display(),
    );
    let mut inner = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .env_remove("MYCONTAINER_ROOT")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut exited = false;
    wait_for(30, || {
        exited = matches!(inner.try_wait(), Ok(Some(_)));
        exited || ready.exists()
    });
    if !ready.exists() {
        let out = inner.wait_with_output().unwrap();
        panic!(
            "the hidden container did not start: {}{}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(!hidden_root.exists(), "the root must be invisible out here");
    assert!(run_dir(&hidden_root).join("live").is_dir());
    // Past the grace for a start in progress: only its running container keeps it.
    age_live_markers(&hidden_root);
    ok(w.mc(&["gc"]));
    let kept = run_dir(&hidden_root).join("live").is_dir();
    fs::write(&gc_done, "").unwrap();
    let out = inner.wait_with_output().unwrap();
    assert!(
        kept,
        "gc removed the run directory of a root with a running container"
    );
    assert!(
        out.status.success() && stdout(&out).ends_with("done\n"),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    // Its container gone, the root is unseen and unused: the next gc removes it.
    ok(w.mc(&["gc"]));
    assert!(!run_dir(&hidden_root).exists());
}

/// The container's own tmpfs for its /etc files (src/container/etcfs.rs) is mounted
/// only while it runs, as Docker's /dev/shm: a created or exited container holds no
/// mount (the host's mount table, which every start copies, does not grow with them).
/// Its files are written again at each start, so what the container wrote into them is
/// gone after a restart (as with Docker, which writes hosts and resolv.conf at each
/// start).
#[test]
fn a_containers_etc_tmpfs_is_mounted_only_while_it_runs() {
    let w = World::new();
    let mounted = |id: &str| container_mounts(&w.root).iter().any(|m| m == id);
    // Exited after a foreground run.
    let out = ok(w.run(
        &["--name", "fg"],
        &["sh", "-c", "grep -c mycontainer-etc /proc/mounts"],
    ));
    assert!(
        out.trim().parse::<u32>().unwrap() >= 1,
        "not on its tmpfs inside: {out}"
    );
    let inspected: serde_json::Value = serde_json::from_str(&ok(w.mc(&["inspect", "fg"]))).unwrap();
    let fg = inspected[0]["Id"].as_str().unwrap().to_string();
    assert!(!mounted(&fg), "an exited container has a tmpfs mounted");
    // Its files are on the run directory (what cp and diff use).
    assert!(run_dir(&w.root)
        .join("containers")
        .join(&fg)
        .join("hosts")
        .exists());
    // Created: a foreground run held (by strace, which delays its first mount(2) for
    // five minutes) once its record says "created", before its start mounts anything:
    // no tmpfs. (Before, the tmpfs came with the record, before its first state.)
    let mut tracer = std::process::Command::new("strace")
        .args(["-o", "/dev/null", "-e", "trace=mount", "-e"])
        .arg("inject=mount:delay_enter=300000000:when=1")
        .arg(BIN)
        .arg("--root")
        .arg(&w.root)
        .args(["run", "--name", "made0", "--rootfs"])
        .arg(&w.rootfs)
        .arg("true")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("strace is installed");
    let children = format!("/proc/{0}/task/{0}/children", tracer.id());
    let cli = || -> Option<i32> { fs::read_to_string(&children).ok()?.trim().parse().ok() };
    let in_mount = |pid: i32| {
        fs::read_to_string(format!("/proc/{pid}/syscall"))
            .is_ok_and(|s| s.split(' ').next() == Some(&libc::SYS_mount.to_string()))
    };
    assert!(
        wait_for(30, || cli().is_some_and(in_mount)),
        "the run never reached its first mount"
    );
    let made0 = fs::read_dir(w.root.join("containers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|id| id.len() == 64 && *id != fg)
        .expect("the record of the held run");
    assert_eq!(w.state(&made0)["status"], "created");
    assert!(!mounted(&made0), "a created container has a tmpfs mounted");
    // SIGKILL to the CLI, then to strace, which holds it stopped until its delay ends;
    // detached, the CLI dies before its mount.
    // SAFETY: kill(2) of the CLI this test started (through strace).
    assert_eq!(unsafe { libc::kill(cli().unwrap(), libc::SIGKILL) }, 0);
    tracer.kill().unwrap();
    tracer.wait().unwrap();
    ok(w.mc(&["rm", "-f", "made0"]));
    assert!(!mounted(&made0));
    // Running: mounted; stopped: not.
    let created = w.run_detached(&["--name", "made"], &["sleep", "300"]);
    assert!(
        mounted(&created),
        "a running container has no tmpfs of its own"
    );
    ok(w.mc(&[
        "exec",
        "made",
        "sh",
        "-c",
        "echo 10.9.9.9 edited >> /etc/hosts",
    ]));
    ok(w.mc(&["stop", "-t", "0", "made"]));
    assert_eq!(w.state(&created)["status"], "exited");
    assert!(
        !mounted(&created),
        "a stopped container has a tmpfs mounted"
    );
    // Started again: mounted, its files written anew (the edit gone).
    ok(w.mc(&["start", "made"]));
    assert!(wait_for(10, || w.state(&created)["status"] == "running"));
    assert!(mounted(&created));
    let hosts = ok(w.mc(&["exec", "made", "cat", "/etc/hosts"]));
    assert!(
        hosts.contains("localhost") && !hosts.contains("edited"),
        "{hosts}"
    );
    // kill, as stop.
    ok(w.mc(&["kill", "made"]));
    assert!(wait_for(10, || w.state(&created)["status"] == "exited"));
    assert!(
        wait_for(10, || !mounted(&created)),
        "a killed container has a tmpfs mounted"
    );
    // Its supervisor killed with -9: the next command's reclaim detaches it.
    let id = w.run_detached(&["--name", "orphan"], &["sleep", "300"]);
    assert!(mounted(&id));
    kill_supervisor(&w, &id);
    ok(w.mc(&["ps", "-a"]));
    assert_eq!(w.state(&id)["status"], "exited");
    assert!(!mounted(&id), "a reclaimed container has a tmpfs mounted");
    // A restart policy: mounted while each run runs, not between them (the last run
    // ends for good: on-failure:2 after three failing runs).
    let id = w.run_detached(
        &["--name", "again", "--restart", "on-failure:2"],
        &["sh", "-c", "grep -c mycontainer-etc /proc/mounts; exit 3"],
    );
    assert!(wait_for(30, || w.state(&id)["status"] == "exited"
        && w.state(&id)["restarting"] != true
        && w.state(&id)["restart_count"] == 2));
    assert!(
        !mounted(&id),
        "a container done restarting has a tmpfs mounted"
    );
    let logs = ok(w.mc(&["logs", "again"]));
    assert_eq!(logs.lines().count(), 3, "{logs}");
}
