//! Issue 11: the state root is closed to other host users. What is in it would make any
//! of them root: setuid binaries planted by container root in upper dirs, secrets in
//! config.json and logs, lock files to hold. Each attack is made as `nobody` on the
//! host, against a root where images were imported and containers run.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::{assert_denied, ok, stderr, wait_for, Fixture, World};

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn other_users_cannot_reach_layers_upper_dirs_secrets_or_locks() {
    let w = World::new();
    let fx: &Fixture = &w;
    // The test's own directory is opened to everyone, so that <root> is the only
    // barrier, as /var/lib is for /var/lib/mycontainer.
    chmod(fx.dir.path(), 0o755);
    // An image (the busybox build imports its layer), a run and a detached run whose
    // root plants a setuid-root copy of busybox in its upper dir and logs a secret.
    ok(fx.mc(&["run", "--rm", "busybox", "true"]));
    ok(fx.mc(&["run", "--name", "named", "busybox", "true"]));
    ok(fx.mc(&["rm", "named"]));
    let id = ok(fx.mc(&[
        "run",
        "-d",
        "-e",
        "API_TOKEN=hunter2",
        "busybox",
        "sh",
        "-c",
        "cp /bin/busybox /suid && chmod 4755 /suid && echo token=$API_TOKEN && sleep 1000",
    ]))
    .trim()
    .to_string();
    let record = fx.root.join("containers").join(&id);
    let planted = record.join("upper/suid");
    let log = record.join("container.log");
    assert!(
        wait_for(10, || fs::read_to_string(&log)
            .is_ok_and(|l| l.contains("token=hunter2"))),
        "the container did not start"
    );
    assert_eq!(mode(&planted), 0o4755, "container root made a setuid file");
    let root = fx.root.to_str().unwrap();
    let planted = planted.to_str().unwrap();

    // <root> is private: nobody can list it, reach the planted binary, or the secrets.
    assert_denied(&["ls", root]);
    assert_denied(&[planted, "id", "-u"]);
    assert_eq!(mode(&fx.root), 0o700);
    for secret in ["config.json", "state.json", "container.log"] {
        let path = record.join(secret);
        assert!(
            fs::read_to_string(&path).unwrap().contains("hunter2") || secret == "state.json",
            "{secret} holds the secret"
        );
        assert_denied(&["cat", path.to_str().unwrap()]);
        assert_eq!(mode(&path), 0o600, "{secret}");
    }
    let layer = fs::read_dir(fx.root.join("layers"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_denied(&["ls", layer.to_str().unwrap()]);

    // Were <root> opened up again (an admin's chmod), the directories below it that
    // hold layers, upper dirs and temp entries stay closed, and the lock files cannot
    // be opened (a read-only open is enough to flock them and stall imports and gc).
    chmod(&fx.root, 0o755);
    assert_denied(&[planted, "id", "-u"]);
    assert_denied(&["ls", fx.root.join("layers").to_str().unwrap()]);
    assert_denied(&["ls", fx.root.join("tmp").to_str().unwrap()]);
    let locks = [
        fx.root.join("index.lock"),
        fx.root.join("gc.lock"),
        fx.root.join("names/.lock"),
    ];
    for lock in &locks {
        assert_denied(&["cat", lock.to_str().unwrap()]);
        assert_eq!(mode(lock), 0o600, "{}", lock.display());
    }

    // The next command closes a root that was opened up, and lock files of an older
    // version (0644) are made 0600 when next taken.
    for lock in &locks {
        chmod(lock, 0o644);
    }
    chmod(&fx.root.join("layers"), 0o755);
    ok(fx.mc(&["ps", "-q"]));
    assert_eq!(mode(&fx.root), 0o700);
    assert_eq!(mode(&fx.root.join("layers")), 0o700);
    ok(fx.mc(&["image", "tag", "busybox", "again:1"]));
    ok(fx.mc(&["gc"]));
    ok(fx.mc(&["run", "--name", "named", "busybox", "true"]));
    ok(fx.mc(&["rm", "named"]));
    for lock in &locks {
        assert_eq!(mode(lock), 0o600, "{}", lock.display());
    }
    ok(fx.mc(&["rm", "-f", &id]));
}

#[test]
fn a_sticky_directory_as_root_is_refused_and_left_alone() {
    // Others can plant entries in it (see tests/host_files_security.rs for the attack).
    let fx = Fixture::new();
    let shared = fx.dir.path().join("shared");
    fs::create_dir(&shared).unwrap();
    fs::write(shared.join("somebody-elses-file"), "x").unwrap();
    chmod(&shared, 0o1777);
    let out = Command::new(common::BIN)
        .env_remove("MYCONTAINER_ROOT")
        .arg("--root")
        .arg(&shared)
        .args(["ps", "-a"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the state root") && stderr(&out).contains("sticky"),
        "{}",
        stderr(&out)
    );
    assert_eq!(mode(&shared), 0o1777);
    assert_eq!(
        fs::read_dir(&shared).unwrap().count(),
        1,
        "nothing made in it"
    );
}

#[test]
fn a_relative_root_works_for_run_and_detached_containers() {
    // `--root rel` (or MYCONTAINER_ROOT=rel) is taken from the current directory once
    // at start-up: bind sources must be absolute, and a detached supervisor must find
    // the same root.
    let f = Fixture::new();
    let rootfs = f.rootfs.to_str().unwrap();
    let relative = |env: bool| {
        let mut cmd = Command::new(common::BIN);
        cmd.current_dir(f.dir.path()).env_remove("MYCONTAINER_ROOT");
        if env {
            cmd.env("MYCONTAINER_ROOT", "root");
        } else {
            cmd.args(["--root", "root"]);
        }
        cmd.stdin(std::process::Stdio::null());
        cmd
    };
    for env in [false, true] {
        let out = relative(env)
            .args(["run", "--rm", "--rootfs", rootfs, "/bin/true"])
            .output()
            .unwrap();
        ok(out);
        let id = ok(relative(env)
            .args(["run", "-d", "--rootfs", rootfs, "/bin/sleep", "1000"])
            .output()
            .unwrap());
        let id = id.trim();
        assert_eq!(id.len(), 64, "run -d printed {id:?}");
        ok(relative(env).args(["rm", "-f", id]).output().unwrap());
        f.assert_no_containers();
    }
}
