//! The runtime: turns an OCI runtime-spec config.json plus a rootfs into a supervised
//! process. It knows nothing of images or names: everything comes from the spec.

pub mod attach;
mod attach_frames;
pub mod cgroups;
mod exec;
pub mod handover;
pub mod hooks;
mod init;
mod launch;
pub mod logfile;
mod namespaces;
mod plan;
mod process;
mod pty;
mod relay;
mod rootfs;
mod run;
mod sealed_exe;
pub mod security;
mod userns_join;

pub use exec::{exec, exec_detached, ExecRequest};
pub use hooks::HookStates;
pub use relay::{Outcome, FORWARDED};
pub use run::{create, make_start_fifo, release, run, CreateRequest, RunRequest};

/// "true": run our tiny init as PID 1 (Docker's `--init`).
pub const ANNOTATION_INIT: &str = "org.mycontainer.init";
