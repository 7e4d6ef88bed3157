//! What COPY and ADD write: files copied (from the context, or from another stage's or
//! image's layers as overlayfs would show them) into a staging upper dir whose diff
//! becomes the step's layer. The destination's directories are resolved through the
//! layers below (symlinks followed inside the image, as a container would) and made in
//! the staging dir with the metadata they have there, as an overlay copy-up does.

use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{lchown, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context};
use mycontainer_store::visible_layer;
use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;

/// Who copied files belong to.
#[derive(Debug, Clone, Copy)]
pub enum Owner {
    /// As in the source (COPY --from).
    Keep,
    /// This uid:gid (root for context files, or --chown).
    Set(u32, u32),
}

/// The container path `dest` (absolute, clean) with its existing directories resolved
/// through `layers` (topmost first): symlinks in the image are followed as a container
/// would, so a layer never writes under a path the image has as a symlink.
pub fn resolve_dest(layers: &[PathBuf], dest: &Path) -> anyhow::Result<PathBuf> {
    let mut resolved = PathBuf::from("/");
    let parts: Vec<_> = clean(dest)?
        .components()
        .map(|c| c.as_os_str().to_owned())
        .collect();
    for part in parts {
        let candidate = resolved.join(&part);
        match visible_layer(layers, &candidate) {
            Some((layer, host)) => {
                let inside = host.strip_prefix(layer).unwrap_or(&host);
                resolved = Path::new("/").join(inside);
            }
            None => resolved = candidate,
        }
    }
    Ok(resolved)
}

/// `path` made absolute and free of `.` and `..` (never above /).
pub fn clean(path: &Path) -> anyhow::Result<PathBuf> {
    let mut out = PathBuf::from("/");
    for part in path.components() {
        match part {
            Component::Normal(p) => out.push(p),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Makes the directory `dir` (a resolved container path) and its parents in `upper`,
/// each with the mode, owner and times it has in `layers`, or 0755 root when new.
/// Returns its host path in `upper`.
pub fn make_dirs(upper: &Path, layers: &[PathBuf], dir: &Path) -> anyhow::Result<PathBuf> {
    let mut container = PathBuf::from("/");
    let mut host = upper.to_path_buf();
    for part in dir.components().skip(1) {
        container.push(part);
        host.push(part);
        match fs::symlink_metadata(&host) {
            Ok(meta) if meta.is_dir() => continue,
            Ok(_) => bail!("{} is not a directory", container.display()),
            Err(_) => {}
        }
        let below =
            visible_layer(layers, &container).and_then(|(_, path)| fs::symlink_metadata(path).ok());
        if let Some(meta) = &below {
            if !meta.is_dir() {
                bail!(
                    "cannot copy into {}: it is not a directory in the image",
                    container.display()
                );
            }
        }
        fs::create_dir(&host).with_context(|| format!("cannot create {}", host.display()))?;
        match below {
            Some(meta) => {
                fs::set_permissions(&host, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
                lchown(&host, Some(meta.uid()), Some(meta.gid()))?;
                set_mtime(&host, meta.mtime(), meta.mtime_nsec())?;
            }
            None => fs::set_permissions(&host, fs::Permissions::from_mode(0o755))?,
        }
    }
    Ok(host)
}

/// Copies `src` (a file, symlink or directory tree on the host) to `dst`, keeping
/// modes and mtimes; directories are merged into an existing `dst`. `skip` leaves out
/// paths (the ignore rules).
pub fn copy_tree(
    src: &Path,
    dst: &Path,
    owner: Owner,
    skip: &dyn Fn(&Path) -> bool,
) -> anyhow::Result<()> {
    let meta =
        fs::symlink_metadata(src).with_context(|| format!("cannot stat {}", src.display()))?;
    let kind = meta.file_type();
    if kind.is_dir() {
        if !dst.is_dir() {
            fs::create_dir(dst).with_context(|| format!("cannot create {}", dst.display()))?;
        }
        let mut names: Vec<_> = fs::read_dir(src)?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        names.sort();
        for name in names {
            let child = src.join(&name);
            if skip(&child) {
                continue;
            }
            copy_tree(&child, &dst.join(&name), owner, skip)?;
        }
    } else if kind.is_symlink() {
        let target = fs::read_link(src)?;
        remove_existing(dst)?;
        std::os::unix::fs::symlink(&target, dst)
            .with_context(|| format!("cannot create {}", dst.display()))?;
    } else if kind.is_file() {
        remove_existing(dst)?;
        fs::copy(src, dst)
            .with_context(|| format!("cannot copy {} to {}", src.display(), dst.display()))?;
    } else {
        // Sockets, fifos and devices are not carried (Docker skips sockets too).
        return Ok(());
    }
    let (uid, gid) = match owner {
        Owner::Keep => (meta.uid(), meta.gid()),
        Owner::Set(uid, gid) => (uid, gid),
    };
    lchown(dst, Some(uid), Some(gid)).with_context(|| format!("cannot chown {}", dst.display()))?;
    if !kind.is_symlink() {
        fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    set_mtime(dst, meta.mtime(), meta.mtime_nsec())
}

fn remove_existing(path: &Path) -> anyhow::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            bail!("cannot copy a file over the directory {}", path.display())
        }
        Ok(_) => {
            fs::remove_file(path).with_context(|| format!("cannot replace {}", path.display()))
        }
        Err(_) => Ok(()),
    }
}

pub fn set_mtime(path: &Path, secs: i64, nanos: i64) -> anyhow::Result<()> {
    let time = TimeSpec::new(secs, nanos);
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &time,
        &time,
        UtimensatFlags::NoFollowSymlink,
    )
    .with_context(|| format!("cannot set the times of {}", path.display()))
}

/// Copies `src` (a container path) from `layers` (topmost first) as the overlay of them
/// shows it, to `dst` on the host. Returns false when `src` is not there.
pub fn copy_from_layers(
    layers: &[PathBuf],
    src: &Path,
    dst: &Path,
    owner: Owner,
) -> anyhow::Result<bool> {
    let Some((layer, host)) = visible_layer(layers, src) else {
        return Ok(false);
    };
    let rel = host.strip_prefix(layer).unwrap_or(&host).to_path_buf();
    copy_merged(layers, &rel, &host, dst, owner)?;
    Ok(true)
}

/// Copies the entry `rel` (whose topmost copy is `host`), merging directories across
/// the layers as overlayfs does.
fn copy_merged(
    layers: &[PathBuf],
    rel: &Path,
    host: &Path,
    dst: &Path,
    owner: Owner,
) -> anyhow::Result<()> {
    let meta = fs::symlink_metadata(host)?;
    if !meta.is_dir() {
        return copy_tree(host, dst, owner, &|_| false);
    }
    if !dst.is_dir() {
        fs::create_dir(dst).with_context(|| format!("cannot create {}", dst.display()))?;
    }
    // Children: the first layer (top down) that has a name decides it; a whiteout hides
    // it; an opaque directory or a non-directory ends the merge.
    let mut decided: std::collections::BTreeMap<std::ffi::OsString, Option<PathBuf>> =
        Default::default();
    let top = layers.iter().position(|l| host.starts_with(l)).unwrap_or(0);
    for layer in &layers[top..] {
        let dir = layer.join(rel);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            _ => break,
        }
        for entry in fs::read_dir(&dir)?.filter_map(|e| e.ok()) {
            let name = entry.file_name();
            if decided.contains_key(&name) {
                continue;
            }
            let path = entry.path();
            let whiteout = entry
                .metadata()
                .map(|m| m.file_type().is_char_device() && m.rdev() == 0)
                .unwrap_or(false);
            decided.insert(name, (!whiteout).then_some(path));
        }
        if is_opaque(&dir) {
            break;
        }
    }
    for (name, path) in decided {
        if let Some(path) = path {
            copy_merged(layers, &rel.join(&name), &path, &dst.join(&name), owner)?;
        }
    }
    let (uid, gid) = match owner {
        Owner::Keep => (meta.uid(), meta.gid()),
        Owner::Set(uid, gid) => (uid, gid),
    };
    lchown(dst, Some(uid), Some(gid))?;
    fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    set_mtime(dst, meta.mtime(), meta.mtime_nsec())
}

pub fn is_opaque(dir: &Path) -> bool {
    let (Ok(path), Ok(name)) = (
        CString::new(dir.as_os_str().as_bytes()),
        CString::new("trusted.overlay.opaque"),
    ) else {
        return false;
    };
    let mut value = [0u8; 4];
    // SAFETY: valid C strings and a buffer of the stated length; lgetxattr does not
    // follow symlinks and writes at most value.len() bytes.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    n == 1 && value[0] == b'y'
}

/// Whether `path` starts like a tar archive ADD extracts (plain, gzip or zstd).
pub fn archive_kind(path: &Path) -> Option<mycontainer_store::Compression> {
    let mut head = [0u8; 512];
    let mut file = fs::File::open(path).ok()?;
    let mut read = 0;
    while read < head.len() {
        match file.read(&mut head[read..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
    let compression = mycontainer_store::Compression::sniff(&head[..read]).ok()?;
    match compression {
        mycontainer_store::Compression::None => {
            // A plain tar has "ustar" at offset 257.
            (read >= 262 && &head[257..262] == b"ustar").then_some(compression)
        }
        other => Some(other),
    }
}

/// Extracts the (plain, gzip or zstd) tarball `path` into `dst` (ADD of a local
/// archive); entries that would land outside `dst` are refused by the tar crate.
pub fn extract(
    path: &Path,
    kind: mycontainer_store::Compression,
    dst: &Path,
) -> anyhow::Result<()> {
    let file = fs::File::open(path)?;
    let reader: Box<dyn Read> = match kind {
        mycontainer_store::Compression::Gzip => Box::new(flate2::read::GzDecoder::new(file)),
        mycontainer_store::Compression::Zstd => Box::new(zstd::Decoder::new(file)?),
        mycontainer_store::Compression::None => Box::new(file),
    };
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    archive
        .unpack(dst)
        .with_context(|| format!("cannot extract {}", path.display()))
}
