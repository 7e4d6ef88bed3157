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
    /// Parses `name[:tag]`. A colon before the last `/` belongs to a registry host:port
    /// (`localhost:5000/app` has no tag).
    pub fn parse(text: &str) -> Result<Reference, Error> {
        let bad = |reason| Error::BadReference {
            name: text.to_string(),
            reason,
        };
        let last_slash = text.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match text[last_slash..].rfind(':') {
            Some(i) => (&text[..last_slash + i], &text[last_slash + i + 1..]),
            None => (text, DEFAULT_TAG),
        };
        if name.is_empty() {
            return Err(bad("the name is empty"));
        }
        if name.len() > 255 {
            return Err(bad("the name is longer than 255 characters"));
        }
        let name_ok = name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' | b'/' | b':'));
        if !name_ok {
            return Err(bad("use lowercase letters, digits and . _ - /"));
        }
        if name.starts_with(['.', '-', '_', '/']) || name.ends_with('/') || name.contains("//") {
            return Err(bad("a name part must start and end with a letter or digit"));
        }
        let tag_ok = !tag.is_empty()
            && tag.len() <= 128
            && !tag.starts_with(['.', '-'])
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
    fn rejects_bad_names() {
        for bad in [
            "", "Busybox", "a b", "x:", ":tag", "/abs", "a//b", "a:-x", "..", "a:b:c d",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
