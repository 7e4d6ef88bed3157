//! `--filter KEY=VALUE` as the docker CLI reads it: values of one key are alternatives
//! (OR), different keys must all match (AND).

use std::collections::BTreeMap;

use anyhow::bail;

use crate::container::{self, State, Status};

/// Parsed filters: key -> the values given for it.
#[derive(Debug, Default)]
pub struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    /// Parses `KEY=VALUE` flags, accepting only `keys`.
    pub fn parse(values: &[String], keys: &[&str]) -> anyhow::Result<Filters> {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for value in values {
            let Some((key, val)) = value.split_once('=') else {
                bail!("invalid filter {value:?}: use KEY=VALUE");
            };
            if !keys.contains(&key) {
                bail!("invalid filter {key:?}: use one of {}", keys.join(", "));
            }
            map.entry(key.to_string())
                .or_default()
                .push(val.to_string());
        }
        Ok(Filters(map))
    }

    pub fn has(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// True when `key` was not given, or one of its values satisfies `test`.
    fn any(&self, key: &str, mut test: impl FnMut(&str) -> bool) -> bool {
        self.0
            .get(key)
            .is_none_or(|values| values.iter().any(|v| test(v)))
    }
}

/// `label=KEY` or `label=KEY=VALUE` against a container's or image's labels.
fn label_matches(labels: &BTreeMap<String, String>, wanted: &str) -> bool {
    match wanted.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
        None => labels.contains_key(wanted),
    }
}

/// `ps --filter`: status, name (a substring, as Docker's pattern match mostly is), label,
/// ancestor (the image as given, or an id prefix).
pub fn ps_matches(filters: &Filters, record: &container::Record, state: &State) -> bool {
    let status = match state.status {
        Status::Created => "created",
        Status::Running => "running",
        Status::Exited => "exited",
    };
    let name = state.name.clone().unwrap_or_default();
    filters.any("status", |v| v == status)
        && filters.any("name", |v| name.contains(v.trim_start_matches('/')))
        && filters.any("id", |v| record.id.starts_with(v))
        && filters.any("label", |v| {
            label_matches(&container::inspect::labels_of(record), v)
        })
        && filters.any("ancestor", |v| {
            let bare = v.strip_prefix("sha256:").unwrap_or(v);
            state.image == v
                || state.image == format!("{v}:latest")
                || state
                    .image_id
                    .as_deref()
                    .and_then(|id| id.strip_prefix("sha256:"))
                    .is_some_and(|id| bare.len() >= 4 && id.starts_with(bare))
        })
}

/// A glob with `*` (any run of characters) matched against the whole text.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// `image ls --filter`: reference (a glob on NAME or NAME:TAG), dangling (true/false),
/// label.
pub fn image_matches(
    filters: &Filters,
    names: &[String],
    labels: &BTreeMap<String, String>,
) -> bool {
    filters.any("dangling", |v| {
        (v == "true" || v == "1") == names.is_empty()
    }) && filters.any("reference", |v| {
        names.iter().any(|n| {
            let repo = n.rsplit_once(':').map_or(n.as_str(), |(r, _)| r);
            glob(v, n) || glob(v, repo)
        })
    }) && filters.any("label", |v| label_matches(labels, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_filter_keys_as_docker() {
        assert!(glob("busy*", "busybox:latest"));
        assert!(glob("*box", "busybox"));
        assert!(!glob("deb*", "busybox"));
        assert!(glob("a*c*e", "abcde"));
        assert!(Filters::parse(&["bogus=1".into()], &["status"]).is_err());
        assert!(Filters::parse(&["status".into()], &["status"]).is_err());
        let f = Filters::parse(&["dangling=true".into()], &["dangling", "reference"]).unwrap();
        assert!(image_matches(&f, &[], &BTreeMap::new()));
        assert!(!image_matches(&f, &["a:b".into()], &BTreeMap::new()));
        let f = Filters::parse(&["reference=bus*".into()], &["reference"]).unwrap();
        assert!(image_matches(
            &f,
            &["busybox:latest".into()],
            &BTreeMap::new()
        ));
        assert!(!image_matches(&f, &["debian:12".into()], &BTreeMap::new()));
    }
}
