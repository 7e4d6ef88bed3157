//! A full disk under the state root: the state root lives on a small tmpfs (a real
//! `size=` limit) which the test fills to the last block. Every verb that must write
//! (import, pull, build, commit, run, run -d) fails with a one-line message saying the
//! disk is full, leaves nothing half-written that a listing shows, and `system check`
//! passes once there is room again, when the same verb works. A running container whose
//! log cannot be written keeps running, and `logs` says output was lost.

mod registry_support;
#[path = "common/rundir.rs"]
mod rundir;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use registry_support::*;

/// A tmpfs of `size_mb` MiB with a state root inside.
struct SmallDisk {
    _dir: tempfile::TempDir,
    mount: PathBuf,
    root: PathBuf,
    mounted: bool,
}

impl SmallDisk {
    fn new(size_mb: u32) -> SmallDisk {
        private_network();
        let dir = tempfile::Builder::new()
            .prefix("mycontainer-diskfull-")
            .tempdir()
            .unwrap();
        let mount = dir.path().join("small");
        fs::create_dir(&mount).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(&mount)
            .status()
            .unwrap();
        assert!(mounted.success(), "cannot mount a tmpfs");
        let root = mount.join("root");
        SmallDisk {
            _dir: dir,
            mount,
            root,
            mounted: true,
        }
    }

    fn mc(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.mc(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Fills the disk to the last block.
    fn fill(&self) {
        for (name, bs) in [("filler", "64k"), ("filler-tail", "512")] {
            let _ = Command::new("dd")
                .args(["if=/dev/zero", &format!("bs={bs}")])
                .arg(format!("of={}", self.mount.join(name).display()))
                .stderr(Stdio::null())
                .status()
                .unwrap();
        }
        let probe = fs::write(self.mount.join("probe"), [0u8; 4096]);
        assert!(probe.is_err(), "the disk is not full");
        let _ = fs::remove_file(self.mount.join("probe"));
    }

    fn unfill(&self) {
        for name in ["filler", "filler-tail"] {
            fs::remove_file(self.mount.join(name)).unwrap();
        }
    }

    /// `verb` failed as a full disk must make it fail: the exit code, and one line
    /// saying the disk is full (and what to do).
    #[track_caller]
    fn assert_fails_full(&self, args: &[&str], code: i32) {
        let out = self.mc(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        let err = err.trim();
        assert!(
            err.to_lowercase().contains("no space left on device"),
            "{args:?} does not say the disk is full: {err}"
        );
        assert!(
            err.contains("is full: free space there"),
            "{args:?} does not say what to do: {err}"
        );
        assert!(
            !err.contains('\n'),
            "{args:?} says more than one line: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }

    #[track_caller]
    fn assert_check_clean(&self) {
        let out = self.mc(&["system", "check"]);
        assert!(
            out.status.success(),
            "system check: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn images(&self) -> String {
        self.ok(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"])
    }

    /// Removes every container and unmounts; asserts the unmount is clean (nothing of
    /// ours is left mounted or open on the disk).
    fn finish(mut self) {
        self.remove_all();
        let out = Command::new("umount").arg(&self.mount).output().unwrap();
        self.mounted = !out.status.success();
        assert!(
            out.status.success(),
            "the small disk does not unmount cleanly: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn remove_all(&self) {
        let listed = self.mc(&["ps", "-aq", "--no-trunc"]);
        for id in String::from_utf8_lossy(&listed.stdout).split_whitespace() {
            let _ = self.mc(&["rm", "-f", id]);
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if self.mounted {
            self.remove_all();
            let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        }
        rundir::remove_run_dir(&self.root);
    }
}

/// A gzip layer tarball of `kib` KiB of incompressible data, outside the small disk.
fn layer_tarball(dir: &Path, kib: usize) -> PathBuf {
    let content = dir.join("content");
    fs::create_dir_all(content.join("data")).unwrap();
    let mut bytes = vec![0u8; kib * 1024];
    let mut x: u32 = 0x9e37_79b9;
    for b in bytes.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    fs::write(content.join("data/random"), &bytes).unwrap();
    let tarball = dir.join("layer.tgz");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&content)
        .arg("-czf")
        .arg(&tarball)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    tarball
}

#[test]
fn import_and_pull_on_a_full_disk_fail_clearly_and_leave_no_image() {
    require_tool("busybox", "busybox-static");
    let registry = Registry::start(RegistryAuth::None);
    let source = Root::new();
    source.busybox();
    let target = format!("{}/full/busybox:v1", registry.addr);
    source.ok(&["push", "busybox", &target]);
    let scratch = tempfile::tempdir().unwrap();
    let tarball = layer_tarball(scratch.path(), 2048);
    let tarball = tarball.to_str().unwrap();

    let disk = SmallDisk::new(32);
    disk.ok(&["image", "ls"]);
    disk.fill();
    disk.assert_fails_full(&["image", "import", tarball, "imported:v1"], 1);
    disk.assert_fails_full(&["pull", &target], 1);
    disk.unfill();
    assert_eq!(disk.images().trim(), "", "a half-written image is listed");
    disk.assert_check_clean();

    disk.ok(&["image", "import", tarball, "imported:v1"]);
    disk.ok(&["pull", &target]);
    let images = disk.images();
    assert!(
        images.contains("imported:v1") && images.contains("full/busybox:v1"),
        "{images}"
    );
    disk.ok(&["run", "--rm", &target, "true"]);
    disk.assert_check_clean();
    disk.finish();
}

#[test]
fn build_and_commit_on_a_full_disk_fail_clearly_and_leave_no_image() {
    require_tool("busybox", "busybox-static");
    let disk = SmallDisk::new(48);
    disk.ok(&["image", "build", "busybox"]);
    let context = tempfile::tempdir().unwrap();
    fs::write(
        context.path().join("Containerfile"),
        "FROM busybox\nRUN dd if=/dev/zero of=/big bs=64k count=16\n",
    )
    .unwrap();
    let containerfile = context.path().join("Containerfile");
    let build = [
        "image",
        "build",
        "-f",
        containerfile.to_str().unwrap(),
        "-t",
        "built:v1",
        context.path().to_str().unwrap(),
    ];
    disk.ok(&[
        "run",
        "--name",
        "changed",
        "busybox",
        "dd",
        "if=/dev/zero",
        "of=/big",
        "bs=64k",
        "count=16",
    ]);

    disk.fill();
    disk.assert_fails_full(&build, 1);
    disk.assert_fails_full(&["commit", "changed", "committed:v1"], 1);
    disk.unfill();
    let images = disk.images();
    assert_eq!(
        images.trim(),
        "busybox:latest",
        "a half-written image is listed"
    );
    disk.assert_check_clean();

    disk.ok(&build);
    disk.ok(&["commit", "changed", "committed:v1"]);
    disk.ok(&["run", "--rm", "committed:v1", "test", "-s", "/big"]);
    disk.ok(&["run", "--rm", "built:v1", "test", "-s", "/big"]);
    disk.assert_check_clean();
    disk.finish();
}

#[test]
fn run_and_run_detached_on_a_full_disk_fail_clearly_and_leave_no_container() {
    require_tool("busybox", "busybox-static");
    let disk = SmallDisk::new(32);
    disk.ok(&["image", "build", "busybox"]);

    disk.fill();
    disk.assert_fails_full(&["run", "--rm", "busybox", "true"], 125);
    disk.assert_fails_full(&["run", "--name", "kept", "busybox", "true"], 125);
    disk.assert_fails_full(&["run", "-d", "busybox", "sleep", "1000"], 125);
    disk.unfill();
    let listed = disk.ok(&["ps", "-aq"]);
    assert_eq!(listed.trim(), "", "a half-made container is listed");
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(disk.root.to_str().unwrap()),
        "a mount is left under the root"
    );
    disk.assert_check_clean();

    disk.ok(&["run", "--rm", "busybox", "true"]);
    let id = disk.ok(&["run", "-d", "busybox", "sleep", "1000"]);
    disk.ok(&["rm", "-f", id.trim()]);
    disk.assert_check_clean();
    disk.finish();
}

#[test]
fn a_running_container_outlives_a_full_disk_and_logs_say_output_was_lost() {
    require_tool("busybox", "busybox-static");
    let disk = SmallDisk::new(32);
    disk.ok(&["image", "build", "busybox"]);
    let id = disk
        .ok(&[
            "run",
            "-d",
            "--name",
            "talker",
            "busybox",
            "sh",
            "-c",
            "i=0; while true; do i=$((i+1)); echo line$i; sleep 0.02; done",
        ])
        .trim()
        .to_string();
    let logs = |disk: &SmallDisk| disk.mc(&["logs", "talker"]);
    assert!(wait_for(20, || String::from_utf8_lossy(
        &logs(&disk).stdout
    )
    .contains("line3")));

    disk.fill();
    // The container goes on printing into a full disk: its log cannot keep up.
    let lost = wait_for(30, || {
        String::from_utf8_lossy(&logs(&disk).stderr).contains("output was lost")
    });
    let out = logs(&disk);
    assert!(lost, "logs do not say output was lost: {:?}", out);
    assert!(out.status.success());
    let inspected: serde_json::Value =
        serde_json::from_slice(&disk.mc(&["inspect", &id]).stdout).unwrap();
    assert_eq!(inspected[0]["State"]["Running"], true, "{inspected}");
    let before = String::from_utf8_lossy(&out.stdout).lines().count();

    // Room again: the log goes on.
    disk.unfill();
    assert!(wait_for(20, || {
        String::from_utf8_lossy(&logs(&disk).stdout).lines().count() > before + 3
    }));
    disk.ok(&["rm", "-f", "talker"]);
    disk.assert_check_clean();
    disk.finish();
}
