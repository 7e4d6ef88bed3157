//! `image load`: an OCI archive (index.json) or a docker-archive (manifest.json), plain
//! or compressed, from a file or a stream. The archive is indexed once (a stream is
//! spooled to a scratch file first) so members are read in whatever order they come.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use mycontainer_store::{
    Compression, Digest, Image, LayerInfo, Reference, Store, REF_NAME_ANNOTATION,
};
use serde_json::Value;

use super::tarindex::TarIndex;
use super::CONTAINERD_NAME_ANNOTATION;
use crate::registry::{declared_media_type, is_index, pick_platform, RegistryRef, Reporter};

/// Metadata members (manifests, configs) larger than this are refused.
const MAX_METADATA: u64 = 16 << 20;

/// Where the archive comes from.
pub enum LoadInput<'a> {
    File(&'a Path),
    Stream(Box<dyn Read + 'a>),
}

/// Loads every image in the archive; returns each image with the names it got.
pub fn load(
    store: &Store,
    input: LoadInput<'_>,
    reporter: &dyn Reporter,
) -> anyhow::Result<Vec<(Image, Vec<String>)>> {
    let scratch = store.temp_dir("load")?;
    let tar_path = plain_tar(input, scratch.path())?;
    let archive = TarIndex::open(&tar_path)?;
    // Held until the images are named, so gc cannot sweep the layers added before.
    let _ingest = store.ingest_lock()?;
    let loaded = if archive.contains("index.json") {
        load_oci(store, &archive, reporter)?
    } else if archive.contains("manifest.json") {
        load_docker(store, &archive, reporter)?
    } else {
        bail!("the input is not an image archive: it has neither index.json (OCI) nor manifest.json (docker)")
    };
    if loaded.is_empty() {
        bail!("the archive holds no image: its index lists none");
    }
    Ok(loaded)
}

/// An OCI image layout directory (what `skopeo copy ... oci:DIR` and umoci write),
/// packed into a tar in `scratch` so it loads like an oci-archive.
fn layout_dir_as_tar(dir: &Path, scratch: &Path) -> anyhow::Result<PathBuf> {
    if !dir.join("index.json").is_file() {
        bail!(
            "{} is a directory without index.json: load takes a tar file or an OCI image layout directory",
            dir.display()
        );
    }
    let path = scratch.join("layout.tar");
    let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut builder = tar::Builder::new(io::BufWriter::new(file));
    // A hostile layout's symlinks stay symlinks (the loader reads only regular members).
    builder.follow_symlinks(false);
    builder
        .append_dir_all(".", dir)
        .and_then(|_| builder.into_inner())
        .and_then(|mut out| out.flush())
        .with_context(|| format!("cannot read the image layout {}", dir.display()))?;
    Ok(path)
}

/// A path to the archive as an uncompressed tar: the file itself when it is one,
/// else a decompressed (or spooled) copy in `scratch`.
fn plain_tar(input: LoadInput<'_>, scratch: &Path) -> anyhow::Result<PathBuf> {
    // A regular file that is already a plain tar is indexed in place; anything else
    // (a pipe, compressed input) is spooled.
    let (mut reader, in_place): (Box<dyn Read + '_>, Option<&Path>) = match input {
        LoadInput::File(path) => {
            let file =
                File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            let meta = file
                .metadata()
                .with_context(|| format!("cannot stat {}", path.display()))?;
            if meta.is_dir() {
                return layout_dir_as_tar(path, scratch);
            }
            (Box::new(file), meta.is_file().then_some(path))
        }
        LoadInput::Stream(stream) => (stream, None),
    };
    let mut head = Vec::with_capacity(6);
    (&mut reader)
        .take(6)
        .read_to_end(&mut head)
        .context("cannot read the archive")?;
    let compression = Compression::sniff(&head)?;
    if let (Compression::None, Some(path)) = (compression, in_place) {
        return Ok(path.to_path_buf());
    }
    let whole = io::Cursor::new(head).chain(reader);
    let mut decoded: Box<dyn Read + '_> = match compression {
        Compression::None => Box::new(whole),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(whole))),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(whole)?),
    };
    let spooled = scratch.join("archive.tar");
    let mut out =
        File::create(&spooled).with_context(|| format!("cannot create {}", spooled.display()))?;
    io::copy(&mut decoded, &mut out).context("cannot read the archive")?;
    Ok(spooled)
}

fn load_oci(
    store: &Store,
    archive: &TarIndex,
    reporter: &dyn Reporter,
) -> anyhow::Result<Vec<(Image, Vec<String>)>> {
    let index: Value = serde_json::from_slice(&archive.read_member("index.json", MAX_METADATA)?)
        .context("index.json in the archive is not valid JSON")?;
    let entries = index
        .get("manifests")
        .and_then(|m| m.as_array())
        .context("index.json in the archive lists no manifests")?;
    // Docker 25+ writes both; its manifest.json has the names when index.json only
    // carries a bare tag.
    let docker_tags = docker_repo_tags(archive);
    let mut loaded = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let digest = descriptor_digest(entry)?;
        let manifest_bytes = read_blob(archive, &digest)?;
        let manifest_bytes = resolve_index(archive, manifest_bytes)?;
        let manifest: Value = serde_json::from_slice(&manifest_bytes)?;
        let config_digest = descriptor_digest(
            manifest
                .get("config")
                .context("a manifest in the archive has no config")?,
        )?;
        let config_bytes = read_blob(archive, &config_digest)?;
        let layers = manifest
            .get("layers")
            .and_then(|l| l.as_array())
            .context("a manifest in the archive has no layers")?;
        for layer in layers {
            let digest = descriptor_digest(layer)?;
            if store.layer_for_blob(&digest).is_some() {
                reporter.status(&format!("{}: already exists", digest.short()));
                continue;
            }
            let (reader, size) = archive.open_member(&blob_name(&digest))?;
            let progress = reporter.blob("loading", digest.short(), size);
            store
                .import_layer(reader, Some(&digest), Some(size), &*progress)
                .with_context(|| format!("cannot load layer {digest}"))?;
        }
        let names = oci_names(entry, docker_tags.get(i));
        loaded.push(add(store, &manifest_bytes, &config_bytes, names)?);
    }
    Ok(loaded)
}

/// Follows an index (a multi-platform image in the archive) to the host's manifest.
fn resolve_index(archive: &TarIndex, bytes: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    let doc: Value =
        serde_json::from_slice(&bytes).context("a manifest in the archive is not valid JSON")?;
    if !is_index(&declared_media_type(&doc, ""), &doc) {
        return Ok(bytes);
    }
    let (digest, _) = pick_platform(&doc)?;
    let inner = read_blob(archive, &digest)?;
    let inner_doc: Value = serde_json::from_slice(&inner)?;
    if is_index(&declared_media_type(&inner_doc, ""), &inner_doc) {
        bail!("the archive nests an index in an index, which is not supported");
    }
    Ok(inner)
}

/// Names for an OCI index entry: containerd's full name, else the ref name when it is a
/// whole reference (a bare tag, as Docker writes it, needs manifest.json's RepoTags).
fn oci_names(entry: &Value, docker_tags: Option<&Vec<String>>) -> Vec<String> {
    let annotation = |key: &str| {
        entry
            .get("annotations")
            .and_then(|a| a.get(key))
            .and_then(|v| v.as_str())
    };
    if let Some(full) = annotation(CONTAINERD_NAME_ANNOTATION) {
        return vec![full.to_string()];
    }
    match annotation(REF_NAME_ANNOTATION) {
        Some(name) if name.contains(':') || name.contains('/') => vec![name.to_string()],
        Some(name) => match docker_tags {
            Some(tags) if !tags.is_empty() => tags.clone(),
            _ => vec![name.to_string()],
        },
        None => docker_tags.cloned().unwrap_or_default(),
    }
}

fn docker_repo_tags(archive: &TarIndex) -> Vec<Vec<String>> {
    let Ok(bytes) = archive.read_member("manifest.json", MAX_METADATA) else {
        return Vec::new();
    };
    let Ok(Value::Array(entries)) = serde_json::from_slice::<Value>(&bytes) else {
        return Vec::new();
    };
    entries.iter().map(repo_tags).collect()
}

fn repo_tags(entry: &Value) -> Vec<String> {
    entry
        .get("RepoTags")
        .and_then(|t| t.as_array())
        .map(|tags| {
            tags.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn load_docker(
    store: &Store,
    archive: &TarIndex,
    reporter: &dyn Reporter,
) -> anyhow::Result<Vec<(Image, Vec<String>)>> {
    let manifest: Value =
        serde_json::from_slice(&archive.read_member("manifest.json", MAX_METADATA)?)
            .context("manifest.json in the archive is not valid JSON")?;
    let entries = manifest
        .as_array()
        .context("manifest.json in the archive is not a list of images")?;
    let mut imported: HashMap<String, LayerInfo> = HashMap::new();
    let mut loaded = Vec::new();
    for entry in entries {
        let config_name = entry
            .get("Config")
            .and_then(|c| c.as_str())
            .context("an image in manifest.json has no Config")?;
        let config_bytes = archive.read_member(config_name, MAX_METADATA)?;
        let mut layers = Vec::new();
        for name in entry
            .get("Layers")
            .and_then(|l| l.as_array())
            .context("an image in manifest.json has no Layers")?
        {
            let name = name
                .as_str()
                .context("a layer name in manifest.json is not a string")?;
            if let Some(layer) = imported.get(name) {
                layers.push(layer.clone());
                continue;
            }
            // Layers stored as blobs (newer docker, podman) name their digest: check it.
            let expected = name
                .strip_prefix("blobs/sha256/")
                .and_then(|hex| Digest::parse(hex).ok());
            let (reader, size) = archive.open_member(name)?;
            let progress = reporter.blob("loading", name, size);
            let layer = store
                .import_layer(reader, expected.as_ref(), Some(size), &*progress)
                .with_context(|| format!("cannot load layer {name}"))?
                .layer;
            imported.insert(name.to_string(), layer.clone());
            layers.push(layer);
        }
        // The config as it came (its digest is the image id), the layers as imported.
        let manifest_bytes = mycontainer_store::oci_manifest(&config_bytes, &layers)?;
        loaded.push(add(
            store,
            &manifest_bytes,
            &config_bytes,
            repo_tags(entry),
        )?);
    }
    Ok(loaded)
}

/// Adds the image under its first name and tags it with the others. Names are stored
/// as Docker shows them (`docker.io/library/busybox:latest` -> `busybox:latest`).
fn add(
    store: &Store,
    manifest: &[u8],
    config: &[u8],
    names: Vec<String>,
) -> anyhow::Result<(Image, Vec<String>)> {
    let mut references = Vec::new();
    for name in &names {
        let local = RegistryRef::parse(name)
            .ok()
            .and_then(|r| r.local_name())
            .or_else(|| Reference::parse(name).ok())
            .with_context(|| {
                format!("the archive names an image {name:?}, which is not a valid name")
            })?;
        references.push(local);
    }
    let image = store
        .add_image(manifest, config, references.first())
        .context("cannot add the loaded image")?;
    for reference in references.iter().skip(1) {
        store.tag(&image.manifest_digest.to_string(), reference)?;
    }
    Ok((image, references.iter().map(|r| r.to_string()).collect()))
}

fn descriptor_digest(descriptor: &Value) -> anyhow::Result<Digest> {
    let text = descriptor
        .get("digest")
        .and_then(|d| d.as_str())
        .context("a descriptor in the archive has no digest")?;
    Ok(Digest::parse(text)?)
}

fn blob_name(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// A metadata blob (manifest, config) from the layout, verified.
fn read_blob(archive: &TarIndex, digest: &Digest) -> anyhow::Result<Vec<u8>> {
    let bytes = archive.read_member(&blob_name(digest), MAX_METADATA)?;
    let actual = Digest::of_bytes(&bytes);
    if &actual != digest {
        bail!("blob {digest} in the archive is corrupt: it hashes to {actual}");
    }
    Ok(bytes)
}
