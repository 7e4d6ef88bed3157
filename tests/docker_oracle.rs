//! Docker as the oracle (issue 16): the same image (our busybox, loaded into Docker with
//! `image save --format docker`) run with the same flags under Debian's dockerd and
//! under mycontainer, probe by probe, and the outputs compared. dockerd runs on a
//! private socket, data and exec root, in a network namespace of its own, with its
//! containers under a cgroup parent of this test, all removed at the end.
//!
//! Known, intended differences are left out of the probes and listed here:
//! - /sys/fs/cgroup on a hybrid host: mycontainer also shows the cgroup2 mount at
//!   `unified`; Docker joins every v1 hierarchy and shows each, mycontainer joins those
//!   its limits and figures need and of the others shows only those it inherited below
//!   the host's root cgroup (at the root one would show the host's whole tree), so the
//!   probe compares the hierarchies mycontainer shows (tests/parity.rs checks that it
//!   shows no others);
//! - /proc/interrupts is masked by mycontainer (it leaks host activity), not by
//!   Docker 20.10;
//! - /etc/hosts: mycontainer names the container's hostname (127.0.1.1);
//! - `--privileged` on a host whose root lacks a capability (this VM has no
//!   CAP_SYS_RESOURCE): runc fails ("unable to apply caps"), mycontainer gives the
//!   container every capability the host has.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::{ok, stderr, stdout, wait_for, World};

const DOCKER: &str = "/usr/bin/docker";

/// A dockerd of this test's own, stopped and cleaned up on drop.
struct Dockerd {
    dir: tempfile::TempDir,
    child: Child,
    cgroup_parent: String,
}

impl Dockerd {
    fn start() -> Dockerd {
        assert!(
            Path::new("/usr/sbin/dockerd").exists() && Path::new(DOCKER).exists(),
            "dockerd is not installed: install the Debian package docker.io (apt-get install docker.io)"
        );
        let dir = tempfile::Builder::new()
            .prefix("mc-dockerd-")
            .tempdir()
            .unwrap();
        let cgroup_parent = format!("mycontainer-oracle-{}", std::process::id());
        let path = |name: &str| dir.path().join(name);
        let child = Command::new("unshare")
            .args(["--net", "--", "/usr/sbin/dockerd"])
            .arg("--data-root")
            .arg(path("data"))
            .arg("--exec-root")
            .arg(path("exec"))
            .arg("-H")
            .arg(format!("unix://{}", path("sock").display()))
            .arg("--pidfile")
            .arg(path("pid"))
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .args(["--log-level", "error"])
            // Absolute: relative to the hierarchy roots, not to dockerd's own cgroup (a
            // relative parent lands under the test's cgroup in every hierarchy where the
            // test process is not at the root, where the cleanup would not look).
            .arg(format!("--cgroup-parent=/{cgroup_parent}"))
            .arg(format!("--containerd-namespace={cgroup_parent}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(path("log")).unwrap())
            .spawn()
            .unwrap();
        let daemon = Dockerd {
            dir,
            child,
            cgroup_parent,
        };
        let up = wait_for(60, || daemon.docker(&["info"]).status.success());
        assert!(
            up,
            "dockerd did not start: {}",
            std::fs::read_to_string(daemon.dir.path().join("log")).unwrap_or_default()
        );
        daemon
    }

    fn docker(&self, args: &[&str]) -> Output {
        Command::new(DOCKER)
            .arg("-H")
            .arg(format!("unix://{}", self.dir.path().join("sock").display()))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

impl Dockerd {
    /// Stops dockerd (its containerd goes with it), removes its cgroup parent from every
    /// hierarchy, and returns whatever of it is still there (nothing, when all is well).
    /// Idempotent: the drop calls it again.
    fn stop(&mut self) -> Vec<PathBuf> {
        // SAFETY: SIGTERM to the dockerd (unshare execs it) this test started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        let mut places = vec![PathBuf::from("/sys/fs/cgroup")];
        places.extend(
            std::fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
                .map(|h| h.path()),
        );
        // Where a relative parent would have gone: under the test's own cgroups.
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        for line in own.lines() {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next(), fields.next(), fields.next());
            let (Some(controllers), Some(path)) = (controllers, path) else {
                continue;
            };
            let hierarchy = controllers.trim_start_matches("name=");
            let base = if hierarchy.is_empty() {
                PathBuf::from("/sys/fs/cgroup/unified")
            } else {
                PathBuf::from("/sys/fs/cgroup").join(hierarchy)
            };
            places.push(base.join(path.trim_start_matches('/')));
        }
        let mut left = Vec::new();
        for place in places {
            let dir = place.join(&self.cgroup_parent);
            if dir.is_dir() && std::fs::remove_dir(&dir).is_err() {
                left.push(dir);
            }
        }
        left
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Output and exit code, the comparable part of a run. For the tools' own failures
/// (125-127) only the code: the docker CLI prints some of its errors on stdout.
fn result(out: &Output) -> String {
    if matches!(out.status.code(), Some(125..=127)) {
        return format!("exit {:?} (the tool's own error)\n", out.status.code());
    }
    format!(
        "exit {:?}\n{}{}",
        out.status.code(),
        stdout(out),
        // Only whether something was said: the wording is each tool's own.
        if out.stderr.is_empty() {
            ""
        } else {
            "(stderr)\n"
        }
    )
}

#[test]
fn the_same_probes_give_the_same_answers_under_docker_and_mycontainer() {
    let w = World::new();
    let docker = Dockerd::start();
    ok(w.mc(&["image", "build", "-q", "busybox"]));
    let archive = w.dir.path().join("busybox-docker.tar");
    ok(w.mc(&[
        "image",
        "save",
        "--format",
        "docker",
        "-o",
        archive.to_str().unwrap(),
        "busybox",
    ]));
    let loaded = docker.docker(&["load", "-i", archive.to_str().unwrap()]);
    assert!(loaded.status.success(), "{}", stderr(&loaded));

    let status = "grep -E '^(Cap[A-Za-z]+|NoNewPrivs|Seccomp):' /proc/self/status";
    // The etc files' filesystem is where each keeps them (Docker: its data root; we:
    // the run directory, a tmpfs, as Podman's runroot): only their mount points compare.
    let mounts = "awk '{ if ($2 ~ /^[/]etc[/]/) print $2; else print $2, $3 }' /proc/mounts | grep -v -e '^/sys/fs/cgroup/' -e '^/proc/interrupts ' | sort";
    // The v1 hierarchies mycontainer shows, from the host's view of a twin's cgroups.
    let twin = w.run_detached(&[], &["sleep", "1000"]);
    let shown = common::cgroup_view_listing(w.state(&twin)["pid"].as_i64().unwrap());
    ok(w.mc(&["rm", "-f", &twin]));
    let shown = shown.replace("unified", "");
    assert!(shown.split(' ').any(|d| d == "pids"), "{shown}");
    let hierarchies = format!(
        "for d in {shown}; do test -e /sys/fs/cgroup/$d && echo $d; done; \
         echo 1 > /sys/fs/cgroup/pids/pids.max; echo $?"
    );
    let probes: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec![], vec!["sh", "-c", status]),
        (vec!["-u", "nobody"], vec!["sh", "-c", status]),
        (
            vec!["--cap-drop", "ALL", "--cap-add", "NET_RAW"],
            vec!["sh", "-c", status],
        ),
        (vec![], vec!["sh", "-c", mounts]),
        (vec!["--read-only"], vec!["sh", "-c", mounts]),
        (vec![], vec!["sh", "-c", "ls /dev | sort"]),
        (vec![], vec!["sh", "-c", "env | grep -v ^HOSTNAME= | sort"]),
        (
            vec!["-e", "A=b", "-w", "/tmp"],
            vec!["sh", "-c", "echo $A; pwd"],
        ),
        (vec![], vec!["id"]),
        (vec!["-u", "nobody"], vec!["id"]),
        (vec![], vec!["sh", "-c", "ulimit -n; ulimit -Hn"]),
        (
            vec!["--ulimit", "nofile=512:1024"],
            vec!["sh", "-c", "ulimit -n; ulimit -Hn"],
        ),
        (
            vec!["--shm-size", "128m"],
            vec![
                "sh",
                "-c",
                "grep ' /dev/shm ' /proc/mounts | cut -d' ' -f1-4",
            ],
        ),
        (
            vec!["--tmpfs", "/run:size=4m,exec"],
            vec!["sh", "-c", "grep ' /run ' /proc/mounts | cut -d' ' -f1-4"],
        ),
        (
            vec!["--read-only"],
            vec!["sh", "-c", "touch /x; echo $?; echo > /etc/hosts; echo $?"],
        ),
        (
            vec![],
            vec![
                "sh",
                "-c",
                "readlink /etc/mtab; cat /proc/1/cmdline | tr '\\0' ' '",
            ],
        ),
        (vec![], vec!["sh", "-c", &hierarchies]),
        (
            vec!["--memory", "64m"],
            vec!["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"],
        ),
        (vec![], vec!["sh", "-c", "exit 3"]),
        (vec![], vec!["sh", "-c", "kill -9 $$"]),
        (vec![], vec!["no-such-command"]),
        (vec![], vec!["/etc"]),
    ];
    let mut differences = Vec::new();
    for (flags, command) in &probes {
        let mut docker_args = vec!["run", "--rm", "--network", "none"];
        docker_args.extend(flags.iter().copied());
        docker_args.push("busybox");
        docker_args.extend(command.iter().copied());
        let docker_out = docker.docker(&docker_args);
        let theirs = result(&docker_out);
        let mut our_args = vec!["run", "--rm", "--network", "none"];
        our_args.extend(flags.iter().copied());
        our_args.push("busybox");
        our_args.extend(command.iter().copied());
        let ours = result(&w.mc(&our_args));
        if theirs != ours {
            differences.push(format!(
                "run {flags:?} {command:?}\n--- docker\n{theirs}{}--- mycontainer\n{ours}",
                stderr(&docker_out)
            ));
        }
    }

    // exec into a running container: the same answers too.
    let started = docker.docker(&[
        "run",
        "-d",
        "--name",
        "oracle",
        "--network",
        "none",
        "busybox",
        "sleep",
        "300",
    ]);
    assert!(started.status.success(), "{}", stderr(&started));
    w.mc(&[
        "run",
        "-d",
        "--name",
        "oracle",
        "--network",
        "none",
        "busybox",
        "sleep",
        "300",
    ]);
    let exec_probes: Vec<Vec<&str>> = vec![
        vec!["sh", "-c", status],
        vec!["-u", "nobody", "sh", "-c", status],
        vec!["-u", "nobody", "id"],
        vec!["-e", "A=b", "-w", "/tmp", "sh", "-c", "echo $A; pwd"],
        vec!["sh", "-c", "exit 5"],
        vec!["no-such-command"],
    ];
    for probe in &exec_probes {
        let mut args = vec!["exec"];
        // Flags go before the container name.
        let split = probe
            .iter()
            .position(|a| !a.starts_with('-') && !["nobody", "A=b", "/tmp"].contains(a))
            .unwrap_or(0);
        args.extend(probe[..split].iter().copied());
        args.push("oracle");
        args.extend(probe[split..].iter().copied());
        let theirs = result(&docker.docker(&args));
        let ours = result(&w.mc(&args));
        if theirs != ours {
            differences.push(format!(
                "exec {probe:?}\n--- docker\n{theirs}--- mycontainer\n{ours}"
            ));
        }
    }
    let _ = docker.docker(&["rm", "-f", "oracle"]);
    // Nothing of dockerd's may stay: its cgroup parent goes with it.
    let mut docker = docker;
    let left = docker.stop();
    assert!(left.is_empty(), "dockerd left cgroups behind: {left:?}");
    let anywhere = Command::new("find")
        .args(["/sys/fs/cgroup", "-maxdepth", "4", "-type", "d", "-name"])
        .arg(&docker.cgroup_parent)
        .output()
        .unwrap();
    assert_eq!(
        stdout(&anywhere),
        "",
        "dockerd's cgroup parent is still somewhere"
    );
    assert!(
        differences.is_empty(),
        "{} of {} probes differ from Docker:\n\n{}",
        differences.len(),
        probes.len() + exec_probes.len(),
        differences.join("\n")
    );
}
