//! Registries: references, credentials, an OCI distribution client, pull and push.

pub mod auth;
pub mod client;
pub mod platform;
pub mod pull;
pub mod push;
pub mod reference;
mod stream;

use mycontainer_store::Progress;

pub use platform::{declared_media_type, is_index, pick_platform};
pub use reference::RegistryRef;

/// How pull, push and load tell the user what they are doing. The CLI draws bars on a
/// terminal; tests and scripts get plain lines or nothing.
pub trait Reporter: Sync {
    /// A progress sink for moving one blob (`label`, usually a short digest) of `size` bytes.
    fn blob(&self, action: &str, label: &str, size: u64) -> Box<dyn Progress + Send>;
    /// One line of status (`sha256:ab12...: already exists`).
    fn status(&self, line: &str);
}
