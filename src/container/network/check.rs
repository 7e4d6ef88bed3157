//! `system check`, the network half: every network config, lease and attachment under
//! the state root against reality. Found: a config that cannot be read (empty, corrupt,
//! unreadable: a killed or failed write), a config's half-written temp file, a lease or
//! an attachment whose container no longer runs (its CLI or supervisor killed), and a
//! network whose bridge or nftables table is gone while containers use it. With
//! `repair`, a network is never lost: a corrupt config is rebuilt from its running
//! containers' attachments (same id, subnet, bridge), or, when none runs on it, made
//! again under the same name with a fresh subnet (the default network, made on first
//! use, is removed instead); a missing bridge or table is made again from the config,
//! with the running containers' veths put back on the bridge and their ports published
//! again. Each network is checked under its lock, as `run` and `network rm` take it.

use std::fs;
use std::path::Path;

use anyhow::Context;
use mycontainer_store::Finding;

use super::ipam::{self, NetworkConfig, Subnet};
use super::netlink::Netlink;
use super::published;
use super::{attachments, nft, Attachment, DEFAULT_NETWORK};

/// Checks the networks under `root` (`alive` tells, by container id, whether a container
/// still runs: someone holds its record's lock).
pub fn check(
    root: &Path,
    repair: bool,
    alive: &dyn Fn(&str) -> bool,
    findings: &mut Vec<Finding>,
) -> anyhow::Result<()> {
    check_attachments(root, repair, alive, findings)?;
    check_claims(root, repair, findings)?;
    // The root's networks, and the default one in its shared home (a legacy default
    // network's files under the root are not the default network: gc removes them).
    let listed = |dir: &Path| -> Vec<String> {
        fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let default_file = |file: &String| file.split('.').next() == Some(DEFAULT_NETWORK);
    let mut names: Vec<String> = listed(&ipam::networks_dir(root))
        .into_iter()
        .filter(|file| !default_file(file))
        .chain(
            listed(&ipam::home(root, DEFAULT_NETWORK))
                .into_iter()
                .filter(default_file),
        )
        .collect();
    names.sort();
    for file in &names {
        if let Some(name) = file.strip_suffix(".json.tmp") {
            let _lock = ipam::lock(root, name)?;
            let tmp = ipam::home(root, name).join(file);
            if !tmp.exists() {
                continue;
            }
            let mut finding = problem(format!(
                "network {name}: a half-written config {} (a killed `network create` or run)",
                tmp.display()
            ));
            if repair {
                fs::remove_file(&tmp)
                    .with_context(|| format!("cannot remove {}", tmp.display()))?;
                finding.repair = Some("removed it".into());
            }
            findings.push(finding);
        }
    }
    // Unreadable configs first: every later network command (and `ipam::list`, which
    // making a network again needs) fails on one.
    let mut make_again = Vec::new();
    for file in &names {
        let Some(name) = file.strip_suffix(".json") else {
            continue;
        };
        let _lock = ipam::lock(root, name)?;
        let Err(err) = ipam::load(root, name) else {
            continue;
        };
        let mut finding = problem(format!(
            "network {name}: its config cannot be read ({err:#}): run `system check --repair`, or remove the containers that use it and `network rm {name}`"
        ));
        if repair {
            finding.repair = Some(match rebuild(root, name)? {
                Some(how) => how,
                None if name == DEFAULT_NETWORK => {
                    "removed it (the next run makes it again)".to_string()
                }
                None => {
                    make_again.push((name.to_string(), findings.len()));
                    String::new()
                }
            });
        }
        findings.push(finding);
    }
    for (name, at) in make_again {
        let config = super::manage::create(root, &name, None, false)
            .with_context(|| format!("cannot make network {name} again"))?;
        findings[at].repair = Some(format!(
            "made it again with subnet {} (its old settings could not be read)",
            config.subnet
        ));
    }
    // Those still unreadable (without --repair) were reported above.
    let readable = names
        .iter()
        .filter_map(|file| file.strip_suffix(".json"))
        .filter_map(|name| ipam::load(root, name).ok().flatten());
    for config in readable {
        let _lock = ipam::lock(root, &config.name)?;
        check_leases(root, &config, repair, alive, findings)?;
        check_bridge(root, &config, repair, alive, findings)?;
    }
    Ok(())
}

/// An attachment (`netns/<id>.json`: namespace, veth, lease, ports) of a container that
/// no longer runs: what `gc` releases.
fn check_attachments(
    root: &Path,
    repair: bool,
    alive: &dyn Fn(&str) -> bool,
    findings: &mut Vec<Finding>,
) -> anyhow::Result<()> {
    for (id, a) in attachments(root) {
        if alive(&id) {
            continue;
        }
        let short = &id[..12.min(id.len())];
        let mut finding = problem(format!(
            "container {short}: no longer runs but still holds address {} on network {} (and its veth, namespace and ports): `mycontainer gc` releases them",
            a.ip, a.network
        ));
        if repair {
            super::release(root, &id)
                .with_context(|| format!("cannot release the network of container {short}"))?;
            finding.repair = Some("released them".into());
        }
        findings.push(finding);
    }
    Ok(())
}

/// Published ports claimed (in this network namespace, by any state root) for containers
/// that no longer run: they keep the host ports from everyone else, and their rules
/// forward to an address that may be leased again. (A claim of this root's with an
/// attachment is the attachment's finding, above.)
fn check_claims(root: &Path, repair: bool, findings: &mut Vec<Finding>) -> anyhow::Result<()> {
    if !published::in_use() {
        return Ok(());
    }
    let claims = {
        let _lock = published::lock()?;
        published::claims()
    };
    let mut host = Netlink::open().context("cannot open a netlink socket")?;
    for claim in claims {
        if (claim.root == root && super::attachment(root, &claim.id).is_some())
            || super::claim_in_use(&claim, &mut host)?
        {
            continue;
        }
        let ports: Vec<String> = claim.ports.iter().map(|p| p.show_short()).collect();
        let owner = if claim.root == root {
            String::new()
        } else {
            format!(" of state root {}", claim.root.display())
        };
        let mut finding = problem(format!(
            "container {}{owner}, which no longer runs, still publishes {}: `mycontainer gc` frees them",
            claim.who(),
            ports.join(", ")
        ));
        if repair && super::free_claim(&claim, &mut host)? {
            finding.repair = Some("freed them".into());
        }
        findings.push(finding);
    }
    Ok(())
}

/// Leases (the caller holds the network's lock) not in use (`lease_in_use`: on the
/// shared default network, another root's lease counts while that root's container
/// runs or its veth is on the bridge), and leases that name no container at all (a
/// kill between creating the lease file and writing the id into it).
fn check_leases(
    root: &Path,
    config: &NetworkConfig,
    repair: bool,
    alive: &dyn Fn(&str) -> bool,
    findings: &mut Vec<Finding>,
) -> anyhow::Result<()> {
    let mut host = Netlink::open().context("cannot open a netlink socket")?;
    for lease in ipam::leases(root, &config.name) {
        let is_id = lease.id.len() == 64 && lease.id.bytes().all(|b| b.is_ascii_hexdigit());
        if is_id && super::lease_in_use(root, &lease, alive, &mut host)? {
            continue;
        }
        let who = match &lease.root {
            _ if !is_id => "no container".to_string(),
            Some(other) if other != root => format!(
                "container {} of state root {}, which no longer runs",
                &lease.id[..12],
                other.display()
            ),
            _ => format!("container {}, which no longer runs", &lease.id[..12]),
        };
        let mut finding = problem(format!(
            "network {}: address {} is leased to {who}",
            config.name, lease.ip
        ));
        if repair {
            super::free_lease(root, &config.name, &lease);
            let path = ipam::leases_dir(root, &config.name).join(lease.ip.to_string());
            if path.exists() {
                finding
                    .problem
                    .push_str(&format!(" (cannot remove {})", path.display()));
            } else {
                finding.repair = Some("freed it".into());
            }
        }
        findings.push(finding);
    }
    Ok(())
}

/// The bridge and nftables table of a network (the caller holds its lock): the table
/// must exist while the bridge does (a run only makes them both when the bridge is
/// missing), and the bridge while containers are attached to it.
fn check_bridge(
    root: &Path,
    config: &NetworkConfig,
    repair: bool,
    alive: &dyn Fn(&str) -> bool,
    findings: &mut Vec<Finding>,
) -> anyhow::Result<()> {
    let users: Vec<(String, Attachment)> = attachments(root)
        .into_iter()
        .filter(|(id, a)| a.network == config.name && alive(id))
        .collect();
    let mut host = Netlink::open().context("cannot open a netlink socket")?;
    let bridge = host
        .link_index(&config.bridge)
        .with_context(|| format!("cannot look up bridge {}", config.bridge))?;
    let table = config.table();
    // Without nft no table can exist (and a run says which package to install).
    let has_table = nft::has_table(&table)?.unwrap_or(true);
    let missing = match (bridge, has_table) {
        (None, _) if !users.is_empty() => format!("bridge {}", config.bridge),
        (Some(_), false) => format!("nftables table ip {table}"),
        _ => return Ok(()),
    };
    let mut finding = problem(format!(
        "network {}: its {missing} is missing while {} container(s) use it: run `system check --repair` to make it again",
        config.name,
        users.len()
    ));
    if repair {
        remake(config, &users, &mut host)
            .with_context(|| format!("cannot make network {} again", config.name))?;
        finding.repair = Some(format!(
            "made its bridge and rules again from its config and put back {} container(s)",
            users.len()
        ));
    }
    findings.push(finding);
    Ok(())
}

/// Makes the network's bridge (if missing) and its table again, then puts each running
/// container's veth back on the bridge and publishes its ports again.
fn remake(
    config: &NetworkConfig,
    users: &[(String, Attachment)],
    host: &mut Netlink,
) -> anyhow::Result<()> {
    let index = match host.link_index(&config.bridge)? {
        Some(index) => index,
        None => {
            let index = host.create_bridge(&config.bridge)?;
            host.add_address(index, config.gateway, config.subnet()?.prefix)?;
            super::ports::allow_localnet(&config.bridge)?;
            super::enable_forwarding(config)?;
            index
        }
    };
    nft::apply(config)?;
    for (_, a) in users {
        // A veth whose container's namespace is gone is gone too: nothing to put back.
        if host.link_index(&a.veth)?.is_none() {
            continue;
        }
        host.set_master(&a.veth, index)
            .with_context(|| format!("cannot attach {} to {}", a.veth, config.bridge))?;
        host.set_port_up(&a.veth)?;
        host.set_up(index)?;
        if !a.ports.is_empty() {
            nft::publish(&config.table(), a.ip, &a.ports)?;
        }
    }
    Ok(())
}

/// Repairs the unreadable config of network `name` (the caller holds its lock): rebuilt
/// from the attachments of the containers running on it (returns what was done), or,
/// when none runs on it, removed with its old bridge and table (returns `None`: the
/// caller makes a user network again once every unreadable config is out of the way).
fn rebuild(root: &Path, name: &str) -> anyhow::Result<Option<String>> {
    let attached: Vec<Attachment> = attachments(root)
        .into_iter()
        .map(|(_, a)| a)
        .filter(|a| a.network == name)
        .collect();
    let table = ipam::table_of(name);
    if let Some(a) = attached.first() {
        let internal = nft::has_table(&table)?.unwrap_or(false) && !nft::masquerades(&table)?;
        let subnet = Subnet::new(a.ip, a.prefix);
        let config = NetworkConfig {
            name: name.to_string(),
            id: a.network_id.clone(),
            subnet: subnet.to_string(),
            gateway: a.gateway,
            bridge: a.bridge.clone(),
            internal,
            created: crate::container::state::now_unix(),
        };
        ipam::save(root, &config)?;
        return Ok(Some(format!(
            "rebuilt it from the attachments of its {} running container(s): subnet {subnet}, bridge {}",
            attached.len(),
            a.bridge
        )));
    }
    // Nothing runs on it: its old bridge and table can go.
    if nft::has_table(&table)?.unwrap_or(false) {
        if let Some(bridge) = nft::table_bridge(&table)? {
            Netlink::open()?
                .delete_link(&bridge)
                .with_context(|| format!("cannot delete bridge {bridge}"))?;
        }
        nft::remove_table(&table)?;
    }
    ipam::remove_config(root, name)?;
    Ok(None)
}

fn problem(problem: String) -> Finding {
    Finding {
        problem,
        repair: None,
    }
}
