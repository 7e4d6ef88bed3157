//! Garbage collection: reclaim temp entries of dead writers, then sweep blobs, layer
//! directories and layerdb records that no image (and no hold) references.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File};
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::fsutil::{flock, remove_any, FileLock, TempEntry, UNLOCKED_PREFIX};
use crate::Store;

/// A temp entry this old that is still not locked was abandoned while being created.
const UNLOCKED_GRACE: Duration = Duration::from_secs(60);

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub temp_entries: usize,
    pub blobs: usize,
    pub layers: usize,
    pub bytes: u64,
}

impl fmt::Display for GcReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "removed {} blobs ({} bytes), {} layer directories, {} temp entries",
            self.blobs, self.bytes, self.layers, self.temp_entries
        )
    }
}

/// Removes every temp entry whose writer is gone (nobody holds its lock).
pub(crate) fn reclaim_tmp(store: &Store) -> Result<usize> {
    let tmp = store.tmp_dir();
    let entries = fs::read_dir(&tmp).map_err(|e| Error::io("cannot read", &tmp, e))?;
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(UNLOCKED_PREFIX) {
            let old = entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| {
                SystemTime::now().duration_since(t).unwrap_or_default() > UNLOCKED_GRACE
            });
            if old {
                remove_any(&path);
                removed += 1;
            }
            continue;
        }
        if is_abandoned(&path) {
            remove_any(&path);
            removed += 1;
        }
    }
    Ok(removed)
}

fn is_abandoned(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    flock(&file, libc::LOCK_EX | libc::LOCK_NB).is_ok()
}

impl Store {
    /// Marks layers in use by something outside the store (a container) so gc keeps
    /// them even after their image is removed. `holder` is a file-name-safe id.
    pub fn hold_layers(&self, holder: &str, diff_ids: &[Digest]) -> Result<()> {
        let dir = self.root().join("holds");
        fs::create_dir_all(&dir).map_err(|e| Error::io("cannot create", &dir, e))?;
        let text: String = diff_ids.iter().map(|d| format!("{d}\n")).collect();
        // Not fsynced: this runs on every container start, and after a power cut the
        // worst case is a stopped container whose image was removed losing its layers
        // to a gc (the container records stay; `rm` them).
        crate::fsutil::write_atomic_volatile(self, &dir.join(holder), text.as_bytes())
    }

    /// Drops a hold taken with [`Store::hold_layers`].
    pub fn release_layers(&self, holder: &str) -> Result<()> {
        let path = self.root().join("holds").join(holder);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io("cannot remove", &path, e))
            }
            _ => Ok(()),
        }
    }

    /// Deletes everything no image in the index and no hold references.
    pub fn gc(&self) -> Result<GcReport> {
        let _exclusive = FileLock::exclusive(&self.root().join("gc.lock"))?;
        let mut report = GcReport {
            temp_entries: reclaim_tmp(self)?,
            ..GcReport::default()
        };
        let mut live_blobs = HashSet::new();
        let mut live_layers = HashSet::new();
        let (images, damaged) = self.scan_images()?;
        for image in images {
            live_blobs.insert(image.manifest_digest.hex().to_string());
            live_blobs.insert(image.id.hex().to_string());
            for layer in &image.layers {
                live_blobs.insert(layer.digest.hex().to_string());
                live_layers.insert(layer.diff_id.hex().to_string());
            }
        }
        // A damaged image keeps whatever its manifest still names, so that a pull, load
        // or build that brings the good bytes back finds the rest in place.
        for image in damaged {
            live_blobs.insert(image.manifest_digest.hex().to_string());
            for blob in self.manifest_references(&image.manifest_digest) {
                if let Some(diff_id) = self.layer_for_blob(&blob) {
                    live_layers.insert(diff_id.hex().to_string());
                }
                live_blobs.insert(blob.hex().to_string());
            }
        }
        live_layers.extend(self.held_layers()?);

        let blob_dir = self.layout_dir().join("blobs/sha256");
        for (name, path) in list(&blob_dir)? {
            if !live_blobs.contains(&name) {
                report.bytes += path.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(&path).map_err(|e| Error::io("cannot remove", &path, e))?;
                report.blobs += 1;
            }
        }
        for (name, path) in list(&self.root().join("layerdb"))? {
            if !live_blobs.contains(&name) {
                fs::remove_file(&path).map_err(|e| Error::io("cannot remove", &path, e))?;
            }
        }
        for (_, path) in list(&self.root().join("layerdb-hints"))? {
            let text = fs::read_to_string(&path).unwrap_or_default();
            let digest = text
                .split_whitespace()
                .last()
                .and_then(|d| Digest::parse(d).ok());
            if !digest.is_some_and(|d| live_blobs.contains(d.hex())) {
                let _ = fs::remove_file(&path);
            }
        }
        for (name, path) in list(&self.root().join("layers"))? {
            if !live_layers.contains(&name) {
                // Move it out of sight first, so no half-deleted layer is ever visible.
                let doomed = TempEntry::new_dir(self, "doomed")?;
                let inside = doomed.path().join("layer");
                fs::rename(&path, &inside).map_err(|e| Error::io("cannot move", &path, e))?;
                drop(doomed);
                report.layers += 1;
            }
        }
        Ok(report)
    }

    /// The config and layer blobs a manifest names, read without verifying it (for a
    /// damaged image); nothing when it does not parse.
    fn manifest_references(&self, manifest: &Digest) -> Vec<Digest> {
        let Ok(bytes) = fs::read(self.blob_path(manifest)) else {
            return Vec::new();
        };
        let Ok(parsed) = serde_json::from_slice::<oci_spec::image::ImageManifest>(&bytes) else {
            return Vec::new();
        };
        std::iter::once(parsed.config())
            .chain(parsed.layers())
            .filter_map(|d| Digest::from_oci(d.digest()).ok())
            .collect()
    }

    fn held_layers(&self) -> Result<Vec<String>> {
        let mut held = Vec::new();
        for (_, path) in list(&self.root().join("holds"))? {
            let text = fs::read_to_string(&path).map_err(|e| Error::io("cannot read", &path, e))?;
            held.extend(
                text.lines()
                    .filter_map(|l| Digest::parse(l).ok())
                    .map(|d| d.hex().to_string()),
            );
        }
        Ok(held)
    }
}

fn list(dir: &Path) -> Result<Vec<(String, std::path::PathBuf)>> {
    match fs::read_dir(dir) {
        Ok(entries) => Ok(entries
            .flatten()
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io("cannot read", dir, e)),
    }
}
