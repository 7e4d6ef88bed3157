//! `store/index.json`: the list of tagged manifests. Read freely; changed only under
//! `<root>/index.lock`, and replaced atomically.

use oci_spec::image::{Descriptor, ImageIndex, ImageIndexBuilder, MediaType};

use crate::error::{Error, Result};
use crate::fsutil::{sync_parent, write_atomic, FileLock, Staged};
use crate::{Store, REF_NAME_ANNOTATION};

pub(crate) fn load(store: &Store) -> Result<ImageIndex> {
    let path = store.layout_dir().join("index.json");
    let bytes = std::fs::read(&path).map_err(|e| Error::io("cannot read", &path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::CorruptIndex {
        path,
        reason: e.to_string(),
    })
}

fn to_bytes(path: &std::path::Path, index: &ImageIndex) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(index).map_err(|e| Error::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn save(store: &Store, index: &ImageIndex) -> Result<()> {
    let path = store.layout_dir().join("index.json");
    write_atomic(store, &path, &to_bytes(&path, index)?)
}

/// The bytes of an index that names no image (a fresh store's).
pub(crate) fn empty_bytes(store: &Store) -> Result<Vec<u8>> {
    let path = store.layout_dir().join("index.json");
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(Vec::new())
        .build()
        .map_err(|e| Error::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    to_bytes(&path, &index)
}

pub(crate) fn lock(store: &Store) -> Result<FileLock> {
    FileLock::exclusive(&store.root().join("index.lock"))
}

/// Loads, changes and saves the index under the lock; `change` sees the current state.
pub(crate) fn update<T>(
    store: &Store,
    change: impl FnOnce(&mut Vec<Descriptor>) -> Result<T>,
) -> Result<T> {
    let _lock = lock(store)?;
    let (index, result) = load_changed(store, change)?;
    save(store, &index)?;
    Ok(result)
}

/// The index as `change` leaves it (the caller holds the lock).
fn load_changed<T>(
    store: &Store,
    change: impl FnOnce(&mut Vec<Descriptor>) -> Result<T>,
) -> Result<(ImageIndex, T)> {
    let mut index = load(store)?;
    let mut manifests = index.manifests().clone();
    let result = change(&mut manifests)?;
    index.set_manifests(manifests);
    Ok((index, result))
}

/// [`update`] whose new index is written before `barrier` runs and moved into place
/// after it: the caller's filesystem barrier (which must also make durable what the new
/// index names) covers the index's own bytes too, so only the rename is synced here.
/// The lock is held throughout, so no other change is lost in between.
pub(crate) fn update_behind<T>(
    store: &Store,
    change: impl FnOnce(&mut Vec<Descriptor>) -> Result<T>,
    barrier: impl FnOnce() -> Result<()>,
) -> Result<T> {
    let _lock = lock(store)?;
    let (index, result) = load_changed(store, change)?;
    let path = store.layout_dir().join("index.json");
    let staged = Staged::write(store, &to_bytes(&path, &index)?)?;
    barrier()?;
    staged.replace(&path)?;
    sync_parent(&path)?;
    Ok(result)
}

pub(crate) fn ref_name(descriptor: &Descriptor) -> Option<&str> {
    descriptor
        .annotations()
        .as_ref()
        .and_then(|a| a.get(REF_NAME_ANNOTATION))
        .map(String::as_str)
}

pub(crate) fn with_ref_name(mut descriptor: Descriptor, name: &str) -> Descriptor {
    let mut annotations = descriptor.annotations().clone().unwrap_or_default();
    annotations.insert(REF_NAME_ANNOTATION.to_string(), name.to_string());
    descriptor.set_annotations(Some(annotations));
    descriptor
}
