//! `gc`: reclaims what killed commands and removed images left behind, bottom-up:
//! orphaned records first (they release their layer holds), then empty cgroup parents,
//! then the store (blobs and layers nothing references), then caches of store content.

use std::path::Path;

use mycontainer_store::{GcReport, Store};

use super::Reclaimed;

/// What [`collect`] removed.
#[derive(Debug)]
pub struct Collected {
    /// Records of dead CLIs: removed (`--rm`) or marked exited.
    pub reclaimed: Reclaimed,
    /// What the store's gc removed.
    pub store: GcReport,
    /// How many cache entries `prune_caches` removed.
    pub pruned: usize,
    /// Cgroups of this state root whose container no longer runs (or no longer exists).
    pub cgroups: Vec<String>,
    /// Our nftables tables that served a network or container no longer there.
    pub tables: Vec<String>,
}

/// Runs a full gc under the state root `root`. `prune_caches` drops the caches that
/// layers above the store keep of store content (the registry's push cache) once the
/// store has swept, and returns how many entries went; the caller passes it because
/// those layers sit above this one.
pub fn collect(root: &Path, prune_caches: &dyn Fn(&Store) -> usize) -> anyhow::Result<Collected> {
    // Every record, whatever the run directory's markers say.
    let reclaimed = super::reclaim::reclaim_all(root)?;
    // Their /etc tmpfs, for records that are gone altogether.
    super::rundir::collect_recordless(root)?;
    // Network attachments and leases of containers that no longer run (a killed
    // supervisor's), then the default bridge and its rules when nothing uses them.
    super::network::collect(root, &|id| {
        let dir = super::paths::containers_dir(root).join(id);
        dir.is_dir() && matches!(super::record::lock_listed(&dir), Ok(None))
    })?;
    let tables = super::network::collect_tables(root)?;
    let cgroups = collect_cgroups(root)?;
    crate::runtime::cgroups::remove_unused_parents()?;
    let store = Store::open(root)?;
    let report = store.gc()?;
    let pruned = prune_caches(&store);
    // Run directories (on tmpfs) of state roots that were removed, then those roots'
    // cgroups: only the empty ones, as a root gc cannot see may still run containers.
    let vanished = super::rundir::collect_vanished(&root_still_runs)?;
    let cgroups = [cgroups, remove_empty_cgroups_of(&vanished)?].concat();
    Ok(Collected {
        reclaimed,
        store: report,
        pruned,
        cgroups,
        tables,
    })
}

/// Whether a cgroup of the state root with key `key` (`paths::root_key`) holds a process.
fn root_still_runs(key: &str) -> bool {
    use crate::runtime::cgroups::{list_container_cgroups, Cgroup};
    let prefix = super::paths::cgroup_prefix(key);
    // Unreadable: say yes, so nothing of the root is removed.
    let Ok(names) = list_container_cgroups() else {
        return true;
    };
    names
        .iter()
        .filter(|name| name.starts_with(&prefix))
        .any(|name| Cgroup::open(name).map_or(true, |cg| !cg.pids().is_empty()))
}

/// Removes the empty cgroups of the removed state roots with keys `keys` (killing
/// nothing); returns their names.
fn remove_empty_cgroups_of(keys: &[String]) -> anyhow::Result<Vec<String>> {
    use crate::runtime::cgroups::{list_container_cgroups, Cgroup};
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let prefixes: Vec<String> = keys
        .iter()
        .map(|key| super::paths::cgroup_prefix(key))
        .collect();
    let mut removed = Vec::new();
    for name in list_container_cgroups()? {
        let ours = prefixes.iter().any(|prefix| name.starts_with(prefix));
        if ours && Cgroup::open(&name)?.remove_if_empty()? {
            removed.push(name);
        }
    }
    Ok(removed)
}

/// Removes the cgroups named with this state root's key (see `paths::cgroup_name`)
/// whose container has no record or no live supervisor: what a killed command left.
/// Another root's cgroups have another key and are never touched.
fn collect_cgroups(root: &Path) -> anyhow::Result<Vec<String>> {
    use crate::runtime::cgroups::{list_container_cgroups, Cgroup};
    let prefix = super::paths::cgroup_prefix(&super::paths::root_key(root));
    let mut removed = Vec::new();
    for name in list_container_cgroups()? {
        let Some(id) = name.strip_prefix(&prefix) else {
            continue;
        };
        let dir = super::paths::containers_dir(root).join(id);
        let alive = dir.is_dir() && matches!(super::record::lock_listed(&dir), Ok(None));
        if !alive {
            Cgroup::open(&name)?.destroy()?;
            removed.push(name);
        }
    }
    Ok(removed)
}
