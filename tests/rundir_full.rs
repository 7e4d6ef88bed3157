//! The run directory cannot be filled by a container: each container's generated
//! /etc/hostname, /etc/hosts and /etc/resolv.conf (bind-mounted read-write into it) sit
//! on a small tmpfs of its own, so container root writing without end into its
//! /etc/hosts fills only that, and every other container still starts. A run directory
//! that is full all the same is named in the error, not the disk.
//!
//! Both tests use a run base of their own (`MYCONTAINER_RUNROOT`) on a small tmpfs the
//! test mounts, so filling it never touches /run/mycontainer, which other tests share.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;

/// A run base on a tmpfs of `size` (mount's syntax, with `extra` options) that the test
/// owns, and a state root whose commands use it. Dropped first (declared after the
/// World), it removes the containers, then unmounts what is left below the base.
struct PrivateRunBase<'w> {
    w: &'w World,
    base: PathBuf,
}

impl<'w> PrivateRunBase<'w> {
    fn new(w: &'w World, options: &str) -> PrivateRunBase<'w> {
        let base = w.dir.path().join("runbase");
        fs::create_dir(&base).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "testrun"])
            .arg(&base)
            .status()
            .unwrap();
        assert!(
            mounted.success(),
            "cannot mount a tmpfs on {}",
            base.display()
        );
        PrivateRunBase { w, base }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.w.cmd();
        cmd.env("MYCONTAINER_RUNROOT", &self.base)
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    fn mc(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// `run ARGS` with the busybox rootfs (flags first, then the command).
    fn run(&self, flags: &[&str], command: &[&str]) -> Output {
        let rootfs = self.w.rootfs.to_str().unwrap();
        let mut args = vec!["run"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--rootfs", rootfs]);
        args.extend_from_slice(command);
        self.mc(&args)
    }

    /// Mount points below the base (the base itself not counted).
    fn mounts_below(&self) -> Vec<String> {
        mounts_below(&self.base)
    }
}

fn mounts_below(dir: &Path) -> Vec<String> {
    let table = fs::read_to_string("/proc/self/mountinfo").unwrap();
    table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| Path::new(point).starts_with(dir) && Path::new(point) != dir)
        .map(String::from)
        .collect()
}

impl Drop for PrivateRunBase<'_> {
    fn drop(&mut self) {
        for id in self.w.container_ids() {
            let _ = self.mc(&["rm", "-f", &id]);
        }
        let mut points = self.mounts_below();
        points.push(self.base.to_string_lossy().into_owned());
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for point in points {
            let _ = Command::new("umount").args(["-l", &point]).status();
        }
    }
}

/// Free bytes of the filesystem holding `path`.
fn free_bytes(path: &Path) -> u64 {
    let st = nix::sys::statvfs::statvfs(path).unwrap();
    st.blocks_available() as u64 * st.fragment_size() as u64
}

#[test]
fn a_container_filling_its_etc_hosts_fills_only_its_own_tmpfs() {
    let w = World::new();
    let run = PrivateRunBase::new(&w, "size=16m,mode=0700");
    let id = stdout(&run.run(
        &["-d", "--name", "filler", "--network", "none"],
        &["sleep", "1000"],
    ))
    .trim()
    .to_string();
    assert_eq!(id.len(), 64, "run -d printed {id:?}");
    // Container root writes 32 MiB into its /etc/hosts: twice what the whole run base
    // holds. Its own writes fail with ENOSPC, well before that.
    let attack = ok(run.mc(&[
        "exec",
        "filler",
        "sh",
        "-c",
        "dd if=/dev/zero of=/etc/hosts bs=64k count=512 2>&1; echo rc=$?; wc -c < /etc/hosts",
    ]));
    assert!(
        attack.contains("No space left on device") && attack.contains("rc=1"),
        "the container's write did not fail with ENOSPC: {attack}"
    );
    let written: u64 = attack.lines().last().unwrap().trim().parse().unwrap();
    assert!(
        written <= 4 << 20,
        "the container wrote {written} bytes into its /etc/hosts"
    );
    // The run base (which every container and the host's own records need) is as
    // empty as before.
    assert!(
        free_bytes(&run.base) > 12 << 20,
        "the run base has {} bytes free",
        free_bytes(&run.base)
    );
    // Every other container still starts, and writes its own /etc files.
    let second = run.run(
        &["--rm", "--network", "none"],
        &[
            "sh",
            "-c",
            "echo 10.9.9.9 extra >> /etc/hosts && tail -n1 /etc/hosts",
        ],
    );
    assert_eq!(ok(second), "10.9.9.9 extra\n");
    ok(run.mc(&[
        "run",
        "-d",
        "--name",
        "other",
        "--rootfs",
        w.rootfs.to_str().unwrap(),
        "sleep",
        "1000",
    ]));
    ok(run.mc(&["exec", "other", "true"]));
    // The filler's tmpfs goes with it (and the other's with it).
    let before = run.mounts_below().len();
    assert!(
        before >= 2,
        "no tmpfs per container: {:?}",
        run.mounts_below()
    );
    ok(run.mc(&["rm", "-f", "filler", "other"]));
    assert_eq!(run.mounts_below(), Vec::<String>::new(), "mounts left");
}

#[test]
fn a_full_run_directory_is_named_in_the_error_and_not_the_disk() {
    let w = World::new();
    // Few inodes and little space, both filled below.
    let run = PrivateRunBase::new(&w, "size=1m,nr_inodes=200,mode=0700");
    ok(run.run(&["--rm", "--network", "none"], &["true"]));
    let filler = run.base.join("filler");
    fs::create_dir(&filler).unwrap();
    let _ = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", filler.join("blocks").display()))
        .arg("bs=4k")
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let mut n = 0;
    while fs::write(filler.join(n.to_string()), "").is_ok() {
        n += 1;
        assert!(n < 10_000, "the inodes never ran out");
    }
    let out = run.run(&["--rm", "--network", "none"], &["true"]);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains(&format!("the run directory {} is full", run.base.display())),
        "{err}"
    );
    assert!(!err.contains("the disk holding"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    // Room again: the same run works.
    fs::remove_dir_all(&filler).unwrap();
    ok(run.run(&["--rm", "--network", "none"], &["true"]));
    w.assert_no_containers();
    assert_eq!(run.mounts_below(), Vec::<String>::new(), "mounts left");
}
