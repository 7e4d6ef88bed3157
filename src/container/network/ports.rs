//! Published ports: `-p [IP:][HOSTPORT:]CTRPORT[/tcp|udp]` and `-P`, checked for
//! conflicts (ports other containers publish, sockets bound on the host) under one
//! lock before anything is made, and forwarded by nftables DNAT (no proxy process).

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// The spec annotation holding the ports asked for (JSON).
pub const ANNOTATION_PORTS: &str = "org.mycontainer.ports";

/// One published port. `host_port` 0: a free one is chosen at each start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMap {
    /// The host address it listens on; 0.0.0.0 for all.
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
    pub container_port: u16,
    /// "tcp" or "udp".
    pub proto: String,
}

impl PortMap {
    /// `80/tcp -> 0.0.0.0:8080`, as `docker port` prints.
    pub fn show(&self) -> String {
        format!(
            "{}/{} -> {}:{}",
            self.container_port, self.proto, self.host_ip, self.host_port
        )
    }
    /// `0.0.0.0:8080->80/tcp`, as `docker ps` prints.
    pub fn show_short(&self) -> String {
        format!(
            "{}:{}->{}/{}",
            self.host_ip, self.host_port, self.container_port, self.proto
        )
    }
}

fn port(text: &str, value: &str) -> anyhow::Result<u16> {
    match text.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => bail!("invalid port {text:?} in -p {value:?}: use a number from 1 to 65535"),
    }
}

/// `-p [IP:][HOSTPORT:]CTRPORT[/tcp|udp]`.
pub fn parse(value: &str) -> anyhow::Result<PortMap> {
    let (spec, proto) = match value.rsplit_once('/') {
        Some((spec, proto @ ("tcp" | "udp"))) => (spec, proto),
        Some((_, proto)) => bail!("invalid protocol {proto:?} in -p {value:?}: use tcp or udp"),
        None => (value, "tcp"),
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [c] => ("", "", *c),
        [h, c] => ("", *h, *c),
        [ip, h, c] => (*ip, *h, *c),
        _ => bail!("invalid -p {value:?}: use [IP:][HOSTPORT:]CTRPORT[/tcp|udp]"),
    };
    let host_ip = if ip.is_empty() {
        Ipv4Addr::UNSPECIFIED
    } else {
        ip.parse().with_context(|| {
            format!("invalid address {ip:?} in -p {value:?}: give an IPv4 address")
        })?
    };
    Ok(PortMap {
        host_ip,
        host_port: if host.is_empty() {
            0
        } else {
            port(host, value)?
        },
        container_port: port(container, value)?,
        proto: proto.to_string(),
    })
}

/// `-P`: the image's exposed ports ("80/tcp", "53/udp", "8080"), each on a free port.
pub fn exposed(keys: &[String]) -> anyhow::Result<Vec<PortMap>> {
    keys.iter()
        .map(|key| {
            let (p, proto) = key.split_once('/').unwrap_or((key, "tcp"));
            parse(&format!("{p}/{proto}"))
        })
        .collect()
}

fn overlaps(a: Ipv4Addr, b: Ipv4Addr) -> bool {
    a == b || a.is_unspecified() || b.is_unspecified()
}

/// Whether a host socket already holds `ip:port/proto` (a bind attempt, released at once).
fn bound_on_host(ip: Ipv4Addr, port: u16, proto: &str) -> bool {
    let addr = SocketAddrV4::new(ip, port);
    let free = if proto == "udp" {
        UdpSocket::bind(addr).is_ok()
    } else {
        TcpListener::bind(addr).is_ok()
    };
    !free
}

/// A port the host chooses as free for `ip` (an ephemeral bind).
fn free_port(ip: Ipv4Addr, proto: &str) -> anyhow::Result<u16> {
    let addr = SocketAddrV4::new(ip, 0);
    let port = if proto == "udp" {
        UdpSocket::bind(addr).and_then(|s| s.local_addr())
    } else {
        TcpListener::bind(addr).and_then(|s| s.local_addr())
    }
    .with_context(|| format!("cannot find a free {proto} port on {ip}"))?
    .port();
    Ok(port)
}

/// Resolves `wanted` for a container (the caller holds the ports lock): chooses free
/// host ports, and refuses a port another container publishes (`taken`: its name and
/// ports) or a host socket holds.
pub fn resolve(
    wanted: &[PortMap],
    taken: &[(String, Vec<PortMap>)],
) -> anyhow::Result<Vec<PortMap>> {
    let mut resolved: Vec<PortMap> = Vec::new();
    for want in wanted {
        let clash = |p: &PortMap, port: u16| {
            p.proto == want.proto && p.host_port == port && overlaps(p.host_ip, want.host_ip)
        };
        let mut port = want.host_port;
        if port == 0 {
            let mut tries = 0;
            loop {
                let candidate = free_port(want.host_ip, &want.proto)?;
                let used = taken
                    .iter()
                    .any(|(_, ps)| ps.iter().any(|p| clash(p, candidate)))
                    || resolved.iter().any(|p| clash(p, candidate));
                if !used {
                    port = candidate;
                    break;
                }
                tries += 1;
                if tries > 50 {
                    bail!("cannot find a free {} port on {}", want.proto, want.host_ip);
                }
            }
        } else {
            if let Some((who, _)) = taken
                .iter()
                .find(|(_, ps)| ps.iter().any(|p| clash(p, port)))
            {
                bail!(
                    "port {}:{port}/{} is already published by container {who}: choose another host port",
                    want.host_ip,
                    want.proto
                );
            }
            if resolved.iter().any(|p| clash(p, port)) {
                bail!(
                    "port {port}/{} is published twice: give each -p its own host port",
                    want.proto
                );
            }
            if bound_on_host(want.host_ip, port, &want.proto) {
                bail!(
                    "host port {}:{port}/{} is already in use: choose another host port",
                    want.host_ip,
                    want.proto
                );
            }
        }
        resolved.push(PortMap {
            host_port: port,
            ..want.clone()
        });
    }
    Ok(resolved)
}

/// Lets the bridge route packets whose source is 127.0.0.1 (a port published on the
/// host's loopback, DNATed to a container), as Docker and netavark do.
pub fn allow_localnet(bridge: &str) -> anyhow::Result<()> {
    let path = format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet");
    if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    std::fs::write(&path, "1").with_context(|| format!("cannot enable {path}"))
}

/// The ports lock's name (a lock file beside the networks').
pub const LOCK: &str = ".ports";

/// The ports a spec asks for.
pub fn wanted(annotations: Option<&std::collections::HashMap<String, String>>) -> Vec<PortMap> {
    annotations
        .and_then(|a| a.get(ANNOTATION_PORTS))
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_forms_parse_as_docker_reads_them() {
        let p = parse("8080:80").unwrap();
        assert_eq!(
            (p.host_ip, p.host_port, p.container_port, p.proto.as_str()),
            (Ipv4Addr::UNSPECIFIED, 8080, 80, "tcp")
        );
        let p = parse("127.0.0.1:5353:53/udp").unwrap();
        assert_eq!(
            (p.host_ip, p.host_port, p.container_port, p.proto.as_str()),
            (Ipv4Addr::LOCALHOST, 5353, 53, "udp")
        );
        assert_eq!(parse("80").unwrap().host_port, 0);
        assert_eq!(parse("127.0.0.1::80").unwrap().host_port, 0);
        for bad in ["0:80", "80/sctp", "x:80", "1:2:3:4", "70000", "1.2.3:80:80"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            exposed(&["80/tcp".into(), "53/udp".into()]).unwrap().len(),
            2
        );
    }

    #[test]
    fn a_port_published_elsewhere_or_twice_is_refused() {
        let taken = vec![("web".to_string(), vec![parse("18080:80").unwrap()])];
        let err = resolve(&[parse("127.0.0.1:18080:81").unwrap()], &taken).unwrap_err();
        assert!(
            err.to_string()
                .contains("already published by container web"),
            "{err}"
        );
        // Another protocol, or the same port twice in one run.
        assert!(resolve(&[parse("18080:80/udp").unwrap()], &taken).is_ok());
        assert!(resolve(
            &[parse("18081:80").unwrap(), parse("18081:81").unwrap()],
            &[]
        )
        .is_err());
        let chosen = resolve(&[parse("80").unwrap()], &taken).unwrap();
        assert_ne!(chosen[0].host_port, 0);
    }
}
