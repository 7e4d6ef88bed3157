//! `container prune`, `image prune`, `system prune` and `system df`: what is stored,
//! what is in use, and removing what is not.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use mycontainer_store::{Image, Store};

use super::control;
use super::state::Status;
use super::volumes;

/// Removes every container that is not running (records whose CLI holds them are
/// skipped). Returns the ids removed and the bytes their upper dirs held.
pub fn prune_containers(store: &Store) -> anyhow::Result<(Vec<String>, u64)> {
    let mut removed = Vec::new();
    let mut bytes = 0;
    for (record, state) in control::list(store.root())? {
        if state.status == Status::Running {
            continue;
        }
        let size = volumes::disk_usage(&record.upper_dir());
        if super::remove::remove(store, &record, false, false).is_ok() {
            removed.push(record.id.clone());
            bytes += size;
        }
    }
    Ok((removed, bytes))
}

/// The ids (config digests) of the images some container record uses.
pub fn images_in_use(root: &Path) -> anyhow::Result<BTreeSet<String>> {
    Ok(control::list(root)?
        .into_iter()
        .filter_map(|(_, s)| s.image_id)
        .collect())
}

/// Removes the images no container uses: dangling ones (no name), or all with `all`.
/// Returns the ids removed and the bytes their layers held on disk (layers another
/// image keeps are not counted).
pub fn prune_images(store: &Store, all: bool) -> anyhow::Result<(Vec<String>, u64)> {
    let used = images_in_use(store.root())?;
    let before = layer_usage(store)?;
    let mut removed = Vec::new();
    for image in store.images()? {
        let id = image.id.to_string();
        if used.contains(&id) || !(all || image.names.is_empty()) {
            continue;
        }
        store.remove_image(&id)?;
        removed.push(id);
    }
    let after = layer_usage(store)?;
    let freed = before
        .iter()
        .filter(|(layer, _)| !after.contains_key(*layer))
        .map(|(_, size)| size)
        .sum();
    Ok((removed, freed))
}

/// Bytes on disk of each unpacked layer directory, by diff-id.
fn layer_usage(store: &Store) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut sizes = BTreeMap::new();
    for image in store.images()? {
        for layer in &image.layers {
            sizes
                .entry(layer.diff_id.to_string())
                .or_insert_with(|| volumes::disk_usage(&store.layer_dir(&layer.diff_id)));
        }
    }
    Ok(sizes)
}

/// One row of `system df`.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DfRow {
    #[serde(rename = "Type")]
    pub kind: &'static str,
    pub total_count: usize,
    pub active: usize,
    pub size: u64,
    pub reclaimable: u64,
    /// Bytes counted in more than one item (layers several images share).
    pub shared: u64,
}

/// `system df`: images (layers on disk; shared ones once), containers (their upper
/// dirs), local volumes, and the build cache (layers no image names).
pub fn df(store: &Store) -> anyhow::Result<Vec<DfRow>> {
    let root = store.root();
    let used = images_in_use(root)?;
    let images: Vec<Image> = store.images()?;
    let sizes = layer_usage(store)?;
    let mut users: BTreeMap<&str, usize> = BTreeMap::new();
    let mut active_layers: BTreeSet<&str> = BTreeSet::new();
    let mut active = 0;
    for image in &images {
        let in_use = used.contains(&image.id.to_string());
        active += usize::from(in_use);
        for layer in &image.layers {
            let key = sizes
                .get_key_value(&layer.diff_id.to_string())
                .map(|(k, _)| k.as_str())
                .unwrap_or_default();
            *users.entry(key).or_default() += 1;
            if in_use {
                active_layers.insert(key);
            }
        }
    }
    let total: u64 = sizes.values().sum();
    let shared: u64 = users
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, _)| sizes.get(*k).copied().unwrap_or(0))
        .sum();
    let in_use_bytes: u64 = active_layers
        .iter()
        .map(|k| sizes.get(*k).copied().unwrap_or(0))
        .sum();
    let containers = control::list(root)?;
    let mut c_size = 0;
    let mut c_reclaim = 0;
    for (record, state) in &containers {
        let size = volumes::disk_usage(&record.upper_dir());
        c_size += size;
        if state.status != Status::Running {
            c_reclaim += size;
        }
    }
    let running = containers
        .iter()
        .filter(|(_, s)| s.status == Status::Running)
        .count();
    let vol_users = volumes::users(root)?;
    let all_volumes = volumes::list(root)?;
    let mut v_size = 0;
    let mut v_reclaim = 0;
    for meta in &all_volumes {
        let size = volumes::disk_usage(&volumes::mountpoint(root, &meta.name));
        v_size += size;
        if !vol_users.contains_key(&meta.name) {
            v_reclaim += size;
        }
    }
    Ok(vec![
        DfRow {
            kind: "Images",
            total_count: images.len(),
            active,
            size: total,
            reclaimable: total.saturating_sub(in_use_bytes),
            shared,
        },
        DfRow {
            kind: "Containers",
            total_count: containers.len(),
            active: running,
            size: c_size,
            reclaimable: c_reclaim,
            shared: 0,
        },
        DfRow {
            kind: "Local Volumes",
            total_count: all_volumes.len(),
            active: vol_users.len(),
            size: v_size,
            reclaimable: v_reclaim,
            shared: 0,
        },
        DfRow {
            kind: "Build Cache",
            total_count: 0,
            active: 0,
            size: 0,
            reclaimable: 0,
            shared: 0,
        },
    ])
}
