//! A network's nftables rules: one table of ours per network (`ip mycontainer-NAME`),
//! so `nft list table ip mycontainer-NAME` shows exactly them and deleting the table
//! removes them all. Written as one transaction piped to `nft -f` when the network's
//! bridge is made; a run's published ports are elements of its maps (`nfnl.rs`).

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::ipam::NetworkConfig;
use super::nfnl::{self, Element};
use super::ports::PortMap;

const MISSING: &str = "install the nftables package";

/// Removal without nft installed: nothing of ours can exist, so nothing to remove.
fn removed(result: anyhow::Result<()>) -> anyhow::Result<()> {
    match result {
        Err(e) if e.to_string().contains(MISSING) => Ok(()),
        other => other,
    }
}

fn nft(commands: Vec<Value>) -> anyhow::Result<()> {
    run_nft(
        &["-j"],
        &serde_json::to_vec(&json!({ "nftables": commands }))?,
    )
}

/// Runs an nftables script in nft's own syntax.
fn nft_text(script: &str) -> anyhow::Result<()> {
    run_nft(&[], script.as_bytes())
}

fn run_nft(flags: &[&str], input: &[u8]) -> anyhow::Result<()> {
    // Its stdin by /proc: "-" makes nft open /dev/stdin, which minimal systems lack.
    let mut child = Command::new("nft")
        .args(flags)
        .args(["-f", "/proc/self/fd/0"])
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
        .write_all(input)
        .context("cannot write to nft")?;
    let out = child.wait_with_output().context("cannot wait for nft")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("");
        bail!("nft failed: {first}");
    }
    Ok(())
}

/// The map of ports published on every host address: `proto . port : addr . port`.
pub const PORTS_ANY: &str = "ports_any";
/// The map of ports published on one host address: `addr . proto . port : addr . port`.
pub const PORTS_IP: &str = "ports_ip";

/// (Re)creates the network's table: outbound traffic from its subnet to anywhere else
/// is masqueraded (not for an internal network, whose containers reach only each other),
/// and packets for a local address whose port is an element of one of the two port maps
/// are DNATed to the container that publishes it (from outside, and from the host's own
/// processes, loopback included), and nothing is forwarded from its bridge to another
/// network's. A container reaching a published port through a host address (its own
/// or a peer's: hairpin) is masqueraded too, so the answer comes back through the host
/// and is un-DNATed (with hairpin mode on its bridge port, as Docker without its proxy).
/// A run only adds and deletes map elements (`nfnl.rs`),
/// so the rules are written once, here, when the network's bridge is made.
pub fn apply(config: &NetworkConfig) -> anyhow::Result<()> {
    let table = config.table();
    let subnet = config.subnet()?;
    let masquerade = if config.internal {
        String::new()
    } else {
        format!("ip saddr {subnet} ip daddr != {subnet} masquerade")
    };
    // Isolation, as Docker's: nothing is routed from this bridge to another network's
    // (ours are all named mycontainer0 or mc-*); a drop in any table's base chain drops.
    let bridge = &config.bridge;
    let isolation = [super::DEFAULT_BRIDGE, "mc-*"]
        .iter()
        .map(|other| {
            format!("iifname \"{bridge}\" oifname != \"{bridge}\" oifname \"{other}\" drop")
        })
        .collect::<Vec<_>>()
        .join("\n");
    let dnat = "fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @ports_ip
                fib daddr type local dnat ip to meta l4proto . th dport map @ports_any";
    // Text, not JSON: nft 1.0.6 crashes on a JSON dnat whose map data is a concatenation.
    // Deleted and made again: a clean slate in one transaction.
    nft_text(&format!(
        r#"table ip {table} {{}}
        delete table ip {table}
        table ip {table} {{
            map {PORTS_ANY} {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}
            map {PORTS_IP} {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }}
            chain prerouting {{
                type nat hook prerouting priority -100; policy accept;
                {dnat}
            }}
            chain output {{
                type nat hook output priority -100; policy accept;
                {dnat}
            }}
            chain postrouting {{
                type nat hook postrouting priority 100; policy accept;
                {masquerade}
                ip saddr 127.0.0.0/8 ip daddr {subnet} masquerade
                oifname "{bridge}" ip saddr {subnet} ct status dnat masquerade
            }}
            chain forward {{
                type filter hook forward priority 0; policy accept;
                {isolation}
            }}
        }}
        "#
    ))
}

/// Deletes the network's table (a missing one is fine).
pub fn remove(config: &NetworkConfig) -> anyhow::Result<()> {
    // "add" first makes the delete succeed whether or not the table exists.
    remove_table(&config.table())
}

/// Runs `nft ARGS` and returns what it printed; `None` when nft is not installed.
fn nft_output(args: &[&str]) -> anyhow::Result<Option<String>> {
    let out = match Command::new("nft").args(args).stdin(Stdio::null()).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(anyhow::Error::new(e).context("cannot run nft")),
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!("nft {} failed: {}", args.join(" "), err.trim());
    }
    Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// The names of our tables (`ip mycontainer-*`) in this network namespace, those of
/// networks that exist and leftovers alike (none without nft).
pub fn our_tables() -> anyhow::Result<Vec<String>> {
    let Some(text) = nft_output(&["list", "tables", "ip"])? else {
        return Ok(Vec::new());
    };
    // One line a table: "table ip NAME".
    Ok(text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("table ip "))
        .map(str::trim)
        .filter(|name| name.starts_with("mycontainer-"))
        .map(str::to_string)
        .collect())
}

/// Whether our table `table` exists; `None` without nft (then nothing of ours can).
pub fn has_table(table: &str) -> anyhow::Result<Option<bool>> {
    let Some(text) = nft_output(&["list", "tables", "ip"])? else {
        return Ok(None);
    };
    Ok(Some(text.lines().any(|l| {
        l.trim().strip_prefix("table ip ").map(str::trim) == Some(table)
    })))
}

/// Whether an existing network table masquerades its subnet's outbound traffic (what
/// [`apply`] writes for a network that is not internal).
pub fn masquerades(table: &str) -> anyhow::Result<bool> {
    Ok(nft_output(&["list", "table", "ip", table])?
        .is_some_and(|text| text.contains("ip daddr != ")))
}

/// The bridge a network table's rules name (its `forward` chain's `iifname`), if any.
pub fn table_bridge(table: &str) -> anyhow::Result<Option<String>> {
    let Some(text) = nft_output(&["list", "table", "ip", table])? else {
        return Ok(None);
    };
    Ok(text.split("iifname \"").nth(1).and_then(|rest| {
        rest.split('"')
            .next()
            .filter(|b| !b.is_empty())
            .map(str::to_string)
    }))
}

/// Deletes the table `table` of ours (a missing one is fine).
pub fn remove_table(table: &str) -> anyhow::Result<()> {
    removed(nft(vec![
        json!({ "add": { "table": { "family": "ip", "name": table } } }),
        json!({ "delete": { "table": { "family": "ip", "name": table } } }),
    ]))
    .with_context(|| format!("cannot delete nftables table ip {table}"))
}

/// The map elements forwarding `ports` to `container`.
fn port_elements(container: Ipv4Addr, ports: &[PortMap]) -> Vec<Element> {
    ports
        .iter()
        .map(|p| {
            let proto: u8 = if p.proto == "udp" { 17 } else { 6 };
            let field = |bytes: &[u8]| {
                let mut padded = bytes.to_vec();
                padded.resize(4, 0);
                padded
            };
            let mut key = Vec::new();
            if !p.host_ip.is_unspecified() {
                key.extend(p.host_ip.octets());
            }
            key.extend(field(&[proto]));
            key.extend(field(&p.host_port.to_be_bytes()));
            let mut data = container.octets().to_vec();
            data.extend(field(&p.container_port.to_be_bytes()));
            Element {
                set: if p.host_ip.is_unspecified() {
                    PORTS_ANY
                } else {
                    PORTS_IP
                },
                key,
                data,
            }
        })
        .collect()
}

const NFPROTO_IPV4: u8 = 2;

/// Publishes `ports` of `container` in the network table `table`: map elements, added
/// in one netfilter transaction.
pub fn publish(table: &str, container: Ipv4Addr, ports: &[PortMap]) -> anyhow::Result<()> {
    nfnl::elements(NFPROTO_IPV4, table, true, &port_elements(container, ports)).with_context(|| {
        format!("cannot publish the container's ports in nftables table ip {table}")
    })
}

/// Withdraws `ports` from the network table `table` (a missing table or element is fine:
/// already withdrawn).
pub fn unpublish(table: &str, ports: &[PortMap]) -> anyhow::Result<()> {
    match nfnl::elements(
        NFPROTO_IPV4,
        table,
        false,
        &port_elements(Ipv4Addr::UNSPECIFIED, ports),
    ) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other.with_context(|| {
            format!("cannot withdraw the container's ports from nftables table ip {table}")
        }),
    }
}
