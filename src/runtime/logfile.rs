//! The container log, `<root>/containers/<id>/container.log`, in the CRI text format that
//! kubelet uses: one record per line, `TIMESTAMP STREAM TAG CONTENT`, where TIMESTAMP is
//! RFC 3339 with nanoseconds (UTC), STREAM is stdout or stderr, and TAG is F for a full
//! line or P for a partial one (output that did not end in a newline yet).
//!
//! The runtime writes it ([`LogWriter`]); `logs` reads it back through [`LogRecord`],
//! so the format is defined here only.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// The tag of a record that ends its line.
const FULL: &str = "F";
/// The tag of a record whose line goes on in the stream's next record.
const PARTIAL: &str = "P";

/// One record of the log, as read back (borrowing the line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRecord<'a> {
    /// The RFC 3339 timestamp, as written.
    pub stamp: &'a [u8],
    pub stream: Stream,
    /// The record ends its line (F); otherwise the stream's next record continues it.
    pub full: bool,
    pub content: &'a [u8],
}

impl<'a> LogRecord<'a> {
    /// Reads one record from a line of the log (without its newline). Lenient: an
    /// unknown stream reads as stdout, a missing field as empty.
    pub fn parse(line: &'a [u8]) -> LogRecord<'a> {
        let mut fields = line.splitn(4, |b| *b == b' ');
        let (stamp, stream, tag) = (fields.next(), fields.next(), fields.next());
        LogRecord {
            stamp: stamp.unwrap_or_default(),
            stream: if stream == Some(Stream::Stderr.name().as_bytes()) {
                Stream::Stderr
            } else {
                Stream::Stdout
            },
            full: tag == Some(FULL.as_bytes()),
            content: fields.next().unwrap_or_default(),
        }
    }
}

/// Appends output chunks to the log as records. The file is created on the first output,
/// so a silent container costs no file.
pub struct LogWriter {
    path: PathBuf,
    file: Option<File>,
    buffer: Vec<u8>,
}

impl LogWriter {
    pub fn new(path: &Path) -> LogWriter {
        LogWriter {
            path: path.to_path_buf(),
            file: None,
            buffer: Vec::with_capacity(8192),
        }
    }

    fn file(&mut self) -> io::Result<&mut File> {
        if self.file.is_none() {
            // 0600: what a container prints may be secret. A log made by an older
            // version (0644) is made 0600 when written again.
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&self.path)?;
            if file.metadata()?.permissions().mode() & 0o077 != 0 {
                file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            }
            return Ok(self.file.insert(file));
        }
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("log file vanished"))
    }

    /// Records one chunk read from a stream: a record per line, the tail as partial.
    pub fn write(&mut self, stream: Stream, chunk: &[u8]) -> io::Result<()> {
        let stamp = crate::timefmt::now();
        self.buffer.clear();
        let mut rest = chunk;
        while !rest.is_empty() {
            let (line, tag, next) = match rest.iter().position(|b| *b == b'\n') {
                Some(i) => (&rest[..i], FULL, &rest[i + 1..]),
                None => (rest, PARTIAL, &rest[rest.len()..]),
            };
            self.buffer.extend_from_slice(stamp.as_bytes());
            self.buffer.push(b' ');
            self.buffer.extend_from_slice(stream.name().as_bytes());
            self.buffer.push(b' ');
            self.buffer.extend_from_slice(tag.as_bytes());
            self.buffer.push(b' ');
            self.buffer.extend_from_slice(line);
            self.buffer.push(b'\n');
            rest = next;
        }
        let buffer = std::mem::take(&mut self.buffer);
        let result = self.file().and_then(|f| f.write_all(&buffer));
        self.buffer = buffer;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut writer = LogWriter::new(&path);
        writer.write(Stream::Stderr, b"a b\nrest").unwrap();
        let text = std::fs::read(&path).unwrap();
        let records: Vec<LogRecord> = text
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(LogRecord::parse)
            .collect();
        assert_eq!(records.len(), 2);
        assert_eq!(
            (records[0].stream, records[0].full, records[0].content),
            (Stream::Stderr, true, &b"a b"[..])
        );
        assert_eq!((records[1].full, records[1].content), (false, &b"rest"[..]));
        assert!(records[0].stamp.ends_with(b"Z"));
        assert_eq!(LogRecord::parse(b"").content, b"");
        assert_eq!(LogRecord::parse(b"t other F x").stream, Stream::Stdout);
    }
}
