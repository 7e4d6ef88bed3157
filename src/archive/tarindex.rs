//! Random access into an uncompressed tar file: one pass records where each member's
//! data starts, so members can be read in any order (docker-archives put
//! `manifest.json` last) and symlinked layers (older `docker save`) resolve.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{bail, Context};

#[derive(Debug, Clone, Copy)]
struct Member {
    offset: u64,
    size: u64,
}

pub struct TarIndex {
    file: File,
    members: HashMap<String, Member>,
    links: HashMap<String, String>,
}

impl TarIndex {
    pub fn open(path: &Path) -> anyhow::Result<TarIndex> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut members = HashMap::new();
        let mut links = HashMap::new();
        let mut archive = tar::Archive::new(&file);
        let entries = archive
            .entries()
            .context("the input is not a tar archive")?;
        for entry in entries {
            let entry = entry.context("the archive is corrupt")?;
            let name = clean(
                &entry
                    .path()
                    .context("the archive is corrupt")?
                    .to_string_lossy(),
            );
            let kind = entry.header().entry_type();
            if kind.is_file() {
                let member = Member {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                };
                members.insert(name, member);
            } else if kind.is_symlink() || kind.is_hard_link() {
                let Some(target) = entry.link_name().ok().flatten() else {
                    continue;
                };
                let target = target.to_string_lossy().to_string();
                let resolved = if kind.is_symlink() && !target.starts_with('/') {
                    let dir = name.rsplit_once('/').map_or("", |(dir, _)| dir);
                    clean(&format!("{dir}/{target}"))
                } else {
                    clean(&target)
                };
                links.insert(name, resolved);
            }
        }
        Ok(TarIndex {
            file,
            members,
            links,
        })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    fn find(&self, name: &str) -> Option<Member> {
        let mut name = clean(name);
        // A bounded number of hops: a link loop is a broken archive, not a hang.
        for _ in 0..8 {
            if let Some(member) = self.members.get(&name) {
                return Some(*member);
            }
            name = self.links.get(&name)?.clone();
        }
        None
    }

    /// A reader over one member's data, and its size.
    pub fn open_member(&self, name: &str) -> anyhow::Result<(io::Take<File>, u64)> {
        let Some(member) = self.find(name) else {
            bail!("the archive has no file {name:?}");
        };
        let mut file = self.file.try_clone().context("cannot reopen the archive")?;
        file.seek(SeekFrom::Start(member.offset))
            .context("cannot seek in the archive")?;
        Ok((file.take(member.size), member.size))
    }

    pub fn read_member(&self, name: &str, limit: u64) -> anyhow::Result<Vec<u8>> {
        let (mut reader, size) = self.open_member(name)?;
        if size > limit {
            bail!("{name:?} in the archive is {size} bytes: too large for metadata");
        }
        let mut bytes = Vec::with_capacity(size as usize);
        reader.read_to_end(&mut bytes).map_err(|e: io::Error| {
            anyhow::anyhow!("cannot read {name:?} from the archive: {e}")
        })?;
        Ok(bytes)
    }
}

/// `./a//b/../c` -> `a/c`: archive member names as written by different tools.
fn clean(name: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_member_names() {
        assert_eq!(clean("./manifest.json"), "manifest.json");
        assert_eq!(clean("abc/../def/layer.tar"), "def/layer.tar");
        assert_eq!(clean("/blobs//sha256/x"), "blobs/sha256/x");
    }

    #[test]
    fn reads_members_in_any_order_and_follows_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar");
        let mut builder = tar::Builder::new(File::create(&path).unwrap());
        let mut header = tar::Header::new_gnu();
        header.set_size(5);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, "./one/layer.tar", &b"hello"[..])
            .unwrap();
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        builder
            .append_link(&mut link, "two/layer.tar", "../one/layer.tar")
            .unwrap();
        let mut header = tar::Header::new_gnu();
        header.set_size(2);
        builder
            .append_data(&mut header, "manifest.json", &b"[]"[..])
            .unwrap();
        builder.into_inner().unwrap();
        let index = TarIndex::open(&path).unwrap();
        assert_eq!(index.read_member("manifest.json", 10).unwrap(), b"[]");
        assert_eq!(index.read_member("two/layer.tar", 10).unwrap(), b"hello");
        assert!(index.read_member("one/layer.tar", 2).is_err());
        assert!(!index.contains("index.json"));
    }
}
