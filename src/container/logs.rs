//! Reading a container's log (`logs`, `logs -f`, `start -a`): the records the runtime
//! wrote (see [`crate::runtime::logfile`] for the format), back to stdout and stderr.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::runtime::logfile::{LogRecord, Stream};

/// Reads a log incrementally (`logs`, `logs -f`): each call to [`LogFollower::pump`]
/// prints the records completed since the last one.
pub struct LogFollower {
    path: PathBuf,
    offset: u64,
    timestamps: bool,
    /// Per stream (stdout, stderr): the last record was partial, so the next one
    /// continues its line (no timestamp prefix).
    mid_line: [bool; 2],
}

impl LogFollower {
    /// Starts at the beginning, or `tail` records before the end.
    pub fn open(path: &Path, tail: Option<usize>, timestamps: bool) -> io::Result<LogFollower> {
        let mut offset = 0;
        if let Some(tail) = tail {
            match std::fs::read(path) {
                Ok(data) => {
                    let complete = data.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                    let starts: Vec<usize> = std::iter::once(0)
                        .chain(
                            data[..complete]
                                .iter()
                                .enumerate()
                                .filter(|(_, b)| **b == b'\n')
                                .map(|(i, _)| i + 1),
                        )
                        .filter(|i| *i < complete)
                        .collect();
                    offset = match starts.len().checked_sub(tail) {
                        _ if tail == 0 => complete,
                        Some(first) => starts[first],
                        None => 0,
                    } as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(LogFollower {
            path: path.to_path_buf(),
            offset,
            timestamps,
            mid_line: [false; 2],
        })
    }

    /// Prints every complete record after the last one printed.
    pub fn pump(&mut self, stdout: &mut dyn Write, stderr: &mut dyn Write) -> io::Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        file.seek(SeekFrom::Start(self.offset))?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)?;
        let complete = data.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        for line in data[..complete].split(|b| *b == b'\n') {
            if line.is_empty() {
                continue;
            }
            let record = LogRecord::parse(line);
            let slot = usize::from(record.stream == Stream::Stderr);
            let out: &mut dyn Write = if slot == 1 { stderr } else { stdout };
            if self.timestamps && !self.mid_line[slot] {
                out.write_all(record.stamp)?;
                out.write_all(b" ")?;
            }
            out.write_all(record.content)?;
            if record.full {
                out.write_all(b"\n")?;
            }
            self.mid_line[slot] = !record.full;
        }
        self.offset += complete as u64;
        stdout.flush()?;
        stderr.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::logfile::LogWriter;

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
        LogFollower::open(&path, None, false)
            .unwrap()
            .pump(&mut out, &mut err)
            .unwrap();
        assert_eq!(out, b"one\ntwo\n");
        assert_eq!(err, b"err\n");
    }

    #[test]
    fn a_follower_tails_prefixes_timestamps_and_continues_where_it_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut writer = LogWriter::new(&path);
        writer.write(Stream::Stdout, b"a\nb\nc\n").unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut follower = LogFollower::open(&path, Some(2), false).unwrap();
        follower.pump(&mut out, &mut err).unwrap();
        assert_eq!(out, b"b\nc\n");
        writer.write(Stream::Stdout, b"d").unwrap();
        writer.write(Stream::Stdout, b"e\n").unwrap();
        follower.pump(&mut out, &mut err).unwrap();
        assert_eq!(out, b"b\nc\nde\n");

        let mut stamped = Vec::new();
        let mut follower = LogFollower::open(&path, Some(2), true).unwrap();
        follower.pump(&mut stamped, &mut err).unwrap();
        let text = String::from_utf8(stamped).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        assert!(lines[0].ends_with("Z de"), "{text}");
        let mut none = Vec::new();
        LogFollower::open(&path, Some(0), false)
            .unwrap()
            .pump(&mut none, &mut err)
            .unwrap();
        assert!(none.is_empty());
    }
}
