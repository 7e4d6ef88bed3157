//! The spec's process: Docker's command, working directory, user, environment and
//! capability rules applied to the image config and the `run` flags.

use std::collections::HashSet;
use std::fs;

use anyhow::{bail, Context};
use mycontainer_store::RootMount;
use oci_spec::runtime::{
    Capability, LinuxCapabilitiesBuilder, Process, ProcessBuilder, UserBuilder,
};

use super::{ImageDefaults, RunOptions};
use crate::container::env::merge_env;
use crate::container::policy;
use crate::container::user;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The process and its resolved command (for the state file and messages); `-u NAME` is
/// looked up in the image's layers (`root.lowerdirs`). `no_new_privileges` is left to
/// the caller, which knows the `--security-opt` values.
pub(super) fn process(
    image: &ImageDefaults,
    opts: &RunOptions,
    hostname: &str,
    root: &RootMount,
) -> anyhow::Result<(Process, Vec<String>)> {
    let args = command(image, opts)?;
    let cwd = opts
        .workdir
        .clone()
        .or_else(|| image.working_dir.clone())
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        bail!("invalid working directory {cwd:?}: it must be an absolute path (-w)");
    }

    let user_spec = opts
        .user
        .clone()
        .or_else(|| image.user.clone())
        .unwrap_or_default();
    let resolved = user::resolve_in_layers(&root.lowerdirs, &user_spec)
        .with_context(|| format!("cannot resolve user {user_spec:?} (-u) in the image"))?;
    let mut env = env(image, opts, hostname)?;
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        let home = resolved.home.clone().unwrap_or_else(|| {
            if resolved.uid == 0 {
                "/root".into()
            } else {
                "/".into()
            }
        });
        env.push(format!("HOME={home}"));
    }

    let process = ProcessBuilder::default()
        .terminal(opts.tty)
        .user(
            UserBuilder::default()
                .uid(resolved.uid)
                .gid(resolved.gid)
                .additional_gids(resolved.groups_with_primary())
                .build()?,
        )
        .args(args.clone())
        .env(env)
        .cwd(cwd)
        .capabilities(capabilities(opts, resolved.uid)?)
        .rlimits(opts.ulimits.clone())
        .build()?;
    Ok((process, args))
}

/// The container's entrypoint: `--entrypoint` (empty clears it), else the image's.
pub fn entrypoint(image: &ImageDefaults, opts: &RunOptions) -> Vec<String> {
    match &opts.entrypoint {
        Some(entrypoint) if entrypoint.is_empty() => Vec::new(),
        Some(entrypoint) => vec![entrypoint.clone()],
        None => image.entrypoint.clone(),
    }
}

/// Docker's entrypoint and cmd rules.
fn command(image: &ImageDefaults, opts: &RunOptions) -> anyhow::Result<Vec<String>> {
    let mut args = entrypoint(image, opts);
    if !opts.command.is_empty() {
        args.extend(opts.command.iter().cloned());
    } else if opts.entrypoint.is_none() {
        args.extend(image.cmd.iter().cloned());
    }
    if args.is_empty() {
        bail!("no command given and the image has no Cmd or Entrypoint: add a command after the image name");
    }
    Ok(args)
}

/// Docker's environment: the defaults, the image env, then `--env-file` lines, then `-e`.
fn env(image: &ImageDefaults, opts: &RunOptions, hostname: &str) -> anyhow::Result<Vec<String>> {
    let mut defaults = vec![
        format!("PATH={DEFAULT_PATH}"),
        format!("HOSTNAME={hostname}"),
    ];
    if opts.tty {
        defaults.push("TERM=xterm".into());
    }
    let mut files = Vec::new();
    for file in &opts.env_files {
        let text = fs::read_to_string(file)
            .with_context(|| format!("cannot read --env-file {}", file.display()))?;
        let lines: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(String::from)
            .collect();
        files.push((format!("--env-file {}", file.display()), lines));
    }
    let mut sources: Vec<(&str, &[String])> = vec![
        ("the defaults", &defaults),
        ("the image config", &image.env),
    ];
    sources.extend(
        files
            .iter()
            .map(|(origin, lines)| (origin.as_str(), lines.as_slice())),
    );
    sources.push(("-e", &opts.env));
    merge_env(&sources)
}

fn parse_capability(name: &str, flag: &str) -> anyhow::Result<Capability> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    serde_json::from_value(serde_json::Value::String(full.clone()))
        .with_context(|| format!("invalid value {name:?} for {flag}: unknown capability {full}"))
}

fn all_capabilities() -> HashSet<Capability> {
    // The kernel's capabilities, by number, as the caps crate knows them.
    caps::all()
        .into_iter()
        .filter_map(|c| serde_json::from_value(serde_json::Value::String(c.to_string())).ok())
        .collect()
}

/// The supplementary groups to set: the primary group first, then the groups listing
/// the user, so `id` shows what it shows under Docker and a dropped primary group cannot
/// linger from the parent.
/// Docker's capability rules: the default set, `--cap-drop` (ALL too), `--cap-add` (ALL
/// too), everything for `--privileged`; a non-root user keeps only the bounding set. The
/// inheritable and ambient sets stay empty, as in Docker since CVE-2022-24769: a filled
/// inheritable set would let a user gain what a file's inheritable capabilities name.
fn capabilities(
    opts: &RunOptions,
    uid: u32,
) -> anyhow::Result<oci_spec::runtime::LinuxCapabilities> {
    let mut set: HashSet<Capability> = if opts.privileged {
        all_capabilities()
    } else {
        policy::DEFAULT_CAPS
            .iter()
            .map(|name| parse_capability(name, "the default set"))
            .collect::<anyhow::Result<_>>()?
    };
    for drop in &opts.cap_drop {
        if drop.eq_ignore_ascii_case("all") {
            set.clear();
        } else {
            set.remove(&parse_capability(drop, "--cap-drop")?);
        }
    }
    for add in &opts.cap_add {
        if add.eq_ignore_ascii_case("all") {
            set = all_capabilities();
        } else {
            set.insert(parse_capability(add, "--cap-add")?);
        }
    }
    let for_user = if uid == 0 {
        set.clone()
    } else {
        HashSet::new()
    };
    Ok(LinuxCapabilitiesBuilder::default()
        .bounding(set)
        .effective(for_user.clone())
        .permitted(for_user)
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()?)
}
