//! Fixture directories laid out like a cgroup filesystem, for the backends' unit tests:
//! the directories and (empty) files the kernel would show, in a tempdir, so writing
//! limits is checked without root or a real cgroupfs.

use std::path::{Path, PathBuf};

use super::detect::Hierarchy;
use super::resources::{CpuMax, Limit, Limits};

/// Creates `dir` and, inside it, each of `files` with `content`.
pub fn lay_out(dir: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, content) in files {
        std::fs::write(dir.join(name), content).unwrap();
    }
}

/// Creates `dir` with each of `files` empty, as the kernel shows a new cgroup's files.
pub fn empty_files(dir: &Path, files: &[&str]) {
    let files: Vec<(&str, &str)> = files.iter().map(|f| (*f, "")).collect();
    lay_out(dir, &files);
}

/// What a backend wrote to `file` (the kernel shows each value on its own; a regular
/// file keeps exactly the last write).
pub fn written(file: &Path) -> String {
    std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// A v1 hierarchy mounted at `root/dir` carrying `controllers`.
pub fn hierarchy(root: &Path, dir: &str, controllers: &[&str]) -> Hierarchy {
    let mount_point: PathBuf = root.join(dir);
    std::fs::create_dir_all(&mount_point).unwrap();
    Hierarchy {
        mount_point,
        controllers: controllers.iter().map(|c| c.to_string()).collect(),
        mount_data: controllers.join(","),
    }
}

/// One of every limit a backend writes: 64 MiB memory, 96 MiB memory and swap, half a
/// CPU, 512 shares, cpus 0-1 on node 0, 100 pids.
pub fn every_limit() -> Limits {
    Limits {
        memory: Some(Limit::Value(64 << 20)),
        memory_and_swap: Some(Limit::Value(96 << 20)),
        cpu_max: Some(CpuMax {
            quota: Limit::Value(50_000),
            period: 100_000,
        }),
        cpu_shares: Some(512),
        cpuset_cpus: Some("0-1".into()),
        cpuset_mems: Some("0".into()),
        pids: Some(Limit::Value(100)),
        devices: None,
    }
}
