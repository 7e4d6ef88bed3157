//! `pull`, `push`, `login`, `logout` against real registries started here: Debian's
//! `docker-registry` (distribution v2) plain, with htpasswd (bcrypt) Basic auth, and
//! with token auth backed by a token server in this test; skopeo on the other side for
//! interop. Failures a registry will not produce on demand (a connection cut halfway
//! through a layer, a pull killed mid-download) use a scripted HTTP server.

mod registry_support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use registry_support::*;
use sha2::{Digest as _, Sha256};

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The manifest a registry serves for `target` (host/repo:tag), as skopeo reads it.
fn raw_manifest(target: &str) -> String {
    skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ])
}

fn stderr_of(root: &Root, args: &[&str]) -> String {
    let out = root.run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn push_then_pull_round_trips_through_a_plain_registry() {
    let registry = Registry::start(RegistryAuth::None);
    let a = Root::new();
    let id = a.busybox();
    let target = format!("{}/test/busybox:v1", registry.addr);
    let digest = a.ok(&["push", "busybox", &target]).trim().to_string();

    // skopeo reads what we pushed: a manifest with the digest we printed, gzip layers.
    let raw = raw_manifest(&target);
    assert_eq!(sha256(raw.as_bytes()), digest);
    let manifest: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(manifest["config"]["digest"], id.as_str());

    let b = Root::new();
    assert_eq!(b.ok(&["pull", &target]).trim(), id);
    let image = b.inspect(&target);
    assert_eq!(image["Digest"], digest.as_str());
    assert_eq!(image["RepoTags"][0], target.as_str());
    assert_busybox_runs(&b.first_layer_dir(&target));
    assert_eq!(b.entries("tmp"), Vec::<String>::new());

    // Pulling again downloads no layer; pushing again uploads nothing.
    let again = stderr_of(&b, &["pull", &target]);
    assert!(again.contains("already exists"), "{again}");
    assert!(!again.contains("pull complete"), "{again}");
    let again = stderr_of(&a, &["push", "busybox", &target]);
    assert!(!again.contains(": pushed"), "{again}");
    // A local-only image pushed to a second repository: the compressed layer pushed
    // the first time is remembered and mounted, not compressed and uploaded again.
    let second = format!("{}/second/busybox:v1", registry.addr);
    let pushed = stderr_of(&a, &["push", "busybox", &second]);
    assert!(pushed.contains("mounted from test/busybox"), "{pushed}");
    assert_eq!(a.ok(&["push", "busybox", &second]).trim(), digest);

    // By digest: the manifest is verified against it and stored without a name.
    let c = Root::new();
    let by_digest = format!("{}/test/busybox@{digest}", registry.addr);
    assert_eq!(c.ok(&["pull", &by_digest]).trim(), id);
    assert_eq!(c.inspect(&id)["RepoTags"], serde_json::json!([]));

    // Another repository on the same registry: the layer is mounted, not uploaded.
    let other = format!("{}/other/busybox:v2", registry.addr);
    let pushed = stderr_of(&b, &["push", &target, &other]);
    assert!(pushed.contains("mounted from test/busybox"), "{pushed}");
    let d = Root::new();
    assert_eq!(d.ok(&["pull", &other]).trim(), id);
}

/// A layer blob whose bytes no longer match its digest (a disk fault) never reaches a
/// registry: not recompressed under a new, valid digest, not uploaded as it is.
#[test]
fn push_refuses_a_corrupt_layer_blob_and_publishes_nothing() {
    let registry = Registry::start(RegistryAuth::None);
    let a = Root::new();
    a.busybox();
    let image = a.inspect("busybox");
    let blob = image["Layers"][0]["digest"].as_str().unwrap().to_string();
    let path = a
        .path()
        .join("store/blobs/sha256")
        .join(blob.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&path, &bytes).unwrap();

    for compression in ["gzip", "zstd"] {
        let target = format!("{}/corrupt/{compression}:v1", registry.addr);
        let err = a.fails(&["push", "--compression", compression, "busybox", &target]);
        assert!(err.contains(&blob) && err.contains("is corrupt"), "{err}");
        let listed = Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{target}"))
            .output()
            .unwrap();
        assert!(!listed.status.success(), "{target} was published");
    }
}

/// A layer is compressed (gzip on all cores) while it streams to the registry: what
/// arrives is one ordinary gzip stream of exactly the layer's bytes, under the digest
/// the manifest names; skopeo and a second store read it back. Pushing the image again
/// sends no blob: the registry's access log shows HEADs and no upload.
#[test]
fn streamed_push_is_plain_gzip_of_the_layer_and_a_second_push_uploads_nothing() {
    require_tool("gzip", "gzip");
    let registry = Registry::start_logged();
    let a = Root::new();
    let id = a.busybox();
    let diff_id = a.inspect("busybox")["Layers"][0]["diff_id"]
        .as_str()
        .unwrap()
        .to_string();
    let target = format!("{}/stream/busybox:v1", registry.addr);
    let digest = a.ok(&["push", "busybox", &target]).trim().to_string();

    let raw = raw_manifest(&target);
    assert_eq!(sha256(raw.as_bytes()), digest);
    let manifest: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let stored = std::fs::read(registry.blob_data(&layer)).unwrap();
    assert_eq!(sha256(&stored), layer);
    assert_eq!(manifest["layers"][0]["size"], stored.len() as u64);
    // gzip(1) checks the CRC and length trailer; the output is the layer, byte for byte.
    let mut gunzip = Command::new("gzip")
        .args(["-dc"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = gunzip.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&stored).unwrap());
    let out = gunzip.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success(), "gzip -d refused the pushed layer");
    assert_eq!(sha256(&out.stdout), diff_id);

    // skopeo copies it out (verifying every digest); a second store pulls and runs it.
    let oci = tempfile::tempdir().unwrap();
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{target}"),
        &format!("oci:{}:v1", oci.path().display()),
    ]);
    let b = Root::new();
    assert_eq!(b.ok(&["pull", &target]).trim(), id);
    assert_eq!(b.inspect(&target)["Layers"][0]["diff_id"], diff_id.as_str());
    assert_busybox_runs(&b.first_layer_dir(&target));
    assert_eq!(
        registry.open_uploads("stream/busybox"),
        Vec::<String>::new()
    );

    let uploads = |log: &str| {
        log.lines()
            .filter(|l| l.contains("/blobs/uploads/") && !l.contains("\"HEAD "))
            .count()
    };
    let before = registry.log();
    assert!(
        uploads(&before) > 0,
        "the access log shows no upload: {before}"
    );
    assert_eq!(a.ok(&["push", "busybox", &target]).trim(), digest);
    let after = registry.log();
    let new = &after[before.len()..];
    assert_eq!(uploads(new), 0, "the second push uploaded: {new}");
    assert!(
        new.contains(&format!("HEAD /v2/stream/busybox/blobs/{layer}")),
        "{new}"
    );
}

/// `run` of an image that is not in the store pulls it, as Docker does; `--pull never`
/// refuses instead and `--pull always` fetches even when it is there.
#[test]
fn run_pulls_a_missing_image_unless_told_never() {
    let registry = Registry::start(RegistryAuth::None);
    let a = Root::new();
    a.busybox();
    let target = format!("{}/runpull/busybox:v1", registry.addr);
    a.ok(&["push", "busybox", &target]);

    let b = Root::new();
    let refused = b.run(&["run", "--rm", "--pull", "never", &target, "true"]);
    assert_eq!(refused.status.code(), Some(125));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("--pull never"), "{err}");
    assert_eq!(b.blob_count(), 0);

    let ran = b.run(&["run", "--rm", &target, "echo", "pulled-and-ran"]);
    let err = String::from_utf8_lossy(&ran.stderr);
    assert!(ran.status.success(), "{err}");
    assert_eq!(
        String::from_utf8_lossy(&ran.stdout).trim(),
        "pulled-and-ran"
    );
    assert!(err.contains("Unable to find image"), "{err}");

    // Present now: no pull; with --pull always the registry is asked again.
    let again = b.run(&["run", "--rm", &target, "true"]);
    assert!(!String::from_utf8_lossy(&again.stderr).contains("Unable to find"));
    let always = b.run(&["run", "--rm", "--pull", "always", &target, "true"]);
    let err = String::from_utf8_lossy(&always.stderr);
    assert!(always.status.success(), "{err}");
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn push_with_zstd_compression_is_pulled_back() {
    let registry = Registry::start(RegistryAuth::None);
    let a = Root::new();
    let id = a.busybox();
    let target = format!("{}/test/zbox:v1", registry.addr);
    a.ok(&["push", "--compression", "zstd", "busybox", &target]);
    let raw = raw_manifest(&target);
    assert!(
        raw.contains("application/vnd.oci.image.layer.v1.tar+zstd"),
        "{raw}"
    );
    let b = Root::new();
    assert_eq!(b.ok(&["pull", &target]).trim(), id);
    assert_busybox_runs(&b.first_layer_dir(&target));
    // The push cache remembers the compressed layer until the layer leaves the store.
    assert_eq!(
        a.entries("pushcache").len(),
        1,
        "{:?}",
        a.entries("pushcache")
    );
    a.ok(&["image", "rm", "busybox"]);
    let out = a.ok(&["gc"]);
    assert!(out.contains("removed 1 push cache entries"), "{out}");
    assert!(a.entries("pushcache").is_empty());
}

#[test]
fn images_pushed_by_skopeo_are_pulled_and_run() {
    let registry = Registry::start(RegistryAuth::None);
    let a = Root::new();
    let id = a.busybox();
    let source = format!("oci:{}/store:busybox:latest", a.path().display());
    // As OCI (uncompressed layer, as we store it) and as Docker v2 (gzip-compressed).
    for (tag, extra) in [("oci", None), ("docker", Some("--format=v2s2"))] {
        let target = format!("{}/skopeo/busybox:{tag}", registry.addr);
        let mut args = vec!["copy", "--quiet", "--dest-tls-verify=false"];
        args.extend(extra);
        let dest = format!("docker://{target}");
        args.extend([source.as_str(), dest.as_str()]);
        skopeo(&args);
        let b = Root::new();
        assert_eq!(b.ok(&["pull", &target]).trim(), id, "{tag}");
        let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &dest]);
        assert_eq!(
            b.inspect(&target)["Digest"],
            sha256(raw.as_bytes()),
            "{tag}"
        );
        assert_busybox_runs(&b.first_layer_dir(&target));
    }
}

#[test]
fn pull_picks_the_host_platform_from_an_index() {
    let registry = Registry::start(RegistryAuth::None);
    let a = Root::new();
    let id = a.busybox();
    let single = format!("{}/multi/busybox:single", registry.addr);
    let digest = a.ok(&["push", "busybox", &single]).trim().to_string();
    let raw = raw_manifest(&single);
    // A second manifest (zstd layers) stands in for another platform's image.
    let other = format!("{}/multi/busybox:other", registry.addr);
    let other_digest = a
        .ok(&["push", "--compression", "zstd", "busybox", &other])
        .trim()
        .to_string();
    let other_raw = raw_manifest(&other);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": other_digest, "size": other_raw.len(),
             "platform": {"os": "linux", "architecture": "s390x"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": digest, "size": raw.len(),
             "platform": {"os": "linux", "architecture": "amd64"}},
        ],
    });
    let url = format!("http://{}/v2/multi/busybox/manifests/all", registry.addr);
    let response = reqwest::blocking::Client::new()
        .put(url)
        .header("Content-Type", "application/vnd.oci.image.index.v1+json")
        .body(index.to_string())
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 201, "{:?}", response.text());
    let b = Root::new();
    let multi = format!("{}/multi/busybox:all", registry.addr);
    assert_eq!(b.ok(&["pull", &multi]).trim(), id);
    assert_eq!(b.inspect(&multi)["Digest"], digest.as_str());
}

#[test]
fn pull_failures_say_what_failed_and_leave_the_store_clean() {
    let registry = Registry::start(RegistryAuth::None);
    let a = Root::new();
    a.busybox();
    let target = format!("{}/test/busybox:v1", registry.addr);
    a.ok(&["push", "busybox", &target]);
    let b = Root::new();

    let err = b.fails(&["pull", &format!("{}/test/missing:v1", registry.addr)]);
    assert!(
        err.contains("not found") && err.contains("test/missing"),
        "{err}"
    );
    b.assert_empty();
    let err = b.fails(&["pull", &format!("{}/test/busybox:nope", registry.addr)]);
    assert!(err.contains("not found"), "{err}");
    b.assert_empty();

    // The registry serves a different (valid gzip) layer than the manifest names.
    let plain = target.clone();
    let manifest: serde_json::Value = serde_json::from_str(&raw_manifest(&target)).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let mut other = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    {
        let mut tar = tar::Builder::new(&mut other);
        let mut header = tar::Header::new_ustar();
        header.set_size(4);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        tar.append_data(&mut header, "evil", &b"evil"[..]).unwrap();
        tar.finish().unwrap();
    }
    std::fs::write(registry.blob_data(layer), other.finish().unwrap()).unwrap();
    let err = b.fails(&["pull", &plain]);
    assert!(err.contains(layer) && err.contains("hashes to"), "{err}");
    b.assert_empty();

    let nobody = format!("127.0.0.1:{}/test/busybox:v1", free_port());
    let err = b.fails(&["pull", &nobody]);
    assert!(err.contains("cannot reach registry"), "{err}");
    b.assert_empty();
}

/// A scripted registry serving one image from a root's store, whose layer delivery
/// can be switched to misbehave.
struct ScriptedRegistry {
    server: HttpServer,
    delivery: Arc<Mutex<Delivery>>,
}

impl ScriptedRegistry {
    fn serve(root: &Root, name: &str) -> ScriptedRegistry {
        let image = root.inspect(name);
        let blob = |digest: &str| {
            std::fs::read(
                root.path()
                    .join("store/blobs/sha256")
                    .join(digest.trim_start_matches("sha256:")),
            )
            .unwrap()
        };
        let manifest_digest = image["Digest"].as_str().unwrap().to_string();
        let config_digest = image["Id"].as_str().unwrap().to_string();
        let layer_digest = image["Layers"][0]["digest"].as_str().unwrap().to_string();
        let (manifest, config, layer) = (
            blob(&manifest_digest),
            blob(&config_digest),
            blob(&layer_digest),
        );
        let delivery = Arc::new(Mutex::new(Delivery::Whole));
        let mode = delivery.clone();
        let handler = move |request: &Request| -> Response {
            let path = request.path();
            if path == "/v2/" {
                return Response::new(200, "application/json", b"{}".to_vec());
            }
            if path == "/v2/app/manifests/v1" {
                return Response::new(
                    200,
                    "application/vnd.oci.image.manifest.v1+json",
                    manifest.clone(),
                );
            }
            if path == format!("/v2/app/blobs/{config_digest}") {
                return Response::new(200, "application/octet-stream", config.clone());
            }
            if path == format!("/v2/app/blobs/{layer_digest}") {
                let mut response = Response::new(200, "application/octet-stream", layer.clone());
                response.delivery = *mode.lock().unwrap();
                return response;
            }
            Response::new(
                404,
                "application/json",
                br#"{"errors":[{"code":"NOT_FOUND","message":"no"}]}"#.to_vec(),
            )
        };
        ScriptedRegistry {
            server: HttpServer::start(Arc::new(handler)),
            delivery,
        }
    }

    fn reference(&self) -> String {
        format!("{}/app:v1", self.server.addr)
    }

    fn set(&self, delivery: Delivery) {
        *self.delivery.lock().unwrap() = delivery;
    }
}

#[test]
fn a_registry_that_goes_away_mid_download_leaves_nothing() {
    let a = Root::new();
    let id = a.busybox();
    let scripted = ScriptedRegistry::serve(&a, "busybox");
    scripted.set(Delivery::HalfThenClose);
    let b = Root::new();
    let err = b.fails(&["pull", &scripted.reference()]);
    assert!(
        err.contains("cannot pull") && err.contains("layer"),
        "{err}"
    );
    b.assert_empty();
    scripted.set(Delivery::Whole);
    assert_eq!(b.ok(&["pull", &scripted.reference()]).trim(), id);
}

#[test]
fn a_pull_killed_mid_download_is_reclaimed_and_can_be_repeated() {
    let a = Root::new();
    let id = a.busybox();
    let scripted = ScriptedRegistry::serve(&a, "busybox");
    scripted.set(Delivery::HalfThenHang);
    let b = Root::new();
    // Create the store first, so the only temp entries are the pull's.
    b.assert_empty();
    let mut child = b
        .cmd(&["pull", &scripted.reference()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the layer is being written (a temp entry exists, and none is still
    // being made: a `.new-` entry killed before its lock is kept for a minute), then
    // kill -9.
    let writing = wait_for(60, || {
        assert!(child.try_wait().unwrap().is_none(), "the pull ended early");
        let entries = b.entries("tmp");
        !entries.is_empty() && !entries.iter().any(|e| e.starts_with(".new-"))
    });
    assert!(writing, "the pull never started writing");
    // Time to reach the hang (no state shows it): a kill while it makes another entry
    // would leave a `.new-` one, which reclaim rightly keeps for a minute.
    std::thread::sleep(Duration::from_millis(200));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !b.entries("tmp").is_empty(),
        "the killed pull should leave temp entries"
    );
    // The next command reclaims what the killed pull left.
    b.assert_empty();
    scripted.set(Delivery::Whole);
    assert_eq!(b.ok(&["pull", &scripted.reference()]).trim(), id);
    assert_busybox_runs(&b.first_layer_dir(&scripted.reference()));
}

#[test]
fn basic_auth_login_push_pull_logout() {
    let registry = Registry::start(RegistryAuth::Htpasswd {
        user: "alice".into(),
        password: "s3cret-pw".into(),
    });
    let a = Root::new();
    let id = a.busybox();
    let target = format!("{}/private/busybox:v1", registry.addr);

    let err = a.fails(&["push", "busybox", &target]);
    assert!(
        err.contains(&format!("mycontainer login {}", registry.addr)),
        "{err}"
    );
    let err = a.fails(&["login", "-u", "alice", "-p", "wrong", &registry.addr]);
    assert!(
        err.contains("cannot log in") && err.contains("alice"),
        "{err}"
    );
    assert!(!a.path().join("auth.json").exists());

    let mut login = a
        .cmd(&["login", "-u", "alice", "--password-stdin", &registry.addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    login
        .stdin
        .take()
        .unwrap()
        .write_all(b"s3cret-pw\n")
        .unwrap();
    let out = login.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Login Succeeded"
    );
    let auth_file = a.path().join("auth.json");
    let mode = std::fs::metadata(&auth_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let auth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&auth_file).unwrap()).unwrap();
    assert_eq!(
        auth["auths"][registry.addr.as_str()]["auth"],
        STANDARD.encode("alice:s3cret-pw")
    );

    a.ok(&["push", "busybox", &target]);
    skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        "alice:s3cret-pw",
        &format!("docker://{target}"),
    ]);

    // Another root without a login, but with Docker's config.json: that is used.
    let b = Root::new();
    let err = b.fails(&["pull", &target]);
    assert!(err.contains("login"), "{err}");
    b.assert_empty();
    // A stored password that is wrong: one clear line, nothing stored.
    std::fs::write(
        b.path().join("auth.json"),
        serde_json::json!({"auths": {registry.addr.as_str(): {"auth": STANDARD.encode("alice:stale")}}})
            .to_string(),
    )
    .unwrap();
    let err = b.fails(&["pull", &target]);
    assert!(
        err.contains("rejected the credentials of user \"alice\""),
        "{err}"
    );
    b.assert_empty();
    b.ok(&["logout", &registry.addr]);
    let docker_config = b.path().join("docker-config");
    std::fs::create_dir(&docker_config).unwrap();
    let config = serde_json::json!({"auths": {format!("http://{}", registry.addr): {"auth": STANDARD.encode("alice:s3cret-pw")}}});
    std::fs::write(docker_config.join("config.json"), config.to_string()).unwrap();
    let out = b
        .cmd(&["pull", &target])
        .env("DOCKER_CONFIG", &docker_config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), id);

    let out = a.ok(&["logout", &registry.addr]);
    assert!(out.contains("Removing login credentials"), "{out}");
    let auth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&auth_file).unwrap()).unwrap();
    assert_eq!(auth["auths"], serde_json::json!({}));
    a.ok(&["image", "rm", "busybox"]);
    let err = a.fails(&["pull", &target]);
    assert!(err.contains("login"), "{err}");
}

#[test]
fn token_auth_login_push_pull() {
    let tokens = TokenServer::start("bob", "hunter2-hunter2");
    let registry = Registry::start(RegistryAuth::Token {
        realm: tokens.realm(),
        cert: tokens.cert.clone(),
    });
    let a = Root::new();
    let id = a.busybox();
    let target = format!("{}/tok/busybox:v1", registry.addr);

    let err = a.fails(&["push", "busybox", &target]);
    assert!(err.contains("login"), "{err}");
    let err = a.fails(&["login", "-u", "bob", "-p", "nope", &registry.addr]);
    assert!(err.contains("rejected the credentials"), "{err}");
    assert!(!a.path().join("auth.json").exists());
    a.ok(&[
        "login",
        "-u",
        "bob",
        "-p",
        "hunter2-hunter2",
        &registry.addr,
    ]);

    a.ok(&["push", "busybox", &target]);
    a.ok(&["image", "rm", "busybox"]);
    assert_eq!(a.ok(&["pull", &target]).trim(), id);

    // Wrong credentials from Docker's config: the token server refuses them.
    let b = Root::new();
    let docker_config = b.path().join("docker-config");
    std::fs::create_dir(&docker_config).unwrap();
    let config = serde_json::json!({"auths": {registry.addr.as_str(): {"username": "bob", "password": "stale"}}});
    std::fs::write(docker_config.join("config.json"), config.to_string()).unwrap();
    let out = b
        .cmd(&["pull", &target])
        .env("DOCKER_CONFIG", &docker_config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("rejected the credentials of user \"bob\""),
        "{err}"
    );
    b.assert_empty();
    assert_busybox_runs(&a.first_layer_dir(&target));

    let requests = tokens.requests.lock().unwrap().clone();
    let asked = |scope: &str| {
        requests.iter().any(|q| {
            q.contains(&("scope".to_string(), scope.to_string()))
                && q.contains(&("service".to_string(), TOKEN_SERVICE.to_string()))
        })
    };
    assert!(asked("repository:tok/busybox:pull,push"), "{requests:?}");
    assert!(asked("repository:tok/busybox:pull"), "{requests:?}");
    drop(registry);
}

/// An IPv4 address of this machine that is not loopback, if it has one.
/// A non-loopback address in the test's own network namespace (added to its `lo`; the
/// VM has no dummy driver), so no packet ever reaches the host's network.
fn non_loopback_address() -> String {
    private_network();
    let status = Command::new("ip")
        .args(["addr", "add", "10.213.7.1/32", "dev", "lo"])
        .status()
        .unwrap();
    assert!(status.success(), "ip addr add 10.213.7.1/32 dev lo");
    "10.213.7.1".to_string()
}

#[test]
fn registries_off_loopback_need_insecure_for_plain_http() {
    let host = non_loopback_address();
    let registry = Registry::start_on(&host, RegistryAuth::None);
    let a = Root::new();
    let id = a.busybox();
    let target = format!("{}/remote/busybox:v1", registry.addr);
    // Without --insecure we speak HTTPS, which a plain-HTTP registry cannot answer.
    let err = a.fails(&["push", "busybox", &target]);
    assert!(err.contains(&format!("https://{}", registry.addr)), "{err}");
    a.ok(&["push", "--insecure", "busybox", &target]);
    let b = Root::new();
    let err = b.fails(&["pull", &target]);
    assert!(err.contains("https://"), "{err}");
    b.assert_empty();
    assert_eq!(b.ok(&["pull", "--insecure", &target]).trim(), id);
}

#[test]
fn anonymous_tokens_allow_pull_but_not_push() {
    let tokens = TokenServer::start_with("bob", "hunter2-hunter2", true);
    let registry = Registry::start(RegistryAuth::Token {
        realm: tokens.realm(),
        cert: tokens.cert.clone(),
    });
    let a = Root::new();
    let id = a.busybox();
    let target = format!("{}/public/busybox:v1", registry.addr);
    let err = a.fails(&["push", "busybox", &target]);
    assert!(
        err.contains("denied access to public/busybox") && err.contains("login"),
        "{err}"
    );
    a.ok(&[
        "login",
        "-u",
        "bob",
        "-p",
        "hunter2-hunter2",
        &registry.addr,
    ]);
    a.ok(&["push", "busybox", &target]);

    let b = Root::new();
    assert_eq!(b.ok(&["pull", &target]).trim(), id);
    let missing = format!("{}/public/missing:v1", registry.addr);
    let err = b.fails(&["pull", &missing]);
    assert!(err.contains("not found"), "{err}");
    b.ok(&["image", "tag", &target, "mine:v1"]);
    let err = b.fails(&[
        "push",
        "mine:v1",
        &format!("{}/public/copy:v1", registry.addr),
    ]);
    assert!(err.contains("denied access"), "{err}");
}

/// Uploads an image from a root's store exactly as stored (uncompressed layer and all)
/// with plain HTTP requests: what a tool that does not compress would push.
fn upload_verbatim(root: &Root, name: &str, registry: &str, repository: &str, tag: &str) {
    let image = root.inspect(name);
    let blob = |digest: &str| {
        std::fs::read(
            root.path()
                .join("store/blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    let http = reqwest::blocking::Client::new();
    let manifest_digest = image["Digest"].as_str().unwrap();
    let mut blobs = vec![image["Id"].as_str().unwrap().to_string()];
    for layer in image["Layers"].as_array().unwrap() {
        blobs.push(layer["digest"].as_str().unwrap().to_string());
    }
    for digest in blobs {
        let start = http
            .post(format!("http://{registry}/v2/{repository}/blobs/uploads/"))
            .send()
            .unwrap();
        assert_eq!(start.status().as_u16(), 202);
        let location = start.headers()["Location"].to_str().unwrap().to_string();
        let separator = if location.contains('?') { '&' } else { '?' };
        let put = http
            .put(format!("{location}{separator}digest={digest}"))
            .body(blob(&digest))
            .send()
            .unwrap();
        assert_eq!(put.status().as_u16(), 201, "{:?}", put.text());
    }
    let put = http
        .put(format!("http://{registry}/v2/{repository}/manifests/{tag}"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(blob(manifest_digest))
        .send()
        .unwrap();
    assert_eq!(put.status().as_u16(), 201, "{:?}", put.text());
}

#[test]
fn uncompressed_layers_are_pulled_with_their_digests_intact() {
    let registry = Registry::start(RegistryAuth::None);
    let a = Root::new();
    let id = a.busybox();
    let stored = a.inspect("busybox");
    assert_eq!(
        stored["Layers"][0]["media_type"],
        "application/vnd.oci.image.layer.v1.tar"
    );
    upload_verbatim(&a, "busybox", &registry.addr, "plain/busybox", "v1");
    let b = Root::new();
    let target = format!("{}/plain/busybox:v1", registry.addr);
    assert_eq!(b.ok(&["pull", &target]).trim(), id);
    let pulled = b.inspect(&target);
    assert_eq!(pulled["Digest"], stored["Digest"]);
    assert_eq!(pulled["Layers"], stored["Layers"]);
    assert_busybox_runs(&b.first_layer_dir(&target));
}
