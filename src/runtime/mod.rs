//! The runtime: turns an OCI runtime-spec config.json plus a rootfs into a supervised
//! process. It knows nothing of images or names: everything comes from the spec.

pub mod cgroups;
mod exec;
mod init;
pub mod logfile;
mod namespaces;
mod plan;
mod process;
mod pty;
mod rootfs;
mod sealed_exe;
pub mod security;
mod supervise;

pub use exec::{exec, ExecRequest};
pub use supervise::{run, Outcome, RunRequest};

/// "true": run our tiny init as PID 1 (Docker's `--init`).
pub const ANNOTATION_INIT: &str = "org.mycontainer.init";
