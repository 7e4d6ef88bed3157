//! Blobs under `store/blobs/sha256/<hex>`: written through a temp file while hashing,
//! verified, fsynced and renamed; never rewritten; verified again when read.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;

use sha2::{Digest as _, Sha256};

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
        let finished = self.finish(store, expected)?;
        let (digest, size) = (finished.digest.clone(), finished.size);
        let Some(file) = &finished.file else {
            return Ok((digest, size));
        };
        file.sync_all()
            .map_err(|e| Error::io("cannot sync", finished.entry.path(), e))?;
        let target = store.blob_path(&digest);
        finished.persist(&target)?;
        crate::fsutil::sync_parent(&target)?;
        Ok((digest, size))
    }

    /// Flushes, checks the digest when one was expected and makes the file read-only,
    /// without syncing: the caller syncs the filesystem (one barrier for the blob and
    /// what was written with it), then calls [`FinishedBlob::persist_synced`].
    pub(crate) fn finish(self, store: &Store, expected: Option<&Digest>) -> Result<FinishedBlob> {
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
        // An existing blob is never rewritten, unless it fails verification: then the
        // good bytes just written replace it (a re-import or rebuild repairs the store).
        let damaged = store.blob_path(&digest).exists();
        if damaged && verify_file(store, &digest).is_ok() {
            return Ok(FinishedBlob {
                entry: self.entry,
                file: None,
                damaged,
                digest,
                size,
            });
        }
        file.set_permissions(fs::Permissions::from_mode(0o444))
            .map_err(|e| Error::io("cannot chmod", &path, e))?;
        Ok(FinishedBlob {
            entry: self.entry,
            file: Some(file),
            damaged,
            digest,
            size,
        })
    }
}

/// A blob written and verified but not yet in place (see [`BlobWriter::finish`]).
pub(crate) struct FinishedBlob {
    entry: TempEntry,
    /// None when the store already holds a good copy: nothing to move.
    file: Option<File>,
    damaged: bool,
    pub(crate) digest: Digest,
    pub(crate) size: u64,
}

impl FinishedBlob {
    /// Moves the blob into place once the caller has synced the filesystem; the caller
    /// syncs it again after, so that the rename is durable too.
    pub(crate) fn persist_synced(self, store: &Store) -> Result<(Digest, u64)> {
        let target = store.blob_path(&self.digest);
        let (digest, size) = (self.digest.clone(), self.size);
        self.persist(&target)?;
        Ok((digest, size))
    }

    fn persist(self, target: &std::path::Path) -> Result<()> {
        if self.file.is_none() {
            return Ok(());
        }
        if self.damaged {
            self.entry.persist_replacing_unsynced(target)
        } else {
            self.entry.persist_unsynced(target).map(drop)
        }
    }
}

impl BlobWriter {
    /// Where the blob is being written (for messages).
    pub(crate) fn path(&self) -> &std::path::Path {
        self.entry.path()
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
    if store.blob_path(&digest).exists() && get(store, &digest).is_ok() {
        return Ok(digest);
    }
    let mut writer = BlobWriter::new(store)?;
    writer
        .write_all(bytes)
        .map_err(|e| Error::io("cannot write blob", &store.blob_path(&digest), e))?;
    writer.commit(store, Some(&digest))?;
    Ok(digest)
}

/// Writes `bytes` as a blob that is not yet synced nor in place (see
/// [`BlobWriter::finish`]): for several small blobs stored behind one barrier.
pub(crate) fn stage(store: &Store, bytes: &[u8]) -> Result<FinishedBlob> {
    let digest = Digest::of_bytes(bytes);
    let mut writer = BlobWriter::new(store)?;
    writer
        .write_all(bytes)
        .map_err(|e| Error::io("cannot write blob", &store.blob_path(&digest), e))?;
    writer.finish(store, Some(&digest))
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
        return Err(Error::CorruptBlob {
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

/// Hashes a stored blob in full; `Err(CorruptBlob)` when its bytes are not its name.
pub(crate) fn verify_file(store: &Store, digest: &Digest) -> Result<()> {
    let mut blob = VerifiedBlob::open(store, digest)?;
    io::copy(&mut blob, &mut io::sink()).map_err(|e| match blob.mismatch.take() {
        Some(mismatch) => mismatch,
        None => Error::io("cannot read blob", &store.blob_path(digest), e),
    })?;
    Ok(())
}

/// A stored blob opened for streaming out of the store (save, push, compression):
/// hashes what is read and fails the read that completes the blob when the bytes do not
/// match the digest, so a corrupt blob never travels (the caller never sees a clean
/// end of input).
pub struct VerifiedBlob {
    file: File,
    digest: Digest,
    hasher: Sha256,
    size: u64,
    read: u64,
    checked: bool,
    mismatch: Option<Error>,
}

impl VerifiedBlob {
    pub(crate) fn open(store: &Store, digest: &Digest) -> Result<VerifiedBlob> {
        let path = store.blob_path(digest);
        let file = File::open(&path).map_err(|e| Error::io("cannot open blob", &path, e))?;
        let size = file
            .metadata()
            .map_err(|e| Error::io("cannot stat blob", &path, e))?
            .len();
        Ok(VerifiedBlob {
            file,
            digest: digest.clone(),
            hasher: Sha256::new(),
            size,
            read: 0,
            checked: false,
            mismatch: None,
        })
    }

    /// The blob's size on disk.
    pub fn size(&self) -> u64 {
        self.size
    }

    fn check(&mut self) -> io::Result<()> {
        let actual = Digest::from_sha256(std::mem::take(&mut self.hasher));
        if actual == self.digest {
            return Ok(());
        }
        let error = Error::CorruptBlob {
            digest: self.digest.to_string(),
            actual: actual.to_string(),
        };
        let message = error.to_string();
        self.mismatch = Some(error);
        Err(io::Error::new(io::ErrorKind::InvalidData, message))
    }
}

impl Read for VerifiedBlob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.mismatch.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("blob {} is corrupt", self.digest),
            ));
        }
        let n = self.file.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        // Checked on the read that brings the last byte, not at EOF: a sized consumer
        // (an HTTP body, a tar member) stops reading once it has `size` bytes.
        if !self.checked && (n == 0 || self.read >= self.size) {
            self.checked = true;
            self.check()?;
        }
        Ok(n)
    }
}
