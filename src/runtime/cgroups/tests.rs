//! Root tests on real cgroups with real processes, for whichever layout the host has
//! (this machine: hybrid v1; `scripts/test-cgroup2` runs them under cgroup v2).
//!
//! Processes that must be limited from their first instruction are this test binary
//! re-executed as `helper_process`: it blocks on stdin until the test has moved it into
//! the cgroup, then allocates, spins or forks.

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};

use super::*;

const HELPER_ENV: &str = "MYCONTAINER_CGROUP_TEST_HELPER";
const MIB: i64 = 1 << 20;

/// A test cgroup with a unique name, destroyed even when the test panics.
struct TestCgroup(Cgroup);

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = self.0.destroy();
    }
}

impl std::ops::Deref for TestCgroup {
    type Target = Cgroup;
    fn deref(&self) -> &Cgroup {
        &self.0
    }
}

fn unique_name() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("mycontainer/test-{}-{n}", std::process::id())
}

fn create(resources: Option<&LinuxResources>) -> TestCgroup {
    TestCgroup(Cgroup::create(&unique_name(), resources).unwrap())
}

fn create_with_pids(limit: i64) -> TestCgroup {
    let resources = LinuxResourcesBuilder::default()
        .pids(pids(limit))
        .build()
        .unwrap();
    create(Some(&resources))
}

/// Destroys and checks that no directory of the cgroup is left in any hierarchy.
fn destroy_and_check_gone(cgroup: &Cgroup) {
    cgroup.destroy().unwrap();
    for path in cgroup.paths() {
        assert!(!path.exists(), "{} left behind", path.display());
    }
    let listed = list_container_cgroups().unwrap();
    assert!(!listed.iter().any(|n| n == cgroup.name()), "{listed:?}");
}

fn is_v2(cgroup: &Cgroup) -> bool {
    matches!(cgroup.backend, Backend::V2(_))
}

fn is_hybrid(cgroup: &Cgroup) -> bool {
    matches!(&cgroup.backend, Backend::V1(cg) if cg.unified_dir().is_some())
}

/// The trimmed content of `file` in whichever of the cgroup's directories has it.
fn value(cgroup: &Cgroup, file: &str) -> String {
    let path = cgroup
        .paths()
        .into_iter()
        .map(|dir| dir.join(file))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no {file} in {:?}", cgroup.paths()));
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

fn memory(limit: i64, swap: Option<i64>) -> oci_spec::runtime::LinuxMemory {
    let builder = LinuxMemoryBuilder::default().limit(limit);
    match swap {
        Some(swap) => builder.swap(swap).build().unwrap(),
        None => builder.build().unwrap(),
    }
}

fn cpu_quota(quota: i64, period: u64) -> oci_spec::runtime::LinuxCpu {
    LinuxCpuBuilder::default()
        .quota(quota)
        .period(period)
        .build()
        .unwrap()
}

fn pids(limit: i64) -> oci_spec::runtime::LinuxPids {
    LinuxPidsBuilder::default().limit(limit).build().unwrap()
}

fn sleeper() -> Child {
    Command::new("sleep")
        .arg("30")
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

/// Starts `helper_process` with `task`; it waits for `release`.
fn start_helper(task: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "runtime::cgroups::tests::helper_process",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(HELPER_ENV, task)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

fn release(child: &mut Child) {
    child.stdin.take().unwrap().write_all(b"g").unwrap();
}

/// The "RESULT ..." line the helper printed.
fn helper_result(output: &[u8]) -> String {
    String::from_utf8_lossy(output)
        .lines()
        .find_map(|l| l.strip_prefix("RESULT ").map(String::from))
        .unwrap_or_default()
}

/// CPU time this process has used.
fn process_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The helper: a child process the tests limit. Does nothing when run directly.
#[test]
#[ignore = "run by the other tests as a child process"]
fn helper_process() {
    let Ok(task) = std::env::var(HELPER_ENV) else {
        return;
    };
    // wait until the parent has put us into the cgroup
    let _ = std::io::stdin().read(&mut [0u8; 1]);
    let (what, arg) = task.split_once(':').unwrap();
    let arg: usize = arg.parse().unwrap();
    match what {
        "alloc" => {
            // vec![1; n] writes every byte, so every page is really charged
            let memory = vec![1u8; arg << 20];
            let sum: usize = memory.iter().step_by(4096).map(|b| *b as usize).sum();
            println!("RESULT survived touching {sum} pages");
        }
        "spin" => {
            // `arg` ms of this process's own CPU time, however long the wall clock takes
            let mut n = 0u64;
            while process_cpu_time() < Duration::from_millis(arg as u64) {
                for _ in 0..10_000 {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            println!("RESULT spun {n}");
        }
        "forkloop" => {
            // forks without end; a failed fork (the pids limit) is retried, never fatal
            // (a shell would exit on it, and then not be there to be killed)
            loop {
                if let Ok(child) = Command::new("sleep")
                    .arg("30")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .spawn()
                {
                    std::mem::forget(child);
                }
            }
        }
        "spawn" => {
            let mut children = Vec::new();
            let mut error = None;
            for _ in 0..arg {
                match Command::new("sleep")
                    .arg("30")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .spawn()
                {
                    Ok(child) => children.push(child),
                    Err(e) => {
                        error = e.raw_os_error();
                        break;
                    }
                }
            }
            println!("RESULT spawned={} errno={error:?}", children.len());
            for mut child in children {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        other => panic!("unknown helper task {other}"),
    }
}

#[test]
fn cgroups_create_applies_limits() {
    let resources = LinuxResourcesBuilder::default()
        .memory(memory(64 * MIB, Some(64 * MIB)))
        .cpu(
            LinuxCpuBuilder::default()
                .quota(50_000)
                .period(100_000u64)
                .shares(512u64)
                .cpus("0")
                .build()
                .unwrap(),
        )
        .pids(pids(50))
        .build()
        .unwrap();
    let cgroup = create(Some(&resources));
    for path in cgroup.paths() {
        assert!(path.is_dir(), "{} missing", path.display());
    }
    assert!(list_container_cgroups()
        .unwrap()
        .iter()
        .any(|n| n == cgroup.name()));
    if is_v2(&cgroup) {
        assert_eq!(value(&cgroup, "memory.max"), "67108864");
        if Path::new("/sys/fs/cgroup/memory.swap.max").exists()
            || cgroup.paths()[0].join("memory.swap.max").exists()
        {
            assert_eq!(value(&cgroup, "memory.swap.max"), "0");
        }
        assert_eq!(value(&cgroup, "cpu.max"), "50000 100000");
        assert_eq!(value(&cgroup, "cpu.weight"), "20");
        assert_eq!(value(&cgroup, "cpuset.cpus"), "0");
    } else {
        assert_eq!(value(&cgroup, "memory.limit_in_bytes"), "67108864");
        if cgroup
            .paths()
            .iter()
            .any(|p| p.join("memory.memsw.limit_in_bytes").exists())
        {
            assert_eq!(value(&cgroup, "memory.memsw.limit_in_bytes"), "67108864");
        }
        assert_eq!(value(&cgroup, "cpu.cfs_quota_us"), "50000");
        assert_eq!(value(&cgroup, "cpu.cfs_period_us"), "100000");
        assert_eq!(value(&cgroup, "cpu.shares"), "512");
        assert_eq!(value(&cgroup, "cpuset.cpus"), "0");
        // inherited from the parent, or no task could join
        assert!(!value(&cgroup, "cpuset.mems").is_empty());
    }
    assert_eq!(value(&cgroup, "pids.max"), "50");
    assert_eq!(cgroup.memory_limit(), Some(64 << 20));
    assert!(!cgroup.oom_killed());
    destroy_and_check_gone(&cgroup);
}

#[test]
fn cgroups_without_limits_are_unlimited() {
    let cgroup = create(None);
    assert_eq!(cgroup.memory_limit(), None);
    if is_hybrid(&cgroup) {
        // No limit: the cgroup2 directory tracks the container, and it joins only the
        // v1 hierarchies `stats` reads and `update` may write (memory, cpu, blkio, pids).
        let paths = cgroup.paths();
        assert!(paths[0].join("cgroup.procs").exists());
        assert!(
            paths.iter().any(|p| p.starts_with("/sys/fs/cgroup/memory")),
            "{paths:?}"
        );
        assert!(
            !paths.iter().any(|p| p.starts_with("/sys/fs/cgroup/cpuset")),
            "{paths:?}"
        );
    } else {
        assert_eq!(value(&cgroup, "pids.max"), "max");
    }
    destroy_and_check_gone(&cgroup);
}

#[test]
fn cgroups_on_hybrid_hosts_join_only_the_observed_and_limited_v1_hierarchies() {
    let cgroup = create_with_pids(100);
    if !is_hybrid(&cgroup) {
        destroy_and_check_gone(&cgroup);
        return;
    }
    let paths = cgroup.paths();
    for unused in ["cpuset", "devices", "freezer"] {
        let dir = format!("/sys/fs/cgroup/{unused}");
        assert!(!paths.iter().any(|p| p.starts_with(&dir)), "{paths:?}");
    }
    assert_eq!(value(&cgroup, "pids.max"), "100");
    assert!(cgroup.needs_add_after_clone());
    // open (exec, stop, gc) finds the same directories
    assert_eq!(Cgroup::open(cgroup.name()).unwrap().paths(), paths);
    destroy_and_check_gone(&cgroup);
}

#[test]
fn cgroups_add_process_moves_it_into_every_hierarchy() {
    // A limit per controller, so every v1 hierarchy with one is used on hybrid hosts too.
    let resources = LinuxResourcesBuilder::default()
        .memory(memory(256 * MIB, None))
        .cpu(LinuxCpuBuilder::default().shares(1024u64).build().unwrap())
        .pids(pids(1000))
        .build()
        .unwrap();
    let cgroup = create(Some(&resources));
    let mut child = sleeper();
    cgroup.add_process(child.id() as i32).unwrap();
    let membership = std::fs::read_to_string(format!("/proc/{}/cgroup", child.id())).unwrap();
    let expected = format!("/{}", cgroup.name());
    let ours = membership
        .lines()
        .filter(|line| line.splitn(3, ':').nth(2) == Some(expected.as_str()))
        .count();
    assert_eq!(ours, cgroup.paths().len(), "{membership}");
    assert_eq!(cgroup.stats().pids_current, Some(1));
    // destroy with the process still running: it is killed, then everything removed
    destroy_and_check_gone(&cgroup);
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
}

#[test]
fn cgroups_oom_kill_is_detected() {
    let resources = LinuxResourcesBuilder::default()
        .memory(memory(32 * MIB, Some(32 * MIB)))
        .build()
        .unwrap();
    let cgroup = create(Some(&resources));
    let mut helper = start_helper("alloc:200");
    cgroup.add_process(helper.id() as i32).unwrap();
    assert!(!cgroup.oom_killed());
    release(&mut helper);
    let output = helper.wait_with_output().unwrap();
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGKILL),
        "{:?}",
        helper_result(&output.stdout)
    );
    assert!(cgroup.oom_killed(), "{:?}", cgroup.stats());
    assert_eq!(cgroup.memory_limit(), Some(32 << 20));
    destroy_and_check_gone(&cgroup);
}

#[test]
fn cgroups_pids_limit_makes_fork_fail() {
    let cgroup = create_with_pids(8);
    let mut helper = start_helper("spawn:30");
    cgroup.add_process(helper.id() as i32).unwrap();
    release(&mut helper);
    let output = helper.wait_with_output().unwrap();
    let result = helper_result(&output.stdout);
    assert!(output.status.success(), "{result}");
    assert!(
        result.ends_with(&format!("errno=Some({})", libc::EAGAIN)),
        "{result}"
    );
    let spawned: usize = result["spawned=".len()..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!((1..8).contains(&spawned), "{result}");
    // the host is not limited
    let mut outside = sleeper();
    outside.kill().unwrap();
    outside.wait().unwrap();
    destroy_and_check_gone(&cgroup);
}

#[test]
fn cgroups_cpu_quota_throttles() {
    let resources = LinuxResourcesBuilder::default()
        .cpu(cpu_quota(25_000, 100_000))
        .build()
        .unwrap();
    let cgroup = create(Some(&resources));
    // A fixed amount of CPU work, not of wall time: a busy machine may give the helper
    // less than its quota (so no lower bound on its share can hold), never more. The
    // quota's promise is an upper bound: 25 ms per 100 ms period, so 500 ms of CPU take
    // at least 19 periods after the first (1.9 s, 1.5 s with the slack below), however
    // idle the machine; without the quota an idle machine runs it in 0.5 s.
    let mut helper = start_helper("spin:500");
    cgroup.add_process(helper.id() as i32).unwrap();
    let started = Instant::now();
    release(&mut helper);
    let output = helper.wait_with_output().unwrap();
    let wall = started.elapsed();
    assert!(output.status.success());
    let stats = cgroup.stats();
    let used = Duration::from_micros(stats.cpu_usage_usec.unwrap());
    eprintln!("cpu quota 25%: used {used:?} in {wall:?}, {stats:?}");
    // (the helper's own clock counts its start too, before it joined the cgroup)
    assert!(used >= Duration::from_millis(400), "{stats:?}");
    // A period's overrun (up to a scheduler tick) is the 20% slack.
    let periods_needed = (used.as_micros() / 25_000) as u32;
    assert!(
        wall >= Duration::from_millis(80) * (periods_needed - 1),
        "{used:?} of CPU in {wall:?}: the quota did not hold, {stats:?}"
    );
    destroy_and_check_gone(&cgroup);
}

#[test]
fn cgroups_destroy_kills_lingering_processes_in_nested_cgroups() {
    // a pids limit, so hybrid hosts use the v1 pids hierarchy too
    let cgroup = create_with_pids(1000);
    let mut first = sleeper();
    cgroup.add_process(first.id() as i32).unwrap();
    // a cgroup the container made for itself, holding a second process (pids has no
    // prerequisites for joining, unlike v1 cpuset)
    let pids_dir = cgroup
        .paths()
        .into_iter()
        .find(|p| p.join("pids.max").exists())
        .unwrap();
    let nested = pids_dir.join("nested");
    std::fs::create_dir(&nested).unwrap();
    let mut second = sleeper();
    files::write(&nested.join("cgroup.procs"), &second.id().to_string()).unwrap();
    destroy_and_check_gone(&cgroup);
    assert_eq!(first.wait().unwrap().signal(), Some(libc::SIGKILL));
    assert_eq!(second.wait().unwrap().signal(), Some(libc::SIGKILL));
    // idempotent, and via open() too
    cgroup.destroy().unwrap();
    Cgroup::open(cgroup.name()).unwrap().destroy().unwrap();
}

#[test]
fn cgroups_destroy_stops_a_process_that_keeps_forking() {
    // the pids limit only keeps the host safe if destroy failed
    let cgroup = create_with_pids(300);
    // The forker must still be forking (not exited) when destroy comes: a shell exits
    // when a fork fails at the pids limit, and then is not there to be killed.
    let mut forker = start_helper("forkloop:0");
    cgroup.add_process(forker.id() as i32).unwrap();
    release(&mut forker);
    // A give-up time, not a measure: longer where the tests are known to run slowly
    // (the emulated cgroup v2 VM sets MYCONTAINER_TEST_SLOWDOWN).
    let slowdown: u64 = std::env::var("MYCONTAINER_TEST_SLOWDOWN")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let deadline = Instant::now() + Duration::from_secs(10 * slowdown.max(1));
    while cgroup.stats().pids_current.unwrap_or(0) < 20 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        cgroup.stats().pids_current.unwrap() >= 20,
        "{:?}",
        cgroup.stats()
    );
    destroy_and_check_gone(&cgroup);
    assert_eq!(forker.wait().unwrap().signal(), Some(libc::SIGKILL));
}

#[test]
fn cgroups_concurrent_create_and_parent_removal() {
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                remove_unused_parents().unwrap();
            }
        });
        let workers: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    for _ in 0..10 {
                        let cgroup = create(None);
                        destroy_and_check_gone(&cgroup);
                    }
                })
            })
            .collect();
        let results: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
        stop.store(true, Ordering::Relaxed);
        for result in results {
            assert!(result.is_ok());
        }
    });
}

#[test]
fn cgroups_existing_name_is_refused_and_left_alone() {
    let cgroup = create(None);
    let err = Cgroup::create(cgroup.name(), None).unwrap_err();
    assert!(format!("{err:#}").contains("already exists"), "{err:#}");
    for path in cgroup.paths() {
        assert!(path.is_dir(), "{} was removed", path.display());
    }
    destroy_and_check_gone(&cgroup);
}

#[test]
fn cgroups_bad_limits_create_nothing() {
    let name = unique_name();
    let resources = LinuxResourcesBuilder::default()
        .cpu(LinuxCpuBuilder::default().cpus("x").build().unwrap())
        .build()
        .unwrap();
    let err = Cgroup::create(&name, Some(&resources)).unwrap_err();
    assert!(format!("{err:#}").contains("cpuset cpus"), "{err:#}");
    // a value only the kernel rejects: cpu 99 does not exist
    let resources = LinuxResourcesBuilder::default()
        .cpu(LinuxCpuBuilder::default().cpus("99").build().unwrap())
        .build()
        .unwrap();
    let err = Cgroup::create(&name, Some(&resources)).unwrap_err();
    assert!(format!("{err:#}").contains("cpuset.cpus"), "{err:#}");
    let listed = list_container_cgroups().unwrap();
    assert!(!listed.contains(&name), "{name} left behind: {listed:?}");
}

#[test]
fn cgroups_unclean_names_and_our_parent_are_refused() {
    for bad in [
        "mycontainer",
        "mycontainer/",
        "mycontainer/../system.slice",
        "mycontainer/./x",
        "/mycontainer/x",
        "",
        "a//b",
    ] {
        assert!(Cgroup::open(bad).is_err(), "{bad}");
        assert!(Cgroup::create(bad, None).is_err(), "{bad}");
    }
    assert!(check_name("mycontainer/abc123").is_ok());
    // a runtime-CLI caller's own path (containerd's /<namespace>/<id>, trimmed)
    assert!(check_name("default/abc123").is_ok());
}

#[test]
fn cgroups_a_child_that_writes_0_to_the_tasks_files_is_in_the_v1_cgroups() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let cgroup = create_with_pids(100);
    if !cgroup.needs_add_after_clone() {
        // v2: a clone into the cgroup places the child fully; nothing to join
        assert!(cgroup.v1_tasks_files().unwrap().is_empty());
        destroy_and_check_gone(&cgroup);
        return;
    }
    let before = std::fs::read_to_string("/proc/thread-self/cgroup").unwrap();
    let tasks = cgroup.v1_tasks_files().unwrap();
    assert!(!tasks.is_empty());
    let fds: Vec<i32> = tasks.iter().map(|fd| fd.as_raw_fd()).collect();
    let mut command = Command::new("sleep");
    command.arg("30").stdin(Stdio::null());
    // SAFETY: the hook only makes write(2) calls on descriptors we own, as the
    // runtime's child does.
    unsafe {
        command.pre_exec(move || {
            for &fd in &fds {
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    drop(tasks);
    // the runtime's own thread never entered the container's cgroups
    assert_eq!(
        std::fs::read_to_string("/proc/thread-self/cgroup").unwrap(),
        before
    );
    let ours = format!(":/{}", cgroup.name());
    let membership = std::fs::read_to_string(format!("/proc/{}/cgroup", child.id())).unwrap();
    let pids_line = membership
        .lines()
        .find(|l| {
            l.split(':')
                .nth(1)
                .is_some_and(|c| c.split(',').any(|c| c == "pids"))
        })
        .unwrap();
    assert!(pids_line.ends_with(&ours), "{membership}");
    assert_eq!(cgroup.stats().pids_current, Some(1));
    destroy_and_check_gone(&cgroup);
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
}

/// clone3(CLONE_INTO_CGROUP), fork-like (no new stack): the child starts inside the
/// cgroup of `cgroup_fd` and execs `argv`. How the runtime can start its init on v2.
fn spawn_into_cgroup(cgroup_fd: &OwnedFd, argv: &[&str]) -> nix::unistd::Pid {
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    // everything the child touches is prepared before the clone
    let strings: Vec<CString> = argv.iter().map(|a| CString::new(*a).unwrap()).collect();
    let mut pointers: Vec<*const libc::c_char> = strings.iter().map(|s| s.as_ptr()).collect();
    pointers.push(std::ptr::null());
    // The runtime's own clone3 wrapper: what starts a container's init on v2.
    let pid = crate::runtime::launch::clone3_into_cgroup(0, cgroup_fd.as_raw_fd());
    if pid == 0 {
        // SAFETY: in the child of a possibly multi-threaded process only async-signal-safe
        // calls: execv on the prepared, NUL-terminated argv, else _exit.
        unsafe {
            libc::execv(pointers[0], pointers.as_ptr());
            libc::_exit(127);
        }
    }
    assert!(pid > 0, "clone3: {}", std::io::Error::last_os_error());
    nix::unistd::Pid::from_raw(pid as i32)
}

#[test]
fn cgroups_clone_into_cgroup_starts_the_child_inside() {
    let cgroup = create(None);
    let Some(fd) = cgroup.clone_into_fd().unwrap() else {
        // legacy hosts: the runtime moves the child with add_after_clone instead
        assert!(!is_v2(&cgroup) && !is_hybrid(&cgroup));
        destroy_and_check_gone(&cgroup);
        return;
    };
    let pid = spawn_into_cgroup(&fd, &["/bin/sleep", "30"]);
    let membership = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let line = format!("0::/{}", cgroup.name());
    assert!(membership.lines().any(|l| l == line), "{membership}");
    destroy_and_check_gone(&cgroup);
    let status = nix::sys::wait::waitpid(pid, None).unwrap();
    assert!(
        matches!(
            status,
            nix::sys::wait::WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGKILL, _)
        ),
        "{status:?}"
    );
}

/// Start-latency cost of limits: create + add_process + destroy, in microseconds.
/// A benchmark, not a check: `cargo test cgroups_bench -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark"]
fn cgroups_bench_create_add_destroy() {
    let resources = LinuxResourcesBuilder::default()
        .memory(memory(100 * MIB, None))
        .cpu(cpu_quota(100_000, 100_000))
        .pids(pids(100))
        .build()
        .unwrap();
    let (mut create_us, mut add_us, mut destroy_us) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..20 {
        let mut child = sleeper();
        let t = Instant::now();
        let cgroup = create(Some(&resources));
        create_us.push(t.elapsed().as_micros());
        let t = Instant::now();
        cgroup.add_process(child.id() as i32).unwrap();
        add_us.push(t.elapsed().as_micros());
        child.kill().unwrap();
        child.wait().unwrap();
        let t = Instant::now();
        cgroup.destroy().unwrap();
        destroy_us.push(t.elapsed().as_micros());
    }
    // v2: starting the child inside with clone3(CLONE_INTO_CGROUP) instead of moving it
    let mut clone_into_us = Vec::new();
    for _ in 0..20 {
        let cgroup = create(Some(&resources));
        let Some(fd) = cgroup.clone_into_fd().unwrap() else {
            break;
        };
        let t = Instant::now();
        let pid = spawn_into_cgroup(&fd, &["/bin/true"]);
        clone_into_us.push(t.elapsed().as_micros());
        nix::sys::wait::waitpid(pid, None).unwrap();
        cgroup.destroy().unwrap();
    }
    for (what, times) in [
        ("create", &mut create_us),
        ("add_process", &mut add_us),
        ("destroy", &mut destroy_us),
        ("clone3 into cgroup (v2 only)", &mut clone_into_us),
    ] {
        if times.is_empty() {
            continue;
        }
        times.sort();
        eprintln!(
            "{what}: median {} us, min {} us, max {} us",
            times[times.len() / 2],
            times[0],
            times[times.len() - 1]
        );
    }
}

/// OCI device rules from their v1-like spelling ("+c 1:3 rwm" allows).
fn oci_rules(spec: &[&str]) -> Vec<oci_spec::runtime::LinuxDeviceCgroup> {
    use oci_spec::runtime::LinuxDeviceType;
    devices::parse_rules(spec)
        .into_iter()
        .map(|rule| {
            let mut entry = oci_spec::runtime::LinuxDeviceCgroup::default();
            entry.set_allow(rule.allow);
            entry.set_typ(Some(match rule.kind {
                devices::DeviceKind::All => LinuxDeviceType::A,
                devices::DeviceKind::Char => LinuxDeviceType::C,
                devices::DeviceKind::Block => LinuxDeviceType::B,
            }));
            entry.set_major(rule.major.map(i64::from));
            entry.set_minor(rule.minor.map(i64::from));
            let text = rule.to_string();
            entry.set_access(text.rsplit(' ').next().map(String::from));
            entry
        })
        .collect()
}

/// Docker's device rules as runc applies them (what the container layer writes), with
/// `--device` for a block device 7:5 read-only.
fn docker_device_rules() -> Vec<oci_spec::runtime::LinuxDeviceCgroup> {
    oci_rules(&[
        "-a *:* rwm",
        "+c 1:5 rwm",
        "+c 1:3 rwm",
        "+c 1:9 rwm",
        "+c 1:8 rwm",
        "+c 5:0 rwm",
        "+c 5:1 rwm",
        "-c 10:229 rwm",
        "+b 7:5 r",
        "+c *:* m",
        "+b *:* m",
        "+c 1:7 rwm",
        "+c 136:* rwm",
        "+c 5:2 rwm",
        "+c 10:200 rwm",
    ])
}

fn with_devices(rules: Vec<oci_spec::runtime::LinuxDeviceCgroup>) -> LinuxResources {
    LinuxResourcesBuilder::default()
        .devices(rules)
        .build()
        .unwrap()
}

/// The cgroup2 directory a device filter is attached to (v2 and hybrid hosts).
fn cgroup2_dir(cgroup: &Cgroup) -> Option<std::path::PathBuf> {
    match &cgroup.backend {
        Backend::V2(cg) => Some(cg.dir().to_path_buf()),
        Backend::V1(cg) => cg.unified_dir().map(Path::to_path_buf),
    }
}

/// Whether a descriptor of this process refers to BPF program `id`.
fn we_hold_program(id: u32) -> bool {
    let wanted = format!("prog_id:\t{id}");
    std::fs::read_dir("/proc/self/fdinfo")
        .unwrap()
        .flatten()
        .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.lines().any(|l| l == wanted)))
}

#[test]
fn cgroups_device_filter_is_attached_at_create_and_freed_with_the_cgroup() {
    let cgroup = create(Some(&with_devices(docker_device_rules())));
    let Some(dir) = cgroup2_dir(&cgroup) else {
        // legacy hosts use the v1 devices controller (see the v1 test)
        destroy_and_check_gone(&cgroup);
        return;
    };
    // attached before any process is in the cgroup
    assert_eq!(
        std::fs::read_to_string(dir.join("cgroup.procs")).unwrap(),
        ""
    );
    let ids = bpf::attached_programs(&dir).unwrap();
    assert_eq!(ids.len(), 1, "{ids:?}");
    // the attachment holds the program, not a descriptor of ours
    assert!(!we_hold_program(ids[0]));
    assert!(bpf::program_exists(ids[0]));
    destroy_and_check_gone(&cgroup);
    // the kernel releases a removed cgroup's programs from a work queue
    let deadline = Instant::now() + Duration::from_secs(10);
    while bpf::program_exists(ids[0]) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!bpf::program_exists(ids[0]), "program {} leaked", ids[0]);

    // allow everything (--privileged): no program at all
    let cgroup = create(Some(&with_devices(oci_rules(&["+a *:* rwm"]))));
    let dir = cgroup2_dir(&cgroup).unwrap();
    assert_eq!(bpf::attached_programs(&dir).unwrap(), Vec::<u32>::new());
    destroy_and_check_gone(&cgroup);
}

#[test]
fn cgroups_device_filter_denies_unlisted_devices_to_a_child_cloned_inside() {
    let cgroup = create(Some(&with_devices(docker_device_rules())));
    let Some(fd) = cgroup.clone_into_fd().unwrap() else {
        destroy_and_check_gone(&cgroup);
        return;
    };
    let status = |script: &str| {
        let pid = spawn_into_cgroup(&fd, &["/bin/sh", "-c", script]);
        match nix::sys::wait::waitpid(pid, None).unwrap() {
            nix::sys::wait::WaitStatus::Exited(_, code) => code,
            other => panic!("{other:?}"),
        }
    };
    // /dev/null and /dev/full are allowed, /dev/kmsg (c 1:11) is not, from the first
    // instruction of a child cloned into the cgroup
    assert_eq!(status("exec 3</dev/null 4>/dev/full"), 0);
    assert_ne!(status("exec 3</dev/kmsg"), 0);
    assert_ne!(status("exec 3>/dev/kmsg"), 0);
    destroy_and_check_gone(&cgroup);
}

#[test]
fn cgroups_v1_device_rules_give_the_kernels_list() {
    // The real v1 devices controller, where the host has one mounted (this hybrid
    // host does; the v2 VM does not).
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let Some(hierarchy) = detect::v1_hierarchies(&mountinfo)
        .into_iter()
        .find(|h| h.has("devices"))
    else {
        return;
    };
    let rules = devices::from_oci(Some(&docker_device_rules()))
        .unwrap()
        .unwrap();
    let expected = devices::v1_writes(&rules).unwrap().listed;
    let dir = files::create_levels(&hierarchy.mount_point, &unique_name(), |_, _| Ok(())).unwrap();
    let applied = v1::apply_v1_devices(&dir, &rules);
    let listed = std::fs::read_to_string(dir.join("devices.list")).unwrap();
    files::remove_tree(&dir).unwrap();
    applied.unwrap();
    let expected: Vec<String> = expected.iter().map(|r| r.to_string()).collect();
    assert_eq!(listed.lines().collect::<Vec<_>>(), expected);
    assert!(expected.contains(&"b 7:5 r".to_string()), "{expected:?}");
}

/// Start-latency cost of the device filter: create + destroy with Docker's device rules
/// against none, after a quiet spell each time (µs). A benchmark, not a check:
/// `cargo test cgroups_bench_device -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark"]
fn cgroups_bench_device_filter() {
    let rules = with_devices(docker_device_rules());
    for (what, resources) in [
        ("no device rules", None),
        ("Docker's device rules", Some(&rules)),
    ] {
        let mut create_us = Vec::new();
        for _ in 0..30 {
            std::thread::sleep(Duration::from_millis(100));
            let t = Instant::now();
            let cgroup = create(resources);
            create_us.push(t.elapsed().as_micros());
            cgroup.destroy().unwrap();
        }
        create_us.sort();
        eprintln!(
            "create with {what}: median {} us, min {} us, max {} us",
            create_us[create_us.len() / 2],
            create_us[0],
            create_us[create_us.len() - 1]
        );
    }
}

/// A process frozen by the v1 freezer: SIGKILL stays pending until it is thawed, and
/// /proc shows it in state D, as a process stuck in the kernel. Thawed, killed and
/// its cgroups removed on drop, whatever the test did.
struct Frozen {
    freezer_dir: std::path::PathBuf,
    /// Its cgroup in the v1 pids hierarchy.
    pids_dir: std::path::PathBuf,
    child: Child,
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = files::write(&self.freezer_dir.join("freezer.state"), "THAWED");
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = files::remove_tree(&self.freezer_dir);
        let _ = files::remove_tree(&self.pids_dir);
        // The `mycontainer` parent this made in the freezer hierarchy, which no
        // container uses, so gc never looks there; busy (another test's) stays, and a
        // create racing with this starts again from the top (`create_levels`).
        if let Some(parent) = self.freezer_dir.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// A [`Frozen`] sleeper; None where the host has no v1 freezer and pids (the v2 VM).
fn frozen_sleeper() -> Option<Frozen> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let pids = detect::v1_hierarchies(&mountinfo)
        .into_iter()
        .find(|h| h.has("pids"))?;
    // Not one of ours (a container freezes through cgroup2 where it can): found here.
    let freezer = mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut right = right.split(' ');
        let is_freezer =
            right.next() == Some("cgroup") && right.nth(1)?.split(',').any(|o| o == "freezer");
        is_freezer.then(|| std::path::PathBuf::from(left.split(' ').nth(4).unwrap()))
    })?;
    let name = unique_name();
    let frozen = Frozen {
        freezer_dir: files::create_levels(&freezer, &name, |_, _| Ok(())).unwrap(),
        pids_dir: files::create_levels(&pids.mount_point, &name, |_, _| Ok(())).unwrap(),
        child: sleeper(),
    };
    for dir in [&frozen.freezer_dir, &frozen.pids_dir] {
        files::write(&dir.join("cgroup.procs"), &frozen.child.id().to_string()).unwrap();
    }
    let state = frozen.freezer_dir.join("freezer.state");
    files::write(&state, "FROZEN").unwrap();
    let began = Instant::now();
    while files::read(&state).unwrap().trim() != "FROZEN" {
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "the sleeper never froze"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    Some(frozen)
}

/// Waits for the sleeper to end; its signal.
fn killed_by(frozen: &mut Frozen) -> Option<i32> {
    frozen.child.wait().unwrap().signal()
}

/// Removing a frozen cgroup thaws it first: its processes could not die otherwise
/// (before, the removal killed in a loop and gave up after 10 s with "still busy").
#[test]
fn cgroups_a_frozen_cgroup_is_thawed_and_removed() {
    let Some(mut frozen) = frozen_sleeper() else {
        return;
    };
    // Without the thaw the kill cannot land and the removal fails once the process has
    // been stuck for `STUCK_AFTER`: success is the check, not a time.
    files::remove_tree(&frozen.freezer_dir).unwrap();
    assert!(!frozen.freezer_dir.exists());
    assert_eq!(killed_by(&mut frozen), Some(libc::SIGKILL));
}

/// A process the kill cannot reach (here frozen in another hierarchy, state D) is
/// waited for while it may still go, and only past the bound does the removal give up,
/// naming it and what to do; once it can die, the removal succeeds.
#[test]
fn cgroups_removal_waits_for_a_stuck_process_and_then_says_what_to_do() {
    let Some(mut frozen) = frozen_sleeper() else {
        return;
    };
    let pid = frozen.child.id();
    let err = files::remove_tree_waiting(&frozen.pids_dir, Duration::from_secs(1))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("{pid} (D)")) && err.contains("mycontainer gc"),
        "{err}"
    );
    assert!(frozen.pids_dir.exists());
    // Thawed while the removal waits: it goes on until the process is gone.
    let removed = std::thread::scope(|scope| {
        let removal =
            scope.spawn(|| files::remove_tree_waiting(&frozen.pids_dir, Duration::from_secs(600)));
        std::thread::sleep(Duration::from_secs(2));
        files::write(&frozen.freezer_dir.join("freezer.state"), "THAWED").unwrap();
        removal.join().unwrap()
    });
    removed.unwrap();
    assert!(!frozen.pids_dir.exists());
    assert_eq!(killed_by(&mut frozen), Some(libc::SIGKILL));
}

/// Pausing waits for a process that cannot freeze yet (held in state D, here by the v1
/// freezer) while it may still, and gives up only once nothing moved for the bound,
/// leaving the cgroup thawed and naming the process; once it can, the pause succeeds
/// (before, it gave up after 10 s whatever the processes did).
#[test]
fn cgroups_pause_waits_for_a_process_that_cannot_freeze_yet() {
    let Some(mut frozen) = frozen_sleeper() else {
        return;
    };
    let pid = frozen.child.id();
    let cgroup = create(None);
    cgroup.add_process(pid as i32).unwrap();
    let err = cgroup
        .freeze_waiting(Duration::from_secs(1))
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("{pid} (D)")), "{err}");
    assert!(!cgroup.is_frozen(), "a failed pause left the cgroup frozen");
    let paused = std::thread::scope(|scope| {
        let pause = scope.spawn(|| cgroup.freeze_waiting(Duration::from_secs(600)));
        std::thread::sleep(Duration::from_secs(2));
        files::write(&frozen.freezer_dir.join("freezer.state"), "THAWED").unwrap();
        pause.join().unwrap()
    });
    paused.unwrap();
    assert!(cgroup.is_frozen());
    destroy_and_check_gone(&cgroup);
    assert_eq!(killed_by(&mut frozen), Some(libc::SIGKILL));
}
