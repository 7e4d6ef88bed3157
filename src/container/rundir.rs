//! The run directory: what need not survive a reboot, on a tmpfs (Docker's exec-root and
//! Podman's runroot play this part), so a run's short-lived files cost no disk journal.
//!
//! `/run/mycontainer/<key>/` (the key is the state root's, see `paths::root_key`;
//! `MYCONTAINER_RUNROOT` replaces `/run/mycontainer`):
//! - `containers/<id>/`: the generated /etc/hostname, /etc/hosts and /etc/resolv.conf
//!   bind-mounted into the container, and its init layer (`init/`, Docker's: the lowest
//!   overlay layer). Written when the record is created (what `cp` and `diff` of a
//!   stopped container see), again after a reboot, from the record's config.json, as
//!   Podman does; and at each start into a tmpfs of the container's own mounted there
//!   while it runs (`start_files`, see `etcfs`).
//! - `live/<id>`: an empty marker per container that may be running (its state is not
//!   "exited", or it has no state yet). The orphan reclaim before every command looks at
//!   these records only, so its cost does not grow with the exited ones.
//! - `swept`: made once a reclaim has looked at every record. A run directory without
//!   it (fresh after a reboot, which took every marker) makes the next reclaim look at
//!   all records once.
//! - `root`: a symlink to the state root, so `gc` can remove run directories whose state
//!   root is gone and that hold no live marker (a root only another mount namespace
//!   sees looks gone too).
//!
//! Records, logs, layers and the container's upper dir stay under the state root.
//! When `/run/mycontainer` is not on a tmpfs (a system without systemd), a tmpfs is
//! mounted there on first use.

use std::fs;
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{symlink, DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Replaces [`DEFAULT_BASE`] (tests, and systems whose /run is elsewhere).
pub const ENV: &str = "MYCONTAINER_RUNROOT";
/// Where run directories live by default.
pub const DEFAULT_BASE: &str = "/run/mycontainer";

fn base() -> (PathBuf, bool) {
    match std::env::var_os(ENV).filter(|v| !v.is_empty()) {
        Some(base) => (PathBuf::from(base), false),
        None => (PathBuf::from(DEFAULT_BASE), true),
    }
}

/// The run directory of the state root `root` (which may not exist yet).
pub fn dir(root: &Path) -> PathBuf {
    // Unit tests make records in temporary state roots: their run directories go inside
    // them, and with them.
    if cfg!(test) && std::env::var_os(ENV).is_none() {
        return root.join(".run");
    }
    base().0.join(super::paths::root_key(root))
}

/// Container `id`'s directory in the run directory of `root`.
pub fn container_dir(root: &Path, id: &str) -> PathBuf {
    dir(root).join("containers").join(id)
}

fn live_dir(root: &Path) -> PathBuf {
    dir(root).join("live")
}

fn live_marker(root: &Path, id: &str) -> PathBuf {
    live_dir(root).join(id)
}

fn mkdir_private(path: &Path) -> anyhow::Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Err(err) if err.kind() != ErrorKind::AlreadyExists => {
            Err(err).with_context(|| format!("cannot create {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Makes the run directory of `root` (and the tmpfs under the default base when that is
/// on a disk) and returns it.
pub fn ensure(root: &Path) -> anyhow::Result<PathBuf> {
    let (base, default) = base();
    let dir = dir(root);
    if dir.join("live").is_dir() {
        if !(cfg!(test) && std::env::var_os(ENV).is_none()) {
            check_private(&base)?;
        }
        return Ok(dir);
    }
    if cfg!(test) && std::env::var_os(ENV).is_none() {
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    } else if default {
        mount_tmpfs(&base)?;
    } else {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&base)
            .with_context(|| format!("cannot create the run directory {}", base.display()))?;
    }
    if !(cfg!(test) && std::env::var_os(ENV).is_none()) {
        check_private(&base)?;
    }
    mkdir_private(&dir)?;
    let link = dir.join("root");
    if let Err(err) = symlink(root, &link) {
        if err.kind() != ErrorKind::AlreadyExists {
            return Err(err).with_context(|| format!("cannot create {}", link.display()));
        }
    }
    mkdir_private(&dir.join("containers"))?;
    mkdir_private(&dir.join("live"))?;
    Ok(dir)
}

/// `<base>/<name>`, made (0700, with the tmpfs under the default base) if missing: state
/// that is not one state root's but the whole host's or one network namespace's (the
/// default network's leases, `network/shared.rs`). No `root` link: `collect_vanished`
/// never takes it for a run directory.
pub(crate) fn shared_dir(name: &Path) -> anyhow::Result<PathBuf> {
    let (base, default) = base();
    let dir = base.join(name);
    if dir.is_dir() {
        check_private(&base)?;
        return Ok(dir);
    }
    if default {
        mount_tmpfs(&base)?;
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&base)
        .with_context(|| format!("cannot create the run directory {}", base.display()))?;
    check_private(&base)?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Fails unless the run base is ours and no one else may write in it. Another user who
/// can plant entries there (`MYCONTAINER_RUNROOT` on a shared directory) could swap a
/// container's generated /etc/hosts for a link to a host file, which the start then
/// bind-mounts into the container, or put their own leases and attachment records.
fn check_private(base: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(base).with_context(|| format!("cannot stat {}", base.display()))?;
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != euid || meta.mode() & 0o022 != 0 {
        anyhow::bail!(
            "the run directory {} (uid {}, mode {:o}) is open to other users, who could plant files in it: set {ENV} to a directory of uid {euid} that only it may write",
            base.display(),
            meta.uid(),
            meta.mode() & 0o7777
        );
    }
    Ok(())
}

/// When `err` is a full filesystem (ENOSPC, EDQUOT) met in the run directory (every
/// error on a path names it): what to say instead of blaming the disk of the state root.
pub fn full_hint(err: &anyhow::Error) -> Option<String> {
    let full = err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .and_then(|e| e.raw_os_error())
            .or_else(|| {
                cause
                    .downcast_ref::<nix::errno::Errno>()
                    .map(|errno| *errno as i32)
            })
            .is_some_and(|raw| raw == libc::ENOSPC || raw == libc::EDQUOT)
    });
    let base = base().0;
    let base = base.to_string_lossy();
    if !full || !format!("{err:#}").contains(base.as_ref()) {
        return None;
    }
    Some(format!(
        "the run directory {base} is full: remove containers no longer needed (rm, then gc) or give its tmpfs more room, and try again"
    ))
}

/// Where [`shared_dir`] puts `name` (made or not).
pub(crate) fn shared_path(name: &Path) -> PathBuf {
    base().0.join(name)
}

/// Mounts a tmpfs of our own on `base` unless one is there already; under a lock on the
/// directory below, so two first commands never stack two mounts (the second would
/// hide the first's files). Our own even where /run is a tmpfs (systemd): container
/// root can grow the /etc files bind-mounted from here, and may so fill at most these
/// 64 MiB, never the host's /run. A non-empty `base` on another tmpfs (made by an
/// older version, whose containers may still run) is used as it is.
fn mount_tmpfs(base: &Path) -> anyhow::Result<()> {
    use nix::sys::statfs::{statfs, TMPFS_MAGIC};
    use std::os::unix::fs::MetadataExt;
    let on_tmpfs = |path: &Path| statfs(path).is_ok_and(|fs| fs.filesystem_type() == TMPFS_MAGIC);
    let parent = base.parent().unwrap_or(Path::new("/"));
    let dev = |path: &Path| fs::metadata(path).map(|m| m.dev()).ok();
    let ours = || on_tmpfs(base) && dev(base) != dev(parent);
    if ours() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(base)
        .with_context(|| format!("cannot create the run directory {}", base.display()))?;
    let below = fs::File::open(base).with_context(|| format!("cannot open {}", base.display()))?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    if unsafe { libc::flock(below.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot lock {}", base.display()));
    }
    let in_use = fs::read_dir(base).is_ok_and(|mut entries| entries.next().is_some());
    if ours() || (on_tmpfs(base) && in_use) {
        return Ok(());
    }
    use nix::mount::{mount, MsFlags};
    mount(
        Some("mycontainer"),
        base,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=0700,size=64m"),
    )
    .with_context(|| {
        format!(
            "cannot mount a tmpfs on {} for the run directory: set {ENV} to a directory on a tmpfs",
            base.display()
        )
    })
}

/// Called by `record::create` between the hidden record's mkdir and its rename into
/// place: the record's run directory and its live marker (so a creator killed after the
/// rename leaves a record the next reclaim looks at).
pub(super) fn create_for_record(root: &Path, id: &str) -> anyhow::Result<()> {
    ensure(root)?;
    mark_live(root, id)?;
    mkdir_private(&container_dir(root, id))
}

/// Whether the containers' own tmpfs are used: not in unit tests, whose run directories
/// are plain directories inside their temporary state roots.
fn etc_tmpfs() -> bool {
    !(cfg!(test) && std::env::var_os(ENV).is_none())
}

/// Detaches the tmpfs of record `id` (its /etc files, see `etcfs`), if mounted: for a
/// record about to be removed, whose container no longer runs.
pub(super) fn detach_etc(root: &Path, id: &str) -> anyhow::Result<()> {
    super::etcfs::unmount(&container_dir(root, id))
}

/// Removes what the run directory holds for record `id` (its marker last).
pub(super) fn remove_for_record(root: &Path, id: &str) -> anyhow::Result<()> {
    let dir = container_dir(root, id);
    super::etcfs::unmount(&dir)?;
    match fs::remove_dir_all(&dir) {
        Err(err) if err.kind() != ErrorKind::NotFound => {
            return Err(err).with_context(|| format!("cannot remove {}", dir.display()))
        }
        _ => {}
    }
    unmark_live(root, id)
}

/// `gc`: detaches and removes the run-directory entries of this root whose record is
/// gone yet whose tmpfs is still mounted (a record deleted by hand, or lost, while its
/// container ran and its supervisor was killed); returns their ids. Only mounted entries
/// count: a record being created has its entry before the record is in place, but the
/// tmpfs is mounted only at a start, which needs the record.
pub(super) fn collect_recordless(root: &Path) -> anyhow::Result<Vec<String>> {
    let containers = dir(root).join("containers");
    let entries = match fs::read_dir(&containers) {
        Ok(entries) => entries,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => {
            return Err(err).with_context(|| format!("cannot list {}", containers.display()))
        }
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let Some(id) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let recorded = super::paths::containers_dir(root).join(&id).exists();
        if !recorded && super::etcfs::mounted(&entry.path()) {
            remove_for_record(root, &id)?;
            removed.push(id);
        }
    }
    Ok(removed)
}

/// Marks container `id` as one that may run (before its state says so).
pub(super) fn mark_live(root: &Path, id: &str) -> anyhow::Result<()> {
    let marker = live_marker(root, id);
    let made = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&marker);
    match made {
        // Touched each time: gc of a root it cannot see keeps a marker this young
        // (`MARKER_GRACE`) even before the container's cgroup exists.
        Ok(file) => file
            .set_modified(std::time::SystemTime::now())
            .with_context(|| format!("cannot touch {}", marker.display())),
        Err(err) if err.kind() == ErrorKind::NotFound => {
            // After a reboot: the run directory is made again.
            ensure(root)?;
            fs::File::create(&marker)
                .map(drop)
                .with_context(|| format!("cannot create {}", marker.display()))
        }
        Err(err) => Err(err).with_context(|| format!("cannot create {}", marker.display())),
    }
}

/// Drops the marker of container `id` (after its state says "exited"), and first
/// detaches the tmpfs its run held (see `etcfs`): a command killed in between leaves the
/// marker, so the next reclaim comes here again.
pub(super) fn unmark_live(root: &Path, id: &str) -> anyhow::Result<()> {
    if etc_tmpfs() {
        super::etcfs::unmount(&container_dir(root, id))?;
    }
    let marker = live_marker(root, id);
    match fs::remove_file(&marker) {
        Err(err) if err.kind() != ErrorKind::NotFound => {
            Err(err).with_context(|| format!("cannot remove {}", marker.display()))
        }
        _ => Ok(()),
    }
}

/// The ids marked live, or None when no reclaim has looked at every record since the
/// run directory was made (after a reboot): then every record must be looked at.
pub(super) fn marked_live(root: &Path) -> anyhow::Result<Option<Vec<String>>> {
    let dir = dir(root);
    if !dir.join("swept").exists() {
        return Ok(None);
    }
    let live = dir.join("live");
    let entries = match fs::read_dir(&live) {
        Ok(entries) => entries,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("cannot list {}", live.display())),
    };
    Ok(Some(
        entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
    ))
}

/// Whether container `id` is marked live (one `stat`).
pub(super) fn is_marked_live(root: &Path, id: &str) -> bool {
    fs::symlink_metadata(live_marker(root, id)).is_ok()
}

/// Whether a reclaim looked at every record since the run directory was made (see
/// [`marked_live`]).
pub(super) fn is_swept(root: &Path) -> bool {
    let dir = dir(root);
    dir.join("swept").exists() && dir.join("live").is_dir()
}

/// Records that a reclaim looked at every record (see [`marked_live`]).
pub(super) fn mark_swept(root: &Path) -> anyhow::Result<()> {
    let dir = ensure(root)?;
    let swept = dir.join("swept");
    fs::File::create(&swept)
        .map(drop)
        .with_context(|| format!("cannot create {}", swept.display()))
}

/// Docker's init layer, below the image's layers so that whatever the image has wins:
/// `/etc/mtab -> /proc/mounts` (`df` and `mount` read it), and empty /etc/hostname,
/// /etc/hosts and /etc/resolv.conf for the etc files' bind mounts to land on (else the
/// runtime makes them in the upper dir, on disk, at every start). Below the image, an
/// image's own files, or an /etc that is a symlink, hide it; and `commit`, which takes
/// only the upper dir, never carries it into a new image. Made again when missing (the
/// mtab link, made last, says it is complete).
pub(super) fn init_layer(record: &super::Record) -> anyhow::Result<PathBuf> {
    let dir = record.init_dir();
    let etc = dir.join("etc");
    let mtab = etc.join("mtab");
    if fs::symlink_metadata(&mtab).is_ok() {
        return Ok(dir);
    }
    for d in [&dir, &etc] {
        match fs::DirBuilder::new().mode(0o755).create(d) {
            Err(err) if err.kind() != ErrorKind::AlreadyExists => {
                return Err(err).with_context(|| format!("cannot create {}", d.display()))
            }
            _ => {}
        }
        // The mode as given, whatever the umask.
        fs::set_permissions(d, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot set the mode of {}", d.display()))?;
    }
    for name in super::spec::ETC_FILES {
        let stub = etc.join(name);
        fs::write(&stub, "").with_context(|| format!("cannot create {}", stub.display()))?;
        fs::set_permissions(&stub, fs::Permissions::from_mode(0o644))
            .with_context(|| format!("cannot set the mode of {}", stub.display()))?;
    }
    symlink("/proc/mounts", &mtab).with_context(|| format!("cannot create {}", mtab.display()))?;
    Ok(dir)
}

/// Before a start: the record's run files as its config.json names them, written again
/// when gone (a reboot emptied the run directory since the record was made).
pub(super) fn restore(
    record: &super::Record,
    spec: &oci_spec::runtime::Spec,
) -> anyhow::Result<()> {
    let root = super::paths::root_of_record(&record.dir);
    let dir = container_dir(root, &record.id);
    let complete = super::spec::ETC_FILES
        .iter()
        .all(|name| dir.join(name).exists())
        && fs::symlink_metadata(record.init_dir().join("etc/mtab")).is_ok();
    if complete {
        return Ok(());
    }
    ensure(root)?;
    mkdir_private(&dir)?;
    write_from_spec(record, spec)
}

/// At each start (the first, a `start`, a restart): the container's own tmpfs (see
/// `etcfs`) mounted on its run directory, and its init layer and etc files written into
/// it from its config.json, as Docker writes hosts and resolv.conf at each start. What
/// the container wrote into them during a run is gone at the next. The tmpfs is
/// detached once the state says "exited" (`unmark_live`) or the record goes, so an
/// exited or created container holds no mount. Marked live first: a command killed
/// after the mount leaves a marker for the reclaim, which detaches it.
pub(super) fn start_files(
    record: &super::Record,
    spec: &oci_spec::runtime::Spec,
) -> anyhow::Result<()> {
    let root = super::paths::root_of_record(&record.dir);
    let dir = container_dir(root, &record.id);
    ensure(root)?;
    mark_live(root, &record.id)?;
    mkdir_private(&dir)?;
    if etc_tmpfs() {
        super::etcfs::mount(&dir)?;
    }
    write_from_spec(record, spec)
}

/// Writes the record's init layer and etc files as its config.json says.
fn write_from_spec(record: &super::Record, spec: &oci_spec::runtime::Spec) -> anyhow::Result<()> {
    let root = super::paths::root_of_record(&record.dir);
    let dir = container_dir(root, &record.id);
    init_layer(record)?;
    let annotations = spec.annotations().clone().unwrap_or_default();
    let annotation = |key: &str| annotations.get(key).cloned().unwrap_or_default();
    let host = annotation(super::spec::ANNOTATION_NETWORK_MODE) == "host";
    let dns: Vec<String> = annotation(super::network::ANNOTATION_DNS)
        .split(',')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let add_hosts: Vec<(String, String)> = annotation(super::network::ANNOTATION_EXTRA_HOSTS)
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(n, ip)| (n.to_string(), ip.to_string()))
        .collect();
    let hostname = spec.hostname().clone().unwrap_or_default();
    write_etc_files(&dir, &hostname, host, &dns, &add_hosts)
}

/// Writes the files the spec bind-mounts over /etc/{hostname,hosts,resolv.conf} into
/// `dir`: with the host's network, its hosts and resolv.conf files; else a loopback
/// hosts file (a bridge network adds the container's address at each start) and the
/// host's resolv.conf as Docker filters it (or `--dns`).
pub(super) fn write_etc_files(
    dir: &Path,
    hostname: &str,
    host_network: bool,
    dns: &[String],
    add_hosts: &[(String, String)],
) -> anyhow::Result<()> {
    let (mut hosts, resolv) = if host_network {
        (
            fs::read_to_string("/etc/hosts").unwrap_or_default(),
            fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        )
    } else {
        (
            super::network::hosts::render(hostname, None, &[], &[]),
            super::network::resolv_conf(dns),
        )
    };
    for (name, ip) in add_hosts {
        hosts.push_str(&format!("{ip}\t{name}\n"));
    }
    let contents = [format!("{hostname}\n"), hosts, resolv];
    for (name, content) in super::spec::ETC_FILES.iter().zip(contents) {
        let path = dir.join(name);
        fs::write(&path, content).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// `gc`: removes the run directories (under this base) whose state root is gone; returns
/// their keys (`paths::root_key`), whose cgroups the caller may then remove.
///
/// "Gone" can only mean "not visible from here": a state root on a mount that only
/// another mount namespace sees looks gone too, while its containers run. So a run
/// directory is kept while `still_runs(key)` (a cgroup of that root holds a process) or
/// while it holds a live marker younger than `MARKER_GRACE` (a start in progress, before
/// its cgroup exists); what is removed holds only files a start writes again, as after a
/// reboot. An older marker alone no longer keeps it: it is what a container killed with
/// its supervisor, or a root deleted under a running CLI, leaves, and kept forever it
/// kept the directory, its mounts and the root's cgroups forever. The directory is first
/// moved aside and looked at once more, so a run that marked itself live between the
/// first look and the move keeps it.
///
/// Every state root's `gc` sweeps the same base, so two may run at once (two users, or
/// parallel test runs): they take turns under a lock on the base directory. Otherwise
/// one would find the other's directory moved aside, and fail on it "busy" (its
/// namespaces not yet detached) or "not found" (already removed).
pub fn collect_vanished(still_runs: &dyn Fn(&str) -> bool) -> anyhow::Result<Vec<String>> {
    let (base, _) = base();
    let turn = match fs::File::open(&base) {
        Ok(dir) => dir,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err).with_context(|| format!("cannot open {}", base.display())),
    };
    turn.lock()
        .with_context(|| format!("cannot lock {}", base.display()))?;
    let entries = fs::read_dir(&base).with_context(|| format!("cannot list {}", base.display()))?;
    let mut removed = Vec::new();
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        let dir = entry.path();
        if let Some(key) = name.strip_prefix(ASIDE_PREFIX) {
            // Left by a gc killed between the move and the removal.
            if remove_aside_or_warn(&dir, &base.join(key), &|d| in_use(d, key, still_runs)) {
                removed.push(key.to_string());
            }
            continue;
        }
        let Ok(root) = fs::read_link(dir.join("root")) else {
            continue;
        };
        if fs::symlink_metadata(&root).is_ok() || in_use(&dir, name, still_runs) {
            continue;
        }
        let aside = base.join(format!("{ASIDE_PREFIX}{name}"));
        match fs::rename(&dir, &aside) {
            Ok(()) => {}
            Err(err) if err.kind() == ErrorKind::NotFound => continue,
            Err(err) => {
                return Err(err).with_context(|| format!("cannot move {} aside", dir.display()))
            }
        }
        if remove_aside_or_warn(&aside, &dir, &|d| in_use(d, name, still_runs)) {
            removed.push(name.to_string());
        }
    }
    Ok(removed)
}

/// A live marker this young keeps a vanished root's run directory whatever its cgroups
/// say (see [`collect_vanished`]): a start marks itself live (and touches the marker
/// again at each state it writes) before its cgroup exists.
const MARKER_GRACE: std::time::Duration = std::time::Duration::from_secs(120);

/// Whether the run directory `dir` of the vanished root `key` may still serve a
/// container: a young live marker, or a process in one of the root's cgroups.
fn in_use(dir: &Path, key: &str, still_runs: &dyn Fn(&str) -> bool) -> bool {
    holds_young_marker(dir) || still_runs(key)
}

/// [`remove_aside`], with a failure only warned about: the directory is another (removed)
/// state root's, so it must not fail this root's `gc`; it stays aside for the next.
fn remove_aside_or_warn(aside: &Path, home: &Path, in_use: &dyn Fn(&Path) -> bool) -> bool {
    remove_aside(aside, home, in_use).unwrap_or_else(|err| {
        eprintln!("mycontainer: warning: {err:#}; the next gc tries again");
        false
    })
}

/// Where `gc` moves a run directory before it removes it.
const ASIDE_PREFIX: &str = ".gone-";

/// Removes the run directory moved aside to `aside`, unless it is in use (a container
/// marked itself live in it meanwhile): then it goes back to `home` (if nothing took
/// that name since) and false is returned.
fn remove_aside(aside: &Path, home: &Path, in_use: &dyn Fn(&Path) -> bool) -> anyhow::Result<bool> {
    if in_use(aside) {
        let _ = fs::rename(aside, home);
        return Ok(false);
    }
    // Network namespaces of containers killed with their root are still mounted there
    // (a reboot would have unmounted them): detach them, or the removal fails busy.
    detach_mounts_below(aside);
    match fs::remove_dir_all(aside) {
        Ok(()) => Ok(true),
        // Removed by a gc of a version that did not take the lock.
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err).with_context(|| format!("cannot remove {}", aside.display())),
    }
}

/// Detaches every mount below `dir` (from this mount namespace's table), deepest first,
/// and again while any is left: a point can hold mounts stacked on each other, and one
/// detach lifts only the top one.
fn detach_mounts_below(dir: &Path) {
    let prefix = format!("{}/", escape_mount_point(&dir.to_string_lossy()));
    for _ in 0..8 {
        let table = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<&str> = table
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .filter(|point| point.starts_with(&prefix))
            .collect();
        if points.is_empty() {
            return;
        }
        points.sort_by_key(|point| std::cmp::Reverse(point.matches('/').count()));
        for point in points {
            let _ =
                sys_mount::unmount(unescape_mount_point(point), sys_mount::UnmountFlags::DETACH);
        }
    }
}

/// A path as /proc/self/mountinfo writes it: space, tab, newline and backslash in octal.
fn escape_mount_point(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            ' ' | '\t' | '\n' | '\\' => out.push_str(&format!("\\{:03o}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The path a mountinfo field names (the inverse of [`escape_mount_point`]).
fn unescape_mount_point(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// The subdirectory where the network code bind-mounts each container's network
/// namespace (`network::netns_dir`).
pub const NETNS: &str = "netns";

/// Whether `dir/live` holds a marker younger than `MARKER_GRACE` (or cannot be read:
/// then it is kept, as in use).
fn holds_young_marker(dir: &Path) -> bool {
    let markers = match fs::read_dir(dir.join("live")) {
        Ok(markers) => markers,
        Err(err) => return err.kind() != ErrorKind::NotFound,
    };
    markers.filter_map(|m| m.ok()).any(|marker| {
        marker
            .metadata()
            .and_then(|m| m.modified())
            .map(|touched| touched.elapsed().map_or(true, |age| age < MARKER_GRACE))
            .unwrap_or(true)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_escape_as_mountinfo_writes_them_and_back() {
        let path = "/run/my dir\twith\\odd\nnames";
        let escaped = escape_mount_point(path);
        assert_eq!(escaped, "/run/my\\040dir\\011with\\134odd\\012names");
        assert_eq!(unescape_mount_point(&escaped), PathBuf::from(path));
        // A backslash not followed by three octal digits is itself.
        assert_eq!(unescape_mount_point("/a\\9b"), PathBuf::from("/a\\9b"));
    }

    #[test]
    fn the_mounts_below_a_directory_are_detached_however_deep_and_stacked() {
        let dir = tempfile::tempdir().unwrap();
        let below = dir.path().join("a b/netns");
        fs::create_dir_all(&below).unwrap();
        let point = below.join("x");
        fs::write(&point, "").unwrap();
        for _ in 0..3 {
            sys_mount::Mount::builder()
                .flags(sys_mount::MountFlags::BIND)
                .mount("/proc/self/ns/net", &point)
                .unwrap();
        }
        detach_mounts_below(dir.path());
        let table = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let ours = escape_mount_point(&dir.path().to_string_lossy());
        assert!(!table.contains(&ours), "a mount is left below {ours}");
        fs::remove_dir_all(dir.path()).unwrap();
    }
}
