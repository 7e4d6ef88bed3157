//! The container log, `<root>/containers/<id>/container.log`, in the CRI text format that
//! kubelet uses: one record per line, `TIMESTAMP STREAM TAG CONTENT`, where TIMESTAMP is
//! RFC 3339 with nanoseconds (UTC), STREAM is stdout or stderr, and TAG is F for a full
//! line or P for a partial one (output that did not end in a newline yet).

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

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
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            return Ok(self.file.insert(file));
        }
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("log file vanished"))
    }

    /// Records one chunk read from a stream: a record per line, the tail as partial.
    pub fn write(&mut self, stream: Stream, chunk: &[u8]) -> io::Result<()> {
        let stamp = rfc3339_now();
        self.buffer.clear();
        let mut rest = chunk;
        while !rest.is_empty() {
            let (line, tag, next) = match rest.iter().position(|b| *b == b'\n') {
                Some(i) => (&rest[..i], "F", &rest[i + 1..]),
                None => (rest, "P", &rest[rest.len()..]),
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

/// Copies a log back to its streams (records joined, tags and timestamps dropped).
pub fn replay(path: &Path, stdout: &mut dyn Write, stderr: &mut dyn Write) -> io::Result<()> {
    let mut reader = BufReader::new(File::open(path)?);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let mut fields = line.splitn(4, |b| *b == b' ');
        let (_stamp, stream, tag) = (fields.next(), fields.next(), fields.next());
        let content = fields.next().unwrap_or_default();
        let out: &mut dyn Write = match stream {
            Some(b"stderr") => stderr,
            _ => stdout,
        };
        out.write_all(content)?;
        if tag == Some(b"F") {
            out.write_all(b"\n")?;
        }
    }
}

/// Now as `2026-11-29T02:04:39.123456789Z`.
pub fn rfc3339_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(now.as_secs(), now.subsec_nanos())
}

fn rfc3339(secs: u64, nanos: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_709_210_096, 5), "2024-02-29T12:34:56.000000005Z");
    }

    #[test]
    fn replay_restores_streams_and_partial_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut writer = LogWriter::new(&path);
        assert!(!path.exists(), "created before any output");
        writer.write(Stream::Stdout, b"one\ntw").unwrap();
        writer.write(Stream::Stderr, b"err\n").unwrap();
        writer.write(Stream::Stdout, b"o\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.lines().next().unwrap().ends_with(" stdout F one"),
            "{text}"
        );
        assert!(text.contains(" stdout P tw\n"));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        replay(&path, &mut out, &mut err).unwrap();
        assert_eq!(out, b"one\ntwo\n");
        assert_eq!(err, b"err\n");
    }
}
