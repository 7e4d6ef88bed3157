//! `image build debian`: a real debootstrap minbase from the host's apt mirror.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_mycontainer");

#[test]
fn builds_debian_minbase_with_debootstrap() {
    let root = tempfile::Builder::new()
        .prefix("mycontainer-test-")
        .tempdir()
        .unwrap();
    let out = Command::new(BIN)
        .arg("--root")
        .arg(root.path())
        .args(["image", "build", "debian"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inspect = Command::new(BIN)
        .arg("--root")
        .arg(root.path())
        .args(["image", "inspect", "debian:bookworm"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let tags: Vec<&str> = json[0]["RepoTags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    assert_eq!(tags, ["debian:bookworm", "debian:latest"]);
    let diff_id = json[0]["Layers"][0]["diff_id"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    let layer = root.path().join("layers").join(diff_id);
    assert!(layer.join("usr/bin/apt-get").is_file());
    let release = std::fs::read_to_string(layer.join("etc/os-release")).unwrap();
    assert!(release.contains("bookworm"), "{release}");
    // debootstrap's device nodes and mounts did not leak onto the host.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(root.path().to_str().unwrap()),
        "a debootstrap mount leaked"
    );
    assert_eq!(
        std::fs::read_dir(root.path().join("tmp")).unwrap().count(),
        0
    );
}
