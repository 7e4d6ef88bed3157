//! A `Read` over chunks of bytes that another thread sends through a channel: how a
//! layer is unpacked while it is still being copied (import), and how a push's upload
//! body reads what the compressor thread produces.

use std::io::{self, BufRead, Read};
use std::sync::mpsc::Receiver;

/// One chunk, or the error that ends the stream (so a reader fails instead of seeing
/// a short, apparently complete stream).
pub type Chunk = io::Result<Vec<u8>>;

/// Reads the chunks in order; the stream ends when every sender is gone.
pub struct ChannelReader {
    receiver: Receiver<Chunk>,
    current: Vec<u8>,
    offset: usize,
}

impl ChannelReader {
    pub fn new(receiver: Receiver<Chunk>) -> Self {
        ChannelReader {
            receiver,
            current: Vec::new(),
            offset: 0,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = buf.len().min(available.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// The chunks are the buffer: a reader that wants a `BufRead` (a decompressor, the
/// unpacker) reads them in place, with no copy into a `BufReader` of its own first.
impl BufRead for ChannelReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.offset == self.current.len() {
            match self.receiver.recv() {
                Ok(chunk) => {
                    self.current = chunk?;
                    self.offset = 0;
                }
                // Every sender gone without an error: the stream is complete.
                Err(_) => return Ok(&[]),
            }
        }
        Ok(&self.current[self.offset..])
    }

    fn consume(&mut self, amount: usize) {
        self.offset = (self.offset + amount).min(self.current.len());
    }
}
