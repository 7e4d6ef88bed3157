//! Container names: Docker's rule for them, and generated ones in Docker's style
//! (`adjective_surname`).

use anyhow::bail;

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
    if !first_ok || !rest_ok || name.len() > 128 {
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
