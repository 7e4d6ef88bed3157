//! Layers as the store hands them out, and how an import reports its progress: shared
//! by images (which list layers) and imports (which produce them).

use serde::Serialize;

use crate::digest::Digest;

/// One layer of an image: the stored blob and the unpacked content it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerInfo {
    /// Digest of the blob as stored (compressed or not).
    pub digest: Digest,
    /// Digest of the uncompressed tar: names the unpacked directory.
    pub diff_id: Digest,
    /// Size of the blob in bytes.
    pub size: u64,
    pub media_type: String,
}

/// A layer an import stored (or found already stored).
#[derive(Debug, Clone)]
pub struct ImportedLayer {
    pub layer: LayerInfo,
    /// The same content was already in the store: nothing new was written.
    pub reused: bool,
}

/// Progress of an import, in input bytes. The CLI draws a bar; library users may ignore it.
pub trait Progress: Sync {
    fn start(&self, _total: Option<u64>) {}
    fn advance(&self, _bytes: u64) {}
    fn finish(&self) {}
}

/// Reports nothing.
pub struct NoProgress;
impl Progress for NoProgress {}
