//! `container prune`, `image prune [-a]`, `system prune`, `system df` (issue 18): what
//! is in use is kept.

mod common;

use std::fs;

use common::{ok, World};

fn build(w: &World, name: &str, cmd: &str) {
    let recipe = w.dir.path().join(format!("{name}.toml"));
    fs::write(
        &recipe,
        format!(
            "name = \"{name}\"\nbuilder = \"busybox\"\ncreated = \"2024-01-01T00:00:00Z\"\n\n\
             [busybox]\nhost_paths = [\"/bin/busybox\"]\n\n[config]\ncmd = [\"sh\", \"-c\", \"{cmd}\"]\n"
        ),
    )
    .unwrap();
    ok(w.mc(&["image", "build", recipe.to_str().unwrap()]));
}

fn images(w: &World) -> Vec<String> {
    let ls = ok(w.mc(&["image", "ls"]));
    let mut names: Vec<String> = ls
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect();
    names.sort();
    names
}

/// Makes image `name` dangling: its index entry loses its name, as an untagged build
/// or a pull by digest leaves it.
fn make_dangling(w: &World, name: &str) {
    let path = w.root.join("store/index.json");
    let mut index: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    for m in index["manifests"].as_array_mut().unwrap() {
        let annotations = m["annotations"].as_object_mut();
        if let Some(a) = annotations {
            if a.get("org.opencontainers.image.ref.name")
                .and_then(|v| v.as_str())
                .is_some_and(|n| n.contains(name))
            {
                a.remove("org.opencontainers.image.ref.name");
            }
        }
    }
    fs::write(&path, serde_json::to_vec(&index).unwrap()).unwrap();
}

#[test]
fn container_prune_removes_stopped_containers_and_keeps_running_ones() {
    let w = World::new();
    ok(w.run(&["--name", "done1"], &["true"]));
    let failed = w.run(&["--name", "done2", "-v", "kept:/k"], &["false"]);
    assert_eq!(failed.status.code(), Some(1));
    let running = w.run_detached(&["--name", "alive"], &["sleep", "1000"]);
    let out = ok(w.mc(&["container", "prune", "-f"]));
    assert!(out.starts_with("Deleted Containers:\n"), "{out}");
    assert_eq!(out.lines().filter(|l| l.len() == 64).count(), 2, "{out}");
    assert!(out.contains("Total reclaimed space:"), "{out}");
    assert_eq!(w.container_ids(), [running]);
    // Its named volume stays (container prune never removes volumes).
    assert!(w.root.join("volumes/kept/_data").is_dir());
    let again = ok(w.mc(&["container", "prune"]));
    assert_eq!(again, "Total reclaimed space: 0B\n");
}

#[test]
fn image_prune_takes_dangling_images_and_with_a_every_unused_one() {
    let w = World::new();
    build(&w, "used", "echo used");
    build(&w, "unused", "echo unused");
    build(&w, "dangling", "echo dangling");
    ok(w.mc(&["run", "--name", "user", "used"]));
    make_dangling(&w, "dangling");
    assert_eq!(images(&w), ["<none>", "unused", "used"]);
    let out = ok(w.mc(&["image", "prune", "-f"]));
    assert!(out.starts_with("Deleted Images:\nsha256:"), "{out}");
    assert_eq!(images(&w), ["unused", "used"]);
    ok(w.mc(&["image", "prune", "-a", "-f"]));
    assert_eq!(
        images(&w),
        ["used"],
        "an image a stopped container uses was pruned"
    );
    ok(w.mc(&["rm", "user"]));
    ok(w.mc(&["image", "prune", "-a"]));
    assert!(images(&w).is_empty());
    assert_eq!(
        fs::read_dir(w.root.join("layers"))
            .unwrap()
            .filter(|e| !e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.'))
            .count(),
        0,
        "layers left"
    );
}

#[test]
fn system_df_counts_and_system_prune_keeps_what_is_in_use() {
    let w = World::new();
    build(&w, "img", "sleep 1000");
    let running = ok(w.mc(&["run", "-d", "--name", "up", "-v", "busy:/b", "img"]))
        .trim()
        .to_string();
    ok(w.mc(&["run", "--name", "down", "-v", "/anon", "img", "true"]));
    ok(w.mc(&["volume", "create", "idle"]));
    fs::write(w.root.join("volumes/idle/_data/f"), vec![b'x'; 100_000]).unwrap();
    let df = ok(w.mc(&[
        "system",
        "df",
        "--format",
        "{{.Type}}:{{.TotalCount}}:{{.Active}}",
    ]));
    assert_eq!(
        df,
        "Images:1:1\nContainers:2:1\nLocal Volumes:3:2\nBuild Cache:0:0\n"
    );
    let custom = ok(w.mc(&[
        "system",
        "df",
        "--format",
        "table {{.Type}}\\t{{.TotalCount}}",
    ]));
    assert!(
        custom.starts_with("TYPE            TOTAL\nImages          1\n"),
        "{custom}"
    );
    let table = ok(w.mc(&["system", "df"]));
    assert!(
        table.starts_with("TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE\n"),
        "{table}"
    );
    assert!(
        table.contains("Local Volumes   3         2         "),
        "{table}"
    );
    let out = ok(w.mc(&["system", "prune", "-a", "--volumes", "-f"]));
    assert!(out.contains("Deleted Containers:"), "{out}");
    // The stopped container and then its anonymous volume go; the running container,
    // its image and its volume stay; the named unused volume stays (not anonymous).
    assert_eq!(w.container_ids(), [running]);
    let mut vols: Vec<String> = ok(w.mc(&["volume", "ls", "-q"]))
        .lines()
        .map(String::from)
        .collect();
    vols.sort();
    assert_eq!(vols, ["busy", "idle"]);
    assert_eq!(images(&w), ["img"]);
    let df = ok(w.mc(&[
        "system",
        "df",
        "--format",
        "{{.Type}}:{{.TotalCount}}:{{.Active}}",
    ]));
    assert_eq!(
        df,
        "Images:1:1\nContainers:1:1\nLocal Volumes:2:1\nBuild Cache:0:0\n"
    );
}
