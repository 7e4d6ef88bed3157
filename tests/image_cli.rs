//! `mycontainer image ...` driven as a user would: import (files, stdin, every
//! compression), bad input, crashes mid-import, concurrent writers, recipes (host binary
//! and download), interop with skopeo and umoci, tag, rm, gc.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

#[path = "common/wait.rs"]
mod wait;

const BIN: &str = env!("CARGO_BIN_EXE_mycontainer");

/// A private state root, removed at the end of the test.
struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn new() -> Root {
        Root {
            dir: tempfile::Builder::new()
                .prefix("mycontainer-test-")
                .tempdir()
                .unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command.arg("--root").arg(self.path()).args(args);
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs and insists on success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs and insists on failure with exactly one line on stderr; returns it.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        // Docker's code for a failed verb other than `run`.
        assert_eq!(out.status.code(), Some(1), "{args:?} should fail");
        let err = String::from_utf8(out.stderr).unwrap();
        let errors: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with("mycontainer:"))
            .collect();
        assert_eq!(errors.len(), 1, "one error line please: {err}");
        assert_eq!(
            err.lines().last(),
            Some(errors[0]),
            "the error comes last: {err}"
        );
        errors[0].to_string()
    }

    fn count(&self, dir: &str) -> usize {
        self.entries(dir).len()
    }

    fn entries(&self, dir: &str) -> Vec<String> {
        std::fs::read_dir(self.path().join(dir))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

/// Compresses with an external tool (`gzip`, `zstd`), as a user's tarball would be.
fn compress(tool: &str, bytes: &[u8]) -> Vec<u8> {
    let mut child = Command::new(tool)
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// A small rootfs tarball made by GNU tar from a directory tree.
fn rootfs_tar(compress: Option<&str>) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    std::fs::create_dir_all(dir.path().join("bin")).unwrap();
    std::fs::write(dir.path().join("etc/os-release"), "NAME=test\n").unwrap();
    std::fs::write(dir.path().join("bin/data"), vec![7u8; 300_000]).unwrap();
    std::os::unix::fs::symlink("data", dir.path().join("bin/alias")).unwrap();
    let mut command = Command::new("tar");
    command.arg("-C").arg(dir.path()).args(["-cf", "-"]);
    if let Some(flag) = compress {
        command.arg(flag);
    }
    let out = command.arg(".").output().unwrap();
    assert!(out.status.success());
    out.stdout
}

fn id_of(stdout: &str) -> String {
    let id = stdout.trim().to_string();
    assert!(
        id.starts_with("sha256:") && id.len() == 71,
        "not an id: {id:?}"
    );
    id
}

#[test]
fn imports_plain_gzip_and_zstd_files_and_stdin() {
    let root = Root::new();
    let plain = rootfs_tar(None);
    let variants = [
        ("plain", plain.clone()),
        ("gz", compress("gzip", &plain)),
        ("zst", compress("zstd", &plain)),
    ];
    for (name, bytes) in variants {
        let file = root.file(&format!("{name}.tar.bin"), &bytes);
        id_of(&root.ok(&[
            "image",
            "import",
            file.to_str().unwrap(),
            &format!("test/{name}:v1"),
        ]));
    }
    let mut child = root
        .cmd(&["image", "import", "-", "fromstdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&compress("gzip", &plain))
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    id_of(&String::from_utf8(out.stdout).unwrap());

    let listing = root.ok(&["image", "ls"]);
    for name in ["test/plain", "test/gz", "test/zst", "fromstdin"] {
        assert!(listing.contains(name), "{name} missing from\n{listing}");
    }
    assert_eq!(root.count("layers"), 1, "all four share one unpacked layer");
    assert_eq!(root.ok(&["image", "ls", "-q"]).lines().count(), 4);
    assert_eq!(root.count("tmp"), 0);
}

#[test]
fn bad_input_fails_with_one_line_and_leaves_nothing() {
    let root = Root::new();
    let tar = rootfs_tar(None);
    let gz = rootfs_tar(Some("-z"));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("notatar", b"hello, I am a text file\n".repeat(100), "tar"),
        ("truncated", tar[..tar.len() / 2].to_vec(), "truncated"),
        ("badgzip", gz[..gz.len() / 3].to_vec(), "gzip"),
        ("empty", Vec::new(), "empty"),
    ];
    for (name, bytes, expect) in cases {
        let file = root.file(name, &bytes);
        let err = root.fails(&["image", "import", file.to_str().unwrap(), name]);
        assert!(err.contains(expect) && err.contains(name), "{name}: {err}");
    }
    let err = root.fails(&["image", "import", "/nonexistent/file.tar", "x"]);
    assert!(err.contains("/nonexistent/file.tar"), "{err}");
    let err = root.fails(&["image", "import", "/etc/hostname", "Bad Name"]);
    assert!(err.contains("invalid reference format"), "{err}");
    assert_eq!(root.ok(&["image", "ls", "-q"]), "");
    assert_eq!(root.count("layers"), 0);
    assert_eq!(root.count("store/blobs/sha256"), 0);
    assert_eq!(root.count("tmp"), 0);
}

#[test]
fn kill_9_mid_import_leaves_a_usable_store_and_temp_files_are_reclaimed() {
    let root = Root::new();
    let tar = rootfs_tar(None);
    let mut child = root
        .cmd(&["image", "import", "-", "victim"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&tar[..tar.len() / 2]).unwrap();
    stdin.flush().unwrap();
    // Wait until the importer has made its temp entries (and none is still being made:
    // a `.new-` entry killed before its lock is kept for a minute), then kill it
    // mid-stream.
    let made = || {
        let names = root.entries("tmp");
        names.len() >= 2 && !names.iter().any(|n| n.starts_with(".new-"))
    };
    assert!(wait::wait_for(60, made), "importer made no temp entries");
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);

    // The next command works and reclaims what the dead importer left.
    assert_eq!(root.ok(&["image", "ls", "-q"]), "");
    assert_eq!(root.count("tmp"), 0, "temp entries not reclaimed");
    let file = root.file("whole.tar", &tar);
    id_of(&root.ok(&["image", "import", file.to_str().unwrap(), "victim"]));
    assert!(root.ok(&["image", "ls"]).contains("victim"));
}

#[test]
fn two_processes_import_at_the_same_time() {
    let root = Root::new();
    // One tree, so all four share one layer (two trees made a second apart would not).
    let plain = rootfs_tar(None);
    let gzipped = compress("gzip", &plain);
    let children: Vec<_> = (0..4)
        .map(|i| {
            let file = root.file(
                &format!("in{i}.tar"),
                if i % 2 == 0 { &plain } else { &gzipped },
            );
            root.cmd(&[
                "image",
                "import",
                file.to_str().unwrap(),
                &format!("parallel{i}"),
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let listing = root.ok(&["image", "ls"]);
    for i in 0..4 {
        assert!(listing.contains(&format!("parallel{i}")), "{listing}");
    }
    assert_eq!(root.count("layers"), 1);
}

#[test]
fn busybox_builds_reproducibly_and_other_tools_read_the_store() {
    let first = Root::new();
    let second = Root::new();
    let id1 = id_of(&first.ok(&["image", "build", "busybox"]));
    let id2 = id_of(&second.ok(&["image", "build", "busybox"]));
    assert_eq!(id1, id2, "same recipe and binary, different image");
    let inspect: serde_json::Value =
        serde_json::from_str(&first.ok(&["image", "inspect", "busybox"])).unwrap();
    let image = &inspect[0];
    assert_eq!(image["RepoTags"][0], "busybox:latest");
    assert_eq!(image["Config"]["Cmd"][0], "sh");
    let diff_id = image["Layers"][0]["diff_id"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let layer = first.path().join("layers").join(&diff_id);
    assert!(layer.join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read_link(layer.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert!(std::fs::read_to_string(layer.join("etc/passwd"))
        .unwrap()
        .starts_with("root:x:0:0:"));
    assert!(layer.join("tmp").is_dir());

    // skopeo and umoci read our OCI layout.
    let layout = format!(
        "oci:{}:busybox:latest",
        first.path().join("store").display()
    );
    let out = Command::new("skopeo")
        .args(["inspect", &layout])
        .output()
        .expect("skopeo is not installed: run scripts/test");
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let skopeo: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        skopeo["Layers"][0].as_str().unwrap(),
        image["Layers"][0]["digest"].as_str().unwrap()
    );
    let out = Command::new("umoci")
        .args(["ls", "--layout"])
        .arg(first.path().join("store"))
        .output()
        .expect("umoci is not installed: run scripts/test");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "busybox:latest"
    );
}

/// Serves one file over HTTP on 127.0.0.1 for the download path of recipes.
fn serve_once(body: Vec<u8>) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/busybox", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    (url, handle)
}

#[test]
fn a_recipe_file_downloads_busybox_and_checks_its_sha256() {
    let busybox = std::fs::read("/bin/busybox").expect("install busybox-static");
    let sha256 = {
        let out = Command::new("sha256sum")
            .arg("/bin/busybox")
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let root = Root::new();
    let recipe = |url: &str, sha: &str| {
        format!(
            "name = \"dl/busybox\"\nbuilder = \"busybox\"\ncreated = \"2024-01-01T00:00:00Z\"\n\
             [busybox]\nhost_paths = []\nurl = \"{url}\"\nsha256 = \"{sha}\"\n[config]\ncmd = [\"sh\"]\n"
        )
    };
    let (url, server) = serve_once(busybox.clone());
    let good = root.file("good.toml", recipe(&url, &sha256).as_bytes());
    let id = id_of(&root.ok(&["image", "build", good.to_str().unwrap()]));
    server.join().unwrap();
    // Same binary as the built-in recipe uses from the host: same image.
    let builtin = Root::new();
    let builtin_inspect: serde_json::Value = serde_json::from_str(&{
        builtin.ok(&["image", "build", "busybox"]);
        builtin.ok(&["image", "inspect", "busybox"])
    })
    .unwrap();
    let ours: serde_json::Value =
        serde_json::from_str(&root.ok(&["image", "inspect", "dl/busybox"])).unwrap();
    assert_eq!(
        ours[0]["Layers"][0]["digest"],
        builtin_inspect[0]["Layers"][0]["digest"]
    );
    assert_eq!(ours[0]["Id"], id.as_str());

    let (url, server) = serve_once(busybox);
    let bad = root.file(
        "bad.toml",
        recipe(&url, &"0".repeat(64))
            .replace("dl/busybox", "dl/bad")
            .as_bytes(),
    );
    let err = root.fails(&["image", "build", bad.to_str().unwrap()]);
    server.join().unwrap();
    assert!(err.contains("sha256") && err.contains("refusing"), "{err}");
    assert!(!root.ok(&["image", "ls"]).contains("dl/bad"));
    assert_eq!(root.count("tmp"), 0);
}

#[test]
fn tag_refuses_references_docker_refuses() {
    let root = Root::new();
    let file = root.file("a.tar", &rootfs_tar(None));
    root.ok(&["image", "import", file.to_str().unwrap(), "first"]);
    for bad in ["a:b:c", "ok/../x:1", "a/./b", "x:.v1", "a..b"] {
        let err = root.fails(&["image", "tag", "first", bad]);
        assert!(
            err.contains("invalid reference format") && err.contains(bad),
            "{bad}: {err}"
        );
    }
    root.ok(&["image", "tag", "first", "localhost:5000/team/app_x:v1.0"]);
    let names = root.ok(&["image", "ls"]);
    assert!(!names.contains("a:b") && !names.contains(".."), "{names}");
}

#[test]
fn tag_rm_and_gc() {
    let root = Root::new();
    let file = root.file("a.tar", &rootfs_tar(None));
    let id = id_of(&root.ok(&["image", "import", file.to_str().unwrap(), "first"]));
    root.ok(&["image", "tag", "first", "second:v2"]);
    let listing = root.ok(&["image", "ls"]);
    assert!(
        listing.contains("second") && listing.contains("v2"),
        "{listing}"
    );
    let out = root.ok(&["image", "rm", "first"]);
    assert!(
        out.contains("Untagged: first:latest") && !out.contains("Deleted"),
        "{out}"
    );
    assert_eq!(root.count("layers"), 1);
    let out = root.ok(&["image", "rm", &id[7..19]]);
    assert!(out.contains("Deleted"), "{out}");
    assert_eq!(root.count("layers"), 0);
    assert_eq!(root.count("store/blobs/sha256"), 0);
    let err = root.fails(&["image", "rm", "first"]);
    assert!(err.contains("not found"), "{err}");
    assert!(root.ok(&["gc"]).contains("removed"));
}

#[test]
fn usage_and_help() {
    // No arguments: the usage on stdout, exit 0 (as Docker).
    let out = Command::new(BIN).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"));
    for args in [
        &["image", "--help"][..],
        &["image", "import", "--help"],
        &["run", "--help"],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{args:?}"
        );
    }
    let out = Command::new(BIN)
        .args(["image", "frobnicate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
}

/// A tmpfs of a fixed size mounted for one test, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn new(size: &str) -> SmallDisk {
        let dir = tempfile::Builder::new()
            .prefix("mycontainer-test-disk-")
            .tempdir()
            .unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "mycontainer-test-disk",
            ])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "cannot mount a tmpfs (run as root)");
        SmallDisk { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_full_disk_fails_cleanly() {
    let disk = SmallDisk::new("2m");
    let root = disk.dir.path().join("root");
    let input = tempfile::NamedTempFile::new().unwrap();
    // 3 MB of incompressible data cannot fit: the blob alone fills the disk.
    let noise: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("noise"), noise).unwrap();
    let status = Command::new("tar")
        .arg("-C")
        .arg(dir.path())
        .arg("-cf")
        .arg(input.path())
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let out = Command::new(BIN)
        .arg("--root")
        .arg(&root)
        .args(["image", "import"])
        .arg(input.path())
        .arg("big")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    for dir in ["tmp", "layers", "store/blobs/sha256"] {
        assert_eq!(
            std::fs::read_dir(root.join(dir)).unwrap().count(),
            0,
            "{dir} not empty"
        );
    }
    let listing = Command::new(BIN)
        .arg("--root")
        .arg(&root)
        .args(["image", "ls", "-q"])
        .output()
        .unwrap();
    assert!(listing.status.success() && listing.stdout.is_empty());
}
