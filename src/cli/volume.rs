//! `mycontainer volume ...`: create, ls, inspect, rm, prune.

use std::collections::BTreeMap;

use anyhow::bail;
use clap::{Args, Subcommand};

use super::Ctx;
use crate::container::volumes;
use crate::exitcode;

#[derive(Args, Debug)]
pub struct VolumeArgs {
    #[command(subcommand)]
    pub command: VolumeCommand,
}

#[derive(Subcommand, Debug)]
pub enum VolumeCommand {
    /// Create a volume (a random name when none is given)
    Create(CreateArgs),
    /// List volumes
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Show volumes as JSON
    Inspect(NamesArgs),
    /// Remove volumes no container uses
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove the anonymous volumes no container uses (all unused ones with -a)
    Prune(PruneArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    pub name: Option<String>,
    /// Set a label (KEY=VALUE)
    #[arg(long, value_name = "KEY=VALUE")]
    pub label: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Print only the names
    #[arg(short, long)]
    pub quiet: bool,
    /// Go template ({{.Name}}, {{json .}}, table ...) or json
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct NamesArgs {
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Go template or json
    #[arg(short, long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    #[arg(required = true)]
    pub names: Vec<String>,
    /// No error for a volume that does not exist
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove every unused volume, not only anonymous ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not ask (nothing is asked: accepted for Docker's scripts)
    #[arg(short, long)]
    pub force: bool,
}

/// `KEY=VALUE` flags (a bare KEY has an empty value), as Docker's `--label`.
pub fn parse_labels(values: &[String]) -> BTreeMap<String, String> {
    values
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.clone(), String::new()),
        })
        .collect()
}

pub fn main(ctx: &Ctx, args: VolumeArgs) -> anyhow::Result<i32> {
    let root = &ctx.root;
    match args.command {
        VolumeCommand::Create(a) => {
            if a.label.iter().any(|l| l.starts_with('=') || l.is_empty()) {
                bail!("invalid --label: use KEY=VALUE");
            }
            let lock = volumes::lock(root)?;
            let meta = volumes::create(
                root,
                &lock,
                a.name.as_deref(),
                parse_labels(&a.label),
                false,
            )?;
            println!("{}", meta.name);
            Ok(0)
        }
        VolumeCommand::Ls(a) => {
            let all = volumes::list(root)?;
            if a.quiet {
                for meta in &all {
                    println!("{}", meta.name);
                }
                return Ok(0);
            }
            let rows: Vec<serde_json::Value> = all
                .iter()
                .map(|m| {
                    let labels = m
                        .labels
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",");
                    serde_json::json!({
                        "Driver": "local",
                        "Name": m.name,
                        "Mountpoint": volumes::mountpoint(root, &m.name),
                        "Labels": labels,
                        "Scope": "local",
                    })
                })
                .collect();
            match a.format.as_deref() {
                None => {
                    println!("DRIVER    VOLUME NAME");
                    for m in &all {
                        println!("{:<10}{}", "local", m.name);
                    }
                }
                Some(format) => {
                    super::format::print_rows_with(format, &rows, &[("Name", "VOLUME NAME")])?
                }
            }
            Ok(0)
        }
        VolumeCommand::Inspect(a) => {
            let mut found = Vec::new();
            let mut failed = false;
            for name in &a.names {
                match volumes::get(root, name)? {
                    Some(meta) => found.push(serde_json::to_value(volumes::inspect(root, &meta))?),
                    None => {
                        eprintln!("mycontainer: no such volume: {name}");
                        failed = true;
                    }
                }
            }
            match a.format.as_deref() {
                None => println!("{}", serde_json::to_string_pretty(&found)?),
                Some(format) => super::format::print_each(format, &found)?,
            }
            Ok(if failed { exitcode::VERB_FAILED } else { 0 })
        }
        VolumeCommand::Rm(a) => {
            let lock = volumes::lock(root)?;
            let mut failed = false;
            for name in &a.names {
                match volumes::remove(root, &lock, name) {
                    Ok(()) => println!("{name}"),
                    Err(err)
                        if a.force
                            && matches!(
                                err.downcast_ref::<volumes::RemoveError>(),
                                Some(volumes::RemoveError::Missing(_))
                            ) => {}
                    Err(err) => {
                        eprintln!("mycontainer: {err:#}");
                        failed = true;
                    }
                }
            }
            Ok(if failed { exitcode::VERB_FAILED } else { 0 })
        }
        VolumeCommand::Prune(a) => {
            let (removed, bytes) = volumes::prune(root, a.all)?;
            if !removed.is_empty() {
                println!("Deleted Volumes:");
                for name in &removed {
                    println!("{name}");
                }
                println!();
            }
            println!(
                "Total reclaimed space: {}",
                super::format::human_size(bytes)
            );
            Ok(0)
        }
    }
}
