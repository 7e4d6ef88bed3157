//! Messages and conventions a new user meets (issue 15): `-` is stdin/stdout, one line
//! per error saying what failed and what to do, no raw bytes or internal paths, usage
//! on no arguments, and the odd inputs (an OCI layout directory, an empty archive).

mod common;

use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};

use common::{build_busybox, ok, stderr, stdout, World, BIN};

#[test]
fn no_arguments_prints_the_usage_and_succeeds_as_docker_does() {
    let out = Command::new(BIN).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).contains("Usage: mycontainer"),
        "{}",
        stdout(&out)
    );
    let out = Command::new(BIN).arg("image").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("Usage: mycontainer image"));
}

#[test]
fn a_dash_means_standard_output_and_input_for_save_and_load() {
    let w = World::new();
    build_busybox(&w);
    let cwd = w.dir.path().join("cwd");
    fs::create_dir_all(&cwd).unwrap();
    let saved = w
        .cmd()
        .current_dir(&cwd)
        .args(["image", "save", "-o", "-", "busybox"])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(saved.status.success(), "{}", stderr(&saved));
    assert!(!cwd.join("-").exists(), "save wrote a file named -");
    assert!(saved.stdout.len() > 100_000, "{} bytes", saved.stdout.len());

    ok(w.mc(&["image", "rm", "busybox"]));
    let mut load = w
        .cmd()
        .args(["image", "load", "-i", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = load.stdin.take().unwrap();
    let bytes = saved.stdout.clone();
    let writer = std::thread::spawn(move || stdin.write_all(&bytes));
    let loaded = load.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(loaded.status.success(), "{}", stderr(&loaded));
    assert!(stdout(&loaded).contains("Loaded image: busybox:latest"));
}

#[test]
fn an_oci_layout_directory_loads_and_an_empty_archive_is_an_error() {
    let w = World::new();
    build_busybox(&w);
    let archive = w.dir.path().join("bb.tar");
    ok(w.mc(&["image", "save", "-o", archive.to_str().unwrap(), "busybox"]));
    let layout = w.dir.path().join("layout");
    fs::create_dir_all(&layout).unwrap();
    let untar = Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&layout)
        .status()
        .unwrap();
    assert!(untar.success());
    ok(w.mc(&["image", "rm", "busybox"]));
    let loaded = ok(w.mc(&["image", "load", "-i", layout.to_str().unwrap()]));
    assert!(loaded.contains("Loaded image: busybox:latest"), "{loaded}");
    ok(w.mc(&["run", "--rm", "busybox", "true"]));

    // An archive whose index lists nothing is an error, not a silent success.
    let empty = w.dir.path().join("empty");
    fs::create_dir_all(empty.join("blobs/sha256")).unwrap();
    fs::write(
        empty.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    fs::write(
        empty.join("index.json"),
        r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#,
    )
    .unwrap();
    let out = w.mc(&["image", "load", "-i", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("holds no image"), "{}", stderr(&out));
}

#[test]
fn errors_are_one_clean_line_without_repeats_raw_bytes_or_internal_paths() {
    let w = World::new();
    // The OS error once, not twice.
    let out = w.mc(&["image", "import", "/nonexistent/file.tar", "x"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.matches("(os error 2)").count(), 1, "{err}");

    // Random bytes: printable text only.
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let file = w.dir.path().join("random");
    fs::write(&file, &random).unwrap();
    let err = stderr(&w.mc(&["image", "import", file.to_str().unwrap(), "x"]));
    assert!(
        err.chars()
            .all(|c| c == '\n' || (c.is_ascii() && !c.is_ascii_control())),
        "{err:?}"
    );

    // A truncated gzip names the entry, not our staging directory.
    let tree = w.dir.path().join("tree");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("big"), random.repeat(64)).unwrap();
    let tgz = w.dir.path().join("t.tgz");
    let packed = Command::new("tar")
        .arg("-czf")
        .arg(&tgz)
        .arg("-C")
        .arg(&tree)
        .arg(".")
        .status()
        .unwrap();
    assert!(packed.success());
    let bytes = fs::read(&tgz).unwrap();
    fs::write(&tgz, &bytes[..bytes.len() / 2]).unwrap();
    let err = stderr(&w.mc(&["image", "import", tgz.to_str().unwrap(), "x"]));
    assert!(err.contains("truncated"), "{err}");
    assert!(!err.contains(w.root.to_str().unwrap()), "{err}");

    // A name too long says so.
    let long = "a".repeat(300);
    let out = w.run(&["--name", &long], &["true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("300 characters long, the limit is 128"));
}

#[test]
fn a_process_killed_by_its_seccomp_profile_is_named() {
    let w = World::new();
    let profile = w.dir.path().join("kill-exec.json");
    fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["execve","execveat"],"action":"SCMP_ACT_KILL"}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let out = w.run(&["--rm", "--security-opt", &opt], &["true"]);
    assert_eq!(out.status.code(), Some(128 + libc::SIGSYS));
    assert!(
        stderr(&out).contains("killed by SIGSYS: its seccomp profile forbids a system call"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn short_id_prefixes_find_a_unique_image() {
    let w = World::new();
    build_busybox(&w);
    let id = stdout(&w.mc(&["image", "ls", "-q"])).trim().to_string();
    let out = w.mc(&["image", "inspect", &id[..2]]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&id));
}

#[test]
fn recipe_downloads_say_what_is_missing() {
    let w = World::new();
    let recipe = w.dir.path().join("custom.toml");
    fs::write(
        &recipe,
        "name = \"custombb\"\nbuilder = \"busybox\"\n[busybox]\nhost_paths = [\"/nonexistent/busybox\", \"/also/missing\"]\n",
    )
    .unwrap();
    let err = stderr(&w.mc(&["image", "build", recipe.to_str().unwrap()]));
    assert!(
        err.contains("tried /nonexistent/busybox, /also/missing"),
        "{err}"
    );

    // No trust store on the machine: the package to install is named. (The download
    // never leaves loopback: it fails before connecting.)
    let mut text = fs::read_to_string(&recipe).unwrap();
    text.push_str("url = \"https://127.0.0.1:9/busybox\"\nsha256 = \"");
    text.push_str(&"0".repeat(64));
    text.push_str("\"\n");
    fs::write(&recipe, text).unwrap();
    let empty = w.dir.path().join("no-certs");
    fs::create_dir_all(&empty).unwrap();
    let out = w
        .cmd()
        .env("SSL_CERT_FILE", empty.join("none.pem"))
        .env("SSL_CERT_DIR", &empty)
        .args(["image", "build", recipe.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no CA certificates: install ca-certificates"),
        "{}",
        stderr(&out)
    );
}

/// `image ls` as `docker images`: columns that fit long names, CREATED as "N units ago",
/// newest first, whole ids with --no-trunc.
#[test]
fn image_ls_fits_long_names_shows_age_and_lists_newest_first() {
    let w = World::new();
    build_busybox(&w);
    let long = "a-very-long-repository-name.example.com/team/project/service:a-long-tag-1.2.3";
    ok(w.mc(&["image", "tag", "busybox", long]));
    // A newer image: imported now (busybox's recipe pins 2024-01-01).
    let tar = w.dir.path().join("rootfs.tar");
    let packed = Command::new("tar")
        .arg("-C")
        .arg(&w.rootfs)
        .args(["-cf", tar.to_str().unwrap(), "."])
        .status()
        .unwrap();
    assert!(packed.success());
    ok(w.mc(&["image", "import", tar.to_str().unwrap(), "newer:1"]));
    let listed = ok(w.mc(&["image", "ls"]));
    let lines: Vec<&str> = listed.lines().collect();
    assert!(lines[0].starts_with("REPOSITORY"), "{listed}");
    assert!(lines[1].starts_with("newer "), "newest first: {listed}");
    assert!(
        lines[1].contains("seconds ago") || lines[1].contains("second ago"),
        "{listed}"
    );
    let long_line = lines
        .iter()
        .find(|l| l.contains("a-long-tag-1.2.3"))
        .unwrap();
    assert!(long_line.contains("years ago"), "{long_line}");
    // Every column starts where the header's does, however long the name.
    let id_column = lines[0].find("IMAGE ID").unwrap();
    for line in &lines[1..] {
        assert!(
            line[id_column..]
                .chars()
                .next()
                .unwrap()
                .is_ascii_hexdigit(),
            "{listed}"
        );
    }
    let full = ok(w.mc(&["image", "ls", "--no-trunc"]));
    assert!(full.contains("sha256:"), "{full}");
}
