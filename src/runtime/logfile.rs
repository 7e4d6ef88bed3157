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

/// Log rotation: when a write would take the log past `max_size` bytes, it becomes
/// `<log>.1` (the older ones shift to `.2`, ...) and a new log starts; at most
/// `max_files` files are kept, the current one included (1: the log starts over).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    pub max_size: u64,
    pub max_files: u32,
}

/// The name of the `n`th rotated log of `path` (`container.log.1` the newest).
pub fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The empty file that marks a log `path` as missing output: a write failed (a full
/// disk), the container went on, what it printed then is gone. `logs` says so.
pub fn lost_marker(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lost");
    PathBuf::from(name)
}

/// Appends output chunks to the log as records. The file is created on the first output,
/// so a silent container costs no file.
pub struct LogWriter {
    path: PathBuf,
    file: Option<File>,
    buffer: Vec<u8>,
    rotation: Option<Rotation>,
    /// The size of the current file.
    size: u64,
    /// Output was lost and the marker made.
    marked_lost: bool,
}

impl LogWriter {
    pub fn new(path: &Path) -> LogWriter {
        LogWriter {
            path: path.to_path_buf(),
            file: None,
            buffer: Vec::with_capacity(8192),
            rotation: None,
            size: 0,
            marked_lost: false,
        }
    }

    pub fn with_rotation(mut self, rotation: Option<Rotation>) -> LogWriter {
        self.rotation = rotation;
        self
    }

    /// Rotates when `incoming` more bytes would take a non-empty log past the limit.
    /// Records are never split: a single one larger than the limit gets a file alone.
    fn rotate_for(&mut self, incoming: u64) -> io::Result<()> {
        let Some(rotation) = self.rotation else {
            return Ok(());
        };
        if self.size == 0 || self.size + incoming <= rotation.max_size {
            return Ok(());
        }
        self.file = None;
        if rotation.max_files <= 1 {
            std::fs::remove_file(&self.path)?;
        } else {
            let oldest = rotated_path(&self.path, rotation.max_files - 1);
            match std::fs::remove_file(&oldest) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            for n in (1..rotation.max_files - 1).rev() {
                match std::fs::rename(rotated_path(&self.path, n), rotated_path(&self.path, n + 1))
                {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            std::fs::rename(&self.path, rotated_path(&self.path, 1))?;
        }
        self.size = 0;
        Ok(())
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
            let meta = file.metadata()?;
            if meta.permissions().mode() & 0o077 != 0 {
                file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            }
            self.size = meta.len();
            return Ok(self.file.insert(file));
        }
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("log file vanished"))
    }

    /// Records one chunk read from a stream: a record per line, the tail as partial.
    /// With rotation, the records go out in batches that each fit the current file.
    /// A failed write (a full disk) loses the chunk, not the log: the file is cut back
    /// to its last whole record, so the records written once there is room again read
    /// as they should, and the loss is marked (see [`lost_marker`]).
    pub fn write(&mut self, stream: Stream, chunk: &[u8]) -> io::Result<()> {
        let result = self.write_records(stream, chunk);
        if result.is_err() && !self.marked_lost {
            // An empty file needs no data block: it is made on a full disk too.
            self.marked_lost = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(lost_marker(&self.path))
                .is_ok();
        }
        result
    }

    fn write_records(&mut self, stream: Stream, chunk: &[u8]) -> io::Result<()> {
        let stamp = crate::timefmt::now();
        // Opened first: the size of an existing log counts.
        self.file()?;
        let limit = self.rotation.map_or(u64::MAX, |r| r.max_size);
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.clear();
        let mut result = Ok(());
        let mut rest = chunk;
        while !rest.is_empty() && result.is_ok() {
            let (line, tag, next) = match rest.iter().position(|b| *b == b'\n') {
                Some(i) => (&rest[..i], FULL, &rest[i + 1..]),
                None => (rest, PARTIAL, &rest[rest.len()..]),
            };
            let record_len = stamp.len() + stream.name().len() + tag.len() + line.len() + 4;
            if self.size + (buffer.len() + record_len) as u64 > limit {
                result = self
                    .flush(&buffer)
                    .and_then(|()| self.rotate_for(record_len as u64));
                buffer.clear();
            }
            buffer.extend_from_slice(stamp.as_bytes());
            buffer.push(b' ');
            buffer.extend_from_slice(stream.name().as_bytes());
            buffer.push(b' ');
            buffer.extend_from_slice(tag.as_bytes());
            buffer.push(b' ');
            buffer.extend_from_slice(line);
            buffer.push(b'\n');
            rest = next;
        }
        let result = result.and_then(|()| self.flush(&buffer));
        self.buffer = buffer;
        result
    }

    fn flush(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let size = self.size;
        let file = self.file()?;
        if let Err(e) = file.write_all(bytes) {
            let _ = file.set_len(size);
            return Err(e);
        }
        self.size += bytes.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_at_most_max_files_of_at_most_max_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let rotation = Rotation {
            max_size: 200,
            max_files: 3,
        };
        let mut writer = LogWriter::new(&path).with_rotation(Some(rotation));
        for i in 0..100 {
            writer
                .write(Stream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["container.log", "container.log.1", "container.log.2"]
        );
        for name in &names {
            let len = std::fs::metadata(dir.path().join(name)).unwrap().len();
            assert!(len <= 200, "{name}: {len}");
        }
        // The newest lines are in the current file, the older ones before it in order.
        let current = std::fs::read_to_string(&path).unwrap();
        assert!(current.ends_with("F line 99\n"), "{current}");
        let older = std::fs::read_to_string(rotated_path(&path, 1)).unwrap();
        let last_older = older.lines().last().unwrap();
        let first_current = current.lines().next().unwrap();
        let n = |l: &str| l.rsplit(' ').next().unwrap().parse::<u32>().unwrap();
        assert_eq!(n(last_older) + 1, n(first_current));
        // One file: the log starts over.
        let one = dir.path().join("one.log");
        let mut writer = LogWriter::new(&one).with_rotation(Some(Rotation {
            max_size: 100,
            max_files: 1,
        }));
        for i in 0..50 {
            writer
                .write(Stream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
        }
        assert!(!rotated_path(&one, 1).exists());
        assert!(std::fs::metadata(&one).unwrap().len() <= 100);
    }

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
