//! `--insecure` picks plain HTTP only for a registry that does not speak TLS: a slow
//! HTTPS registry stays HTTPS (the probe gave up after 10 s and fell back to plain HTTP,
//! which then failed against the TLS server). The plain-HTTP case is
//! registry.rs's `registries_off_loopback_need_insecure_for_plain_http`.

mod registry_support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use registry_support::*;

/// A TLS server (python's ssl, a self-signed certificate) on `host` that waits `delay_s`
/// seconds before its first handshake, answers `GET /v2/` with 200 and anything else
/// with a registry's 404 (NAME_UNKNOWN), and logs each request line to its stdout.
struct SlowTls {
    child: Child,
    addr: String,
    lines: std::sync::mpsc::Receiver<String>,
    _dir: tempfile::TempDir,
}

const SERVER: &str = r#"
import socket, ssl, sys, threading, time
host, delay, cert, key = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
s = socket.socket()
s.bind((host, 0))
s.listen(16)
print(s.getsockname()[1], flush=True)
first = [True]
lock = threading.Lock()
def serve(conn):
    with lock:
        slow, first[0] = first[0], False
    if slow:
        time.sleep(delay)
    try:
        tls = ctx.wrap_socket(conn, server_side=True)
        f = tls.makefile("rb")
        while True:
            line = f.readline()
            if not line:
                return
            request = line.decode().strip()
            while f.readline() not in (b"\r\n", b""):
                pass
            print("request " + request, flush=True)
            if request.startswith("GET /v2/ "):
                status, body = "200 OK", b"{}"
            else:
                status, body = "404 Not Found", b'{"errors":[{"code":"NAME_UNKNOWN","message":"slow registry"}]}'
            tls.sendall(("HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (status, len(body))).encode() + body)
    except Exception as e:
        print("error %s" % e, flush=True)
while True:
    conn, _ = s.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"#;

impl SlowTls {
    fn start(host: &str, delay_s: u64) -> SlowTls {
        require_tool("openssl", "openssl");
        require_tool("python3", "python3");
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let out = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=slow-registry", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut child = Command::new("python3")
            .args(["-c", SERVER, host, &delay_s.to_string()])
            .arg(&cert)
            .arg(&key)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut port = String::new();
        stdout.read_line(&mut port).unwrap();
        let addr = format!("{host}:{}", port.trim());
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        SlowTls {
            child,
            addr,
            lines,
            _dir: dir,
        }
    }

    /// The server's lines until `done` holds for them (or 30 s pass): the server prints
    /// a request before it answers it, but the thread that reads its output may not
    /// have passed the line on yet when the client has the answer.
    fn seen_until(&self, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut seen: Vec<String> = Vec::new();
        while !done(&seen) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        seen.extend(self.lines.try_iter());
        seen
    }
}

impl Drop for SlowTls {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A non-loopback address in the test's own network namespace (loopback registries are
/// always plain HTTP, so the probe would not run).
fn non_loopback_address() -> String {
    private_network();
    let status = Command::new("ip")
        .args(["addr", "add", "10.213.8.1/32", "dev", "lo"])
        .status()
        .unwrap();
    assert!(status.success(), "ip addr add 10.213.8.1/32 dev lo");
    "10.213.8.1".to_string()
}

#[test]
fn insecure_keeps_https_for_a_registry_slower_than_the_old_probe_timeout() {
    let host = non_loopback_address();
    // Past the old probe's 10 s; the client's connect timeout is 30 s.
    let server = SlowTls::start(&host, 12);
    let root = Root::new();
    let target = format!("{}/slow/busybox:v1", server.addr);
    let err = root.fails(&["pull", "--insecure", &target]);
    // Spoken over TLS: the registry's own 404 came back, after its slow handshake.
    assert!(err.contains("NAME_UNKNOWN: slow registry"), "{err}");
    let both = |seen: &[String]| {
        seen.iter().any(|l| l.starts_with("request GET /v2/"))
            && seen.iter().any(|l| l.contains("/manifests/v1"))
    };
    let seen = server.seen_until(both);
    assert!(both(&seen), "{seen:?}");
    assert!(!seen.iter().any(|l| l.starts_with("error")), "{seen:?}");
    root.assert_empty();
}
