//! Registry references: `busybox`, `REGISTRY/REPO:TAG`, `REPO@sha256:...`, resolved the
//! way Docker resolves them (a first component with a `.` or `:`, or `localhost`, is a
//! registry host; anything else lives on Docker Hub, single names under `library/`).

use std::fmt;
use std::net::IpAddr;

use anyhow::{bail, Context};
use mycontainer_store::{Digest, Reference};

/// Docker Hub as users write it.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API actually answers.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRef {
    /// `docker.io`, `localhost:5000`, `quay.io`...
    pub registry: String,
    /// `library/busybox`, `team/app`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl RegistryRef {
    pub fn parse(text: &str) -> anyhow::Result<RegistryRef> {
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => {
                let digest =
                    Digest::parse(digest).with_context(|| format!("invalid reference {text:?}"))?;
                (rest, Some(digest))
            }
            None => (text, None),
        };
        let (registry, path) = match rest.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (normalize_registry(first), path)
            }
            _ => (DOCKER_HUB.to_string(), rest),
        };
        let last_slash = path.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match path[last_slash..].rfind(':') {
            Some(i) => (
                &path[..last_slash + i],
                Some(path[last_slash + i + 1..].to_string()),
            ),
            None => (path, None),
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_string()
        };
        // The store's reference rules are the registry's rules for names and tags.
        Reference::parse(&format!(
            "{repository}:{}",
            tag.as_deref().unwrap_or("latest")
        ))
        .with_context(|| format!("invalid reference {text:?}"))?;
        if registry.is_empty() || registry.contains(['/', '@', ' ']) {
            bail!("invalid reference {text:?}: bad registry host {registry:?}");
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_string()),
            _ => tag,
        };
        Ok(RegistryRef {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// What to ask the registry for: the digest when given, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The repository as Docker shows it locally: `busybox` for Docker Hub's library,
    /// `user/app` for other Docker Hub repositories, `host:port/repo` elsewhere.
    pub fn local_repository(&self) -> String {
        if self.registry == DOCKER_HUB {
            let short = self
                .repository
                .strip_prefix("library/")
                .unwrap_or(&self.repository);
            short.to_string()
        } else {
            format!("{}/{}", self.registry, self.repository)
        }
    }

    /// The local name to store a pulled image under; none when pulled by digest only
    /// (as Docker does: the image is listed as `<none>`).
    pub fn local_name(&self) -> Option<Reference> {
        let tag = self.tag.as_ref()?;
        Reference::parse(&format!("{}:{tag}", self.local_repository())).ok()
    }
}

impl fmt::Display for RegistryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// `index.docker.io`, `registry-1.docker.io` and Docker's config key
/// `https://index.docker.io/v1/` all mean Docker Hub; a scheme or path is dropped.
pub fn normalize_registry(text: &str) -> String {
    let host = text
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or(host).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_string()
        }
        _ => host,
    }
}

pub fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        DOCKER_HUB_API
    } else {
        registry
    }
}

/// Registries on the loopback interface speak plain HTTP by default, as with Docker.
pub fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or(bracketed),
        None => registry.rsplit_once(':').map_or(registry, |(host, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                host
            } else {
                registry
            }
        }),
    };
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(text: &str) -> (String, String, Option<String>, Option<String>) {
        let r = RegistryRef::parse(text).unwrap();
        (
            r.registry,
            r.repository,
            r.tag,
            r.digest.map(|d| d.to_string()),
        )
    }

    #[test]
    fn docker_hub_defaults() {
        let r = RegistryRef::parse("busybox").unwrap();
        assert_eq!(api_host(&r.registry), "registry-1.docker.io");
        assert_eq!(r.repository, "library/busybox");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(r.local_name().unwrap().to_string(), "busybox:latest");
        let r = RegistryRef::parse("docker.io/library/busybox:1.36").unwrap();
        assert_eq!(r.local_name().unwrap().to_string(), "busybox:1.36");
        let r = RegistryRef::parse("user/app:v2").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("docker.io", "user/app")
        );
        assert_eq!(r.local_name().unwrap().to_string(), "user/app:v2");
    }

    #[test]
    fn registry_hosts_ports_and_digests() {
        assert_eq!(
            parts("localhost:5000/foo:v1"),
            (
                "localhost:5000".into(),
                "foo".into(),
                Some("v1".into()),
                None
            )
        );
        assert_eq!(
            parts("127.0.0.1:5000/a/b"),
            (
                "127.0.0.1:5000".into(),
                "a/b".into(),
                Some("latest".into()),
                None
            )
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        let (_, repo, tag, got) = parts(&format!("quay.io/x/y@{digest}"));
        assert_eq!(
            (repo.as_str(), tag, got),
            ("x/y", None, Some(digest.clone()))
        );
        let r = RegistryRef::parse(&format!("quay.io/x/y@{digest}")).unwrap();
        assert_eq!(r.manifest_reference(), digest);
        assert!(r.local_name().is_none());
        let r = RegistryRef::parse("localhost:5000/foo:v1").unwrap();
        assert_eq!(r.local_name().unwrap().to_string(), "localhost:5000/foo:v1");
    }

    #[test]
    fn rejects_bad_references() {
        for bad in ["", "Busybox", "a b", "x@sha256:12", "host:5000/", "a:"] {
            assert!(RegistryRef::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn loopback_and_hub_aliases() {
        for local in [
            "localhost:5000",
            "127.0.0.1:5000",
            "127.3.4.5",
            "[::1]:80",
            "localhost",
        ] {
            assert!(is_loopback(local), "{local}");
        }
        for remote in ["quay.io", "10.0.0.1:5000", "localhost.example.com"] {
            assert!(!is_loopback(remote), "{remote}");
        }
        assert_eq!(
            normalize_registry("https://index.docker.io/v1/"),
            "docker.io"
        );
        assert_eq!(normalize_registry("Quay.io"), "quay.io");
    }
}
