//! Issue 5 from inside real containers: capability sets, seccomp (default, unconfined,
//! a Docker JSON profile), no_new_privs, users by name, privileged mode, and that
//! nothing of the host (fds, environment) leaks in.

mod common;
mod probe;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use common::{ok, stderr, stdout, Fixture};

/// Docker's default capability set as /proc/<pid>/status prints it.
const DOCKER_DEFAULT_CAPS: &str = "00000000a80425fb";

fn fixture() -> Fixture {
    let fx = Fixture::new();
    probe::install(&fx.rootfs);
    std::fs::write(
        fx.rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:alice:/home/alice:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        fx.rootfs.join("etc/group"),
        "root:x:0:\nalice:x:1000:\nstaff:x:50:alice\naudio:x:29:alice,root\nnogroup:x:65534:\n",
    )
    .unwrap();
    fx
}

/// The value of `field` in the container's /proc/self/status, run with `flags`.
fn status_fields(fx: &Fixture, flags: &[&str], fields: &[&str]) -> Vec<String> {
    let mut all = vec!["--rm"];
    all.extend_from_slice(flags);
    let text = ok(fx.run(&all, &["cat", "/proc/self/status"]));
    fields
        .iter()
        .map(|field| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{field}:")))
                .unwrap_or_else(|| panic!("no {field} in {text}"))
                .trim()
                .to_string()
        })
        .collect()
}

#[test]
fn root_gets_dockers_default_capabilities_and_a_user_gets_none() {
    let fx = fixture();
    let fields = [
        "CapInh",
        "CapPrm",
        "CapEff",
        "CapBnd",
        "CapAmb",
        "NoNewPrivs",
        "Seccomp",
    ];
    let root = status_fields(&fx, &[], &fields);
    assert_eq!(
        root,
        [
            "0000000000000000",
            DOCKER_DEFAULT_CAPS,
            DOCKER_DEFAULT_CAPS,
            DOCKER_DEFAULT_CAPS,
            "0000000000000000",
            "0",
            "2"
        ]
    );
    let user = status_fields(
        &fx,
        &["-u", "1000"],
        &["CapEff", "CapPrm", "CapBnd", "Seccomp"],
    );
    assert_eq!(
        user,
        [
            "0000000000000000",
            "0000000000000000",
            DOCKER_DEFAULT_CAPS,
            "2"
        ]
    );
}

/// CVE-2022-24769: the inheritable set stays empty (as in Docker 20.10.14+, runc and
/// containerd), so a user who executes a file with inheritable file capabilities
/// (`cap_net_raw+ei`) gains nothing, whether the container starts as that user or root
/// drops to it (su here, gosu or su-exec in real entrypoints).
#[test]
fn the_inheritable_set_is_empty_so_file_capabilities_grant_nothing() {
    let fx = fixture();
    assert_eq!(status_fields(&fx, &[], &["CapInh"]), ["0000000000000000"]);
    assert_eq!(
        status_fields(&fx, &["-u", "1000"], &["CapInh"]),
        ["0000000000000000"]
    );
    // A busybox that carries `cap_net_raw+ei`, set from the host (the name starts with
    // "busybox" so it takes the applet from argv[1]).
    let caps_bb = fx.rootfs.join("bin/busybox-caps");
    std::fs::copy(fx.rootfs.join("bin/busybox"), &caps_bb).unwrap();
    let set = std::process::Command::new("setcap")
        .arg("cap_net_raw+ei")
        .arg(&caps_bb)
        .output()
        .expect("setcap (libcap2-bin) is installed");
    assert!(set.status.success(), "{}", stderr(&set));
    let net_raw = 1u64 << 13;
    let caps_of = |flags: &[&str], command: &[&str]| -> Vec<u64> {
        let mut all = vec!["--rm"];
        all.extend_from_slice(flags);
        let text = ok(fx.run(&all, command));
        ["CapPrm", "CapEff", "CapInh"]
            .iter()
            .map(|field| {
                let hex = text
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{field}:")))
                    .unwrap_or_else(|| panic!("no {field} in {text}"));
                u64::from_str_radix(hex.trim(), 16).unwrap()
            })
            .collect()
    };
    let as_user = caps_of(
        &["-u", "1000"],
        &["/bin/busybox-caps", "cat", "/proc/self/status"],
    );
    assert_eq!(as_user, [0, 0, 0], "run -u 1000");
    let dropped = caps_of(
        &[],
        &[
            "su",
            "alice",
            "-c",
            "/bin/busybox-caps cat /proc/self/status",
        ],
    );
    assert_eq!(dropped[0] & net_raw, 0, "CapPrm after root dropped to 1000");
    assert_eq!(dropped[1] & net_raw, 0, "CapEff after root dropped to 1000");
    // exec builds its own process: the same rule.
    let id = fx.run_detached(&[], &["sleep", "1000"]);
    let text = ok(fx.mc(&[
        "exec",
        "-u",
        "1000",
        &id,
        "/bin/busybox-caps",
        "cat",
        "/proc/self/status",
    ]));
    assert!(text.contains("CapInh:\t0000000000000000"), "{text}");
    assert!(text.contains("CapEff:\t0000000000000000"), "{text}");
    let root_exec = ok(fx.mc(&["exec", &id, "cat", "/proc/self/status"]));
    assert!(
        root_exec.contains("CapInh:\t0000000000000000"),
        "{root_exec}"
    );
    ok(fx.mc(&["rm", "-f", &id]));
}

#[test]
fn cap_add_cap_drop_and_privileged() {
    let fx = fixture();
    let dropped = status_fields(&fx, &["--cap-drop", "ALL"], &["CapEff", "CapBnd"]);
    assert_eq!(dropped, ["0000000000000000", "0000000000000000"]);
    let out = fx.run(
        &["--rm", "--cap-drop", "ALL"],
        &["chown", "65534", "/image-marker"],
    );
    assert_ne!(out.status.code(), Some(0), "chown without CAP_CHOWN worked");

    // NET_ADMIN is bit 12 (0x1000); CHOWN (bit 0) dropped.
    let tuned = status_fields(
        &fx,
        &["--cap-add", "NET_ADMIN", "--cap-drop", "chown"],
        &["CapEff"],
    );
    assert_eq!(tuned[0], "00000000a80435fa");

    // SYS_ADMIN lets mount through, the capability and the seccomp profile agreeing.
    assert_eq!(ok(fx.run(&["--rm"], &["probe", "mount"])).trim(), "EPERM");
    assert_eq!(
        ok(fx.run(&["--rm", "--cap-add", "SYS_ADMIN"], &["probe", "mount"])).trim(),
        "ok"
    );

    let privileged = status_fields(&fx, &["--privileged"], &["CapEff", "Seccomp"]);
    assert_ne!(privileged[0], DOCKER_DEFAULT_CAPS);
    assert_eq!(privileged[1], "0", "--privileged runs without seccomp");
    let bad = fx.run(&["--rm", "--cap-add", "NOT_A_CAP"], &["true"]);
    assert_eq!(bad.status.code(), Some(125));
    assert!(stderr(&bad).contains("NOT_A_CAP"), "{}", stderr(&bad));
    fx.assert_no_containers();
}

#[test]
fn the_default_seccomp_filter_blocks_dangerous_syscalls_with_eperm() {
    let fx = fixture();
    for (syscall, expected) in [
        ("keyctl", "EPERM"),
        ("unshare-user", "EPERM"),
        ("mount", "EPERM"),
        ("getpid", "ok"),
    ] {
        let out = fx.run(&["--rm"], &["probe", syscall]);
        assert_eq!(stdout(&out).trim(), expected, "{syscall}: {}", stderr(&out));
    }
    // Unconfined: keyctl reaches the kernel (which allows it), and Seccomp is 0.
    assert_eq!(
        ok(fx.run(
            &["--rm", "--security-opt", "seccomp=unconfined"],
            &["probe", "keyctl"]
        ))
        .trim(),
        "ok"
    );
    let unconfined = status_fields(&fx, &["--security-opt", "seccomp=unconfined"], &["Seccomp"]);
    assert_eq!(unconfined, ["0"]);
    // mount stays impossible without CAP_SYS_ADMIN even unconfined.
    assert_eq!(
        ok(fx.run(
            &["--rm", "--security-opt", "seccomp=unconfined"],
            &["probe", "mount"]
        ))
        .trim(),
        "EPERM"
    );
}

#[test]
fn io_uring_is_blocked_by_the_default_profile_as_in_docker() {
    let fx = fixture();
    let out = fx.run(&["--rm"], &["probe", "io_uring"]);
    assert_eq!(stdout(&out).trim(), "EPERM", "{}", stderr(&out));
    // Unconfined, the call reaches the kernel. It succeeds unless the host disabled
    // io_uring itself (kernel.io_uring_disabled 1 refuses it without CAP_SYS_ADMIN,
    // 2 always, both with EPERM), so only a host that allows it proves the filter.
    let unconfined = ok(fx.run(
        &["--rm", "--security-opt", "seccomp=unconfined"],
        &["probe", "io_uring"],
    ));
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map(|v| v.trim() != "0")
        .unwrap_or(false);
    if disabled {
        eprintln!("io_uring is disabled on this host: the unconfined case proves nothing");
    } else {
        assert_eq!(unconfined.trim(), "ok");
    }
}

#[test]
fn a_docker_json_profile_is_applied() {
    let fx = fixture();
    let profile = fx.dir.path().join("profile.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let out = fx.run(
        &["--rm", "--security-opt", &opt],
        &["sh", "-c", "mkdir /tmp/x; echo still-running; probe keyctl"],
    );
    assert_eq!(stdout(&out), "still-running\nok\n", "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
    let broken = fx.dir.path().join("broken.json");
    std::fs::write(&broken, "{not json").unwrap();
    let out = fx.run(
        &[
            "--rm",
            "--security-opt",
            &format!("seccomp={}", broken.display()),
        ],
        &["true"],
    );
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("broken.json"), "{}", stderr(&out));
}

/// The value of `field` in /proc/self/status of a container run with `flags`, or None on
/// kernels that do not show it.
fn status_field(fx: &Fixture, flags: &[&str], field: &str) -> Option<String> {
    let mut all = vec!["--rm"];
    all.extend_from_slice(flags);
    let text = ok(fx.run(&all, &["cat", "/proc/self/status"]));
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
}

#[test]
fn one_filter_holds_every_action_and_its_argument_rules_hold() {
    let fx = fixture();
    // Docker's profile has rules of two actions (ALLOW and ERRNO(ENOSYS) for clone3):
    // one filter program all the same, where the kernel shows the count (5.9+).
    match status_field(&fx, &[], "Seccomp_filters") {
        Some(count) => assert_eq!(count, "1"),
        None => eprintln!("this kernel does not show Seccomp_filters"),
    }
    // Docker's personality rule allows a few exact values (0xffffffff queries); any
    // other is refused by the filter, which the kernel itself would accept.
    let probe = |flags: &[&str], args: &[&str]| {
        let mut all = vec!["--rm"];
        all.extend_from_slice(flags);
        let out = fx.run(&all, args);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).trim().to_string()
    };
    assert_eq!(probe(&[], &["probe", "personality", "0xffffffff"]), "ok");
    assert_eq!(probe(&[], &["probe", "personality", "0x0400000"]), "EPERM");
    let unconfined = ["--security-opt", "seccomp=unconfined"];
    assert_eq!(
        probe(&unconfined, &["probe", "personality", "0x0400000"]),
        "ok"
    );
    // A profile with three actions and argument conditions: clone with CLONE_NEWNS is
    // refused with EACCES (the container holds CAP_SYS_ADMIN, so only the filter can
    // refuse it), a plain clone is not; personality other than 8 gets EPERM; mkdir
    // kills the process.
    let profile = fx.dir.path().join("conditions.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
              {"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
               "args": [{"index": 0, "value": 131072, "valueTwo": 131072, "op": "SCMP_CMP_MASKED_EQ"}]},
              {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
               "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_NE"}]},
              {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL_PROCESS"}
            ]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let custom = ["--cap-add", "SYS_ADMIN", "--security-opt", opt.as_str()];
    assert_eq!(probe(&custom, &["probe", "clone-newns"]), "EACCES");
    assert_eq!(probe(&custom, &["probe", "personality", "8"]), "ok");
    assert_eq!(probe(&custom, &["probe", "personality", "0"]), "EPERM");
    // sh forks (a clone without namespace flags) and the command runs.
    assert_eq!(probe(&custom, &["sh", "-c", "true; echo forked"]), "forked");
    let killed = fx.run(
        &["--rm", custom[0], custom[1], custom[2], custom[3]],
        &["mkdir", "/tmp/x"],
    );
    assert_eq!(
        killed.status.code(),
        Some(128 + libc::SIGSYS),
        "{}",
        stderr(&killed)
    );
    if let Some(count) = status_field(&fx, &custom, "Seccomp_filters") {
        assert_eq!(count, "1");
    }
    // Without the filter, CAP_SYS_ADMIN lets the same clone through.
    let admin_unconfined = ["--cap-add", "SYS_ADMIN", unconfined[0], unconfined[1]];
    assert_eq!(probe(&admin_unconfined, &["probe", "clone-newns"]), "ok");
    fx.assert_no_containers();
}

#[test]
fn no_new_privileges_only_when_asked() {
    let fx = fixture();
    assert_eq!(status_fields(&fx, &[], &["NoNewPrivs"]), ["0"]);
    assert_eq!(
        status_fields(
            &fx,
            &["--security-opt", "no-new-privileges"],
            &["NoNewPrivs"]
        ),
        ["1"]
    );
    assert_eq!(
        status_fields(
            &fx,
            &["-u", "1000", "--security-opt", "no-new-privileges"],
            &["NoNewPrivs", "Seccomp"]
        ),
        ["1", "2"]
    );
}

#[test]
fn users_resolve_by_name_with_supplementary_groups() {
    let fx = fixture();
    assert_eq!(
        ok(fx.run(&["--rm", "-u", "alice"], &["id"])).trim(),
        "uid=1000(alice) gid=1000(alice) groups=29(audio),50(staff),1000(alice)"
    );
    assert_eq!(
        ok(fx.run(&["--rm", "-u", "alice:staff"], &["sh", "-c", "id -g"])).trim(),
        "50"
    );
    assert_eq!(
        ok(fx.run(&["--rm", "-u", "alice"], &["sh", "-c", "echo $HOME"])).trim(),
        "/home/alice"
    );
    assert_eq!(
        ok(fx.run(&["--rm", "-u", "4242"], &["sh", "-c", "id -u"])).trim(),
        "4242"
    );
    let out = fx.run(&["--rm", "-u", "mallory"], &["true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("mallory") && stderr(&out).contains("passwd"),
        "{}",
        stderr(&out)
    );
    fx.assert_no_containers();
}

#[test]
fn no_file_descriptors_or_environment_leak_in() {
    let fx = fixture();
    // An inheritable descriptor in the CLI (no CLOEXEC), as a careless caller might leave.
    let mut fds = [0; 2];
    // SAFETY: pipe(2) fills the two-element array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the descriptors were just created and are owned here.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let out = fx
        .run_cmd(&["--rm"], &["probe", "fds"])
        .env("HOST_SECRET", "leaked")
        .output()
        .unwrap();
    assert_eq!(
        stdout(&out).trim(),
        "0 1 2",
        "descriptors seen inside (host had {} and {})",
        read_end.as_raw_fd(),
        write_end.as_raw_fd()
    );
    let env = ok(fx
        .run_cmd(&["--rm", "-e", "ASKED=yes"], &["env"])
        .env("HOST_SECRET", "leaked")
        .output()
        .unwrap());
    assert!(!env.contains("HOST_SECRET"), "{env}");
    assert!(env.contains("ASKED=yes"), "{env}");
}

#[test]
fn a_read_only_root_refuses_writes() {
    let fx = fixture();
    let out = fx.run(&["--rm", "--read-only"], &["sh", "-c", "touch /newfile"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
    assert!(!fx.rootfs.join("newfile").exists());
}

/// With --read-only the /etc files the container gets (hosts, hostname, resolv.conf) are
/// read-only too, as in Docker; without it they are writable.
#[test]
fn a_read_only_root_makes_the_etc_files_read_only_too() {
    let fx = fixture();
    for file in ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"] {
        let append = format!("echo x >> {file}");
        let out = fx.run(&["--rm", "--read-only"], &["sh", "-c", &append]);
        assert_ne!(out.status.code(), Some(0), "{file} was writable");
        assert!(
            stderr(&out).contains("Read-only file system"),
            "{file}: {}",
            stderr(&out)
        );
        let written = ok(fx.run(
            &["--rm"],
            &["sh", "-c", &format!("{append} && tail -n 1 {file}")],
        ));
        assert_eq!(written, "x\n", "{file}");
    }
}

#[test]
fn the_init_of_run_init_is_confined_like_the_command() {
    let fx = fixture();
    let text = ok(fx.run(&["--rm", "--init"], &["cat", "/proc/1/status"]));
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .trim()
            .to_string()
    };
    assert_eq!(field("Name"), "init", "{text}");
    assert_eq!(field("CapEff"), DOCKER_DEFAULT_CAPS, "{text}");
    assert_eq!(field("CapBnd"), DOCKER_DEFAULT_CAPS, "{text}");
    assert_eq!(field("Seccomp"), "2", "{text}");
}

#[test]
fn the_init_of_run_init_shows_no_host_command_line() {
    // Our init is the CLI forked: without a new title its /proc/1/cmdline (readable
    // by every process of the container) is the host's command line, volume paths
    // and state root included. (Its environ is closed: init is not dumpable.)
    let fx = fixture();
    let volume = fx.dir.path().join("secret-volume-dir");
    std::fs::create_dir(&volume).unwrap();
    let bind = format!("{}:/x", volume.display());
    let out = fx.run(
        &["--rm", "--init", "-v", &bind],
        &["cat", "/proc/1/cmdline"],
    );
    let text = ok(out).replace('\0', " ");
    assert!(
        text.starts_with("mycontainer-init -- cat /proc/1/cmdline"),
        "{text:?}"
    );
    for secret in [
        volume.to_str().unwrap(),
        fx.root.to_str().unwrap(),
        "--root",
    ] {
        assert!(!text.contains(secret), "{secret} in {text:?}");
    }
}

/// Force-removes the fixture's containers when a test ends, even by a panic.
struct RemoveAll<'a>(&'a Fixture);

impl Drop for RemoveAll<'_> {
    fn drop(&mut self) {
        self.0.remove_all();
    }
}

/// `mycontainer ARGS` under `timeout`, so that a lookup that blocks fails the test
/// (exit 137) instead of hanging it.
fn mc_within(fx: &Fixture, secs: u32, args: &[&str]) -> std::process::Output {
    std::process::Command::new("timeout")
        .args(["-s", "KILL", &secs.to_string(), common::BIN])
        .env_remove("MYCONTAINER_ROOT")
        .arg("--root")
        .arg(&fx.root)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[track_caller]
/// Refused with `code` (run's own failure is 125, exec's 126, as Docker) and `message`.
fn assert_refused(out: &std::process::Output, code: i32, message: &str) {
    assert_eq!(out.status.code(), Some(code), "{}", stderr(out));
    assert!(stderr(out).contains(message), "{}", stderr(out));
}

#[test]
fn a_fifo_or_a_device_as_passwd_or_group_fails_run_and_exec_at_once() {
    let fx = fixture();
    let _cleanup = RemoveAll(&fx);
    ok(fx.mc(&["run", "--rm", "busybox", "true"]));
    // Images whose /etc/passwd is a fifo (a reader blocks forever) and whose /etc/group
    // is /dev/zero (a reader never reaches the end), made by container root.
    ok(fx.mc(&[
        "run",
        "--name",
        "fifo",
        "busybox",
        "sh",
        "-c",
        "rm /etc/passwd && mkfifo /etc/passwd",
    ]));
    ok(fx.mc(&["commit", "fifo", "hostile:fifo"]));
    ok(fx.mc(&[
        "run",
        "--name",
        "zero",
        "busybox",
        "sh",
        "-c",
        "rm -f /etc/group && mknod /etc/group c 1 5",
    ]));
    ok(fx.mc(&["commit", "zero", "hostile:zero"]));
    let out = mc_within(
        &fx,
        20,
        &["run", "--rm", "-u", "nobody", "hostile:fifo", "true"],
    );
    assert_refused(
        &out,
        125,
        "/etc/passwd in the image is not a regular file (it is a fifo)",
    );
    let out = mc_within(
        &fx,
        20,
        &["run", "--rm", "-u", "nobody", "hostile:zero", "true"],
    );
    assert_refused(
        &out,
        125,
        "/etc/group in the image is not a regular file (it is a character device)",
    );

    // exec reads the container's live root, which its root user changes at will.
    let id = fx.run_detached(&["--name", "live"], &["sleep", "1000"]);
    ok(fx.mc(&[
        "exec",
        &id,
        "sh",
        "-c",
        "rm /etc/passwd && mkfifo /etc/passwd",
    ]));
    let out = mc_within(&fx, 20, &["exec", "-u", "nobody", &id, "true"]);
    assert_refused(
        &out,
        126,
        "/etc/passwd in the container is not a regular file (it is a fifo)",
    );
    ok(fx.mc(&[
        "exec",
        &id,
        "sh",
        "-c",
        "rm /etc/passwd /etc/group && echo nobody:x:65534:65534::/:/bin/sh > /etc/passwd && mknod /etc/group c 1 5",
    ]));
    let out = mc_within(&fx, 20, &["exec", "-u", "nobody", &id, "true"]);
    assert_refused(
        &out,
        126,
        "/etc/group in the container is not a regular file (it is a character device)",
    );
    ok(fx.mc(&["rm", "-f", &id]));
}
