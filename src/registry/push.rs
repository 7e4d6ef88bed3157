//! `push`: layers (compressed on the way out when stored uncompressed), the config,
//! then the manifest. Blobs the registry has are skipped (HEAD), blobs another
//! repository of the same registry has are mounted from it.

use std::io;

use anyhow::{bail, Context};
use mycontainer_store::{Digest, Store};
use oci_spec::image::{Descriptor, ImageManifest, MediaType};

use super::client::{Client, ClientOptions, OCI_MANIFEST};
use super::{auth, stream, RegistryRef, Reporter};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LayerCompression {
    Gzip,
    Zstd,
}

impl LayerCompression {
    fn media_type(self) -> &'static str {
        match self {
            LayerCompression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            LayerCompression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

pub struct PushOptions {
    pub insecure: bool,
    pub compression: LayerCompression,
}

/// Pushes the local image `source` as `target`; returns the pushed manifest's digest.
pub fn push(
    store: &Store,
    source: &str,
    target: &RegistryRef,
    options: &PushOptions,
    reporter: &dyn Reporter,
) -> anyhow::Result<Digest> {
    let Some(tag) = &target.tag else {
        bail!("cannot push to {target}: give a tag (REGISTRY/REPO:TAG), not a digest");
    };
    let image = store.image(source)?;
    let manifest_bytes = store.read_blob(&image.manifest_digest)?;
    let manifest: ImageManifest = serde_json::from_slice(&manifest_bytes).with_context(|| {
        format!(
            "the stored manifest {} is not valid: remove and re-create the image",
            image.manifest_digest
        )
    })?;
    let config_bytes = store.read_blob(&image.id)?;
    let credentials = auth::lookup(store.root(), &target.registry)?;
    let mount_from = mount_sources(&image.names, target);
    let client = Client::new(
        &target.registry,
        &target.repository,
        credentials,
        ClientOptions {
            insecure: options.insecure,
            push: true,
            mount_from: mount_from.clone(),
        },
    )?;
    // Authenticates (and checks the registry answers) before any work on the layers.
    let config_digest = Digest::from_oci(manifest.config().digest())?;
    client
        .has_blob(&config_digest)
        .with_context(|| format!("cannot push {target}"))?;

    let mut layers = Vec::new();
    let mut recompressed = false;
    for layer in manifest.layers() {
        let digest = Digest::from_oci(layer.digest())?;
        if is_uncompressed(layer.media_type()) {
            let cache = CompressedCache::new(store, &digest, options.compression);
            let cached = cache.get();
            let known = match &cached {
                // Pushed before: if the registry has it (in this repository or one it
                // was pushed to), there is no need to compress it again.
                Some(entry) => {
                    let sources = entry.repositories_on(&target.registry, &target.repository);
                    let sources: Vec<String> = mount_from.iter().cloned().chain(sources).collect();
                    reuse_blob(&client, &entry.digest, &sources, reporter)?
                        .then(|| (entry.digest.clone(), entry.size))
                }
                None => None,
            };
            let (packed, size) = match known {
                Some(known) => known,
                None => push_compressed(
                    store,
                    &client,
                    &digest,
                    layer.size(),
                    options.compression,
                    reporter,
                )
                .with_context(|| format!("cannot push layer {digest}"))?,
            };
            cache.put(cached, &packed, size, target);
            layers.push(Descriptor::new(
                MediaType::from(options.compression.media_type()),
                size,
                packed.to_oci(),
            ));
            recompressed = true;
        } else {
            let blob = || store.open_blob(&digest).map_err(anyhow::Error::from);
            upload(&client, &digest, layer.size(), &blob, &mount_from, reporter)?;
            layers.push(layer.clone());
        }
    }
    let config_size = config_bytes.len() as u64;
    let config = || Ok(Box::new(io::Cursor::new(config_bytes.clone())) as Box<dyn io::Read + Send>);
    upload_reader(
        &client,
        &config_digest,
        config_size,
        &config,
        &mount_from,
        reporter,
    )?;

    // The config and diff-ids stay; only the layer descriptors change with compression.
    let (bytes, media_type) = if recompressed {
        let mut manifest = manifest.clone();
        // The new manifest is OCI: Docker layer types in it become their OCI names.
        for layer in &mut layers {
            layer.set_media_type(oci_layer_type(layer.media_type()));
        }
        manifest.set_layers(layers);
        manifest.set_media_type(Some(MediaType::ImageManifest));
        let mut config = manifest.config().clone();
        config.set_media_type(MediaType::ImageConfig);
        manifest.set_config(config);
        (serde_json::to_vec(&manifest)?, OCI_MANIFEST.to_string())
    } else {
        let media_type = manifest
            .media_type()
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_else(|| OCI_MANIFEST.to_string());
        (manifest_bytes, media_type)
    };
    client
        .put_manifest(tag, &media_type, &bytes)
        .with_context(|| format!("cannot push {target}"))?;
    Ok(Digest::of_bytes(&bytes))
}

/// Remembers which compressed blob an uncompressed layer became when pushed, and where
/// it was pushed (`<root>/pushcache/<hex>.<gzip|zstd>`), so pushing it again costs a
/// HEAD (or a cross-repository mount) instead of a compression pass. Only ever a hint:
/// the registry is always asked whether it has the blob.
struct CompressedCache {
    path: std::path::PathBuf,
}

struct CacheEntry {
    digest: Digest,
    size: u64,
    /// `registry repository` pairs the blob was pushed to.
    pushed_to: Vec<(String, String)>,
}

impl CacheEntry {
    fn repositories_on(&self, registry: &str, except: &str) -> Vec<String> {
        self.pushed_to
            .iter()
            .filter(|(r, repo)| r == registry && repo != except)
            .map(|(_, repo)| repo.clone())
            .collect()
    }
}

impl CompressedCache {
    fn new(store: &Store, layer: &Digest, compression: LayerCompression) -> CompressedCache {
        let suffix = match compression {
            LayerCompression::Gzip => "gzip",
            LayerCompression::Zstd => "zstd",
        };
        CompressedCache {
            path: store
                .root()
                .join("pushcache")
                .join(format!("{}.{suffix}", layer.hex())),
        }
    }

    fn get(&self) -> Option<CacheEntry> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        let mut lines = text.lines();
        let (digest, size) = lines.next()?.split_once(' ')?;
        let pushed_to = lines
            .filter_map(|l| l.split_once(' '))
            .map(|(r, repo)| (r.to_string(), repo.to_string()))
            .collect();
        Some(CacheEntry {
            digest: Digest::parse(digest).ok()?,
            size: size.parse().ok()?,
            pushed_to,
        })
    }

    /// Best effort: a cache that cannot be written only costs a compression next time.
    fn put(&self, previous: Option<CacheEntry>, packed: &Digest, size: u64, target: &RegistryRef) {
        let mut pushed_to = match previous {
            Some(entry) if &entry.digest == packed => entry.pushed_to,
            _ => Vec::new(),
        };
        let here = (target.registry.clone(), target.repository.clone());
        if !pushed_to.contains(&here) {
            pushed_to.push(here);
        }
        let mut text = format!("{packed} {size}\n");
        for (registry, repository) in &pushed_to {
            text.push_str(&format!("{registry} {repository}\n"));
        }
        let Some(dir) = self.path.parent() else {
            return;
        };
        let temp = self
            .path
            .with_extension(format!("tmp-{}", std::process::id()));
        let written = std::fs::create_dir_all(dir)
            .and_then(|_| std::fs::write(&temp, text))
            .and_then(|_| std::fs::rename(&temp, &self.path));
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
    }
}

/// Removes push-cache entries of layers the store no longer has (after `image rm` and
/// gc), and temp files a killed push left. Returns how many files went.
pub fn prune_push_cache(store: &Store) -> usize {
    let Ok(entries) = std::fs::read_dir(store.root().join("pushcache")) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let (hex, kind) = name.split_once('.').unwrap_or((&name, ""));
        let layer_gone = Digest::parse(&format!("sha256:{hex}"))
            .map(|digest| !store.has_blob(&digest))
            .unwrap_or(true);
        let unfinished = kind.contains("tmp-");
        if (layer_gone || unfinished) && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Whether the target repository has `digest` now: already there, or mounted from one
/// of `sources`.
fn reuse_blob(
    client: &Client,
    digest: &Digest,
    sources: &[String],
    reporter: &dyn Reporter,
) -> anyhow::Result<bool> {
    let what = || format!("cannot push blob {digest}");
    if client.has_blob(digest).with_context(what)? {
        reporter.status(&format!("{}: layer already exists", digest.short()));
        return Ok(true);
    }
    for from in sources {
        if client.mount_blob(digest, from).with_context(what)? {
            reporter.status(&format!("{}: mounted from {from}", digest.short()));
            return Ok(true);
        }
    }
    Ok(false)
}

/// Other repositories on the target's registry that this image was pulled from or
/// pushed to (its local names say so): the registry can mount blobs from them.
fn mount_sources(names: &[String], target: &RegistryRef) -> Vec<String> {
    let mut sources: Vec<String> = names
        .iter()
        .filter_map(|name| RegistryRef::parse(name).ok())
        .filter(|r| r.registry == target.registry && r.repository != target.repository)
        .map(|r| r.repository)
        .collect();
    sources.sort();
    sources.dedup();
    sources
}

fn oci_layer_type(media_type: &MediaType) -> MediaType {
    match media_type.to_string().as_str() {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => MediaType::ImageLayerGzip,
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
            MediaType::ImageLayerNonDistributableGzip
        }
        _ => media_type.clone(),
    }
}

fn is_uncompressed(media_type: &MediaType) -> bool {
    matches!(media_type, MediaType::ImageLayer)
        || media_type.to_string() == "application/vnd.docker.image.rootfs.diff.tar"
}

fn upload<R: io::Read + Send + 'static>(
    client: &Client,
    digest: &Digest,
    size: u64,
    open: &dyn Fn() -> anyhow::Result<R>,
    mount_from: &[String],
    reporter: &dyn Reporter,
) -> anyhow::Result<()> {
    let reader = || Ok(Box::new(open()?) as Box<dyn io::Read + Send>);
    upload_reader(client, digest, size, &reader, mount_from, reporter)
}

fn upload_reader(
    client: &Client,
    digest: &Digest,
    size: u64,
    open: &dyn Fn() -> anyhow::Result<Box<dyn io::Read + Send>>,
    mount_from: &[String],
    reporter: &dyn Reporter,
) -> anyhow::Result<()> {
    if reuse_blob(client, digest, mount_from, reporter)? {
        return Ok(());
    }
    let what = || format!("cannot push blob {digest}");
    client
        .upload_blob(digest, size, &|| {
            // A fresh bar per attempt: a retry after authenticating starts over.
            let progress = reporter.blob("uploading", digest.short(), size);
            let reader = ProgressReader {
                inner: open()?,
                progress,
            };
            Ok(reqwest::blocking::Body::sized(reader, size))
        })
        .with_context(what)?;
    reporter.status(&format!("{}: pushed", digest.short()));
    Ok(())
}

/// Compresses the stored layer `digest` while uploading it (no temp copy): the
/// compressed blob's digest is computed as it streams and given when the upload is
/// committed. A failed upload is cancelled. Returns the compressed digest and size.
fn push_compressed(
    store: &Store,
    client: &Client,
    digest: &Digest,
    size: u64,
    compression: LayerCompression,
    reporter: &dyn Reporter,
) -> anyhow::Result<(Digest, u64)> {
    let blob = store.open_blob(digest)?;
    let location = client.start_upload()?;
    let progress = reporter.blob("pushing", digest.short(), size);
    let result = stream_upload(client, &location, blob, progress, compression);
    match &result {
        Ok((packed, _)) => reporter.status(&format!("{}: pushed", packed.short())),
        Err(_) => client.cancel_upload(&location),
    }
    result
}

fn stream_upload(
    client: &Client,
    location: &reqwest::Url,
    blob: mycontainer_store::VerifiedBlob,
    progress: Box<dyn mycontainer_store::Progress + Send>,
    compression: LayerCompression,
) -> anyhow::Result<(Digest, u64)> {
    let (sender, receiver, done) = stream::channel();
    let (patched, compressed, source_error) = std::thread::scope(|scope| {
        let compressor = scope.spawn(move || {
            let mut source = SourceReader {
                inner: io::BufReader::with_capacity(
                    1 << 20,
                    ProgressReader {
                        inner: blob,
                        progress,
                    },
                ),
                error: None,
            };
            let compressed = stream::compress(&mut source, sender, compression);
            (compressed, source.error)
        });
        let patched = client.patch_upload(location, reqwest::blocking::Body::new(receiver));
        let (compressed, source_error) = compressor
            .join()
            .unwrap_or_else(|_| (Err(anyhow::anyhow!("the compressor panicked")), None));
        (patched, compressed, source_error)
    });
    // A layer that cannot be read (a corrupt blob) explains a broken upload best; then
    // what the registry said; then the compressor's own failure.
    if let Some(error) = source_error {
        bail!("{error}");
    }
    let next = patched?;
    compressed?;
    let (digest, size) = done
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .context("the upload ended before the whole layer was sent")?;
    client.commit_upload(&next, &digest)?;
    Ok((digest, size))
}

/// Remembers the first read error of the layer being pushed.
struct SourceReader<R> {
    inner: R,
    error: Option<String>,
}

impl<R: io::Read> io::Read for SourceReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            self.error.get_or_insert_with(|| e.to_string());
        })
    }
}

/// Reports bytes read through it; finishes the report at the end of the input.
struct ProgressReader<P, R> {
    inner: R,
    progress: P,
}

impl<P: std::ops::Deref<Target = T>, T: mycontainer_store::Progress + ?Sized, R: io::Read> io::Read
    for ProgressReader<P, R>
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            self.progress.finish();
        }
        self.progress.advance(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_only_from_other_repositories_of_the_same_registry() {
        let target = RegistryRef::parse("127.0.0.1:5000/b:v1").unwrap();
        let names = [
            "127.0.0.1:5000/a:v1".to_string(),
            "127.0.0.1:5000/b:old".to_string(),
            "127.0.0.1:6000/c:v1".to_string(),
            "busybox:latest".to_string(),
        ];
        assert_eq!(mount_sources(&names, &target), vec!["a".to_string()]);
    }

    #[test]
    fn docker_layer_types_get_their_oci_names() {
        let docker = MediaType::from("application/vnd.docker.image.rootfs.diff.tar.gzip");
        assert_eq!(oci_layer_type(&docker), MediaType::ImageLayerGzip);
        assert_eq!(
            oci_layer_type(&MediaType::ImageLayerZstd),
            MediaType::ImageLayerZstd
        );
        assert!(is_uncompressed(&MediaType::from(
            "application/vnd.docker.image.rootfs.diff.tar"
        )));
        assert!(!is_uncompressed(&docker));
    }
}
