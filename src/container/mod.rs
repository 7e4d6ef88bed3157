//! Containers: their records (`record.rs`: `<root>/containers/<id>/`), names
//! (`names.rs`), the cleanup after a killed CLI (`reclaim.rs`), Docker's policy and the
//! spec built from an image and flags (`spec/`), and one file per verb.

pub mod commit;
pub mod control;
pub mod detach;
mod env;
pub mod exec;
pub mod gc;
pub mod inspect;
pub mod limits;
pub mod logs;
mod names;
pub mod policy;
mod reclaim;
mod record;
pub mod remove;
pub mod run;
pub mod spec;
pub mod state;
pub mod user;

use std::path::{Path, PathBuf};

pub use names::validate_name;
pub use reclaim::{reclaim_orphans, Reclaimed};
pub use record::{create, discard, find, write_private, Record};
pub use state::{State, Status};

use record::{delete_locked, list_ids, lock_dir};

/// Where the container's root is assembled (the spec's `root.path`, relative to the
/// record); a mount point only inside the container's mount namespace.
pub const MERGED_DIR: &str = "merged";

/// The cgroup of container `id`, relative to the hierarchy root(s).
pub fn cgroup_name(id: &str) -> String {
    format!("mycontainer/{id}")
}

pub(crate) fn containers_dir(root: &Path) -> PathBuf {
    root.join("containers")
}

fn names_dir(root: &Path) -> PathBuf {
    root.join("names")
}
