//! STUB of the store API (the real implementation lands on main shortly).
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("image {0:?} not found (see `mycontainer image ls`)")]
    ImageNotFound(String),
}
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Digest {
    hex: String,
}
impl Digest {
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

#[derive(Debug, Clone)]
pub struct LayerInfo {
    pub digest: Digest,
    pub diff_id: Digest,
    pub size: u64,
    pub media_type: String,
}

/// An image in the store.
#[derive(Debug, Clone)]
pub struct Image {
    /// The config digest (Docker's image id).
    pub id: Digest,
    pub manifest_digest: Digest,
    /// `name:tag` references pointing at it.
    pub names: Vec<String>,
    pub config: oci_spec::image::ImageConfiguration,
    /// Bottom (base) layer first.
    pub layers: Vec<LayerInfo>,
    pub size: u64,
}

impl Image {
    /// Unpacked layer directories, base layer first (reverse for overlay lowerdir).
    pub fn layer_dirs(&self, store: &Store) -> Vec<PathBuf> {
        self.layers.iter().map(|l| store.layer_dir(&l.diff_id)).collect()
    }
}

#[derive(Debug)]
pub struct GcReport;
impl std::fmt::Display for GcReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "nothing")
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}
impl Store {
    pub fn open(root: &Path) -> Result<Store> {
        Ok(Store { root: root.into() })
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers").join(diff_id.hex())
    }
    /// By `name[:tag]` (tag defaults to latest) or id prefix.
    pub fn image(&self, name: &str) -> Result<Image> {
        Err(Error::ImageNotFound(name.into()))
    }
    pub fn gc(&self) -> Result<GcReport> {
        Ok(GcReport)
    }
}
