//! `image save`: images to an OCI archive or a docker-archive, written as one tar stream.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, Write};

use anyhow::Context;
use mycontainer_store::{Compression, Digest, Image, Reference, Store, REF_NAME_ANNOTATION};
use serde_json::json;

use super::CONTAINERD_NAME_ANNOTATION;
use crate::registry::client::{OCI_INDEX, OCI_MANIFEST};
use crate::registry::RegistryRef;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ArchiveFormat {
    /// A tar of an OCI image layout (what skopeo's oci-archive and containerd read)
    Oci,
    /// Docker's format: manifest.json, the config and each layer as an uncompressed tar
    Docker,
}

/// An image to save and the name it was asked for by (none when asked for by id).
struct Saved {
    image: Image,
    name: Option<String>,
}

pub fn save(
    store: &Store,
    wanted: &[String],
    format: ArchiveFormat,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut saved = Vec::new();
    for name in wanted {
        let image = store.image(name)?;
        let name = Reference::parse(name)
            .ok()
            .map(|r| r.to_string())
            .filter(|n| image.names.contains(n));
        saved.push(Saved { image, name });
    }
    let mut builder = tar::Builder::new(out);
    match format {
        ArchiveFormat::Oci => save_oci(store, &saved, &mut builder)?,
        ArchiveFormat::Docker => save_docker(store, &saved, &mut builder)?,
    }
    builder
        .into_inner()
        .context("cannot finish the archive")?
        .flush()
        .context("cannot write the archive")?;
    Ok(())
}

fn save_oci(
    store: &Store,
    saved: &[Saved],
    builder: &mut tar::Builder<&mut dyn Write>,
) -> anyhow::Result<()> {
    let mut index_entries = Vec::new();
    let mut docker_manifest = Vec::new();
    let mut blobs: Vec<Digest> = Vec::new();
    for Saved { image, name } in saved {
        let manifest_bytes = store.read_blob(&image.manifest_digest)?;
        let doc: serde_json::Value = serde_json::from_slice(&manifest_bytes)?;
        let media_type = doc
            .get("mediaType")
            .and_then(|m| m.as_str())
            .unwrap_or(OCI_MANIFEST);
        let mut entry = json!({
            "mediaType": media_type,
            "digest": image.manifest_digest,
            "size": manifest_bytes.len(),
        });
        if let Some(name) = name {
            let mut annotations = json!({ REF_NAME_ANNOTATION: name });
            if let Ok(full) = RegistryRef::parse(name) {
                annotations[CONTAINERD_NAME_ANNOTATION] = json!(full.to_string());
            }
            entry["annotations"] = annotations;
        }
        index_entries.push(entry);
        docker_manifest.push(json!({
            "Config": format!("blobs/sha256/{}", image.id.hex()),
            "RepoTags": name.iter().collect::<Vec<_>>(),
            "Layers": image.layers.iter().map(|l| format!("blobs/sha256/{}", l.digest.hex())).collect::<Vec<_>>(),
        }));
        blobs.push(image.manifest_digest.clone());
        blobs.push(image.id.clone());
        blobs.extend(image.layers.iter().map(|l| l.digest.clone()));
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": index_entries,
    });
    append_bytes(builder, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    append_bytes(builder, "index.json", &serde_json::to_vec(&index)?)?;
    // Docker (25 and later) writes this too, so `docker load` takes our OCI archives.
    append_bytes(
        builder,
        "manifest.json",
        &serde_json::to_vec(&docker_manifest)?,
    )?;
    append_dir(builder, "blobs/")?;
    append_dir(builder, "blobs/sha256/")?;
    let mut written = HashSet::new();
    for digest in blobs {
        if !written.insert(digest.clone()) {
            continue;
        }
        let file = store.open_blob(&digest)?;
        let size = file.size();
        append_reader(
            builder,
            &format!("blobs/sha256/{}", digest.hex()),
            size,
            file,
        )?;
    }
    Ok(())
}

fn save_docker(
    store: &Store,
    saved: &[Saved],
    builder: &mut tar::Builder<&mut dyn Write>,
) -> anyhow::Result<()> {
    let scratch = store.temp_dir("save")?;
    let mut manifest = Vec::new();
    let mut written = HashSet::new();
    for Saved { image, name } in saved {
        let config_name = format!("{}.json", image.id.hex());
        if written.insert(config_name.clone()) {
            append_bytes(builder, &config_name, &store.read_blob(&image.id)?)?;
        }
        let mut layer_names = Vec::new();
        for layer in &image.layers {
            let layer_name = format!("{}/layer.tar", layer.diff_id.hex());
            if written.insert(layer_name.clone()) {
                append_dir(builder, &format!("{}/", layer.diff_id.hex()))?;
                let (tar, size) = uncompressed_layer(store, &layer.digest, scratch.path())?;
                append_reader(builder, &layer_name, size, tar)?;
            }
            layer_names.push(layer_name);
        }
        manifest.push(json!({
            "Config": config_name,
            "RepoTags": name.iter().collect::<Vec<_>>(),
            "Layers": layer_names,
        }));
    }
    append_bytes(builder, "manifest.json", &serde_json::to_vec(&manifest)?)?;
    Ok(())
}

/// The layer blob as a plain tar: the blob itself when stored uncompressed, else
/// decompressed into a scratch file (a tar member needs its size up front). Either way
/// the blob is verified as it is read: a corrupt one fails the save.
fn uncompressed_layer(
    store: &Store,
    digest: &Digest,
    scratch: &std::path::Path,
) -> anyhow::Result<(Box<dyn Read>, u64)> {
    let mut blob = store.open_blob(digest)?;
    let size = blob.size();
    let mut head = [0u8; 6];
    let n = read_head(&mut blob, &mut head)?;
    let compression = Compression::sniff(&head[..n])?;
    let mut source = BufReader::new(io::Cursor::new(head[..n].to_vec()).chain(blob));
    if compression == Compression::None {
        return Ok((Box::new(source), size));
    }
    let path = scratch.join(digest.hex());
    let mut out = File::options()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let decompressed = match compression {
        Compression::Gzip => io::copy(&mut flate2::read::GzDecoder::new(&mut source), &mut out),
        _ => zstd::stream::read::Decoder::new(&mut source)
            .and_then(|mut decoder| io::copy(&mut decoder, &mut out)),
    };
    // A decoder may stop at the end of its stream: read the blob to its end so that its
    // digest is checked whatever follows.
    let size = decompressed
        .and_then(|size| io::copy(&mut source, &mut io::sink()).map(|_| size))
        .with_context(|| format!("cannot decompress layer {digest}"))?;
    out.rewind()?;
    Ok((Box::new(out), size))
}

fn read_head(blob: &mut impl Read, head: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < head.len() {
        match blob.read(&mut head[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

fn header(size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(mode);
    header.set_entry_type(kind);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header
}

fn append_bytes(
    builder: &mut tar::Builder<&mut dyn Write>,
    name: &str,
    bytes: &[u8],
) -> anyhow::Result<()> {
    append_reader(builder, name, bytes.len() as u64, bytes)
}

fn append_reader(
    builder: &mut tar::Builder<&mut dyn Write>,
    name: &str,
    size: u64,
    reader: impl Read,
) -> anyhow::Result<()> {
    let mut header = header(size, 0o644, tar::EntryType::Regular);
    builder
        .append_data(&mut header, name, reader)
        .with_context(|| format!("cannot write {name} into the archive"))
}

fn append_dir(builder: &mut tar::Builder<&mut dyn Write>, name: &str) -> anyhow::Result<()> {
    let mut header = header(0, 0o755, tar::EntryType::Directory);
    builder
        .append_data(&mut header, name, io::empty())
        .with_context(|| format!("cannot write {name} into the archive"))
}
