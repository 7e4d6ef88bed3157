//! `system check`: verifies the store against its own records — every blob against its
//! digest, every index entry down to its layers, every layer an image needs unpacked,
//! no abandoned temp entries, no unsafe layer-root modes — and with `repair` fixes what
//! can be fixed without guessing: corrupt blobs go, missing layers are unpacked again
//! from their blobs, a corrupt index is rebuilt from the manifests in the store.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::blobs;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::fsutil::{write_atomic, FileLock};
use crate::index;
use crate::layer::NoProgress;
use crate::Store;

/// One thing found wrong, and what the repair did about it (if it ran).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub problem: String,
    /// Set when `repair` fixed it; a finding left unfixed says what to do instead.
    pub repair: Option<String>,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repair {
            Some(done) => write!(f, "{} (repaired: {done})", self.problem),
            None => write!(f, "{}", self.problem),
        }
    }
}

impl Store {
    /// Checks the store; with `repair`, fixes what it can. Returns one finding per
    /// problem (empty: the store is sound). Takes the gc lock: no writer runs meanwhile.
    pub fn check(&self, repair: bool) -> Result<Vec<Finding>> {
        let mut findings = Vec::new();
        {
            let _exclusive = FileLock::exclusive(&self.root().join("gc.lock"))?;
            self.check_index(repair, &mut findings)?;
            self.check_blobs(repair, &mut findings)?;
            self.check_layer_roots(repair, &mut findings)?;
        }
        self.check_images(repair, &mut findings)?;
        Ok(findings)
    }

    fn check_index(&self, repair: bool, findings: &mut Vec<Finding>) -> Result<()> {
        let error = match index::load(self) {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let mut finding = Finding {
            problem: format!("index: {error}"),
            repair: None,
        };
        if repair {
            let recovered = self.rebuild_index()?;
            finding.repair = Some(format!(
                "kept the old one as index.json.corrupt and listed the {recovered} image(s) found in the store without names; tag them again with `mycontainer image tag`"
            ));
        }
        findings.push(finding);
        Ok(())
    }

    /// Writes a fresh index naming (untagged) every manifest blob that verifies and
    /// whose config and layers are in the store.
    fn rebuild_index(&self) -> Result<usize> {
        let path = self.layout_dir().join("index.json");
        let kept = self.layout_dir().join("index.json.corrupt");
        let _lock = index::lock(self)?;
        if path.exists() {
            fs::rename(&path, &kept).map_err(|e| Error::io("cannot move", &path, e))?;
        }
        let mut manifests = Vec::new();
        for digest in self.blob_digests()? {
            let Ok(bytes) = blobs::get(self, &digest) else {
                continue;
            };
            let Ok(manifest) = serde_json::from_slice::<oci_spec::image::ImageManifest>(&bytes)
            else {
                continue;
            };
            let complete = std::iter::once(manifest.config())
                .chain(manifest.layers())
                .all(|d| Digest::from_oci(d.digest()).is_ok_and(|d| self.has_blob(&d)));
            if complete {
                manifests.push(oci_spec::image::Descriptor::new(
                    manifest
                        .media_type()
                        .clone()
                        .unwrap_or(oci_spec::image::MediaType::ImageManifest),
                    bytes.len() as u64,
                    digest.to_oci(),
                ));
            }
        }
        let count = manifests.len();
        let index = oci_spec::image::ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(oci_spec::image::MediaType::ImageIndex)
            .manifests(manifests)
            .build()
            .map_err(|e| Error::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        let bytes = serde_json::to_vec_pretty(&index).map_err(|e| Error::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(self, &path, &bytes)?;
        Ok(count)
    }

    fn blob_digests(&self) -> Result<Vec<Digest>> {
        let dir = self.layout_dir().join("blobs/sha256");
        let entries = fs::read_dir(&dir).map_err(|e| Error::io("cannot read", &dir, e))?;
        Ok(entries
            .flatten()
            .filter_map(|e| Digest::parse(&e.file_name().to_string_lossy()).ok())
            .collect())
    }

    fn check_blobs(&self, repair: bool, findings: &mut Vec<Finding>) -> Result<()> {
        let dir = self.layout_dir().join("blobs/sha256");
        let entries = fs::read_dir(&dir).map_err(|e| Error::io("cannot read", &dir, e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let problem = match Digest::parse(&name) {
                Err(_) => format!("blob {}: not named by a sha256 digest", path.display()),
                Ok(digest) => match blobs::verify_file(self, &digest) {
                    Ok(()) => continue,
                    Err(e) => e.to_string(),
                },
            };
            let mut finding = Finding {
                problem,
                repair: None,
            };
            if repair {
                fs::remove_file(&path).map_err(|e| Error::io("cannot remove", &path, e))?;
                let _ = fs::remove_file(self.root().join("layerdb").join(&name));
                finding.repair = Some("removed it; pull, load or build its image again".into());
            }
            findings.push(finding);
        }
        Ok(())
    }

    /// A layer root that is world-writable without the sticky bit, or setuid/setgid,
    /// would hand every container that mode on `/` (imports before the root-entry rule
    /// left such layers behind).
    fn check_layer_roots(&self, repair: bool, findings: &mut Vec<Finding>) -> Result<()> {
        let dir = self.root().join("layers");
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let Ok(meta) = fs::symlink_metadata(entry.path()) else {
                continue;
            };
            let mode = meta.permissions().mode() & 0o7777;
            let unsafe_mode = (mode & 0o002 != 0 && mode & 0o1000 == 0) || mode & 0o6000 != 0;
            if !meta.is_dir() || !unsafe_mode {
                continue;
            }
            let path = entry.path();
            let mut finding = Finding {
                problem: format!("layer {}: root directory mode {mode:04o}", path.display()),
                repair: None,
            };
            if repair {
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                    .map_err(|e| Error::io("cannot chmod", &path, e))?;
                finding.repair = Some("set it to 0755".into());
            }
            findings.push(finding);
        }
        Ok(())
    }

    /// Every image loads, and every layer it names is unpacked (again from its blob
    /// under `repair`). Runs after the blob pass, so corrupt blobs already show.
    fn check_images(&self, repair: bool, findings: &mut Vec<Finding>) -> Result<()> {
        let (images, damaged) = match self.scan_images() {
            Ok(scan) => scan,
            // Reported by the index pass.
            Err(_) => return Ok(()),
        };
        for image in damaged {
            let name = image
                .names
                .first()
                .cloned()
                .unwrap_or_else(|| image.manifest_digest.to_string());
            let mut finding = Finding {
                problem: format!("image {name}: {}", image.reason),
                repair: None,
            };
            if repair {
                self.remove_image(&image.manifest_digest.to_string())?;
                finding.repair = Some("removed it; pull, load or build it again".into());
            }
            findings.push(finding);
        }
        let mut seen = HashSet::new();
        for image in images {
            for layer in &image.layers {
                if !seen.insert(layer.diff_id.clone()) {
                    continue;
                }
                let has_blob = self.has_blob(&layer.digest);
                if self.layer_dir(&layer.diff_id).exists() {
                    if !has_blob {
                        findings.push(Finding {
                            problem: format!(
                                "image {}: layer blob {} is missing: it still runs, but pull, load or build it again to save or push it",
                                image.names.first().map(String::as_str).unwrap_or(image.id.short()),
                                layer.digest
                            ),
                            repair: None,
                        });
                    }
                    continue;
                }
                let mut finding = Finding {
                    problem: format!(
                        "layer {} of image {} is not unpacked",
                        layer.diff_id,
                        image
                            .names
                            .first()
                            .map(String::as_str)
                            .unwrap_or(image.id.short())
                    ),
                    repair: None,
                };
                if repair && has_blob {
                    self.unpack_again(&layer.digest)?;
                    finding.repair = Some("unpacked it again from its blob".into());
                }
                findings.push(finding);
            }
        }
        Ok(())
    }

    fn unpack_again(&self, blob: &Digest) -> Result<()> {
        let _ingest = self.ingest_lock()?;
        let reader = self.open_blob(blob)?;
        let size = reader.size();
        self.import_layer_stream(reader, Some(size), Some(blob), &NoProgress)?;
        Ok(())
    }
}
