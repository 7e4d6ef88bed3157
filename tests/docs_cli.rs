//! Documents generated from the command line (issue 22): shell completions that their
//! shells accept and that complete our verbs and flags, man pages that render without a
//! warning, and `--version` naming the git revision the binary was built from.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::{ok, stderr, BIN};

fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false)
}

fn completion_script(shell: &str, dir: &Path) -> std::path::PathBuf {
    let script = ok(Command::new(BIN)
        .args(["completions", shell])
        .output()
        .unwrap());
    assert!(script.contains("mycontainer"), "{shell}: {script}");
    let path = dir.join(format!("mycontainer.{shell}"));
    fs::write(&path, script).unwrap();
    path
}

/// Runs `shell -c script` and returns its stdout, failing the test on a non-zero exit.
fn shell_output(shell: &str, script: &str) -> String {
    ok(Command::new(shell).args(["-c", script]).output().unwrap())
}

#[test]
fn bash_completion_parses_and_completes_verbs_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let script = completion_script("bash", dir.path());
    ok(Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap());
    let verbs = shell_output(
        "bash",
        &format!(
            "source {}; COMP_WORDS=(mycontainer im); COMP_CWORD=1; \
             _mycontainer mycontainer im mycontainer; echo \"${{COMPREPLY[@]}}\"",
            script.display()
        ),
    );
    assert_eq!(verbs.trim(), "image", "{verbs}");
    let flags = shell_output(
        "bash",
        &format!(
            "source {}; COMP_WORDS=(mycontainer run --mem); COMP_CWORD=2; \
             _mycontainer mycontainer --mem run; echo \"${{COMPREPLY[@]}}\"",
            script.display()
        ),
    );
    assert_eq!(flags.trim(), "--memory --memory-swap", "{flags}");
    // The hidden verbs are not offered.
    let all = shell_output(
        "bash",
        &format!(
            "source {}; COMP_WORDS=(mycontainer ''); COMP_CWORD=1; \
             _mycontainer mycontainer '' mycontainer; echo \"${{COMPREPLY[@]}}\"",
            script.display()
        ),
    );
    let words: Vec<&str> = all.split_whitespace().collect();
    assert!(
        words.contains(&"completions") && words.contains(&"run"),
        "{all}"
    );
    assert!(
        !words.contains(&"supervise") && !words.contains(&"man"),
        "{all}"
    );
}

#[test]
fn zsh_completion_parses() {
    if !installed("zsh") {
        eprintln!("zsh is not installed (scripts/test installs it): only generated");
    }
    let dir = tempfile::tempdir().unwrap();
    let script = completion_script("zsh", dir.path());
    assert!(fs::read_to_string(&script)
        .unwrap()
        .starts_with("#compdef mycontainer"));
    if installed("zsh") {
        ok(Command::new("zsh").arg("-n").arg(&script).output().unwrap());
    }
}

#[test]
fn fish_completion_parses_and_completes_verbs() {
    let dir = tempfile::tempdir().unwrap();
    let script = completion_script("fish", dir.path());
    if !installed("fish") {
        eprintln!("fish is not installed (scripts/test installs it): only generated");
        return;
    }
    ok(Command::new("fish")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap());
    let out = shell_output(
        "fish",
        &format!("source {}; complete -C 'mycontainer im'", script.display()),
    );
    assert!(out.starts_with("image\t"), "{out}");
}

#[test]
fn completions_need_no_state_root_and_refuse_an_unknown_shell() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let out = Command::new(BIN)
        .arg("--root")
        .arg(&root)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    ok(out);
    assert!(!root.exists(), "completions made a state root");
    let out = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("invalid value 'tcsh'"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn completions_into_a_closed_pipe_do_not_panic() {
    // `completions bash | head -n 3`: the reader goes away early.
    let out = Command::new("bash")
        .args(["-o", "pipefail", "-c"])
        .arg(format!("{BIN} completions bash | head -n 3"))
        .output()
        .unwrap();
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(common::stdout(&out).lines().count(), 3);
}

#[test]
fn man_pages_cover_every_visible_command_and_render_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man1");
    let listed = ok(Command::new(BIN).arg("man").arg(&pages).output().unwrap());
    let mut names: Vec<String> = fs::read_dir(&pages)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(listed.lines().count(), names.len(), "{listed}");
    for expected in [
        "mycontainer.1",
        "mycontainer-run.1",
        "mycontainer-image-build.1",
        "mycontainer-network-create.1",
        "mycontainer-completions.1",
        "mycontainer-runtime.1",
        "mycontainer-runtime-create.1",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected}: {names:?}");
    }
    for hidden in ["mycontainer-supervise.1", "mycontainer-man.1"] {
        assert!(!names.iter().any(|n| n == hidden), "{hidden}: {names:?}");
    }
    let renderer = if installed("groff") { "groff" } else { "nroff" };
    for name in &names {
        let page = pages.join(name);
        // -ww: every warning; -z: format, print nothing but diagnostics.
        let out = Command::new(renderer)
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(&page)
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{name} renders with warnings");
    }
    if installed("man") {
        let out = Command::new("man")
            .env("MANWIDTH", "100")
            .arg("-l")
            .arg(pages.join("mycontainer-run.1"))
            .output()
            .unwrap();
        let text = ok(out);
        assert!(text.contains("mycontainer-run - Run a command in a new container"));
        assert!(text.contains("--memory"), "{text}");
    }
}

#[test]
fn man_into_an_impossible_directory_fails_with_one_line() {
    let out = Command::new(BIN)
        .args(["man", "/proc/version/man1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("mycontainer: cannot create the man page directory /proc/version/man1"),
        "{err}"
    );
}

#[test]
fn version_names_the_git_revision_built_from() {
    let git = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    let head = match git {
        Ok(out) if out.status.success() => String::from_utf8(out.stdout).unwrap(),
        _ => "unknown".to_string(),
    };
    let head = head.trim();
    // The binary was built with this test (build.rs gives both the same revision). A
    // commit made while the suite runs moves HEAD past it (the stress rounds commit
    // fixes as they run): then the build's revision must be an ancestor of HEAD.
    let built = env!("MYCONTAINER_GIT_REV").trim_end_matches("-dirty");
    let revision = if built != head
        && Command::new("git")
            .args(["merge-base", "--is-ancestor", built, "HEAD"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .is_ok_and(|s| s.success())
    {
        built
    } else {
        head
    };
    for (program, name) in [
        (vec!["--version"], "mycontainer"),
        (vec!["runtime", "--version"], "mycontainer-runtime"),
    ] {
        let out = ok(Command::new(BIN).args(&program).output().unwrap());
        let line = out.trim_end();
        let expected = format!("{name} {} ({revision}", env!("CARGO_PKG_VERSION"));
        assert!(
            line == format!("{expected})") || line == format!("{expected}-dirty)"),
            "{line} is not {expected}[-dirty])"
        );
    }
}
