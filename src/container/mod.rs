//! Containers: their records (`record.rs`: `<root>/containers/<id>/`), names
//! (`names.rs`), the cleanup after a killed CLI (`reclaim.rs`), Docker's policy and the
//! spec built from an image and flags (`spec/`), and one file per verb.

pub mod attach;
pub mod boot;
pub mod check;
pub mod commit;
pub mod control;
pub mod cp;
pub mod detach;
pub mod diff;
mod env;
mod etcfs;
pub mod events;
pub mod exec;
mod fscopy;
pub mod gc;
pub mod handover;
pub mod health;
pub mod inspect;
pub mod limits;
pub mod logs;
mod names;
pub mod network;
mod paths;
pub mod pause;
pub mod policy;
mod privmount;
pub mod prune;
mod reclaim;
mod record;
pub mod remove;
pub mod rename;
pub mod restart;
pub mod run;
mod rundir;
pub mod signals;
pub mod spec;
pub mod state;
pub mod stats;
pub mod step;
pub mod supervisor_log;
pub mod systemd;
pub mod top;
pub mod update;
pub mod usage;
pub mod user;
pub mod volumes;
pub mod wait;

pub use names::validate_name;
pub use reclaim::{find, reclaim_if_unswept, reclaim_orphans, Reclaimed};
pub use record::{create, discard, write_private, NoSuchContainer, Record};
pub use rundir::full_hint as run_dir_full_hint;
pub use state::{State, Status};
