//! Recipe files (TOML): what to build and the image config it gets. Built-in recipes are
//! compiled into the binary, so `image build busybox` works wherever the binary is.

use std::path::Path;

use anyhow::{bail, Context};
use serde::Deserialize;

const BUILT_IN: &[(&str, &str)] = &[
    ("busybox", include_str!("../../recipes/busybox.toml")),
    ("debian", include_str!("../../recipes/debian.toml")),
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Image name; the image is tagged name:TAG for every entry of `tags`.
    pub name: String,
    #[serde(default = "default_tags")]
    pub tags: Vec<String>,
    pub builder: Builder,
    /// Build it automatically when `run` asks for it and it is missing.
    #[serde(default)]
    pub auto_build: bool,
    /// RFC 3339 creation time, fixed for reproducible builds (default: now).
    pub created: Option<String>,
    pub busybox: Option<BusyboxSection>,
    pub debootstrap: Option<DebootstrapSection>,
    #[serde(default)]
    pub config: ConfigSection,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Builder {
    Busybox,
    Debootstrap,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusyboxSection {
    /// Static busybox binaries to try on the host, in order.
    #[serde(default)]
    pub host_paths: Vec<String>,
    /// Where to download one otherwise, and its sha256.
    pub url: Option<String>,
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebootstrapSection {
    pub suite: String,
    #[serde(default = "default_variant")]
    pub variant: String,
    pub mirror: Option<String>,
    #[serde(default)]
    pub include: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigSection {
    #[serde(default)]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

fn default_tags() -> Vec<String> {
    vec!["latest".into()]
}

fn default_variant() -> String {
    "minbase".into()
}

impl Recipe {
    /// A built-in recipe by name, or a recipe file by path.
    pub fn find(name_or_path: &str) -> anyhow::Result<Recipe> {
        if let Some((_, text)) = BUILT_IN.iter().find(|(name, _)| *name == name_or_path) {
            return Recipe::parse(text, name_or_path);
        }
        let path = Path::new(name_or_path);
        if path.exists() {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read recipe {}", path.display()))?;
            return Recipe::parse(&text, &path.display().to_string());
        }
        let known: Vec<&str> = BUILT_IN.iter().map(|(n, _)| *n).collect();
        bail!(
            "no recipe {name_or_path:?}: built-in recipes are {}, or give the path of a recipe file",
            known.join(", ")
        )
    }

    /// The built-in recipe `name` (`busybox`, `debian`), if there is one.
    pub fn find_built_in(name: &str) -> Option<Recipe> {
        let (_, text) = BUILT_IN.iter().find(|(n, _)| *n == name)?;
        Recipe::parse(text, name).ok()
    }

    /// The built-in recipe for an image name like `busybox` or `busybox:latest`, if it
    /// builds automatically.
    pub fn auto_build_for(image: &str) -> Option<Recipe> {
        let (name, tag) = image.split_once(':').unwrap_or((image, "latest"));
        let (_, text) = BUILT_IN.iter().find(|(n, _)| *n == name)?;
        let recipe = Recipe::parse(text, name).ok()?;
        (recipe.auto_build && recipe.tags.iter().any(|t| t == tag)).then_some(recipe)
    }

    fn parse(text: &str, origin: &str) -> anyhow::Result<Recipe> {
        let recipe: Recipe =
            toml::from_str(text).with_context(|| format!("recipe {origin} is invalid"))?;
        match recipe.builder {
            Builder::Busybox if recipe.busybox.is_none() => {
                bail!("recipe {origin}: builder busybox needs a [busybox] section")
            }
            Builder::Debootstrap if recipe.debootstrap.is_none() => {
                bail!("recipe {origin}: builder debootstrap needs a [debootstrap] section")
            }
            _ => Ok(recipe),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_recipes_parse() {
        for (name, _) in BUILT_IN {
            let recipe = Recipe::find(name).unwrap();
            assert_eq!(recipe.name, *name);
        }
        assert!(Recipe::auto_build_for("busybox").is_some());
        assert!(Recipe::auto_build_for("busybox:1.0").is_none());
        assert!(Recipe::auto_build_for("debian").is_none());
    }

    #[test]
    fn unknown_keys_and_missing_sections_are_errors() {
        assert!(Recipe::parse("name='x'\nbuilder='busybox'\nfoo=1\n[busybox]\n", "t").is_err());
        assert!(Recipe::parse("name='x'\nbuilder='debootstrap'\n", "t").is_err());
        let err = Recipe::find("nonexistent-recipe").unwrap_err().to_string();
        assert!(err.contains("busybox, debian"), "{err}");
    }
}
