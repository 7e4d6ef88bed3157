//! The runtime CLI's record of one container: `<root>/<id>/state.json` (what `create`
//! knew) and `<root>/<id>/start.fifo` (present until `start`). The status is never
//! stored: it is read from the process each time (gone, a zombie or another process
//! with its pid: stopped; its start fifo still there: created; its cgroup frozen:
//! paused; else running).

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::runtime::cgroups::Cgroup;

pub const STATE_FILE: &str = "state.json";
pub const START_FIFO: &str = "start.fifo";
/// The OCI runtime-spec version of the state we print.
pub const OCI_VERSION: &str = "1.2.0";

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Record {
    pub id: String,
    /// 0 while `create` runs.
    pub pid: i32,
    /// The process's start time (field 22 of /proc/PID/stat), so a reused pid is not
    /// taken for the container.
    pub start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub annotations: BTreeMap<String, String>,
    /// The container's cgroup below the hierarchy roots (linux.cgroupsPath resolved,
    /// or mycontainer/rt-<id>).
    pub cgroup: String,
    /// The levels above it that `create` made (nobody else's): removed by `delete`.
    #[serde(default)]
    pub cgroup_parents: Vec<PathBuf>,
    /// config.json's hooks, kept for `start` (poststart) and `delete` (poststop): the
    /// bundle may be gone by then.
    #[serde(default)]
    pub hooks: Option<oci_spec::runtime::Hooks>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Creating,
    Created,
    Running,
    /// Running, its cgroup frozen (`pause`).
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// runc's rule for ids: letters, digits and `_+-.`, not `.` or `..`.
pub fn check_id(id: &str) -> anyhow::Result<()> {
    let valid = !id.is_empty()
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+-.".contains(c));
    if !valid {
        bail!("invalid container id {id:?}: use letters, digits and _+-. only");
    }
    Ok(())
}

pub fn container_dir(root: &Path, id: &str) -> PathBuf {
    root.join(id)
}

/// Creates the state root (0700) and the container's directory; an existing one is an
/// error (the id is taken).
pub fn make_container_dir(root: &Path, id: &str) -> anyhow::Result<PathBuf> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .with_context(|| format!("cannot create the state root {}", root.display()))?;
    let dir = container_dir(root, id);
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => Ok(dir),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!("container {id} already exists: delete it first or pick another id")
        }
        Err(e) => Err(e).with_context(|| format!("cannot create {}", dir.display())),
    }
}

impl Record {
    pub fn load(root: &Path, id: &str) -> anyhow::Result<Record> {
        check_id(id)?;
        let path = container_dir(root, id).join(STATE_FILE);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!("container {id} does not exist")
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        serde_json::from_slice(&text).with_context(|| format!("cannot parse {}", path.display()))
    }

    /// Written whole to a temporary file, then renamed over the old one.
    pub fn save(&self, root: &Path) -> anyhow::Result<()> {
        let dir = container_dir(root, &self.id);
        write_atomic(&dir.join(STATE_FILE), &serde_json::to_vec(self)?)
    }

    pub fn dir(&self, root: &Path) -> PathBuf {
        container_dir(root, &self.id)
    }

    pub fn start_fifo(&self, root: &Path) -> PathBuf {
        self.dir(root).join(START_FIFO)
    }

    pub fn status(&self, root: &Path) -> Status {
        if self.pid == 0 {
            return Status::Creating;
        }
        if !self.alive() {
            return Status::Stopped;
        }
        if self.start_fifo(root).exists() {
            Status::Created
        } else if Cgroup::open(&self.cgroup).is_ok_and(|c| c.is_frozen()) {
            Status::Paused
        } else {
            Status::Running
        }
    }

    /// The container's process still exists as itself (not a zombie, not a reused pid).
    pub fn alive(&self) -> bool {
        match proc_stat(self.pid) {
            Some((state, start_time)) => {
                start_time == self.start_time && state != 'Z' && state != 'X'
            }
            None => false,
        }
    }

    /// The OCI state JSON (runc's, with its extra rootfs, created and owner).
    pub fn oci_state(&self, root: &Path) -> serde_json::Value {
        self.oci_state_as(self.status(root))
    }

    /// The OCI state JSON with `status` (what a hook is told).
    pub fn oci_state_as(&self, status: Status) -> serde_json::Value {
        let pid = if status == Status::Stopped {
            0
        } else {
            self.pid
        };
        serde_json::json!({
            "ociVersion": OCI_VERSION,
            "id": self.id,
            "pid": pid,
            "status": status.as_str(),
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": "",
            "annotations": self.annotations,
        })
    }
}

/// State and start time of process `pid` from /proc/PID/stat.
pub fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 22 overall; `rest` starts at field 3.
    let start_time = fields.nth(22 - 4)?.parse().ok()?;
    Some((state, start_time))
}

/// Writes `data` to `path` through a temporary file renamed over it (0600).
pub fn write_atomic(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(data)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Every container id under the root (directories holding a state file).
pub fn list_ids(root: &Path) -> anyhow::Result<Vec<String>> {
    let entries = match std::fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", root.display())),
    };
    let mut ids: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().join(STATE_FILE).exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_runc_rules() {
        for good in ["a", "web-1", "x_y.z+1"] {
            assert!(check_id(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "a\n"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reads_our_own_start_time() {
        let pid = std::process::id() as i32;
        let (state, start) = proc_stat(pid).unwrap();
        assert!(state == 'R' || state == 'S', "{state}");
        assert!(start > 0);
        assert!(proc_stat(i32::MAX).is_none());
    }
}
