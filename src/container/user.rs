//! Resolves `-u USER[:GROUP]` against the image's /etc/passwd and /etc/group.
//! STUB: numeric ids only; names land on the `security` branch.

use std::path::Path;

/// The identity the container's process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// $HOME from passwd, when known.
    pub home: Option<String>,
}

/// Resolves `spec` ("", "name", "uid", "name:group", "uid:gid") inside `rootfs`.
pub fn resolve(_rootfs: &Path, spec: &str) -> anyhow::Result<ResolvedUser> {
    let (user, group) = spec.split_once(':').unwrap_or((spec, ""));
    let uid: u32 = if user.is_empty() { 0 } else { user.parse()? };
    let gid: u32 = if group.is_empty() { 0 } else { group.parse()? };
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids: Vec::new(),
        home: None,
    })
}
