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
pub mod network;
mod paths;
pub mod policy;
mod reclaim;
mod record;
pub mod remove;
pub mod run;
pub mod spec;
pub mod state;
pub mod user;

pub use names::validate_name;
pub use paths::cgroup_name;
pub use reclaim::{reclaim_orphans, Reclaimed};
pub use record::{create, discard, find, write_private, NoSuchContainer, Record};
pub use state::{State, Status};
