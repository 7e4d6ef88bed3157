//! mycontainer-store: a content-addressed image store laid out as an OCI image layout.
//!
//! ```text
//! <root>/store/{oci-layout,index.json,blobs/sha256/<hex>}   readable by skopeo and umoci
//! <root>/layers/<diff-id hex>/                              each layer unpacked once, shared
//! <root>/layerdb/<blob hex>                                 blob digest -> diff-id, for re-imports
//! <root>/tmp/                                               every write starts here
//! ```
//!
//! `<root>`, `layers/` and `tmp/` are 0700 and lock files 0600 (see [`Store::open`]).
//!
//! Nothing here needs root or namespaces; unpacking device nodes and whiteouts does
//! (CAP_MKNOD), and ownership is applied only when running as root.

mod blobs;
mod check;
mod chunks;
mod diff;
mod digest;
mod error;
mod fsutil;
mod gc;
mod image;
mod import;
mod index;
mod layer;
mod mount;
mod reference;
mod unpack;
mod visible;

use std::path::{Path, PathBuf};

pub use blobs::VerifiedBlob;
pub use check::Finding;
pub use chunks::{ChannelReader, Chunk};
pub use digest::{Digest, HashingReader, HashingWriter};
pub use error::{Error, Result};
pub use fsutil::open_lock_file;
pub use gc::GcReport;
#[cfg(feature = "fuzz")]
pub use image::check_image_documents;
pub use image::{oci_manifest, DamagedImage, Image, ImageSpec, ImportSource, IngestLock};
#[cfg(feature = "fuzz")]
pub use import::unpack_layer_bytes;
pub use import::Compression;
pub use layer::{ImportedLayer, LayerInfo, NoProgress, Progress};
pub use mount::RootMount;
pub use reference::Reference;
pub use visible::visible_layer;

/// Annotation that names an image in `index.json`, as skopeo and umoci expect.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// A locked scratch directory; see [`Store::temp_dir`].
pub struct TempDir(fsutil::TempEntry);

impl TempDir {
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

/// A handle on the store under one state root.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens (creating on first use) the store under `root`, and reclaims temp leftovers
    /// of writers that died (a temp entry nobody holds a lock on).
    ///
    /// A new `root`, `layers/` and `tmp/` are created 0700: layers hold whatever the
    /// images hold (setuid binaries, files with capabilities, world-writable dirs), and
    /// no other user may reach them. Existing directories are left as they are; the
    /// binary tightens an existing state root at start-up.
    pub fn open(root: &Path) -> Result<Store> {
        let store = Store {
            root: root.to_path_buf(),
        };
        store.init_layout()?;
        gc::reclaim_tmp(&store)?;
        Ok(store)
    }

    /// A scratch directory under `<root>/tmp`, locked while the value lives and removed
    /// on drop (or by the next command, if this process dies).
    pub fn temp_dir(&self, kind: &str) -> Result<TempDir> {
        Ok(TempDir(fsutil::TempEntry::new_dir(self, kind)?))
    }

    /// The state root this store lives under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where an unpacked layer lives, by its diff-id.
    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers").join(diff_id.hex())
    }

    pub(crate) fn layout_dir(&self) -> PathBuf {
        self.root.join("store")
    }

    pub(crate) fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.layout_dir().join("blobs/sha256").join(digest.hex())
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub(crate) fn layerdb_path(&self, blob: &Digest) -> PathBuf {
        self.root.join("layerdb").join(blob.hex())
    }

    fn init_layout(&self) -> Result<()> {
        let layout = self.layout_dir();
        for dir in [&self.root, &self.root.join("layers"), &self.tmp_dir()] {
            fsutil::create_private_dir(dir)?;
        }
        for dir in [layout.join("blobs/sha256"), self.root.join("layerdb")] {
            std::fs::create_dir_all(&dir).map_err(|e| Error::io("cannot create", &dir, e))?;
        }
        // A fresh store's two files: written, made durable by one barrier, then moved
        // into place (never over a file another writer put there first). Their renames
        // are left unsynced: one lost in a crash leaves the file missing, never empty,
        // and the next open makes it again; anything that names an image syncs the
        // filesystem before it does.
        let mut missing = Vec::new();
        let marker = layout.join("oci-layout");
        if !marker.exists() {
            let bytes = br#"{"imageLayoutVersion":"1.0.0"}"#;
            missing.push((fsutil::Staged::write(self, bytes)?, marker));
        }
        let index = layout.join("index.json");
        if !index.exists() {
            missing.push((
                fsutil::Staged::write(self, &index::empty_bytes(self)?)?,
                index,
            ));
        }
        if missing.is_empty() {
            return Ok(());
        }
        fsutil::sync_filesystem(&self.tmp_dir())?;
        for (staged, target) in missing {
            staged.place(&target)?;
        }
        Ok(())
    }
}
