//! Networks and address leases under `<root>/networks/` (the default network's under
//! its shared home instead, see `shared.rs`): `<name>.json` (the network: subnet,
//! gateway, bridge), `<name>.leases/<address>` (one file per address in use, holding the
//! container's id and, on a second line, its state root) and `<name>.lock`, a file lock
//! held while a network is set up, torn down or an address is taken, so parallel runs
//! (of any root, on the shared default network) never share an address.

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::shared::{self, DEFAULT_NETWORK};

pub fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

/// An IPv4 subnet, `ADDR/PREFIX`, kept with its host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Subnet {
        Subnet {
            addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        }
    }
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let m = mask(self.prefix.min(other.prefix));
        u32::from(self.addr) & m == u32::from(other.addr) & m
    }
    /// The `n`th address of the subnet.
    pub fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) + n)
    }
    pub fn size(&self) -> u32 {
        !mask(self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Subnet> {
        let bad = || format!("invalid subnet {s:?}: use an IPv4 CIDR such as 172.30.0.0/16");
        let (addr, prefix) = s.split_once('/').with_context(bad)?;
        let addr: Ipv4Addr = addr.parse().with_context(bad)?;
        let prefix: u8 = prefix.parse().with_context(bad)?;
        if !(8..=30).contains(&prefix) {
            bail!("invalid subnet {s:?}: the prefix must be between 8 and 30");
        }
        Ok(Subnet::new(addr, prefix))
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The routes of our network namespace (but the default one), as subnets.
pub fn host_routes() -> Vec<Subnet> {
    routes().into_iter().map(|(_, subnet)| subnet).collect()
}

/// The subnet routed on link `iface` (a bridge of ours has one: its own).
pub fn route_of(iface: &str) -> Option<Subnet> {
    routes()
        .into_iter()
        .find_map(|(on, subnet)| (on == iface).then_some(subnet))
}

/// (link, subnet) of each route but the default one.
fn routes() -> Vec<(String, Subnet)> {
    let table = fs::read_to_string("/proc/net/route").unwrap_or_default();
    let hex = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::from_be);
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (dest, mask) = (hex(f.get(1)?)?, hex(f.get(7)?)?);
            let subnet = Subnet::new(Ipv4Addr::from(dest), mask.count_ones() as u8);
            (mask != 0).then(|| (f[0].to_string(), subnet))
        })
        .collect()
}

/// Docker's default pools, in order: 172.17-31.0.0/16, then 192.168.0-240.0/20.
pub fn choose_subnet(taken: &[Subnet]) -> anyhow::Result<Subnet> {
    let candidates = (17..=31)
        .map(|b| Subnet::new(Ipv4Addr::new(172, b, 0, 0), 16))
        .chain((0..16).map(|c| Subnet::new(Ipv4Addr::new(192, 168, c * 16, 0), 20)));
    for candidate in candidates {
        if !taken.iter().any(|t| t.overlaps(&candidate)) {
            return Ok(candidate);
        }
    }
    bail!("no free private subnet for a network: every default pool overlaps a route or network; give one with --subnet")
}

/// A network as stored in `<root>/networks/<name>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkConfig {
    pub name: String,
    pub id: String,
    pub subnet: String,
    pub gateway: Ipv4Addr,
    pub bridge: String,
    #[serde(default)]
    pub internal: bool,
    pub created: u64,
}

impl NetworkConfig {
    pub fn subnet(&self) -> anyhow::Result<Subnet> {
        self.subnet.parse()
    }
    /// The nftables table holding this network's rules.
    pub fn table(&self) -> String {
        table_of(&self.name)
    }
}

/// The nftables table of the network called `name`.
pub fn table_of(name: &str) -> String {
    format!("mycontainer-{name}")
}

pub fn networks_dir(root: &Path) -> PathBuf {
    root.join("networks")
}

/// The directory holding network `name`'s files: the shared home for the default
/// network, `<root>/networks` for the others.
pub fn home(root: &Path, name: &str) -> PathBuf {
    if name == DEFAULT_NETWORK {
        shared::home()
    } else {
        networks_dir(root)
    }
}

fn config_path(root: &Path, name: &str) -> PathBuf {
    home(root, name).join(format!("{name}.json"))
}

pub fn leases_dir(root: &Path, name: &str) -> PathBuf {
    home(root, name).join(format!("{name}.leases"))
}

fn lock_path(root: &Path, name: &str) -> PathBuf {
    home(root, name).join(format!("{name}.lock"))
}

/// An exclusive lock on one network (released on drop).
pub struct NetworkLock(#[allow(dead_code)] File);

/// Locks network `name`. The lock file may be unlinked by its holder (`network rm`, or
/// `gc` removing the default network's home): a lock taken on a file no longer at its
/// path guards nothing, so it is taken again on the file that is there now.
pub fn lock(root: &Path, name: &str) -> anyhow::Result<NetworkLock> {
    let file = format!("{name}.lock");
    if name == DEFAULT_NETWORK {
        return lock_file(&shared::ensure, &file);
    }
    let dir = || -> anyhow::Result<PathBuf> {
        let dir = networks_dir(root);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(dir)
    };
    lock_file(&dir, &file)
}

/// An exclusive lock on `file` in the directory `dir` makes (see [`lock`]: the file, or
/// its directory, may be removed by a holder; then it is locked again where it is now).
pub fn lock_file(
    dir: &dyn Fn() -> anyhow::Result<PathBuf>,
    file: &str,
) -> anyhow::Result<NetworkLock> {
    use std::os::unix::fs::MetadataExt;
    loop {
        let path = dir()?.join(file);
        let file = match OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(file) => file,
            // Its directory was removed between making and opening: make it again.
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
        };
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot lock {}", path.display()));
        }
        let held = file
            .metadata()
            .with_context(|| format!("cannot stat {}", path.display()))?;
        let current = fs::metadata(&path).ok();
        if current.is_some_and(|m| m.ino() == held.ino() && m.dev() == held.dev()) {
            return Ok(NetworkLock(file));
        }
    }
}

/// Removes the default network's home (the caller holds its lock and has removed its
/// config and leases): its lock file first (a waiter then locks again on a new one),
/// then the directory, unless a new run already put something there.
pub fn remove_shared_home() {
    let _ = fs::remove_file(lock_path(Path::new("/"), DEFAULT_NETWORK));
    shared::remove_home();
}

/// The default network's files under `<root>/networks/`, where versions before the
/// shared home kept them; removed by `gc` once no container of the root is attached.
pub fn remove_legacy_default(root: &Path) {
    let dir = networks_dir(root);
    for file in ["json", "json.tmp", "lock"] {
        let _ = fs::remove_file(dir.join(format!("{DEFAULT_NETWORK}.{file}")));
    }
    let _ = fs::remove_dir_all(dir.join(format!("{DEFAULT_NETWORK}.leases")));
}

pub fn load(root: &Path, name: &str) -> anyhow::Result<Option<NetworkConfig>> {
    let path = config_path(root, name);
    match fs::read(&path) {
        Ok(bytes) => {
            Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                format!("cannot parse {}", path.display())
            })?))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Every stored network: the root's and the shared default one.
pub fn list(root: &Path) -> anyhow::Result<Vec<NetworkConfig>> {
    let mut out = Vec::new();
    out.extend(load(root, DEFAULT_NETWORK)?);
    let Ok(entries) = fs::read_dir(networks_dir(root)) else {
        return Ok(out);
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(name) = name.strip_suffix(".json") {
            // (A legacy default network's file: the shared one is the default.)
            if name == DEFAULT_NETWORK {
                continue;
            }
            if let Some(config) = load(root, name)? {
                out.push(config);
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Writes the network's config whole or not at all: into `<name>.json.tmp`, then renamed
/// over `<name>.json`, so a command killed mid-write never leaves a truncated config that
/// every later network command would fail to parse. The caller holds the network's lock,
/// so the temp name is its own.
pub fn save(root: &Path, config: &NetworkConfig) -> anyhow::Result<()> {
    let path = config_path(root, &config.name);
    let tmp = temp_path(root, &config.name);
    let bytes = serde_json::to_vec_pretty(config)?;
    let written = crate::container::write_private(&tmp, &bytes)
        .and_then(|file| file.sync_all())
        .and_then(|()| fs::rename(&tmp, &path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

/// Where `save` writes before renaming (a kill can leave it behind: `list` skips it, the
/// next `save` or `network rm` of the name replaces or removes it).
fn temp_path(root: &Path, name: &str) -> PathBuf {
    home(root, name).join(format!("{name}.json.tmp"))
}

pub fn remove_config(root: &Path, name: &str) -> anyhow::Result<()> {
    for path in [
        config_path(root, name),
        temp_path(root, name),
        leases_dir(root, name),
    ] {
        let result = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        match result {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot remove {}", path.display()))
            }
            _ => {}
        }
    }
    Ok(())
}

/// One address in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub ip: Ipv4Addr,
    /// The container's id (empty: a lease whose writer was killed before writing it).
    pub id: String,
    /// Its state root (none in leases of earlier versions: the network's own root).
    pub root: Option<PathBuf>,
}

fn parse_lease(ip: Ipv4Addr, text: &str) -> Lease {
    let (id, root) = match text.split_once('\n') {
        Some((id, root)) if !root.is_empty() => (id, Some(PathBuf::from(root))),
        Some((id, _)) => (id, None),
        None => (text, None),
    };
    Lease {
        ip,
        id: id.to_string(),
        root,
    }
}

/// The leases of a network.
pub fn leases(root: &Path, name: &str) -> Vec<Lease> {
    let Ok(entries) = fs::read_dir(leases_dir(root, name)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let ip = e.file_name().to_string_lossy().parse().ok()?;
            let text = fs::read_to_string(e.path()).ok()?;
            Some(parse_lease(ip, &text))
        })
        .collect()
}

/// Takes the lowest free address of `config` for container `id` of state root `root`
/// (the caller holds the network's lock). No fsync: the lease is on tmpfs for the
/// default network, and on a user network a lease lost to a crash is one whose
/// container's namespace went with the reboot.
pub fn allocate(root: &Path, config: &NetworkConfig, id: &str) -> anyhow::Result<Ipv4Addr> {
    let subnet = config.subnet()?;
    let dir = leases_dir(root, &config.name);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let taken: std::collections::HashSet<Ipv4Addr> = leases(root, &config.name)
        .into_iter()
        .map(|lease| lease.ip)
        .collect();
    for n in 1..subnet.size() {
        let ip = subnet.nth(n);
        if ip == config.gateway || taken.contains(&ip) {
            continue;
        }
        let path = dir.join(ip.to_string());
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut file) => {
                use std::io::Write;
                let text = format!("{id}\n{}", root.display());
                file.write_all(text.as_bytes())
                    .with_context(|| format!("cannot write {}", path.display()))?;
                return Ok(ip);
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
        }
    }
    bail!(
        "no free address left in network {} ({subnet}): remove containers that use it",
        config.name
    )
}

/// Frees the lease of `ip` if container `id` holds it.
pub fn release(root: &Path, network: &str, ip: Ipv4Addr, id: &str) {
    let path = leases_dir(root, network).join(ip.to_string());
    if fs::read_to_string(&path).is_ok_and(|text| parse_lease(ip, &text).id == id) {
        let _ = fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_overlap_by_the_shorter_prefix() {
        let a: Subnet = "172.17.0.0/16".parse().unwrap();
        let b: Subnet = "172.17.5.0/24".parse().unwrap();
        let c: Subnet = "172.18.0.0/16".parse().unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c));
        assert_eq!(
            "10.1.2.3/8".parse::<Subnet>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert!("10.0.0.0/31".parse::<Subnet>().is_err());
        assert!("nonsense".parse::<Subnet>().is_err());
    }

    #[test]
    fn the_first_pool_not_taken_by_a_route_is_chosen() {
        let taken = vec![
            "172.16.0.0/12".parse::<Subnet>().unwrap(),
            "192.168.0.0/24".parse().unwrap(),
        ];
        assert_eq!(
            choose_subnet(&taken).unwrap().to_string(),
            "192.168.16.0/20"
        );
        assert_eq!(choose_subnet(&[]).unwrap().to_string(), "172.17.0.0/16");
    }

    #[test]
    fn leases_are_distinct_and_freed_only_by_their_owner() {
        let root = tempfile::tempdir().unwrap();
        let config = NetworkConfig {
            name: "n".into(),
            id: "x".into(),
            subnet: "10.9.0.0/29".into(),
            gateway: "10.9.0.1".parse().unwrap(),
            bridge: "b".into(),
            internal: false,
            created: 0,
        };
        let a = allocate(root.path(), &config, "a").unwrap();
        let b = allocate(root.path(), &config, "b").unwrap();
        assert_eq!(
            (a.to_string().as_str(), b.to_string().as_str()),
            ("10.9.0.2", "10.9.0.3")
        );
        release(root.path(), "n", a, "b");
        assert_eq!(leases(root.path(), "n").len(), 2);
        release(root.path(), "n", a, "a");
        assert_eq!(allocate(root.path(), &config, "c").unwrap(), a);
        for id in ["d", "e", "f"] {
            allocate(root.path(), &config, id).unwrap();
        }
        // .7 is the broadcast address: the /29 is full.
        assert!(allocate(root.path(), &config, "g").is_err());
    }

    fn sample(name: &str, created: u64) -> NetworkConfig {
        NetworkConfig {
            name: name.into(),
            id: "x".repeat(64),
            subnet: "10.9.0.0/24".into(),
            gateway: "10.9.0.1".parse().unwrap(),
            bridge: "mc-xxxxxxxxxxxx".into(),
            internal: false,
            created,
        }
    }

    // scripts/faults found it: `network create` killed while writing its config left an
    // empty n28.json, and every later network command (create, rm, ls, gc) failed to
    // parse it. A reader now sees the old config or the new one, never a partial one.
    #[test]
    fn a_reader_never_sees_a_partly_written_network_config() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(networks_dir(root.path())).unwrap();
        save(root.path(), &sample("n", 0)).unwrap();
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let reader = scope.spawn(|| {
                let mut reads = 0u32;
                while !done.load(std::sync::atomic::Ordering::Relaxed) || reads == 0 {
                    let loaded = load(root.path(), "n").expect("a whole config");
                    assert_eq!(loaded.expect("the config exists").name, "n");
                    assert_eq!(list(root.path()).expect("every config parses").len(), 1);
                    reads += 1;
                }
            });
            for created in 1..=300 {
                save(root.path(), &sample("n", created)).unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            reader.join().unwrap();
        });
        assert_eq!(load(root.path(), "n").unwrap().unwrap().created, 300);
    }

    // What a kill between writing and renaming leaves: a temp file that is not a config.
    #[test]
    fn a_leftover_temp_config_is_ignored_then_replaced_and_removed() {
        let root = tempfile::tempdir().unwrap();
        let dir = networks_dir(root.path());
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("n.json.tmp"), b"{\"name\": \"n\", \"trunc").unwrap();
        assert!(list(root.path()).unwrap().is_empty());
        assert!(load(root.path(), "n").unwrap().is_none());
        save(root.path(), &sample("n", 7)).unwrap();
        assert!(!dir.join("n.json.tmp").exists());
        assert_eq!(load(root.path(), "n").unwrap().unwrap().created, 7);
        fs::write(dir.join("n.json.tmp"), b"").unwrap();
        remove_config(root.path(), "n").unwrap();
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
    }
}
