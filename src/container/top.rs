//! `top`: the host's `ps` over the processes of a container's cgroup.

use std::collections::HashSet;
use std::process::Command;

use anyhow::{bail, Context};

use super::record::Record;
use super::state::Status;
use crate::runtime::cgroups::Cgroup;

/// The header and the lines of `ps ARGS` (`-ef` by default) whose PID column is a
/// process of the container.
pub fn top(record: &Record, ps_args: &[String]) -> anyhow::Result<(String, Vec<String>)> {
    let state = record.load_state()?;
    if state.status != Status::Running || !record.is_supervised() {
        bail!("container {} is not running", record.display_name());
    }
    let pids: HashSet<i32> = Cgroup::open(&record.cgroup_name())?
        .pids()
        .into_iter()
        .collect();
    let default = ["-ef".to_string()];
    let args = if ps_args.is_empty() {
        &default[..]
    } else {
        ps_args
    };
    let output = Command::new("ps")
        .args(args)
        .output()
        .context("cannot run ps: install procps on the host")?;
    if !output.status.success() {
        bail!(
            "ps {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default().to_string();
    let Some(column) = header.split_whitespace().position(|f| f == "PID") else {
        bail!(
            "ps {} prints no PID column: add one, e.g. -o pid,args",
            args.join(" ")
        );
    };
    let rows = lines
        .filter(|line| {
            line.split_whitespace()
                .nth(column)
                .and_then(|p| p.parse::<i32>().ok())
                .is_some_and(|pid| pids.contains(&pid))
        })
        .map(str::to_string)
        .collect();
    Ok((header, rows))
}
