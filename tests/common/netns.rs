//! Each test's own network namespace (shared by tests/common and
//! tests/registry_support, which include this file).

thread_local! {
    static PRIVATE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static SHARED_HOME: std::cell::RefCell<Option<RemoveOnExit>> =
        const { std::cell::RefCell::new(None) };
}

/// Removes the default network's shared home of the thread's namespace when the thread
/// (and with it the namespace and its bridge) goes: a test that ends without `gc` would
/// leave it in /run.
struct RemoveOnExit(std::path::PathBuf);

impl Drop for RemoveOnExit {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The default network's home shared by every state root in the calling thread's
/// network namespace, as src/container/network/shared.rs names it:
/// `/run/mycontainer/net/<the namespace's cookie>`.
#[allow(dead_code)]
pub fn shared_network_home() -> std::path::PathBuf {
    // SAFETY: a plain socket call; the descriptor is closed below.
    let sock = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    assert!(sock >= 0, "socket: {}", std::io::Error::last_os_error());
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cookie`, which we own.
    let rc = unsafe {
        libc::getsockopt(
            sock,
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    let err = std::io::Error::last_os_error();
    // SAFETY: closing the socket opened above.
    unsafe { libc::close(sock) };
    assert_eq!(rc, 0, "SO_NETNS_COOKIE: {err}");
    std::path::Path::new("/run/mycontainer/net").join(cookie.to_string())
}

/// Moves the calling thread into a network namespace of its own with `lo` up, once per
/// thread (a later call keeps the same one, so a registry started first and the
/// containers started after share it). Only this thread and what it starts from now
/// on see it; the rest of the test process keeps its namespace, and no packet of a
/// test ever reaches the host's network.
pub fn private_network() {
    if PRIVATE.with(|p| p.replace(true)) {
        return;
    }
    // A test on the process's main thread would take the whole harness with it.
    // SAFETY: gettid and getpid take no arguments.
    let (tid, pid) = unsafe { (libc::gettid(), libc::getpid()) };
    assert_ne!(
        tid, pid,
        "tests must run on threads of their own (libtest does)"
    );
    // SAFETY: unshare with a flag that only affects the calling thread.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "unshare(CLONE_NEWNET): {}",
        std::io::Error::last_os_error()
    );
    // `lo` up: SIOCSIFFLAGS on any socket of the namespace.
    // SAFETY: a plain socket call; the descriptor is closed below.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    assert!(sock >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads the ifreq we own; the socket is ours.
    let rc = unsafe { libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) };
    let err = std::io::Error::last_os_error();
    // SAFETY: closing the socket opened above.
    unsafe { libc::close(sock) };
    assert_eq!(rc, 0, "bringing up lo: {err}");
    let home = shared_network_home();
    SHARED_HOME.with(|h| *h.borrow_mut() = Some(RemoveOnExit(home)));
}
