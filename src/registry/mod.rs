//! Registries: references, credentials, an OCI distribution client, pull and push.

pub mod auth;
pub mod client;
pub mod pull;
pub mod push;
pub mod reference;
mod stream;

use mycontainer_store::{Digest, Progress};

pub use reference::RegistryRef;

/// How pull, push and load tell the user what they are doing. The CLI draws bars on a
/// terminal; tests and scripts get plain lines or nothing.
pub trait Reporter: Sync {
    /// A progress sink for moving one blob (`label`, usually a short digest) of `size` bytes.
    fn blob(&self, action: &str, label: &str, size: u64) -> Box<dyn Progress + Send>;
    /// One line of status (`sha256:ab12...: already exists`).
    fn status(&self, line: &str);
}

/// The host's platform in OCI terms, to pick a manifest from an index.
pub fn host_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    ("linux", arch)
}

/// Picks the host's manifest from an OCI index or Docker manifest list (JSON), returning
/// its digest and size. Attestations and other platforms are skipped.
pub fn pick_platform(index: &serde_json::Value) -> anyhow::Result<(Digest, Option<u64>)> {
    let (os, arch) = host_platform();
    let manifests = index
        .get("manifests")
        .and_then(|m| m.as_array())
        .ok_or_else(|| anyhow::anyhow!("the image index lists no manifests"))?;
    let mut available = Vec::new();
    for entry in manifests {
        let platform = entry.get("platform");
        let field = |name: &str| {
            platform
                .and_then(|p| p.get(name))
                .and_then(|v| v.as_str())
                .unwrap_or("")
        };
        if field("os") == os && field("architecture") == arch {
            let digest = entry
                .get("digest")
                .and_then(|d| d.as_str())
                .ok_or_else(|| anyhow::anyhow!("an index entry has no digest"))?;
            let size = entry.get("size").and_then(|s| s.as_u64());
            return Ok((Digest::parse(digest)?, size));
        }
        if !field("os").is_empty() && field("os") != "unknown" {
            available.push(format!("{}/{}", field("os"), field("architecture")));
        }
    }
    anyhow::bail!(
        "the image has no {os}/{arch} variant (it has: {})",
        if available.is_empty() {
            "none".to_string()
        } else {
            available.join(", ")
        }
    )
}

/// Whether a manifest document is an index (OCI index or Docker manifest list).
pub fn is_index(media_type: &str, doc: &serde_json::Value) -> bool {
    media_type == client::OCI_INDEX
        || media_type == client::DOCKER_MANIFEST_LIST
        || (doc.get("manifests").is_some() && doc.get("layers").is_none())
}

/// The media type a manifest declares in its body, else the one the transport gave.
pub fn declared_media_type(doc: &serde_json::Value, fallback: &str) -> String {
    doc.get("mediaType")
        .and_then(|m| m.as_str())
        .unwrap_or(fallback)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_host_platform_from_an_index() {
        let (os, arch) = host_platform();
        let amd = format!("sha256:{}", "1".repeat(64));
        let doc = serde_json::json!({"manifests": [
            {"digest": format!("sha256:{}", "2".repeat(64)), "platform": {"os": "linux", "architecture": "s390x"}},
            {"digest": format!("sha256:{}", "3".repeat(64)), "platform": {"os": "unknown", "architecture": "unknown"}},
            {"digest": amd, "size": 7, "platform": {"os": os, "architecture": arch}},
        ]});
        let (digest, size) = pick_platform(&doc).unwrap();
        assert_eq!((digest.to_string(), size), (amd, Some(7)));
        let other = serde_json::json!({"manifests": [
            {"digest": format!("sha256:{}", "2".repeat(64)), "platform": {"os": "linux", "architecture": "s390x"}},
        ]});
        let err = pick_platform(&other).unwrap_err().to_string();
        assert!(err.contains("linux/s390x"), "{err}");
    }
}
