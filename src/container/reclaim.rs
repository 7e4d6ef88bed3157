//! Orphan reclaim: finishes the cleanup of records whose supervising CLI died (kill -9
//! included), and of records whose creator died before it could lock them.

use std::fs;
use std::path::Path;

use anyhow::Context;
use mycontainer_store::Store;

use super::paths::{cgroup_name, containers_dir};
use super::record::{
    delete_locked, list_ids, lock_listed, REMOVING_PREFIX, UNBORN_GRACE, UNBORN_PREFIX,
};
use super::state::{State, Status};
use crate::runtime::cgroups::Cgroup;

/// Removes hidden records whose creator died between mkdir and rename (unlocked and
/// older than UNBORN_GRACE).
fn reclaim_unborn(root: &Path) -> anyhow::Result<()> {
    let Ok(entries) = fs::read_dir(containers_dir(root)) else {
        return Ok(());
    };
    for entry in entries.filter_map(|e| e.ok()) {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(UNBORN_PREFIX)
        {
            continue;
        }
        reclaim_unborn_dir(&entry.path())?;
    }
    Ok(())
}

/// Removes the hidden record `dir` when it is unlocked and older than UNBORN_GRACE.
fn reclaim_unborn_dir(dir: &Path) -> anyhow::Result<()> {
    let old = fs::symlink_metadata(dir)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > UNBORN_GRACE);
    if old {
        if let Some(_lock) = lock_listed(dir)? {
            fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        }
    }
    Ok(())
}

/// What [`reclaim_orphans`] did.
#[derive(Debug, Default)]
pub struct Reclaimed {
    pub removed: Vec<String>,
    pub marked_exited: Vec<String>,
}

/// Finishes the cleanup of records whose CLI died (even by SIGKILL): their container is
/// already dead (parent-death signal, and its mounts lived only in its mount namespace),
/// so what is left is the cgroup, the state, and for `--rm` the directory. It looks only
/// at the records the run directory marks live (see `rundir`), one unlocked flock
/// attempt each; at every record once after a reboot emptied the run directory. Its cost
/// grows with the running containers: it runs before the verbs that list or manage
/// many (`ps`, `system`, `network`, `volume`, `image`, `prune`...); the verbs on named
/// containers reclaim just those ([`find`], [`reclaim_name`]), and before them
/// [`reclaim_if_unswept`] runs.
pub fn reclaim_orphans(root: &Path) -> anyhow::Result<Reclaimed> {
    match super::rundir::marked_live(root)? {
        Some(live) => reclaim_marked(root, live),
        None => reclaim_all(root),
    }
}

/// Before a verb on named containers: nothing, unless no reclaim has looked at every
/// record since the run directory was made (after a reboot: then [`reclaim_all`], once,
/// so that every live marker is right again and [`find`] can trust them).
pub fn reclaim_if_unswept(root: &Path) -> anyhow::Result<Reclaimed> {
    match super::rundir::is_swept(root) {
        true => Ok(Reclaimed::default()),
        false => reclaim_all(root),
    }
}

/// [`record::find`](super::record::find), once the record found is reclaimed if its CLI
/// died (marked exited; a `--rm` one removed, and then no such container): what a verb
/// on one named container sees, without looking at any other record: one `stat` of its
/// live marker, and for a marked one a state read and an flock attempt. A failed reclaim
/// is a warning: the verb goes on with the record as it is.
pub fn find(root: &Path, name_or_id: &str) -> anyhow::Result<super::Record> {
    let record = super::record::find(root, name_or_id)?;
    match reclaim_record(root, &record.id) {
        Ok(reclaimed) if reclaimed.removed.contains(&record.id) => {
            Err(super::record::NoSuchContainer {
                name: name_or_id.to_string(),
                dir: containers_dir(root),
            }
            .into())
        }
        Ok(_) => Ok(record),
        Err(err) => {
            eprintln!("mycontainer: warning: {err:#}");
            Ok(record)
        }
    }
}

/// Before a record claims `name` (`run --name`, `rename`): reclaims the record that holds
/// it, if its CLI died, so the name of a dead `--rm` run is free again.
pub fn reclaim_name(root: &Path, name: &str) -> anyhow::Result<Reclaimed> {
    if super::validate_name(name).is_err() {
        return Ok(Reclaimed::default());
    }
    match fs::read_link(super::paths::names_dir(root).join(name)) {
        Ok(id) => reclaim_record(root, &id.to_string_lossy()),
        Err(_) => Ok(Reclaimed::default()),
    }
}

/// Reclaims record `id` alone, if the run directory marks it live (see [`reclaim_orphans`]).
pub(super) fn reclaim_record(root: &Path, id: &str) -> anyhow::Result<Reclaimed> {
    let mut reclaimed = Reclaimed::default();
    if super::rundir::is_marked_live(root, id) {
        reclaim_marked_one(root, id, &mut None, &mut reclaimed)?;
    }
    Ok(reclaimed)
}

/// [`reclaim_orphans`] over every record (`gc`, and the first command after a reboot),
/// whatever the markers say; marks the run directory swept.
pub fn reclaim_all(root: &Path) -> anyhow::Result<Reclaimed> {
    let mut reclaimed = Reclaimed::default();
    reclaim_unborn(root)?;
    let mut store = None;
    for id in removing_ids(root) {
        reclaim_removing(root, &id, &mut store, &mut reclaimed)?;
    }
    let ids = list_ids(root)?;
    for id in &ids {
        reclaim_one(root, id, &mut store, &mut reclaimed)?;
    }
    // A root without records needs no run directory (and gets none: it would outlive
    // a removed root until gc).
    if !ids.is_empty() {
        super::rundir::mark_swept(root)?;
    }
    Ok(reclaimed)
}

fn reclaim_marked(root: &Path, live: Vec<String>) -> anyhow::Result<Reclaimed> {
    let mut reclaimed = Reclaimed::default();
    let mut store = None;
    for id in live {
        reclaim_marked_one(root, &id, &mut store, &mut reclaimed)?;
    }
    Ok(reclaimed)
}

/// Reclaims record `id`, which the run directory marks live, whatever name its directory
/// has now (hidden while created or removed).
fn reclaim_marked_one(
    root: &Path,
    id: &str,
    store: &mut Option<Store>,
    reclaimed: &mut Reclaimed,
) -> anyhow::Result<()> {
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(());
    }
    let parent = containers_dir(root);
    // The hidden name first: `create` renames it to the visible one, so looking in
    // this order never misses a record in between.
    let unborn = parent.join(format!("{UNBORN_PREFIX}{id}"));
    if unborn.exists() {
        reclaim_unborn_dir(&unborn)?;
        if !unborn.exists() && !parent.join(id).exists() {
            super::rundir::remove_for_record(root, id)?;
        }
        return Ok(());
    }
    if parent.join(format!("{REMOVING_PREFIX}{id}")).exists() {
        return reclaim_removing(root, id, store, reclaimed);
    }
    if !parent.join(id).exists() {
        // Removed, by its owner or another reclaim, between its directory and its
        // marker; or its creator died before making it.
        return super::rundir::remove_for_record(root, id);
    }
    reclaim_one(root, id, store, reclaimed)
}

/// The ids of records some process began to remove (see `record::remove_record_dir`).
fn removing_ids(root: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(containers_dir(root)) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix(REMOVING_PREFIX).map(str::to_string)
        })
        .filter(|id| id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect()
}

/// Finishes the removal of record `id` that a process began and did not end (it died,
/// or failed): unless that process still holds it.
fn reclaim_removing(
    root: &Path,
    id: &str,
    store: &mut Option<Store>,
    reclaimed: &mut Reclaimed,
) -> anyhow::Result<()> {
    let dir = containers_dir(root).join(format!("{REMOVING_PREFIX}{id}"));
    let Some(_lock) = lock_listed(&dir)? else {
        return Ok(());
    };
    if store.is_none() {
        *store = Some(Store::open(root)?);
    }
    let store = store.as_ref().expect("opened above");
    let state = State::load(&dir.join("state.json")).ok();
    let name = state.as_ref().and_then(|s| s.name.clone());
    // A `--rm` record's anonymous volumes go with it (as `discard`); `rm` without -v
    // keeps them (then `volume prune` removes them).
    let volumes = match state.as_ref().is_some_and(|s| s.auto_remove) {
        true => super::volumes::volumes_of_record(root, &dir),
        false => Default::default(),
    };
    delete_locked(store, id, &dir, name.as_deref())?;
    super::network::release_unrecorded_leases(root, id)?;
    super::volumes::remove_anonymous(root, &volumes)?;
    reclaimed.removed.push(id.to_string());
    Ok(())
}

/// Reclaims record `id` when its CLI is gone; drops its live marker when it is exited.
fn reclaim_one(
    root: &Path,
    id: &str,
    store: &mut Option<Store>,
    reclaimed: &mut Reclaimed,
) -> anyhow::Result<()> {
    // Opened only once something is to be deleted: this runs before every command.
    let mut open_store = || -> anyhow::Result<Store> {
        if store.is_none() {
            *store = Some(Store::open(root)?);
        }
        Ok(store.clone().expect("opened above"))
    };
    let dir = containers_dir(root).join(id);
    let state_path = dir.join("state.json");
    let Ok(mut state) = State::load(&state_path) else {
        // No state yet: a foreground run that had not started its command. Its
        // creator locked it before it became visible, so unlocked means the CLI is
        // gone (its name link, unknown here, is freed by the next claim of it).
        if let Some(_lock) = lock_listed(&dir)? {
            if !state_path.exists() {
                delete_locked(&open_store()?, id, &dir, None)?;
                super::network::release_unrecorded_leases(root, id)?;
                reclaimed.removed.push(id.to_string());
            }
        }
        return Ok(());
    };
    if state.status == Status::Exited {
        // A marker left by a CLI killed between the exited state and its removal.
        return super::rundir::unmark_live(root, id);
    }
    let Some(_lock) = lock_listed(&dir)? else {
        return Ok(());
    };
    // Re-read under the lock: the owner may have finished in between.
    let Ok(fresh) = State::load(&state_path) else {
        return Ok(());
    };
    state = fresh;
    if state.status == Status::Exited {
        return super::rundir::unmark_live(root, id);
    }
    if state.auto_remove {
        // The record goes, and its supervisor.log with it: why the supervisor died is
        // kept in the "die" event (`events` shows it).
        if state.started_at.is_some() {
            let (code, why) = match supervisor_failure(&dir, &mut state) {
                Some(failure) => (crate::exitcode::TOOL_FAILED, failure),
                None => (
                    crate::exitcode::KILLED,
                    "the mycontainer process supervising it was killed".to_string(),
                ),
            };
            let attrs = [
                ("exitCode", code.to_string()),
                ("image", state.image.clone()),
                ("error", why),
            ];
            super::events::emit(root, id, state.name.as_deref(), "die", &attrs);
        }
        let volumes = super::volumes::volumes_of_record(root, &dir);
        delete_locked(&open_store()?, id, &dir, state.name.as_deref())?;
        super::network::release_unrecorded_leases(root, id)?;
        super::volumes::remove_anonymous(root, &volumes)?;
        reclaimed.removed.push(id.to_string());
    } else {
        let _ = Cgroup::open(&cgroup_name(root, id)).and_then(|cg| cg.destroy());
        if let Err(e) = super::network::release(root, id)
            .and_then(|()| super::network::release_unrecorded_leases(root, id))
        {
            eprintln!("mycontainer: warning: cannot remove the network of container {id}: {e:#}");
        }
        // Why the supervisor died, if it could say: an error it recorded in the state
        // during this run (cleared at each start), or the small supervisor's line in
        // supervisor.log (it cannot write the state).
        let failure = supervisor_failure(&dir, &mut state);
        state.status = Status::Exited;
        state.pid = None;
        // Not "now": the container died with its supervisor (parent-death signal),
        // at a moment nothing recorded; inspect shows the zero time, as Docker does
        // for a time it does not know.
        state.finished_at = None;
        match failure {
            Some(failure) => {
                state.exit_code = Some(crate::exitcode::TOOL_FAILED);
                state.error = Some(format!(
                    "{failure} (supervisor.log in the record); it stopped with it, at a time not recorded"
                ));
            }
            None => {
                state.exit_code = Some(crate::exitcode::KILLED);
                state.error = Some(
                    "the mycontainer process supervising it was killed; it stopped with it, at a time not recorded"
                        .into(),
                );
            }
        }
        state.save(&state_path, true)?;
        reclaimed.marked_exited.push(id.to_string());
    }
    Ok(())
}

/// Why the supervisor of the record in `dir` died, if it could say: an error it recorded
/// in the state during this run (cleared at each start, taken from `state`), or the
/// small supervisor's line in supervisor.log (it cannot write the state).
fn supervisor_failure(dir: &Path, state: &mut State) -> Option<String> {
    state
        .error
        .take()
        .or_else(|| super::supervisor_log::failure_since(dir, state.started_at.unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::record::find;
    use crate::container::record::{create, lock_dir, Record};

    /// The state of a running `--rm` container `id` (pid 1 stands for its init).
    fn running_rm_state(id: &str, name: Option<&str>) -> State {
        State {
            name: name.map(str::to_string),
            image: "x".into(),
            command: vec![],
            pid: Some(1),
            auto_remove: true,
            created_at: 0,
            started_at: None,
            ..State::for_test(id, Status::Running)
        }
    }

    const ISOLATED_ENV: &str = "MYCONTAINER_ISOLATED_TEST";

    /// Whether to run the body of test `name` here: true in a process of its own (this
    /// test binary re-run with only `name`); in the parallel test process, runs that
    /// process, asserts it passed and returns false.
    ///
    /// A record's lock is an flock, which lives as long as any copy of its descriptor: a
    /// child another test forks in the same process shares the descriptor table until it
    /// execs or closes it, so a record just dropped here can look locked for a moment
    /// (and OFD locks are inherited the same way). Reclaim is right to skip it — a lock
    /// held by anyone means "maybe alive" — but a test asserting the exact outcome needs a
    /// process where nothing else forks.
    fn in_own_process(name: &str) -> bool {
        if std::env::var(ISOLATED_ENV).as_deref() == Ok(name) {
            return true;
        }
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                &format!("container::reclaim::tests::{name}"),
                "--exact",
                "--test-threads=1",
            ])
            .env(ISOLATED_ENV, name)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        false
    }

    /// A CLI killed between its address lease and its attachment record: the next
    /// command's reclaim frees the lease with the record (only `gc` did before, so the
    /// address stayed taken until then).
    #[test]
    fn a_lease_taken_just_before_a_kill_is_freed_by_the_next_command() {
        if !in_own_process("a_lease_taken_just_before_a_kill_is_freed_by_the_next_command") {
            return;
        }
        use crate::container::network::ipam;
        let root = tempfile::tempdir().unwrap();
        let config = ipam::NetworkConfig {
            name: "leasetest".into(),
            id: "0".repeat(64),
            subnet: "10.231.7.0/24".into(),
            gateway: "10.231.7.1".parse().unwrap(),
            bridge: "mc-leasetest".into(),
            internal: false,
            created: 0,
        };
        fs::create_dir_all(ipam::networks_dir(root.path())).unwrap();
        ipam::save(root.path(), &config).unwrap();
        let record = create(root.path(), None).unwrap();
        let other = create(root.path(), None).unwrap();
        for holder in [&record, &other] {
            let _lock = ipam::lock(root.path(), &config.name).unwrap();
            ipam::allocate(root.path(), &config, &holder.id).unwrap();
        }
        let id = record.id.clone();
        drop(record);
        assert_eq!(reclaim_orphans(root.path()).unwrap().removed, vec![id]);
        let left: Vec<String> = ipam::leases(root.path(), &config.name)
            .into_iter()
            .map(|lease| lease.id)
            .collect();
        assert_eq!(
            left,
            vec![other.id.clone()],
            "the killed run's lease is still taken"
        );
    }

    /// A remover killed after renaming the record aside (`record::remove_record_dir`):
    /// the next command finishes the removal, the live marker and the name included;
    /// while the remover lives (holds the lock), the record is left to it and still
    /// counts as supervised.
    #[test]
    fn a_half_removed_record_is_finished_by_the_next_command() {
        if !in_own_process("a_half_removed_record_is_finished_by_the_next_command") {
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let record = create(root.path(), Some("halfway")).unwrap();
        let state = running_rm_state(&record.id, Some("halfway"));
        record.save_state(&state).unwrap();
        let doomed = crate::container::record::removing_dir(&record.dir);
        fs::rename(&record.dir, &doomed).unwrap();
        let seen = Record {
            id: record.id.clone(),
            name: String::new(),
            dir: record.dir.clone(),
            lock: None,
        };
        assert!(
            seen.is_supervised(),
            "a record being removed is still supervised"
        );
        assert!(reclaim_orphans(root.path()).unwrap().removed.is_empty());
        assert!(doomed.exists());
        drop(record);
        assert!(!seen.is_supervised());
        assert_eq!(
            reclaim_orphans(root.path()).unwrap().removed,
            vec![seen.id.clone()]
        );
        assert!(!doomed.exists());
        assert!(crate::container::rundir::marked_live(root.path())
            .unwrap()
            .unwrap_or_default()
            .is_empty());
        assert!(find(root.path(), "halfway").is_err());
        // The name is free again.
        create(root.path(), Some("halfway")).unwrap();
    }

    /// `find` reclaims the record it finds and no other: a dead `--rm` one is no such
    /// container, a dead kept one is exited, a locked one is left alone.
    #[test]
    fn find_reclaims_the_record_it_finds_and_no_other() {
        if !in_own_process("find_reclaims_the_record_it_finds_and_no_other") {
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let mut dead = Vec::new();
        for name in ["gone", "kept", "other"] {
            let record = create(root.path(), Some(name)).unwrap();
            let mut state = running_rm_state(&record.id, Some(name));
            state.auto_remove = name != "kept";
            record.save_state(&state).unwrap();
            dead.push(record.id.clone());
        }
        let alive = create(root.path(), Some("alive")).unwrap();
        alive
            .save_state(&running_rm_state(&alive.id, Some("alive")))
            .unwrap();
        let err = super::find(root.path(), "gone").unwrap_err();
        assert!(err.is::<crate::container::NoSuchContainer>(), "{err:#}");
        assert!(!containers_dir(root.path()).join(&dead[0]).exists());
        let kept = super::find(root.path(), "kept").unwrap();
        assert_eq!(kept.load_state().unwrap().status, Status::Exited);
        assert_eq!(super::find(root.path(), "alive").unwrap().id, alive.id);
        assert_eq!(alive.load_state().unwrap().status, Status::Running);
        // The other dead one was not looked at: still marked live, still "running".
        let other = find(root.path(), "other").unwrap();
        assert_eq!(other.load_state().unwrap().status, Status::Running);
        assert!(crate::container::rundir::is_marked_live(
            root.path(),
            &dead[2]
        ));
        // Its name's next claimer reclaims it.
        assert_eq!(
            reclaim_name(root.path(), "other").unwrap().removed,
            vec![dead[2].clone()]
        );
        create(root.path(), Some("other")).unwrap();
    }

    #[test]
    fn a_locked_record_is_not_reclaimed_and_an_unlocked_one_is() {
        if !in_own_process("a_locked_record_is_not_reclaimed_and_an_unlocked_one_is") {
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let record = create(root.path(), None).unwrap();
        let mut state = running_rm_state(&record.id, None);
        record.save_state(&state).unwrap();
        assert!(reclaim_orphans(root.path()).unwrap().removed.is_empty());
        drop(record);
        assert_eq!(reclaim_orphans(root.path()).unwrap().removed.len(), 1);
        assert!(list_ids(root.path()).unwrap().is_empty());

        let record = create(root.path(), None).unwrap();
        state.id = record.id.clone();
        state.auto_remove = false;
        record.save_state(&state).unwrap();
        let id = record.id.clone();
        drop(record);
        assert_eq!(
            reclaim_orphans(root.path()).unwrap().marked_exited,
            vec![id.clone()]
        );
        let back = find(root.path(), &id).unwrap().load_state().unwrap();
        assert_eq!(back.status, Status::Exited);
    }

    #[test]
    fn an_unlocked_record_without_state_is_removed_and_a_locked_one_is_kept() {
        if !in_own_process("an_unlocked_record_without_state_is_removed_and_a_locked_one_is_kept") {
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let alive = create(root.path(), None).unwrap();
        let dead = create(root.path(), None).unwrap();
        let dead_id = dead.id.clone();
        drop(dead);
        let reclaimed = reclaim_orphans(root.path()).unwrap();
        assert_eq!(reclaimed.removed, vec![dead_id]);
        assert_eq!(list_ids(root.path()).unwrap(), vec![alive.id.clone()]);
    }

    #[test]
    fn an_unborn_record_is_removed_only_once_old_and_unlocked() {
        if !in_own_process("an_unborn_record_is_removed_only_once_old_and_unlocked") {
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let parent = containers_dir(root.path());
        fs::create_dir_all(&parent).unwrap();
        let fresh = parent.join(format!("{UNBORN_PREFIX}{}", "a".repeat(64)));
        let old = parent.join(format!("{UNBORN_PREFIX}{}", "b".repeat(64)));
        let old_locked = parent.join(format!("{UNBORN_PREFIX}{}", "c".repeat(64)));
        for dir in [&fresh, &old, &old_locked] {
            fs::create_dir(dir).unwrap();
        }
        for dir in [&old, &old_locked] {
            let path = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
            let times = [libc::timeval {
                tv_sec: 1,
                tv_usec: 0,
            }; 2];
            // SAFETY: utimes on a path and a two-element array we own.
            assert_eq!(unsafe { libc::utimes(path.as_ptr(), times.as_ptr()) }, 0);
        }
        let _held = lock_dir(&old_locked, true).unwrap();
        reclaim_orphans(root.path()).unwrap();
        assert!(fresh.exists(), "a creator may still be about to lock it");
        assert!(!old.exists());
        assert!(old_locked.exists(), "its creator holds it");
        assert!(list_ids(root.path()).unwrap().is_empty());
    }
}
