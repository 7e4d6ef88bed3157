//! `network create | ls | inspect | rm`: user networks. A network is its config under
//! `<root>/networks/`; its bridge (`mc-` and 12 hex digits of its id) and nftables table
//! are made when the first container attaches and removed by `network rm`.

use std::path::Path;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::ipam::{self, NetworkConfig, Subnet};
use super::{attachments, remove_bridge, DEFAULT_BRIDGE, DEFAULT_NETWORK};

/// Names `--network` gives another meaning to.
const RESERVED: &[&str] = &["bridge", "none", "host", "default"];

/// `network create NAME [--subnet CIDR] [--internal]`.
pub fn create(
    root: &Path,
    name: &str,
    subnet: Option<&str>,
    internal: bool,
) -> anyhow::Result<NetworkConfig> {
    crate::container::validate_name(name)
        .with_context(|| format!("invalid network name {name:?}"))?;
    if RESERVED.contains(&name) || name.starts_with("container:") {
        bail!("network name {name:?} is reserved: choose another");
    }
    let _lock = ipam::lock(root, name)?;
    if ipam::load(root, name)?.is_some() {
        bail!("network {name} already exists");
    }
    let mut taken: Vec<(Subnet, String)> = ipam::host_routes()
        .into_iter()
        .map(|s| (s, "a route of this host".to_string()))
        .collect();
    for other in ipam::list(root)? {
        taken.push((other.subnet()?, format!("network {}", other.name)));
    }
    let subnet = match subnet {
        Some(text) => {
            let subnet: Subnet = text.parse()?;
            if let Some((_, what)) = taken.iter().find(|(t, _)| t.overlaps(&subnet)) {
                bail!("subnet {subnet} overlaps {what}: choose another with --subnet");
            }
            subnet
        }
        None => ipam::choose_subnet(&taken.iter().map(|(s, _)| *s).collect::<Vec<_>>())?,
    };
    let id = crate::container::record::random_id()?;
    let config = NetworkConfig {
        name: name.to_string(),
        bridge: format!("mc-{}", &id[..12]),
        id,
        subnet: subnet.to_string(),
        gateway: subnet.nth(1),
        internal,
        created: crate::container::state::now_unix(),
    };
    ipam::save(root, &config)?;
    Ok(config)
}

fn find(root: &Path, name: &str) -> anyhow::Result<NetworkConfig> {
    if let Some(config) = ipam::load(root, name)? {
        return Ok(config);
    }
    // By id prefix, as Docker allows.
    let matches: Vec<NetworkConfig> = ipam::list(root)?
        .into_iter()
        .filter(|c| !name.is_empty() && c.id.starts_with(name))
        .collect();
    match matches.len() {
        1 => Ok(matches.into_iter().next().expect("one match")),
        _ => bail!("network {name} not found"),
    }
}

/// Containers whose config names the network (running or not), by id and name.
fn users(root: &Path, network: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for id in crate::container::record::list_ids(root)? {
        let dir = crate::container::paths::containers_dir(root).join(&id);
        let Ok(spec) = oci_spec::runtime::Spec::load(dir.join("config.json")) else {
            continue;
        };
        let on = spec
            .annotations()
            .as_ref()
            .and_then(|a| a.get(super::ANNOTATION_NETWORK))
            .is_some_and(|n| n == network);
        if on {
            let name = crate::container::State::load(&dir.join("state.json"))
                .ok()
                .and_then(|s| s.name)
                .unwrap_or_default();
            out.push((id, name));
        }
    }
    Ok(out)
}

/// `network rm NAME`: refused while a container uses it; removes its bridge and rules.
pub fn remove(root: &Path, name: &str) -> anyhow::Result<String> {
    if RESERVED.contains(&name) {
        bail!("{name} is a pre-defined network and cannot be removed");
    }
    let config = find(root, name)?;
    let _lock = ipam::lock(root, &config.name)?;
    if let Some((id, container)) = users(root, &config.name)?.into_iter().next() {
        let who = if container.is_empty() { id } else { container };
        bail!(
            "network {} is in use by container {who}: remove the container first",
            config.name
        );
    }
    remove_bridge(&config)?;
    ipam::remove_config(root, &config.name)?;
    let lock = ipam::networks_dir(root).join(format!("{}.lock", config.name));
    let _ = std::fs::remove_file(lock);
    Ok(config.name)
}

/// `network ls` rows: (id, name, driver), the pre-defined ones first.
pub fn list(root: &Path) -> anyhow::Result<Vec<(String, String, String)>> {
    let mut rows = Vec::new();
    let stored = ipam::list(root)?;
    let default_id = stored
        .iter()
        .find(|c| c.name == DEFAULT_NETWORK)
        .map(|c| c.id.clone())
        .unwrap_or_default();
    rows.push((
        default_id,
        DEFAULT_NETWORK.to_string(),
        "bridge".to_string(),
    ));
    rows.push((String::new(), "host".into(), "host".into()));
    rows.push((String::new(), "none".into(), "null".into()));
    for config in stored.into_iter().filter(|c| c.name != DEFAULT_NETWORK) {
        rows.push((config.id, config.name, "bridge".into()));
    }
    Ok(rows)
}

/// `network inspect NAME`, shaped as Docker's.
pub fn inspect(root: &Path, name: &str) -> anyhow::Result<Value> {
    let config = match find(root, name) {
        Ok(config) => config,
        Err(_) if name == DEFAULT_NETWORK => {
            // Not made yet: it will be on first use.
            return Ok(json!({
                "Name": DEFAULT_NETWORK, "Id": "", "Driver": "bridge", "Internal": false,
                "IPAM": { "Driver": "default", "Config": [] }, "Containers": {},
                "Options": { "com.docker.network.bridge.name": DEFAULT_BRIDGE },
            }));
        }
        Err(e) => return Err(e),
    };
    let mut containers = serde_json::Map::new();
    for (id, a) in attachments(root)
        .into_iter()
        .filter(|(_, a)| a.network == config.name)
    {
        containers.insert(
            id,
            json!({
                "Name": a.name,
                "MacAddress": a.mac,
                "IPv4Address": format!("{}/{}", a.ip, a.prefix),
            }),
        );
    }
    Ok(json!({
        "Name": config.name,
        "Id": config.id,
        "Created": crate::timefmt::rfc3339(config.created, 0),
        "Scope": "local",
        "Driver": "bridge",
        "Internal": config.internal,
        "IPAM": {
            "Driver": "default",
            "Config": [{ "Subnet": config.subnet, "Gateway": config.gateway.to_string() }],
        },
        "Containers": containers,
        "Options": { "com.docker.network.bridge.name": config.bridge },
    }))
}
