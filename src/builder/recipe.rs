//! Recipe files (TOML): what to build and the image config it gets. Built-in recipes are
//! compiled into the binary, so `image build busybox` works wherever the binary is.

use std::path::Path;

use anyhow::{bail, Context};
use serde::Deserialize;

use super::steps::{Command, Plan, Stage, Step};

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
    /// How the base is made: "busybox" or "debootstrap"; or, instead, `from`.
    pub builder: Option<Builder>,
    /// Build on this image (or `scratch`) with the `[[step]]` entries, like a
    /// one-stage Containerfile.
    pub from: Option<String>,
    #[serde(default)]
    pub step: Vec<RecipeStep>,
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

/// One `[[step]]` of a recipe: exactly one of the instruction keys, with the
/// modifiers that instruction takes (`chown` for copy and add, `checksum` for add).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipeStep {
    /// A shell command (string) or an exec form (array).
    pub run: Option<CommandValue>,
    /// Sources then the destination, as COPY takes them.
    pub copy: Option<Vec<String>>,
    /// Sources then the destination, as ADD takes them.
    pub add: Option<Vec<String>>,
    pub chown: Option<String>,
    pub checksum: Option<String>,
    /// `KEY=VALUE` entries, in order.
    pub env: Option<Vec<String>>,
    /// `NAME` or `NAME=DEFAULT` entries.
    pub arg: Option<Vec<String>>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    /// `KEY=VALUE` entries, in order.
    pub label: Option<Vec<String>>,
    pub expose: Option<Vec<String>>,
    pub cmd: Option<CommandValue>,
    pub entrypoint: Option<CommandValue>,
}

/// A command in a recipe step: a string is the shell form, an array the exec form.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum CommandValue {
    Shell(String),
    Exec(Vec<String>),
}

impl From<CommandValue> for Command {
    fn from(value: CommandValue) -> Command {
        match value {
            CommandValue::Shell(text) => Command::Shell(text),
            CommandValue::Exec(words) => Command::Exec(words),
        }
    }
}

fn pairs(entries: Vec<String>, what: &str) -> anyhow::Result<Vec<(String, String)>> {
    entries
        .into_iter()
        .map(|e| match e.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("{what} entry {e:?} is not KEY=VALUE"),
        })
        .collect()
}

fn sources_and_dest(mut words: Vec<String>, what: &str) -> anyhow::Result<(Vec<String>, String)> {
    if words.len() < 2 {
        bail!("{what} needs one or more sources and a destination");
    }
    let dest = words.pop().unwrap_or_default();
    Ok((words, dest))
}

impl RecipeStep {
    /// The step it stands for, as a Containerfile line would give it.
    fn compile(self) -> anyhow::Result<Step> {
        let mut steps = Vec::new();
        if let Some(run) = self.run {
            steps.push(Step::Run(run.into()));
        }
        if let Some(copy) = self.copy {
            let (sources, dest) = sources_and_dest(copy, "copy")?;
            steps.push(Step::Copy {
                sources,
                dest,
                from: None,
                chown: self.chown.clone(),
            });
        }
        if let Some(add) = self.add {
            let (sources, dest) = sources_and_dest(add, "add")?;
            steps.push(Step::Add {
                sources,
                dest,
                chown: self.chown.clone(),
                checksum: self.checksum.clone(),
            });
        }
        if let Some(env) = self.env {
            steps.push(Step::Env(pairs(env, "env")?));
        }
        if let Some(args) = self.arg {
            steps.push(Step::Arg(
                args.into_iter()
                    .map(|a| match a.split_once('=') {
                        Some((k, v)) => (k.to_string(), Some(v.to_string())),
                        None => (a, None),
                    })
                    .collect(),
            ));
        }
        if let Some(dir) = self.workdir {
            steps.push(Step::Workdir(dir));
        }
        if let Some(user) = self.user {
            steps.push(Step::User(user));
        }
        if let Some(labels) = self.label {
            steps.push(Step::Label(pairs(labels, "label")?));
        }
        if let Some(ports) = self.expose {
            steps.push(Step::Expose(ports));
        }
        if let Some(cmd) = self.cmd {
            steps.push(Step::Cmd(cmd.into()));
        }
        if let Some(entrypoint) = self.entrypoint {
            steps.push(Step::Entrypoint(entrypoint.into()));
        }
        match steps.len() {
            1 => Ok(steps.remove(0)),
            0 => bail!("a [[step]] needs one of run, copy, add, env, arg, workdir, user, label, expose, cmd, entrypoint"),
            _ => bail!("a [[step]] holds one instruction: split it into several [[step]] entries"),
        }
    }
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
    /// `VOLUME` paths: each run gets an anonymous volume there.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// `LABEL`s.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
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

    /// The step list of a recipe that builds `from` an image; `None` for a base-image
    /// recipe (`builder`).
    pub fn plan(&self) -> Option<anyhow::Result<Plan>> {
        let base = self.from.clone()?;
        let steps = self
            .step
            .iter()
            .enumerate()
            .map(|(i, step)| {
                step.clone()
                    .compile()
                    .with_context(|| format!("recipe {}: step {}", self.name, i + 1))
            })
            .collect::<anyhow::Result<Vec<_>>>();
        Some(steps.map(|steps| Plan {
            global_args: Vec::new(),
            stages: vec![Stage {
                name: None,
                base,
                steps,
            }],
        }))
    }

    pub(crate) fn parse(text: &str, origin: &str) -> anyhow::Result<Recipe> {
        let recipe: Recipe =
            toml::from_str(text).with_context(|| format!("recipe {origin} is invalid"))?;
        match (recipe.builder, &recipe.from) {
            (Some(_), Some(_)) => {
                bail!("recipe {origin}: give either builder (a base image) or from (build on an image), not both")
            }
            (None, None) => bail!(
                "recipe {origin}: needs builder = \"busybox\" or \"debootstrap\", or from = IMAGE"
            ),
            (None, Some(_)) if recipe.busybox.is_some() || recipe.debootstrap.is_some() => {
                bail!("recipe {origin}: [busybox] and [debootstrap] go with builder, not from")
            }
            (Some(_), None) if !recipe.step.is_empty() => {
                bail!("recipe {origin}: [[step]] entries need from = IMAGE")
            }
            (Some(Builder::Busybox), _) if recipe.busybox.is_none() => {
                bail!("recipe {origin}: builder busybox needs a [busybox] section")
            }
            (Some(Builder::Debootstrap), _) if recipe.debootstrap.is_none() => {
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
    fn from_recipes_compile_to_the_steps_a_containerfile_gives() {
        let recipe = Recipe::parse(
            r#"
name = "app"
from = "busybox"
[[step]]
arg = ["WHO=world"]
[[step]]
env = ["GREETING=hello"]
[[step]]
copy = ["a.txt", "b.txt", "/app/"]
chown = "1:1"
[[step]]
run = "echo $GREETING > /greet"
[[step]]
cmd = ["cat", "/greet"]
"#,
            "t",
        )
        .unwrap();
        let plan = recipe.plan().unwrap().unwrap();
        let file = crate::builder::containerfile::parse(
            "FROM busybox\nARG WHO=world\nENV GREETING=hello\nCOPY --chown=1:1 a.txt b.txt /app/\nRUN echo $GREETING > /greet\nCMD [\"cat\", \"/greet\"]\n",
        )
        .unwrap();
        assert_eq!(plan, file);
        let err = Recipe::parse(
            "name='x'\nfrom='busybox'\n[[step]]\nrun='a'\nuser='b'\n",
            "t",
        )
        .unwrap()
        .plan()
        .unwrap()
        .unwrap_err();
        assert!(format!("{err:#}").contains("one instruction"), "{err:#}");
    }

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
        assert!(Recipe::parse("name='x'\nfrom='busybox'\nbuilder='busybox'\n", "t").is_err());
        assert!(Recipe::parse("name='x'\n", "t").is_err());
        let err = Recipe::find("nonexistent-recipe").unwrap_err().to_string();
        assert!(err.contains("busybox, debian"), "{err}");
    }
}
