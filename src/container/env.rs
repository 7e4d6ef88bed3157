//! The environment of a container's process, for `run` and `exec` alike.

use std::collections::HashMap;

use anyhow::bail;

/// Docker's env merge: `sources` are applied in order, each an origin (for the error
/// message) and its `KEY=VALUE` entries. A later value wins, and a key set again keeps
/// its first place. `KEY` without a value takes the caller's value, or is dropped when
/// unset.
pub fn merge_env(sources: &[(&str, &[String])]) -> anyhow::Result<Vec<String>> {
    let mut order: Vec<String> = Vec::new();
    let mut values: HashMap<String, String> = HashMap::new();
    for (origin, entries) in sources {
        for entry in entries.iter() {
            let (key, value) = match entry.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (entry.to_string(), std::env::var(entry).ok()),
            };
            if key.is_empty() || key.contains(char::is_whitespace) {
                bail!("invalid environment variable {entry:?} in {origin}: use KEY=VALUE");
            }
            if let Some(value) = value {
                if !values.contains_key(&key) {
                    order.push(key.clone());
                }
                values.insert(key, value);
            }
        }
    }
    Ok(order
        .into_iter()
        .map(|key| {
            let value = &values[&key];
            format!("{key}={value}")
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_sources_win_in_place() {
        let base = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        let flags = vec!["A=2".to_string(), "B=3".to_string()];
        let env = merge_env(&[("the image config", &base), ("-e", &flags)]).unwrap();
        assert_eq!(env, vec!["PATH=/bin", "A=2", "B=3"]);
        let bad = vec!["=x".to_string()];
        let err = merge_env(&[("-e", &bad)]).unwrap_err().to_string();
        assert!(err.contains("in -e"), "{err}");
    }
}
