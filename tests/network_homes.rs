//! The default network's shared homes (`<run base>/net/<key>/`, src/container/network/
//! shared.rs and stale.rs) of network namespaces that died without a `gc` inside them:
//! `gc` from another namespace removes them, and keeps those whose namespace lives.
//! Every test runs in a network namespace of its own (tests/common: `private_network`)
//! with a run base of its own (`MYCONTAINER_RUNROOT`), so it sees only its own homes.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

/// A run base of the test's own (0700, as `tempdir` makes it).
fn run_base() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("mycontainer-test-run-")
        .tempdir()
        .unwrap()
}

/// The homes under `base`, sorted.
fn homes(base: &Path) -> Vec<PathBuf> {
    let mut homes: Vec<PathBuf> = fs::read_dir(base.join("net"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    homes.sort();
    homes
}

/// `sh -c SCRIPT` in a network namespace of its own, with `$MC` the CLI on the test's
/// state root and `base` as its run base.
fn in_new_netns(w: &World, base: &Path, script: &str) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "sh", "-c", script])
        .env_remove("MYCONTAINER_ROOT")
        .env("MYCONTAINER_RUNROOT", base)
        .env(
            "MC",
            format!(
                "{BIN} --root {} run --rm --rootfs {}",
                w.root.display(),
                w.rootfs.display()
            ),
        )
        .stdin(Stdio::null());
    cmd
}

/// `mycontainer gc` from the test's namespace, on the run base `base`.
fn gc(w: &World, base: &Path) {
    ok(w.cmd()
        .arg("gc")
        .env("MYCONTAINER_RUNROOT", base)
        .stdin(Stdio::null())
        .output()
        .unwrap());
}

/// A child killed and reaped when dropped (also by a failed assertion).
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn gc_removes_the_homes_of_dead_network_namespaces_and_keeps_live_ones() {
    let w = World::new();
    let base = run_base();
    // A namespace that ran a container on the default network, then died.
    ok(in_new_netns(&w, base.path(), "$MC true").output().unwrap());
    let dead = homes(base.path());
    assert_eq!(dead.len(), 1, "{dead:?}");
    let dead = dead[0].clone();
    assert!(dead.join("bridge.json").is_file());
    let identity = fs::read_to_string(dead.join("netns")).unwrap();
    assert_eq!(identity.split_whitespace().count(), 2, "{identity:?}");

    // One that did the same and lives on, held by a `sleep`.
    let ready = base.path().join("ready");
    let script = format!("$MC true && touch {} && exec sleep 1000", ready.display());
    let mut live = Reaped(in_new_netns(&w, base.path(), &script).spawn().unwrap());
    let live = &mut live.0;
    assert!(wait_for(60, || ready.exists() || !alive(live.id() as i32)));
    assert!(ready.exists(), "the live namespace's container failed");
    let live_home = homes(base.path())
        .into_iter()
        .find(|h| *h != dead)
        .expect("the live namespace made no home");

    // A home of an older build: no identity, so nothing tells whether it lives.
    let old = base.path().join("net").join("18446744073709551615");
    fs::create_dir(&old).unwrap();
    fs::write(old.join("bridge.json"), "{}").unwrap();

    gc(&w, base.path());
    assert!(!dead.exists(), "gc kept the home of a dead namespace");
    assert!(
        live_home.join("bridge.json").is_file() && live_home.join("netns").is_file(),
        "gc removed the home of a live namespace"
    );
    assert!(
        old.join("bridge.json").is_file(),
        "gc removed a home of unknown liveness"
    );

    // Its namespace dies: the next gc removes it too.
    live.kill().unwrap();
    live.wait().unwrap();
    gc(&w, base.path());
    assert!(
        !live_home.exists(),
        "gc kept the home once its namespace died"
    );
    assert!(old.exists());
    fs::remove_dir_all(&old).unwrap();
    // gc's own namespace made a home for its run (a bridge of its own) and removed it.
    assert_eq!(homes(base.path()), Vec::<PathBuf>::new());
}

/// A namespace held only by a bind mount (as `ip netns add` holds one) lives: its home
/// is kept until the mount goes.
#[test]
fn gc_keeps_the_home_of_a_namespace_held_only_by_a_mount() {
    let w = World::new();
    let base = run_base();
    let pin = base.path().join("pin");
    fs::write(&pin, "").unwrap();
    let script = format!(
        "$MC true && mount --bind /proc/self/ns/net {}",
        pin.display()
    );
    ok(in_new_netns(&w, base.path(), &script).output().unwrap());
    let held = homes(base.path());
    assert_eq!(held.len(), 1, "{held:?}");
    gc(&w, base.path());
    let kept = held[0].join("bridge.json").is_file();
    let unmounted = Command::new("umount").arg(&pin).status().unwrap();
    assert!(unmounted.success());
    assert!(kept, "gc removed the home of a namespace held by a mount");
    gc(&w, base.path());
    assert!(!held[0].exists(), "gc kept the home once the mount went");
}
