//! Image references: `name[:tag]`, stored in index.json as the annotation
//! `org.opencontainers.image.ref.name` with the value `name:tag` (so
//! `skopeo inspect oci:<root>/store:name:tag` finds it).

use std::fmt;

use crate::error::Error;

pub const DEFAULT_TAG: &str = "latest";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    pub name: String,
    pub tag: String,
}

impl Reference {
    /// Parses `name[:tag]` by the distribution spec's grammar (as Docker does): the
    /// name is `[HOST[:PORT]/]PATH(/PATH)*`, each path component lowercase letters and
    /// digits joined by single `.` or `_`, `__`, or runs of `-`. A colon before the last
    /// `/` belongs to the registry host:port (`localhost:5000/app` has no tag).
    pub fn parse(text: &str) -> Result<Reference, Error> {
        let bad = |reason| Error::BadReference {
            name: text.to_string(),
            reason,
        };
        let last_slash = text.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match text[last_slash..].find(':') {
            Some(i) => (&text[..last_slash + i], &text[last_slash + i + 1..]),
            None => (text, DEFAULT_TAG),
        };
        if name.is_empty() {
            return Err(bad("the name is empty"));
        }
        if name.len() > 255 {
            return Err(bad("the name is longer than 255 characters"));
        }
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad("the repository name must be lowercase"));
        }
        let mut parts = name.split('/').peekable();
        let mut first = true;
        while let Some(part) = parts.next() {
            let is_host = first && parts.peek().is_some() && is_host_port(part);
            if !is_host && !is_path_component(part) {
                return Err(bad(
                    "use NAME[:TAG], a name of lowercase letters and digits joined by . _ __ - or / and an optional HOST[:PORT]/ first",
                ));
            }
            first = false;
        }
        let tag_ok = tag.len() <= 128
            && tag
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !tag_ok {
            return Err(bad(
                "a tag is 1-128 letters, digits, . _ - and cannot start with . or -",
            ));
        }
        Ok(Reference {
            name: name.to_string(),
            tag: tag.to_string(),
        })
    }
}

/// `[a-z0-9]+` joined by `.`, `_`, `__` or `-`+ (the spec's path-component).
fn is_path_component(part: &str) -> bool {
    let bytes = part.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !bytes.first().is_some_and(|&b| alnum(b)) || !bytes.last().is_some_and(|&b| alnum(b)) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let run = bytes[i..].iter().take_while(|&&b| !alnum(b)).count();
        let separator = &part[i..i + run];
        let ok = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
        i += run;
    }
    true
}

/// A registry `HOST[:PORT]`: DNS labels joined by `.`, or an `[IPv6]` address.
fn is_host_port(part: &str) -> bool {
    let (host, port) = match part.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((inner, after)) => {
                if inner.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                match after {
                    "" => ("", None),
                    after => match after.strip_prefix(':') {
                        Some(port) => ("", Some(port)),
                        None => return false,
                    },
                }
            }
            None => return false,
        },
        None => match part.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (part, None),
        },
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    // An IPv6 host was checked above.
    part.starts_with('[')
        || !host.is_empty()
            && host.split('.').all(|label| {
                let b = label.as_bytes();
                !b.is_empty()
                    && b[0].is_ascii_alphanumeric()
                    && b[b.len() - 1].is_ascii_alphanumeric()
                    && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
            })
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_the_tag_to_latest() {
        assert_eq!(
            Reference::parse("busybox").unwrap().to_string(),
            "busybox:latest"
        );
        assert_eq!(Reference::parse("debian:bookworm").unwrap().tag, "bookworm");
    }

    #[test]
    fn a_registry_port_is_not_a_tag() {
        let r = Reference::parse("localhost:5000/app").unwrap();
        assert_eq!(
            (r.name.as_str(), r.tag.as_str()),
            ("localhost:5000/app", "latest")
        );
        let r = Reference::parse("localhost:5000/app:v1").unwrap();
        assert_eq!(
            (r.name.as_str(), r.tag.as_str()),
            ("localhost:5000/app", "v1")
        );
    }

    #[test]
    fn accepts_the_grammars_names() {
        for good in [
            "a",
            "a_b",
            "a__b",
            "a---b.c",
            "team/app:v1.0-rc_1",
            "quay.io/team/app",
            "localhost:5000/app:v1",
            "[::1]:5000/app",
            "my-host/app",
            "a/b:_x",
        ] {
            assert!(Reference::parse(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "",
            "Busybox",
            "a b",
            "x:",
            ":tag",
            "/abs",
            "a//b",
            "a:-x",
            "..",
            "a:b:c d",
            "a:b:c",
            "ok/../x:1",
            "a/./b",
            "a..b",
            "a-:x",
            "a/b_",
            "a:b/c",
            "host:/x",
            "host:5000x/x",
            "[::1/x",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
