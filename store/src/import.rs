//! Importing a layer tarball (plain, gzip or zstd, told apart by magic bytes) in one
//! streaming pass: a reader thread hashes the input and writes it as a blob while the
//! calling thread decompresses, hashes the diff-id and unpacks.

use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender};

use crate::chunks::{ChannelReader, Chunk};
use std::thread;

use crate::blobs::{BlobWriter, FinishedBlob};
use crate::digest::{Digest, HashingReader};
use crate::error::{Error, Result};
use crate::fsutil::{sync_filesystem, write_atomic_volatile, Staged, TempEntry};
use crate::layer::{ImportedLayer, LayerInfo, Progress};
use crate::unpack::Unpacker;
use crate::Store;

const CHUNK: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Tells the format from the first bytes. bzip2 and xz are recognised only to
    /// refuse them with a clear message.
    pub fn sniff(head: &[u8]) -> Result<Compression> {
        match head {
            [0x1f, 0x8b, ..] => Ok(Compression::Gzip),
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Ok(Compression::Zstd),
            [b'B', b'Z', b'h', ..] => Err(Error::BadInput(
                "bzip2 is not supported: recompress with gzip or zstd".into(),
            )),
            [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => Err(Error::BadInput(
                "xz is not supported: recompress with gzip or zstd".into(),
            )),
            _ => Ok(Compression::None),
        }
    }

    /// The OCI layer media type of a blob in this format.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Compression::None => "tar",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

impl Store {
    /// Imports a layer from a file. A regular file is hashed first, so that importing
    /// content the store already has costs one read and writes nothing. A new layer is
    /// left staged: see [`Store::stage_layer`].
    pub(crate) fn stage_layer_file(
        &self,
        path: &Path,
        progress: &dyn Progress,
    ) -> Result<PendingLayer> {
        let open = || File::open(path).map_err(|e| Error::io("cannot open", path, e));
        let file = open()?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io("cannot stat", path, e))?;
        if meta.is_dir() {
            return Err(Error::BadInput(format!(
                "{} is a directory: import takes a tar file",
                path.display()
            )));
        }
        if meta.is_file() {
            // Hash first only when this very file was imported before: then a re-import
            // costs one read. The hint only decides whether to look; the hash decides.
            if self.stat_hint_matches(&meta) {
                progress.start(Some(meta.len()));
                if let Some(known) = self.known_layer_of_file(file, path)? {
                    progress.advance(meta.len());
                    progress.finish();
                    return Ok(PendingLayer::Stored(known));
                }
            }
            let staged = self.stage_layer(open()?, Some(meta.len()), None, progress)?;
            // Before the layer is in place is fine: a hint whose layer is missing only
            // costs the next import of this file one extra read.
            self.record_stat_hint(&meta, &staged.layer.digest);
            return Ok(PendingLayer::Staged(staged));
        }
        Ok(PendingLayer::Staged(
            self.stage_layer(file, None, None, progress)?,
        ))
    }

    /// Stores and unpacks one layer blob from `input` (a registry download, an archive
    /// member) in one pass. With `expected`, a blob whose digest differs is an error and
    /// nothing is stored. Hold [`Store::ingest_lock`] until the image that uses the layer
    /// is added, so gc cannot sweep it in between.
    pub fn import_layer<R: Read + Send>(
        &self,
        input: R,
        expected: Option<&Digest>,
        total: Option<u64>,
        progress: &dyn Progress,
    ) -> Result<ImportedLayer> {
        self.import_layer_stream(input, total, expected, progress)
    }

    /// The layer already stored for this blob (stored and unpacked), if any: lets a
    /// pull skip downloading it.
    pub fn layer_for_blob(&self, blob: &Digest) -> Option<Digest> {
        let recorded = std::fs::read_to_string(self.layerdb_path(blob)).ok()?;
        let diff_id = Digest::parse(recorded.trim()).ok()?;
        (self.blob_path(blob).exists() && self.layer_dir(&diff_id).exists()).then_some(diff_id)
    }

    /// Imports a layer from any reader (stdin, a pipe, a generated tar) in one pass.
    pub(crate) fn import_layer_stream<R: Read + Send>(
        &self,
        input: R,
        total: Option<u64>,
        expected: Option<&Digest>,
        progress: &dyn Progress,
    ) -> Result<ImportedLayer> {
        let imported = self.import_layer_unsynced(input, total, expected, progress)?;
        // The renames, durable before the caller records an image that uses them.
        sync_filesystem(self.root())?;
        Ok(imported)
    }

    /// `import_layer_stream` whose renames are not yet durable: the caller syncs the
    /// filesystem before it records anything that names the layer (see create_image).
    pub(crate) fn import_layer_unsynced<R: Read + Send>(
        &self,
        input: R,
        total: Option<u64>,
        expected: Option<&Digest>,
        progress: &dyn Progress,
    ) -> Result<ImportedLayer> {
        let staged = self.stage_layer(input, total, expected, progress)?;
        sync_filesystem(&self.tmp_dir())?;
        staged.place(self)
    }

    /// Stores and unpacks a layer under the store's tmp dir, nothing synced nor moved
    /// into place yet: the caller syncs the filesystem (one barrier for the blob, the
    /// unpacked layer, the layerdb record and whatever it stages with them: a fsync each
    /// commits the journal each time), then calls [`StagedLayer::place`].
    pub(crate) fn stage_layer<R: Read + Send>(
        &self,
        input: R,
        total: Option<u64>,
        expected: Option<&Digest>,
        progress: &dyn Progress,
    ) -> Result<StagedLayer> {
        progress.start(total);
        let staging = TempEntry::new_dir(self, "layer")?;
        let blob = BlobWriter::new(self)?;
        let (sender, receiver) = sync_channel::<Chunk>(16);

        let (blob_result, unpack_result) = thread::scope(|scope| {
            let copier = scope.spawn(move || copy_to_blob(input, blob, sender, progress));
            let unpacked = unpack_stream(ChannelReader::new(receiver), staging.path());
            // The copier stops with a send error when unpacking failed early.
            let copied = copier
                .join()
                .unwrap_or_else(|_| Err(Error::BadInput("the input reader panicked".into())));
            (copied, unpacked)
        });
        // An input error (a short read, a full disk while writing the blob) explains an
        // unpack error better than the unpack error itself.
        let blob = blob_result?;
        let (compression, diff_id) = unpack_result?;
        let blob = blob.finish(self, expected)?;
        let diff_id = diff_id.unwrap_or_else(|| blob.digest.clone());
        progress.finish();
        let record = Staged::write(self, diff_id.to_string().as_bytes())?;
        let layer = LayerInfo {
            digest: blob.digest.clone(),
            diff_id,
            size: blob.size,
            media_type: compression.media_type().to_string(),
        };
        Ok(StagedLayer {
            layer,
            staging,
            blob,
            record,
        })
    }

    fn stat_hint_path(&self, meta: &std::fs::Metadata) -> std::path::PathBuf {
        use std::os::unix::fs::MetadataExt;
        self.root()
            .join("layerdb-hints")
            .join(format!("{}-{}", meta.dev(), meta.ino()))
    }

    fn stat_key(meta: &std::fs::Metadata) -> String {
        use std::os::unix::fs::MetadataExt;
        format!(
            "{} {}.{} {}.{}",
            meta.size(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec()
        )
    }

    fn stat_hint_matches(&self, meta: &std::fs::Metadata) -> bool {
        std::fs::read_to_string(self.stat_hint_path(meta))
            .is_ok_and(|text| text.starts_with(&(Self::stat_key(meta) + " ")))
    }

    /// Best effort: a missing hint only means the next import of this file unpacks
    /// again before it finds the layer exists.
    fn record_stat_hint(&self, meta: &std::fs::Metadata, digest: &Digest) {
        let path = self.stat_hint_path(meta);
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = write_atomic_volatile(
            self,
            &path,
            format!("{} {digest}\n", Self::stat_key(meta)).as_bytes(),
        );
    }

    /// If this exact blob was imported before and its layer is still unpacked, the
    /// layer as stored; otherwise None.
    fn known_layer_of_file(&self, file: File, path: &Path) -> Result<Option<ImportedLayer>> {
        let mut hashing = HashingReader::new(file);
        let mut buffer = vec![0u8; CHUNK];
        let mut head = Vec::new();
        loop {
            let n = hashing
                .read(&mut buffer)
                .map_err(|e| Error::io("cannot read", path, e))?;
            if n == 0 {
                break;
            }
            if head.len() < 8 {
                head.extend_from_slice(&buffer[..n.min(8)]);
            }
        }
        let (digest, size, _) = hashing.finish();
        let Some(diff_id) = self.layer_for_blob(&digest) else {
            return Ok(None);
        };
        let compression = Compression::sniff(&head)?;
        Ok(Some(ImportedLayer {
            layer: LayerInfo {
                digest,
                diff_id,
                size,
                media_type: compression.media_type().to_string(),
            },
            reused: true,
        }))
    }
}

/// A layer already in the store, or one staged to be moved into place.
pub(crate) enum PendingLayer {
    Stored(ImportedLayer),
    Staged(StagedLayer),
}

/// A layer stored and unpacked under the store's tmp dir, not yet in place: see
/// [`Store::stage_layer`]. Dropped unplaced, it leaves nothing behind.
pub(crate) struct StagedLayer {
    pub(crate) layer: LayerInfo,
    staging: TempEntry,
    blob: FinishedBlob,
    record: Staged,
}

impl StagedLayer {
    /// Moves the blob, the unpacked layer and its layerdb record into place, once the
    /// caller has synced the filesystem; the renames are durable after its next barrier.
    /// A crash never leaves a visible one half-written.
    pub(crate) fn place(self, store: &Store) -> Result<ImportedLayer> {
        let (digest, _) = self.blob.persist_synced(store)?;
        let target = store.layer_dir(&self.layer.diff_id);
        let reused = target.exists() || !self.staging.persist_unsynced(&target)?;
        self.record.replace(&store.layerdb_path(&digest))?;
        Ok(ImportedLayer {
            layer: self.layer,
            reused,
        })
    }
}

/// Reads the input in chunks, writes each to the blob (hashing it) and passes it on.
fn copy_to_blob<R: Read>(
    mut input: R,
    mut blob: BlobWriter,
    sender: SyncSender<Chunk>,
    progress: &dyn Progress,
) -> Result<BlobWriter> {
    loop {
        // Filled by read_to_end, which reads into the spare capacity without zeroing
        // it first (a zeroed 1 MiB per chunk showed in the profile).
        let mut chunk = Vec::with_capacity(CHUNK);
        let n = match input.by_ref().take(CHUNK as u64).read_to_end(&mut chunk) {
            Ok(0) => return Ok(blob),
            Ok(n) => n,
            Err(e) => return Err(Error::BadInput(format!("cannot read the input: {e}"))),
        };
        if let Err(e) = blob.write_all(&chunk) {
            return Err(Error::io("cannot write blob", blob.path(), e));
        }
        progress.advance(n as u64);
        if sender.send(Ok(chunk)).is_err() {
            // The unpacker stopped (and will report why); stop reading.
            return Ok(blob);
        }
    }
}

/// Decompresses and unpacks, hashing the uncompressed stream (the diff-id), including
/// whatever follows the end-of-archive marker. An uncompressed layer is its own diff, so
/// its diff-id is the blob digest the copier computes from the very same bytes: it
/// returns None rather than hashing everything twice.
fn unpack_stream(mut input: ChannelReader, dest: &Path) -> Result<(Compression, Option<Digest>)> {
    let head = peek(&mut input)?;
    if head.is_empty() {
        return Err(Error::BadInput("the input is empty".into()));
    }
    let compression = Compression::sniff(&head)?;
    Ok((compression, decode_and_unpack(input, compression, dest)?))
}

/// The decompressing half of `unpack_stream`: the diff-id, None for an uncompressed layer.
fn decode_and_unpack<'a, R: BufRead + 'a>(
    input: R,
    compression: Compression,
    dest: &Path,
) -> Result<Option<Digest>> {
    let decompressed: Box<dyn Read + 'a> = match compression {
        Compression::None => {
            unpack_all(input, dest, compression)?;
            return Ok(None);
        }
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(input)
                .map_err(|e| Error::BadInput(format!("bad zstd stream: {e}")))?,
        ),
    };
    let hashing = unpack_all(HashingReader::new(decompressed), dest, compression)?;
    let (diff_id, _, _) = hashing.finish();
    Ok(Some(diff_id))
}

/// What a layer import does with the bytes of a layer blob, without the store around it:
/// sniff the compression, decompress and unpack into `dest` (an empty directory). For
/// the fuzzer (fuzz/), which must find no input that panics, hangs or writes outside.
#[cfg(feature = "fuzz")]
pub fn unpack_layer_bytes(data: &[u8], dest: &Path) -> Result<()> {
    if data.is_empty() {
        return Err(Error::BadInput("the input is empty".into()));
    }
    decode_and_unpack(data, Compression::sniff(data)?, dest).map(drop)
}

/// Unpacks the archive and reads on to the end of the stream; returns the reader.
fn unpack_all<R: Read>(reader: R, dest: &Path, compression: Compression) -> Result<R> {
    let (stats, mut rest) = Unpacker::new(dest).unpack(reader).map_err(|e| match e {
        Error::BadInput(msg)
            if compression != Compression::None
                && (msg.starts_with("not a valid tar")
                    || msg.starts_with("the tar is truncated")) =>
        {
            Error::BadInput(format!(
                "corrupt or truncated {} data ({msg})",
                compression.name()
            ))
        }
        other => other,
    })?;
    io::copy(&mut rest, &mut io::sink()).map_err(|e| {
        Error::BadInput(format!(
            "corrupt {} data after the archive: {e}",
            compression.name()
        ))
    })?;
    if stats.entries == 0 {
        return Err(Error::BadInput(
            "no tar entries found: is this a tar archive?".into(),
        ));
    }
    Ok(rest)
}

fn peek(input: &mut ChannelReader) -> Result<Vec<u8>> {
    let buf = input
        .fill_buf()
        .map_err(|e| Error::BadInput(e.to_string()))?;
    Ok(buf[..buf.len().min(8)].to_vec())
}
