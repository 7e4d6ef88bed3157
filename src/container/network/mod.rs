//! Container networking (Docker's policy; the runtime only joins the namespace that
//! config.json names). A container on a bridge network gets a network namespace made
//! here and bind-mounted at `<run dir>/netns/<id>` (so exec, cleanup and gc find it; on
//! the run directory's tmpfs, as Docker's under /run/docker/netns: a namespace does not
//! outlive a reboot, and neither need its record), a veth pair whose host end is
//! attached to the network's bridge and whose other end is the container's `eth0`, an
//! address leased from the network's subnet (`ipam.rs`; the default network's, shared by
//! every state root in the network namespace, in `shared.rs`'s home) and a default
//! route through the bridge. What one attachment made is written first to
//! `<run dir>/netns/<id>.json`, so [`release`] can undo it on every path, after a
//! kill -9 too (`gc`). `netlink.rs` talks rtnetlink, `nft.rs` writes the network's nftables
//! table, `resolv.rs` makes the container's resolv.conf.

pub mod check;
pub mod hosts;
pub mod ipam;
pub mod manage;
mod netlink;
mod nfnl;
mod nft;
pub mod ports;
pub(super) mod published;
mod resolv;
mod shared;
mod stale;

use std::fs::{self, File};
use std::io::ErrorKind;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use ipam::{Lease, NetworkConfig, Subnet};
use netlink::Netlink;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
pub use resolv::resolv_conf;
pub use shared::DEFAULT_NETWORK;

/// Removes a network's bridge and nftables table (a missing one is fine).
fn remove_bridge(config: &NetworkConfig) -> anyhow::Result<()> {
    let mut host = Netlink::open().context("cannot open a netlink socket")?;
    host.delete_link(&config.bridge)
        .with_context(|| format!("cannot delete bridge {}", config.bridge))?;
    nft::remove(config)
}

/// The default network's bridge device.
pub const DEFAULT_BRIDGE: &str = "mycontainer0";
/// The spec annotation naming the network a container is attached to at each start.
pub const ANNOTATION_NETWORK: &str = "org.mycontainer.network";
/// `--network-alias` values (comma-separated), read at each attach.
pub const ANNOTATION_ALIASES: &str = "org.mycontainer.network-aliases";
/// `--add-host` values (comma-separated NAME:IP), for every hosts file written.
pub const ANNOTATION_EXTRA_HOSTS: &str = "org.mycontainer.extra-hosts";
/// `--dns` values (comma-separated), for `inspect`'s `HostConfig.Dns`.
pub const ANNOTATION_DNS: &str = "org.mycontainer.dns";
/// The container's exposed ports (the image's and those `-p` names: comma-separated
/// "80/tcp" keys), for `inspect`'s `Config.ExposedPorts` and `NetworkSettings.Ports`.
pub const ANNOTATION_EXPOSED: &str = "org.mycontainer.exposed-ports";
/// The container's end of its veth pair.
const CONTAINER_LINK: &str = "eth0";

pub fn netns_dir(root: &Path) -> PathBuf {
    crate::container::rundir::dir(root).join(crate::container::rundir::NETNS)
}

/// Where versions before the run directory kept the namespaces and their records:
/// [`release`] and [`collect`] still look there, for containers attached by them.
fn legacy_netns_dir(root: &Path) -> PathBuf {
    root.join("netns")
}

/// Where container `id`'s network namespace is bind-mounted while it runs.
pub fn netns_path(root: &Path, id: &str) -> PathBuf {
    netns_dir(root).join(id)
}

fn attachment_path(root: &Path, id: &str) -> PathBuf {
    netns_dir(root).join(format!("{id}.json"))
}

/// What attaching one container made (`<root>/netns/<id>.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attachment {
    pub network: String,
    pub network_id: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub mac: String,
    /// The host end of the veth pair.
    pub veth: String,
    pub bridge: String,
    /// The container's name, hostname and `--network-alias`es: what its peers on a
    /// user network call it.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `--add-host` pairs (name, address).
    #[serde(default)]
    pub extra_hosts: Vec<(String, String)>,
    /// Published ports, resolved (host ports chosen).
    #[serde(default)]
    pub ports: Vec<ports::PortMap>,
}

/// Who is attaching: what goes into hosts files.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub name: String,
    pub hostname: String,
    pub aliases: Vec<String>,
    pub extra_hosts: Vec<(String, String)>,
    /// The ports to publish (host port 0: choose one).
    pub ports: Vec<ports::PortMap>,
}

/// Every attachment recorded under `<root>/netns/`, by container id.
fn attachments(root: &Path) -> Vec<(String, Attachment)> {
    let Ok(entries) = fs::read_dir(netns_dir(root)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let id = name.strip_suffix(".json")?.to_string();
            let attachment = attachment(root, &id)?;
            Some((id, attachment))
        })
        .collect()
}

/// Rewrites the hosts file of every container attached to `network` (the caller holds
/// its lock): on a user network each lists its peers by name and alias. The default
/// network, as Docker's, resolves no names: there only `joined`'s own file is written.
fn refresh_hosts(root: &Path, network: &str, joined: &str) {
    let members: Vec<(String, Attachment)> = if network == DEFAULT_NETWORK {
        attachment(root, joined)
            .map(|a| vec![(joined.to_string(), a)])
            .unwrap_or_default()
    } else {
        attachments(root)
            .into_iter()
            .filter(|(_, a)| a.network == network)
            .collect()
    };
    for (id, own) in &members {
        let peers: Vec<(Ipv4Addr, Vec<String>)> = if network == DEFAULT_NETWORK {
            Vec::new()
        } else {
            members
                .iter()
                .filter(|(other, _)| other != id)
                .map(|(other, a)| {
                    let mut names = vec![a.name.clone()];
                    if a.hostname != a.name {
                        names.push(a.hostname.clone());
                    }
                    names.extend(a.aliases.iter().cloned());
                    names.push(other[..12.min(other.len())].to_string());
                    let mut seen = std::collections::HashSet::new();
                    names.retain(|n| !n.is_empty() && seen.insert(n.clone()));
                    (a.ip, names)
                })
                .collect()
        };
        write_hosts(root, id, own, &peers);
    }
}

/// Writes container `id`'s hosts file: itself, its `peers` and its `--add-host`s.
fn write_hosts(root: &Path, id: &str, own: &Attachment, peers: &[(Ipv4Addr, Vec<String>)]) {
    let text = hosts::render(&own.hostname, Some(own.ip), peers, &own.extra_hosts);
    let path = crate::container::rundir::container_dir(root, id).join("hosts");
    // In place (the file is bind-mounted into the container: a rename would not be
    // seen there); a record that is gone has nothing to update.
    if path.exists() {
        if let Err(e) = fs::write(&path, text) {
            eprintln!("mycontainer: warning: cannot write {}: {e}", path.display());
        }
    }
}

/// The attachment of container `id`, while it has one.
pub fn attachment(root: &Path, id: &str) -> Option<Attachment> {
    serde_json::from_slice(&fs::read(attachment_path(root, id)).ok()?).ok()
}

/// The host end of container `id`'s veth pair: `mc` and 12 hex digits of its id.
fn veth_name(id: &str) -> String {
    format!("mc{}", &id[..12.min(id.len())])
}

/// Docker's MAC for an address: 02:42 and the address's four bytes.
fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

fn show_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The default network's config, made on first use (by whichever state root comes
/// first: every root in the namespace shares it): the first of Docker's pools that
/// overlaps no route of ours and no other network; or, when its bridge is there without
/// a config (made by an earlier version, or its home was removed by hand), the bridge's
/// own subnet, whose route would otherwise look like someone else's.
fn default_config(root: &Path) -> anyhow::Result<NetworkConfig> {
    let subnet = match ipam::route_of(DEFAULT_BRIDGE) {
        Some(subnet) => subnet,
        None => {
            let mut taken = ipam::host_routes();
            for other in ipam::list(root)? {
                taken.push(other.subnet()?);
            }
            ipam::choose_subnet(&taken)?
        }
    };
    Ok(NetworkConfig {
        name: DEFAULT_NETWORK.into(),
        id: crate::container::record::random_id()?,
        subnet: subnet.to_string(),
        gateway: subnet.nth(1),
        bridge: DEFAULT_BRIDGE.into(),
        internal: false,
        created: crate::container::state::now_unix(),
    })
}

/// The network `name` with its bridge and rules in place (the caller holds its lock);
/// returns it and the bridge's index.
fn ensure_network(
    root: &Path,
    name: &str,
    host: &mut Netlink,
) -> anyhow::Result<(NetworkConfig, u32)> {
    let config = match ipam::load(root, name)? {
        Some(config) => config,
        None if name == DEFAULT_NETWORK => {
            let config = default_config(root)?;
            ipam::save(root, &config)?;
            config
        }
        None => {
            bail!("network {name} not found: create it with `mycontainer network create {name}`")
        }
    };
    if let Some(index) = host
        .link_index(&config.bridge)
        .context("cannot look up the network's bridge")?
    {
        return Ok((config, index));
    }
    let subnet = config.subnet()?;
    let index = host
        .create_bridge(&config.bridge)
        .with_context(|| format!("cannot create bridge {}", config.bridge))?;
    let made = host
        .add_address(index, config.gateway, subnet.prefix)
        .with_context(|| format!("cannot give bridge {} its address", config.bridge))
        .and_then(|()| nft::apply(&config))
        .and_then(|()| ports::allow_localnet(&config.bridge))
        .and_then(|()| enable_forwarding(&config));
    if let Err(err) = made {
        let _ = host.delete_link(&config.bridge);
        let _ = nft::remove(&config);
        return Err(err);
    }
    Ok((config, index))
}

/// Containers reach beyond their bridge only if the host forwards (as Docker sets it).
fn enable_forwarding(config: &NetworkConfig) -> anyhow::Result<()> {
    if config.internal {
        return Ok(());
    }
    let path = "/proc/sys/net/ipv4/ip_forward";
    if fs::read_to_string(path).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    fs::write(path, "1").with_context(|| format!("cannot enable IPv4 forwarding ({path})"))
}

/// A new network namespace and an rtnetlink socket inside it. The calling thread enters
/// it and at once returns to its own (namespaces are per thread): a helper thread would
/// cost two scheduler hand-offs, which on a loaded host were the largest part of what a
/// bridge adds to a start. If the way back failed, this thread would go on configuring
/// the wrong namespace, so the process stops there.
fn new_netns() -> anyhow::Result<(OwnedFd, Netlink)> {
    let own = File::open("/proc/thread-self/ns/net")
        .context("cannot open this thread's network namespace")?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .context("cannot create a network namespace")?;
    let made = File::open("/proc/thread-self/ns/net")
        .and_then(|ns| Ok((OwnedFd::from(ns), Netlink::open()?)))
        .and_then(|made| no_ipv6_on_new_links().map(|()| made));
    if let Err(e) = nix::sched::setns(&own, nix::sched::CloneFlags::CLONE_NEWNET) {
        eprintln!("mycontainer: cannot return to the host's network namespace: {e}");
        std::process::abort();
    }
    made.context("cannot open the new network namespace")
}

/// In the namespace this thread is in: links made from now on get no IPv6 (the
/// container's eth0, as Docker's on a network without IPv6: no link-local address, no
/// duplicate address detection, router solicitation or multicast reports when it comes
/// up, and less to tear down with the namespace). `lo` keeps `::1`. A kernel without
/// IPv6 has nothing to turn off.
fn no_ipv6_on_new_links() -> std::io::Result<()> {
    match fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1") {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Attaches container `id` to network `name`: namespace (mounted at
/// [`netns_path`]), lease, veth, address, route. On failure nothing is left.
pub fn attach(root: &Path, id: &str, name: &str, who: &Identity) -> anyhow::Result<Attachment> {
    let mut host = Netlink::open().context("cannot open a netlink socket")?;
    let (config, bridge, ip) = {
        let _lock = ipam::lock(root, name)?;
        let (config, bridge) = ensure_network(root, name, &mut host)?;
        let ip = ipam::allocate(root, &config, id)?;
        (config, bridge, ip)
    };
    let subnet: Subnet = config.subnet()?;
    let mac = mac_for(ip);
    let attachment = Attachment {
        network: config.name.clone(),
        network_id: config.id.clone(),
        ip,
        prefix: subnet.prefix,
        gateway: config.gateway,
        mac: show_mac(mac),
        veth: veth_name(id),
        bridge: config.bridge.clone(),
        name: who.name.clone(),
        hostname: who.hostname.clone(),
        aliases: who.aliases.clone(),
        extra_hosts: who.extra_hosts.clone(),
        ports: Vec::new(),
    };
    // Ports are checked against every state root's in this network namespace and
    // claimed (published.rs) under one lock, before anything is made: a conflict leaves
    // nothing behind.
    let ports_lock = if who.ports.is_empty() {
        None
    } else {
        match published::lock() {
            Ok(lock) => Some(lock),
            Err(err) => {
                ipam::release(root, name, ip, id);
                return Err(err);
            }
        }
    };
    let mut attachment = attachment;
    if ports_lock.is_some() {
        let claims = published::claims();
        // Claims, and the ports of this root's containers attached by versions before
        // claims (recorded in their attachments only).
        let mut taken: Vec<(String, Vec<ports::PortMap>)> = claims
            .iter()
            .filter(|c| c.id != id)
            .map(|c| (c.who(), c.ports.clone()))
            .collect();
        taken.extend(
            attachments(root)
                .into_iter()
                .filter(|(other, a)| {
                    other != id && !a.ports.is_empty() && !claims.iter().any(|c| &c.id == other)
                })
                .map(|(other, a)| {
                    let who = if a.name.is_empty() { other } else { a.name };
                    (who, a.ports)
                }),
        );
        let claimed = ports::resolve(&who.ports, &taken).and_then(|resolved| {
            attachment.ports = resolved;
            published::claim(&published::Claim {
                id: id.to_string(),
                root: root.to_path_buf(),
                name: who.name.clone(),
                network: config.name.clone(),
                ports: attachment.ports.clone(),
            })
        });
        if let Err(err) = claimed {
            let _ = published::unclaim(id);
            ipam::release(root, name, ip, id);
            return Err(err);
        }
    }
    // Recorded before anything is made: whatever happens next, release finds it all.
    let recorded = fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(netns_dir(root))
        .map_err(anyhow::Error::from)
        .and_then(|()| {
            crate::container::write_private(
                &attachment_path(root, id),
                &serde_json::to_vec(&attachment)?,
            )
            .map(|_| ())
            .map_err(anyhow::Error::from)
        })
        .with_context(|| format!("cannot record the network of container {id}"));
    if let Err(err) = recorded {
        if ports_lock.is_some() {
            let _ = published::unclaim(id);
        }
        ipam::release(root, name, ip, id);
        return Err(err);
    }
    drop(ports_lock);
    let made = (|| -> anyhow::Result<()> {
        let (ns, mut inside) = new_netns()?;
        mount_netns(&ns, &netns_path(root, id))?;
        let mut created = host.create_veth(
            &attachment.veth,
            bridge,
            CONTAINER_LINK,
            mac,
            ns.as_raw_fd(),
        );
        if created
            .as_ref()
            .is_err_and(|e| e.raw_os_error() == Some(libc::EEXIST))
        {
            // The pair of this container's last run, still going with its namespace.
            host.delete_link(&attachment.veth)?;
            created = host.create_veth(
                &attachment.veth,
                bridge,
                CONTAINER_LINK,
                mac,
                ns.as_raw_fd(),
            );
        }
        let echoed =
            created.with_context(|| format!("cannot create the veth pair {}", attachment.veth))?;
        host.set_port_up(&attachment.veth)
            .with_context(|| format!("cannot bring up {}", attachment.veth))?;
        let eth = match echoed {
            Some(index) => index,
            None => inside
                .link_index(CONTAINER_LINK)?
                .context("the container's eth0 is missing")?,
        };
        nft::publish(&config.table(), ip, &attachment.ports)?;
        // lo and eth0 up, eth0's address, the default route (but on an internal network,
        // which reaches nothing beyond its bridge): one round trip.
        let (create, plain) = (NLM_F_CREATE | NLM_F_EXCL, 0);
        let mut requests = vec![
            (netlink::up_message(1), plain),
            (netlink::up_message(eth), plain),
            (netlink::address_message(eth, ip, subnet.prefix), create),
        ];
        if !config.internal {
            requests.push((netlink::default_route_message(eth, config.gateway), create));
        }
        inside.batch(requests).map_err(|e| {
            let what = match e.index {
                Some(0) => "cannot bring up lo",
                Some(1) => "cannot bring up eth0",
                Some(2) => "cannot give eth0 its address",
                Some(_) => "cannot add the default route",
                None => "cannot configure the container's eth0",
            };
            anyhow::Error::from(e.error).context(what)
        })?;
        Ok(())
    })();
    match made {
        // On the default network, which resolves no names, only its own file: no lock
        // (nobody else writes it) and no other container's record to read.
        Ok(()) if name == DEFAULT_NETWORK => {
            write_hosts(root, id, &attachment, &[]);
            Ok(attachment)
        }
        Ok(()) => {
            let _lock = ipam::lock(root, name)?;
            refresh_hosts(root, name, id);
            Ok(attachment)
        }
        Err(err) => {
            if let Err(cleanup) = release(root, id) {
                eprintln!("mycontainer: warning: {cleanup:#}");
            }
            Err(err.context(format!("cannot attach the container to network {name}")))
        }
    }
}

fn mount_netns(ns: &OwnedFd, target: &Path) -> anyhow::Result<()> {
    File::create(target).with_context(|| format!("cannot create {}", target.display()))?;
    let source = format!("/proc/self/fd/{}", ns.as_raw_fd());
    sys_mount::Mount::builder()
        .fstype("none")
        .flags(sys_mount::MountFlags::BIND)
        .mount(&source, target)
        .with_context(|| {
            format!(
                "cannot bind-mount the network namespace on {}",
                target.display()
            )
        })?;
    Ok(())
}

/// Undoes what [`attach`] made for container `id` (idempotent): the namespace's mount,
/// the veth pair, the ports' table, the lease and the records. The veth pair goes with
/// the namespace once nothing holds it (the kernel tears a dead namespace down in the
/// background); deleting it here instead would wait out RCU grace periods (tens of
/// milliseconds on a busy host) on every exit. Only when the namespace was never
/// mounted is the veth deleted directly.
pub fn release(root: &Path, id: &str) -> anyhow::Result<()> {
    release_in(root, id, &netns_dir(root))?;
    let legacy = legacy_netns_dir(root);
    if legacy.is_dir() {
        release_in(root, id, &legacy)?;
    }
    Ok(())
}

/// [`release`] of what is recorded in `dir`.
fn release_in(root: &Path, id: &str, dir: &Path) -> anyhow::Result<()> {
    let path = dir.join(id);
    let record = dir.join(format!("{id}.json"));
    let attached: Option<Attachment> = fs::read(&record)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let unmounted = match sys_mount::unmount(&path, sys_mount::UnmountFlags::DETACH) {
        Ok(()) => true,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) || e.kind() == ErrorKind::NotFound => {
            false
        }
        Err(e) => return Err(e).with_context(|| format!("cannot unmount {}", path.display())),
    };
    if let Some(attachment) = &attached {
        if !unmounted {
            let mut host = Netlink::open().context("cannot open a netlink socket")?;
            host.delete_link(&attachment.veth)
                .with_context(|| format!("cannot delete veth {}", attachment.veth))?;
        }
        if !attachment.ports.is_empty() {
            withdraw(id, &attachment.network, &attachment.ports)?;
        }
        ipam::release(root, &attachment.network, attachment.ip, id);
    }
    for file in [&path, &record] {
        match fs::remove_file(file) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot remove {}", file.display()))
            }
            _ => {}
        }
    }
    // Its peers forget it.
    if let Some(attachment) = attached {
        if attachment.network != DEFAULT_NETWORK {
            let _lock = ipam::lock(root, &attachment.network)?;
            refresh_hosts(root, &attachment.network, id);
        }
    }
    Ok(())
}

/// Withdraws container `id`'s published `ports` from `network`'s table, but those
/// another container claims now (the maps are keyed by port: deleting its key would
/// withdraw the other's), then its claim; under the ports lock.
fn withdraw(id: &str, network: &str, ports: &[ports::PortMap]) -> anyhow::Result<()> {
    let _lock = published::lock()?;
    let mine = published::only_mine(id, network, ports);
    if !mine.is_empty() {
        nft::unpublish(&ipam::table_of(network), &mine)?;
    }
    published::unclaim(id)
}

/// Frees the addresses container `id` leased without recording an attachment (its
/// process was killed between the lease and the record, so [`release`] cannot find
/// them): reclaim's share, for one record it found orphaned, of what [`collect`] does.
pub fn release_unrecorded_leases(root: &Path, id: &str) -> anyhow::Result<()> {
    if attachment(root, id).is_some() {
        return Ok(());
    }
    for config in ipam::list(root)? {
        let _lock = ipam::lock(root, &config.name)?;
        for lease in ipam::leases(root, &config.name) {
            if lease.id == id {
                ipam::release(root, &config.name, lease.ip, id);
            }
        }
    }
    Ok(())
}

/// gc: releases the attachments and leases of containers that no longer run
/// (`is_running` tells, by id), then removes the default network's bridge and rules
/// when nothing uses it, in this root or another one (the next run makes them again). Returns how many attachments
/// it released.
pub fn collect(root: &Path, is_running: &dyn Fn(&str) -> bool) -> anyhow::Result<usize> {
    let mut released = 0;
    for dir in [netns_dir(root), legacy_netns_dir(root)] {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let id = name.strip_suffix(".json").unwrap_or(&name).to_string();
            let recorded = dir.join(format!("{id}.json")).exists();
            if !is_running(&id) && (name.ends_with(".json") || !recorded) {
                release_in(root, &id, &dir)?;
                released += 1;
            }
        }
    }
    let _ = fs::remove_dir(legacy_netns_dir(root));
    let mut host = Netlink::open().context("cannot open a netlink socket")?;
    released += collect_claims(&mut host)?;
    for config in ipam::list(root)? {
        let _lock = ipam::lock(root, &config.name)?;
        for lease in ipam::leases(root, &config.name) {
            if !lease_in_use(root, &lease, is_running, &mut host)? {
                free_lease(root, &config.name, &lease);
            }
        }
        if config.name == DEFAULT_NETWORK
            && ipam::leases(root, &config.name).is_empty()
            && !used_elsewhere(&config.bridge)?
        {
            remove_bridge(&config)?;
            ipam::remove_config(root, &config.name)?;
            ipam::remove_shared_home();
        }
    }
    if !attachments(root)
        .iter()
        .any(|(_, a)| a.network == DEFAULT_NETWORK)
    {
        ipam::remove_legacy_default(root);
    }
    published::remove_if_unused()?;
    stale::collect()?;
    Ok(released)
}

/// gc: frees the port claims (published.rs) of containers that no longer run, of any
/// state root in this network namespace, with their rules (and, through their root's
/// [`release`], the rest of their attachment); and claims a kill cut short. Returns how
/// many it freed.
fn collect_claims(host: &mut Netlink) -> anyhow::Result<usize> {
    let claims = {
        if !published::in_use() {
            return Ok(0);
        }
        let _lock = published::lock()?;
        published::remove_unreadable();
        published::claims()
    };
    let mut freed = 0;
    for claim in claims {
        if !claim_in_use(&claim, host)? && free_claim(&claim, host)? {
            freed += 1;
        }
    }
    Ok(freed)
}

/// Whether the container of a port claim still runs: someone holds its record's lock,
/// as gc decides for its own root's containers. A root that this mount namespace
/// cannot see makes its records look gone: then its veth tells (it lives while the
/// container's namespace is mounted).
pub(super) fn claim_in_use(claim: &published::Claim, host: &mut Netlink) -> anyhow::Result<bool> {
    if crate::container::paths::containers_dir(&claim.root).is_dir() {
        return Ok(runs_in(&claim.root, &claim.id));
    }
    let veth = veth_name(&claim.id);
    Ok(host
        .link_index(&veth)
        .with_context(|| format!("cannot look up link {veth}"))?
        .is_some())
}

/// Frees the claim of a container that no longer runs, holding its record's lock (so
/// it cannot start again meanwhile): its root's [`release`] while that root has its
/// attachment (the namespace, veth, lease, rules and claim go), then what is left of
/// the claim. Returns false when the container runs after all (it started again).
pub(super) fn free_claim(claim: &published::Claim, host: &mut Netlink) -> anyhow::Result<bool> {
    let dir = crate::container::paths::containers_dir(&claim.root).join(&claim.id);
    let _record = if dir.is_dir() {
        match crate::container::record::lock_listed(&dir)? {
            Some(lock) => Some(lock),
            None if dir.exists() => return Ok(false),
            None => None,
        }
    } else {
        None
    };
    if claim_in_use(claim, host)? && _record.is_none() {
        return Ok(false);
    }
    if attachment(&claim.root, &claim.id).is_some() {
        release(&claim.root, &claim.id)?;
    }
    let left = {
        let _lock = published::lock()?;
        published::claim_of(&claim.id)
    };
    if let Some(left) = left {
        withdraw(&left.id, &left.network, &left.ports)?;
    }
    Ok(true)
}

/// Whether `lease` of a network of state root `root` is in use (the caller holds the
/// network's lock; `is_running` tells, by id, whether a container of `root` runs). One
/// of `root`'s: while its container runs or has an attachment (whose [`release`] frees
/// the lease with the rest). One of another root's (on the shared default network):
/// while that root's record of the container is locked or its veth is on our bridge
/// (after a kill -9 its namespace stays mounted, with the address on its eth0, until
/// its root's gc: the address is not free before). A root that this mount namespace
/// cannot see makes its records look gone: the veth still tells.
fn lease_in_use(
    root: &Path,
    lease: &Lease,
    is_running: &dyn Fn(&str) -> bool,
    host: &mut Netlink,
) -> anyhow::Result<bool> {
    match lease.root.as_deref().filter(|other| *other != root) {
        None => Ok(is_running(&lease.id) || attachment(root, &lease.id).is_some()),
        Some(other) => {
            if lease.id.is_empty() {
                return Ok(false);
            }
            let veth = veth_name(&lease.id);
            let on_bridge = host
                .link_index(&veth)
                .with_context(|| format!("cannot look up link {veth}"))?
                .is_some();
            Ok(on_bridge || runs_in(other, &lease.id))
        }
    }
}

/// Frees a lease that is not in use: through its root's [`release`] when that root
/// still has the container's attachment (which goes with it), else the lease alone.
fn free_lease(root: &Path, network: &str, lease: &Lease) {
    let owner = lease.root.as_deref().unwrap_or(root);
    if owner != root && !lease.id.is_empty() && attachment(owner, &lease.id).is_some() {
        if let Err(e) = release(owner, &lease.id) {
            eprintln!("mycontainer: warning: {e:#}");
        }
    }
    // Whatever release did, the lease goes (a lease with no id has no owner to match).
    let path = ipam::leases_dir(root, network).join(lease.ip.to_string());
    let still = fs::read_to_string(&path).is_ok_and(|text| text.lines().next() == Some(&lease.id));
    if still || lease.id.is_empty() {
        let _ = fs::remove_file(path);
    }
}

/// Whether container `id` of state root `root` runs: someone (its CLI or supervisor)
/// holds its record's lock, as `gc` and `system check` decide for their own root.
fn runs_in(root: &Path, id: &str) -> bool {
    let dir = crate::container::paths::containers_dir(root).join(id);
    dir.is_dir() && matches!(crate::container::record::lock_listed(&dir), Ok(None))
}

/// Whether the bridge `bridge` serves a container of another state root in this network
/// namespace (they share the default bridge): this root has no leases on it, so any
/// port whose other end lives in a namespace that is still alive is someone else's. A
/// port whose namespace is being torn down (a container of ours that just exited, whose
/// veth the kernel removes in the background) does not count, nor does a missing
/// bridge; a port with no other namespace (enslaved by hand) does.
fn used_elsewhere(bridge: &str) -> anyhow::Result<bool> {
    let mut host = Netlink::open().context("cannot open a netlink socket")?;
    let Some(index) = host
        .link_index(bridge)
        .with_context(|| format!("cannot look up bridge {bridge}"))?
    else {
        return Ok(false);
    };
    let ports = host
        .bridge_ports(index)
        .with_context(|| format!("cannot list the ports of bridge {bridge}"))?;
    for netns in ports {
        let alive = match netns {
            None => true,
            Some(id) if id < 0 => false,
            Some(id) => host
                .netns_alive(id)
                .context("cannot look up a bridge port's network namespace")?,
        };
        if alive {
            return Ok(true);
        }
    }
    Ok(false)
}

/// gc: deletes our nftables tables (`ip mycontainer-*`) that serve nothing any more:
/// a network's whose config is gone and whose bridge no longer exists (a bridge that
/// exists is another state root's network), and the per-container port tables of
/// earlier versions (`mycontainer-ports-<12 hex>`) whose container's veth is gone.
/// Returns the tables deleted.
pub fn collect_tables(root: &Path) -> anyhow::Result<Vec<String>> {
    let mut host = Netlink::open().context("cannot open a netlink socket")?;
    let mut removed = Vec::new();
    for table in nft::our_tables()? {
        let Some(rest) = table.strip_prefix("mycontainer-") else {
            continue;
        };
        let link = if let Some(id) = rest
            .strip_prefix("ports-")
            .filter(|id| id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            Some(veth_name(id))
        } else {
            // (A network being made or removed holds its bridge or its config.)
            if crate::container::validate_name(rest).is_ok() && ipam::load(root, rest)?.is_some() {
                continue;
            }
            if rest == DEFAULT_NETWORK {
                Some(DEFAULT_BRIDGE.to_string())
            } else {
                nft::table_bridge(&table)?
            }
        };
        if let Some(link) = link {
            if host
                .link_index(&link)
                .with_context(|| format!("cannot look up link {link}"))?
                .is_some()
            {
                continue;
            }
        }
        nft::remove_table(&table)?;
        removed.push(table);
    }
    Ok(removed)
}

/// `inspect`'s `NetworkSettings`, shaped as Docker's: the address, gateway and MAC of
/// a running container on a bridge network, empty otherwise; `Networks` keyed by the
/// network's name (`mode` is `HostConfig.NetworkMode`). `Ports` lists each of the
/// `exposed` ports ("80/tcp") with its bindings, null for one not published, while the
/// container is attached; `{}` otherwise.
pub fn settings(root: &Path, id: &str, mode: &str, exposed: &[String]) -> serde_json::Value {
    use serde_json::json;
    let attached = attachment(root, id);
    let (ip, prefix, gateway, mac, network_id) = match &attached {
        Some(a) => (
            a.ip.to_string(),
            a.prefix,
            a.gateway.to_string(),
            a.mac.clone(),
            a.network_id.clone(),
        ),
        None => Default::default(),
    };
    let mut networks = serde_json::Map::new();
    if !mode.is_empty() && !mode.starts_with("container:") {
        networks.insert(
            mode.to_string(),
            json!({
                "NetworkID": network_id,
                "Gateway": gateway,
                "IPAddress": ip,
                "IPPrefixLen": prefix,
                "MacAddress": mac,
            }),
        );
    }
    let mut ports = serde_json::Map::new();
    if attached.is_some() {
        for key in exposed {
            ports.insert(key.clone(), serde_json::Value::Null);
        }
    }
    for p in attached.iter().flat_map(|a| a.ports.iter()) {
        let entry = ports.entry(p.key()).or_insert(serde_json::Value::Null);
        if entry.is_null() {
            *entry = json!([]);
        }
        if let Some(list) = entry.as_array_mut() {
            list.push(
                json!({ "HostIp": p.host_ip.to_string(), "HostPort": p.host_port.to_string() }),
            );
        }
    }
    json!({
        "SandboxKey": if attached.is_some() { netns_path(root, id).display().to_string() } else { String::new() },
        "Ports": ports,
        "Gateway": gateway,
        "IPAddress": ip,
        "IPPrefixLen": prefix,
        "MacAddress": mac,
        "Networks": networks,
    })
}
