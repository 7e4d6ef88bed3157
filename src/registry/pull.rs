//! `pull`: manifest (through an index when there is one), config, then the layers the
//! store lacks, downloaded a few at a time and unpacked as they stream in. Every digest
//! is checked; nothing is named in the store until all of it is there.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Context};
use mycontainer_store::{Digest, Image, Store};
use oci_spec::image::ImageManifest;

use super::client::{Client, ClientOptions};
use super::{auth, declared_media_type, is_index, pick_platform, RegistryRef, Reporter};

/// Layers downloaded at the same time (Docker's default is 3).
const PARALLEL_DOWNLOADS: usize = 3;

pub struct PullOptions {
    pub insecure: bool,
}

pub fn pull(
    store: &Store,
    reference: &RegistryRef,
    options: &PullOptions,
    reporter: &dyn Reporter,
) -> anyhow::Result<Image> {
    let credentials = auth::lookup(store.root(), &reference.registry)?;
    let client = Client::new(
        &reference.registry,
        &reference.repository,
        credentials,
        ClientOptions {
            insecure: options.insecure,
            push: false,
            mount_from: Vec::new(),
        },
    )?;
    let manifest_bytes = fetch_image_manifest(&client, reference)?;
    let manifest: ImageManifest = serde_json::from_slice(&manifest_bytes)
        .with_context(|| format!("the manifest of {reference} is not a valid image manifest"))?;
    let config_digest = Digest::from_oci(manifest.config().digest())?;
    let config_bytes = client
        .get_small_blob(&config_digest)
        .with_context(|| format!("cannot pull {reference}"))?;

    // Held until the image is named, so gc cannot sweep the layers we add before that.
    let _ingest = store.ingest_lock()?;
    let layers = manifest
        .layers()
        .iter()
        .map(|l| Ok((Digest::from_oci(l.digest())?, l.size())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    download_layers(store, &client, &layers, reporter)
        .with_context(|| format!("cannot pull {reference}"))?;
    let image = store
        .add_image(
            &manifest_bytes,
            &config_bytes,
            reference.local_name().as_ref(),
        )
        .with_context(|| format!("cannot store {reference}"))?;
    reporter.status(&format!("Digest: {}", image.manifest_digest));
    Ok(image)
}

/// The image manifest for the host's platform, verified against the digest that named
/// it (the reference's digest, or the index entry's).
fn fetch_image_manifest(client: &Client, reference: &RegistryRef) -> anyhow::Result<Vec<u8>> {
    let mut wanted = reference.digest.clone();
    let mut target = reference.manifest_reference();
    // One index level is what registries serve; a second would be a malformed image.
    for _ in 0..2 {
        let fetched = client
            .get_manifest(&target)
            .with_context(|| format!("cannot pull {reference}"))?;
        // Pulled by tag, the registry's own claim is what we can check against.
        if let Some(digest) = wanted.as_ref().or(fetched.claimed_digest.as_ref()) {
            let actual = Digest::of_bytes(&fetched.bytes);
            if &actual != digest {
                bail!("cannot pull {reference}: manifest {digest} from {} hashes to {actual}: the registry sent corrupt data, nothing was stored", client.registry());
            }
        }
        let doc: serde_json::Value = serde_json::from_slice(&fetched.bytes)
            .with_context(|| format!("the manifest of {reference} is not valid JSON"))?;
        let media_type = declared_media_type(&doc, &fetched.media_type);
        if doc.get("schemaVersion").and_then(|v| v.as_u64()) == Some(1) {
            bail!("cannot pull {reference}: it is a Docker schema 1 image, which is not supported");
        }
        if !is_index(&media_type, &doc) {
            return Ok(fetched.bytes);
        }
        let (digest, _) =
            pick_platform(&doc).with_context(|| format!("cannot pull {reference}"))?;
        target = digest.to_string();
        wanted = Some(digest);
    }
    bail!("cannot pull {reference}: its index points to another index")
}

/// Downloads and unpacks the layers the store does not have, a few at a time. The first
/// failure stops the others from starting new downloads and is returned.
fn download_layers(
    store: &Store,
    client: &Client,
    layers: &[(Digest, u64)],
    reporter: &dyn Reporter,
) -> anyhow::Result<()> {
    let mut todo: Vec<&(Digest, u64)> = Vec::new();
    for layer in layers {
        if todo.iter().any(|t| t.0 == layer.0) {
            continue;
        }
        if store.layer_for_blob(&layer.0).is_some() {
            reporter.status(&format!("{}: already exists", layer.0.short()));
        } else {
            todo.push(layer);
        }
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL_DOWNLOADS.min(todo.len()) {
            scope.spawn(|| {
                while !failed.load(Ordering::SeqCst) {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some((digest, size)) = todo.get(i) else {
                        break;
                    };
                    if let Err(e) = download_layer(store, client, digest, *size, reporter) {
                        failed.store(true, Ordering::SeqCst);
                        let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
                        slot.get_or_insert(e);
                    }
                }
            });
        }
    });
    match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn download_layer(
    store: &Store,
    client: &Client,
    digest: &Digest,
    size: u64,
    reporter: &dyn Reporter,
) -> anyhow::Result<()> {
    let progress = reporter.blob("downloading", digest.short(), size);
    let response = client.get_blob(digest)?;
    store
        .import_layer(response, Some(digest), Some(size), &*progress)
        .with_context(|| format!("layer {digest} from {}", client.registry()))?;
    reporter.status(&format!("{}: pull complete", digest.short()));
    Ok(())
}
