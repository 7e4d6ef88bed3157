//! The store's error type: every variant names the path, digest or entry involved.

use std::io;
use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cause is in the message and deliberately not a `source()`: anyhow's `{:#}`
    /// would print it a second time.
    #[error("{action} {path}: {cause}")]
    Io {
        action: &'static str,
        path: PathBuf,
        cause: io::Error,
    },
    #[error("image {0:?} not found (see `mycontainer image ls`)")]
    ImageNotFound(String),
    #[error("invalid reference format {name:?}: {reason}")]
    BadReference { name: String, reason: &'static str },
    #[error("invalid digest {0:?}: expected sha256:<64 hex digits>")]
    BadDigest(String),
    #[error("blob {digest} is corrupt: content hashes to {actual}")]
    DigestMismatch { digest: String, actual: String },
    /// A blob already in the store whose bytes no longer match its name (disk fault,
    /// tampering): nothing may leave the store with it.
    #[error("blob {digest} in the store is corrupt (its content hashes to {actual}): run `mycontainer system check --repair`, then pull, load or build the image again")]
    CorruptBlob { digest: String, actual: String },
    #[error("cannot unpack layer: entry {entry:?} {reason}")]
    HostileEntry { entry: String, reason: String },
    #[error("cannot read input: {0}")]
    BadInput(String),
    #[error("the image index {path} is corrupt ({reason}): run `mycontainer system check --repair` to rebuild it from the images in the store (their names are lost: tag them again)")]
    CorruptIndex { path: PathBuf, reason: String },
    #[error("store metadata {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{0}")]
    Cancelled(String),
}

impl Error {
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> Error {
        Error::Io {
            action,
            path: path.to_path_buf(),
            cause: source,
        }
    }

    pub(crate) fn hostile(entry: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::HostileEntry {
            entry: entry.into(),
            reason: reason.into(),
        }
    }
}
