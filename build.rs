//! Records the git revision the binary is built from, for `--version`:
//! `MYCONTAINER_GIT_REV` is the short commit, with `-dirty` when tracked files differed
//! from it, or `unknown` outside a git checkout (a release tarball) or without git.
//! A packager may set `MYCONTAINER_GIT_REV` in the environment to name the revision.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    // --no-optional-locks: `status` must not rewrite the index (a watched file).
    let out = Command::new("git")
        .arg("--no-optional-locks")
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=MYCONTAINER_GIT_REV");
    let rev = match std::env::var("MYCONTAINER_GIT_REV") {
        Ok(rev) if !rev.is_empty() => rev,
        _ => revision(),
    };
    println!("cargo:rustc-env=MYCONTAINER_GIT_REV={rev}");
    pack_relocations();
}

/// Packs the binary's relative relocations (DT_RELR, `-z pack-relative-relocs`): every
/// command starts by relocating the PIE binary, and its ~30,000 RELA entries (700 kB
/// read and applied one by one) were the largest item of a short command's profile
/// (`exec`). Packed, the table is a few kB. Needs GNU ld 2.38+ or lld 15+, and glibc
/// 2.36+ to run; `MYCONTAINER_NO_RELR=1` builds without it for older systems.
fn pack_relocations() {
    println!("cargo:rerun-if-env-changed=MYCONTAINER_NO_RELR");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let opted_out = std::env::var("MYCONTAINER_NO_RELR").is_ok_and(|v| v == "1");
    if os == "linux" && env == "gnu" && !opted_out {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

fn revision() -> String {
    // The sources whose change makes the dirty flag worth reading again.
    for path in ["src", "store/src", "Cargo.toml", "Cargo.lock", "build.rs"] {
        println!("cargo:rerun-if-changed={path}");
    }
    let Some(commit) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown".to_string();
    };
    // HEAD (a branch's ref or a detached commit) moves with commits. Not the index: any
    // `git status` may rewrite it, and each rerun recompiles the whole crate.
    if let Some(path) = git(&["rev-parse", "--git-path", "HEAD"]) {
        println!("cargo:rerun-if-changed={path}");
    }
    // A branch's ref is a loose file, or a line of packed-refs.
    if let Some(path) = git(&["rev-parse", "--git-path", "packed-refs"]) {
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(path) = git(&["rev-parse", "--git-path", &reference]) {
            if Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    match git(&["status", "--porcelain", "--untracked-files=no"]) {
        Some(changes) if !changes.is_empty() => format!("{commit}-dirty"),
        Some(_) => commit,
        None => format!("{commit}-unknown"),
    }
}
