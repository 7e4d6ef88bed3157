//! `image build -f FILE CONTEXT`: every instruction, multi-stage builds, the cache,
//! .dockerignore, context escapes, failing and interrupted steps, reproducible output,
//! recipes compiling to the same steps, and a built image read by skopeo from a registry.
//! The busybox base comes from the built-in recipe (host busybox-static).

mod registry_support;

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use registry_support::*;

/// A build context made of `files` (path, content), with a Containerfile.
fn context(containerfile: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("mycontainer-ctx-")
        .tempdir()
        .unwrap();
    fs::write(dir.path().join("Containerfile"), containerfile).unwrap();
    for (path, content) in files {
        let path = dir.path().join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }
    dir
}

fn build(root: &Root, ctx: &Path, args: &[&str]) -> Output {
    let mut full = vec!["image", "build"];
    full.extend_from_slice(args);
    let ctx = ctx.to_str().unwrap();
    full.push(ctx);
    root.run(&full)
}

/// Builds and insists on success; returns (image id, stdout).
fn build_ok(root: &Root, ctx: &Path, args: &[&str]) -> (String, String) {
    let out = build(root, ctx, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "build failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = stdout.lines().last().unwrap_or_default().to_string();
    assert!(
        id.starts_with("sha256:"),
        "last line is not an id: {stdout}"
    );
    (id, stdout)
}

/// `run --rm IMAGE sh -c SCRIPT`: stdout.
fn sh(root: &Root, image: &str, script: &str) -> String {
    root.ok(&["run", "--rm", "--entrypoint", "", image, "sh", "-c", script])
}

/// The image's config blob as stored (Docker's keys, Healthcheck and Shell included).
fn config_blob(root: &Root, image: &str) -> serde_json::Value {
    let id = root.inspect(image)["Id"].as_str().unwrap().to_string();
    let path = root
        .path()
        .join("store/blobs/sha256")
        .join(id.trim_start_matches("sha256:"));
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

fn cached_count(stdout: &str) -> usize {
    stdout.lines().filter(|l| *l == "--> CACHED").count()
}

/// Nothing left behind: no container records, no temp entries, no mounts.
fn assert_clean(root: &Root) {
    // Any command reclaims unheld temp entries first.
    root.ok(&["image", "ls", "-q"]);
    assert_eq!(
        root.entries("containers"),
        Vec::<String>::new(),
        "containers left"
    );
    assert_eq!(
        root.entries("tmp"),
        Vec::<String>::new(),
        "temp entries left"
    );
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let ours = root.path().to_string_lossy().into_owned();
    assert!(
        !mounts.lines().any(|l| l.contains(&ours)),
        "mounts leaked under {ours}"
    );
}

fn tarball(dir: &Path, name: &str, entries: &[(&str, &str)]) {
    let file = fs::File::create(dir.join(name)).unwrap();
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (path, content) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o640);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_600_000_000);
        tar.append_data(&mut header, path, content.as_bytes())
            .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}

#[test]
fn every_instruction_lands_in_the_config_or_the_filesystem() {
    let root = Root::new();
    root.busybox();
    let ctx = context(
        r#"# a comment
FROM busybox
ARG WHO=world
ENV GREETING="hello $WHO" \
    LEGACY_DIR=/legacy
WORKDIR /app
WORKDIR sub
COPY --chown=1234:2345 file.txt ./
ADD archive.tar.gz /unpacked/
ADD plain.txt /added.txt
COPY plain.txt /etc
RUN echo "$GREETING from $(pwd)" > run-shell.txt
RUN ["/bin/sh", "-c", "echo exec-form > /app/sub/run-exec.txt"]
SHELL ["env", "FROM_SHELL=yes", "/bin/sh", "-c"]
RUN echo "$FROM_SHELL" > /shell.txt
USER 1234
RUN id -u > /tmp/uid.txt
LABEL org.example.name="my app" version=1.0
EXPOSE 8080 53/udp
VOLUME ["/data"]
STOPSIGNAL SIGUSR1
HEALTHCHECK --interval=30s --retries=2 CMD wget -q localhost || exit 1
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /app/sub/run-shell.txt"]
"#,
        &[("file.txt", "copied\n"), ("plain.txt", "plain\n")],
    );
    tarball(
        ctx.path(),
        "archive.tar.gz",
        &[("inner/a.txt", "from the tarball\n")],
    );
    let (_, stdout) = build_ok(
        &root,
        ctx.path(),
        &[
            "-f",
            ctx.path().join("Containerfile").to_str().unwrap(),
            "-t",
            "every:1",
            "--build-arg",
            "WHO=tests",
        ],
    );
    assert!(stdout.contains("STEP 1/22: FROM busybox"), "{stdout}");
    assert!(stdout.contains("STEP 22/22: CMD"), "{stdout}");

    // The filesystem.
    let files = sh(
        &root,
        "every:1",
        "cat /app/sub/run-shell.txt /app/sub/run-exec.txt /shell.txt /tmp/uid.txt \
         /unpacked/inner/a.txt /added.txt /etc/plain.txt; grep -c ^root: /etc/passwd; stat -c '%u:%g %a' /app/sub/file.txt /unpacked/inner/a.txt",
    );
    assert_eq!(
        files,
        "hello tests from /app/sub\nexec-form\nyes\n1234\nfrom the tarball\nplain\nplain\n1\n1234:2345 644\n0:0 640\n"
    );
    // CMD runs through the ENTRYPOINT, as the user USER set.
    assert_eq!(
        root.ok(&["run", "--rm", "every:1"]),
        "hello tests from /app/sub\n"
    );

    // The config.
    let config = &config_blob(&root, "every:1")["config"];
    let env: Vec<&str> = config["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(&"GREETING=hello tests"), "{env:?}");
    assert!(env.contains(&"LEGACY_DIR=/legacy"), "{env:?}");
    assert!(
        !env.iter().any(|e| e.starts_with("WHO=")),
        "build args stay out of the image: {env:?}"
    );
    assert_eq!(config["WorkingDir"], "/app/sub");
    assert_eq!(config["User"], "1234");
    assert_eq!(config["Labels"]["org.example.name"], "my app");
    assert_eq!(config["Labels"]["version"], "1.0");
    assert_eq!(
        config["ExposedPorts"],
        serde_json::json!({"8080/tcp": {}, "53/udp": {}})
    );
    assert_eq!(config["Volumes"], serde_json::json!({"/data": {}}));
    assert_eq!(config["StopSignal"], "SIGUSR1");
    assert_eq!(
        config["Shell"],
        serde_json::json!(["env", "FROM_SHELL=yes", "/bin/sh", "-c"])
    );
    assert_eq!(
        config["Healthcheck"],
        serde_json::json!({"Test": ["CMD-SHELL", "wget -q localhost || exit 1"], "Interval": 30_000_000_000u64, "Retries": 2})
    );
    assert_eq!(config["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
    assert_eq!(
        config["Cmd"],
        serde_json::json!(["cat /app/sub/run-shell.txt"])
    );

    // One layer per RUN/COPY/ADD over busybox's one; config steps are empty history entries.
    let image = root.inspect("every:1");
    assert_eq!(image["Layers"].as_array().unwrap().len(), 1 + 8);
    let history = image["History"].as_array().unwrap();
    assert_eq!(history.len(), 1 + 21);
    let empty = history.iter().filter(|h| h["empty_layer"] == true).count();
    assert_eq!(empty, 21 - 8);
    let listed = root.ok(&["image", "history", "every:1"]);
    let lines: Vec<&str> = listed.lines().collect();
    assert!(
        lines[0].starts_with("IMAGE") && lines[0].contains("CREATED BY"),
        "{listed}"
    );
    assert!(
        lines[1].contains("CMD [\"cat /app/sub/run-shell.txt\"]"),
        "newest first: {listed}"
    );
    assert!(lines[2].starts_with("<missing>"), "{listed}");
    assert_eq!(lines.len(), 1 + 22);
    assert_clean(&root);
}

#[test]
fn a_multi_stage_image_holds_only_the_target_stages_layers() {
    let root = Root::new();
    root.busybox();
    let ctx = context(
        "FROM busybox AS builder\n\
         RUN mkdir -p /out && echo artefact > /out/app && chmod 755 /out/app && echo junk > /junk\n\
         FROM busybox AS unused\n\
         RUN exit 1\n\
         FROM scratch\n\
         COPY --from=builder /out/app /app\n\
         COPY --from=0 /out /out-dir/\n",
        &[],
    );
    let (_, stdout) = build_ok(&root, ctx.path(), &["-t", "multi"]);
    assert!(
        !stdout.contains("exit 1"),
        "a stage the target does not need is not built: {stdout}"
    );
    let image = root.inspect("multi");
    let layers = image["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "only the final stage's two COPY layers");
    let mut found = Vec::new();
    for layer in layers {
        let dir = root.path().join("layers").join(
            layer["diff_id"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:"),
        );
        for entry in walk(&dir) {
            found.push(entry.strip_prefix(&dir).unwrap().display().to_string());
        }
    }
    found.sort();
    assert_eq!(found, ["app", "out-dir", "out-dir/app"]);
    let app = root
        .path()
        .join("layers")
        .join(
            layers[0]["diff_id"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:"),
        )
        .join("app");
    assert_eq!(fs::read_to_string(app).unwrap(), "artefact\n");

    // --target builds up to a stage (busybox's layer and its RUN layer).
    build_ok(
        &root,
        ctx.path(),
        &["-t", "builder-only", "--target", "builder"],
    );
    assert_eq!(
        root.inspect("builder-only")["Layers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(sh(&root, "builder-only", "cat /junk"), "junk\n");
    assert_clean(&root);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap().flatten() {
        out.push(entry.path());
        if entry.file_type().unwrap().is_dir() {
            out.extend(walk(&entry.path()));
        }
    }
    out
}

const FIVE_STEPS: &str = "FROM busybox\n\
ARG FLAVOUR=plain\n\
ENV MODE=test\n\
COPY input.txt /input.txt\n\
RUN cat /input.txt > /output.txt && echo \"$FLAVOUR\" >> /output.txt\n\
CMD [\"cat\", \"/output.txt\"]\n";

#[test]
fn the_cache_reuses_unchanged_steps_and_rebuilds_from_a_changed_file_or_build_arg() {
    let root = Root::new();
    root.busybox();
    let ctx = context(FIVE_STEPS, &[("input.txt", "one\n")]);
    let (first, stdout) = build_ok(&root, ctx.path(), &["-t", "cached"]);
    assert_eq!(cached_count(&stdout), 0, "{stdout}");

    // Nothing changed: every step is cached, and the image is the same.
    let (again, stdout) = build_ok(&root, ctx.path(), &["-t", "cached"]);
    assert_eq!(cached_count(&stdout), 5, "{stdout}");
    assert_eq!(again, first);

    // A changed COPY source rebuilds from the COPY on (ARG and ENV stay cached).
    fs::write(ctx.path().join("input.txt"), "two\n").unwrap();
    let (changed, stdout) = build_ok(&root, ctx.path(), &["-t", "cached"]);
    assert_eq!(cached_count(&stdout), 2, "{stdout}");
    assert_ne!(changed, first);
    assert_eq!(root.ok(&["run", "--rm", "cached"]), "two\nplain\n");

    // A changed build argument rebuilds from its ARG on.
    let (flavoured, stdout) = build_ok(
        &root,
        ctx.path(),
        &["-t", "cached", "--build-arg", "FLAVOUR=spicy"],
    );
    assert_eq!(cached_count(&stdout), 0, "{stdout}");
    assert_ne!(flavoured, changed);
    assert_eq!(root.ok(&["run", "--rm", "cached"]), "two\nspicy\n");

    // --no-cache reuses nothing.
    let (_, stdout) = build_ok(&root, ctx.path(), &["-t", "cached", "--no-cache"]);
    assert_eq!(cached_count(&stdout), 0, "{stdout}");
    assert_clean(&root);
}

#[test]
fn dockerignore_keeps_files_out_of_copies_and_of_the_cache_key() {
    let root = Root::new();
    root.busybox();
    let ctx = context(
        "FROM busybox\nCOPY . /ctx/\n",
        &[
            (
                ".dockerignore",
                "# secrets\nsecret.txt\n*.log\n!keep.log\nbuild/\n",
            ),
            ("secret.txt", "password\n"),
            ("debug.log", "noise\n"),
            ("keep.log", "kept\n"),
            ("build/out.o", "binary\n"),
            ("src/main.c", "int main;\n"),
        ],
    );
    let (first, _) = build_ok(&root, ctx.path(), &["-t", "ignored"]);
    let listing = sh(&root, "ignored", "cd /ctx && find . -type f | sort");
    assert_eq!(
        listing,
        "./.dockerignore\n./Containerfile\n./keep.log\n./src/main.c\n"
    );
    // An ignored file changing does not invalidate the COPY.
    fs::write(ctx.path().join("secret.txt"), "another password\n").unwrap();
    let (again, stdout) = build_ok(&root, ctx.path(), &["-t", "ignored"]);
    assert_eq!(cached_count(&stdout), 1, "{stdout}");
    assert_eq!(again, first);

    // .containerignore wins over .dockerignore.
    fs::write(ctx.path().join(".containerignore"), "src\n").unwrap();
    build_ok(&root, ctx.path(), &["-t", "ignored2"]);
    let listing = sh(&root, "ignored2", "cd /ctx && find . -type f | sort");
    assert!(
        listing.contains("secret.txt") && !listing.contains("main.c"),
        "{listing}"
    );
    assert_clean(&root);
}

#[test]
fn copy_sources_outside_the_context_are_refused_naming_the_file() {
    let root = Root::new();
    root.busybox();
    let outer = tempfile::tempdir().unwrap();
    fs::write(outer.path().join("outside.txt"), "host secret\n").unwrap();
    for (source, named) in [
        ("../outside.txt", "../outside.txt"),
        ("/etc/passwd", "/etc/passwd"),
        ("link-out", "link-out"),
        ("dir-link/passwd", "dir-link/passwd"),
    ] {
        let ctx = context(&format!("FROM busybox\nCOPY {source} /stolen\n"), &[]);
        symlink(
            outer.path().join("outside.txt"),
            ctx.path().join("link-out"),
        )
        .unwrap();
        symlink("/etc", ctx.path().join("dir-link")).unwrap();
        // ../outside.txt from the context: put the file next to it.
        fs::copy(
            outer.path().join("outside.txt"),
            ctx.path().parent().unwrap().join("outside.txt"),
        )
        .ok();
        let out = build(&root, ctx.path(), &["-t", "escape"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{source}: the build must fail");
        assert!(err.contains(&format!("{named:?}")), "{source}: {err}");
        assert!(
            err.contains("outside the build context") || err.contains("out of the build context"),
            "{err}"
        );
        assert!(root.run(&["image", "inspect", "escape"]).status.code() != Some(0));
        let _ = fs::remove_file(ctx.path().parent().unwrap().join("outside.txt"));
    }
    assert_clean(&root);
}

#[test]
fn a_failing_step_stops_the_build_names_the_step_and_code_and_tags_nothing() {
    let root = Root::new();
    root.busybox();
    let ctx = context(
        "FROM busybox\nRUN echo first > /first\nRUN echo about to fail; exit 3\nRUN echo never-runs\n",
        &[],
    );
    let out = build(&root, ctx.path(), &["-t", "broken"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    // As `docker build`: a failed build exits 1.
    assert_eq!(out.status.code(), Some(1), "{stdout}{err}");
    assert!(
        stdout.contains("about to fail") && !stdout.contains("never-runs"),
        "{stdout}"
    );
    assert!(
        err.contains("step 3/4") && err.contains("exit 3") && err.contains("code: 3"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "one error line: {err}");
    let listed = root.ok(&["image", "ls"]);
    assert!(!listed.contains("broken"), "{listed}");
    assert_clean(&root);
}

#[test]
fn two_no_cache_builds_on_two_roots_give_the_same_digest_with_source_date_epoch() {
    let ctx = context(
        "FROM busybox\nCOPY input.txt /input.txt\nRUN mkdir -p /made && cp /input.txt /made/copy && touch /made/new\nENV A=b\nCMD [\"cat\", \"/made/copy\"]\n",
        &[("input.txt", "same\n")],
    );
    let ids: Vec<String> = (0..2)
        .map(|_| {
            let root = Root::new();
            root.busybox();
            let mut cmd = root.cmd(&[
                "image",
                "build",
                "--no-cache",
                "-t",
                "repro",
                ctx.path().to_str().unwrap(),
            ]);
            let out = cmd.env("SOURCE_DATE_EPOCH", "1700000000").output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let created = root.inspect("repro")["Created"]
                .as_str()
                .unwrap()
                .to_string();
            assert_eq!(created, "2023-11-14T22:13:20Z");
            // A second apart at least, so unclamped times would differ.
            std::thread::sleep(std::time::Duration::from_millis(1100));
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids[0], ids[1]);
    // --timestamp does the same as the variable.
    let root = Root::new();
    root.busybox();
    let (id, _) = build_ok(
        &root,
        ctx.path(),
        &["--no-cache", "--timestamp", "1700000000", "-t", "repro"],
    );
    assert_eq!(id, ids[0]);
}

#[test]
fn a_built_image_pushed_to_a_registry_is_read_by_skopeo() {
    require_tool("skopeo", "skopeo");
    let registry = Registry::start(RegistryAuth::None);
    let root = Root::new();
    root.busybox();
    let ctx = context(
        "FROM busybox\nCOPY hello.txt /hello.txt\nLABEL built.by=mycontainer\nENV GREETING=hi\nCMD [\"cat\", \"/hello.txt\"]\n",
        &[("hello.txt", "hello\n")],
    );
    build_ok(&root, ctx.path(), &["-t", "pushme:1"]);
    let target = format!("{}/test/built:1", registry.addr);
    root.ok(&["push", "pushme:1", &target]);
    let out = std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{target}"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inspected: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inspected["Labels"]["built.by"], "mycontainer");
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 2);
    assert!(inspected["Env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "GREETING=hi"));
}

#[test]
fn sigint_during_a_run_step_stops_it_and_cleans_up() {
    let root = Root::new();
    root.busybox();
    // The step's command line is looked for among all the host's processes: it names
    // this test process so that the same test in another suite running at the same time
    // (its build in flight) is not taken for ours.
    let marker = format!("sleep {}", 3_000_000 + std::process::id());
    let ctx = context(&format!("FROM busybox\nRUN echo started; {marker}\n"), &[]);
    let mut child = root
        .cmd(&[
            "image",
            "build",
            "-t",
            "interrupted",
            ctx.path().to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines
            .next()
            .expect("the build ended before its RUN started")
            .unwrap();
        if line == "started" {
            break;
        }
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    let listed = root.ok(&["image", "ls"]);
    assert!(!listed.contains("interrupted"), "{listed}");
    assert!(
        pids_running(&marker).is_empty(),
        "the step's process survived"
    );
    assert_clean(&root);
}

/// Processes whose command line is `needle` and that live in another mount namespace
/// than ours (a container's).
fn pids_running(needle: &str) -> Vec<i32> {
    let ours = fs::read_link("/proc/self/ns/mnt").unwrap();
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let ns = fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
            cmdline.trim() == needle && ns.is_some_and(|ns| ns != ours)
        })
        .collect()
}

#[test]
fn a_recipe_and_the_equivalent_containerfile_make_the_same_image() {
    let root = Root::new();
    root.busybox();
    let ctx = context(
        "FROM busybox\n\
         ARG WHO=world\n\
         ENV GREETING=hello\n\
         WORKDIR /app\n\
         COPY --chown=1:1 input.txt ./\n\
         RUN echo \"$GREETING $WHO\" > /app/greet\n\
         LABEL kind=demo\n\
         EXPOSE 80\n\
         USER 1\n\
         ENTRYPOINT [\"cat\"]\n\
         CMD [\"/app/greet\"]\n",
        &[("input.txt", "in\n")],
    );
    fs::write(
        ctx.path().join("app.toml"),
        r#"name = "from-recipe"
from = "busybox"
created = "2023-11-14T22:13:20Z"
[[step]]
arg = ["WHO=world"]
[[step]]
env = ["GREETING=hello"]
[[step]]
workdir = "/app"
[[step]]
copy = ["input.txt", "./"]
chown = "1:1"
[[step]]
run = 'echo "$GREETING $WHO" > /app/greet'
[[step]]
label = ["kind=demo"]
[[step]]
expose = ["80"]
[[step]]
user = "1"
[[step]]
entrypoint = ["cat"]
[[step]]
cmd = ["/app/greet"]
"#,
    )
    .unwrap();
    let out = root
        .cmd(&[
            "image",
            "build",
            "--no-cache",
            "-t",
            "from-file",
            ctx.path().to_str().unwrap(),
        ])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let from_file = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap()
        .to_string();
    let recipe = ctx.path().join("app.toml");
    let out = root.ok(&["image", "build", "--no-cache", recipe.to_str().unwrap()]);
    let from_recipe = out.lines().last().unwrap().to_string();
    assert_eq!(from_recipe, from_file);
    assert_eq!(root.ok(&["run", "--rm", "from-recipe"]), "hello world\n");
    // The built-in base recipes still build as before, and take -t too.
    let id = root.ok(&["image", "build", "busybox", "-t", "mybox:2"]);
    assert_eq!(root.inspect("mybox:2")["Id"].as_str().unwrap(), id.trim());
    assert_clean(&root);
}

#[test]
fn add_downloads_a_url_and_checks_its_checksum() {
    use sha2::{Digest as _, Sha256};
    use std::sync::Arc;
    let body = b"downloaded over http\n".to_vec();
    let served = body.clone();
    let server = HttpServer::start(Arc::new(move |request: &Request| {
        if request.path() == "/files/tool.txt" {
            Response::new(200, "text/plain", served.clone())
        } else {
            Response::new(404, "text/plain", b"no\n".to_vec())
        }
    }));
    let good = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
    let root = Root::new();
    root.busybox();
    let url = format!("http://{}/files/tool.txt", server.addr);
    let ctx = context(
        &format!("FROM busybox\nADD --checksum={good} {url} /opt/\n"),
        &[],
    );
    build_ok(&root, ctx.path(), &["-t", "added"]);
    assert_eq!(
        sh(
            &root,
            "added",
            "cat /opt/tool.txt; stat -c %a /opt/tool.txt"
        ),
        "downloaded over http\n600\n"
    );

    let bad = format!("sha256:{}", "0".repeat(64));
    let ctx = context(
        &format!("FROM busybox\nADD --checksum={bad} {url} /opt/\n"),
        &[],
    );
    let out = build(&root, ctx.path(), &["-t", "bad-sum"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("checksum mismatch") && err.contains(&good),
        "{err}"
    );
    let missing = format!("http://{}/nope", server.addr);
    let ctx = context(&format!("FROM busybox\nADD {missing} /opt/\n"), &[]);
    let out = build(&root, ctx.path(), &["-t", "bad-url"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("404"), "{err}");
    assert!(!root.ok(&["image", "ls"]).contains("bad-"));
    assert_clean(&root);
}

#[test]
fn run_steps_get_runs_isolation_limits_and_network() {
    let root = Root::new();
    root.busybox();
    let ctx = context(
        "FROM busybox\n\
         RUN grep -E '^(CapEff|Seccomp|NoNewPrivs):' /proc/self/status > /status; \
             ls /sys/class/net > /net; \
             cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max 2>/dev/null > /limit; true\n",
        &[],
    );
    build_ok(&root, ctx.path(), &["-t", "isolated", "--memory", "64m"]);
    let status = sh(&root, "isolated", "cat /status");
    assert!(
        status.contains("CapEff:\t00000000a80425fb"),
        "Docker's default capabilities: {status}"
    );
    assert!(
        status.contains("Seccomp:\t2"),
        "the seccomp filter: {status}"
    );
    assert_eq!(
        sh(&root, "isolated", "cat /net"),
        "eth0\nlo\n",
        "the default bridge network, as docker build"
    );
    assert_eq!(
        sh(&root, "isolated", "cat /limit"),
        format!("{}\n", 64 << 20)
    );

    build_ok(
        &root,
        ctx.path(),
        &["-t", "hostnet", "--network", "host", "--no-cache"],
    );
    // "host" is the test's own network namespace (see registry_support): the step sees
    // its interfaces, the default bridge the first build made among them, and no eth0
    // of its own. (Not an exact list: the first build's veth may still be going away.)
    let seen = sh(&root, "hostnet", "cat /net");
    assert!(
        seen.lines().any(|l| l == "mycontainer0") && !seen.lines().any(|l| l == "eth0"),
        "host network: {seen}"
    );

    build_ok(
        &root,
        ctx.path(),
        &["-t", "nonet", "--network", "none", "--no-cache"],
    );
    assert_eq!(sh(&root, "nonet", "cat /net"), "lo\n", "--network none");
    assert_clean(&root);
}
