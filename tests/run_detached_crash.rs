//! `run -d` returns as soon as the container runs, and what it returned must survive a
//! crash from that moment on: the record's files are written unsynced and synced while
//! the supervisor starts the container. The state root lives on a journaled ext4 loop
//! device, which the test shuts down the moment `run -d` returns, as a power cut would
//! (ext4's GOINGDOWN ioctl without flushing the journal: only what was synced is on
//! disk), then mounts again.

mod common;

use std::fs;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;

use common::*;

/// EXT4_IOC_SHUTDOWN (`_IOR('X', 125, __u32)`) and EXT4_GOING_FLAGS_NOLOGFLUSH.
const EXT4_IOC_SHUTDOWN: libc::c_ulong = 0x8004_587d;
const GOING_NOLOGFLUSH: u32 = 2;

#[track_caller]
fn sh(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status().unwrap();
    assert!(status.success(), "{program} {args:?} failed");
}

fn mount(image: &Path, at: &Path) {
    sh(
        "mount",
        &["-o", "loop", image.to_str().unwrap(), at.to_str().unwrap()],
    );
}

/// Detaches the loop mount if the test fails half-way (dropped before the fixture,
/// whose leak check would otherwise name it).
struct Mounted<'a>(&'a Path);

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .args(["-l"])
            .arg(self.0)
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Unmounts `at` once nothing uses it any more (the killed supervisor's files).
fn unmount(at: &Path) {
    let done = wait_for(30, || {
        Command::new("umount")
            .arg(at)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success()
    });
    assert!(done, "cannot unmount {}", at.display());
}

#[test]
fn a_detached_containers_record_survives_a_crash_right_after_run_returns() {
    let mut fx = Fixture::new();
    let image = fx.dir.path().join("disk.img");
    let disk = fx.dir.path().join("disk");
    fs::create_dir(&disk).unwrap();
    fs::File::create(&image)
        .unwrap()
        .set_len(256 << 20)
        .unwrap();
    sh(
        "mkfs.ext4",
        &["-q", "-F", "-O", "has_journal", image.to_str().unwrap()],
    );
    mount(&image, &disk);
    let disk_path = disk.clone();
    let _mounted = Mounted(&disk_path);
    fx.root = disk.join("root");
    // The state root's own files, synced: the crash loses only what run -d wrote.
    ok(fx.run(&["--rm", "--network", "none"], &["true"]));
    sh("sync", &["-f", disk.to_str().unwrap()]);

    let id = fx.run_detached(&["--network", "none"], &["sleep", "1000"]);
    let init = fx.state(&id)["pid"].as_i64().unwrap() as i32;
    let supervisor = parent_pid(init);
    let mountpoint = fs::File::open(&disk).unwrap();
    let flags = GOING_NOLOGFLUSH;
    // SAFETY: ioctl on a descriptor we own, with a pointer to a u32 that outlives it.
    let shut = unsafe { libc::ioctl(mountpoint.as_raw_fd(), EXT4_IOC_SHUTDOWN, &flags) };
    assert_eq!(shut, 0, "{}", std::io::Error::last_os_error());
    drop(mountpoint);
    // The machine "restarts": the supervisor dies, its container with it.
    // SAFETY: kill(2) on the supervisor's pid.
    unsafe { libc::kill(supervisor, libc::SIGKILL) };
    assert!(wait_for(30, || !alive(supervisor) && !alive(init)));
    unmount(&disk);
    mount(&image, &disk);

    let dir = fx.root.join("containers").join(&id);
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("config.json")).unwrap())
            .expect("config.json survived whole");
    assert_eq!(
        config["process"]["args"],
        serde_json::json!(["sleep", "1000"])
    );
    let state = fx.state(&id);
    assert_eq!(state["id"], id.as_str());
    // Listed, and marked as killed with its supervisor (the reclaim every command runs).
    let listed = ok(fx.mc(&["ps", "-a", "--no-trunc"]));
    assert!(
        listed
            .lines()
            .any(|line| line.starts_with(&id) && line.contains("Exited (137)")),
        "{listed}"
    );
    // And it can run again from what survived.
    ok(fx.mc(&["start", &id]));
    assert_eq!(fx.state(&id)["status"], "running");
    ok(fx.mc(&["rm", "-f", &id]));
    fx.assert_no_containers();
    unmount(&disk);
}
