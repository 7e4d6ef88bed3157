//! A `Read` over chunks of bytes that another thread sends through a channel: how a
//! layer is unpacked while it is still being copied (import), and how a push's upload
//! body reads what the compressor thread produces.

use std::io::{self, Read};
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
        while self.offset == self.current.len() {
            match self.receiver.recv() {
                Ok(chunk) => {
                    self.current = chunk?;
                    self.offset = 0;
                }
                // Every sender gone without an error: the stream is complete.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.offset);
        buf[..n].copy_from_slice(&self.current[self.offset..self.offset + n]);
        self.offset += n;
        Ok(n)
    }
}
