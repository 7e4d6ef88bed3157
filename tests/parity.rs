//! Docker parity where users notice (issue 16): each probe states what Docker does and
//! checks ours from inside a real container.

mod common;

use common::{ok, stderr, stdout, World};

/// `--tmpfs PATH:OPTIONS` applies the user's options after Docker's defaults
/// (noexec,nosuid,nodev), so `exec` and `size` take effect.
#[test]
fn tmpfs_options_are_honoured_over_the_defaults() {
    let w = World::new();
    let out = ok(w.run(
        &["--rm", "--tmpfs", "/run:size=4m,exec,mode=0700"],
        &[
            "sh",
            "-c",
            "grep ' /run ' /proc/mounts; stat -c %a /run; printf '#!/bin/sh\\necho ran\\n' > /run/x; chmod +x /run/x; /run/x",
        ],
    ));
    let line = out.lines().next().unwrap_or_default();
    assert!(line.contains("size=4096k"), "{line}");
    assert!(!line.contains("noexec"), "{line}");
    assert!(line.contains("nosuid") && line.contains("nodev"), "{line}");
    assert!(out.contains("\n700\n"), "{out}");
    assert!(out.trim_end().ends_with("ran"), "{out}");

    // Without options the defaults stand: a script there cannot run.
    let out = w.run(
        &["--rm", "--tmpfs", "/run"],
        &[
            "sh",
            "-c",
            "printf '#!/bin/sh\\necho ran\\n' > /run/x; chmod +x /run/x; /run/x",
        ],
    );
    assert_ne!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
}

/// `/dev/shm` is 64 MiB as in Docker, and `--shm-size` sets it.
#[test]
fn shm_size_sets_dev_shm() {
    let w = World::new();
    let probe = ["sh", "-c", "grep ' /dev/shm ' /proc/mounts"];
    let default = ok(w.run(&["--rm"], &probe));
    assert!(default.contains("size=65536k"), "{default}");
    let bigger = ok(w.run(&["--rm", "--shm-size", "128m"], &probe));
    assert!(bigger.contains("size=131072k"), "{bigger}");
    let bad = w.run(&["--rm", "--shm-size", "lots"], &["true"]);
    assert_eq!(bad.status.code(), Some(125));
    assert!(stderr(&bad).contains("--shm-size"), "{}", stderr(&bad));
}

/// `--stop-signal` is what `stop` sends first (Docker's STOPSIGNAL), shown by inspect;
/// a bad name is refused before anything is created.
#[test]
fn stop_sends_the_stop_signal() {
    let w = World::new();
    let id = w.run_detached(
        &["--name", "usr1", "--stop-signal", "USR1"],
        &[
            "sh",
            "-c",
            "trap 'echo got-usr1; exit 7' USR1; echo ready; while :; do sleep 0.1; done",
        ],
    );
    assert!(common::wait_for(30, || stdout(&w.mc(&["logs", "usr1"])).contains("ready")));
    let inspected: serde_json::Value =
        serde_json::from_str(&stdout(&w.mc(&["inspect", "usr1"]))).unwrap();
    assert_eq!(inspected[0]["Config"]["StopSignal"], "SIGUSR1");
    ok(w.mc(&["stop", "usr1"]));
    assert_eq!(w.state(&id)["exit_code"], 7, "{}", w.state(&id));
    assert!(stdout(&w.mc(&["logs", "usr1"])).contains("got-usr1"));

    let bad = w.run(&["--rm", "--stop-signal", "SIGNOPE"], &["true"]);
    assert_eq!(bad.status.code(), Some(125));
    assert!(stderr(&bad).contains("invalid signal"), "{}", stderr(&bad));
    assert!(w.container_ids().iter().all(|c| c.len() != 64 || c == &id));
}

/// `exec -u USER` gets the same groups as `run -u USER`: the primary group first, then
/// the user's supplementary groups from /etc/group (Docker: `groups=1000,29,50`).
#[test]
fn exec_u_gets_the_users_groups_as_run_does() {
    let w = World::new();
    let etc = w.rootfs.join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(
        etc.join("passwd"),
        "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        etc.join("group"),
        "root:x:0:\nalice:x:1000:\nstaff:x:50:alice\naudio:x:29:alice\n",
    )
    .unwrap();
    let from_run = ok(w.run(&["--rm", "-u", "alice"], &["id", "-G"]));
    let groups = |text: &str| {
        let mut list: Vec<u32> = text
            .split_whitespace()
            .map(|g| g.parse().unwrap())
            .collect();
        list.sort();
        list
    };
    assert_eq!(groups(&from_run), [29, 50, 1000], "{from_run}");
    w.run_detached(&["--name", "groups"], &["sleep", "100"]);
    for user in ["alice", "1000"] {
        let from_exec = ok(w.mc(&["exec", "-u", user, "groups", "id", "-G"]));
        assert_eq!(
            groups(&from_exec),
            [29, 50, 1000],
            "exec -u {user}: {from_exec}"
        );
    }
}

/// A non-root process owns its standard streams, as under runc: it can reopen them
/// through /dev/stdout and /proc/self/fd (many entrypoints log to /dev/stdout).
#[test]
fn a_non_root_user_can_reopen_its_standard_streams() {
    let w = World::new();
    let script = "echo to-stdout > /dev/stdout && echo to-fd1 > /proc/self/fd/1 && echo to-stderr > /dev/stderr";
    let out = w.run(&["--rm", "-u", "65534"], &["sh", "-c", script]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "to-stdout\nto-fd1\n");
    assert_eq!(stderr(&out), "to-stderr\n");
    w.run_detached(&["--name", "streams"], &["sleep", "100"]);
    let exec = w.mc(&["exec", "-u", "65534", "streams", "sh", "-c", script]);
    assert!(exec.status.success(), "{}", stderr(&exec));
    assert_eq!(stdout(&exec), "to-stdout\nto-fd1\n");
    // /dev/null keeps its owner.
    let null = ok(w.run(&["--rm", "-u", "65534"], &["stat", "-c", "%u", "/dev/null"]));
    assert_eq!(null.trim(), "0");
}

/// `--ulimit` sets the process's limits (soft and hard), exec inherits them, and a bad
/// value is refused before anything is created. (Only lowered here: root in this VM
/// cannot raise a hard limit.)
#[test]
fn ulimit_sets_the_containers_process_limits() {
    let w = World::new();
    let out = ok(w.run(
        &["--rm", "--ulimit", "nofile=512:1024", "--ulimit", "core=0"],
        &["sh", "-c", "ulimit -n; ulimit -Hn; ulimit -c"],
    ));
    assert_eq!(out, "512\n1024\n0\n");
    w.run_detached(
        &["--name", "limited", "--ulimit", "nproc=300"],
        &["sleep", "100"],
    );
    let from_exec = ok(w.mc(&["exec", "limited", "sh", "-c", "ulimit -u"]));
    assert_eq!(from_exec.trim(), "300");
    for bad in ["nofile=2048:1024", "bogus=1", "nofile"] {
        let refused = w.run(&["--rm", "--ulimit", bad], &["true"]);
        assert_eq!(refused.status.code(), Some(125), "{bad}");
        assert!(
            stderr(&refused).contains("--ulimit"),
            "{bad}: {}",
            stderr(&refused)
        );
    }
}

/// With `--network host` the container has the host's hostname, as Docker gives it
/// (its own UTS namespace, the host's name), and the host's /etc/hosts.
#[test]
fn host_network_keeps_the_hosts_name_and_hosts_file() {
    let w = World::new();
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    let out = ok(w.run(
        &["--rm", "--network", "host"],
        &["sh", "-c", "hostname; cat /etc/hosts"],
    ));
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some(host.as_str()), "{out}");
    let hosts: String = lines.map(|l| format!("{l}\n")).collect();
    assert_eq!(hosts, std::fs::read_to_string("/etc/hosts").unwrap());
    // -h still wins.
    let named = ok(w.run(
        &["--rm", "--network", "host", "-h", "chosen"],
        &["hostname"],
    ));
    assert_eq!(named.trim(), "chosen");
}

/// /sys/fs/cgroup as Docker shows it, less what would show the host's tree: on v1 and
/// hybrid hosts the hierarchies the container joined and those it inherited below the
/// host's root (links for co-mounted ones), each read-only and inside the container's
/// cgroup namespace, so `memory/memory.limit_in_bytes` is the container's `--memory`;
/// on a v2 host cgroup2 itself. Nothing there can be written or remounted from inside,
/// and the host's own mounts of the same hierarchies stay writable.
#[test]
fn cgroup_hierarchies_are_shown_read_only_and_namespaced() {
    let w = World::new();
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let (limit_file, pids_max) = if v2 {
        ("memory.max", "pids.max")
    } else {
        ("memory/memory.limit_in_bytes", "pids/pids.max")
    };
    let script = format!(
        "ls /sys/fs/cgroup | sort | tr '\\n' ' '; echo; cat /sys/fs/cgroup/{limit_file}; \
         echo 1 > /sys/fs/cgroup/{limit_file}; mkdir /sys/fs/cgroup/x; \
         mount -o remount,rw /sys/fs/cgroup/{dir} && echo remounted; \
         grep -c -v ':/$' /proc/self/cgroup",
        dir = if v2 { "" } else { "memory" }
    );
    let out = w.run(&["--rm", "--memory", "64m"], &["sh", "-c", &script]);
    let (text, said) = (stdout(&out), stderr(&out));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() == 3, "{text}{said}");
    if v2 {
        assert!(
            lines[0].split(' ').any(|f| f == "cgroup.controllers"),
            "{text}"
        );
    } else {
        let listing = cgroup_listing_with(&w, &["--memory", "64m"]);
        assert!(listing.split(' ').any(|d| d == "memory"), "{listing}");
        assert_eq!(lines[0].trim_end(), listing, "the shown hierarchies");
    }
    assert_eq!(lines[1], "67108864", "the --memory limit");
    // Every cgroup of the container is its namespace's root: no path above it shows.
    assert_eq!(lines[2], "0", "{text}");
    assert_eq!(said.matches("Read-only file system").count(), 2, "{said}");
    assert!(!text.contains("remounted"), "{said}");
    let host_mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let host_ro = host_mounts
        .lines()
        .filter(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|p| p.starts_with("/sys/fs/cgroup"))
        })
        .filter(|l| l.split(' ').nth(5).is_some_and(|o| o.starts_with("ro")))
        .filter(|l| l.contains(" - cgroup"))
        .collect::<Vec<_>>();
    assert!(
        host_ro.is_empty(),
        "the host's cgroup mounts became read-only: {host_ro:?}"
    );

    // Without limits the hierarchies are there too, each the container's own where it
    // joined one (pids: the default limit), never the host's root cgroup, which has no
    // pids.max and alone has cgroup.sane_behavior (v1).
    let script = format!(
        "ls /sys/fs/cgroup | sort | tr '\\n' ' '; echo; cat /sys/fs/cgroup/{pids_max}; \
         ls /sys/fs/cgroup/{dir} | grep -c sane_behavior; cat /sys/fs/cgroup/{dir}/cgroup.procs | wc -l",
        dir = if v2 { "." } else { "pids" }
    );
    let out = ok(w.run(&["--rm"], &["sh", "-c", &script]));
    let lines: Vec<&str> = out.lines().collect();
    if !v2 {
        let listing = cgroup_listing_with(&w, &[]);
        assert!(listing.split(' ').any(|d| d == "pids"), "{listing}");
        assert_eq!(lines[0].trim_end(), listing, "{out}");
    }
    assert_eq!(lines[1], "2048", "the default pids limit: {out}");
    assert_eq!(lines[2], "0", "the host's root cgroup shows: {out}");
    // sh, ls/cat and wc: only the container's processes.
    assert!(
        lines[3]
            .trim()
            .parse::<u32>()
            .is_ok_and(|n| (1..=3).contains(&n)),
        "{out}"
    );
}

/// What /sys/fs/cgroup lists in a container run with `flags` (v1 and hybrid hosts),
/// worked out from the host's view of a twin container's cgroups.
fn cgroup_listing_with(w: &World, flags: &[&str]) -> String {
    let id = w.run_detached(flags, &["sleep", "1000"]);
    let pid = w.state(&id)["pid"].as_i64().unwrap();
    let listing = common::cgroup_view_listing(pid);
    ok(w.mc(&["rm", "-f", &id]));
    listing
}

/// The attack on the cgroup view: container B joins the cpu hierarchy (`--cpus`), A
/// joins none beyond its defaults and looks for B through its own /sys/fs/cgroup. A
/// hierarchy A did not join and inherited at the host's root cgroup would show the
/// host's whole tree there (every container's id and stats); none may show: A finds
/// neither B nor any `mycontainer` directory, and no hierarchy it sees is a host root
/// (only a root cgroup has `cgroup.sane_behavior`).
#[test]
fn a_container_cannot_see_another_containers_cgroup_or_the_hosts_tree() {
    let w = World::new();
    let b = w.run_detached(&["--cpus", "0.5"], &["sleep", "1000"]);
    let b_cgroups = common::container_cgroups(&b);
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    // The attack needs B in a cpu hierarchy of the host (v1) or in the one tree (v2).
    assert!(
        b_cgroups.iter().any(|p| {
            let p = p.to_string_lossy();
            v2 || p.starts_with("/sys/fs/cgroup/cpu/") || p.starts_with("/sys/fs/cgroup/cpu,")
        }),
        "B joined no cpu hierarchy: {b_cgroups:?}"
    );
    let script = format!(
        "find /sys/fs/cgroup -name '*{short}*' 2>/dev/null | sed 's/^/B: /'; \
         find /sys/fs/cgroup -mindepth 2 -type d -name 'mycontainer*' 2>/dev/null | sed 's/^/dir: /'; \
         ls /sys/fs/cgroup/cgroup.sane_behavior /sys/fs/cgroup/*/cgroup.sane_behavior 2>/dev/null | sed 's/^/root: /'; \
         echo done",
        short = &b[..12]
    );
    let out = ok(w.run(&["--rm"], &["sh", "-c", &script]));
    assert_eq!(
        out.trim_end(),
        "done",
        "A sees the host's cgroup tree:\n{out}"
    );
}

/// Test cgroups in one v1 hierarchy, removed (deepest first) even when the test fails.
struct TestCgroups(Vec<std::path::PathBuf>);

impl Drop for TestCgroups {
    fn drop(&mut self) {
        for dir in self.0.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The other half of the rule: a hierarchy the container did not join (freezer) whose
/// inherited cgroup is below the host's root (the CLI in a cgroup of its own, as in a
/// systemd session scope) shows, read-only, that cgroup's subtree and nothing beside
/// or above it.
#[test]
fn an_unjoined_hierarchy_inherited_below_its_root_shows_only_that_subtree() {
    let freezer = std::path::Path::new("/sys/fs/cgroup/freezer");
    if !freezer.join("cgroup.procs").exists() {
        return; // v2 host, or no v1 freezer hierarchy: nothing inherited to show
    }
    let w = World::new();
    let tag = format!("mc-parity-{}", std::process::id());
    let scope = freezer.join(format!("{tag}-scope"));
    let cgroups = TestCgroups(vec![
        freezer.join(format!("{tag}-beside")),
        scope.clone(),
        scope.join("inner"),
    ]);
    for dir in &cgroups.0 {
        std::fs::create_dir(dir).unwrap();
    }
    let script = "ls /sys/fs/cgroup/freezer | grep -c -e sane_behavior -e beside -e scope; \
                  test -d /sys/fs/cgroup/freezer/inner && echo inner; \
                  echo 1 > /sys/fs/cgroup/freezer/inner/cgroup.procs; echo $?";
    // The CLI starts in `scope`: a shell moves itself there and execs it.
    let run = w.run_cmd(&["--rm"], &["sh", "-c", script]);
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg("echo $$ > \"$0\" && exec \"$@\"")
        .arg(scope.join("cgroup.procs"))
        .arg(run.get_program())
        .args(run.get_args())
        .env_remove("MYCONTAINER_ROOT")
        .stdin(std::process::Stdio::null());
    let out = ok(cmd.output().unwrap());
    assert_eq!(out, "0\ninner\n1\n", "the scope's subtree, read-only");
    drop(cgroups);
}
