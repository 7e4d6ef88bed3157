//! Shared fixtures for the integration tests: a private state root and a busybox rootfs
//! per test, the binary driven with `--root`, and leak checks when the fixture drops.
//!
//! Network isolation: every fixture moves the test's thread into a network namespace of
//! its own (see [`private_network`]) before anything runs. Containers get a bridge and
//! nftables rules by default, and those must never touch the host's network: they are
//! created in the namespace of the `mycontainer` process, which every command the test
//! starts inherits from the test's thread (namespaces are per thread; libtest runs each
//! test on a thread of its own, and threads a test spawns inherit its namespace too).
//! The namespace disappears with the test's thread and the processes it started.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

#[path = "netns.rs"]
mod netns;
pub use netns::private_network;
#[allow(unused_imports)]
pub use netns::shared_network_home;
#[path = "nobody.rs"]
mod nobody;
#[path = "rundir.rs"]
mod rundir;
#[allow(unused_imports)]
pub use nobody::{as_nobody, assert_denied};
#[path = "wait.rs"]
mod wait;
#[allow(unused_imports)]
pub use rundir::{container_mounts, reboot_run_dir, remove_run_dir, run_dir};
#[allow(unused_imports)]
pub use wait::{alive, slowdown, wait_for};

pub const BIN: &str = env!("CARGO_BIN_EXE_mycontainer");

/// One test's world: `root` (the state root) and `rootfs` (a busybox tree).
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub rootfs: PathBuf,
}

impl Fixture {
    pub fn new() -> Fixture {
        private_network();
        let dir = tempfile::Builder::new()
            .prefix("mycontainer-test-")
            .tempdir()
            .unwrap();
        let root = dir.path().join("root");
        let rootfs = dir.path().join("busybox");
        build_busybox_rootfs(&rootfs);
        Fixture { dir, root, rootfs }
    }

    /// A `mycontainer` command with our root (and no inherited MYCONTAINER_ROOT).
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_remove("MYCONTAINER_ROOT")
            .arg("--root")
            .arg(&self.root);
        cmd
    }

    /// `mycontainer run --rootfs <busybox> <extra...> <command...>` (extra flags first).
    pub fn run_cmd(&self, flags: &[&str], command: &[&str]) -> Command {
        let mut cmd = self.cmd();
        cmd.arg("run")
            .args(flags)
            .arg("--rootfs")
            .arg(&self.rootfs)
            .args(command);
        cmd.stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, flags: &[&str], command: &[&str]) -> Output {
        self.run_cmd(flags, command).output().unwrap()
    }

    pub fn container_ids(&self) -> Vec<String> {
        match fs::read_dir(self.root.join("containers")) {
            Ok(entries) => entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    pub fn assert_no_containers(&self) {
        assert_eq!(
            self.container_ids(),
            Vec::<String>::new(),
            "container records left behind"
        );
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // A container's own tmpfs (its /etc files) goes with its record: one mounted
        // for a record that is gone leaked (checked before the run directory goes).
        let leaked_etc = if std::thread::panicking() {
            Vec::new()
        } else {
            rundir::container_mounts(&self.root)
                .into_iter()
                .filter(|id| !self.root.join("containers").join(id).exists())
                .collect()
        };
        // The root goes with the temporary directory; its run directory (on tmpfs)
        // must go too, even after a failure.
        remove_run_dir(&self.root);
        if std::thread::panicking() {
            return;
        }
        assert!(
            leaked_etc.is_empty(),
            "the /etc tmpfs of removed containers leaked: {leaked_etc:?}"
        );
        // Nothing of ours may stay mounted on the host.
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let ours = self.dir.path().to_string_lossy().into_owned();
        let leaked: Vec<&str> = mounts.lines().filter(|l| l.contains(&ours)).collect();
        assert!(leaked.is_empty(), "mounts leaked: {leaked:?}");
        // No container cgroup of ours may stay.
        for id in self.container_ids() {
            let leaked = container_cgroups(&id);
            assert!(leaked.is_empty(), "cgroup leaked: {leaked:?}");
        }
    }
}

/// The network interfaces of the calling thread's namespace, by name, sorted.
pub fn links() -> Vec<String> {
    // /proc/self/net would show the main thread's namespace, not this thread's.
    let dev = fs::read_to_string("/proc/thread-self/net/dev").unwrap();
    let mut names: Vec<String> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|n| n.trim().to_string())
        .collect();
    names.sort();
    names
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts success and returns stdout.
#[track_caller]
pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed with {:?}\nstdout: {}\nstderr: {}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// A minimal image: busybox with its applets, /etc/passwd and /etc/group, a marker file.
pub fn build_busybox_rootfs(dir: &Path) {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = symlink("busybox", bin.join(applet));
        }
    }
    for d in ["etc", "proc", "sys", "dev", "tmp", "root"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n",
    )
    .unwrap();
    fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
    fs::write(dir.join("image-marker"), "from the image\n").unwrap();
}

/// The cgroup directories of container `id` that exist, in every hierarchy (v2: the one
/// tree; v1/hybrid: one per hierarchy). Container cgroups are named
/// `mycontainer/<state root key>-<id>`.
pub fn container_cgroups(id: &str) -> Vec<PathBuf> {
    let suffix = format!("-{id}");
    let mut parents = vec![PathBuf::from("/sys/fs/cgroup/mycontainer")];
    for hierarchy in fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        parents.push(hierarchy.path().join("mycontainer"));
    }
    parents
        .iter()
        .flat_map(|parent| fs::read_dir(parent).into_iter().flatten().flatten())
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(&suffix))
        })
        .collect()
}

/// The directory under `parent` (a hierarchy's `mycontainer`) of container `id`'s
/// cgroup, or where it would be (`<parent>/<id>`, which never exists) when it has none.
pub fn container_cgroup_in(parent: &Path, id: &str) -> PathBuf {
    let suffix = format!("-{id}");
    fs::read_dir(parent)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(&suffix))
        })
        .unwrap_or_else(|| parent.join(id))
}

/// Asserts that no cgroup hierarchy still has the cgroup of container `id`.
#[track_caller]
pub fn assert_no_cgroup(id: &str) {
    let left = container_cgroups(id);
    assert!(left.is_empty(), "cgroup left behind: {left:?}");
}

/// Field `n` after the command's name in /proc/PID/stat (0: state, 1: parent, 3:
/// session), as a number.
pub fn stat_number(pid: i32, n: usize) -> i32 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The name is in parentheses and may hold anything: split after its last ')'.
    let after_name = stat.rsplit(')').next().unwrap_or("");
    after_name
        .split_whitespace()
        .nth(n)
        .unwrap()
        .parse()
        .unwrap()
}

/// Whether `pid` sleeps in nanosleep: a command that polls, between two looks.
pub fn sleeps_between_polls(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/wchan")).is_ok_and(|w| w.contains("nanosleep"))
}

/// The parent of `pid` (for a detached container's init: its supervisor, whichever of
/// its two binaries it is executing at the moment).
pub fn parent_pid(pid: i32) -> i32 {
    stat_number(pid, 1)
}

/// The session `pid` is in.
pub fn session_of(pid: i32) -> i32 {
    stat_number(pid, 3)
}

/// Host pids whose command line contains `needle`.
pub fn pids_with(needle: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmdline) = fs::read(entry.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmdline)
                .replace('\0', " ")
                .contains(needle)
            {
                found.push(pid);
            }
        }
    }
    found
}

impl Fixture {
    /// `run -d --rootfs <busybox> <flags...> <command...>`: asserts success, returns the id.
    #[track_caller]
    pub fn run_detached(&self, flags: &[&str], command: &[&str]) -> String {
        let mut cmd = self.cmd();
        cmd.args(["run", "-d"])
            .args(flags)
            .arg("--rootfs")
            .arg(&self.rootfs)
            .args(command)
            .stdin(Stdio::null());
        let id = ok(cmd.output().unwrap()).trim().to_string();
        assert_eq!(id.len(), 64, "run -d printed {id:?}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        id
    }

    /// `mycontainer <args...>` with our root.
    pub fn mc(&self, args: &[&str]) -> Output {
        self.cmd().args(args).stdin(Stdio::null()).output().unwrap()
    }

    /// The container's state.json as JSON.
    #[track_caller]
    pub fn state(&self, id: &str) -> serde_json::Value {
        self.try_state(id).expect("state.json is readable")
    }

    /// The supervisor of running container `id`: its init's parent. Not looked up by
    /// command line, which is briefly empty while it execs its small binary.
    #[track_caller]
    pub fn supervisor_pid(&self, id: &str) -> i32 {
        let init = self.state(id)["pid"]
            .as_i64()
            .expect("a running container has a pid");
        parent_pid(init as i32)
    }

    /// The container's state.json, if it exists yet.
    pub fn try_state(&self, id: &str) -> Option<serde_json::Value> {
        let path = self.root.join("containers").join(id).join("state.json");
        serde_json::from_slice(&fs::read(path).ok()?).ok()
    }

    /// Waits for the only container to be running (a foreground run started in the
    /// background) and returns its id.
    #[track_caller]
    pub fn wait_running(&self) -> String {
        let mut found = None;
        let running = wait_for(30, || {
            let ids = self.container_ids();
            found = ids.first().cloned();
            found
                .as_ref()
                .and_then(|id| self.try_state(id))
                .is_some_and(|s| s["status"] == "running")
        });
        assert!(running, "no container started running");
        found.unwrap()
    }

    /// Removes every container with `rm -f` (for guards: running detached containers
    /// would otherwise outlive the test).
    pub fn remove_all(&self) {
        for id in self.container_ids() {
            let _ = self.mc(&["rm", "-f", &id]);
        }
    }
}

/// A fixture whose containers are force-removed when the test ends (even by a panic),
/// before the fixture's leak checks: detached containers would otherwise outlive it.
pub struct World {
    fx: Fixture,
}

impl World {
    pub fn new() -> World {
        World { fx: Fixture::new() }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.fx.remove_all();
    }
}

impl std::ops::Deref for World {
    type Target = Fixture;
    fn deref(&self) -> &Fixture {
        &self.fx
    }
}

/// What /sys/fs/cgroup lists (sorted, space-separated) inside a container whose process
/// is host pid `pid`, on a v1 or hybrid host: `unified`, each v1 hierarchy where that
/// process is not in the host's root cgroup (it joined it, or inherited a cgroup below
/// the root there: src/runtime/cgroups/view.rs), and each link to one of those. A
/// hierarchy shown at its root would show the host's whole tree.
pub fn cgroup_view_listing(pid: i64) -> String {
    let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let below_root = |dir: &str| {
        let mut want: Vec<&str> = dir.split(',').collect();
        want.sort_unstable();
        own.lines().any(|line| {
            let mut fields = line.splitn(3, ':').skip(1);
            let (Some(controllers), Some(path)) = (fields.next(), fields.next()) else {
                return false;
            };
            let mut have: Vec<&str> = controllers
                .split(',')
                .map(|c| c.strip_prefix("name=").unwrap_or(c))
                .collect();
            have.sort_unstable();
            !controllers.is_empty() && have == want && path != "/"
        })
    };
    let mut shown: Vec<String> = fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            match fs::read_link(entry.path()) {
                Ok(to) => below_root(&to.to_string_lossy()),
                Err(_) => name == "unified" || below_root(&name),
            }
        })
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    shown.sort();
    shown.join(" ")
}

impl Fixture {
    /// `mycontainer <args...>` started in the background, stdin null, output piped (for
    /// commands that run at the same time as others, or that must still be waiting).
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.cmd()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Waits until `logs <name>` shows `needle`: a script says it has set its traps
    /// (`trap ...; echo ready`) before the test signals it. A signal that comes earlier
    /// finds a PID 1 with no handler, which the kernel does not deliver at all.
    #[track_caller]
    pub fn wait_logged(&self, name: &str, needle: &str) {
        let seen = wait_for(30, || stdout(&self.mc(&["logs", name])).contains(needle));
        assert!(
            seen,
            "{name} never logged {needle:?}: {:?}",
            stdout(&self.mc(&["logs", name]))
        );
    }
}

/// `inspect <name>` of a container, as JSON (the one element of the array).
pub fn inspect(fx: &Fixture, name: &str) -> serde_json::Value {
    let out = ok(fx.mc(&["inspect", name]));
    serde_json::from_str::<serde_json::Value>(&out).unwrap()[0].clone()
}

/// Builds the busybox image into the fixture's store.
pub fn build_busybox(fx: &Fixture) {
    ok(fx.mc(&["image", "build", "-q", "busybox"]));
}

/// An HTTP GET of /index.html through `addr` (ip:port), or what went wrong. The connect
/// is bounded: a port whose packets are dropped would otherwise wait for the kernel's
/// SYN retries (about two minutes).
pub fn http_get(addr: &str) -> String {
    use std::io::{Read, Write};
    let attempt = || -> std::io::Result<String> {
        let target: std::net::SocketAddr = addr
            .parse()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let bound = std::time::Duration::from_secs(5 * slowdown());
        let mut stream = std::net::TcpStream::connect_timeout(&target, bound)?;
        stream.set_read_timeout(Some(bound))?;
        stream.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")?;
        let mut body = String::new();
        stream.read_to_string(&mut body)?;
        Ok(body)
    };
    attempt().unwrap_or_else(|e| format!("error: {e}"))
}
