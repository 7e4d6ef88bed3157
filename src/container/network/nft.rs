//! A network's nftables rules: one table of ours per network (`ip mycontainer-NAME`),
//! so `nft list table ip mycontainer-NAME` shows exactly them and deleting the table
//! removes them all. Applied as one JSON transaction piped to `nft -j -f`.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::ipam::NetworkConfig;

const MISSING: &str = "install the nftables package";

/// Removal without nft installed: nothing of ours can exist, so nothing to remove.
fn removed(result: anyhow::Result<()>) -> anyhow::Result<()> {
    match result {
        Err(e) if e.to_string().contains(MISSING) => Ok(()),
        other => other,
    }
}

fn nft(commands: Vec<Value>) -> anyhow::Result<()> {
    let input = serde_json::to_vec(&json!({ "nftables": commands }))?;
    // Its stdin by /proc: "-" makes nft open /dev/stdin, which minimal systems lack.
    let mut child = Command::new("nft")
        .args(["-j", "-f", "/proc/self/fd/0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow::anyhow!("cannot run nft for the container network's rules: {MISSING}")
            } else {
                anyhow::Error::new(e).context("cannot run nft")
            }
        })?;
    child
        .stdin
        .take()
        .context("nft has no stdin")?
        .write_all(&input)
        .context("cannot write to nft")?;
    let out = child.wait_with_output().context("cannot wait for nft")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err.lines().next().unwrap_or("").trim();
        bail!("nft failed: {first}");
    }
    Ok(())
}

/// (Re)creates the network's table: outbound traffic from its subnet to anywhere else
/// is masqueraded (not for an internal network, whose containers reach only each other).
pub fn apply(config: &NetworkConfig) -> anyhow::Result<()> {
    let table = config.table();
    let subnet = config.subnet()?;
    let prefix = json!({ "prefix": { "addr": subnet.addr.to_string(), "len": subnet.prefix } });
    let mut commands = vec![
        json!({ "add": { "table": { "family": "ip", "name": table } } }),
        json!({ "flush": { "table": { "family": "ip", "name": table } } }),
        json!({ "add": { "chain": {
            "family": "ip", "table": table, "name": "postrouting",
            "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"
        } } }),
    ];
    if !config.internal {
        commands.push(json!({ "add": { "rule": {
            "family": "ip", "table": table, "chain": "postrouting",
            "expr": [
                { "match": { "op": "==", "left": { "payload": { "protocol": "ip", "field": "saddr" } }, "right": prefix } },
                { "match": { "op": "!=", "left": { "payload": { "protocol": "ip", "field": "daddr" } }, "right": prefix } },
                { "masquerade": null }
            ]
        } } }));
    }
    nft(commands)
}

/// Deletes the network's table (a missing one is fine).
pub fn remove(config: &NetworkConfig) -> anyhow::Result<()> {
    let table = config.table();
    // "add" first makes the delete succeed whether or not the table exists.
    removed(nft(vec![
        json!({ "add": { "table": { "family": "ip", "name": table } } }),
        json!({ "delete": { "table": { "family": "ip", "name": table } } }),
    ]))
}

/// The table of container `id`'s published ports.
pub fn ports_table(id: &str) -> String {
    format!("mycontainer-ports-{}", &id[..12.min(id.len())])
}

/// Creates the table forwarding `ports` to `container` (DNAT from packets arriving for
/// a local address, and from the host's own, loopback included), and masquerading what
/// came from 127.0.0.0/8 so the container's replies find their way back.
pub fn apply_ports(
    table: &str,
    container: std::net::Ipv4Addr,
    ports: &[super::ports::PortMap],
) -> anyhow::Result<()> {
    let chain = |name: &str, hook: &str, prio: i32| {
        json!({ "add": { "chain": {
            "family": "ip", "table": table, "name": name,
            "type": "nat", "hook": hook, "prio": prio, "policy": "accept"
        } } })
    };
    let mut commands = vec![
        json!({ "add": { "table": { "family": "ip", "name": table } } }),
        json!({ "flush": { "table": { "family": "ip", "name": table } } }),
        chain("prerouting", "prerouting", -100),
        chain("output", "output", -100),
        chain("postrouting", "postrouting", 100),
    ];
    for p in ports {
        let mut expr = vec![json!({ "match": { "op": "==",
            "left": { "fib": { "result": "type", "flags": ["daddr"] } }, "right": "local" } })];
        if !p.host_ip.is_unspecified() {
            expr.push(json!({ "match": { "op": "==",
                "left": { "payload": { "protocol": "ip", "field": "daddr" } },
                "right": p.host_ip.to_string() } }));
        }
        expr.push(json!({ "match": { "op": "==",
            "left": { "payload": { "protocol": p.proto, "field": "dport" } },
            "right": p.host_port } }));
        expr.push(json!({ "dnat": { "addr": container.to_string(), "port": p.container_port } }));
        for chain in ["prerouting", "output"] {
            commands.push(json!({ "add": { "rule": {
                "family": "ip", "table": table, "chain": chain, "expr": expr
            } } }));
        }
    }
    commands.push(json!({ "add": { "rule": {
        "family": "ip", "table": table, "chain": "postrouting",
        "expr": [
            { "match": { "op": "==", "left": { "payload": { "protocol": "ip", "field": "saddr" } },
              "right": { "prefix": { "addr": "127.0.0.0", "len": 8 } } } },
            { "match": { "op": "==", "left": { "payload": { "protocol": "ip", "field": "daddr" } },
              "right": container.to_string() } },
            { "masquerade": null }
        ]
    } } }));
    nft(commands)
}

/// Deletes the table `name` (a missing one is fine).
pub fn remove_table(name: &str) -> anyhow::Result<()> {
    removed(nft(vec![
        json!({ "add": { "table": { "family": "ip", "name": name } } }),
        json!({ "delete": { "table": { "family": "ip", "name": name } } }),
    ]))
}
