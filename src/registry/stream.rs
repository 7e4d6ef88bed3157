//! Compressing a stored layer for a push as a stream: a thread reads the blob (verified
//! as it is read) and compresses it, gzip on every core (gzp, blocks chained by their
//! dictionaries into one ordinary gzip member) or zstd, into a bounded channel; the HTTP
//! body reads the channel and hashes what it hands on, so the compressed blob's digest
//! is known when the body ends, before the upload is committed. Nothing is written to disk.

use std::io::{self, Read, Write};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};

use gzp::deflate::Gzip;
use gzp::par::compress::{ParCompress, ParCompressBuilder};
use gzp::ZWriter;
use mycontainer_store::{ChannelReader, Chunk, Digest, HashingReader};

use super::push::LayerCompression;

/// gzip level (zlib's default, as `gzip` and Go's compress/gzip use).
const GZIP_LEVEL: u32 = 6;
/// zstd level (zstd's default).
const ZSTD_LEVEL: i32 = 3;
/// Compressed chunks in flight between the compressor and the upload.
const CHANNEL_DEPTH: usize = 64;

/// Where the reading end leaves the digest and size of everything it read.
pub type Finished = Arc<Mutex<Option<(Digest, u64)>>>;

/// The writing end: compressed bytes go to the upload.
#[derive(Clone)]
pub struct ChunkSender(SyncSender<Chunk>);

impl Write for ChunkSender {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .send(Ok(buf.to_vec()))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ChunkSender {
    /// Makes the reading end fail (rather than end) so the upload is not completed.
    fn fail(self, error: &anyhow::Error) {
        let _ = self.0.send(Err(io::Error::other(format!("{error:#}"))));
    }
}

/// The reading end, for the HTTP body: hashes what it reads and, at the end of the
/// stream, leaves the digest and size in `done`.
pub struct DigestingReceiver {
    inner: Option<HashingReader<ChannelReader>>,
    done: Finished,
}

impl Read for DigestingReceiver {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(inner) = self.inner.as_mut() else {
            return Ok(0);
        };
        let n = inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            if let Some(inner) = self.inner.take() {
                let (digest, size, _) = inner.finish();
                *self.done.lock().unwrap_or_else(|p| p.into_inner()) = Some((digest, size));
            }
        }
        Ok(n)
    }
}

/// A channel for one compressed blob; the slot receives its digest and size once the
/// reading end has read all of it.
pub fn channel() -> (ChunkSender, DigestingReceiver, Finished) {
    let (sender, receiver) = sync_channel(CHANNEL_DEPTH);
    let done = Arc::new(Mutex::new(None));
    let reader = ChannelReader::new(receiver);
    (
        ChunkSender(sender),
        DigestingReceiver {
            inner: Some(HashingReader::new(reader)),
            done: done.clone(),
        },
        done,
    )
}

/// Compresses all of `input` into `output`. gzip runs on every available core. On
/// failure the reading end gets the error instead of an end of stream.
pub fn compress<R: Read>(
    input: R,
    output: ChunkSender,
    compression: LayerCompression,
) -> anyhow::Result<()> {
    let failure = output.clone();
    let result = compress_into(input, output, compression);
    if let Err(e) = &result {
        failure.fail(e);
    }
    result
}

fn compress_into<R: Read>(
    mut input: R,
    output: ChunkSender,
    compression: LayerCompression,
) -> anyhow::Result<()> {
    match compression {
        LayerCompression::Gzip => {
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let mut encoder: ParCompress<Gzip, ChunkSender> = ParCompressBuilder::<Gzip>::new()
                .num_threads(threads)
                .map_err(|e| anyhow::anyhow!("cannot start gzip threads: {e}"))?
                .compression_level(gzp::Compression::new(GZIP_LEVEL))
                .from_writer(output);
            let copied = io::copy(&mut input, &mut encoder);
            // Finish in any case: it stops gzp's threads.
            let finished = encoder.finish();
            copied?;
            finished.map_err(|e| anyhow::anyhow!("gzip failed: {e}"))?;
        }
        LayerCompression::Zstd => {
            let mut encoder = zstd::stream::write::Encoder::new(output, ZSTD_LEVEL)?;
            io::copy(&mut input, &mut encoder)?;
            encoder.finish()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(compression: LayerCompression) {
        // Compressible and incompressible parts, larger than gzp's blocks.
        let mut data = Vec::new();
        for i in 0..300_000u32 {
            data.extend_from_slice(format!("line {i}\n").as_bytes());
        }
        let mut state = 1u64;
        for _ in 0..500_000 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            data.push((state >> 56) as u8);
        }
        let (sender, mut receiver, done) = channel();
        let input = data.clone();
        let compressor = std::thread::spawn(move || compress(&input[..], sender, compression));
        let mut packed = Vec::new();
        receiver.read_to_end(&mut packed).unwrap();
        compressor.join().unwrap().unwrap();
        let (digest, size) = done.lock().unwrap().clone().unwrap();
        assert_eq!(digest, Digest::of_bytes(&packed));
        assert_eq!(size, packed.len() as u64);
        assert!(packed.len() < data.len());
        let mut unpacked = Vec::new();
        match compression {
            LayerCompression::Gzip => {
                // One gzip member, readable by a plain (not multi-member) decoder.
                flate2::read::GzDecoder::new(&packed[..])
                    .read_to_end(&mut unpacked)
                    .unwrap();
            }
            LayerCompression::Zstd => {
                zstd::stream::read::Decoder::new(&packed[..])
                    .unwrap()
                    .read_to_end(&mut unpacked)
                    .unwrap();
            }
        }
        assert!(unpacked == data, "the round trip changed the data");
    }

    #[test]
    fn gzip_stream_is_one_valid_member_and_its_digest_is_the_bytes() {
        round_trip(LayerCompression::Gzip);
    }

    #[test]
    fn zstd_stream_round_trips() {
        round_trip(LayerCompression::Zstd);
    }

    #[test]
    fn a_failing_input_makes_the_reader_fail_not_end() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "blob is corrupt",
                ))
            }
        }
        let (sender, mut receiver, done) = channel();
        let compressor =
            std::thread::spawn(move || compress(Broken, sender, LayerCompression::Gzip));
        let mut sink = Vec::new();
        let err = receiver.read_to_end(&mut sink).unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{err}");
        assert!(compressor.join().unwrap().is_err());
        assert!(done.lock().unwrap().is_none());
    }
}
