//! `rename`: gives a container another name (running or not).

use std::fs;

use super::names::{claim_name, lock_names};
use super::paths::names_dir;
use super::record::Record;

/// Claims `new` for the record, records it in state.json, and frees the old name. A
/// running container's supervisor re-reads the name when it records the exit.
pub fn rename(root: &std::path::Path, record: &Record, new: &str) -> anyhow::Result<()> {
    // Its holder may be a dead `--rm` run (see reclaim.rs).
    if let Err(err) = super::reclaim::reclaim_name(root, new) {
        eprintln!("mycontainer: warning: {err:#}");
    }
    claim_name(root, new, &record.id)?;
    let result = (|| -> anyhow::Result<Option<String>> {
        let mut state = record.load_state()?;
        let old = state.name.replace(new.to_string());
        record.save_state(&state)?;
        Ok(old)
    })();
    let link = names_dir(root);
    match result {
        Ok(old) => {
            if let Some(old) = old.filter(|o| o != new) {
                let _names = lock_names(root)?;
                let old_link = link.join(&old);
                if fs::read_link(&old_link)
                    .is_ok_and(|owner| owner.as_os_str() == record.id.as_str())
                {
                    let _ = fs::remove_file(old_link);
                }
            }
            Ok(())
        }
        Err(err) => {
            let _ = fs::remove_file(link.join(new));
            Err(err)
        }
    }
}
