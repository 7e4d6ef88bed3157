//! `cp` (issue 18): files and tar streams between the host and running or stopped
//! containers, through the container's mounts, and never outside its root: every
//! escape test plants the hostile links from inside a real container and checks that a
//! host marker is neither read nor written.

mod common;

use std::fs;
use std::io::Read;
use std::os::unix::fs::{chown, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::{ok, stderr, wait_for, World};

const SECRET: &str = "HOST SECRET";

/// A host directory with one marker file, which no cp may read or change.
fn host_marker(w: &World) -> PathBuf {
    let dir = w.dir.path().join("host-secrets");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("marker"), format!("{SECRET}\n")).unwrap();
    dir
}

#[track_caller]
fn assert_marker_untouched(dir: &Path) {
    let names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        ["marker"],
        "cp wrote into the host directory {}",
        dir.display()
    );
    assert_eq!(
        fs::read_to_string(dir.join("marker")).unwrap(),
        format!("{SECRET}\n")
    );
}

/// No regular file under `dir` holds the host's secret.
#[track_caller]
fn assert_no_secret_under(dir: &Path) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let meta = fs::symlink_metadata(e.path()).unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() {
                let text = fs::read_to_string(e.path()).unwrap_or_default();
                assert!(
                    !text.contains(SECRET),
                    "{} holds the host's secret",
                    e.path().display()
                );
                assert!(
                    !text.contains("root:"),
                    "{} holds the host's shadow",
                    e.path().display()
                );
            }
        }
    }
}

fn cp(w: &World, args: &[&str]) -> std::process::Output {
    let mut all = vec!["cp"];
    all.extend_from_slice(args);
    w.mc(&all)
}

/// `cp` with `input` on stdin.
fn cp_stdin(w: &World, args: &[&str], input: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = w
        .cmd()
        .arg("cp")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(input);
    child.wait_with_output().unwrap()
}

fn exec(w: &World, id: &str, script: &str) -> String {
    ok(w.mc(&["exec", id, "sh", "-c", script]))
}

/// A tar with the given (path, content) files, built with the tar crate.
fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        // set_path refuses "..": written raw, as a hostile archive would be.
        let name = header.as_old_mut().name.as_mut();
        name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_cksum();
        builder.append(&header, content.as_bytes()).unwrap();
    }
    builder.into_inner().unwrap()
}

#[test]
fn cp_copies_files_and_directories_both_ways_with_a_running_container() {
    let w = World::new();
    let id = w.run_detached(&["--name", "cpr"], &["sleep", "1000"]);
    exec(
        &w,
        &id,
        "echo one > /f; mkdir -p /d/sub; echo two > /d/sub/g",
    );
    let out = w.dir.path().join("out");
    fs::create_dir(&out).unwrap();
    // A file to a new name, a directory into an existing directory, contents with /.
    ok(cp(&w, &["cpr:/f", out.join("f2").to_str().unwrap()]));
    assert_eq!(fs::read_to_string(out.join("f2")).unwrap(), "one\n");
    ok(cp(&w, &["cpr:/d", out.to_str().unwrap()]));
    assert_eq!(fs::read_to_string(out.join("d/sub/g")).unwrap(), "two\n");
    ok(cp(&w, &["cpr:/d/.", out.join("flat").to_str().unwrap()]));
    assert_eq!(fs::read_to_string(out.join("flat/sub/g")).unwrap(), "two\n");
    // Into the container: a file under a new name, a directory into /tmp, and an
    // existing file overwritten.
    let src = w.dir.path().join("src");
    fs::create_dir_all(src.join("inner")).unwrap();
    fs::write(src.join("inner/h"), "host\n").unwrap();
    ok(cp(
        &w,
        &[src.join("inner/h").to_str().unwrap(), "cpr:/h-new"],
    ));
    ok(cp(
        &w,
        &[src.to_str().unwrap(), &format!("{}:/tmp", &id[..12])],
    ));
    ok(cp(&w, &[src.join("inner/h").to_str().unwrap(), "cpr:/f"]));
    assert_eq!(
        exec(&w, &id, "cat /h-new /tmp/src/inner/h /f"),
        "host\nhost\nhost\n"
    );
    // Errors: no container side, a missing container, a missing path, a missing
    // destination directory.
    for (args, message) in [
        (vec!["/a", "/b"], "needs a container path"),
        (vec!["nosuch:/f", "/tmp/x"], "no such container"),
        (
            vec!["cpr:/nothing", out.to_str().unwrap()],
            "no such file or directory in the container: /nothing",
        ),
        (
            vec![src.to_str().unwrap(), "cpr:/no/such/dir/x"],
            "no such file or directory in the container",
        ),
    ] {
        let o = cp(&w, &args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(stderr(&o).contains(message), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn cp_works_on_a_stopped_container_through_its_volumes() {
    let w = World::new();
    let vol_src = w.dir.path().join("bound");
    fs::create_dir(&vol_src).unwrap();
    let bind = format!("{}:/bound:ro", vol_src.display());
    ok(w.run(
        &["--name", "stopped", "-v", "stash:/vol", "-v", &bind],
        &[
            "sh",
            "-c",
            "cat /in /vol/in 2>/dev/null || echo none; echo root > /r; echo vol > /vol/v",
        ],
    ));
    let out = w.dir.path().join("out");
    fs::create_dir(&out).unwrap();
    ok(cp(&w, &["stopped:/r", out.to_str().unwrap()]));
    ok(cp(&w, &["stopped:/vol/v", out.to_str().unwrap()]));
    assert_eq!(fs::read_to_string(out.join("r")).unwrap(), "root\n");
    assert_eq!(fs::read_to_string(out.join("v")).unwrap(), "vol\n");
    let file = w.dir.path().join("in");
    fs::write(&file, "copied in\n").unwrap();
    ok(cp(&w, &[file.to_str().unwrap(), "stopped:/in"]));
    ok(cp(&w, &[file.to_str().unwrap(), "stopped:/vol/in"]));
    // Into the volume (its directory on the host), and into the container's own root.
    assert_eq!(
        fs::read_to_string(w.root.join("volumes/stash/_data/in")).unwrap(),
        "copied in\n"
    );
    // A read-only mount stays read-only for cp too.
    let ro = cp(&w, &[file.to_str().unwrap(), "stopped:/bound/"]);
    assert_eq!(ro.status.code(), Some(1));
    assert!(stderr(&ro).contains("Read-only"), "{}", stderr(&ro));
    assert_eq!(fs::read_dir(&vol_src).unwrap().count(), 0);
    // Started again, the container finds both files.
    ok(w.mc(&["start", "stopped"]));
    assert!(wait_for(10, || {
        let state = w.mc(&["inspect", "stopped"]);
        String::from_utf8_lossy(&state.stdout).contains("\"exited\"")
    }));
    let logs = ok(w.mc(&["logs", "stopped"]));
    assert_eq!(logs, "none\ncopied in\ncopied in\n");
    // Nothing stays mounted on the host (the fixture checks too).
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(w.root.to_str().unwrap()));
}

#[test]
fn cp_streams_tar_on_stdin_and_stdout() {
    let w = World::new();
    let id = w.run_detached(&[], &["sleep", "1000"]);
    exec(&w, &id, "mkdir -p /d/e; echo x > /d/e/f; ln -s e/f /d/l");
    let out = ok_bytes(cp(&w, &[&format!("{id}:/d"), "-"]));
    let mut archive = tar::Archive::new(out.as_slice());
    let mut seen = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        let mut content = String::new();
        if entry.header().entry_type().is_symlink() {
            content = entry.link_name().unwrap().unwrap().display().to_string();
        } else {
            entry.read_to_string(&mut content).unwrap();
        }
        seen.push(format!("{path}={content}"));
    }
    seen.sort();
    // (The tar crate shows directory names without their trailing slash.)
    assert_eq!(seen, ["d/e/f=x\n", "d/e=", "d/l=e/f", "d="]);
    let input = tar_of(&[("t/a", "from tar\n"), ("b", "top\n")]);
    ok(cp_stdin(&w, &["-", &format!("{id}:/tmp")], &input));
    assert_eq!(exec(&w, &id, "cat /tmp/t/a /tmp/b"), "from tar\ntop\n");
    // A tar stream needs a directory to land in.
    let o = cp_stdin(&w, &["-", &format!("{id}:/nothing")], &input);
    assert_eq!(o.status.code(), Some(1));
}

fn ok_bytes(out: std::process::Output) -> Vec<u8> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn cp_a_keeps_owners_and_plain_cp_gives_them_to_the_destination() {
    let w = World::new();
    let id = w.run_detached(&["--name", "own"], &["sleep", "1000"]);
    exec(&w, &id, "echo o > /o; chown 1234:5678 /o");
    let out = w.dir.path().join("out");
    fs::create_dir(&out).unwrap();
    ok(cp(&w, &["own:/o", out.join("plain").to_str().unwrap()]));
    ok(cp(
        &w,
        &["-a", "own:/o", out.join("kept").to_str().unwrap()],
    ));
    let plain = fs::metadata(out.join("plain")).unwrap();
    let kept = fs::metadata(out.join("kept")).unwrap();
    assert_eq!((plain.uid(), plain.gid()), (0, 0));
    assert_eq!((kept.uid(), kept.gid()), (1234, 5678));
    let host = w.dir.path().join("hostfile");
    fs::write(&host, "h\n").unwrap();
    chown(&host, Some(4321), Some(8765)).unwrap();
    ok(cp(&w, &[host.to_str().unwrap(), "own:/plain"]));
    ok(cp(&w, &["-a", host.to_str().unwrap(), "own:/kept"]));
    assert_eq!(
        exec(&w, &id, "stat -c %u:%g /plain /kept"),
        "0:0\n4321:8765\n"
    );
}

/// Links planted by the container: to /etc/shadow, to the host directory (absolute), a
/// relative climb out, a magic link, and a directory holding a link to the marker.
fn plant_links(w: &World, id: &str, host: &Path) {
    let h = host.display();
    exec(
        w,
        id,
        &format!(
            "ln -s /etc/shadow /shadow; ln -s {h} /abs; ln -s ../../../../../../../..{h} /climb; \
             mkdir /d; ln -s {h}/marker /d/m; ln -s {h}/marker /linkfile; \
             ln -s /proc/self/root{h} /magic"
        ),
    );
}

#[test]
fn cp_out_never_reads_the_host_through_links_dotdot_or_magic_links() {
    let w = World::new();
    let host = host_marker(&w);
    let id = w.run_detached(&["--name", "hostile"], &["sleep", "1000"]);
    plant_links(&w, &id, &host);
    let out = w.dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let h = host.display().to_string();
    let o = |name: &str| out.join(name).to_str().unwrap().to_string();
    // A symlink is copied as a link, never followed.
    ok(cp(&w, &["hostile:/shadow", &o("shadow")]));
    assert!(fs::symlink_metadata(out.join("shadow"))
        .unwrap()
        .file_type()
        .is_symlink());
    ok(cp(&w, &["hostile:/d", &o("d")]));
    assert!(fs::symlink_metadata(out.join("d/m"))
        .unwrap()
        .file_type()
        .is_symlink());
    // Paths through the links resolve inside the container's root, where the host's
    // directory does not exist.
    for src in [
        "/abs/marker".to_string(),
        "/abs/".to_string(),
        "/climb/marker".to_string(),
        format!("/../../../../../..{h}/marker"),
        format!("/proc/self/root{h}/marker"),
        format!("/proc/1/root{h}/marker"),
        "/magic/marker".to_string(),
        "/linkfile/".to_string(),
    ] {
        let target = o("x");
        let result = cp(&w, &[&format!("hostile:{src}"), &target]);
        assert_ne!(result.status.code(), Some(0), "cp of {src} succeeded");
        let streamed = cp(&w, &[&format!("hostile:{src}"), "-"]);
        assert!(
            !String::from_utf8_lossy(&streamed.stdout).contains(SECRET),
            "{src}"
        );
    }
    assert_no_secret_under(&out);
    assert_marker_untouched(&host);
}

#[test]
fn cp_in_never_writes_the_host_through_links_dotdot_or_tar_names() {
    let w = World::new();
    let host = host_marker(&w);
    let id = w.run_detached(&["--name", "hostile"], &["sleep", "1000"]);
    plant_links(&w, &id, &host);
    let h = host.display().to_string();
    let file = w.dir.path().join("payload");
    fs::write(&file, "payload\n").unwrap();
    let payload = file.to_str().unwrap();
    for dest in [
        "/abs/".to_string(),
        "/abs/x".to_string(),
        "/climb/x".to_string(),
        format!("/../../../../..{h}/x"),
        format!("/../../../../..{h}/marker"),
        "/magic/x".to_string(),
        "/d/m".to_string(),
        "/linkfile".to_string(),
    ] {
        let _ = cp(&w, &[payload, &format!("hostile:{dest}")]);
        assert_marker_untouched(&host);
    }
    // A link in the container that is the destination is replaced, not followed.
    assert_eq!(
        exec(&w, &id, "cat /linkfile; test -L /linkfile || echo regular"),
        "payload\nregular\n"
    );
    // Hostile tar streams: `..`, names through the links, a link entry then a file
    // under it.
    for input in [
        tar_of(&[("../../../../../../x", "t")]),
        tar_of(&[("abs/x", "t")]),
        tar_of(&[("climb/x", "t")]),
        tar_of(&[(&format!("../../../../..{h}/x"), "t")]),
    ] {
        let _ = cp_stdin(&w, &["-", "hostile:/"], &input);
        assert_marker_untouched(&host);
    }
    let mut builder = tar::Builder::new(Vec::new());
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    builder.append_link(&mut link, "esc", &host).unwrap();
    let mut file_header = tar::Header::new_gnu();
    file_header.set_size(2);
    file_header.set_mode(0o644);
    builder
        .append_data(&mut file_header, "esc/x", "t\n".as_bytes())
        .unwrap();
    let o = cp_stdin(&w, &["-", "hostile:/tmp"], &builder.into_inner().unwrap());
    assert_eq!(
        o.status.code(),
        Some(1),
        "a file under a link entry was written"
    );
    assert_marker_untouched(&host);
}

#[test]
fn cp_racing_a_directory_swapped_for_a_symlink_stays_inside() {
    let w = World::new();
    let host = host_marker(&w);
    let h = host.display().to_string();
    // The container swaps /race/d between a directory and a link to the host's
    // directory as fast as it can, while the host copies into and out of it.
    let id = w.run_detached(
        &["--name", "racer"],
        &[
            "sh",
            "-c",
            &format!(
                "mkdir /race; while :; do mkdir /race/d 2>/dev/null; echo in > /race/d/marker; \
                 rm -rf /race/d; ln -s {h} /race/d; rm -f /race/d; done"
            ),
        ],
    );
    let src = w.dir.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("sub/f"), "payload\n").unwrap();
    fs::write(src.join("marker"), "overwrite\n").unwrap();
    let out = w.dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let input = tar_of(&[("d/marker", "overwrite\n"), ("d/sub/f", "payload\n")]);
    let mut copied_in = 0;
    for round in 0..40 {
        if ok_status(cp(
            &w,
            &[src.join("marker").to_str().unwrap(), "racer:/race/d/marker"],
        )) {
            copied_in += 1;
        }
        let _ = cp(&w, &[&format!("{}/.", src.display()), "racer:/race/d"]);
        let _ = cp_stdin(&w, &["-", "racer:/race"], &input);
        let _ = cp(
            &w,
            &[
                "racer:/race/d/marker",
                out.join(format!("m{round}")).to_str().unwrap(),
            ],
        );
        let _ = cp(
            &w,
            &[
                "racer:/race/d",
                out.join(format!("d{round}")).to_str().unwrap(),
            ],
        );
        assert_marker_untouched(&host);
    }
    assert_no_secret_under(&out);
    eprintln!("{copied_in} of 40 copies into the racing directory succeeded");
    ok(w.mc(&["rm", "-f", &id]));
}

fn ok_status(out: std::process::Output) -> bool {
    out.status.success()
}

/// Whether some thread of `pid` has `needle` in its mount table.
fn thread_mounts_contain(pid: u32, needle: &str) -> bool {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks
        .flatten()
        .any(|t| fs::read_to_string(t.path().join("mountinfo")).is_ok_and(|m| m.contains(needle)))
}

#[test]
fn a_cp_killed_while_it_holds_a_stopped_containers_mounts_leaves_nothing() {
    use std::io::Write;
    let w = World::new();
    ok(w.run(
        &["--name", "victim", "-v", "kv:/vol"],
        &["sh", "-c", "cat /vol/x 2>/dev/null; echo ran"],
    ));
    let id = w.container_ids().pop().unwrap();
    let merged = w.root.join("containers").join(&id).join("merged");
    let mut child = w
        .cmd()
        .args(["cp", "-", "victim:/vol"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Half a tar: cp mounts the container privately and waits for the rest.
    let whole = tar_of(&[("x", "partial\n")]);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&whole[..512]).unwrap();
    let needle = merged.to_str().unwrap().to_string();
    assert!(
        wait_for(10, || thread_mounts_contain(child.id(), &needle)),
        "cp never mounted the container"
    );
    // The host's mount table never shows it.
    assert!(!fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(&needle));
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);
    // Nothing is mounted anywhere, the record is free: it starts and is removed.
    assert!(!fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(&needle));
    ok(w.mc(&["start", "victim"]));
    assert!(wait_for(10, || ok(w.mc(&["logs", "victim"])) == "ran\nran\n"));
    ok(w.mc(&["rm", "-f", "victim"]));
}
