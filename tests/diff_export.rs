//! `diff`, `export` and `rename` (issue 18), on running and stopped containers.

mod common;

use std::fs;
use std::io::Read;

use common::{ok, stderr, wait_for, World};

/// The (path, content) of every entry of a tar (content empty for non-files).
fn entries(tar_bytes: &[u8]) -> Vec<(String, String)> {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut found = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        let mut content = Vec::new();
        if entry.header().entry_type().is_file() {
            entry.read_to_end(&mut content).unwrap();
        }
        found.push((path, String::from_utf8_lossy(&content).into_owned()));
    }
    found
}

#[test]
fn diff_lists_added_changed_and_deleted_paths_running_or_stopped() {
    let w = World::new();
    let script = "echo x > /new; rm /image-marker; echo more >> /etc/passwd; mkdir -p /a/b";
    ok(w.run(&["--name", "changed"], &["sh", "-c", script]));
    let expected = "A /a\nA /a/b\nC /etc\nC /etc/passwd\nD /image-marker\nA /new\n";
    assert_eq!(ok(w.mc(&["diff", "changed"])), expected);
    let id = w.run_detached(
        &[],
        &["sh", "-c", &format!("{script}; touch /ready; sleep 1000")],
    );
    assert!(wait_for(10, || w
        .root
        .join("containers")
        .join(&id)
        .join("upper/ready")
        .exists()));
    assert_eq!(
        ok(w.mc(&["diff", &id])),
        "A /a\nA /a/b\nC /etc\nC /etc/passwd\nD /image-marker\nA /new\nA /ready\n"
    );
    // A container that changed nothing has no diff (the runtime's mount stubs are not
    // changes), and an unknown container is an error.
    ok(w.run(&["--name", "quiet"], &["true"]));
    assert_eq!(ok(w.mc(&["diff", "quiet"])), "");
    assert_eq!(w.mc(&["diff", "nosuch"]).status.code(), Some(1));
}

#[test]
fn export_writes_the_merged_filesystem_without_volumes_running_or_stopped() {
    let w = World::new();
    let id = w.run_detached(
        &["-v", "exported:/vol"],
        &["sh", "-c", "echo new > /new; echo secret > /vol/in-volume; rm /image-marker; touch /ready; sleep 1000"],
    );
    assert!(wait_for(10, || w
        .root
        .join("containers")
        .join(&id)
        .join("upper/ready")
        .exists()));
    let check = |tar_bytes: &[u8]| {
        let found = entries(tar_bytes);
        let has = |p: &str| found.iter().any(|(path, _)| path == p);
        assert!(
            found.contains(&("new".to_string(), "new\n".to_string())),
            "{found:?}"
        );
        assert!(
            has("bin/busybox") && has("etc/passwd") && has("vol"),
            "{found:?}"
        );
        assert!(!has("image-marker"), "a deleted file was exported");
        assert!(
            !found.iter().any(|(p, _)| p.starts_with("vol/")),
            "volume content was exported"
        );
        assert!(
            !found.iter().any(|(p, _)| p.starts_with("proc/")),
            "/proc was exported"
        );
    };
    let running = w.mc(&["export", &id]);
    assert!(running.status.success(), "{}", stderr(&running));
    check(&running.stdout);
    ok(w.mc(&["stop", "-t", "1", &id]));
    let file = w.dir.path().join("out.tar");
    ok(w.mc(&["export", "-o", file.to_str().unwrap(), &id]));
    check(&fs::read(&file).unwrap());
    // The stopped container starts again (its work dir is usable).
    ok(w.mc(&["start", &id]));
    ok(w.mc(&["rm", "-f", &id]));
}

#[test]
fn rename_changes_the_name_of_running_and_stopped_containers() {
    let w = World::new();
    let id = w.run_detached(&["--name", "first", "--rm"], &["sleep", "1000"]);
    ok(w.mc(&["rename", "first", "second"]));
    let ps = ok(w.mc(&["ps"]));
    assert!(ps.contains("second") && !ps.contains("first"), "{ps}");
    assert_eq!(w.mc(&["inspect", "first"]).status.code(), Some(1));
    ok(w.run(&["--name", "first"], &["true"]));
    // Taken names and bad names are refused.
    let taken = w.mc(&["rename", "second", "first"]);
    assert_eq!(taken.status.code(), Some(1));
    assert!(
        stderr(&taken).contains("already in use"),
        "{}",
        stderr(&taken)
    );
    assert_eq!(w.mc(&["rename", "second", "a/b"]).status.code(), Some(1));
    // A stopped container too.
    ok(w.mc(&["rename", "first", "third"]));
    let inspect = ok(w.mc(&["inspect", "third"]));
    assert!(
        inspect.contains("\"/third\"") || inspect.contains("third"),
        "{inspect}"
    );
    // The renamed --rm container removes itself under its new name: both names free.
    ok(w.mc(&["stop", "-t", "1", "second"]));
    assert!(wait_for(10, || !w
        .root
        .join("containers")
        .join(&id)
        .exists()));
    let names: Vec<_> = fs::read_dir(w.root.join("names"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(names, ["third"]);
}
