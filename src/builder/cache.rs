//! The build cache: `<root>/build-cache/<key>` holds the state a step left (layers,
//! config, history) under the step's key (parent key, instruction, build args it sees,
//! content of the files it copies). Entries are written to the store's temp dir and
//! renamed into place, so a reader sees a whole entry or none; one whose layers are gone
//! from the store (gc) is a miss.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use mycontainer_store::{Digest, LayerInfo, Store};
use serde::{Deserialize, Serialize};

use super::build::StageState;

/// A layer as a cache entry records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedLayer {
    pub digest: String,
    pub diff_id: String,
    pub size: u64,
    pub media_type: String,
}

impl CachedLayer {
    pub fn of(layer: &LayerInfo) -> CachedLayer {
        CachedLayer {
            digest: layer.digest.to_string(),
            diff_id: layer.diff_id.to_string(),
            size: layer.size,
            media_type: layer.media_type.clone(),
        }
    }

    pub fn info(&self) -> anyhow::Result<LayerInfo> {
        Ok(LayerInfo {
            digest: Digest::parse(&self.digest)?,
            diff_id: Digest::parse(&self.diff_id)?,
            size: self.size,
            media_type: self.media_type.clone(),
        })
    }
}

fn dir(store: &Store) -> PathBuf {
    store.root().join("build-cache")
}

/// The state stored under `key`, when it is there and all its layers still are.
pub fn get(store: &Store, key: &str) -> Option<StageState> {
    let bytes = fs::read(dir(store).join(key)).ok()?;
    let state: StageState = serde_json::from_slice(&bytes).ok()?;
    let whole = state.layers.iter().all(|layer| {
        let (Ok(blob), Ok(diff_id)) = (Digest::parse(&layer.digest), Digest::parse(&layer.diff_id))
        else {
            return false;
        };
        store.layer_for_blob(&blob) == Some(diff_id)
    });
    whole.then_some(state)
}

/// Records `state` under `key` (atomically: temp file, fsync, rename).
pub fn put(store: &Store, key: &str, state: &StageState) -> anyhow::Result<()> {
    let target_dir = dir(store);
    fs::create_dir_all(&target_dir)
        .with_context(|| format!("cannot create {}", target_dir.display()))?;
    let temp = store.temp_dir("cache")?;
    let path = temp.path().join("entry");
    let mut file =
        fs::File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(&serde_json::to_vec(state)?)?;
    file.sync_all()?;
    let target = target_dir.join(key);
    fs::rename(&path, &target).with_context(|| format!("cannot write {}", target.display()))
}
