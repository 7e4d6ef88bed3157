//! Named and anonymous volumes (issue 18): the `volume` verbs, `-v NAME:/path`,
//! `--mount`, filling from the image, anonymous volumes of an image's VOLUME, and the
//! rule that a volume some container (running or not) uses cannot be removed.

mod common;

use std::fs;
use std::os::unix::fs::{chown, symlink, MetadataExt, PermissionsExt};
use std::path::PathBuf;

use common::{ok, stderr, stdout, World};

fn volumes(w: &World) -> Vec<String> {
    let mut names: Vec<String> = ok(w.mc(&["volume", "ls", "-q"]))
        .lines()
        .map(String::from)
        .collect();
    names.sort();
    names
}

fn data(w: &World, name: &str) -> PathBuf {
    w.root.join("volumes").join(name).join("_data")
}

#[test]
fn volume_create_ls_inspect_rm_as_docker() {
    let w = World::new();
    assert_eq!(
        ok(w.mc(&["volume", "create", "--label", "team=a", "--label", "x", "vol-a"])),
        "vol-a\n"
    );
    // Creating it again returns the same volume.
    assert_eq!(ok(w.mc(&["volume", "create", "vol-a"])), "vol-a\n");
    let random = ok(w.mc(&["volume", "create"])).trim().to_string();
    assert_eq!(random.len(), 64, "{random}");
    let ls = ok(w.mc(&["volume", "ls"]));
    assert!(ls.starts_with("DRIVER    VOLUME NAME\n"), "{ls}");
    assert!(ls.contains("local     vol-a\n"), "{ls}");
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(w.mc(&["volume", "inspect", "vol-a"]))).unwrap();
    let v = &inspect[0];
    assert_eq!(v["Name"], "vol-a");
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Scope"], "local");
    assert_eq!(v["Labels"]["team"], "a");
    assert_eq!(v["Labels"]["x"], "");
    assert_eq!(v["Mountpoint"], data(&w, "vol-a").display().to_string());
    assert!(v["CreatedAt"].as_str().unwrap().ends_with('Z'), "{v}");
    let meta = fs::metadata(data(&w, "vol-a")).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
    assert_eq!(
        ok(w.mc(&[
            "volume",
            "inspect",
            "--format",
            "{{.Driver}}/{{.Name}}",
            "vol-a"
        ])),
        "local/vol-a\n"
    );
    // Errors: a bad name, a missing volume (rm -f ignores it), inspect of a missing one.
    let bad = w.mc(&["volume", "create", "../x"]);
    assert_eq!(bad.status.code(), Some(1), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("invalid volume name"),
        "{}",
        stderr(&bad)
    );
    let missing = w.mc(&["volume", "rm", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("no such volume: nope"));
    ok(w.mc(&["volume", "rm", "-f", "nope"]));
    assert_eq!(w.mc(&["volume", "inspect", "nope"]).status.code(), Some(1));
    assert_eq!(
        ok(w.mc(&["volume", "rm", "vol-a", &random])),
        format!("vol-a\n{random}\n")
    );
    assert!(volumes(&w).is_empty());
    assert!(!w.root.join("volumes/vol-a").exists());
}

#[test]
fn a_named_volume_is_made_on_first_use_and_outlives_its_container() {
    let w = World::new();
    ok(w.run(
        &["--rm", "-v", "keep:/data"],
        &["sh", "-c", "echo kept > /data/f"],
    ));
    assert_eq!(volumes(&w), ["keep"]);
    assert_eq!(
        fs::read_to_string(data(&w, "keep").join("f")).unwrap(),
        "kept\n"
    );
    // Another container sees it; read-only refuses writes.
    assert_eq!(
        ok(w.run(&["--rm", "-v", "keep:/d:ro"], &["cat", "/d/f"])),
        "kept\n"
    );
    let ro = w.run(
        &["--rm", "-v", "keep:/d:ro"],
        &["sh", "-c", "echo x > /d/g"],
    );
    assert_ne!(ro.status.code(), Some(0));
    assert!(!data(&w, "keep").join("g").exists());
    w.assert_no_containers();
}

#[test]
fn an_empty_volume_is_filled_from_the_image_keeping_owners_modes_and_links() {
    let w = World::new();
    let dir = w.rootfs.join("srv/app");
    fs::create_dir_all(dir.join("sub")).unwrap();
    fs::write(dir.join("sub/secret"), "image content\n").unwrap();
    chown(dir.join("sub/secret"), Some(1234), Some(5678)).unwrap();
    fs::set_permissions(dir.join("sub/secret"), fs::Permissions::from_mode(0o640)).unwrap();
    chown(&dir, Some(42), Some(43)).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o750)).unwrap();
    symlink("sub/secret", dir.join("link")).unwrap();
    let out = ok(w.run(
        &["--rm", "-v", "filled:/srv/app"],
        &[
            "sh",
            "-c",
            "stat -c '%u:%g %a %n' /srv/app /srv/app/sub/secret; cat /srv/app/link",
        ],
    ));
    assert_eq!(
        out,
        "42:43 750 /srv/app\n1234:5678 640 /srv/app/sub/secret\nimage content\n"
    );
    let host = data(&w, "filled");
    let root_meta = fs::metadata(&host).unwrap();
    assert_eq!((root_meta.uid(), root_meta.gid()), (42, 43));
    assert_eq!(
        fs::read_link(host.join("link")).unwrap(),
        PathBuf::from("sub/secret")
    );
    // Filled only while empty: what the container removed stays removed.
    ok(w.run(
        &["--rm", "-v", "filled:/srv/app"],
        &["rm", "-r", "/srv/app/sub"],
    ));
    assert!(!host.join("sub").exists());
    ok(w.run(&["--rm", "-v", "filled:/srv/app"], &["true"]));
    assert!(
        !host.join("sub").exists(),
        "a volume with content was filled again"
    );
    // nocopy (in -v and --mount) leaves a new volume empty.
    ok(w.run(&["--rm", "-v", "bare:/srv/app:ro,nocopy"], &["true"]));
    ok(w.run(
        &[
            "--rm",
            "--mount",
            "type=volume,src=bare2,dst=/srv/app,volume-nocopy",
        ],
        &["true"],
    ));
    assert_eq!(fs::read_dir(data(&w, "bare")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(data(&w, "bare2")).unwrap().count(), 0);
    // A path the image does not have gives an empty volume.
    ok(w.run(&["--rm", "-v", "empty:/nothing/here"], &["true"]));
    assert_eq!(fs::read_dir(data(&w, "empty")).unwrap().count(), 0);
}

#[test]
fn filling_from_a_hostile_image_never_reads_the_host() {
    let w = World::new();
    let secret_dir = w.dir.path().join("host-secrets");
    fs::create_dir(&secret_dir).unwrap();
    fs::write(secret_dir.join("marker"), "HOST SECRET\n").unwrap();
    // The volume's path is an absolute symlink to the host directory, another is a
    // relative climb out of the root, and a file in the copied tree links to the host.
    symlink(&secret_dir, w.rootfs.join("abs")).unwrap();
    let climb = format!("../../../../../../../..{}", secret_dir.display());
    symlink(&climb, w.rootfs.join("climb")).unwrap();
    fs::create_dir(w.rootfs.join("tree")).unwrap();
    symlink(secret_dir.join("marker"), w.rootfs.join("tree/marker")).unwrap();
    symlink("/etc/shadow", w.rootfs.join("tree/shadow")).unwrap();
    for (volume, path) in [("abs", "/abs"), ("climb", "/climb"), ("tree", "/tree")] {
        let _ = w.run(&["--rm", "-v", &format!("{volume}:{path}")], &["true"]);
        let host = data(&w, volume);
        for entry in walk(&host) {
            let meta = fs::symlink_metadata(&entry).unwrap();
            if meta.is_file() {
                let content = fs::read_to_string(&entry).unwrap();
                assert!(
                    !content.contains("HOST SECRET"),
                    "{} has the host's marker",
                    entry.display()
                );
                assert!(
                    !content.contains("root:"),
                    "{} has a shadow file",
                    entry.display()
                );
            }
        }
    }
    // Symlinks inside the tree are copied as links, not followed.
    assert!(fs::symlink_metadata(data(&w, "tree").join("shadow"))
        .unwrap()
        .file_type()
        .is_symlink());
    // The host directory itself was not touched.
    let names: Vec<_> = fs::read_dir(&secret_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["marker"]);
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let meta = fs::symlink_metadata(e.path()).unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            }
            found.push(e.path());
        }
    }
    found
}

/// A recipe whose image declares VOLUME /root (0700 in the busybox image) and
/// /var/tmp (1777).
fn build_volume_image(w: &World) {
    let recipe = w.dir.path().join("volimg.toml");
    fs::write(
        &recipe,
        r#"name = "volimg"
builder = "busybox"
created = "2024-01-01T00:00:00Z"

[busybox]
host_paths = ["/bin/busybox"]

[config]
cmd = ["sh"]
volumes = ["/root", "/var/tmp"]
labels = { "org.example.team" = "storage" }
"#,
    )
    .unwrap();
    ok(w.mc(&["image", "build", recipe.to_str().unwrap()]));
}

#[test]
fn image_volumes_get_anonymous_volumes_that_rm_v_and_rm_remove() {
    let w = World::new();
    build_volume_image(&w);
    // Each VOLUME gets an anonymous volume with the image's mode.
    let out = ok(w.mc(&[
        "run",
        "--name",
        "keeper",
        "volimg",
        "sh",
        "-c",
        "stat -c '%a' /root /var/tmp; grep -c ' /root \\| /var/tmp ' /proc/mounts",
    ]));
    assert_eq!(out, "700\n1777\n2\n");
    let first = volumes(&w);
    assert_eq!(first.len(), 2, "{first:?}");
    let modes: Vec<u32> = first
        .iter()
        .map(|v| fs::metadata(data(&w, v)).unwrap().permissions().mode() & 0o7777)
        .collect();
    assert!(
        modes.contains(&0o700) && modes.contains(&0o1777),
        "{modes:?}"
    );
    // A mount at a VOLUME path replaces its anonymous volume.
    ok(w.mc(&["run", "--rm", "-v", "named:/root", "volimg", "true"]));
    assert_eq!(
        volumes(&w).len(),
        3,
        "only /var/tmp got a new anonymous volume, removed by --rm"
    );
    assert!(volumes(&w).contains(&"named".to_string()));
    // --rm removed its anonymous volumes; rm -v removes them, plain rm keeps them.
    ok(w.mc(&["run", "--name", "gone", "volimg", "true"]));
    assert_eq!(volumes(&w).len(), 5);
    ok(w.mc(&["rm", "-v", "gone"]));
    assert_eq!(volumes(&w).len(), 3);
    ok(w.mc(&["rm", "keeper"]));
    assert_eq!(
        volumes(&w).len(),
        3,
        "rm without -v keeps anonymous volumes"
    );
    // prune takes the unused anonymous ones, -a the unused named ones too, but never
    // one in use.
    ok(w.mc(&[
        "run",
        "--name",
        "user",
        "-v",
        "inuse:/data",
        "volimg",
        "true",
    ]));
    let before = volumes(&w);
    let pruned = ok(w.mc(&["volume", "prune", "-f"]));
    assert!(pruned.contains("Deleted Volumes:"), "{pruned}");
    assert!(pruned.contains("Total reclaimed space:"), "{pruned}");
    let after = volumes(&w);
    assert_eq!(after.len(), 4, "{before:?} -> {after:?}");
    assert!(after.contains(&"named".to_string()) && after.contains(&"inuse".to_string()));
    ok(w.mc(&["volume", "prune", "-a", "-f"]));
    let left = volumes(&w);
    assert!(
        left.contains(&"inuse".to_string()) && !left.contains(&"named".to_string()),
        "{left:?}"
    );
    assert_eq!(
        left.len(),
        3,
        "inuse and user's two anonymous volumes: {left:?}"
    );
    ok(w.mc(&["rm", "-v", "user"]));
    assert_eq!(volumes(&w), ["inuse"]);
}

#[test]
fn a_volume_used_by_any_container_cannot_be_removed() {
    let w = World::new();
    let running = w.run_detached(&["-v", "busy:/d"], &["sleep", "1000"]);
    ok(w.run(&["--name", "stopped", "-v", "parked:/d"], &["true"]));
    for name in ["busy", "parked"] {
        for args in [
            &["volume", "rm", name][..],
            &["volume", "rm", "-f", name][..],
        ] {
            let out = w.mc(args);
            assert_eq!(out.status.code(), Some(1), "{args:?}");
            assert!(
                stderr(&out).contains(&format!("volume {name} is in use by container")),
                "{}",
                stderr(&out)
            );
        }
        assert!(data(&w, name).is_dir());
    }
    ok(w.mc(&["volume", "prune", "-a"]));
    assert_eq!(volumes(&w), ["busy", "parked"]);
    ok(w.mc(&["rm", "-f", &running]));
    ok(w.mc(&["rm", "stopped"]));
    ok(w.mc(&["volume", "rm", "busy", "parked"]));
    assert!(volumes(&w).is_empty());
}

#[test]
fn concurrent_runs_share_one_new_volume() {
    let w = World::new();
    let children: Vec<_> = (0..4)
        .map(|i| {
            w.run_cmd(
                &["--rm", "-v", "shared:/d"],
                &["sh", "-c", &format!("echo {i} > /d/{i}")],
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for child in children {
        ok(child.wait_with_output().unwrap());
    }
    assert_eq!(volumes(&w), ["shared"]);
    assert_eq!(fs::read_dir(data(&w, "shared")).unwrap().count(), 4);
}

#[test]
fn mount_flag_takes_binds_volumes_and_tmpfs_as_docker_spells_them() {
    let w = World::new();
    let host = w.dir.path().join("bound");
    fs::create_dir(&host).unwrap();
    fs::write(host.join("f"), "host file\n").unwrap();
    let out = ok(w.run(
        &[
            "--rm",
            "--mount",
            &format!("type=bind,source={},target=/b,readonly", host.display()),
            "--mount",
            "type=volume,src=mvol,dst=/v",
            "--mount",
            "type=tmpfs,target=/t,tmpfs-size=1m",
        ],
        &[
            "sh",
            "-c",
            "cat /b/f; echo x > /b/g 2>/dev/null || echo ro; echo v > /v/f; grep ' /t ' /proc/mounts | cut -d' ' -f3",
        ],
    ));
    assert_eq!(out, "host file\nro\ntmpfs\n");
    assert_eq!(
        fs::read_to_string(data(&w, "mvol").join("f")).unwrap(),
        "v\n"
    );
    // A missing bind source is an error (unlike -v), as are unknown types and fields.
    let missing = w.dir.path().join("missing");
    for bad in [
        format!("type=bind,source={},target=/b", missing.display()),
        "type=nfs,target=/x".to_string(),
        "type=volume,target=/x,colour=red".to_string(),
        "type=volume,source=v".to_string(),
    ] {
        let out = w.run(&["--rm", "--mount", &bad], &["true"]);
        assert_eq!(out.status.code(), Some(125), "{bad}: {}", stdout(&out));
        assert!(stderr(&out).contains("--mount"), "{bad}: {}", stderr(&out));
    }
    assert!(!missing.exists());
    // -v PATH alone: an anonymous volume, gone with --rm.
    ok(w.run(&["--rm", "-v", "/anon"], &["sh", "-c", "echo a > /anon/f"]));
    assert_eq!(volumes(&w), ["mvol"]);
    w.assert_no_containers();
}
