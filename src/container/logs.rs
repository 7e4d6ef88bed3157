//! Reading a container's log (`logs`, `logs -f`, `start -a`): the records the runtime
//! wrote (see [`crate::runtime::logfile`] for the format), back to stdout and stderr.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::runtime::logfile::{rotated_path, LogRecord, Stream};

/// Reads a log incrementally (`logs`, `logs -f`): each call to [`LogFollower::pump`]
/// prints the records completed since the last one. The rotated files (`.N` ... `.1`)
/// come first; a follower notices when the log it reads is rotated away (its inode is
/// no longer at the path), finishes it and goes on with the new one.
pub struct LogFollower {
    path: PathBuf,
    /// Records of the rotated files still to print (complete lines).
    backlog: Vec<u8>,
    /// The current log, once opened, and where the next read starts in it.
    file: Option<File>,
    offset: u64,
    timestamps: bool,
    /// Only records stamped at or after / at or before these (RFC 3339, our form).
    since: Option<String>,
    until: Option<String>,
    /// While no log is open: the newest file already printed (device, inode), so that
    /// the files rotated since are printed before the next log is opened.
    last: Option<(u64, u64)>,
    /// Per stream (stdout, stderr): the last record was partial, so the next one
    /// continues its line (no timestamp prefix).
    mid_line: [bool; 2],
}

/// `--since` and `--until` (each optional) through [`time_bound`].
pub fn time_bounds(
    since: &Option<String>,
    until: &Option<String>,
) -> anyhow::Result<(Option<String>, Option<String>)> {
    let bound = |flag: &str, value: &Option<String>| {
        value.as_deref().map(|v| time_bound(flag, v)).transpose()
    };
    Ok((bound("--since", since)?, bound("--until", until)?))
}

/// `logs --since/--until`: an RFC 3339 time, Unix seconds (`1700000000.5`) or a
/// duration before now (`10m`, `1h30m`), as the stamp it compares with.
pub fn time_bound(flag: &str, text: &str) -> anyhow::Result<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let at = if let Ok(ago) = super::health::parse_duration(flag, text) {
        now.saturating_sub(ago)
    } else if let Ok(secs) = text
        .parse::<f64>()
        .map_err(drop)
        .and_then(|s| std::time::Duration::try_from_secs_f64(s).map_err(drop))
    {
        secs
    } else if let Some(secs) = crate::timefmt::parse(text) {
        // Fractions of a second count too.
        let nanos = text
            .get(19..)
            .and_then(|rest| rest.strip_prefix('.'))
            .map(|rest| {
                let digits: String = rest
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .take(9)
                    .collect();
                format!("{digits:0<9}").parse::<u32>().unwrap_or(0)
            })
            .unwrap_or(0);
        std::time::Duration::new(secs, nanos)
    } else {
        anyhow::bail!(
            "invalid value {text:?} for {flag}: use a time (2026-01-02T15:04:05Z), Unix seconds or a duration such as 10m"
        );
    };
    Ok(crate::timefmt::rfc3339(at.as_secs(), at.subsec_nanos()))
}

/// Whether output of the container logging to `path` was lost (a write failed: a full
/// disk), so its log is incomplete.
pub fn output_lost(path: &Path) -> bool {
    crate::runtime::logfile::lost_marker(path).exists()
}

/// The log (opened), the rotated files (identity and contents, `.1` first) and the
/// log's contents, taken consistently by [`LogFollower::snapshot`].
type Snapshot = (Option<File>, Vec<((u64, u64), Vec<u8>)>, Vec<u8>);

/// The complete lines of `data` (up to its last newline).
fn complete(data: &[u8]) -> &[u8] {
    &data[..data.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1)]
}

impl LogFollower {
    /// Starts at the beginning of the oldest rotated file, or `tail` records before the
    /// end.
    pub fn open(path: &Path, tail: Option<usize>, timestamps: bool) -> io::Result<LogFollower> {
        let (file, rotated, current) = Self::snapshot(path)?;
        let last = rotated.first().map(|(id, _)| *id);
        let mut backlog = Vec::new();
        for (_, data) in rotated.iter().rev() {
            backlog.extend_from_slice(complete(data));
        }
        let current_complete = complete(&current).len();
        let mut start = 0;
        if let Some(tail) = tail {
            // Line starts over the rotated files and the current one, as one stream.
            let total = backlog.len() + current_complete;
            let byte = |i: usize| {
                if i < backlog.len() {
                    backlog[i]
                } else {
                    current[i - backlog.len()]
                }
            };
            let starts: Vec<usize> = std::iter::once(0)
                .chain((0..total).filter(|i| byte(*i) == b'\n').map(|i| i + 1))
                .filter(|i| *i < total)
                .collect();
            start = match starts.len().checked_sub(tail) {
                _ if tail == 0 => total,
                Some(first) => starts[first],
                None => 0,
            };
        }
        let offset = start.saturating_sub(backlog.len()) as u64;
        backlog.drain(..start.min(backlog.len()));
        Ok(LogFollower {
            path: path.to_path_buf(),
            backlog,
            file,
            offset,
            last,
            timestamps,
            since: None,
            until: None,
            mid_line: [false; 2],
        })
    }

    /// The current log (opened, and its contents) and the rotated files' contents
    /// (`.1` first), consistent with each other. The current log is opened first and
    /// kept: what a rotation moves away after that is the follower's to read (see
    /// [`LogFollower::pump`]); a rotation before it is in the rotated files. Reading
    /// the rotated files first and opening the log by its path afterwards lost the
    /// file rotated in between (`logs -f` of a busy container began mid-output). When
    /// the opened log was rotated meanwhile (it is `.1` now), or a log appeared, the
    /// snapshot is taken again.
    fn snapshot(path: &Path) -> io::Result<Snapshot> {
        use std::io::Read;
        use std::os::unix::fs::MetadataExt;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut file = match File::open(path) {
                Ok(file) => Some(file),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            };
            let ours = file.as_ref().map(|f| f.metadata()).transpose()?;
            let mut rotated = Vec::new();
            let mut moved = false;
            for n in 1.. {
                let rotated_file = match File::open(rotated_path(path, n)) {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) => return Err(e),
                };
                let meta = rotated_file.metadata()?;
                moved |= ours
                    .as_ref()
                    .is_some_and(|o| o.ino() == meta.ino() && o.dev() == meta.dev());
                let mut data = Vec::new();
                (&rotated_file).read_to_end(&mut data)?;
                rotated.push(((meta.dev(), meta.ino()), data));
            }
            let appeared = file.is_none() && path.exists();
            if (moved || appeared) && attempts < 100 {
                continue;
            }
            let mut current = Vec::new();
            if let Some(f) = file.as_mut() {
                f.read_to_end(&mut current)?;
            }
            return Ok((file, rotated, current));
        }
    }

    /// Prints only records stamped within [since, until] (either may be open).
    pub fn window(mut self, since: Option<String>, until: Option<String>) -> LogFollower {
        self.since = since;
        self.until = until;
        self
    }

    fn emit(
        &mut self,
        data: &[u8],
        stdout: &mut dyn Write,
        stderr: &mut dyn Write,
    ) -> io::Result<()> {
        for line in data.split(|b| *b == b'\n') {
            if line.is_empty() {
                continue;
            }
            let record = LogRecord::parse(line);
            let early = self
                .since
                .as_ref()
                .is_some_and(|s| record.stamp < s.as_bytes());
            let late = self
                .until
                .as_ref()
                .is_some_and(|u| record.stamp > u.as_bytes());
            if early || late {
                continue;
            }
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
        Ok(())
    }

    /// Reads the complete records after `offset` in the open file.
    fn read_current(&mut self, stdout: &mut dyn Write, stderr: &mut dyn Write) -> io::Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        file.seek(SeekFrom::Start(self.offset))?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)?;
        let done = complete(&data);
        self.offset += done.len() as u64;
        let done = done.to_vec();
        self.emit(&done, stdout, stderr)
    }

    /// Prints every complete record after the last one printed.
    pub fn pump(&mut self, stdout: &mut dyn Write, stderr: &mut dyn Write) -> io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let backlog = std::mem::take(&mut self.backlog);
        self.emit(&backlog, stdout, stderr)?;
        // At most a few rounds: each one follows one rotation.
        for _ in 0..16 {
            if self.file.is_none() {
                // No log open (none yet, or the one read was rotated away): first the
                // files rotated since the last one printed, oldest first, then the log
                // from its start. Opening the log by its path alone lost the files a
                // busy container rotated in between.
                let (file, rotated, _) = Self::snapshot(&self.path)?;
                let unseen = rotated
                    .iter()
                    .position(|(id, _)| Some(*id) == self.last)
                    .unwrap_or(rotated.len());
                for (_, data) in rotated[..unseen].iter().rev() {
                    self.emit(complete(data), stdout, stderr)?;
                }
                if let Some((id, _)) = rotated.first() {
                    self.last = Some(*id);
                }
                match file {
                    Some(file) => {
                        self.file = Some(file);
                        self.offset = 0;
                    }
                    None => break,
                }
            }
            self.read_current(stdout, stderr)?;
            let Some(ours) = self.file.as_ref().map(|f| f.metadata()).transpose()? else {
                break;
            };
            let same =
                |meta: &std::fs::Metadata| meta.ino() == ours.ino() && meta.dev() == ours.dev();
            if std::fs::metadata(&self.path).map_or(true, |now| same(&now)) {
                break;
            }
            // Renamed away: what was written before the rename is all there is. The
            // files rotated after it and the new log come next (above).
            self.read_current(stdout, stderr)?;
            self.last = Some((ours.dev(), ours.ino()));
            self.file = None;
            self.offset = 0;
        }
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
    fn logs_read_across_rotation_and_a_follower_follows_it() {
        use crate::runtime::logfile::Rotation;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let rotation = Rotation {
            max_size: 300,
            max_files: 10,
        };
        let mut writer = LogWriter::new(&path).with_rotation(Some(rotation));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut follower = LogFollower::open(&path, None, false).unwrap();
        let mut expected = String::new();
        for i in 0..40 {
            writer
                .write(Stream::Stdout, format!("{i}\n").as_bytes())
                .unwrap();
            expected.push_str(&format!("{i}\n"));
            // Sometimes once per rotation, sometimes after several.
            if i % 3 == 0 && i < 20 || i % 17 == 0 {
                follower.pump(&mut out, &mut err).unwrap();
            }
        }
        follower.pump(&mut out, &mut err).unwrap();
        assert!(rotated_path(&path, 2).exists(), "rotated more than once");
        assert_eq!(String::from_utf8(out).unwrap(), expected);
        // A new reader starts at the oldest file; a tail spans files.
        let mut all = Vec::new();
        LogFollower::open(&path, None, false)
            .unwrap()
            .pump(&mut all, &mut err)
            .unwrap();
        assert_eq!(String::from_utf8(all).unwrap(), expected);
        let mut tail = Vec::new();
        LogFollower::open(&path, Some(25), false)
            .unwrap()
            .pump(&mut tail, &mut err)
            .unwrap();
        let want: String = (15..40).map(|i| format!("{i}\n")).collect();
        assert_eq!(String::from_utf8(tail).unwrap(), want);
    }

    #[test]
    fn a_follower_opened_just_before_a_rotation_misses_nothing() {
        use crate::runtime::logfile::Rotation;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let rotation = Rotation {
            max_size: 300,
            max_files: 10,
        };
        let mut writer = LogWriter::new(&path).with_rotation(Some(rotation));
        let mut expected = String::new();
        let mut write = |i: usize, expected: &mut String| {
            let line = format!("{i}\n");
            writer.write(Stream::Stdout, line.as_bytes()).unwrap();
            expected.push_str(&line);
        };
        // `logs -f` started before the container wrote anything (no log yet); it writes
        // enough to rotate the log away (more than once) before the follower's first
        // read; then again while the log the follower holds is rotated away.
        let mut follower = LogFollower::open(&path, None, false).unwrap();
        for i in 0..30 {
            write(i, &mut expected);
        }
        assert!(rotated_path(&path, 2).exists(), "rotated more than once");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        follower.pump(&mut out, &mut err).unwrap();
        assert_eq!(String::from_utf8(out.clone()).unwrap(), expected);
        for i in 30..80 {
            write(i, &mut expected);
        }
        follower.pump(&mut out, &mut err).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), expected);
        // Opened while a log exists, before it rotates: the same.
        let mut follower = LogFollower::open(&path, Some(0), false).unwrap();
        let mut more = String::new();
        for i in 80..120 {
            write(i, &mut more);
        }
        let mut out = Vec::new();
        follower.pump(&mut out, &mut err).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), more);
    }

    #[test]
    fn time_bounds_read_times_unix_seconds_and_durations() {
        let at = |t| time_bound("--since", t).unwrap();
        assert_eq!(at("2026-01-01T00:00:02Z"), "2026-01-01T00:00:02.000000000Z");
        assert_eq!(
            at("2026-01-01T00:00:02.5Z"),
            "2026-01-01T00:00:02.500000000Z"
        );
        assert_eq!(at("1767225602"), "2026-01-01T00:00:02.000000000Z");
        assert!(at("10m") < crate::timefmt::now());
        assert!(time_bound("--since", "yesterday").is_err());
    }

    #[test]
    fn since_and_until_keep_the_records_of_a_window() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(
            &path,
            "2026-01-01T00:00:01.000000000Z stdout F one\n\
             2026-01-01T00:00:02.000000000Z stdout F two\n\
             2026-01-01T00:00:03.000000000Z stdout F three\n",
        )
        .unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        LogFollower::open(&path, None, false)
            .unwrap()
            .window(
                Some("2026-01-01T00:00:02.000000000Z".into()),
                Some("2026-01-01T00:00:02.500000000Z".into()),
            )
            .pump(&mut out, &mut err)
            .unwrap();
        assert_eq!(out, b"two\n");
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
