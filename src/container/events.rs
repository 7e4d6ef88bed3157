//! The per-root event log, `<root>/events.log`: one JSON object per line, appended by
//! whichever command or supervisor did the thing (create, start, die, oom,
//! health_status, destroy), as Docker's daemon records them. Appends are single
//! `write`s on an O_APPEND file, so writers do not interleave; past 1 MiB the log moves
//! to `events.log.1` (one old file kept). `events` reads and follows it.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const EVENTS_FILE: &str = "events.log";
const MAX_SIZE: u64 = 1 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339 with nanoseconds (our log form; compares as text).
    pub time: String,
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

pub fn path(root: &Path) -> PathBuf {
    root.join(EVENTS_FILE)
}

/// Appends an event; best effort (an event log that cannot be written never fails the
/// command that acts).
pub fn emit(
    root: &Path,
    id: &str,
    name: Option<&str>,
    action: &str,
    attributes: &[(&str, String)],
) {
    let mut attrs: BTreeMap<String, String> = attributes
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    if let Some(name) = name {
        attrs.insert("name".into(), name.to_string());
    }
    let event = Event {
        time: crate::timefmt::now(),
        kind: "container".into(),
        action: action.to_string(),
        id: id.to_string(),
        attributes: attrs,
    };
    let Ok(mut line) = serde_json::to_vec(&event) else {
        return;
    };
    line.push(b'\n');
    let file = path(root);
    if std::fs::metadata(&file).is_ok_and(|m| m.len() > MAX_SIZE) {
        let mut old = file.clone().into_os_string();
        old.push(".1");
        let _ = std::fs::rename(&file, old);
    }
    if let Ok(mut log) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(&file)
    {
        let _ = log.write_all(&line);
    }
}

/// Which events `events` shows.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Names or id prefixes (any of them).
    pub containers: Vec<String>,
    /// Actions (any of them; `health_status` matches every health status).
    pub actions: Vec<String>,
}

impl Filter {
    /// Parses `--filter KEY=VALUE` (container=, event=, type=container).
    pub fn parse(filters: &[String]) -> anyhow::Result<Filter> {
        let mut filter = Filter::default();
        for f in filters {
            match f.split_once('=') {
                Some(("container", v)) => filter.containers.push(v.to_string()),
                Some(("event", v)) => filter.actions.push(v.to_string()),
                Some(("type", "container")) => {}
                _ => anyhow::bail!(
                    "invalid --filter {f:?}: use container=NAME, event=ACTION or type=container"
                ),
            }
        }
        Ok(filter)
    }

    pub fn matches(&self, event: &Event) -> bool {
        let container = self.containers.is_empty()
            || self.containers.iter().any(|c| {
                event.id.starts_with(c.as_str()) || event.attributes.get("name") == Some(c)
            });
        let action = self.actions.is_empty()
            || self
                .actions
                .iter()
                .any(|a| event.action == *a || event.action.starts_with(&format!("{a}:")));
        container && action
    }
}

impl Event {
    /// Docker's line: `TIME container ACTION ID (k=v, ...)`.
    pub fn line(&self) -> String {
        let attrs: Vec<String> = self
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!(
            "{} {} {} {} ({})",
            self.time,
            self.kind,
            self.action,
            self.id,
            attrs.join(", ")
        )
    }
}

/// Reads the events appended from byte `offset` on (complete lines only); returns them
/// with the offset after them.
pub fn read_from(root: &Path, offset: u64) -> (Vec<Event>, u64) {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path(root)) else {
        return (Vec::new(), 0);
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    // Moved to events.log.1 since: start the new file from its beginning.
    let offset = if offset > len { 0 } else { offset };
    let mut data = Vec::new();
    if file.seek(SeekFrom::Start(offset)).is_err() || file.read_to_end(&mut data).is_err() {
        return (Vec::new(), offset);
    }
    let complete = data.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let events = data[..complete]
        .split(|b| *b == b'\n')
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect();
    (events, offset + complete as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_append_read_back_and_filter() {
        let root = tempfile::tempdir().unwrap();
        emit(root.path(), "abc123", Some("web"), "create", &[]);
        emit(
            root.path(),
            "abc123",
            Some("web"),
            "die",
            &[("exitCode", "3".into())],
        );
        emit(
            root.path(),
            "def456",
            Some("db"),
            "health_status: healthy",
            &[],
        );
        let (events, end) = read_from(root.path(), 0);
        assert_eq!(events.len(), 3);
        assert_eq!(read_from(root.path(), end).0.len(), 0);
        assert!(events[1]
            .line()
            .ends_with("container die abc123 (exitCode=3, name=web)"));
        let f = Filter::parse(&["container=web".into(), "event=die".into()]).unwrap();
        assert_eq!(events.iter().filter(|e| f.matches(e)).count(), 1);
        let f = Filter::parse(&["event=health_status".into()]).unwrap();
        assert_eq!(events.iter().filter(|e| f.matches(e)).count(), 1);
        let f = Filter::parse(&["container=abc".into()]).unwrap();
        assert_eq!(events.iter().filter(|e| f.matches(e)).count(), 2);
        assert!(Filter::parse(&["colour=red".into()]).is_err());
    }
}
