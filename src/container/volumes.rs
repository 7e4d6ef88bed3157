//! Named and anonymous volumes: `<root>/volumes/<name>/{volume.json,_data}`, Docker's
//! "local" driver. A volume is born complete (made under a hidden name, renamed into
//! place). Who uses a volume is read from the records' config.json (a bind of its
//! `_data`), so a record, running or not, keeps its volumes; `<root>/volumes/.lock` is
//! held by every command that creates, removes or starts using one, so `run` cannot
//! pick a volume that `volume rm` is deleting.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::ErrorKind;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::fscopy;
use super::paths::containers_dir;
use super::privmount::{self, View};
use super::spec::{RunOptions, Volume, VolumeSource};

/// What `volume.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub name: String,
    /// Unix seconds.
    pub created_at: u64,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Made for one container (an image's VOLUME, `-v /path`): removed with it by
    /// `rm -v` and `--rm`, and by a plain `volume prune`.
    #[serde(default)]
    pub anonymous: bool,
}

/// Docker's `volume inspect` view.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Inspect {
    pub created_at: String,
    pub driver: &'static str,
    pub labels: BTreeMap<String, String>,
    pub mountpoint: String,
    pub name: String,
    pub options: BTreeMap<String, String>,
    pub scope: &'static str,
}

pub fn volumes_dir(root: &Path) -> PathBuf {
    root.join("volumes")
}

/// Where the content of volume `name` lives (what containers bind-mount).
pub fn mountpoint(root: &Path, name: &str) -> PathBuf {
    volumes_dir(root).join(name).join("_data")
}

/// Docker's rule for volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn validate_name(name: &str) -> anyhow::Result<()> {
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric());
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !first_ok || !rest_ok || name.len() < 2 || name.len() > 255 {
        bail!(
            "invalid volume name {name:?}: use at least two of [a-zA-Z0-9_.-], starting with a letter or digit"
        );
    }
    Ok(())
}

/// The exclusive lock over all volumes; released on drop (or when the process dies).
pub struct VolumesLock(#[allow(dead_code)] fs::File);

pub fn lock(root: &Path) -> anyhow::Result<VolumesLock> {
    let dir = volumes_dir(root);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(".lock");
    let file = mycontainer_store::open_lock_file(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot lock {}", path.display()));
    }
    // A volume being made or deleted exists only while its maker holds this lock: any
    // left now belongs to a command that was killed.
    if let Ok(entries) = fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".new-") || name.starts_with(".rm-") {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
    Ok(VolumesLock(file))
}

fn random_name() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    // SAFETY: getrandom writes at most bytes.len() bytes into the buffer we own.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        bail!("cannot read random bytes for a volume name");
    }
    Ok(hex::encode(bytes))
}

/// The volume `name`, None when there is none.
pub fn get(root: &Path, name: &str) -> anyhow::Result<Option<Meta>> {
    if validate_name(name).is_err() {
        return Ok(None);
    }
    let path = volumes_dir(root).join(name).join("volume.json");
    match fs::read(&path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
            format!("{} is corrupt: remove the volume", path.display())
        })?)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Creates volume `name` (a random one when None), or returns the existing one of that
/// name (as `docker volume create` does). The caller holds [`lock`].
pub fn create(
    root: &Path,
    _lock: &VolumesLock,
    name: Option<&str>,
    labels: BTreeMap<String, String>,
    anonymous: bool,
) -> anyhow::Result<Meta> {
    let name = match name {
        Some(n) => {
            validate_name(n)?;
            if let Some(existing) = get(root, n)? {
                return Ok(existing);
            }
            n.to_string()
        }
        None => random_name()?,
    };
    let meta = Meta {
        name: name.clone(),
        created_at: super::state::now_unix(),
        labels,
        anonymous,
    };
    let dir = volumes_dir(root);
    let unborn = dir.join(format!(".new-{name}"));
    let _ = fs::remove_dir_all(&unborn);
    let made = (|| -> anyhow::Result<()> {
        fs::DirBuilder::new().mode(0o700).create(&unborn)?;
        let data = unborn.join("_data");
        fs::DirBuilder::new().mode(0o755).create(&data)?;
        fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        let file = super::write_private(
            &unborn.join("volume.json"),
            &serde_json::to_vec_pretty(&meta)?,
        )?;
        file.sync_all()?;
        fs::rename(&unborn, dir.join(&name))?;
        Ok(())
    })();
    if let Err(err) = made {
        let _ = fs::remove_dir_all(&unborn);
        return Err(err).with_context(|| format!("cannot create volume {name}"));
    }
    Ok(meta)
}

/// Every volume, by name.
pub fn list(root: &Path) -> anyhow::Result<Vec<Meta>> {
    let dir = volumes_dir(root);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut all = Vec::new();
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if let Some(meta) = get(root, &name)? {
            all.push(meta);
        }
    }
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(all)
}

pub fn inspect(root: &Path, meta: &Meta) -> Inspect {
    Inspect {
        created_at: crate::timefmt::rfc3339_seconds(meta.created_at),
        driver: "local",
        labels: meta.labels.clone(),
        mountpoint: mountpoint(root, &meta.name).display().to_string(),
        name: meta.name.clone(),
        options: BTreeMap::new(),
        scope: "local",
    }
}

/// The volumes named in the mounts of a container's config.json.
fn volumes_of_config(root: &Path, config: &Path) -> BTreeSet<String> {
    let Ok(bytes) = fs::read(config) else {
        return BTreeSet::new();
    };
    let Ok(spec) = serde_json::from_slice::<oci_spec::runtime::Spec>(&bytes) else {
        return BTreeSet::new();
    };
    let base = volumes_dir(root);
    spec.mounts()
        .iter()
        .flatten()
        .filter_map(|m| {
            let source = m.source().as_ref()?;
            let rest = source.strip_prefix(&base).ok()?;
            let mut parts = rest.components();
            let name = parts.next()?.as_os_str().to_str()?.to_string();
            (parts.next()?.as_os_str() == "_data").then_some(name)
        })
        .collect()
}

/// The volumes the record in `dir` mounts.
pub fn volumes_of_record(root: &Path, dir: &Path) -> BTreeSet<String> {
    volumes_of_config(root, &dir.join("config.json"))
}

/// Volume name -> ids of the containers (running or not) that mount it.
pub fn users(root: &Path) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for id in super::record::list_ids(root)? {
        let dir = containers_dir(root).join(&id);
        for name in volumes_of_record(root, &dir) {
            users.entry(name).or_default().push(id.clone());
        }
    }
    Ok(users)
}

/// Why a volume cannot be removed.
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    #[error("no such volume: {0}")]
    Missing(String),
    #[error("volume {name} is in use by container {}: remove the container first", &.users[0][..12])]
    InUse { name: String, users: Vec<String> },
}

/// Removes volume `name` unless a container uses it. The caller holds [`lock`].
pub fn remove(root: &Path, _lock: &VolumesLock, name: &str) -> anyhow::Result<()> {
    if get(root, name)?.is_none() {
        return Err(RemoveError::Missing(name.to_string()).into());
    }
    if let Some(users) = users(root)?.remove(name) {
        return Err(RemoveError::InUse {
            name: name.to_string(),
            users,
        }
        .into());
    }
    delete(root, name)
}

/// Deletes the directory of volume `name`: renamed away first, so a half-deleted
/// volume is never seen under its name.
fn delete(root: &Path, name: &str) -> anyhow::Result<()> {
    let dir = volumes_dir(root).join(name);
    let doomed = volumes_dir(root).join(format!(".rm-{name}"));
    fs::rename(&dir, &doomed).with_context(|| format!("cannot remove volume {name}"))?;
    fs::remove_dir_all(&doomed).with_context(|| format!("cannot remove {}", doomed.display()))
}

/// Removes the volumes no container uses: anonymous ones, or all with `all`. Returns
/// the names removed and the bytes they held.
pub fn prune(root: &Path, all: bool) -> anyhow::Result<(Vec<String>, u64)> {
    let lock = lock(root)?;
    let users = users(root)?;
    let mut removed = Vec::new();
    let mut bytes = 0;
    for meta in list(root)? {
        if users.contains_key(&meta.name) || !(all || meta.anonymous) {
            continue;
        }
        bytes += disk_usage(&mountpoint(root, &meta.name));
        remove(root, &lock, &meta.name)?;
        removed.push(meta.name);
    }
    Ok((removed, bytes))
}

/// Removes the anonymous volumes among `names` that no container uses any more (after
/// `rm -v` or `--rm` deleted their container).
pub fn remove_anonymous(root: &Path, names: &BTreeSet<String>) -> anyhow::Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let lock = lock(root)?;
    let users = users(root)?;
    for name in names {
        if users.contains_key(name) {
            continue;
        }
        if get(root, name)?.is_some_and(|m| m.anonymous) {
            remove(root, &lock, name)?;
        }
    }
    Ok(())
}

/// Bytes used by the files under `dir` (not following symlinks).
pub fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.filter_map(|e| e.ok()) {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total += meta.blocks() * 512;
            }
        }
    }
    total
}

/// Copies what the image has at `path` into the empty volume directory `data` (owners,
/// modes and times kept, the directory's own included), as Docker does the first time
/// a volume is mounted over image content. The image is mounted read-only on
/// `mountpoint` in a private mount namespace; `path` is resolved inside it.
pub fn fill_from_image(
    lowerdirs: &[PathBuf],
    mountpoint: &Path,
    path: &Path,
    data: &Path,
) -> anyhow::Result<()> {
    let data_fd: OwnedFd = fs::File::open(data)
        .with_context(|| format!("cannot open {}", data.display()))?
        .into();
    if !fscopy::is_empty(&data_fd)? {
        return Ok(());
    }
    let view = View {
        lowerdirs,
        upper: None,
        mountpoint,
        binds: Vec::new(),
    };
    privmount::with_view(view, |root| {
        use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
        let relative = path.strip_prefix("/").unwrap_or(path);
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let source = match openat2(root, relative, how) {
            Ok(fd) => fd,
            // Nothing (or no directory) there in the image: the volume stays empty.
            Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => return Ok(()),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot open {} in the image", path.display()))
            }
        };
        fscopy::copy_contents(&source, &data_fd, fscopy::Rules::KEEP)?;
        let st = fscopy::stat(&source)?;
        fscopy::apply_meta(&data_fd, &st, fscopy::Rules::KEEP)?;
        Ok(())
    })
    .with_context(|| format!("cannot copy the image's {} into its volume", path.display()))
}

/// Gives every volume of `opts` its directory: finds or creates the named ones, makes
/// the anonymous ones (`-v /path`, and one per image `VOLUME` path no mount covers), and
/// fills each empty one from the image (`lowerdirs`, mounted privately on `merged`).
/// Returns the lock, to hold until the container's config.json names the volumes, and
/// the anonymous volumes made (removed again on failure).
pub fn attach(
    root: &Path,
    merged: &Path,
    lowerdirs: &[PathBuf],
    opts: &mut RunOptions,
    image_volumes: &[String],
) -> anyhow::Result<(VolumesLock, BTreeSet<String>)> {
    for path in image_volumes {
        let path = Path::new(path);
        if !path.is_absolute() || path == Path::new("/") {
            continue;
        }
        let covered = opts.volumes.iter().any(|v| v.container == path)
            || opts
                .tmpfs
                .iter()
                .any(|t| Path::new(t.split(':').next().unwrap_or("")) == path);
        if !covered {
            opts.volumes.push(Volume {
                host: PathBuf::new(),
                container: path.to_path_buf(),
                read_only: false,
                source: VolumeSource::Anonymous,
                no_copy: false,
            });
        }
    }
    let lock = lock(root)?;
    let mut made = BTreeSet::new();
    let result = (|| -> anyhow::Result<()> {
        for volume in opts.volumes.iter_mut() {
            let name = match &volume.source {
                VolumeSource::Bind => continue,
                VolumeSource::Named(name) => {
                    create(root, &lock, Some(name), BTreeMap::new(), false)?.name
                }
                VolumeSource::Anonymous => {
                    let name = create(root, &lock, None, BTreeMap::new(), true)?.name;
                    made.insert(name.clone());
                    name
                }
            };
            volume.host = mountpoint(root, &name);
            if !volume.no_copy {
                fill_from_image(lowerdirs, merged, &volume.container, &volume.host)?;
            }
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok((lock, made)),
        Err(err) => {
            for name in &made {
                let _ = delete(root, name);
            }
            Err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        assert!(validate_name("data").is_ok());
        assert!(validate_name("a.b_c-1").is_ok());
        assert!(validate_name("a").is_err());
        assert!(validate_name(".lock").is_err());
        assert!(validate_name("../x").is_err());
        assert!(validate_name("a/b").is_err());
    }

    #[test]
    fn create_is_idempotent_and_remove_deletes() {
        let root = tempfile::tempdir().unwrap();
        let l = lock(root.path()).unwrap();
        let mut labels = BTreeMap::new();
        labels.insert("k".to_string(), "v".to_string());
        let a = create(root.path(), &l, Some("data"), labels, false).unwrap();
        let b = create(root.path(), &l, Some("data"), BTreeMap::new(), false).unwrap();
        assert_eq!(a.created_at, b.created_at);
        assert_eq!(b.labels.get("k").map(String::as_str), Some("v"));
        assert!(mountpoint(root.path(), "data").is_dir());
        assert_eq!(list(root.path()).unwrap().len(), 1);
        remove(root.path(), &l, "data").unwrap();
        assert!(list(root.path()).unwrap().is_empty());
        let err = remove(root.path(), &l, "data").unwrap_err();
        assert!(err.to_string().contains("no such volume"), "{err}");
        drop(l);
        // What a killed create or rm left is cleared by the next lock.
        for stale in [".new-x", ".rm-y"] {
            fs::create_dir_all(volumes_dir(root.path()).join(stale).join("_data")).unwrap();
        }
        let _l = lock(root.path()).unwrap();
        let left: Vec<_> = fs::read_dir(volumes_dir(root.path()))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, [".lock"]);
    }
}
