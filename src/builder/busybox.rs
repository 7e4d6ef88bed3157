//! The busybox builder: a static busybox binary, a symlink per applet, /etc/passwd and
//! /etc/group, and the usual empty directories, written as a reproducible tar (sorted
//! entries, owner 0:0, one fixed mtime).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};
use sha2::{Digest as _, Sha256};
use tar::{EntryType, Header};

use super::recipe::BusyboxSection;

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
daemon:x:1:1:daemon:/usr/sbin:/bin/false\n\
bin:x:2:2:bin:/bin:/bin/false\n\
sys:x:3:3:sys:/dev:/bin/false\n\
www-data:x:33:33:www-data:/var/www:/bin/false\n\
nobody:x:65534:65534:nobody:/home:/bin/false\n";

const GROUP: &str = "root:x:0:\ndaemon:x:1:\nbin:x:2:\nsys:x:3:\nadm:x:4:\ntty:x:5:\n\
disk:x:6:\nwheel:x:10:root\nwww-data:x:33:\nusers:x:100:\nnogroup:x:65534:\n";

/// Directories every image gets, with their modes.
const DIRS: &[(&str, u32)] = &[
    ("bin", 0o755),
    ("dev", 0o755),
    ("etc", 0o755),
    ("home", 0o755),
    ("proc", 0o555),
    ("root", 0o700),
    ("sbin", 0o755),
    ("sys", 0o555),
    ("tmp", 0o1777),
    ("usr", 0o755),
    ("usr/bin", 0o755),
    ("usr/sbin", 0o755),
    ("var", 0o755),
    ("var/spool", 0o755),
    ("var/tmp", 0o1777),
    ("var/www", 0o755),
];

enum Node {
    Dir(u32),
    File(Vec<u8>, u32),
    Symlink(String),
}

/// Produces the layer tarball. `scratch` is a private directory where a downloaded
/// binary is placed to ask it for its applet list.
pub fn layer_tar(section: &BusyboxSection, mtime: u64, scratch: &Path) -> anyhow::Result<Vec<u8>> {
    let (binary_path, binary) = find_binary(section, scratch)?;
    let mut tree: BTreeMap<String, Node> = BTreeMap::new();
    for (dir, mode) in DIRS {
        tree.insert((*dir).to_string(), Node::Dir(*mode));
    }
    for applet in applets(&binary_path)? {
        if applet == "bin/busybox" {
            continue;
        }
        let mut parent = Path::new(&applet).parent();
        while let Some(dir) = parent.filter(|p| !p.as_os_str().is_empty()) {
            tree.entry(dir.display().to_string())
                .or_insert(Node::Dir(0o755));
            parent = dir.parent();
        }
        tree.insert(applet, Node::Symlink("/bin/busybox".into()));
    }
    tree.insert("bin/busybox".into(), Node::File(binary, 0o755));
    tree.insert(
        "etc/passwd".into(),
        Node::File(PASSWD.as_bytes().to_vec(), 0o644),
    );
    tree.insert(
        "etc/group".into(),
        Node::File(GROUP.as_bytes().to_vec(), 0o644),
    );

    let mut builder = tar::Builder::new(Vec::new());
    for (path, node) in &tree {
        let mut header = Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(mtime);
        match node {
            Node::Dir(mode) => {
                header.set_entry_type(EntryType::Directory);
                header.set_mode(*mode);
                header.set_size(0);
                builder.append_data(&mut header, format!("{path}/"), std::io::empty())?;
            }
            Node::File(bytes, mode) => {
                header.set_entry_type(EntryType::Regular);
                header.set_mode(*mode);
                header.set_size(bytes.len() as u64);
                builder.append_data(&mut header, path, bytes.as_slice())?;
            }
            Node::Symlink(target) => {
                header.set_entry_type(EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                builder.append_link(&mut header, path, target)?;
            }
        }
    }
    Ok(builder.into_inner()?)
}

/// A static busybox from the host, else the recipe's download (checked against its
/// sha256). Returns where it is on disk (to run it) and its bytes.
fn find_binary(
    section: &BusyboxSection,
    scratch: &Path,
) -> anyhow::Result<(std::path::PathBuf, Vec<u8>)> {
    for candidate in &section.host_paths {
        let path = Path::new(candidate);
        if let Ok(bytes) = std::fs::read(path) {
            if is_static_elf(&bytes) {
                return Ok((path.to_path_buf(), bytes));
            }
        }
    }
    let (Some(url), Some(sha256)) = (&section.url, &section.sha256) else {
        bail!(
            "no static busybox found on this host (tried {}): install busybox-static (apt-get install busybox-static), or give the recipe host_paths that exist or a url and sha256",
            section.host_paths.join(", ")
        )
    };
    let bytes = download(url, sha256)?;
    let path = scratch.join("busybox");
    std::fs::write(&path, &bytes).with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    Ok((path, bytes))
}

/// Downloads `url` and checks it against `sha256` before anything uses it.
pub fn download(url: &str, sha256: &str) -> anyhow::Result<Vec<u8>> {
    eprintln!("downloading {url}");
    let response = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(300))
        .build()
        .and_then(|client| client.get(url).send())
        .and_then(|r| r.error_for_status())
        .map_err(|e| {
            // Without a system trust store rustls has nothing to verify against: say
            // which package brings one, not the library's words.
            if format!("{e:?}").contains("CA certificates") {
                anyhow::anyhow!("cannot download {url}: this machine has no CA certificates: install ca-certificates (apt-get install ca-certificates)")
            } else {
                anyhow::Error::new(e).context(format!(
                    "cannot download {url}: check the network or install busybox-static"
                ))
            }
        })?;
    let mut bytes = Vec::new();
    response
        .take(512 << 20)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot download {url}"))?;
    let actual = hex::encode(Sha256::digest(&bytes));
    if !actual.eq_ignore_ascii_case(sha256) {
        bail!(
            "download {url} has sha256 {actual}, but the recipe pins {sha256}: refusing to use it"
        );
    }
    Ok(bytes)
}

/// The applet paths (`bin/sh`, `usr/bin/awk`, ...) the binary provides.
fn applets(binary: &Path) -> anyhow::Result<Vec<String>> {
    let output = Command::new(binary)
        .arg("--list-full")
        .output()
        .with_context(|| format!("cannot run {} --list-full", binary.display()))?;
    if !output.status.success() {
        bail!(
            "{} --list-full failed: {}",
            binary.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let list = String::from_utf8_lossy(&output.stdout);
    let applets: Vec<String> = list
        .lines()
        .map(|l| l.trim().trim_start_matches('/').to_string())
        .filter(|l| !l.is_empty() && !l.split('/').any(|part| part == ".." || part.is_empty()))
        .collect();
    if applets.is_empty() {
        bail!("{} lists no applets", binary.display());
    }
    Ok(applets)
}

/// An x86-64 ELF executable without a PT_INTERP program header (statically linked).
fn is_static_elf(bytes: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let field = |at: usize, len: usize| bytes.get(at..at + len);
    let Some(magic) = field(0, 4) else {
        return false;
    };
    if magic != b"\x7fELF" || bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        return false; // not a 64-bit little-endian ELF
    }
    let read_u64 = |at| field(at, 8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    let read_u16 = |at| field(at, 2).map(|b| u16::from_le_bytes(b.try_into().unwrap_or([0; 2])));
    let (Some(phoff), Some(phentsize), Some(phnum)) =
        (read_u64(0x20), read_u16(0x36), read_u16(0x38))
    else {
        return false;
    };
    (0..phnum as usize).all(|i| {
        let at = phoff as usize + i * phentsize as usize;
        field(at, 4).map(|b| u32::from_le_bytes(b.try_into().unwrap_or([0; 4]))) != Some(PT_INTERP)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_static_from_dynamic_binaries() {
        // The test binary itself is dynamically linked (it has an interpreter).
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(!is_static_elf(&me));
        assert!(!is_static_elf(b"#!/bin/sh\n"));
        if let Ok(busybox) = std::fs::read("/bin/busybox") {
            if Command::new("sh")
                .arg("-c")
                .arg("file -L /bin/busybox | grep -q 'statically linked'")
                .status()
                .is_ok_and(|s| s.success())
            {
                assert!(is_static_elf(&busybox));
            }
        }
    }
}
