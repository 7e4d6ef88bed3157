//! `mycontainer run IMAGE`: images from the store (built from recipes), their config
//! applied as Docker does, copy-on-write over shared layers, and the Debian image.

mod common;

use std::fs;
use std::process::Command;

use common::*;

fn cmd(root: &std::path::Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("MYCONTAINER_ROOT").arg("--root").arg(root);
    cmd
}

#[test]
fn run_busybox_builds_the_image_on_first_use_and_runs_it() {
    let fx = Fixture::new();
    let out = ok(cmd(&fx.root)
        .args([
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "echo $PATH; ls /bin/busybox",
        ])
        .output()
        .unwrap());
    assert_eq!(
        out,
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n/bin/busybox\n"
    );
    // The image's Cmd (sh) runs when no command is given; stdin is empty so it exits 0.
    ok(cmd(&fx.root)
        .args(["run", "--rm", "busybox"])
        .output()
        .unwrap());
    fx.assert_no_containers();
}

#[test]
fn the_image_config_applies_and_flags_override_it() {
    let fx = Fixture::new();
    let recipe = fx.dir.path().join("cfgtest.toml");
    fs::write(
        &recipe,
        r#"name = "cfgtest"
tags = ["latest"]
builder = "busybox"
created = "2024-01-01T00:00:00Z"

[busybox]
host_paths = ["/bin/busybox"]

[config]
entrypoint = ["/bin/sh", "-c"]
cmd = ["echo default:$GREETING:$(pwd):$(id -u):$(id -g)"]
env = ["PATH=/bin", "GREETING=from-image"]
working_dir = "/srv/app"
user = "65534:65534"
"#,
    )
    .unwrap();
    ok(cmd(&fx.root)
        .args(["image", "build"])
        .arg(&recipe)
        .output()
        .unwrap());
    let run = |args: &[&str]| {
        ok(cmd(&fx.root)
            .args(["run", "--rm"])
            .args(args)
            .output()
            .unwrap())
    };
    assert_eq!(
        run(&["cfgtest"]),
        "default:from-image:/srv/app:65534:65534\n"
    );
    // A command replaces Cmd but keeps the Entrypoint; flags override Env, WorkingDir, User.
    assert_eq!(
        run(&[
            "-e",
            "GREETING=from-flag",
            "-w",
            "/tmp",
            "-u",
            "0:0",
            "cfgtest",
            "echo $GREETING $(pwd) $(id -u)"
        ]),
        "from-flag /tmp 0\n"
    );
    // --entrypoint replaces the Entrypoint and drops the image's Cmd.
    assert_eq!(
        run(&["--entrypoint", "echo", "cfgtest", "hello"]),
        "hello\n"
    );
    fx.assert_no_containers();
}

#[test]
fn containers_of_one_image_do_not_see_each_others_writes() {
    let fx = Fixture::new();
    ok(cmd(&fx.root)
        .args([
            "run",
            "--name",
            "writer",
            "busybox",
            "sh",
            "-c",
            "echo mine > /etc/written && rm /bin/ls",
        ])
        .output()
        .unwrap());
    let out = ok(cmd(&fx.root)
        .args([
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "ls /etc/written 2>&1; test -e /bin/ls && echo ls-present",
        ])
        .output()
        .unwrap());
    assert!(out.contains("No such file"), "{out}");
    assert!(out.contains("ls-present"), "{out}");
    // The shared layer is untouched.
    for layer in fs::read_dir(fx.root.join("layers")).unwrap().flatten() {
        assert!(!layer.path().join("etc/written").exists());
        assert!(layer.path().join("bin/ls").symlink_metadata().is_ok());
    }
    ok(cmd(&fx.root).args(["rm", "writer"]).output().unwrap());
    fx.assert_no_containers();
}

#[test]
fn the_debian_image_runs_apt_get() {
    let fx = Fixture::new();
    // debootstrap fetches from the host's Debian mirror: the build runs in the host's
    // network namespace (the test process's main thread's: only this test's thread
    // moved), not the test's private one; the container after it stays in the test's.
    let build = Command::new("nsenter")
        .arg(format!("--net=/proc/{}/ns/net", std::process::id()))
        .arg("--")
        .arg(common::BIN)
        .arg("--root")
        .arg(&fx.root)
        .args(["image", "build", "-q", "debian"])
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "debian build failed: {}",
        stderr(&build)
    );
    let out = ok(cmd(&fx.root)
        .args(["run", "--rm", "debian", "apt-get", "--version"])
        .output()
        .unwrap());
    assert!(out.starts_with("apt "), "{out}");
    fx.assert_no_containers();
}
