//! Container records: `<root>/containers/<id>/` with config.json, state.json, upper/,
//! work/, merged/ and container.log; the init layer and the etc files bind-mounted into
//! the container are in the run directory (`rundir.rs`).
//!
//! A record is locked (flock on its directory) by the CLI that supervises it. The lock
//! dies with that process, so a record that says "running" but is not locked belongs to
//! a CLI that was killed: [`super::reclaim_orphans`] finishes its cleanup.

use std::fs;
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use mycontainer_store::Store;

use super::names::{self, claim_generated_name, claim_name, validate_name};
use super::paths::{cgroup_name, containers_dir, names_dir, MERGED_DIR};
use super::spec::{Network, RunOptions};
use super::state::State;
use crate::runtime::cgroups::Cgroup;

/// Writes `bytes` to `path` readable by its owner only (config.json and state.json
/// hold the container's environment, secrets included); an existing file is made 0600.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<fs::File> {
    use std::io::Write;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)?;
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    Ok(file)
}

/// A container directory this process created or opened.
#[derive(Debug)]
pub struct Record {
    pub id: String,
    /// The unique name (given with --name or generated); empty when opened by id.
    pub name: String,
    pub dir: PathBuf,
    /// Open directory whose flock marks the record as supervised by this process.
    pub(super) lock: Option<fs::File>,
}

impl Record {
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    pub fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("container.log")
    }
    pub fn upper_dir(&self) -> PathBuf {
        self.dir.join("upper")
    }
    pub fn work_dir(&self) -> PathBuf {
        self.dir.join("work")
    }
    /// The container's init layer: what Docker adds under every container's files
    /// (`/etc/mtab`), the lowest of its overlay layers; in the run directory.
    pub fn init_dir(&self) -> PathBuf {
        self.run_dir().join("init")
    }
    /// The record's directory in the run directory (the etc files, the init layer).
    pub fn run_dir(&self) -> PathBuf {
        super::rundir::container_dir(super::paths::root_of_record(&self.dir), &self.id)
    }
    pub fn merged_dir(&self) -> PathBuf {
        self.dir.join(MERGED_DIR)
    }
    pub fn load_state(&self) -> anyhow::Result<State> {
        State::load(&self.state_path())
    }
    pub fn save_state(&self, state: &State) -> anyhow::Result<()> {
        state.save(&self.state_path(), !state.auto_remove)
    }

    /// Writes the files the spec bind-mounts over /etc/{hostname,hosts,resolv.conf}
    /// (`spec::ETC_FILES`) into the record's run directory (see `rundir::write_etc_files`).
    pub fn write_etc_files(&self, hostname: &str, opts: &RunOptions) -> anyhow::Result<()> {
        let dns = match &opts.network {
            Network::Host => &[][..],
            Network::None | Network::Bridge(_) | Network::Container(_) => &opts.dns[..],
        };
        super::rundir::write_etc_files(
            &self.run_dir(),
            hostname,
            matches!(opts.network, Network::Host),
            dns,
            &opts.add_hosts,
        )
    }
}

/// The name a record directory has until it is locked (see `create`).
pub(super) const UNBORN_PREFIX: &str = ".new-";

/// The name a record directory has while it is being removed (see `delete_locked`).
pub(super) const REMOVING_PREFIX: &str = ".removing-";

/// Where record `dir` goes while it is removed.
pub(super) fn removing_dir(dir: &Path) -> PathBuf {
    let id = dir.file_name().unwrap_or_default().to_string_lossy();
    dir.with_file_name(format!("{REMOVING_PREFIX}{id}"))
}

/// How old an unborn record must be before reclaim removes it: its creator may be
/// between the mkdir and the lock.
pub(super) const UNBORN_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// Creates a fresh, locked record with a random 64-hex id and claims `name` (a symlink in
/// `<root>/names/`, so two concurrent runs cannot take the same name).
pub fn create(root: &Path, name: Option<&str>) -> anyhow::Result<Record> {
    let id = random_id()?;
    let parent = containers_dir(root);
    // 0700: upper dirs hold what container root made (setuid binaries among them), and
    // records their secrets (see stateroot.rs).
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    // Born under a hidden name, locked, then renamed into place: a visible record is
    // locked by its creator from its first moment, so reclaim can take any unlocked
    // record without a state as orphaned at once (see reclaim_orphans).
    let unborn = parent.join(format!("{UNBORN_PREFIX}{id}"));
    fs::create_dir(&unborn).with_context(|| format!("cannot create {}", unborn.display()))?;
    let lock = lock_dir(&unborn, true)?;
    // Its live marker before it is visible (see `rundir`); reclaim looks for the hidden
    // name before the visible one, so a marker always has one of them.
    if let Err(err) = super::rundir::create_for_record(root, &id) {
        let _ = fs::remove_dir(&unborn);
        let _ = super::rundir::remove_for_record(root, &id);
        return Err(err);
    }
    let dir = parent.join(&id);
    if let Err(err) = fs::rename(&unborn, &dir) {
        let _ = fs::remove_dir(&unborn);
        let _ = super::rundir::remove_for_record(root, &id);
        return Err(err).with_context(|| format!("cannot create {}", dir.display()));
    }
    let mut record = Record {
        id,
        name: String::new(),
        dir,
        lock,
    };
    let claimed = match name {
        Some(name) => claim_name(root, name, &record.id).map(|()| name.to_string()),
        None => claim_generated_name(root, &record.id),
    };
    match claimed {
        Ok(name) => record.name = name,
        Err(err) => {
            let _ = fs::remove_dir_all(&record.dir);
            let _ = super::rundir::remove_for_record(root, &record.id);
            return Err(err);
        }
    }
    for dir in [record.upper_dir(), record.work_dir(), record.merged_dir()] {
        fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    Ok(record)
}

/// Takes the record lock on `dir`; `None` when `wait` is false and someone holds it.
pub(super) fn lock_dir(dir: &Path, wait: bool) -> anyhow::Result<Option<fs::File>> {
    let file = fs::File::open(dir).with_context(|| format!("cannot open {}", dir.display()))?;
    let mode = if wait {
        libc::LOCK_EX
    } else {
        libc::LOCK_EX | libc::LOCK_NB
    };
    // SAFETY: flock on a descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), mode) };
    if rc == 0 {
        return Ok(Some(file));
    }
    let err = std::io::Error::last_os_error();
    if err.kind() == ErrorKind::WouldBlock {
        return Ok(None);
    }
    Err(err).with_context(|| format!("cannot lock {}", dir.display()))
}

/// The lock of a record found by listing, for reclaim: `None` when someone holds it, or
/// when the record vanished (removed by its owner, or by another command's reclaim)
/// before or while we took it. A removed directory has no links left.
pub(super) fn lock_listed(dir: &Path) -> anyhow::Result<Option<fs::File>> {
    let lock = match lock_dir(dir, false) {
        Ok(lock) => lock,
        Err(_) if !dir.exists() => return Ok(None),
        Err(err) => return Err(err),
    };
    match lock {
        Some(file) if file.metadata().map(|m| m.nlink() > 0).unwrap_or(false) => Ok(Some(file)),
        _ => Ok(None),
    }
}

pub(super) fn random_id() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    // SAFETY: getrandom writes at most bytes.len() bytes into the buffer we own.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        bail!("cannot read random bytes for a container id");
    }
    Ok(hex::encode(bytes))
}

/// Resolves a name or an unambiguous id prefix to a record (unlocked).
pub fn find(root: &Path, name_or_id: &str) -> anyhow::Result<Record> {
    if validate_name(name_or_id).is_ok() {
        if let Ok(id) = fs::read_link(names_dir(root).join(name_or_id)) {
            let id = id.to_string_lossy().into_owned();
            let dir = containers_dir(root).join(&id);
            if dir.is_dir() {
                return Ok(Record {
                    id,
                    name: name_or_id.to_string(),
                    dir,
                    lock: None,
                });
            }
        }
    }
    let mut matches = list_ids(root)?
        .into_iter()
        .filter(|id| id.starts_with(name_or_id) && !name_or_id.is_empty());
    match (matches.next(), matches.next()) {
        (Some(id), None) => Ok(Record {
            dir: containers_dir(root).join(&id),
            id,
            name: String::new(),
            lock: None,
        }),
        (Some(_), Some(_)) => {
            bail!("container id prefix {name_or_id:?} is ambiguous: give more characters")
        }
        (None, _) => Err(NoSuchContainer {
            name: name_or_id.to_string(),
            dir: containers_dir(root),
        }
        .into()),
    }
}

/// [`find`] found no container by that name or id prefix (`rm -f` ignores it, as Docker).
#[derive(Debug, thiserror::Error)]
#[error("no such container: {name} (see the ids in {})", dir.display())]
pub struct NoSuchContainer {
    pub name: String,
    pub dir: std::path::PathBuf,
}

pub(super) fn list_ids(root: &Path) -> anyhow::Result<Vec<String>> {
    let dir = containers_dir(root);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err).with_context(|| format!("cannot list {}", dir.display())),
    };
    Ok(entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect())
}

/// Deletes the record `id` whose lock the caller holds: its cgroup, its directory, its
/// layer holds and its name.
pub(super) fn delete_locked(
    store: &Store,
    id: &str,
    dir: &Path,
    name: Option<&str>,
) -> anyhow::Result<()> {
    delete_locked_after(store, id, dir, name, false)
}

/// [`delete_locked`], the cgroup left alone when `cgroup_removed` (the runtime removed
/// it as the container ended, and the lock kept anyone from making it again).
fn delete_locked_after(
    store: &Store,
    id: &str,
    dir: &Path,
    name: Option<&str>,
    cgroup_removed: bool,
) -> anyhow::Result<()> {
    super::network::release(store.root(), id)
        .with_context(|| format!("cannot remove the network of container {id}"))?;
    if !cgroup_removed {
        Cgroup::open(&cgroup_name(super::paths::root_of_record(dir), id))
            .and_then(|cg| cg.destroy())
            .with_context(|| format!("cannot remove the cgroup of container {id}"))?;
    }
    // The container's /etc tmpfs before its record: once the record is gone nothing of
    // a run may stay mounted, not even until the run directory's turn below. Its live
    // marker goes last, so a removal killed in between is finished by reclaim.
    super::rundir::detach_etc(store.root(), id)?;
    remove_record_dir(dir)?;
    super::rundir::remove_for_record(store.root(), id)?;
    store
        .release_layers(id)
        .with_context(|| format!("cannot release the layers of container {id}"))?;
    super::events::emit(store.root(), id, name, "destroy", &[]);
    if let Some(name) = name {
        let link = names_dir(store.root()).join(name);
        let _names = names::lock_names(store.root())?;
        if fs::read_link(&link).is_ok_and(|owner| owner.as_os_str() == id) {
            let _ = fs::remove_file(link);
        }
    }
    Ok(())
}

/// Removes the directory of a record whose lock the caller holds. Other commands write
/// into a record without its lock (`stop` and `kill` mark it stopped by a user, `update`
/// leaves a restart policy): a file made between the removal's listing and its rmdir
/// made the rmdir fail, and a `--rm` record stayed behind. So the directory is first
/// renamed to a hidden name, where no new path lookup finds it; a write that had found
/// it before may still land, and the removal is repeated until the directory is gone.
/// The record's lock is on the directory itself, so it stays held under the new name
/// (`Record::is_supervised` looks there too); `reclaim` finishes a removal whose process
/// died.
fn remove_record_dir(dir: &Path) -> anyhow::Result<()> {
    let doomed = if dir
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(REMOVING_PREFIX))
    {
        dir.to_path_buf()
    } else {
        let doomed = removing_dir(dir);
        match fs::rename(dir, &doomed) {
            Ok(()) => doomed,
            Err(err) if err.kind() == ErrorKind::NotFound => doomed,
            Err(err) => {
                return Err(err).with_context(|| format!("cannot remove {}", dir.display()))
            }
        }
    };
    loop {
        match fs::remove_dir_all(&doomed) {
            Ok(()) => return Ok(()),
            Err(err) if err.kind() == ErrorKind::NotFound => return Ok(()),
            // A late write landed in it: what is left is removed on the next pass.
            Err(err) if err.kind() == ErrorKind::DirectoryNotEmpty => continue,
            Err(err) => {
                return Err(err).with_context(|| format!("cannot remove {}", doomed.display()))
            }
        }
    }
}

/// Removes the record of a finished `--rm` run, or after a failed setup.
/// Its anonymous volumes go with it, as Docker's `--rm` removes them.
pub fn discard(store: &Store, record: &Record, name: Option<&str>) -> anyhow::Result<()> {
    discard_after(store, record, name, false)
}

/// [`discard`], the cgroup left alone when the runtime removed it (`cgroup_removed`).
pub fn discard_after(
    store: &Store,
    record: &Record,
    name: Option<&str>,
    cgroup_removed: bool,
) -> anyhow::Result<()> {
    let volumes = super::volumes::volumes_of_record(store.root(), &record.dir);
    delete_locked_after(store, &record.id, &record.dir, name, cgroup_removed)?;
    super::volumes::remove_anonymous(store.root(), &volumes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_cannot_be_claimed_twice_while_its_record_exists() {
        let root = tempfile::tempdir().unwrap();
        let first = create(root.path(), Some("web")).unwrap();
        let err = create(root.path(), Some("web")).unwrap_err().to_string();
        assert!(err.contains("already in use"), "{err}");
        assert_eq!(find(root.path(), "web").unwrap().id, first.id);
        assert_eq!(find(root.path(), &first.id[..10]).unwrap().id, first.id);
        // Only the first record exists: the failed create cleaned up after itself.
        assert_eq!(list_ids(root.path()).unwrap(), vec![first.id.clone()]);
    }

    #[test]
    fn a_stale_name_is_taken_over_by_exactly_one_of_many_claimers() {
        let root = tempfile::tempdir().unwrap();
        for round in 0..20 {
            let name = format!("web{round}");
            let stale = create(root.path(), Some(&name)).unwrap();
            fs::remove_dir_all(&stale.dir).unwrap();
            drop(stale);
            let winners: Vec<Record> = std::thread::scope(|scope| {
                let claims: Vec<_> = (0..6)
                    .map(|_| scope.spawn(|| create(root.path(), Some(&name)).ok()))
                    .collect();
                claims
                    .into_iter()
                    .filter_map(|c| c.join().unwrap())
                    .collect()
            });
            assert_eq!(winners.len(), 1, "round {round}");
            assert_eq!(find(root.path(), &name).unwrap().id, winners[0].id);
        }
    }
}

#[cfg(test)]
mod removal_race {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// `stop` and `kill` mark the record stopped-by-user (a file in it) without its
    /// lock, while the supervisor may be removing a `--rm` record: a file made between
    /// the removal's listing and its rmdir made the rmdir fail (ENOTEMPTY), the
    /// supervisor gave up and the record stayed until the next command's reclaim.
    #[test]
    fn a_record_is_removed_while_another_command_writes_into_it() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        for round in 0..50 {
            let record = create(root.path(), Some(&format!("busy{round}"))).unwrap();
            for sub in [record.upper_dir(), record.work_dir()] {
                for i in 0..20 {
                    fs::write(sub.join(format!("file{i}")), b"x").unwrap();
                }
            }
            let done = AtomicBool::new(false);
            std::thread::scope(|scope| {
                let writer = scope.spawn(|| {
                    while !done.load(Ordering::Relaxed) {
                        crate::container::restart::mark_stopped_by_user(&record);
                    }
                });
                let removed = delete_locked(&store, &record.id, &record.dir, Some(&record.name));
                done.store(true, Ordering::Relaxed);
                writer.join().unwrap();
                removed.unwrap_or_else(|e| panic!("round {round}: {e:#}"));
            });
            // A write that came after the removal found no directory to write into.
            assert!(
                !record.dir.exists(),
                "round {round}: the record is still there"
            );
            assert!(
                !removing_dir(&record.dir).exists(),
                "round {round}: half removed"
            );
        }
    }
}
