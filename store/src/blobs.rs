//! Blobs under `store/blobs/sha256/<hex>`: written through a temp file while hashing,
//! verified, fsynced and renamed; never rewritten; verified again when read.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;

use crate::digest::{Digest, HashingWriter};
use crate::error::{Error, Result};
use crate::fsutil::TempEntry;
use crate::Store;

/// A blob being written: bytes go to a temp file and through the hasher.
pub(crate) struct BlobWriter {
    entry: TempEntry,
    writer: HashingWriter<io::BufWriter<File>>,
}

impl BlobWriter {
    pub(crate) fn new(store: &Store) -> Result<BlobWriter> {
        let (entry, file) = TempEntry::new_file(store, "blob")?;
        Ok(BlobWriter {
            entry,
            writer: HashingWriter::new(io::BufWriter::with_capacity(1 << 20, file)),
        })
    }

    /// fsyncs, checks the digest when one was expected, and moves the blob into place.
    pub(crate) fn commit(self, store: &Store, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let (digest, size, buffered) = self.writer.finish();
        let path = self.entry.path().to_path_buf();
        let file = buffered
            .into_inner()
            .map_err(|e| Error::io("cannot write", &path, e.into_error()))?;
        if let Some(expected) = expected {
            if *expected != digest {
                return Err(Error::DigestMismatch {
                    digest: expected.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        let target = store.blob_path(&digest);
        if target.exists() {
            return Ok((digest, size));
        }
        file.set_permissions(fs::Permissions::from_mode(0o444))
            .and_then(|_| file.sync_all())
            .map_err(|e| Error::io("cannot sync", &path, e))?;
        self.entry.persist(&target)?;
        Ok((digest, size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

/// Stores `bytes` as a blob and returns its digest.
pub(crate) fn put(store: &Store, bytes: &[u8]) -> Result<Digest> {
    let digest = Digest::of_bytes(bytes);
    if store.blob_path(&digest).exists() {
        return Ok(digest);
    }
    let mut writer = BlobWriter::new(store)?;
    writer
        .write_all(bytes)
        .map_err(|e| Error::io("cannot write blob", &store.blob_path(&digest), e))?;
    writer.commit(store, Some(&digest))?;
    Ok(digest)
}

/// Reads a whole (small: manifest, config) blob and verifies its digest.
pub(crate) fn get(store: &Store, digest: &Digest) -> Result<Vec<u8>> {
    let path = store.blob_path(digest);
    let mut bytes = Vec::new();
    File::open(&path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| Error::io("cannot read blob", &path, e))?;
    let actual = Digest::of_bytes(&bytes);
    if actual != *digest {
        return Err(Error::DigestMismatch {
            digest: digest.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(bytes)
}

pub(crate) fn get_json<T: serde::de::DeserializeOwned>(
    store: &Store,
    digest: &Digest,
) -> Result<T> {
    let bytes = get(store, digest)?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
        path: store.blob_path(digest),
        reason: e.to_string(),
    })
}
