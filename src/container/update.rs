//! `update`: new resource limits for a container. A running one gets them in its cgroup
//! at once (`Cgroup::update`); its config.json keeps them either way, so `inspect`
//! shows them and the next `start` applies them.

use anyhow::{bail, Context};
use oci_spec::runtime::{LinuxResources, Spec};

use super::limits::LimitFlags;
use super::record::Record;
use super::state::Status;
use crate::runtime::cgroups::Cgroup;

/// The limits `update` changes: only those the flags set (`to_resources` adds the
/// default pids limit, which update must not).
pub fn parse(flags: &LimitFlags) -> anyhow::Result<LinuxResources> {
    if flags.memory.is_none() && flags.cpus.is_none() && flags.pids_limit.is_none() {
        bail!("update needs at least one of --memory, --cpus or --pids-limit");
    }
    let mut resources = flags
        .to_resources()?
        .context("internal error: limits parsed to nothing")?;
    if flags.pids_limit.is_none() {
        resources.set_pids(None);
    }
    Ok(resources)
}

/// `update --restart`: the new policy for the container. A running one's supervisor
/// takes it at the container's next exit (as Docker's restart manager); `ps` and
/// `inspect` show it at once.
pub fn update_restart(
    record: &Record,
    policy: super::restart::RestartPolicy,
) -> anyhow::Result<()> {
    let state = record.load_state()?;
    if state.auto_remove && policy != super::restart::RestartPolicy::No {
        bail!(
            "cannot give container {} a restart policy: it is removed when it stops (--rm)",
            record.display_name()
        );
    }
    super::restart::set_pending(record, policy)
}

/// Applies `changes` to the container (its cgroup when it runs) and its config.json.
pub fn update(record: &Record, changes: &LinuxResources) -> anyhow::Result<()> {
    let state = record.load_state()?;
    let path = record.config_path();
    let mut spec = Spec::load(&path).with_context(|| format!("cannot read {}", path.display()))?;
    if state.status == Status::Running && record.is_supervised() {
        Cgroup::open(&record.cgroup_name())?
            .update(changes)
            .with_context(|| format!("cannot update container {}", record.display_name()))?;
    }
    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut resources = linux.resources().clone().unwrap_or_default();
    if let Some(change) = changes.memory() {
        let mut memory = resources.memory().unwrap_or_default();
        memory.set_limit(change.limit());
        if change.swap().is_some() {
            memory.set_swap(change.swap());
        }
        resources.set_memory(Some(memory));
    }
    if let Some(change) = changes.cpu() {
        let mut cpu = resources.cpu().clone().unwrap_or_default();
        cpu.set_quota(change.quota());
        cpu.set_period(change.period());
        resources.set_cpu(Some(cpu));
    }
    if let Some(pids) = changes.pids() {
        resources.set_pids(Some(*pids));
    }
    linux.set_resources(Some(resources));
    spec.set_linux(Some(linux));
    // Replaced whole (temp + rename): a `start` reading it sees the old or the new one.
    let tmp = path.with_extension("json.tmp");
    serde_json::to_vec(&spec)
        .map_err(std::io::Error::from)
        .and_then(|bytes| super::write_private(&tmp, &bytes))
        .and_then(|file| file.sync_all())
        .and_then(|()| std::fs::rename(&tmp, &path))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
