//! Filesystem primitives the store is built on: locked temp entries that a crashed
//! writer leaves reclaimable, atomic replace (temp + fsync + rename), and file locks.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::Store;

/// Prefix of temp entries that are not yet locked; reclaim leaves them alone while young.
pub(crate) const UNLOCKED_PREFIX: &str = ".new-";

/// An exclusive or shared `flock` held for the life of the value.
pub(crate) struct FileLock {
    _file: File,
}

impl FileLock {
    pub(crate) fn exclusive(path: &Path) -> Result<FileLock> {
        Self::lock(path, libc::LOCK_EX)
    }

    pub(crate) fn shared(path: &Path) -> Result<FileLock> {
        Self::lock(path, libc::LOCK_SH)
    }

    fn lock(path: &Path, how: libc::c_int) -> Result<FileLock> {
        let file = open_lock_file(path).map_err(|e| Error::io("cannot open lock file", path, e))?;
        flock(&file, how).map_err(|e| Error::io("cannot lock", path, e))?;
        Ok(FileLock { _file: file })
    }
}

/// Opens a lock file, creating it 0600, and makes an existing one 0600 too: anyone who
/// can open a lock file can flock it (read-only is enough) and stall every command that
/// takes the lock.
pub fn open_lock_file(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)?;
    if file.metadata()?.permissions().mode() & 0o077 != 0 {
        // Made by an older version, with the umask's mode.
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

/// Creates `dir` with mode 0700 (its missing parents as create_dir_all does) unless it
/// exists: for the directories whose content other users must not reach (see
/// [`crate::Store::open`]).
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    let create = || fs::DirBuilder::new().mode(0o700).create(dir);
    let created = match create() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = dir.parent().unwrap_or(Path::new("/"));
            fs::create_dir_all(parent).map_err(|e| Error::io("cannot create", parent, e))?;
            create()
        }
        other => other,
    };
    match created {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(Error::io("cannot create", dir, e))
        }
        _ => Ok(()),
    }
}

pub(crate) fn flock(file: &File, how: libc::c_int) -> std::io::Result<()> {
    loop {
        // SAFETY: flock on a descriptor we own; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), how) };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// A file or directory under `<root>/tmp`, locked while this value lives, removed on drop
/// unless it was moved into place with [`TempEntry::persist`].
pub(crate) struct TempEntry {
    path: PathBuf,
    lock: Option<File>,
    persisted: bool,
}

impl TempEntry {
    pub(crate) fn new_dir(store: &Store, kind: &str) -> Result<TempEntry> {
        Self::create(store, kind, true)
    }

    pub(crate) fn new_file(store: &Store, kind: &str) -> Result<(TempEntry, File)> {
        let entry = Self::create(store, kind, false)?;
        let file = OpenOptions::new()
            .write(true)
            .read(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&entry.path)
            .map_err(|e| Error::io("cannot open", &entry.path, e))?;
        Ok((entry, file))
    }

    /// Creates the entry under a dot name, locks it, then renames it to its visible name,
    /// so that reclaim never sees a visible entry that nobody has locked yet.
    fn create(store: &Store, kind: &str, dir: bool) -> Result<TempEntry> {
        let name = unique_name(kind);
        let tmp = store.tmp_dir();
        let hidden = tmp.join(format!("{UNLOCKED_PREFIX}{name}"));
        let path = tmp.join(&name);
        let lock = if dir {
            fs::create_dir(&hidden).map_err(|e| Error::io("cannot create", &hidden, e))?;
            File::open(&hidden).map_err(|e| Error::io("cannot open", &hidden, e))?
        } else {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(&hidden)
                .map_err(|e| Error::io("cannot create", &hidden, e))?
        };
        flock(&lock, libc::LOCK_EX).map_err(|e| Error::io("cannot lock", &hidden, e))?;
        fs::rename(&hidden, &path).map_err(|e| Error::io("cannot rename", &hidden, e))?;
        Ok(TempEntry {
            path,
            lock: Some(lock),
            persisted: false,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the entry to `target`. Returns false (and removes the entry) when the
    /// target already exists: content-addressed targets are never rewritten. No fsync:
    /// the caller synced the entry's content before (so nothing half-written becomes
    /// visible) and syncs the filesystem after (one [`sync_filesystem`] for many renames).
    pub(crate) fn persist_unsynced(mut self, target: &Path) -> Result<bool> {
        if target.symlink_metadata().is_ok() {
            return Ok(false);
        }
        match rename_noreplace(&self.path, target) {
            Ok(()) => {
                self.persisted = true;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(Error::io("cannot move into place", target, e)),
        }
    }

    /// Moves the entry onto `target`, atomically replacing what is there (a stored blob
    /// that failed verification: the good bytes take its place in one step), without
    /// the directory fsync (see [`TempEntry::persist_unsynced`]).
    pub(crate) fn persist_replacing_unsynced(mut self, target: &Path) -> Result<()> {
        fs::rename(&self.path, target)
            .map_err(|e| Error::io("cannot move into place", target, e))?;
        self.persisted = true;
        Ok(())
    }
}

/// Flushes every dirty page and the journal of the filesystem holding `path` (syncfs):
/// one barrier for many files, where a fsync each would commit the journal each time.
pub(crate) fn sync_filesystem(path: &Path) -> Result<()> {
    let handle = File::open(path).map_err(|e| Error::io("cannot open", path, e))?;
    // SAFETY: syncfs on a descriptor we own; no memory is passed.
    if unsafe { libc::syncfs(handle.as_raw_fd()) } != 0 {
        return Err(Error::io(
            "cannot sync",
            path,
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// A file written under the store's tmp dir but not yet synced or moved into place:
/// the caller syncs the filesystem, then [`Staged::replace`] renames it over its target.
pub(crate) struct Staged {
    entry: TempEntry,
}

impl Staged {
    pub(crate) fn write(store: &Store, bytes: &[u8]) -> Result<Staged> {
        let (entry, mut file) = TempEntry::new_file(store, "write")?;
        file.write_all(bytes)
            .map_err(|e| Error::io("cannot write", entry.path(), e))?;
        Ok(Staged { entry })
    }

    /// Renames the (synced) file over `target`; the caller syncs the filesystem after.
    pub(crate) fn replace(self, target: &Path) -> Result<()> {
        self.entry.persist_replacing_unsynced(target)
    }

    /// Renames the (synced) file to `target` unless something is there already (then
    /// the staged file is dropped); the caller syncs the filesystem after.
    pub(crate) fn place(self, target: &Path) -> Result<()> {
        self.entry.persist_unsynced(target).map(drop)
    }
}

impl Drop for TempEntry {
    fn drop(&mut self) {
        if !self.persisted {
            remove_any(&self.path);
        }
        self.lock.take();
    }
}

/// Removes a file or a whole tree, ignoring a missing path. Used for cleanup, where the
/// first error already reported is the one that matters.
pub(crate) fn remove_any(path: &Path) {
    match path.symlink_metadata() {
        Ok(meta) if meta.is_dir() => {
            let _ = fs::remove_dir_all(path);
        }
        Ok(_) => {
            let _ = fs::remove_file(path);
        }
        Err(_) => {}
    }
}

/// rename(2) that fails with EEXIST instead of replacing: two writers racing to store
/// the same content both succeed, and the first one's copy stays.
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let from_c = CString::new(from.as_os_str().as_bytes())?;
    let to_c = CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: both pointers are valid NUL-terminated strings for the duration of the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from_c.as_ptr(),
            libc::AT_FDCWD,
            to_c.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// fsyncs the directory holding `path`, so that a rename into it survives a crash.
pub(crate) fn sync_parent(path: &Path) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let dir = File::open(parent).map_err(|e| Error::io("cannot open", parent, e))?;
    dir.sync_all()
        .map_err(|e| Error::io("cannot sync", parent, e))
}

/// Replaces `target` with `bytes` atomically: temp file in the store, fsync, rename.
pub(crate) fn write_atomic(store: &Store, target: &Path, bytes: &[u8]) -> Result<()> {
    replace(store, target, bytes, true)
}

/// Replaces `target` atomically without waiting for the disk: readers see the old or
/// the new content, never a mix, but a power cut may lose the change. For records
/// whose loss costs a recomputation at most, on paths that run on every container start.
pub(crate) fn write_atomic_volatile(store: &Store, target: &Path, bytes: &[u8]) -> Result<()> {
    replace(store, target, bytes, false)
}

fn replace(store: &Store, target: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    let (entry, mut file) = TempEntry::new_file(store, "write")?;
    file.write_all(bytes)
        .and_then(|_| if durable { file.sync_all() } else { Ok(()) })
        .map_err(|e| Error::io("cannot write", entry.path(), e))?;
    let mut entry = entry;
    fs::rename(&entry.path, target).map_err(|e| Error::io("cannot replace", target, e))?;
    entry.persisted = true;
    if durable {
        sync_parent(target)?;
    }
    Ok(())
}

fn unique_name(kind: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{kind}-{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
