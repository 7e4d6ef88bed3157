//! The debootstrap builder: `debootstrap --variant=minbase` into a locked scratch dir,
//! then streamed through `tar` into the store as one layer.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

use super::recipe::DebootstrapSection;

/// Runs debootstrap into `target` (which must not exist yet), showing its progress.
pub fn bootstrap(section: &DebootstrapSection, mirror: &str, target: &Path) -> anyhow::Result<()> {
    let program = find_program("debootstrap")
        .context("debootstrap is not installed: run `apt-get install debootstrap` and try again")?;
    let mut command = Command::new(program);
    command.arg(format!("--variant={}", section.variant));
    if !section.include.is_empty() {
        command.arg(format!("--include={}", section.include.join(",")));
    }
    command.arg(&section.suite).arg(target).arg(mirror);
    eprintln!(
        "debootstrap {} from {mirror} (this takes a few minutes)",
        section.suite
    );
    let status = command.status().context("cannot start debootstrap")?;
    let leftovers = unmount_below(target);
    if !status.success() {
        let log = target.join("debootstrap/debootstrap.log");
        bail!(
            "debootstrap failed ({status}); see its output above{}",
            if log.exists() {
                format!(" and {}", log.display())
            } else {
                String::new()
            }
        );
    }
    leftovers?;
    // Package caches and indexes are large and useless in an image.
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        let dir = target.join(dir);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_file()) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }
    Ok(())
}

/// Starts `tar` writing `root` to its stdout, owners numeric, xattrs kept, names sorted.
pub fn tar_stream(root: &Path) -> anyhow::Result<std::process::Child> {
    Command::new("tar")
        .args([
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
            "--sort=name",
            "-C",
        ])
        .arg(root)
        .args(["-cf", "-", "."])
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run tar: install tar")
}

/// The mirror to use: the flag, else the recipe's, else the first Debian mirror in the
/// host's apt sources.
pub fn pick_mirror(flag: Option<&str>, section: &DebootstrapSection) -> anyhow::Result<String> {
    if let Some(mirror) = flag.or(section.mirror.as_deref()) {
        return Ok(mirror.to_string());
    }
    host_mirror().context("no Debian mirror found in /etc/apt/sources.list*: pass --mirror URL")
}

fn host_mirror() -> Option<String> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        // apt itself reads only these two kinds of file.
        let mut extra: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "list" || x == "sources"))
            .collect();
        extra.sort();
        files.extend(extra);
    }
    files
        .iter()
        .find_map(|f| mirror_in(&std::fs::read_to_string(f).ok()?))
}

/// The first `http(s)` URL of a Debian archive (not security) in a sources file, in
/// either one-line (`deb URL suite`) or deb822 (`URIs: URL`) format.
fn mirror_in(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            match words.first() {
                Some(&"deb") => words
                    .iter()
                    .skip(1)
                    .find(|w| w.starts_with("http"))
                    .map(|w| vec![w.to_string()]),
                Some(&"URIs:") => Some(words[1..].iter().map(|w| w.to_string()).collect()),
                _ => None,
            }
            .unwrap_or_default()
        })
        .find(|url| url.starts_with("http") && !url.contains("security"))
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file());
    found
}

/// Unmounts whatever debootstrap left mounted under `root` (it mounts /proc and /sys
/// there, and a killed run leaves them), deepest first.
pub fn unmount_below(root: &Path) -> anyhow::Result<()> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .context("cannot read /proc/self/mountinfo")?;
    let mut below: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(root))
        .collect();
    below.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for mount in below {
        nix::mount::umount2(&mount, nix::mount::MntFlags::MNT_DETACH)
            .with_context(|| format!("cannot unmount {}", mount.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_mirror_in_both_source_formats() {
        let one_line = "# comment\ndeb [arch=amd64] http://deb.example.org/debian bookworm main\n";
        assert_eq!(
            mirror_in(one_line).as_deref(),
            Some("http://deb.example.org/debian")
        );
        let deb822 = "Types: deb\nURIs: http://security.example.org/debian-security\n\nTypes: deb\nURIs: http://m.example.org/debian\nSuites: bookworm\n";
        assert_eq!(
            mirror_in(deb822).as_deref(),
            Some("http://m.example.org/debian")
        );
        assert_eq!(mirror_in("deb cdrom:/x bookworm main\n"), None);
    }
}
