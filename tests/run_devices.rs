//! Issue 11, devices, from inside real containers: root may mknod any node (CAP_MKNOD,
//! as in Docker) but cannot open one the device policy does not list (a host disk,
//! /dev/kmsg, /dev/kvm); the default nodes and the pty work; `--device` gives one host
//! device with the permissions asked; `--privileged` lifts the filter; `exec` is under
//! the same filter. Runs on the host's layout (v2 in scripts/test-cgroup2's VM).

mod common;

use std::path::Path;
use std::process::Command;

use common::{ok, stderr, Fixture};

/// A loop device over a 1 MiB file that starts with "MARKER", detached on drop: a real
/// block device of the host the tests can attack.
struct LoopDevice {
    device: String,
}

impl LoopDevice {
    fn new(dir: &Path) -> LoopDevice {
        let file = dir.join("disk.img");
        let mut content = vec![0u8; 1 << 20];
        content[..6].copy_from_slice(b"MARKER");
        std::fs::write(&file, content).unwrap();
        // A fresh kernel (the cgroup v2 VM's) may not have loaded the loop driver yet.
        if !Path::new("/dev/loop-control").exists() {
            let _ = Command::new("modprobe").arg("loop").status();
        }
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&file)
            .output()
            .unwrap();
        let device = ok(out).trim().to_string();
        assert!(device.starts_with("/dev/loop"), "{device}");
        LoopDevice { device }
    }

    /// The major and minor of the device, and its permission bits.
    fn numbers(&self) -> (u32, u32, u32) {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = std::fs::metadata(&self.device).unwrap();
        let rdev = meta.rdev();
        (
            libc::major(rdev),
            libc::minor(rdev),
            meta.permissions().mode() & 0o7777,
        )
    }

    /// The first bytes of the disk, read through the device: what the container wrote
    /// there may sit in the device's page cache until its last opener (udev probing
    /// it, say) closes it, before it reaches the file.
    fn head(&self) -> Vec<u8> {
        use std::io::Read;
        let mut head = vec![0u8; 6];
        std::fs::File::open(&self.device)
            .unwrap()
            .read_exact(&mut head)
            .unwrap();
        head
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
    }
}

/// A shell function printing "PATH OP opened" or "PATH OP <the shell's error>" for an
/// open of PATH with the redirection OP (<, > or <>).
const TRY_OPEN: &str = r#"try() { if (eval "exec 3$2$1") 2>/tmp/err; then echo "$1 $2 opened"; else echo "$1 $2 $(cat /tmp/err)"; fi; }"#;

#[track_caller]
fn assert_denied(output: &str, path: &str, op: &str) {
    let line = output
        .lines()
        .find(|l| l.starts_with(&format!("{path} {op} ")))
        .unwrap_or_else(|| panic!("no result for {path} {op} in {output}"));
    assert!(
        line.contains("Operation not permitted"),
        "{path} {op} was not refused with EPERM: {line}"
    );
}

#[test]
fn device_nodes_made_with_mknod_cannot_be_opened_unless_listed() {
    let fx = Fixture::new();
    let disk = LoopDevice::new(fx.dir.path());
    let (major, minor, _) = disk.numbers();
    let script = format!(
        "{TRY_OPEN}
        mknod /tmp/disk b {major} {minor} && echo made disk
        mknod /tmp/kmsg c 1 11 && echo made kmsg
        mknod /tmp/kvm c 10 232 && echo made kvm
        try /tmp/disk '<'; try /tmp/disk '>'; try /tmp/disk '<>'
        try /tmp/kmsg '>'; try /tmp/kmsg '<'
        try /tmp/kvm '<>'
        head -c 6 /tmp/disk; printf EVIL > /tmp/disk
        mknod /tmp/null c 1 3 && try /tmp/null '<>'
        true"
    );
    let out = ok(fx.run(&["--rm"], &["sh", "-c", &script]));
    // mknod itself is allowed, as in Docker
    for made in ["made disk", "made kmsg", "made kvm"] {
        assert!(out.contains(made), "{made} missing: {out}");
    }
    for (path, op) in [
        ("/tmp/disk", "<"),
        ("/tmp/disk", ">"),
        ("/tmp/disk", "<>"),
        ("/tmp/kmsg", ">"),
        ("/tmp/kmsg", "<"),
        ("/tmp/kvm", "<>"),
    ] {
        assert_denied(&out, path, op);
    }
    // a node of an allowed device works wherever it is made
    assert!(out.contains("/tmp/null <> opened"), "{out}");
    // the host's disk was neither read nor written
    assert!(!out.contains("MARKER"), "the disk was read: {out}");
    assert_eq!(disk.head(), b"MARKER");
    fx.assert_no_containers();
}

#[test]
fn the_default_nodes_and_the_pty_work() {
    let fx = Fixture::new();
    let script = "
        echo x > /dev/null && echo null ok
        [ $(head -c 4 /dev/zero | wc -c) = 4 ] && echo zero ok
        [ $(head -c 4 /dev/urandom | wc -c) = 4 ] && echo urandom ok
        [ $(head -c 4 /dev/random | wc -c) = 4 ] && echo random ok
        [ $(head -c 4 /dev/full | wc -c) = 4 ] && (exec 3>/dev/full) && echo full ok
        echo x > /dev/tty && echo tty ok
        echo x > $(tty) && echo pts ok
        (exec 3<>/dev/ptmx) && echo ptmx ok";
    let out = ok(fx.run(&["--rm", "-t"], &["sh", "-c", script]));
    for name in [
        "null", "zero", "urandom", "random", "full", "tty", "pts", "ptmx",
    ] {
        assert!(out.contains(&format!("{name} ok")), "{name} failed: {out}");
    }
    fx.assert_no_containers();
}

#[test]
fn a_device_flag_gives_that_device_with_the_permissions_asked() {
    let fx = Fixture::new();
    let disk = LoopDevice::new(fx.dir.path());
    let (major, minor, mode) = disk.numbers();
    // read-write: the node is there, typed and numbered as on the host
    let rw = format!("{}:/dev/disk0", disk.device);
    let out = ok(fx.run(
        &["--rm", "--device", &rw],
        &[
            "sh",
            "-c",
            "stat -c '%F %t:%T %a' /dev/disk0; head -c 6 /dev/disk0; echo; printf EVIL > /dev/disk0 && echo wrote",
        ],
    ));
    let expected = format!("block special file {major:x}:{minor:x} {mode:o}");
    assert!(out.contains(&expected), "{expected} not in {out}");
    assert!(out.contains("MARKER") && out.contains("wrote"), "{out}");
    assert_eq!(disk.head(), b"EVILER");

    // read-only permission, in a directory of its own: reads work, opening to write
    // is refused by the device cgroup
    let ro = format!("{}:/dev/sub/disk:r", disk.device);
    let script = format!("{TRY_OPEN}\n head -c 6 /dev/sub/disk; echo; try /dev/sub/disk '>'");
    let out = ok(fx.run(&["--rm", "--device", &ro], &["sh", "-c", &script]));
    assert!(out.contains("EVILER"), "{out}");
    assert_denied(&out, "/dev/sub/disk", ">");
    assert_eq!(disk.head(), b"EVILER");

    // a character device by its host path
    let out = ok(fx.run(
        &["--rm", "--device", "/dev/loop-control"],
        &["sh", "-c", "(exec 3<>/dev/loop-control) && echo control ok"],
    ));
    assert!(out.contains("control ok"), "{out}");

    let bad = fx.run(&["--rm", "--device", "/etc/hostname"], &["true"]);
    assert_eq!(bad.status.code(), Some(125));
    assert!(
        stderr(&bad).contains("not a device node"),
        "{}",
        stderr(&bad)
    );
    fx.assert_no_containers();
}

#[test]
fn privileged_lifts_the_device_filter() {
    let fx = Fixture::new();
    let out = ok(fx.run(
        &["--rm", "--privileged"],
        &["sh", "-c", "mknod /tmp/kmsg c 1 11 && head -n 1 /tmp/kmsg"],
    ));
    // a record of the host's kernel log: "priority,sequence,time,flags;text"
    assert!(out.contains(';'), "no kernel log record: {out}");
    fx.assert_no_containers();
}

#[test]
fn exec_runs_under_the_same_device_filter() {
    let fx = Fixture::new();
    let id = fx.run_detached(&["--name", "devexec"], &["sleep", "1000"]);
    let script =
        format!("{TRY_OPEN}\n mknod /tmp/kmsg c 1 11; try /tmp/kmsg '>'; try /dev/null '>'");
    let out = fx.mc(&["exec", &id, "sh", "-c", &script]);
    fx.remove_all();
    let out = ok(out);
    assert_denied(&out, "/tmp/kmsg", ">");
    assert!(out.contains("/dev/null > opened"), "{out}");
}
