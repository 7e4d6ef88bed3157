//! The `probe` helper (probe.c): built once per test run with `gcc -static` and copied
//! into a test's rootfs, so tests can make raw syscalls inside a container.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Builds probe once (in the test target's temp dir) and returns its path.
pub fn binary() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/probe/probe.c");
        let out =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("probe-{}", std::process::id()));
        let status = Command::new("gcc")
            .args(["-static", "-O1", "-o"])
            .arg(&out)
            .arg(&source)
            .status()
            .expect("gcc is needed to build the test probe: apt-get install gcc libc6-dev");
        assert!(status.success(), "cannot build {}", source.display());
        out
    })
}

/// Puts probe at /bin/probe in `rootfs`.
pub fn install(rootfs: &Path) {
    std::fs::copy(binary(), rootfs.join("bin/probe")).unwrap();
}
