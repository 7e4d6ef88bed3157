//! `image save` and `image load`: OCI archives and docker-archives written by us, by
//! skopeo and by podman, read back by us, skopeo and podman; compressed input on stdin;
//! corrupt and foreign archives refused with one line and nothing stored.

mod registry_support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use registry_support::*;

fn members(archive: &Path) -> Vec<String> {
    let mut tar = tar::Archive::new(std::fs::File::open(archive).unwrap());
    tar.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().to_string())
        .collect()
}

fn member(archive: &Path, name: &str) -> Vec<u8> {
    let mut tar = tar::Archive::new(std::fs::File::open(archive).unwrap());
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_string_lossy() == name {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
            return bytes;
        }
    }
    panic!("{name} not in {}", archive.display());
}

struct Scratch(tempfile::TempDir);

impl Scratch {
    fn new() -> Scratch {
        Scratch(
            tempfile::Builder::new()
                .prefix("mycontainer-archive-")
                .tempdir()
                .unwrap(),
        )
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}

fn loaded_names(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("Loaded image: "))
        .map(str::to_string)
        .collect()
}

#[test]
fn oci_archive_round_trips_and_skopeo_reads_it() {
    let a = Root::new();
    let id = a.busybox();
    a.ok(&["image", "tag", "busybox", "mybox:v2"]);
    let manifest = a.inspect("busybox")["Digest"].as_str().unwrap().to_string();
    let scratch = Scratch::new();
    let archive = scratch.file("oci.tar");
    let path = archive.to_str().unwrap();
    a.ok(&["image", "save", "busybox", "mybox:v2", "-o", path]);

    let names = members(&archive);
    for expected in ["oci-layout", "index.json", "manifest.json"] {
        assert!(names.contains(&expected.to_string()), "{names:?}");
    }
    let index: serde_json::Value = serde_json::from_slice(&member(&archive, "index.json")).unwrap();
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "busybox:latest"
    );
    let inspected: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        &format!("oci-archive:{path}:mybox:v2"),
    ]))
    .unwrap();
    assert_eq!(inspected["Digest"], manifest.as_str());

    let b = Root::new();
    let out = b.ok(&["image", "load", "-i", path]);
    assert_eq!(loaded_names(&out), ["busybox:latest", "mybox:v2"]);
    for name in ["busybox", "mybox:v2"] {
        let image = b.inspect(name);
        assert_eq!(image["Id"], id.as_str());
        assert_eq!(image["Digest"], manifest.as_str());
    }
    assert_busybox_runs(&b.first_layer_dir("busybox"));
    assert_eq!(b.entries("tmp"), Vec::<String>::new());
    // Loading again stores nothing new.
    let blobs = b.blob_count();
    b.ok(&["image", "load", "-i", path]);
    assert_eq!(b.blob_count(), blobs);
}

#[test]
fn docker_archive_round_trips_keeping_the_image_id() {
    let a = Root::new();
    let id = a.busybox();
    let scratch = Scratch::new();
    let archive = scratch.file("docker.tar");
    let path = archive.to_str().unwrap();
    a.ok(&["image", "save", "--format", "docker", "busybox", "-o", path]);

    let manifest: serde_json::Value =
        serde_json::from_slice(&member(&archive, "manifest.json")).unwrap();
    let hex = id.trim_start_matches("sha256:");
    assert_eq!(manifest[0]["Config"], format!("{hex}.json"));
    assert_eq!(manifest[0]["RepoTags"][0], "busybox:latest");
    let diff_id = a.inspect("busybox")["Layers"][0]["diff_id"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    assert_eq!(manifest[0]["Layers"][0], format!("{diff_id}/layer.tar"));
    let inspected: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", &format!("docker-archive:{path}")])).unwrap();
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 1);

    let b = Root::new();
    let out = b.ok(&["image", "load", "-i", path]);
    assert_eq!(loaded_names(&out), ["busybox:latest"]);
    assert_eq!(b.inspect("busybox")["Id"], id.as_str());
    assert_busybox_runs(&b.first_layer_dir("busybox"));

    // gzip-compressed, on standard input.
    let compressed = {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&std::fs::read(&archive).unwrap()).unwrap();
        gz.finish().unwrap()
    };
    let c = Root::new();
    let mut child = c
        .cmd(&["image", "load"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&compressed).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(c.inspect("busybox")["Id"], id.as_str());
    assert_eq!(c.entries("tmp"), Vec::<String>::new());
}

#[test]
fn loads_docker_archives_written_by_skopeo() {
    let a = Root::new();
    let id = a.busybox();
    let scratch = Scratch::new();
    let archive = scratch.file("skopeo.tar");
    skopeo(&[
        "copy",
        "--quiet",
        &format!("oci:{}/store:busybox:latest", a.path().display()),
        &format!("docker-archive:{}:team/tool:v3", archive.display()),
    ]);
    let b = Root::new();
    let out = b.ok(&["image", "load", "-i", archive.to_str().unwrap()]);
    assert_eq!(loaded_names(&out), ["team/tool:v3"]);
    assert_eq!(b.inspect("team/tool:v3")["Id"], id.as_str());
    assert_busybox_runs(&b.first_layer_dir("team/tool:v3"));
}

/// podman with private storage (vfs: no mounts) under a temp dir.
struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    fn new() -> Podman {
        require_tool("podman", "podman");
        Podman {
            dir: tempfile::Builder::new()
                .prefix("mycontainer-podman-")
                .tempdir()
                .unwrap(),
        }
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("podman")
            .arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--runroot")
            .arg(self.dir.path().join("run"))
            .arg("--tmpdir")
            .arg(self.dir.path().join("tmp"))
            .args(["--storage-driver", "vfs", "--events-backend", "none"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "podman {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn image_id(&self, name: &str) -> String {
        format!(
            "sha256:{}",
            self.run(&["image", "inspect", "--format", "{{.Id}}", name])
                .trim()
        )
    }
}

#[test]
fn podman_save_archives_load_and_podman_loads_ours() {
    let podman = Podman::new();
    let scratch = Scratch::new();
    // A rootfs tarball with the host's static busybox, imported into podman.
    let rootfs = scratch.file("rootfs.tar");
    {
        let mut tar = tar::Builder::new(std::fs::File::create(&rootfs).unwrap());
        tar.append_path_with_name("/bin/busybox", "bin/busybox")
            .unwrap();
        tar.finish().unwrap();
    }
    podman.run(&["import", rootfs.to_str().unwrap(), "pbox:v1"]);
    let podman_id = podman.image_id("pbox:v1");

    for format in ["docker-archive", "oci-archive"] {
        let archive = scratch.file(&format!("podman-{format}.tar"));
        podman.run(&[
            "save",
            "--format",
            format,
            "-o",
            archive.to_str().unwrap(),
            "pbox:v1",
        ]);
        let b = Root::new();
        let out = b.ok(&["image", "load", "-i", archive.to_str().unwrap()]);
        assert_eq!(loaded_names(&out), ["localhost/pbox:v1"], "{format}");
        assert_eq!(
            b.inspect("localhost/pbox:v1")["Id"],
            podman_id.as_str(),
            "{format}"
        );
        assert_busybox_runs(&b.first_layer_dir("localhost/pbox:v1"));
    }

    // And podman loads what we save, in both formats, with our image id.
    let a = Root::new();
    let id = a.busybox();
    for format in ["docker", "oci"] {
        let archive = scratch.file(&format!("ours-{format}.tar"));
        a.ok(&[
            "image",
            "save",
            "--format",
            format,
            "busybox",
            "-o",
            archive.to_str().unwrap(),
        ]);
        podman.run(&["load", "-q", "-i", archive.to_str().unwrap()]);
        assert_eq!(podman.image_id("busybox:latest"), id, "{format}");
        podman.run(&["rmi", "-f", "busybox:latest"]);
    }
}

#[test]
fn corrupt_and_foreign_archives_fail_cleanly() {
    let a = Root::new();
    a.busybox();
    let scratch = Scratch::new();
    let archive = scratch.file("oci.tar");
    a.ok(&["image", "save", "busybox", "-o", archive.to_str().unwrap()]);
    let b = Root::new();

    // A layer blob whose bytes no longer match its digest (the tar inside stays valid).
    let unpacked = scratch.file("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    tar::Archive::new(std::fs::File::open(&archive).unwrap())
        .unpack(&unpacked)
        .unwrap();
    let layer = a.inspect("busybox")["Layers"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let blob = unpacked.join("blobs/sha256").join(&layer);
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 2048;
    bytes[last / 2] ^= 0x01;
    std::fs::write(&blob, bytes).unwrap();
    let bad = scratch.file("bad.tar");
    let status = Command::new("tar")
        .arg("-cf")
        .arg(&bad)
        .arg("-C")
        .arg(&unpacked)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let err = b.fails(&["image", "load", "-i", bad.to_str().unwrap()]);
    assert!(err.contains(&layer) && err.contains("hashes to"), "{err}");
    b.assert_empty();

    // Cut off halfway.
    let full = std::fs::read(&archive).unwrap();
    let truncated = scratch.file("truncated.tar");
    std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    let err = b.fails(&["image", "load", "-i", truncated.to_str().unwrap()]);
    assert!(err.contains("cannot load"), "{err}");
    b.assert_empty();

    // A tar that is not an image archive, and something that is not a tar at all.
    let foreign = scratch.file("foreign.tar");
    {
        let mut tar = tar::Builder::new(std::fs::File::create(&foreign).unwrap());
        tar.append_path_with_name("/bin/busybox", "bin/busybox")
            .unwrap();
        tar.finish().unwrap();
    }
    let err = b.fails(&["image", "load", "-i", foreign.to_str().unwrap()]);
    assert!(err.contains("not an image archive"), "{err}");
    let junk = scratch.file("junk");
    std::fs::write(&junk, vec![7u8; 5000]).unwrap();
    let err = b.fails(&["image", "load", "-i", junk.to_str().unwrap()]);
    assert!(err.contains("cannot load"), "{err}");
    b.assert_empty();

    // Saving an image that does not exist writes no file.
    let out = scratch.file("none.tar");
    let err = b.fails(&["image", "save", "nothing:here", "-o", out.to_str().unwrap()]);
    assert!(err.contains("nothing:here"), "{err}");
    assert!(!out.exists());
    let leftovers: Vec<String> = std::fs::read_dir(scratch.0.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.contains("none.tar"))
        .collect();
    assert_eq!(leftovers, Vec::<String>::new());
}
