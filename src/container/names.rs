//! Generated container names in Docker's style: `adjective_surname`.

const ADJECTIVES: &[&str] = &[
    "brave", "calm", "clever", "eager", "gentle", "happy", "jolly", "keen", "lucid", "merry",
    "nimble", "proud", "quiet", "sharp", "swift", "tender", "upbeat", "vivid", "witty", "zealous",
];

const SURNAMES: &[&str] = &[
    "babbage", "curie", "dijkstra", "euler", "fermat", "gauss", "hopper", "knuth", "lamport",
    "lovelace", "noether", "pascal", "ritchie", "shannon", "thompson", "torvalds", "turing",
    "wirth", "yonath", "zuse",
];

/// A name chosen by `seed` (random bits of the container id).
pub fn generate(seed: u64) -> String {
    let adjective = ADJECTIVES[(seed % ADJECTIVES.len() as u64) as usize];
    let surname = SURNAMES[((seed >> 16) % SURNAMES.len() as u64) as usize];
    format!("{adjective}_{surname}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_names_are_valid_container_names() {
        for seed in [0, 1, u64::MAX, 0xdead_beef_cafe] {
            let name = super::generate(seed);
            assert!(crate::container::validate_name(&name).is_ok(), "{name}");
        }
    }
}
