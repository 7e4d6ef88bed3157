//! `diff` (what a container changed: its upper dir against its image's layers) and
//! `export` (its filesystem as a tar).

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::privmount::{self, View};
use super::record::Record;

/// One line of `diff`: A (added), C (changed), D (deleted), and the container path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Change {
    pub path: String,
    pub kind: char,
}

fn is_whiteout(meta: &std::fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Whether the image's layers (topmost first) show something at `rel`: the topmost
/// layer holding the name decides (a whiteout there means deleted).
fn in_image(lowerdirs: &[PathBuf], rel: &Path) -> bool {
    for layer in lowerdirs {
        if let Ok(meta) = std::fs::symlink_metadata(layer.join(rel)) {
            return !is_whiteout(&meta);
        }
    }
    false
}

/// The container's lowerdirs and upper dir, from its config.json.
fn layers_of(record: &Record) -> anyhow::Result<(Vec<PathBuf>, PathBuf)> {
    let spec = oci_spec::runtime::Spec::load(record.config_path())
        .with_context(|| format!("cannot read {}", record.config_path().display()))?;
    // After a reboot its init layer is gone from the run dir.
    super::rundir::restore(record, &spec)?;
    let (lower, (upper, _)) = super::cp::overlay_of(&spec)?;
    Ok((lower, upper))
}

/// What the container changed, sorted by path (as `docker diff`).
pub fn diff(record: &Record) -> anyhow::Result<Vec<Change>> {
    let (lower, upper) = layers_of(record)?;
    let mut changes = Vec::new();
    walk(&upper, Path::new(""), &lower, false, &mut changes)?;
    // The files the runtime creates to mount the etc files on (Docker's init layer
    // hides them) are not the container's changes, nor is /etc for them alone.
    let stubs: Vec<String> = super::spec::ETC_FILES
        .iter()
        .map(|f| format!("/etc/{f}"))
        .collect();
    changes.retain(|c| !(c.kind == 'A' && stubs.contains(&c.path)));
    let etc_changed = changes.iter().any(|c| c.path.starts_with("/etc/"));
    changes.retain(|c| etc_changed || !(c.path == "/etc" && c.kind == 'C'));
    changes.sort();
    Ok(changes)
}

fn walk(
    upper: &Path,
    rel: &Path,
    lower: &[PathBuf],
    added: bool,
    out: &mut Vec<Change>,
) -> anyhow::Result<()> {
    let dir = upper.join(rel);
    let entries =
        std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let child = rel.join(entry.file_name());
        let meta = entry
            .metadata()
            .with_context(|| format!("cannot stat {}", entry.path().display()))?;
        let path = format!("/{}", child.display());
        if is_whiteout(&meta) {
            out.push(Change { path, kind: 'D' });
            continue;
        }
        let existed = !added && in_image(lower, &child);
        out.push(Change {
            path,
            kind: if existed { 'C' } else { 'A' },
        });
        if meta.is_dir() {
            walk(upper, &child, lower, !existed, out)?;
        }
    }
    Ok(())
}

/// Writes the container's filesystem (its image with its changes; no volumes and no
/// /proc, as `docker export`) as a tar to `out`. The upper dir goes on top of the
/// image's layers in a read-only overlay, mounted in a private mount namespace, so
/// the container may run meanwhile.
pub fn export(record: &Record, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let (mut lower, upper) = layers_of(record)?;
    lower.insert(0, upper);
    let merged = record.merged_dir();
    let view = View {
        lowerdirs: &lower,
        upper: None,
        mountpoint: &merged,
        binds: Vec::new(),
    };
    privmount::with_view(view, |root| {
        let mut builder = tar::Builder::new(out);
        builder.follow_symlinks(false);
        for (name, _) in super::fscopy::entries(root)? {
            super::cp::write_tar(&mut builder, root, &name, Path::new(&name))?;
        }
        builder.finish().context("cannot write the tar stream")?;
        Ok(())
    })
}
