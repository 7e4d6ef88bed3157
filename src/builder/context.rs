//! The build context: the directory COPY and ADD read from, filtered by
//! `.containerignore` (else `.dockerignore`), with every source kept inside it.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context as _};
use globset::{Glob, GlobMatcher};
use sha2::{Digest as _, Sha256};

/// The context directory and its ignore rules.
pub struct BuildContext {
    /// Canonical (symlinks resolved), so containment checks compare real paths.
    pub dir: PathBuf,
    rules: Vec<Rule>,
}

struct Rule {
    matcher: GlobMatcher,
    /// `!pattern`: includes again what an earlier rule excluded.
    include: bool,
}

/// One source of a COPY or ADD: its path on the host (inside the context) and the name
/// it is copied under.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub name: String,
}

impl BuildContext {
    pub fn open(dir: &Path) -> anyhow::Result<BuildContext> {
        let dir = fs::canonicalize(dir)
            .with_context(|| format!("build context {} does not exist", dir.display()))?;
        if !dir.is_dir() {
            bail!("build context {} is not a directory", dir.display());
        }
        let mut rules = Vec::new();
        for name in [".containerignore", ".dockerignore"] {
            let path = dir.join(name);
            let text = match fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
            };
            rules = parse_ignore(&text).with_context(|| format!("in {}", path.display()))?;
            break;
        }
        Ok(BuildContext { dir, rules })
    }

    /// Whether `rel` (relative to the context) is left out: the last rule matching it
    /// or one of its parent directories decides, as Docker's matcher does.
    pub fn excluded(&self, rel: &Path) -> bool {
        let mut excluded = false;
        for rule in &self.rules {
            let hit = rel
                .ancestors()
                .filter(|a| !a.as_os_str().is_empty())
                .any(|a| rule.matcher.is_match(a));
            if hit {
                excluded = !rule.include;
            }
        }
        excluded
    }

    /// The sources a COPY/ADD word names: a path relative to the context, the last
    /// component may hold wildcards. Refuses anything that leaves the context: `..`,
    /// an absolute path, a symlink leading out.
    pub fn sources(&self, word: &str, instruction: &str) -> anyhow::Result<Vec<Source>> {
        let escape = || {
            anyhow::anyhow!(
                "{instruction} source {word:?} is outside the build context {}: only files inside it can be copied",
                self.dir.display()
            )
        };
        if word.starts_with('/') {
            return Err(escape());
        }
        let mut clean = PathBuf::new();
        for part in Path::new(word).components() {
            match part {
                Component::Normal(p) => clean.push(p),
                Component::CurDir => {}
                Component::ParentDir => {
                    if !clean.pop() {
                        return Err(escape());
                    }
                }
                _ => return Err(escape()),
            }
        }
        let name = clean.file_name().map(|n| n.to_string_lossy().into_owned());
        let wildcard = name.as_deref().is_some_and(|n| n.contains(['*', '?', '[']));
        let candidates: Vec<PathBuf> = match (&name, wildcard) {
            (Some(pattern), true) => {
                let parent = clean.parent().unwrap_or(Path::new("")).to_path_buf();
                let matcher = Glob::new(pattern)
                    .with_context(|| format!("bad wildcard in {instruction} source {word:?}"))?
                    .compile_matcher();
                let dir = self.dir.join(&parent);
                let mut found: Vec<PathBuf> = fs::read_dir(&dir)
                    .map(|entries| {
                        entries
                            .filter_map(|e| e.ok())
                            .filter(|e| matcher.is_match(e.file_name()))
                            .map(|e| parent.join(e.file_name()))
                            .collect()
                    })
                    .unwrap_or_default();
                found.sort();
                found
            }
            _ => vec![clean.clone()],
        };
        let mut sources = Vec::new();
        for rel in candidates {
            if !rel.as_os_str().is_empty() && self.excluded(&rel) {
                continue;
            }
            let joined = self.dir.join(&rel);
            if fs::symlink_metadata(&joined).is_err() {
                continue;
            }
            // Symlinks along the path (the source itself included) are followed, and
            // must stay inside the context.
            let real = fs::canonicalize(&joined).map_err(|_| {
                anyhow::anyhow!(
                    "{instruction} source {:?} is a symlink that leads nowhere (or out of the build context)",
                    rel.display().to_string()
                )
            })?;
            if !real.starts_with(&self.dir) {
                bail!(
                    "{instruction} source {:?} is a symlink to {}, outside the build context: only files inside it can be copied",
                    rel.display().to_string(),
                    real.display()
                );
            }
            let name = rel
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            sources.push(Source { path: real, name });
        }
        if sources.is_empty() {
            bail!(
                "{instruction} source {word:?} not found in the build context {} (or excluded by .dockerignore)",
                self.dir.display()
            );
        }
        Ok(sources)
    }

    /// The path of `host` (inside the context) relative to it, for the ignore rules.
    pub fn relative<'a>(&self, host: &'a Path) -> &'a Path {
        host.strip_prefix(&self.dir).unwrap_or(host)
    }
}

fn parse_ignore(text: &str) -> anyhow::Result<Vec<Rule>> {
    let mut rules = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (include, pattern) = match line.strip_prefix('!') {
            Some(p) => (true, p.trim()),
            None => (false, line),
        };
        // Cleaned as Docker does: no leading / or ./, no trailing /.
        let pattern = pattern
            .trim_start_matches('/')
            .trim_start_matches("./")
            .trim_end_matches('/');
        if pattern.is_empty() {
            continue;
        }
        let matcher = globset::GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .with_context(|| format!("bad ignore pattern {pattern:?}"))?
            .compile_matcher();
        rules.push(Rule { matcher, include });
    }
    Ok(rules)
}

/// Hashes what a copy of `sources` depends on: names, types, modes, link targets and
/// contents (not times or owners, which a copy resets or a cache hit need not match),
/// skipping what the ignore rules leave out.
pub fn hash_sources(
    context: Option<&BuildContext>,
    sources: &[Source],
    hasher: &mut Sha256,
) -> anyhow::Result<()> {
    for source in sources {
        hasher.update(source.name.as_bytes());
        hash_tree(context, &source.path, Path::new(""), hasher)?;
    }
    Ok(())
}

fn hash_tree(
    context: Option<&BuildContext>,
    path: &Path,
    rel: &Path,
    hasher: &mut Sha256,
) -> anyhow::Result<()> {
    let meta =
        fs::symlink_metadata(path).with_context(|| format!("cannot stat {}", path.display()))?;
    hasher.update(rel.as_os_str().as_encoded_bytes());
    hasher.update([0]);
    hasher.update(meta.permissions().mode().to_le_bytes());
    if meta.file_type().is_symlink() {
        let target = fs::read_link(path)?;
        hasher.update(target.as_os_str().as_encoded_bytes());
    } else if meta.is_file() {
        hasher.update(meta.size().to_le_bytes());
        let mut file =
            fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
        }
    } else if meta.is_dir() {
        let mut names: Vec<_> = fs::read_dir(path)?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        names.sort();
        for name in names {
            let child = path.join(&name);
            if context.is_some_and(|c| c.excluded(c.relative(&child))) {
                continue;
            }
            hash_tree(context, &child, &rel.join(&name), hasher)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignore_rules_follow_dockers_order_and_directories() {
        let rules = parse_ignore("# c\n*.log\n/build/\n!build/keep.txt\ndocs/**/*.md\n").unwrap();
        let context = BuildContext {
            dir: PathBuf::from("/x"),
            rules,
        };
        assert!(context.excluded(Path::new("a.log")));
        assert!(!context.excluded(Path::new("sub/a.log")), "* stops at /");
        assert!(context.excluded(Path::new("build/out.o")));
        assert!(!context.excluded(Path::new("build/keep.txt")));
        assert!(context.excluded(Path::new("docs/a/b/c.md")));
        assert!(!context.excluded(Path::new("src/main.rs")));
    }
}
