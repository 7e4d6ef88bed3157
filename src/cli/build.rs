//! `image build -f FILE CONTEXT` (Containerfiles) and `image history`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use mycontainer_store::Reference;

use super::image::{BuildArgs, HistoryArgs};
use super::progress::ByteProgress;
use super::Ctx;
use crate::builder::build::{self, BuildRequest};
use crate::container::limits::LimitFlags;
use crate::container::spec::Network;

/// The Containerfile a build reads: `-f`, else CONTEXT/Containerfile or
/// CONTEXT/Dockerfile when the positional is a directory; `None` for a recipe.
fn containerfile(args: &BuildArgs) -> Option<PathBuf> {
    if let Some(file) = &args.file {
        return Some(file.clone());
    }
    let dir = Path::new(&args.recipe);
    if !dir.is_dir() {
        return None;
    }
    ["Containerfile", "Dockerfile"]
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
}

/// Builds from a Containerfile, or from a recipe file that builds `from` an image;
/// `None` for a base-image recipe (busybox, debian), which `image build` handles.
pub fn containerfile_build(ctx: &Ctx, args: &BuildArgs) -> anyhow::Result<Option<i32>> {
    let (plan, context, recipe) = match containerfile(args) {
        Some(file) => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let plan = crate::builder::containerfile::parse(&text)
                .with_context(|| format!("{} is not a valid Containerfile", file.display()))?;
            (plan, PathBuf::from(&args.recipe), None)
        }
        None => {
            let path = Path::new(&args.recipe);
            if path.is_dir() {
                bail!(
                    "no Containerfile or Dockerfile in {}: give one with -f FILE",
                    args.recipe
                );
            }
            if !path.is_file() {
                return Ok(None);
            }
            let recipe = crate::builder::Recipe::find(&args.recipe)?;
            let Some(plan) = recipe.plan() else {
                return Ok(None);
            };
            // A recipe's files are next to it.
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf();
            (plan?, dir, Some(recipe))
        }
    };
    let mut tags = args
        .tags
        .iter()
        .map(|t| Reference::parse(t).with_context(|| format!("invalid tag {t:?}: use NAME[:TAG]")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let (true, Some(recipe)) = (tags.is_empty(), &recipe) {
        for tag in &recipe.tags {
            tags.push(Reference::parse(&format!("{}:{tag}", recipe.name))?);
        }
    }
    let mut build_args = BTreeMap::new();
    for arg in &args.build_args {
        match arg.split_once('=') {
            Some((k, v)) => build_args.insert(k.to_string(), v.to_string()),
            None => match std::env::var(arg) {
                Ok(v) => build_args.insert(arg.clone(), v),
                Err(_) => continue,
            },
        };
    }
    let timestamp =
        match args.timestamp {
            Some(t) => Some(t),
            None => match std::env::var("SOURCE_DATE_EPOCH") {
                Ok(v) if !v.is_empty() => Some(v.trim().parse().with_context(|| {
                    format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds")
                })?),
                // A recipe's fixed `created` time makes it reproducible too.
                _ => match recipe.as_ref().and_then(|r| r.created.as_deref()) {
                    Some(created) => Some(crate::timefmt::parse(created).with_context(|| {
                        format!("recipe created time {created:?} is not RFC 3339")
                    })?),
                    None => None,
                },
            },
        };
    let limits = LimitFlags {
        memory: args.memory.clone(),
        cpus: args.cpus.clone(),
        ..LimitFlags::default()
    }
    .parse()?;
    let request = BuildRequest {
        plan,
        context,
        tags,
        build_args,
        target: args.target.clone(),
        no_cache: args.no_cache,
        timestamp,
        network: match Network::parse(&args.network)? {
            Network::Container(_) => {
                anyhow::bail!("--network container:NAME is not supported for builds: use bridge, none or host")
            }
            network => network,
        },
        limits,
        quiet: ctx.quiet,
    };
    let store = ctx.store()?;
    let reporter = ByteProgress::new("importing", ctx.quiet);
    let image = build::build(&store, &request, &reporter)?;
    println!("{}", image.id);
    Ok(Some(0))
}

/// `image history`: one row per step, newest first, as `docker history` prints them.
pub fn history(ctx: &Ctx, args: HistoryArgs) -> anyhow::Result<i32> {
    let store = ctx.store()?;
    let image = store.image(&args.image)?;
    let raw: serde_json::Value = serde_json::from_slice(&store.read_blob(&image.id)?)?;
    let entries = raw["history"].as_array().cloned().unwrap_or_default();
    // Layer sizes in order, handed to the entries that made a layer.
    let mut sizes = image.layers.iter().map(|l| l.size);
    let mut rows: Vec<[String; 5]> = entries
        .iter()
        .map(|entry| {
            let empty = entry["empty_layer"].as_bool().unwrap_or(false);
            let size = if empty { 0 } else { sizes.next().unwrap_or(0) };
            let created = entry["created"].as_str().unwrap_or("");
            let created_by = entry["created_by"].as_str().unwrap_or("").to_string();
            let ago = crate::timefmt::parse(created)
                .map(|t| {
                    let now = crate::container::state::now_unix();
                    format!(
                        "{} ago",
                        super::lifecycle::human_duration(now.saturating_sub(t))
                    )
                })
                .unwrap_or_default();
            let created_by = if args.no_trunc || created_by.chars().count() <= 45 {
                created_by
            } else {
                format!("{}...", created_by.chars().take(42).collect::<String>())
            };
            [
                "<missing>".to_string(),
                ago,
                created_by,
                super::format::human_size(size),
                entry["comment"].as_str().unwrap_or("").to_string(),
            ]
        })
        .collect();
    rows.reverse();
    if let Some(top) = rows.first_mut() {
        top[0] = image.id.short().to_string();
    }
    if ctx.quiet {
        for row in &rows {
            println!("{}", row[0]);
        }
        return Ok(0);
    }
    println!(
        "{:<14} {:<24} {:<48} {:>10}   COMMENT",
        "IMAGE", "CREATED", "CREATED BY", "SIZE"
    );
    for row in rows {
        println!(
            "{:<14} {:<24} {:<48} {:>10}   {}",
            row[0], row[1], row[2], row[3], row[4]
        );
    }
    Ok(0)
}
