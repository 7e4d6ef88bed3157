//! `image import` makes its writes durable with a few filesystem-wide barriers (syncfs)
//! instead of a fsync per file and per directory: each fsync on a journaled filesystem
//! commits the journal. Counted with strace on the real binary.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_mycontainer");

/// A tar of `files` small files under `dir/src`, written to `dir/<name>.tar`.
fn make_tar(dir: &Path, name: &str, files: usize) -> std::path::PathBuf {
    let src = dir.join(format!("{name}-src"));
    std::fs::create_dir_all(src.join("etc")).unwrap();
    for i in 0..files {
        std::fs::write(
            src.join("etc").join(format!("f{i}")),
            format!("{name} {i}\n"),
        )
        .unwrap();
    }
    let tar = dir.join(format!("{name}.tar"));
    let status = Command::new("tar")
        .arg("-C")
        .arg(&src)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    tar
}

/// The sync calls (fsync, fdatasync, syncfs) one `image import` makes, from strace.
fn traced_import(root: &Path, tar: &Path, name: &str, log: &Path) -> Vec<String> {
    let status = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=fsync,fdatasync,syncfs", "-o"])
        .arg(log)
        .arg(BIN)
        .arg("--root")
        .arg(root)
        .args(["image", "import"])
        .arg(tar)
        .arg(name)
        .status()
        .expect("strace is needed for this test");
    assert!(status.success(), "import under strace failed");
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|l| l.contains("sync"))
        .map(str::to_string)
        .collect()
}

#[test]
fn import_syncs_with_a_few_barriers_and_stores_everything() {
    let dir = tempfile::Builder::new()
        .prefix("mycontainer-test-")
        .tempdir()
        .unwrap();
    let root = dir.path().join("root");
    // The first import also creates the store: its oci-layout and empty index.json
    // behind one barrier of their own (a fsync of each file and each rename made 4).
    let first = make_tar(dir.path(), "first", 3);
    let calls = traced_import(&root, &first, "first", &dir.path().join("first.log"));
    assert!(
        calls.len() <= 4,
        "{} sync calls for a first import: {calls:#?}",
        calls.len()
    );

    let tar = make_tar(dir.path(), "second", 200);
    let calls = traced_import(&root, &tar, "second", &dir.path().join("strace.log"));
    // The bytes of the blob, the layer, its record, the config and the manifest (1
    // syncfs), their renames and the new index.json's bytes (1), the index's rename
    // (a fsync of its directory). A fsync per file and per directory made it 15; a
    // barrier of its own for the layer and a fsync of index.json's bytes, 5.
    assert!(
        calls.len() <= 3,
        "{} sync calls for one import: {calls:#?}",
        calls.len()
    );
    assert!(calls.iter().any(|c| c.contains("syncfs")), "{calls:#?}");

    // Everything the barriers cover is in place: the image, its layer with every file.
    let out = Command::new(BIN)
        .arg("--root")
        .arg(&root)
        .args(["image", "inspect", "second"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inspect: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let diff_id = inspect[0]["Layers"][0]["diff_id"]
        .as_str()
        .expect("a layer diff_id in image inspect")
        .trim_start_matches("sha256:")
        .to_string();
    let layer = root.join("layers").join(&diff_id);
    for i in [0, 99, 199] {
        let content = std::fs::read_to_string(layer.join(format!("etc/f{i}"))).unwrap();
        assert_eq!(content, format!("second {i}\n"));
    }
    // The blob and its layerdb record are in place; nothing is left in tmp/.
    let blob = inspect[0]["Layers"][0]["digest"]
        .as_str()
        .expect("a layer digest in image inspect")
        .trim_start_matches("sha256:")
        .to_string();
    assert!(root.join("store/blobs/sha256").join(&blob).is_file());
    assert_eq!(
        std::fs::read_to_string(root.join("layerdb").join(&blob)).unwrap(),
        format!("sha256:{diff_id}")
    );
    let leftovers: Vec<_> = std::fs::read_dir(root.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(leftovers.is_empty(), "left in tmp/: {leftovers:?}");
}
