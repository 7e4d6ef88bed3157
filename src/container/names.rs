//! Container names: Docker's rule for them, and generated ones in Docker's style
//! (`adjective_surname`).

use std::fs;
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::fs::symlink;
use std::path::Path;

use anyhow::{bail, Context};

use super::paths::{containers_dir, names_dir};

// 136 x 194 = 26,384 names (Docker has about 25,000): with 50 containers a new
// generated name collides with one in use 0.2% of the time (it was 12% with 400).
// Unformatted: rustfmt would put each word on a line of its own.
#[rustfmt::skip]
const ADJECTIVES: &[&str] = &[
    "able", "adept", "agile", "alert", "amber", "ample", "apt", "artful", "astute", "avid", "balmy",
    "beaming", "blithe", "bold", "bouncy", "breezy", "bright", "brisk", "bubbly", "candid",
    "capable", "careful", "caring", "cheerful", "chipper", "civil", "classy", "clear", "cosmic",
    "cozy", "crisp", "curious", "dapper", "daring", "dashing", "deft", "devoted", "diligent",
    "dreamy", "dynamic", "earnest", "easy", "elated", "elegant", "epic", "exact", "fabled", "fair",
    "faithful", "fancy", "fearless", "festive", "fiery", "fluent", "fond", "frank", "free", "fresh",
    "friendly", "frosty", "gallant", "genial", "gifted", "giving", "glad", "gleaming", "golden",
    "graceful", "grand", "grateful", "hardy", "hearty", "helpful", "honest", "hopeful", "humble",
    "ideal", "intent", "jaunty", "jovial", "joyful", "just", "kind", "lively", "loyal", "lucky",
    "lunar", "magic", "mellow", "mighty", "modest", "musing", "natty", "neat", "noble", "novel",
    "optimal", "patient", "peppy", "placid", "plucky", "polite", "practical", "precise", "prime",
    "quick", "quirky", "radiant", "rapid", "ready", "regal", "robust", "rosy", "rugged", "serene",
    "shiny", "silent", "sincere", "snappy", "solar", "spry", "stoic", "sturdy", "sunny", "super",
    "sure", "tidy", "tranquil", "trusty", "valiant", "vibrant", "warm", "wise", "youthful", "zany",
    "zesty",
];

#[rustfmt::skip]
const SURNAMES: &[&str] = &[
    "abel", "agnesi", "alhazen", "ampere", "archimedes", "aristarchus", "arnold", "aryabhata",
    "avogadro", "babbage", "backus", "banach", "bardeen", "bartik", "bell", "bernoulli", "bhabha",
    "blackwell", "bohr", "boltzmann", "boole", "borg", "bose", "brahe", "brattain", "carson",
    "cauchy", "cayley", "cerf", "chandrasekhar", "chebyshev", "clarke", "codd", "conway",
    "copernicus", "corbato", "coulomb", "cray", "crick", "curie", "darwin", "davies", "dedekind",
    "descartes", "diffie", "dijkstra", "dirac", "doppler", "easley", "edison", "einstein", "elion",
    "engelbart", "euclid", "euler", "faraday", "fermat", "fermi", "feynman", "fibonacci", "fourier",
    "franklin", "fresnel", "galileo", "galois", "galvani", "gauss", "germain", "gibbs", "godel",
    "goldberg", "goodall", "grace", "hamilton", "hamming", "hardy", "hawking", "heisenberg",
    "hellman", "helmholtz", "hertz", "hilbert", "hoare", "hodgkin", "hollerith", "hopper", "hubble",
    "hypatia", "jackson", "jacobi", "jemison", "johnson", "joule", "kahan", "kapitsa", "karp",
    "kay", "kelvin", "kepler", "khorana", "kilby", "knuth", "kolmogorov", "kovalevskaya",
    "lagrange", "lamarr", "lamport", "landau", "laplace", "lavoisier", "leakey", "leavitt",
    "legendre", "leibniz", "lemaitre", "liskov", "lorentz", "lovelace", "lumiere", "mandelbrot",
    "marconi", "maxwell", "mayer", "mccarthy", "mcclintock", "meitner", "mendel", "mendeleev",
    "merkle", "minsky", "mirzakhani", "moore", "morse", "napier", "nash", "neumann", "newton",
    "nightingale", "nobel", "noether", "noyce", "ohm", "oppenheimer", "pascal", "pasteur", "pauli",
    "pauling", "perlman", "planck", "poincare", "poisson", "ptolemy", "raman", "ramanujan",
    "rayleigh", "riemann", "ritchie", "rivest", "roentgen", "rutherford", "sagan", "salk", "sammet",
    "sanger", "schrodinger", "shamir", "shannon", "shockley", "sinoussi", "snyder", "stallman",
    "stonebraker", "sutherland", "swartz", "tesla", "thompson", "torvalds", "turing",
    "varahamihira", "volta", "wallace", "watt", "wescoff", "wiles", "williams", "wilson", "wing",
    "wirth", "wozniak", "wright", "wu", "yalow", "yonath", "zuse",
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
    use std::collections::HashSet;

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
    fn generated_names_come_from_distinct_words_in_many_combinations() {
        for words in [ADJECTIVES, SURNAMES] {
            let mut sorted = words.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), words.len(), "a word is listed twice");
        }
        assert!(ADJECTIVES.len() * SURNAMES.len() >= 25_000);
        // Every word can be drawn: the adjective by the seed's low bits, the surname by
        // the bits above 16.
        let word = |seed: u64, part: usize| generate(seed).split('_').nth(part).map(String::from);
        let adjectives: HashSet<_> = (0..1u64 << 16).filter_map(|seed| word(seed, 0)).collect();
        let surnames: HashSet<_> = (0..SURNAMES.len() as u64)
            .filter_map(|high| word(high << 16, 1))
            .collect();
        assert_eq!(adjectives.len(), ADJECTIVES.len());
        assert_eq!(surnames.len(), SURNAMES.len());
    }

    #[test]
    fn generated_names_are_valid_container_names() {
        for seed in [0, 1, u64::MAX, 0xdead_beef_cafe] {
            let name = generate(seed);
            assert!(validate_name(&name).is_ok(), "{name}");
        }
    }
}
