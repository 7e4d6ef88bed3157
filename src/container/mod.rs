//! Container records: `<root>/containers/<id>/` with config.json, state.json, upper/,
//! work/, merged/, container.log and the etc files bind-mounted into the container.
//!
//! A record is locked (flock on its directory) by the CLI that supervises it. The lock
//! dies with that process, so a record that says "running" but is not locked belongs to
//! a CLI that was killed: [`reclaim_orphans`] finishes its cleanup.

pub mod commit;
pub mod control;
pub mod detach;
pub mod exec;
pub mod gc;
pub mod inspect;
pub mod limits;
pub mod logs;
mod names;
pub mod policy;
pub mod remove;
pub mod run;
pub mod spec;
pub mod state;
pub mod user;

use std::fs;
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{symlink, DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::runtime::cgroups::Cgroup;
pub use names::validate_name;
pub use state::{State, Status};

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
    lock: Option<fs::File>,
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
    pub fn merged_dir(&self) -> PathBuf {
        self.dir.join(MERGED_DIR)
    }
    pub fn load_state(&self) -> anyhow::Result<State> {
        State::load(&self.state_path())
    }
    pub fn save_state(&self, state: &State) -> anyhow::Result<()> {
        state.save(&self.state_path(), !state.auto_remove)
    }
}

/// Where the container's root is assembled (the spec's `root.path`, relative to the
/// record); a mount point only inside the container's mount namespace.
pub const MERGED_DIR: &str = "merged";

/// The cgroup of container `id`, relative to the hierarchy root(s).
pub fn cgroup_name(id: &str) -> String {
    format!("mycontainer/{id}")
}

fn containers_dir(root: &Path) -> PathBuf {
    root.join("containers")
}

fn names_dir(root: &Path) -> PathBuf {
    root.join("names")
}

/// The name a record directory has until it is locked (see `create`).
const UNBORN_PREFIX: &str = ".new-";

/// How old an unborn record must be before reclaim removes it: its creator may be
/// between the mkdir and the lock.
const UNBORN_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

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
    let dir = parent.join(&id);
    if let Err(err) = fs::rename(&unborn, &dir) {
        let _ = fs::remove_dir(&unborn);
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
            return Err(err);
        }
    }
    for dir in [record.upper_dir(), record.work_dir(), record.merged_dir()] {
        fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    Ok(record)
}

/// Docker-style generated name (`brave_turing`), retried on the rare collision.
fn claim_generated_name(root: &Path, id: &str) -> anyhow::Result<String> {
    let mut last_err = None;
    for attempt in 0..8u8 {
        let start = usize::from(attempt) * 2;
        let seed = u64::from_str_radix(&id[start..start + 16], 16).unwrap_or(u64::from(attempt));
        let mut name = names::generate(seed);
        if attempt >= 4 {
            name.push_str(&format!("_{attempt}"));
        }
        match claim_name(root, &name, id) {
            Ok(()) => return Ok(name),
            Err(err) => last_err = Some(err),
        }
    }
    Err(last_err.unwrap_or_else(|| anyhow::anyhow!("cannot generate a container name")))
}

fn claim_name(root: &Path, name: &str, id: &str) -> anyhow::Result<()> {
    validate_name(name)?;
    let names = names_dir(root);
    fs::create_dir_all(&names).with_context(|| format!("cannot create {}", names.display()))?;
    let link = names.join(name);
    match symlink(id, &link) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == ErrorKind::AlreadyExists => {
            // A name left by a record that no longer exists is free again. Taken over
            // under the names lock, so two claimers (or a claimer and the old owner's
            // removal) cannot both act on the same stale link.
            let _names = lock_names(root)?;
            let owner = fs::read_link(&link).unwrap_or_default();
            if !owner.as_os_str().is_empty() && !containers_dir(root).join(&owner).exists() {
                let _ = fs::remove_file(&link);
                if symlink(id, &link).is_ok() {
                    return Ok(());
                }
            }
            bail!(
                "the container name {name:?} is already in use by {}: remove it (mycontainer rm {name}) or pick another name",
                owner.display()
            )
        }
        Err(err) => Err(err).with_context(|| format!("cannot create {}", link.display())),
    }
}

/// Serializes changes to a name link that is not new (taking over a stale one,
/// removing one's own). Held while the returned file lives.
fn lock_names(root: &Path) -> anyhow::Result<fs::File> {
    let path = names_dir(root).join(".lock");
    let file = mycontainer_store::open_lock_file(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot lock {}", path.display()));
    }
    Ok(file)
}

/// Takes the record lock on `dir`; `None` when `wait` is false and someone holds it.
fn lock_dir(dir: &Path, wait: bool) -> anyhow::Result<Option<fs::File>> {
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
fn lock_listed(dir: &Path) -> anyhow::Result<Option<fs::File>> {
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

fn random_id() -> anyhow::Result<String> {
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
        (None, _) => bail!(
            "no such container: {name_or_id} (see the ids in {})",
            containers_dir(root).display()
        ),
    }
}

fn list_ids(root: &Path) -> anyhow::Result<Vec<String>> {
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
fn delete_locked(root: &Path, id: &str, dir: &Path, name: Option<&str>) -> anyhow::Result<()> {
    Cgroup::open(&cgroup_name(id))
        .and_then(|cg| cg.destroy())
        .with_context(|| format!("cannot remove the cgroup of container {id}"))?;
    match fs::remove_dir_all(dir) {
        Err(err) if err.kind() != ErrorKind::NotFound => {
            return Err(err).with_context(|| format!("cannot remove {}", dir.display()))
        }
        _ => {}
    }
    mycontainer_store::Store::open(root)
        .and_then(|store| store.release_layers(id))
        .with_context(|| format!("cannot release the layers of container {id}"))?;
    if let Some(name) = name {
        let link = names_dir(root).join(name);
        let _names = lock_names(root)?;
        if fs::read_link(&link).is_ok_and(|owner| owner.as_os_str() == id) {
            let _ = fs::remove_file(link);
        }
    }
    Ok(())
}

/// Removes the record of a finished `--rm` run, or after a failed setup.
pub fn discard(root: &Path, record: &Record, name: Option<&str>) -> anyhow::Result<()> {
    delete_locked(root, &record.id, &record.dir, name)
}

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
        let dir = entry.path();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > UNBORN_GRACE);
        if old {
            if let Some(_lock) = lock_listed(&dir)? {
                fs::remove_dir_all(&dir)
                    .with_context(|| format!("cannot remove {}", dir.display()))?;
            }
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
/// so what is left is the cgroup, the state, and for `--rm` the directory. Cheap enough
/// to run before every command: one unlocked flock attempt per running record.
pub fn reclaim_orphans(root: &Path) -> anyhow::Result<Reclaimed> {
    let mut reclaimed = Reclaimed::default();
    reclaim_unborn(root)?;
    for id in list_ids(root)? {
        let dir = containers_dir(root).join(&id);
        let state_path = dir.join("state.json");
        let Ok(mut state) = State::load(&state_path) else {
            // No state yet: a foreground run that had not started its command. Its
            // creator locked it before it became visible, so unlocked means the CLI is
            // gone (its name link, unknown here, is freed by the next claim of it).
            if let Some(_lock) = lock_listed(&dir)? {
                if !state_path.exists() {
                    delete_locked(root, &id, &dir, None)?;
                    reclaimed.removed.push(id);
                }
            }
            continue;
        };
        if state.status == Status::Exited {
            continue;
        }
        let Some(_lock) = lock_listed(&dir)? else {
            continue;
        };
        // Re-read under the lock: the owner may have finished in between.
        let Ok(fresh) = State::load(&state_path) else {
            continue;
        };
        state = fresh;
        if state.status == Status::Exited {
            continue;
        }
        if state.auto_remove {
            delete_locked(root, &id, &dir, state.name.as_deref())?;
            reclaimed.removed.push(id);
        } else {
            let _ = Cgroup::open(&cgroup_name(&id)).and_then(|cg| cg.destroy());
            state.status = Status::Exited;
            state.pid = None;
            state.exit_code = Some(crate::exitcode::KILLED);
            state.finished_at = Some(state::now_unix());
            state.error = Some("the mycontainer process supervising it was killed".into());
            state.save(&state_path, true)?;
            reclaimed.marked_exited.push(id);
        }
    }
    Ok(reclaimed)
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

    #[test]
    fn a_locked_record_is_not_reclaimed_and_an_unlocked_one_is() {
        let root = tempfile::tempdir().unwrap();
        let record = create(root.path(), None).unwrap();
        let mut state = State {
            id: record.id.clone(),
            name: None,
            image: "x".into(),
            command: vec![],
            status: Status::Running,
            pid: Some(1),
            exit_code: None,
            oom_killed: false,
            error: None,
            auto_remove: true,
            created_at: 0,
            started_at: None,
            finished_at: None,
            image_id: None,
            stop_timeout: 10,
        };
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
