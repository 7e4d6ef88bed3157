//! Helpers shared by the registry and archive tests: private state roots, real
//! `docker-registry` (distribution v2) processes on random loopback ports (plain,
//! htpasswd, token auth), a token server issuing RS256 JWTs signed with openssl, and a
//! tiny scripted HTTP server for failures a real registry will not produce on demand.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;

#[path = "../common/netns.rs"]
mod netns;
pub use netns::private_network;
#[path = "../common/wait.rs"]
mod wait;
#[allow(unused_imports)]
pub use wait::{alive, slowdown, wait_for};

pub const BIN: &str = env!("CARGO_BIN_EXE_mycontainer");

/// Fails the test with the package to install when a tool is missing.
pub fn require_tool(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{tool} is not installed: install the Debian package {package} (apt-get install {package})"
    );
}

/// `skopeo <args...>`, insisting on success; returns stdout.
pub fn skopeo(args: &[&str]) -> String {
    require_tool("skopeo", "skopeo");
    let out = Command::new("skopeo").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn tool_exists(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A private state root, removed at the end of the test.
pub struct Root {
    dir: tempfile::TempDir,
}

impl Default for Root {
    fn default() -> Self {
        Self::new()
    }
}

impl Root {
    pub fn new() -> Root {
        private_network();
        Root {
            dir: tempfile::Builder::new()
                .prefix("mycontainer-regtest-")
                .tempdir()
                .unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command
            .arg("--root")
            .arg(self.path())
            .args(args)
            // Never pick up the host's Docker credentials.
            .env("DOCKER_CONFIG", self.path().join("no-docker-config"));
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs and insists on success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs and insists on failure (exit 1, as Docker for every verb but `run`) with
    /// exactly one error line; returns it.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?} should fail: {err}");
        let errors: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with("mycontainer:"))
            .collect();
        assert_eq!(errors.len(), 1, "want one error line, got: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "want only the error: {err}"
        );
        errors[0].to_string()
    }

    /// Builds the busybox image from the host's busybox-static; returns its id.
    pub fn busybox(&self) -> String {
        require_tool("busybox", "busybox-static");
        self.ok(&["image", "build", "busybox"]).trim().to_string()
    }

    /// `image inspect` of one image as JSON.
    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let out = self.ok(&["image", "inspect", name]);
        let list: serde_json::Value = serde_json::from_str(&out).unwrap();
        list[0].clone()
    }

    /// Files under `<root>/store/blobs/sha256`.
    pub fn blob_count(&self) -> usize {
        std::fs::read_dir(self.path().join("store/blobs/sha256"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Entries under a directory of the root (`tmp`, `layers`).
    pub fn entries(&self, dir: &str) -> Vec<String> {
        std::fs::read_dir(self.path().join(dir))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Nothing named, nothing stored, nothing left in tmp (after a command reclaimed it).
    pub fn assert_empty(&self) {
        let listed = self.ok(&["image", "ls", "-q"]);
        assert_eq!(listed.trim(), "", "images left: {listed}");
        assert_eq!(self.blob_count(), 0, "blobs left");
        assert_eq!(self.entries("layers"), Vec::<String>::new(), "layers left");
        assert_eq!(self.entries("tmp"), Vec::<String>::new(), "temp files left");
    }

    /// The unpacked directory of an image's only (or first) layer.
    pub fn first_layer_dir(&self, name: &str) -> PathBuf {
        let image = self.inspect(name);
        let diff_id = image["Layers"][0]["diff_id"].as_str().unwrap();
        self.path()
            .join("layers")
            .join(diff_id.trim_start_matches("sha256:"))
    }
}

/// Runs `/bin/busybox echo` from an unpacked layer (chroot): the pulled image works.
pub fn assert_busybox_runs(layer: &Path) {
    let out = Command::new("chroot")
        .arg(layer)
        .args(["/bin/busybox", "echo", "hello from the layer"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "hello from the layer",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn free_port() -> u16 {
    private_network();
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub enum RegistryAuth {
    None,
    /// htpasswd (bcrypt) with one user.
    Htpasswd {
        user: String,
        password: String,
    },
    /// Distribution's token auth, trusting the token server's certificate.
    Token {
        realm: String,
        cert: PathBuf,
    },
}

/// Service and issuer names the token server and the registry agree on.
pub const TOKEN_SERVICE: &str = "mycontainer-test-registry";
pub const TOKEN_ISSUER: &str = "mycontainer-test-issuer";

/// A `docker-registry` process on 127.0.0.1 with its storage in a temp dir; killed and
/// removed on drop.
pub struct Registry {
    child: Child,
    pub addr: String,
    dir: tempfile::TempDir,
}

impl Registry {
    pub fn start(auth: RegistryAuth) -> Registry {
        Self::start_on("127.0.0.1", auth)
    }

    /// Like `start`, with the registry's access log (one line per request) in `log()`.
    pub fn start_logged() -> Registry {
        Self::start_with("127.0.0.1", RegistryAuth::None, true)
    }

    /// Listens on `host` (an address of this machine) instead of loopback.
    pub fn start_on(host: &str, auth: RegistryAuth) -> Registry {
        Self::start_with(host, auth, false)
    }

    fn start_with(host: &str, auth: RegistryAuth, access_log: bool) -> Registry {
        private_network();
        require_tool("docker-registry", "docker-registry");
        let dir = tempfile::Builder::new()
            .prefix("mycontainer-registry-")
            .tempdir()
            .unwrap();
        let auth_yaml = match &auth {
            RegistryAuth::None => String::new(),
            RegistryAuth::Htpasswd { user, password } => {
                require_tool("htpasswd", "apache2-utils");
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, password])
                    .output()
                    .unwrap();
                assert!(out.status.success());
                let file = dir.path().join("htpasswd");
                std::fs::write(&file, &out.stdout).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: mycontainer-test\n    path: {}\n",
                    file.display()
                )
            }
            RegistryAuth::Token { realm, cert } => format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                cert.display()
            ),
        };
        // A port picked now may be taken before the registry binds it: try a few.
        for _ in 0..5 {
            let port = free_port();
            let addr = format!("{host}:{port}");
            let config = format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: {}\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{auth_yaml}",
                !access_log,
                dir.path().join("data").display()
            );
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).unwrap();
            let log = std::fs::File::create(dir.path().join("log")).unwrap();
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config_path)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            if wait_ready(&mut child, &addr) {
                return Registry { child, addr, dir };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
        panic!("docker-registry did not start: {log}");
    }

    /// Where the registry keeps a blob's bytes (distribution's filesystem driver).
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Upload sessions the registry holds open for `repository` (none once every
    /// upload was committed or cancelled).
    pub fn open_uploads(&self, repository: &str) -> Vec<String> {
        let dir = self
            .dir
            .path()
            .join("data/docker/registry/v2/repositories")
            .join(repository)
            .join("_uploads");
        match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

/// Waits until the registry answers HTTP (false if it exits: the port was taken). The
/// bound (stretched by the slowdown) only ends a registry that never comes up: a slow
/// start on a loaded machine is not mistaken for a taken port.
fn wait_ready(child: &mut Child, addr: &str) -> bool {
    let mut exited = false;
    let answered = wait_for(60, || {
        exited = exited || matches!(child.try_wait(), Ok(Some(_)));
        exited || answers_http(addr)
    });
    answered && !exited
}

fn answers_http(addr: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    let request = format!("GET /v2/ HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let mut answer = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1")
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One parsed HTTP request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or(&self.target)
    }

    /// Query parameters, decoded.
    pub fn query(&self) -> Vec<(String, String)> {
        let Some((_, query)) = self.target.split_once('?') else {
            return Vec::new();
        };
        reqwest::Url::parse(&format!("http://x/?{query}"))
            .unwrap()
            .query_pairs()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

/// How a scripted response misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Whole,
    /// Sends the headers and half the body, then closes the connection.
    HalfThenClose,
    /// Sends the headers and half the body, then waits until the server stops.
    HalfThenHang,
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub delivery: Delivery,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body,
            delivery: Delivery::Whole,
        }
    }
}

type Handler = dyn Fn(&Request) -> Response + Send + Sync;

/// A small threaded HTTP/1.1 server (one response per connection) on a random port.
pub struct HttpServer {
    pub addr: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    pub fn start(handler: Arc<Handler>) -> HttpServer {
        private_network();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop_flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let handler = handler.clone();
                let stop = stop_flag.clone();
                std::thread::spawn(move || serve(stream, &*handler, &stop));
            }
        });
        HttpServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(stream: TcpStream, handler: &Handler, stop: &AtomicBool) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return;
    };
    let mut request = Request {
        method: method.to_string(),
        target: target.to_string(),
        headers: Vec::new(),
    };
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 {
            return;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':') {
            request
                .headers
                .push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let length: usize = request
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let response = handler(&request);
    let mut stream = stream;
    let mut head = format!("HTTP/1.1 {} X\r\n", response.status);
    for (k, v) in &response.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        response.body.len()
    ));
    let _ = stream.write_all(head.as_bytes());
    let body: &[u8] = if request.method == "HEAD" {
        &[]
    } else {
        &response.body
    };
    match response.delivery {
        Delivery::Whole => {
            let _ = stream.write_all(body);
        }
        Delivery::HalfThenClose => {
            let _ = stream.write_all(&body[..body.len() / 2]);
        }
        Delivery::HalfThenHang => {
            let _ = stream.write_all(&body[..body.len() / 2]);
            let _ = stream.flush();
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Decoded query parameters of one request.
pub type Query = Vec<(String, String)>;

/// A token server for distribution's token auth: checks Basic credentials and issues
/// RS256 JWTs (signed by `openssl dgst`) carrying the certificate in `x5c`, granting
/// whatever repository scopes were asked for. Records each request's query.
pub struct TokenServer {
    pub http: HttpServer,
    pub cert: PathBuf,
    pub requests: Arc<Mutex<Vec<Query>>>,
    _dir: tempfile::TempDir,
}

impl TokenServer {
    pub fn start(user: &str, password: &str) -> TokenServer {
        Self::start_with(user, password, false)
    }

    /// With `anonymous_pull`, requests without credentials get a token (in
    /// `access_token`, as Docker Hub also sends it) granting only pull.
    pub fn start_with(user: &str, password: &str, anonymous_pull: bool) -> TokenServer {
        require_tool("openssl", "openssl");
        let dir = tempfile::Builder::new()
            .prefix("mycontainer-token-")
            .tempdir()
            .unwrap();
        let key = dir.path().join("key.pem");
        let cert = dir.path().join("cert.pem");
        let status = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=mycontainer-test-token"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "openssl req failed");
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()
            .unwrap()
            .stdout;
        let x5c = STANDARD.encode(der);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        let expected = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
        let user = user.to_string();
        let handler = move |request: &Request| -> Response {
            let query = request.query();
            recorded.lock().unwrap().push(query.clone());
            if request.path() != "/token" {
                return Response::new(404, "text/plain", b"not found".to_vec());
            }
            let anonymous = request.header("authorization").is_none();
            if !(anonymous && anonymous_pull)
                && request.header("authorization") != Some(expected.as_str())
            {
                return Response::new(
                    401,
                    "application/json",
                    br#"{"details":"bad credentials"}"#.to_vec(),
                );
            }
            let access: Vec<serde_json::Value> = query
                .iter()
                .filter(|(k, _)| k == "scope")
                .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
                .filter_map(|scope| {
                    let mut parts = scope.splitn(3, ':');
                    let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                    let actions: Vec<&str> = actions
                        .split(',')
                        .filter(|a| !anonymous || *a == "pull")
                        .collect();
                    Some(serde_json::json!({"type": kind, "name": name, "actions": actions}))
                })
                .collect();
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5c": [x5c]});
            let claims = serde_json::json!({
                "iss": TOKEN_ISSUER, "sub": if anonymous { "" } else { user.as_str() }, "aud": TOKEN_SERVICE,
                "exp": now + 300, "nbf": now - 10, "iat": now,
                "jti": format!("{now}-{}", std::process::id()),
                "access": access,
            });
            let signing_input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            let signature = sign(&key, signing_input.as_bytes());
            let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature));
            let body = if anonymous {
                serde_json::json!({"access_token": token, "expires_in": 300})
            } else {
                serde_json::json!({"token": token, "expires_in": 300})
            };
            Response::new(200, "application/json", body.to_string().into_bytes())
        };
        TokenServer {
            http: HttpServer::start(Arc::new(handler)),
            cert,
            requests,
            _dir: dir,
        }
    }

    pub fn realm(&self) -> String {
        format!("http://{}/token", self.http.addr)
    }
}

fn sign(key: &Path, input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl dgst -sign failed");
    out.stdout
}
