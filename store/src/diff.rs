//! Turns an overlayfs upper directory (a container's changes) back into an OCI layer
//! tarball: overlay whiteouts (char device 0/0) become `.wh.NAME` entries and opaque
//! directories (`trusted.overlay.opaque=y`) get a `.wh..wh..opq` entry.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use crate::error::{Error, Result};

/// Writes `upper` as a layer tarball to `out`, entries sorted by name. With
/// `clamp_mtime`, no entry's mtime is later than it (reproducible builds).
pub(crate) fn write_layer<W: Write>(upper: &Path, out: W, clamp_mtime: Option<u64>) -> Result<W> {
    let mut writer = LayerWriter {
        builder: tar::Builder::new(out),
        upper: upper.to_path_buf(),
        inodes: HashMap::new(),
        clamp_mtime,
    };
    // The root entry keeps the layer's root directory attributes (for other tools: our
    // unpack ignores them), and makes an empty diff a valid one-entry layer.
    let root_meta = fs::symlink_metadata(upper).map_err(|e| Error::io("cannot stat", upper, e))?;
    writer.append("./", upper, &root_meta, EntryType::Directory, None)?;
    writer.walk(Path::new(""))?;
    writer
        .builder
        .into_inner()
        .map_err(|e| Error::io("cannot write layer from", upper, e))
}

struct LayerWriter<W: Write> {
    builder: tar::Builder<W>,
    upper: PathBuf,
    /// (dev, ino) of multiply-linked files already written -> their archive name.
    inodes: HashMap<(u64, u64), String>,
    clamp_mtime: Option<u64>,
}

impl<W: Write> LayerWriter<W> {
    fn walk(&mut self, rel: &Path) -> Result<()> {
        let dir = self.upper.join(rel);
        let mut names: Vec<_> = fs::read_dir(&dir)
            .map_err(|e| Error::io("cannot read", &dir, e))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .map_err(|e| Error::io("cannot read", &dir, e))?;
        names.sort();
        for name in names {
            let child = rel.join(&name);
            let path = self.upper.join(&child);
            let meta =
                fs::symlink_metadata(&path).map_err(|e| Error::io("cannot stat", &path, e))?;
            let archive_name = child.to_string_lossy().into_owned();
            let kind = meta.file_type();
            if kind.is_char_device() && meta.rdev() == 0 {
                let whiteout = match child.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => {
                        format!("{}/.wh.{}", parent.display(), name.to_string_lossy())
                    }
                    _ => format!(".wh.{}", name.to_string_lossy()),
                };
                self.append_empty(&whiteout, &meta)?;
                continue;
            }
            if kind.is_dir() {
                self.append(
                    &format!("{archive_name}/"),
                    &path,
                    &meta,
                    EntryType::Directory,
                    None,
                )?;
                if get_xattr(&path, "trusted.overlay.opaque").as_deref() == Some(b"y") {
                    self.append_empty(&format!("{archive_name}/.wh..wh..opq"), &meta)?;
                }
                self.walk(&child)?;
                continue;
            }
            if meta.nlink() > 1 && !kind.is_dir() {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = self.inodes.get(&key).cloned() {
                    self.append(&archive_name, &path, &meta, EntryType::Link, Some(first))?;
                    continue;
                }
                self.inodes.insert(key, archive_name.clone());
            }
            let entry_type = if kind.is_symlink() {
                EntryType::Symlink
            } else if kind.is_char_device() {
                EntryType::Char
            } else if kind.is_block_device() {
                EntryType::Block
            } else if kind.is_fifo() {
                EntryType::Fifo
            } else if kind.is_file() {
                EntryType::Regular
            } else {
                // Sockets cannot be carried in a tar; Docker skips them too.
                continue;
            };
            let link = if kind.is_symlink() {
                let target =
                    fs::read_link(&path).map_err(|e| Error::io("cannot read link", &path, e))?;
                Some(target.to_string_lossy().into_owned())
            } else {
                None
            };
            self.append(&archive_name, &path, &meta, entry_type, link)?;
        }
        Ok(())
    }

    fn mtime(&self, meta: &fs::Metadata) -> u64 {
        let mtime = meta.mtime().max(0) as u64;
        self.clamp_mtime.map_or(mtime, |clamp| mtime.min(clamp))
    }

    fn append_empty(&mut self, name: &str, like: &fs::Metadata) -> Result<()> {
        let mut header = Header::new_gnu();
        header.set_entry_type(EntryType::Regular);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(self.mtime(like));
        header.set_size(0);
        self.builder
            .append_data(&mut header, name, io::empty())
            .map_err(|e| Error::io("cannot write whiteout for", Path::new(name), e))
    }

    fn append(
        &mut self,
        name: &str,
        path: &Path,
        meta: &fs::Metadata,
        kind: EntryType,
        link: Option<String>,
    ) -> Result<()> {
        let xattrs = list_xattrs(path);
        if !xattrs.is_empty() {
            let records: Vec<(String, Vec<u8>)> = xattrs
                .into_iter()
                .filter(|(key, _)| !key.starts_with("trusted.overlay."))
                .map(|(key, value)| (format!("SCHILY.xattr.{key}"), value))
                .collect();
            if !records.is_empty() {
                self.builder
                    .append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                    .map_err(|e| Error::io("cannot write xattrs of", path, e))?;
            }
        }
        let mut header = Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(meta.mode() & 0o7777);
        header.set_uid(u64::from(meta.uid()));
        header.set_gid(u64::from(meta.gid()));
        header.set_mtime(self.mtime(meta));
        header.set_size(0);
        if matches!(kind, EntryType::Char | EntryType::Block) {
            let rdev = meta.rdev();
            let _ = header.set_device_major(libc::major(rdev));
            let _ = header.set_device_minor(libc::minor(rdev));
        }
        let result = match (kind, link) {
            (EntryType::Regular, _) => {
                header.set_size(meta.len());
                let file = fs::File::open(path).map_err(|e| Error::io("cannot open", path, e))?;
                self.builder.append_data(&mut header, name, file)
            }
            (_, Some(target)) => self.builder.append_link(&mut header, name, target),
            _ => self.builder.append_data(&mut header, name, io::empty()),
        };
        result.map_err(|e| Error::io("cannot add to layer", path, e))
    }
}

pub(crate) fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let c_path = CString::new(path.as_os_str().as_bytes()).ok()?;
    let c_name = CString::new(name).ok()?;
    let mut buffer = vec![0u8; 256];
    // SAFETY: valid strings and a buffer of the stated length; lgetxattr does not
    // follow symlinks.
    let n = unsafe {
        libc::lgetxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
        )
    };
    if n < 0 {
        return None;
    }
    buffer.truncate(n as usize);
    Some(buffer)
}

fn list_xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return Vec::new();
    };
    let mut names = vec![0u8; 4096];
    // SAFETY: valid path and a buffer of the stated length.
    let n = unsafe { libc::llistxattr(c_path.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Vec::new();
    }
    names.truncate(n as usize);
    names
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .filter_map(|n| {
            let name = String::from_utf8(n.to_vec()).ok()?;
            let value = get_xattr(path, &name)?;
            Some((name, value))
        })
        .collect()
}
