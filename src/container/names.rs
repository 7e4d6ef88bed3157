//! Container names: Docker's rule for them, and generated ones in Docker's style
//! (`adjective_surname`).

use std::fs;
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::fs::symlink;
use std::path::Path;

use anyhow::{bail, Context};

use super::paths::{containers_dir, names_dir};

const ADJECTIVES: &[&str] = &[
    "brave", "calm", "clever", "eager", "gentle", "happy", "jolly", "keen", "lucid", "merry",
    "nimble", "proud", "quiet", "sharp", "swift", "tender", "upbeat", "vivid", "witty", "zealous",
];

const SURNAMES: &[&str] = &[
    "babbage", "curie", "dijkstra", "euler", "fermat", "gauss", "hopper", "knuth", "lamport",
    "lovelace", "noether", "pascal", "ritchie", "shannon", "thompson", "torvalds", "turing",
    "wirth", "yonath", "zuse",
];

/// Container names follow Docker's rule, so they are safe as file names.
pub fn validate_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if name.len() > 128 {
        bail!(
            "invalid container name {:?}...: it is {} characters long, the limit is 128",
            name.chars().take(32).collect::<String>(),
            name.len()
        );
    }
    if !first_ok || !rest_ok {
        bail!("invalid container name {name:?}: use letters, digits, '_', '.', '-' (first a letter or digit)");
    }
    Ok(())
}

/// A name chosen by `seed` (random bits of the container id).
pub fn generate(seed: u64) -> String {
    let adjective = ADJECTIVES[(seed % ADJECTIVES.len() as u64) as usize];
    let surname = SURNAMES[((seed >> 16) % SURNAMES.len() as u64) as usize];
    format!("{adjective}_{surname}")
}

/// Docker-style generated name (`brave_turing`), retried on the rare collision.
pub(super) fn claim_generated_name(root: &Path, id: &str) -> anyhow::Result<String> {
    let mut last_err = None;
    for attempt in 0..8u8 {
        let start = usize::from(attempt) * 2;
        let seed = u64::from_str_radix(&id[start..start + 16], 16).unwrap_or(u64::from(attempt));
        let mut name = generate(seed);
        if attempt >= 4 {
            name.push_str(&format!("_{attempt}"));
        }
        match claim_name(root, &name, id) {
            Ok(()) => return Ok(name),
            Err(err) => last_err = Some(err),
        }
    }
    Err(last_err.unwrap_or_else(|| anyhow::anyhow!("cannot generate a container name")))
}

pub(super) fn claim_name(root: &Path, name: &str, id: &str) -> anyhow::Result<()> {
    validate_name(name)?;
    let names = names_dir(root);
    fs::create_dir_all(&names).with_context(|| format!("cannot create {}", names.display()))?;
    let link = names.join(name);
    match symlink(id, &link) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == ErrorKind::AlreadyExists => {
            // A name left by a record that no longer exists is free again. Taken over
            // under the names lock, so two claimers (or a claimer and the old owner's
            // removal) cannot both act on the same stale link.
            let _names = lock_names(root)?;
            let owner = fs::read_link(&link).unwrap_or_default();
            if !owner.as_os_str().is_empty() && !containers_dir(root).join(&owner).exists() {
                let _ = fs::remove_file(&link);
                if symlink(id, &link).is_ok() {
                    return Ok(());
                }
            }
            bail!(
                "the container name {name:?} is already in use by {}: remove it (mycontainer rm {name}) or pick another name",
                owner.display()
            )
        }
        Err(err) => Err(err).with_context(|| format!("cannot create {}", link.display())),
    }
}

/// Serializes changes to a name link that is not new (taking over a stale one,
/// removing one's own). Held while the returned file lives.
pub(super) fn lock_names(root: &Path) -> anyhow::Result<fs::File> {
    let path = names_dir(root).join(".lock");
    let file = mycontainer_store::open_lock_file(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot lock {}", path.display()));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_like_docker() {
        assert!(validate_name("web-1.a_b").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("-x").is_err());
        assert!(validate_name("a/b").is_err());
        assert!(validate_name("..").is_err());
    }

    #[test]
    fn generated_names_are_valid_container_names() {
        for seed in [0, 1, u64::MAX, 0xdead_beef_cafe] {
            let name = generate(seed);
            assert!(validate_name(&name).is_ok(), "{name}");
        }
    }
}
