//! Mount targets are the image's paths (issue 11, the class of runc CVE-2021-30465): an
//! image or a container's own earlier run decides what `/etc`, a volume target or its
//! parents are, symlinks included. Each test plants such a path in a real image and
//! checks that nothing is created on the host, while symlinks that stay inside the
//! container keep working.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use common::{ok, stderr, stdout, Fixture};

/// The directory where pivot_root used to keep the host's root inside the container.
const OLD_ROOT: &str = "/.mycontainer-oldroot";

/// A fresh, empty host directory under the fixture, and the path an image symlink uses
/// to reach it through the old root.
fn host_dir(fx: &Fixture, name: &str) -> (std::path::PathBuf, String) {
    let dir = fx.dir.path().join(name);
    fs::create_dir(&dir).unwrap();
    let through_old_root = format!("{OLD_ROOT}{}", dir.display());
    (dir, through_old_root)
}

#[track_caller]
fn assert_empty(dir: &Path) {
    let entries: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        entries.is_empty(),
        "the container created {entries:?} in host directory {}",
        dir.display()
    );
}

/// A run that was refused must fail as mycontainer's own error (125, one line naming
/// the path), not as a crash.
#[track_caller]
fn assert_clean_failure(out: &std::process::Output, path: &str) {
    assert_eq!(out.status.code(), Some(125), "{}", stderr(out));
    let err = stderr(out);
    assert!(err.contains(path), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

fn volume(source: &Path, target: &str) -> String {
    format!("{}:{target}", source.display())
}

#[test]
fn a_volume_under_an_image_symlink_into_the_old_root_creates_nothing_on_the_host() {
    let fx = Fixture::new();
    let (host, link) = host_dir(&fx, "host-a");
    symlink(&link, fx.rootfs.join("evil")).unwrap();
    let src = fx.dir.path().join("src-a");
    fs::create_dir(&src).unwrap();
    let out = fx.run(&["--rm", "-v", &volume(&src, "/evil/x")], &["true"]);
    assert_empty(&host);
    assert_clean_failure(&out, "/evil/x");
    fx.assert_no_containers();
}

#[test]
fn symlinks_that_stay_inside_the_container_still_lead_to_volume_targets() {
    let fx = Fixture::new();
    fs::create_dir(fx.rootfs.join("real")).unwrap();
    // Absolute, and relative with more `..` than there are levels: both end in /real.
    symlink("/real", fx.rootfs.join("abs")).unwrap();
    symlink("../../../../real", fx.rootfs.join("rel")).unwrap();
    let src = fx.dir.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("file"), "host data\n").unwrap();
    let out = ok(fx.run(
        &[
            "--rm",
            "-v",
            &volume(&src, "/abs/one"),
            "-v",
            &volume(&src, "/rel/two"),
        ],
        &["cat", "/real/one/file", "/real/two/file"],
    ));
    assert_eq!(out, "host data\nhost data\n");
    fx.assert_no_containers();
}

#[test]
fn an_image_etc_symlinked_into_the_old_root_gets_no_files_on_the_host() {
    let fx = Fixture::new();
    let (host, link) = host_dir(&fx, "host-etc");
    fs::remove_dir_all(fx.rootfs.join("etc")).unwrap();
    symlink(&link, fx.rootfs.join("etc")).unwrap();
    let out = fx.run(&["--rm"], &["true"]);
    assert_empty(&host);
    assert_clean_failure(&out, "/etc/");
    fx.assert_no_containers();
}

#[test]
fn a_container_swapping_its_volume_target_for_a_symlink_cannot_reach_the_host_on_start() {
    let fx = Fixture::new();
    let name = format!("swap-{}", std::process::id());
    let (host, link) = host_dir(&fx, "host-swap");
    let src = fx.dir.path().join("src-swap");
    fs::create_dir(&src).unwrap();
    // The first run is honest; its root then turns /data into a symlink to the host.
    let script = format!("mv /data /data.old && ln -s {link} /data && ls -l /data");
    let first = fx.run(
        &["--name", &name, "-v", &volume(&src, "/data/vol")],
        &["sh", "-c", &script],
    );
    assert!(stdout(&first).contains(&link), "{}", stderr(&first));
    let again = fx.mc(&["start", "-a", &name]);
    assert_empty(&host);
    assert_ne!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(stderr(&again).contains("/data/vol"), "{}", stderr(&again));
    ok(fx.mc(&["rm", "-f", &name]));
    fx.assert_no_containers();
}

#[test]
fn volume_targets_through_proc_magic_links_do_not_escape() {
    let fx = Fixture::new();
    let (host, link) = host_dir(&fx, "host-proc");
    // /proc is mounted before the volumes: its magic links lead to a root or to an
    // open descriptor of the process setting the container up.
    symlink(format!("/proc/1/root{link}"), fx.rootfs.join("viaroot")).unwrap();
    let src = fx.dir.path().join("src-proc");
    fs::create_dir(&src).unwrap();
    let out = fx.run(&["--rm", "-v", &volume(&src, "/viaroot/x")], &["true"]);
    assert_empty(&host);
    assert_clean_failure(&out, "/viaroot/x");

    // A descriptor of the setup (a volume's source held open, say) would be the host
    // directory itself: whichever number it has, a target through it is refused.
    for n in 3..=24 {
        let name = format!("fd{n}");
        symlink(format!("/proc/self/fd/{n}"), fx.rootfs.join(&name)).unwrap();
        let out = fx.run(
            &[
                "--rm",
                "-v",
                &volume(&src, "/first"),
                "-v",
                &volume(&src, &format!("/{name}/x")),
            ],
            &["true"],
        );
        assert_empty(&src);
        assert_empty(&host);
        assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    fx.assert_no_containers();
}
