//! Integrity of the store under damage (issue 15): a corrupt blob never leaves the store
//! (save), one bad blob affects only the images that use it, a re-load repairs it, a
//! corrupt index says how to recover, and `system check [--repair]` finds and fixes
//! what a disk fault or a killed writer leaves.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{build_busybox, ok, stderr, stdout, World};

fn blob_path(root: &Path, digest: &str) -> PathBuf {
    root.join("store/blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// The manifest of image `name` as JSON (read straight from the store's layout).
fn manifest(root: &Path, name: &str) -> serde_json::Value {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("store/index.json")).unwrap()).unwrap();
    let wanted = if name.contains(':') {
        name.to_string()
    } else {
        format!("{name}:latest")
    };
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| {
            d["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .is_some_and(|n| n == wanted || n.ends_with(&format!("/{wanted}")))
        })
        .unwrap_or_else(|| panic!("{name} not in the index: {index}"));
    let digest = entry["digest"].as_str().unwrap();
    serde_json::from_slice(&fs::read(blob_path(root, digest)).unwrap()).unwrap()
}

/// Flips one byte in the middle of a stored blob (as a disk fault would).
fn corrupt(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(path, &bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o444)).unwrap();
}

fn image_id(w: &World, name: &str) -> String {
    let inspect: serde_json::Value =
        serde_json::from_str(&stdout(&w.mc(&["image", "inspect", name]))).unwrap();
    inspect[0]["Id"].as_str().unwrap().to_string()
}

fn layer_blob(w: &World, image: &str) -> PathBuf {
    let manifest = manifest(&w.root, image);
    blob_path(&w.root, manifest["layers"][0]["digest"].as_str().unwrap())
}

fn config_blob(w: &World, image: &str) -> PathBuf {
    let manifest = manifest(&w.root, image);
    blob_path(&w.root, manifest["config"]["digest"].as_str().unwrap())
}

#[test]
fn save_refuses_a_corrupt_layer_blob_in_either_format_and_writes_no_archive() {
    let w = World::new();
    build_busybox(&w);
    let layer = layer_blob(&w, "busybox");
    corrupt(&layer);
    for format in ["oci", "docker"] {
        let archive = w.dir.path().join(format!("out-{format}.tar"));
        let out = w.mc(&[
            "image",
            "save",
            "--format",
            format,
            "-o",
            archive.to_str().unwrap(),
            "busybox",
        ]);
        assert_eq!(out.status.code(), Some(1), "{format}: {}", stderr(&out));
        let err = stderr(&out);
        let digest = layer.file_name().unwrap().to_str().unwrap();
        assert!(
            err.contains(&format!("sha256:{digest}")) && err.contains("is corrupt"),
            "{format}: {err}"
        );
        assert!(!archive.exists(), "{format}: a partial archive was left");
    }
}

#[test]
fn one_corrupt_config_affects_only_its_image_and_a_load_repairs_it() {
    let w = World::new();
    build_busybox(&w);
    ok(w.mc(&["image", "tag", "busybox", "other:1"]));
    let archive = w.dir.path().join("busybox.tar");
    ok(w.mc(&["image", "save", "-o", archive.to_str().unwrap(), "busybox"]));
    // A second, distinct image whose config we break.
    let tar = w.dir.path().join("rootfs.tar");
    let status = std::process::Command::new("tar")
        .arg("-C")
        .arg(&w.rootfs)
        .args(["-cf", tar.to_str().unwrap(), "."])
        .status()
        .unwrap();
    assert!(status.success());
    ok(w.mc(&["image", "import", tar.to_str().unwrap(), "victim:1"]));
    let victim_config = config_blob(&w, "victim:1");
    corrupt(&victim_config);

    let listed = w.mc(&["image", "ls"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let out = stdout(&listed);
    assert!(out.contains("busybox") && out.contains("other"), "{out}");
    assert!(!out.contains("victim"), "{out}");
    let warning = stderr(&listed);
    assert!(
        warning.contains("image victim:1 is damaged") && warning.contains("is corrupt"),
        "{warning}"
    );

    // The healthy images still run, and gc keeps working.
    let ran = w.mc(&["run", "--rm", "other:1", "echo", "still-fine"]);
    assert_eq!(stdout(&ran).trim(), "still-fine", "{}", stderr(&ran));
    ok(w.mc(&["gc"]));
    // The damaged one fails alone, naming the blob.
    let refused = w.mc(&["run", "--rm", "victim:1", "true"]);
    assert_eq!(refused.status.code(), Some(125));
    assert!(
        stderr(&refused).contains("is corrupt"),
        "{}",
        stderr(&refused)
    );

    // Breaking busybox's own config, then loading the archive again, replaces the
    // corrupt blob with the good bytes (same digest).
    let busybox_config = config_blob(&w, "busybox");
    corrupt(&busybox_config);
    assert!(stderr(&w.mc(&["image", "ls"])).contains("image busybox:latest is damaged"));
    ok(w.mc(&["image", "load", "-i", archive.to_str().unwrap()]));
    let listed = w.mc(&["image", "ls"]);
    assert!(
        !stderr(&listed).contains("busybox:latest is damaged"),
        "{}",
        stderr(&listed)
    );
    ok(w.mc(&["run", "--rm", "busybox", "true"]));

    // A damaged image is removed by name, and then nothing warns.
    ok(w.mc(&["image", "rm", "victim:1"]));
    let listed = w.mc(&["image", "ls"]);
    assert!(!stderr(&listed).contains("damaged"), "{}", stderr(&listed));
    assert!(
        !victim_config.exists(),
        "gc left the damaged image's config"
    );
}

#[test]
fn a_corrupt_index_says_how_to_recover_and_repair_rebuilds_it() {
    let w = World::new();
    build_busybox(&w);
    let id = stdout(&w.mc(&["image", "ls", "-q"])).trim().to_string();
    fs::write(w.root.join("store/index.json"), b"{\"manifests\": [tru").unwrap();

    let out = w.mc(&["image", "ls"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("index") && err.contains("is corrupt"), "{err}");
    assert!(err.contains("system check --repair"), "{err}");

    let checked = w.mc(&["system", "check"]);
    assert_eq!(checked.status.code(), Some(1), "{}", stdout(&checked));
    assert!(stdout(&checked).contains("index"), "{}", stdout(&checked));

    let repaired = w.mc(&["system", "check", "--repair"]);
    assert!(repaired.status.success(), "{}", stdout(&repaired));
    assert!(
        stdout(&repaired).contains("repaired"),
        "{}",
        stdout(&repaired)
    );
    assert!(w.root.join("store/index.json.corrupt").exists());
    // The image is back without its name; it runs by id and can be tagged again.
    let listed = stdout(&w.mc(&["image", "ls", "-q"]));
    assert_eq!(listed.trim(), id);
    ok(w.mc(&["image", "tag", &id, "busybox:latest"]));
    ok(w.mc(&["run", "--rm", "busybox", "true"]));
    let clean = w.mc(&["system", "check"]);
    assert!(clean.status.success(), "{}", stdout(&clean));
}

#[test]
fn system_check_finds_corrupt_blobs_missing_layers_and_leftovers_and_repair_fixes_them() {
    let w = World::new();
    build_busybox(&w);
    let clean = w.mc(&["system", "check"]);
    assert!(
        clean.status.success(),
        "{}{}",
        stdout(&clean),
        stderr(&clean)
    );
    assert!(stdout(&clean).contains("no problems found"));

    // A missing layer directory is unpacked again from its blob.
    let manifest = manifest(&w.root, "busybox");
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(config_blob(&w, "busybox")).unwrap()).unwrap();
    let diff_id = config["rootfs"]["diff_ids"][0].as_str().unwrap();
    let layer_dir = w
        .root
        .join("layers")
        .join(diff_id.trim_start_matches("sha256:"));
    assert!(layer_dir.is_dir());
    fs::remove_dir_all(&layer_dir).unwrap();
    let found = w.mc(&["system", "check"]);
    assert_eq!(found.status.code(), Some(1));
    assert!(
        stdout(&found).contains(&format!(
            "layer {diff_id} of image busybox:latest is not unpacked"
        )),
        "{}",
        stdout(&found)
    );
    let repaired = w.mc(&["system", "check", "--repair"]);
    assert!(repaired.status.success(), "{}", stdout(&repaired));
    assert!(layer_dir.join("bin/busybox").exists());

    // A layer root left world-writable by an old import, and a half-written state file
    // of a container.
    fs::set_permissions(&layer_dir, fs::Permissions::from_mode(0o4777)).unwrap();
    ok(w.mc(&["run", "--name", "tmpfile", "busybox", "true"]));
    let id = w
        .container_ids()
        .into_iter()
        .find(|id| id.len() == 64)
        .unwrap();
    let state_tmp = w.root.join("containers").join(&id).join("state.json.tmp");
    fs::write(&state_tmp, b"").unwrap();
    let found = stdout(&w.mc(&["system", "check"]));
    assert!(found.contains("root directory mode 4777"), "{found}");
    assert!(found.contains("half-written"), "{found}");
    let repaired = w.mc(&["system", "check", "--repair"]);
    assert!(repaired.status.success(), "{}", stdout(&repaired));
    let mode = fs::metadata(&layer_dir).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o755);
    assert!(!state_tmp.exists());

    // A corrupt layer blob: found, and removed by the repair; the image still runs from
    // its unpacked layer, and check keeps saying the blob must come back to save it.
    let layer = blob_path(&w.root, manifest["layers"][0]["digest"].as_str().unwrap());
    corrupt(&layer);
    let found = w.mc(&["system", "check"]);
    assert_eq!(found.status.code(), Some(1));
    assert!(stdout(&found).contains("is corrupt"), "{}", stdout(&found));
    let repaired = stdout(&w.mc(&["system", "check", "--repair"]));
    assert!(repaired.contains("removed it"), "{repaired}");
    assert!(!layer.exists());
    ok(w.mc(&["run", "--rm", "busybox", "true"]));
    let after = w.mc(&["system", "check"]);
    assert_eq!(after.status.code(), Some(1));
    assert!(
        stdout(&after).contains("is missing: it still runs"),
        "{}",
        stdout(&after)
    );
}

/// `image rm` refuses an image a container (stopped too) still uses, as Docker does;
/// `-f` removes only the name and keeps the image for the container (commit still
/// works); an id naming several tags needs `-f`; the deleted image's digest is printed.
#[test]
fn image_rm_keeps_what_containers_use_and_commit_keeps_the_command() {
    let w = World::new();
    build_busybox(&w);
    let id = image_id(&w, "busybox");
    let ran = w.mc(&[
        "run",
        "--name",
        "user1",
        "busybox",
        "echo",
        "from-the-command",
    ]);
    assert_eq!(stdout(&ran).trim(), "from-the-command");
    let short = &stdout(&w.mc(&["ps", "-aq"])).trim().to_string();

    let refused = w.mc(&["image", "rm", "busybox"]);
    assert_eq!(refused.status.code(), Some(1));
    let err = stderr(&refused);
    assert!(err.contains(&format!("container {short} uses it")), "{err}");
    assert!(err.contains("-f"), "{err}");
    assert!(stdout(&w.mc(&["image", "ls"])).contains("busybox"));

    // -f: the name goes, the image stays (untagged) for the container.
    let forced = ok(w.mc(&["image", "rm", "-f", "busybox"]));
    assert!(forced.contains("Untagged: busybox:latest"), "{forced}");
    assert!(!forced.contains("Deleted"), "{forced}");
    assert!(stdout(&w.mc(&["image", "ls"])).contains("<none>"));
    // commit still works, and the new image runs the container's command.
    ok(w.mc(&["commit", "user1", "committed:1"]));
    let rerun = w.mc(&["run", "--rm", "committed:1"]);
    assert_eq!(
        stdout(&rerun).trim(),
        "from-the-command",
        "{}",
        stderr(&rerun)
    );

    // Two names on one image: by id it takes -f; by name just untags.
    ok(w.mc(&["image", "tag", "committed:1", "committed:2"]));
    let committed_id = image_id(&w, "committed:1");
    let refused = w.mc(&["image", "rm", &committed_id]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("committed:1, committed:2"),
        "{}",
        stderr(&refused)
    );
    let untagged = ok(w.mc(&["image", "rm", "committed:2"]));
    assert_eq!(untagged.trim(), "Untagged: committed:2");

    // Once the container is gone, the untagged base is deleted by id, digest printed.
    ok(w.mc(&["rm", "user1"]));
    let deleted = ok(w.mc(&["image", "rm", "committed:1"]));
    assert!(
        deleted.contains(&format!("Deleted: {committed_id}")),
        "{deleted}"
    );
    let deleted = ok(w.mc(&["image", "rm", &id]));
    assert!(deleted.contains(&format!("Deleted: {id}")), "{deleted}");
}

/// Unmounts (lazily) when dropped, so a failing assertion leaves no mount behind.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A state root on overlayfs (as inside a Docker container) cannot hold an overlay
/// upper dir: run says so and what to do, and creates nothing.
#[test]
fn a_state_root_on_overlayfs_is_refused_with_what_to_do() {
    let w = World::new();
    let base = w.dir.path().join("ovl");
    for dir in ["lower", "upper", "work", "merged"] {
        fs::create_dir_all(base.join(dir)).unwrap();
    }
    let merged = base.join("merged");
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        base.join("lower").display(),
        base.join("upper").display(),
        base.join("work").display()
    );
    let mounted = std::process::Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &options])
        .arg(&merged)
        .status()
        .unwrap();
    assert!(mounted.success());
    let _unmount = Unmount(merged.clone());
    let root = merged.join("root");
    let out = std::process::Command::new(common::BIN)
        .arg("--root")
        .arg(&root)
        .args(["run", "--rm", "--rootfs"])
        .arg(&w.rootfs)
        .arg("true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = stderr(&out);
    assert!(
        err.contains("is on overlayfs") && err.contains("--root on an ext4"),
        "{err}"
    );
    let containers: Vec<_> = fs::read_dir(root.join("containers"))
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(containers.is_empty(), "a record was left: {containers:?}");
}

/// When the state root's disk is full as a detached container ends, its supervisor
/// cannot write the final state: `ps` and `inspect` still tell the truth (not `Up`
/// forever) and no half-written state file stays behind.
#[test]
fn a_full_disk_at_exit_leaves_no_lie_in_ps_and_no_half_written_state() {
    let w = World::new();
    let small = w.dir.path().join("small");
    fs::create_dir_all(&small).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(mounted.success());
    let _unmount = Unmount(small.clone());
    let root = small.join("root");
    let mc = |args: &[&str]| {
        std::process::Command::new(common::BIN)
            .arg("--root")
            .arg(&root)
            .args(args)
            .output()
            .unwrap()
    };
    let started = mc(&[
        "run",
        "-d",
        "--name",
        "full",
        "--rootfs",
        w.rootfs.to_str().unwrap(),
        "sleep",
        "1000",
    ]);
    assert!(started.status.success(), "{}", stderr(&started));
    let id = stdout(&started).trim().to_string();
    // Fill the disk to the last block.
    let _ = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", small.join("filler").display()))
        .output()
        .unwrap();
    ok(mc(&["kill", "full"]));
    let exited = common::wait_for(30, || {
        let listed = stdout(&mc(&["ps", "-a"]));
        listed.contains("full") && listed.contains("Exited")
    });
    assert!(exited, "ps still shows: {}", stdout(&mc(&["ps", "-a"])));
    let inspected: serde_json::Value =
        serde_json::from_str(&stdout(&mc(&["inspect", "full"]))).unwrap();
    assert_eq!(inspected[0]["State"]["Running"], false, "{inspected}");
    let record = root.join("containers").join(&id);
    assert!(!record.join("state.json.tmp").exists());
    // Once there is room again, everything works and check is clean.
    fs::remove_file(small.join("filler")).unwrap();
    ok(mc(&["rm", "full"]));
    let checked = mc(&["system", "check"]);
    assert!(checked.status.success(), "{}", stdout(&checked));
}

/// Container cgroups carry their state root's key, so `gc` of one root reclaims its own
/// orphaned cgroups (here: a supervisor killed with SIGKILL and its record gone) and
/// never touches another root's.
#[test]
fn gc_reclaims_its_own_orphaned_cgroups_and_never_another_roots() {
    let a = World::new();
    let b = World::new();
    let id = a.run_detached(&["--network", "none"], &["sleep", "300"]);
    let cgroups = common::container_cgroups(&id);
    assert!(!cgroups.is_empty(), "the container has no cgroup");
    let supervisor = a.supervisor_pid(&id);
    // SAFETY: SIGKILL to the supervisor this test started.
    assert_eq!(unsafe { libc::kill(supervisor, libc::SIGKILL) }, 0);
    // Its container dies with it; the record is lost before anything reclaims it.
    assert!(common::wait_for(30, || common::pids_with("sleep 300")
        .into_iter()
        .all(
            |pid| !fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|c| c.contains(&id))
        )));
    fs::remove_dir_all(a.root.join("containers").join(&id)).unwrap();
    assert!(!common::container_cgroups(&id).is_empty());

    // Another root's gc leaves it alone; its own root's gc removes it.
    let other = ok(b.mc(&["gc"]));
    assert!(!other.contains(&id), "{other}");
    assert_eq!(common::container_cgroups(&id), cgroups);
    let own = ok(a.mc(&["gc"]));
    assert!(
        own.contains("removed orphaned cgroup") && own.contains(&id),
        "{own}"
    );
    assert!(common::container_cgroups(&id).is_empty());
}
