//! Images: a config blob and a manifest blob over layer blobs, named in index.json.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::str::FromStr;

use oci_spec::image::{
    Config, Descriptor, HistoryBuilder, ImageConfiguration, ImageConfigurationBuilder,
    ImageManifest, ImageManifestBuilder, MediaType, RootFsBuilder,
};

use crate::blobs;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::fsutil::{sync_filesystem, FileLock};
use crate::import::{PendingLayer, StagedLayer};
use crate::index;
use crate::layer::{ImportedLayer, LayerInfo, NoProgress, Progress};
use crate::reference::Reference;
use crate::Store;

/// An image in the store.
#[derive(Debug, Clone)]
pub struct Image {
    /// The config digest (Docker's image id).
    pub id: Digest,
    pub manifest_digest: Digest,
    /// `name:tag` references pointing at it, sorted.
    pub names: Vec<String>,
    pub config: ImageConfiguration,
    /// Bottom (base) layer first.
    pub layers: Vec<LayerInfo>,
    /// Total size of the layer blobs.
    pub size: u64,
}

impl Image {
    /// The creation time recorded in the config, if any.
    pub fn created(&self) -> Option<&str> {
        self.config.created().as_deref()
    }
}

/// An image named in the index whose manifest or config cannot be read or fails
/// verification: listed apart so that one bad blob affects only the images using it.
#[derive(Debug, Clone)]
pub struct DamagedImage {
    pub manifest_digest: Digest,
    /// `name:tag` references pointing at it, sorted.
    pub names: Vec<String>,
    /// What is wrong, as one line.
    pub reason: String,
}

/// What an image is made from, besides its layers.
#[derive(Debug, Clone, Default)]
pub struct ImageSpec {
    /// The run-time defaults: Env, Cmd, Entrypoint, WorkingDir, User...
    pub config: Config,
    /// RFC 3339 creation time; fixed for reproducible builds.
    pub created: Option<String>,
    /// What made each layer (history "created_by"), for `image inspect`.
    pub created_by: Option<String>,
}

/// Held while adding blobs that no image names yet; see [`Store::ingest_lock`].
pub struct IngestLock(#[allow(dead_code)] FileLock);

/// Where an import reads from.
pub enum ImportSource<'a> {
    File(&'a Path),
    Stream(Box<dyn std::io::Read + Send + 'a>),
}

impl Store {
    /// Imports one tarball as a single-layer image and tags it `name` when given.
    pub fn import_image(
        &self,
        source: ImportSource<'_>,
        spec: &ImageSpec,
        name: Option<&Reference>,
        progress: &dyn Progress,
    ) -> Result<(Image, ImportedLayer)> {
        // Held until the image is in the index, so gc cannot sweep the new blobs between.
        let _ingest = self.ingest_lock_file()?;
        let pending = match source {
            ImportSource::File(path) => self.stage_layer_file(path, progress)?,
            ImportSource::Stream(reader) => {
                PendingLayer::Staged(self.stage_layer(reader, None, None, progress)?)
            }
        };
        let (layer, staged) = match pending {
            PendingLayer::Stored(imported) => (imported, None),
            PendingLayer::Staged(staged) => (
                ImportedLayer {
                    layer: staged.layer.clone(),
                    reused: false,
                },
                Some(staged),
            ),
        };
        let (image, reused) =
            self.create_image_with(std::slice::from_ref(&layer.layer), spec, name, staged)?;
        let reused = reused.unwrap_or(layer.reused);
        Ok((image, ImportedLayer { reused, ..layer }))
    }

    /// Writes the config and manifest for `layers` (base first, already stored) and
    /// tags the result. Callers hold the ingest lock.
    fn create_image(
        &self,
        layers: &[LayerInfo],
        spec: &ImageSpec,
        name: Option<&Reference>,
    ) -> Result<Image> {
        Ok(self.create_image_with(layers, spec, name, None)?.0)
    }

    /// [`Store::create_image`] where the last of `layers` may still be staged (`staged`):
    /// it goes into place behind the same barrier as the config and manifest. Returns
    /// whether that layer was already unpacked (None without one).
    fn create_image_with(
        &self,
        layers: &[LayerInfo],
        spec: &ImageSpec,
        name: Option<&Reference>,
        staged: Option<StagedLayer>,
    ) -> Result<(Image, Option<bool>)> {
        let diff_ids = layers
            .iter()
            .map(|l| l.diff_id.to_string())
            .collect::<Vec<_>>();
        let history = layers
            .iter()
            .map(|_| {
                let mut builder = HistoryBuilder::default();
                if let Some(created) = &spec.created {
                    builder = builder.created(created.clone());
                }
                if let Some(by) = &spec.created_by {
                    builder = builder.created_by(by.clone());
                }
                builder.build().map_err(build_error)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut config = ImageConfigurationBuilder::default()
            .architecture(oci_spec::image::Arch::Amd64)
            .os(oci_spec::image::Os::Linux)
            .config(spec.config.clone())
            .rootfs(
                RootFsBuilder::default()
                    .typ("layers")
                    .diff_ids(diff_ids)
                    .build()
                    .map_err(build_error)?,
            )
            .history(history)
            .build()
            .map_err(build_error)?;
        config.set_created(spec.created.clone());
        let config_bytes =
            serde_json::to_vec(&config).map_err(|e| Error::BadInput(e.to_string()))?;
        let manifest_bytes = oci_manifest(&config_bytes, layers)?;
        // Two barriers in all. The first makes the bytes of the staged layer (its blob,
        // files and record), the config and the manifest durable, and the renames of
        // earlier layers that `import_layer_unsynced` left to us. The second makes
        // their own renames durable, and the new index's bytes, which is moved into
        // place only after it: the index never names what a crash could lose.
        let config_blob = blobs::stage(self, &config_bytes)?;
        let manifest_blob = blobs::stage(self, &manifest_bytes)?;
        sync_filesystem(self.root())?;
        let reused = match staged {
            Some(staged) => Some(staged.place(self)?.reused),
            None => None,
        };
        let (config_digest, _) = config_blob.persist_synced(self)?;
        let (manifest_digest, _) = manifest_blob.persist_synced(self)?;

        let descriptor = Descriptor::new(
            MediaType::ImageManifest,
            manifest_bytes.len() as u64,
            manifest_digest.to_oci(),
        );
        let barrier = || sync_filesystem(self.root());
        match name {
            Some(name) => self.set_ref_behind(descriptor, &name.to_string(), barrier)?,
            None => self.add_untagged_behind(descriptor, barrier)?,
        }
        let image = Image {
            id: config_digest,
            manifest_digest,
            names: name.map(|n| vec![n.to_string()]).unwrap_or_default(),
            size: total_size(layers),
            layers: layers.to_vec(),
            config,
        };
        Ok((image, reused))
    }

    /// Points `name` at the manifest in `descriptor`, replacing what it named before.
    /// An untagged entry for the same manifest is dropped: the name now keeps it alive.
    fn set_ref(&self, descriptor: Descriptor, name: &str) -> Result<()> {
        index::update(self, |manifests| point_ref(manifests, descriptor, name))
    }

    /// [`Store::set_ref`] with the new index written before `barrier` and moved into
    /// place after it (see [`index::update_behind`]).
    fn set_ref_behind(
        &self,
        descriptor: Descriptor,
        name: &str,
        barrier: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        index::update_behind(
            self,
            |manifests| point_ref(manifests, descriptor, name),
            barrier,
        )
    }

    /// Records an image with no name (`image import` without NAME), unless the manifest
    /// is in the index already.
    fn add_untagged(&self, descriptor: Descriptor) -> Result<()> {
        index::update(self, |manifests| add_unnamed(manifests, descriptor))
    }

    /// [`Store::add_untagged`] behind the caller's barrier, as [`Store::set_ref_behind`].
    fn add_untagged_behind(
        &self,
        descriptor: Descriptor,
        barrier: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        index::update_behind(
            self,
            |manifests| add_unnamed(manifests, descriptor),
            barrier,
        )
    }

    /// All images that can be read, one entry per manifest, sorted by name. Damaged
    /// ones are left out; see [`Store::scan_images`].
    pub fn images(&self) -> Result<Vec<Image>> {
        Ok(self.scan_images()?.0)
    }

    /// Every image in the index: those that load, and those whose manifest or config
    /// is missing, corrupt or inconsistent (each with the reason).
    pub fn scan_images(&self) -> Result<(Vec<Image>, Vec<DamagedImage>)> {
        let index = index::load(self)?;
        let mut by_manifest: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for descriptor in index.manifests() {
            let names = by_manifest
                .entry(descriptor.digest().to_string())
                .or_default();
            if let Some(name) = index::ref_name(descriptor) {
                names.push(name.to_string());
            }
        }
        let mut images = Vec::new();
        let mut damaged = Vec::new();
        for (manifest, mut names) in by_manifest {
            names.sort();
            let manifest_digest = Digest::parse(&manifest)?;
            match self.load_image(&manifest_digest, names.clone()) {
                Ok(image) => images.push(image),
                Err(e) => damaged.push(DamagedImage {
                    manifest_digest,
                    names,
                    reason: e.to_string(),
                }),
            }
        }
        images.sort_by(|a, b| a.names.cmp(&b.names));
        Ok((images, damaged))
    }

    /// Finds an image by `name[:tag]`, by id (config digest: any unique prefix of its
    /// hex digits, with or without `sha256:`), or by manifest digest.
    pub fn image(&self, wanted: &str) -> Result<Image> {
        // By name: only that image's blobs are read (this is on every `run`'s path).
        if let Ok(reference) = Reference::parse(wanted) {
            let full = reference.to_string();
            let index = index::load(self)?;
            let named = index
                .manifests()
                .iter()
                .find(|d| index::ref_name(d) == Some(&full));
            if let Some(descriptor) = named {
                let mut names: Vec<String> = index
                    .manifests()
                    .iter()
                    .filter(|d| d.digest() == descriptor.digest())
                    .filter_map(|d| index::ref_name(d).map(String::from))
                    .collect();
                names.sort();
                return self.load_image(&Digest::from_oci(descriptor.digest())?, names);
            }
        }
        let images = self.images()?;
        let hex = wanted.strip_prefix("sha256:").unwrap_or(wanted);
        let is_hex =
            !hex.is_empty() && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
        if is_hex {
            let matches: Vec<&Image> = images
                .iter()
                .filter(|i| i.id.hex().starts_with(hex) || i.manifest_digest.hex() == hex)
                .collect();
            match matches.as_slice() {
                [one] => return Ok((*one).clone()),
                [] => {}
                _ => {
                    return Err(Error::BadReference {
                        name: wanted.to_string(),
                        reason: "the id prefix matches several images: give more digits",
                    })
                }
            }
        }
        Err(Error::ImageNotFound(wanted.to_string()))
    }

    /// Adds the name `target` to the image `source`.
    pub fn tag(&self, source: &str, target: &Reference) -> Result<Image> {
        let image = self.image(source)?;
        let manifest_bytes = blobs::get(self, &image.manifest_digest)?;
        let descriptor = Descriptor::new(
            MediaType::ImageManifest,
            manifest_bytes.len() as u64,
            image.manifest_digest.to_oci(),
        );
        self.set_ref(descriptor, &target.to_string())?;
        self.image(&target.to_string())
    }

    /// Removes the name `wanted` (or, given an id, every name of that image), then
    /// deletes the blobs and layer directories nothing else uses. Returns the names
    /// removed and whether the image itself is gone.
    pub fn remove_image(&self, wanted: &str) -> Result<(Vec<String>, bool)> {
        self.remove_names(wanted, false)
    }

    /// Removes the name `wanted` (or, given an id, every name of that image) but keeps
    /// the image itself, untagged (`<none>`), with everything it needs: what `image rm
    /// -f` does to an image a container still uses.
    pub fn untag_image(&self, wanted: &str) -> Result<Vec<String>> {
        Ok(self.remove_names(wanted, true)?.0)
    }

    fn remove_names(&self, wanted: &str, keep_image: bool) -> Result<(Vec<String>, bool)> {
        let (manifest_digest, names) = match self.image(wanted) {
            Ok(image) => (image.manifest_digest, image.names),
            // A damaged image can still be removed by a name or its manifest digest.
            Err(Error::ImageNotFound(_)) | Err(Error::BadReference { .. }) => {
                match self.find_damaged(wanted)? {
                    Some(damaged) => (damaged.manifest_digest, damaged.names),
                    None => return Err(Error::ImageNotFound(wanted.to_string())),
                }
            }
            Err(e) => match self.find_damaged(wanted)? {
                Some(damaged) => (damaged.manifest_digest, damaged.names),
                None => return Err(e),
            },
        };
        let removed: Vec<String> = match Reference::parse(wanted) {
            Ok(reference) if names.contains(&reference.to_string()) => {
                vec![reference.to_string()]
            }
            _ => names.clone(),
        };
        let gone: HashSet<&String> = removed.iter().collect();
        let manifest = manifest_digest.to_oci();
        let still_there = index::update(self, |manifests| {
            manifests
                .retain(|d| !index::ref_name(d).is_some_and(|n| gone.contains(&n.to_string())));
            let named_left = manifests
                .iter()
                .any(|d| d.digest() == &manifest && index::ref_name(d).is_some());
            let untagged_left = manifests.iter().any(|d| d.digest() == &manifest);
            if !named_left && !untagged_left && keep_image {
                let descriptor = Descriptor::new(
                    MediaType::ImageManifest,
                    blobs::get(self, &manifest_digest)?.len() as u64,
                    manifest.clone(),
                );
                manifests.push(descriptor);
            } else if !named_left && !keep_image {
                manifests.retain(|d| d.digest() != &manifest);
            }
            Ok(named_left || keep_image)
        })?;
        if !still_there {
            self.gc()?;
        }
        Ok((removed, !still_there))
    }

    /// The damaged image named `wanted` (a name, or its manifest digest in full).
    fn find_damaged(&self, wanted: &str) -> Result<Option<DamagedImage>> {
        let full_name = Reference::parse(wanted).ok().map(|r| r.to_string());
        let digest = Digest::parse(wanted).ok();
        Ok(self.scan_images()?.1.into_iter().find(|d| {
            full_name.as_ref().is_some_and(|n| d.names.contains(n))
                || digest.as_ref() == Some(&d.manifest_digest)
        }))
    }

    fn load_image(&self, manifest_digest: &Digest, names: Vec<String>) -> Result<Image> {
        let manifest: ImageManifest = blobs::get_json(self, manifest_digest)?;
        let id = Digest::from_oci(manifest.config().digest())?;
        let config: ImageConfiguration = blobs::get_json(self, &id)?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != manifest.layers().len() {
            return Err(Error::Corrupt {
                path: self.blob_path(&id),
                reason: format!(
                    "{} diff_ids for {} layers",
                    diff_ids.len(),
                    manifest.layers().len()
                ),
            });
        }
        let layers = manifest
            .layers()
            .iter()
            .zip(diff_ids)
            .map(|(layer, diff_id)| {
                Ok(LayerInfo {
                    digest: Digest::from_oci(layer.digest())?,
                    diff_id: Digest::from_str(diff_id)?,
                    size: layer.size(),
                    media_type: layer.media_type().to_string(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Image {
            id,
            manifest_digest: manifest_digest.clone(),
            names,
            size: total_size(&layers),
            layers,
            config,
        })
    }

    /// Adds an image from its manifest, stored byte for byte (so its digest is the one
    /// a registry or archive named), and tags it `name`. The config must be given (it
    /// is stored too, verified against the manifest); every layer blob must already be
    /// stored and unpacked (see [`Store::import_layer`]), with diff-ids matching the
    /// config. Hold [`Store::ingest_lock`] from the first layer to this call.
    pub fn add_image(
        &self,
        manifest_bytes: &[u8],
        config_bytes: &[u8],
        name: Option<&Reference>,
    ) -> Result<Image> {
        let (manifest, config_digest) = read_manifest(manifest_bytes)?;
        let actual = Digest::of_bytes(config_bytes);
        if actual != config_digest {
            return Err(Error::DigestMismatch {
                digest: config_digest.to_string(),
                actual: actual.to_string(),
            });
        }
        for (blob, expected) in read_config(&manifest, config_bytes)? {
            match self.layer_for_blob(&blob) {
                Some(found) if found == expected => {}
                Some(found) => {
                    return Err(Error::BadInput(format!(
                        "layer {blob} unpacks to {found}, but the image config says {expected}"
                    )))
                }
                None => {
                    return Err(Error::BadInput(format!(
                        "layer {blob} is not in the store: import it first"
                    )))
                }
            }
        }
        blobs::put(self, config_bytes)?;
        let manifest_digest = blobs::put(self, manifest_bytes)?;
        let media_type = manifest
            .media_type()
            .clone()
            .unwrap_or(MediaType::ImageManifest);
        let descriptor = Descriptor::new(
            media_type,
            manifest_bytes.len() as u64,
            manifest_digest.to_oci(),
        );
        match name {
            Some(name) => self.set_ref(descriptor, &name.to_string())?,
            None => self.add_untagged(descriptor)?,
        }
        self.load_image(
            &manifest_digest,
            name.map(|n| vec![n.to_string()]).unwrap_or_default(),
        )
    }

    /// Stores a small blob (a config, a manifest) and returns its digest.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<Digest> {
        blobs::put(self, bytes)
    }

    /// Reads a whole blob, verifying its digest. For manifests and configs.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        blobs::get(self, digest)
    }

    /// Opens a blob for streaming (layers out of the store): the reader verifies the
    /// digest as it goes and fails when the bytes are corrupt.
    pub fn open_blob(&self, digest: &Digest) -> Result<blobs::VerifiedBlob> {
        blobs::VerifiedBlob::open(self, digest)
    }

    /// Whether the store holds this blob.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).exists()
    }

    /// Writers take this shared (for as long as the blobs they add are not yet named in
    /// the index); gc takes it exclusive.
    pub fn ingest_lock(&self) -> Result<IngestLock> {
        Ok(IngestLock(self.ingest_lock_file()?))
    }

    pub(crate) fn ingest_lock_file(&self) -> Result<FileLock> {
        FileLock::shared(&self.root().join("gc.lock"))
    }
}

/// The OCI image manifest of a config (as its bytes, whose digest is the image id) over
/// stored layer blobs, base first.
pub fn oci_manifest(config_bytes: &[u8], layers: &[LayerInfo]) -> Result<Vec<u8>> {
    let layer_descriptors: Vec<Descriptor> = layers
        .iter()
        .map(|l| {
            Descriptor::new(
                MediaType::from(l.media_type.as_str()),
                l.size,
                l.digest.to_oci(),
            )
        })
        .collect();
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(Descriptor::new(
            MediaType::ImageConfig,
            config_bytes.len() as u64,
            Digest::of_bytes(config_bytes).to_oci(),
        ))
        .layers(layer_descriptors)
        .build()
        .map_err(build_error)?;
    serde_json::to_vec(&manifest).map_err(|e| Error::BadInput(e.to_string()))
}

/// The index change of [`Store::set_ref`].
fn point_ref(manifests: &mut Vec<Descriptor>, descriptor: Descriptor, name: &str) -> Result<()> {
    manifests.retain(|d| {
        let untagged_same = index::ref_name(d).is_none() && d.digest() == descriptor.digest();
        index::ref_name(d) != Some(name) && !untagged_same
    });
    manifests.push(index::with_ref_name(descriptor, name));
    Ok(())
}

/// The index change of [`Store::add_untagged`].
fn add_unnamed(manifests: &mut Vec<Descriptor>, descriptor: Descriptor) -> Result<()> {
    if !manifests.iter().any(|d| d.digest() == descriptor.digest()) {
        manifests.push(descriptor);
    }
    Ok(())
}

fn is_broken_pipe(error: &Error) -> bool {
    matches!(error, Error::Io { cause, .. } if cause.kind() == std::io::ErrorKind::BrokenPipe)
}

fn build_error(e: impl std::fmt::Display) -> Error {
    Error::BadInput(format!("cannot build image metadata: {e}"))
}

impl Store {
    /// Makes a new image from `base` plus the changes in an overlayfs upper directory
    /// (`mycontainer commit`): the directory becomes one more layer, stored like any
    /// other, and `spec` gives the new image's config.
    pub fn commit_dir(
        &self,
        base: &Image,
        upper: &Path,
        spec: &ImageSpec,
        name: Option<&Reference>,
    ) -> Result<Image> {
        let _ingest = self.ingest_lock_file()?;
        let imported = self.import_dir_layer(upper, None)?;
        let mut layers = base.layers.clone();
        layers.push(imported.layer);
        self.create_image(&layers, spec, name)
    }

    /// Stores an overlayfs upper directory as one layer (whiteouts and opaque
    /// directories become OCI whiteouts; entries sorted; with `clamp_mtime` no mtime is
    /// later than it). `commit` and the image builder use it. Hold
    /// [`Store::ingest_lock`] until an image names the layer.
    pub fn import_dir_layer(
        &self,
        upper: &Path,
        clamp_mtime: Option<u64>,
    ) -> Result<ImportedLayer> {
        let (reader, writer) =
            std::io::pipe().map_err(|e| Error::io("cannot create a pipe for", upper, e))?;
        std::thread::scope(|scope| {
            let producer =
                scope.spawn(move || crate::diff::write_layer(upper, writer, clamp_mtime).map(drop));
            let imported = self.import_layer_stream(reader, None, None, &NoProgress);
            let produced = producer
                .join()
                .unwrap_or_else(|_| Err(Error::BadInput("the layer writer panicked".into())));
            match (produced, imported) {
                // The writer's own failure explains more, unless it only saw the
                // importer hang up (which then has the real reason).
                (Err(e), _) if !is_broken_pipe(&e) => Err(e),
                (_, imported) => imported,
            }
        })
    }
}

/// An image manifest as a registry or an archive gives it, parsed, with its config's
/// digest (which the caller checks against the config's bytes).
fn read_manifest(manifest_bytes: &[u8]) -> Result<(ImageManifest, Digest)> {
    let manifest: ImageManifest = serde_json::from_slice(manifest_bytes)
        .map_err(|e| Error::BadInput(format!("the image manifest is not valid JSON: {e}")))?;
    let config_digest = Digest::from_oci(manifest.config().digest())?;
    Ok((manifest, config_digest))
}

/// The config of `manifest`, parsed and checked to agree with it (one well-formed
/// diff-id per layer): the pairs layer blob -> diff-id, bottom layer first.
fn read_config(manifest: &ImageManifest, config_bytes: &[u8]) -> Result<Vec<(Digest, Digest)>> {
    let config: ImageConfiguration = serde_json::from_slice(config_bytes)
        .map_err(|e| Error::BadInput(format!("the image config is not valid JSON: {e}")))?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        return Err(Error::BadInput(format!(
            "the image config lists {} diff_ids for {} layers",
            diff_ids.len(),
            manifest.layers().len()
        )));
    }
    manifest
        .layers()
        .iter()
        .zip(diff_ids)
        .map(|(layer, diff_id)| Ok((Digest::from_oci(layer.digest())?, Digest::parse(diff_id)?)))
        .collect()
}

/// The sizes of the layer blobs added up. A manifest declares them (up to u64::MAX
/// each), so the sum saturates rather than overflow.
fn total_size(layers: &[LayerInfo]) -> u64 {
    layers
        .iter()
        .fold(0, |total, l| total.saturating_add(l.size))
}

/// For the fuzz targets (fuzz/): what [`Store::add_image`] reads of a manifest and its
/// config before it looks at the store (the config's digest aside, which no fuzzer can
/// match), and the image size it would show.
#[cfg(feature = "fuzz")]
pub fn check_image_documents(manifest_bytes: &[u8], config_bytes: &[u8]) -> Result<u64> {
    let (manifest, _) = read_manifest(manifest_bytes)?;
    let pairs = read_config(&manifest, config_bytes)?;
    let layers: Vec<LayerInfo> = manifest
        .layers()
        .iter()
        .zip(pairs)
        .map(|(layer, (digest, diff_id))| LayerInfo {
            digest,
            diff_id,
            size: layer.size(),
            media_type: layer.media_type().to_string(),
        })
        .collect();
    Ok(total_size(&layers))
}
