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
    /// The last port of a host range `host_port-host_port_end` to choose one from (0:
    /// no range).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub host_port_end: u16,
    pub container_port: u16,
    /// "tcp" or "udp".
    pub proto: String,
}

fn is_zero(n: &u16) -> bool {
    *n == 0
}

impl PortMap {
    /// `HostPort` as `inspect`'s `HostConfig.PortBindings` shows it: "" for a free port
    /// (chosen at start), "8000-8010" for a range.
    pub fn host_port_text(&self) -> String {
        match (self.host_port, self.host_port_end) {
            (0, _) => String::new(),
            (p, 0) => p.to_string(),
            (p, end) => format!("{p}-{end}"),
        }
    }
    /// `80/tcp`, the key Docker's JSON uses.
    pub fn key(&self) -> String {
        format!("{}/{}", self.container_port, self.proto)
    }
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

/// The published ports as `docker ps` prints them, with Docker's grouping: sorted by
/// container port (then host address as text, host port, protocol); maps whose host port equals
/// the container port and that follow each other under one address and protocol are
/// collapsed (`0.0.0.0:8000-8002->8000-8002/tcp`), the others (a host port that differs)
/// are listed one by one after the groups.
pub fn display(ports: &[PortMap]) -> String {
    // (Docker compares addresses as text.)
    let mut sorted: Vec<(&PortMap, String)> =
        ports.iter().map(|p| (p, p.host_ip.to_string())).collect();
    sorted.sort_by(|(a, a_ip), (b, b_ip)| {
        (a.container_port, a_ip, a.host_port, &a.proto).cmp(&(
            b.container_port,
            b_ip,
            b.host_port,
            &b.proto,
        ))
    });
    // Open groups: (address, protocol) and (first, last), in the order they were opened.
    type Key<'a> = (Ipv4Addr, &'a str);
    let mut open: Vec<(Key, (u16, u16))> = Vec::new();
    let mut shown = Vec::new();
    let mut mapped = Vec::new();
    let group = |(ip, proto): (Ipv4Addr, &str), (first, last): (u16, u16)| {
        let ports = if first == last {
            first.to_string()
        } else {
            format!("{first}-{last}")
        };
        format!("{ip}:{ports}->{ports}/{proto}")
    };
    for (p, _) in sorted {
        if p.host_port != p.container_port {
            mapped.push(p.show_short());
            continue;
        }
        let key = (p.host_ip, p.proto.as_str());
        match open.iter_mut().find(|(k, _)| *k == key) {
            None => open.push((key, (p.container_port, p.container_port))),
            Some((_, (_, last))) if p.container_port == last.wrapping_add(1) => {
                *last = p.container_port
            }
            Some((_, range)) => {
                shown.push(group(key, *range));
                *range = (p.container_port, p.container_port);
            }
        }
    }
    shown.extend(open.into_iter().map(|(key, range)| group(key, range)));
    shown.extend(mapped);
    shown.join(", ")
}

fn port(text: &str, value: &str) -> anyhow::Result<u16> {
    match text.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => bail!("invalid port {text:?} in -p {value:?}: use a number from 1 to 65535"),
    }
}

/// `N` or `N-M` (M >= N): the first and last port.
fn range(text: &str, value: &str, what: &str) -> anyhow::Result<(u16, u16)> {
    let (first, last) = match text.split_once('-') {
        Some((first, last)) => (port(first, value)?, port(last, value)?),
        None => {
            let p = port(text, value)?;
            (p, p)
        }
    };
    if last < first {
        bail!(
            "invalid {what} {text:?} in -p {value:?}: a range goes from low to high, as 8000-8002"
        );
    }
    Ok((first, last))
}

/// `-p [IP:][HOSTPORT[-END]:]CTRPORT[-END][/tcp|udp]`, one map per container port, as
/// Docker reads it: `8000-8002:80-82` maps 80 to 8000, 81 to 8001, 82 to 8002; `80-82`
/// publishes each on a free port; `8000-8010:80` publishes 80 on a free port of
/// 8000-8010. Ranges of different lengths are refused.
pub fn parse(value: &str) -> anyhow::Result<Vec<PortMap>> {
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
    let (first, last) = range(container, value, "container port")?;
    let hosts = if host.is_empty() {
        None
    } else {
        Some(range(host, value, "host port")?)
    };
    let count = last - first;
    let map = |container_port: u16, host_port: u16, host_port_end: u16| PortMap {
        host_ip,
        host_port,
        host_port_end,
        container_port,
        proto: proto.to_string(),
    };
    Ok(match hosts {
        None => (first..=last).map(|c| map(c, 0, 0)).collect(),
        // One container port, a host range: a free port of the range.
        Some((h, h_last)) if count == 0 && h_last > h => vec![map(first, h, h_last)],
        Some((h, h_last)) if h_last - h == count => {
            (0..=count).map(|i| map(first + i, h + i, 0)).collect()
        }
        Some(_) => bail!(
            "invalid ranges specified for container and host ports: {container} and {host} in -p {value:?}: give ranges of the same length"
        ),
    })
}

/// `-P`: the image's exposed ports ("80/tcp", "53/udp", "8080"), each on a free port.
pub fn exposed(keys: &[String]) -> anyhow::Result<Vec<PortMap>> {
    let mut maps = Vec::new();
    for key in keys {
        maps.extend(parse(&exposed_key(key))?);
    }
    Ok(maps)
}

/// An `ExposedPorts` key with its protocol: "8080" is "8080/tcp".
pub fn exposed_key(key: &str) -> String {
    if key.contains('/') {
        key.to_string()
    } else {
        format!("{key}/tcp")
    }
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
        if want.host_port_end != 0 {
            let free = (want.host_port..=want.host_port_end).find(|&candidate| {
                !taken
                    .iter()
                    .any(|(_, ps)| ps.iter().any(|p| clash(p, candidate)))
                    && !resolved.iter().any(|p| clash(p, candidate))
                    && !bound_on_host(want.host_ip, candidate, &want.proto)
            });
            let Some(free) = free else {
                bail!(
                    "no free {} port on {} in {}-{}: choose another range",
                    want.proto,
                    want.host_ip,
                    want.host_port,
                    want.host_port_end
                );
            };
            port = free;
        } else if port == 0 {
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
            host_port_end: 0,
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

    fn map(ip: &str, host: u16, container: u16, proto: &str) -> PortMap {
        PortMap {
            host_ip: ip.parse().unwrap(),
            host_port: host,
            host_port_end: 0,
            container_port: container,
            proto: proto.into(),
        }
    }

    // Docker's ps collapses runs of ports published on the same number (docker/cli's
    // DisplayablePorts); maps to another number stay one by one, after the groups.
    #[test]
    fn ps_collapses_ports_as_docker_does() {
        let all = "0.0.0.0";
        let same: Vec<PortMap> = (8000..=8002).map(|p| map(all, p, p, "tcp")).collect();
        assert_eq!(display(&same), "0.0.0.0:8000-8002->8000-8002/tcp");
        let shifted: Vec<PortMap> = (0..3).map(|i| map(all, 8000 + i, 80 + i, "tcp")).collect();
        assert_eq!(
            display(&shifted),
            "0.0.0.0:8000->80/tcp, 0.0.0.0:8001->81/tcp, 0.0.0.0:8002->82/tcp"
        );
        let mixed = vec![
            map(all, 9003, 9003, "udp"),
            map(all, 9001, 9001, "tcp"),
            map(all, 8080, 80, "tcp"),
            map("127.0.0.1", 9001, 9001, "tcp"),
            map(all, 9002, 9002, "tcp"),
            map(all, 9004, 9004, "udp"),
            map(all, 9005, 9005, "tcp"),
        ];
        assert_eq!(
            display(&mixed),
            "0.0.0.0:9001-9002->9001-9002/tcp, 0.0.0.0:9005->9005/tcp, \
             127.0.0.1:9001->9001/tcp, 0.0.0.0:9003-9004->9003-9004/udp, 0.0.0.0:8080->80/tcp"
        );
        assert_eq!(display(&[]), "");
    }

    /// The one map a `-p` without ranges makes.
    fn one(value: &str) -> PortMap {
        let mut maps = parse(value).unwrap();
        assert_eq!(maps.len(), 1, "{value}");
        maps.remove(0)
    }

    #[test]
    fn publish_forms_parse_as_docker_reads_them() {
        let p = one("8080:80");
        assert_eq!(
            (p.host_ip, p.host_port, p.container_port, p.proto.as_str()),
            (Ipv4Addr::UNSPECIFIED, 8080, 80, "tcp")
        );
        let p = one("127.0.0.1:5353:53/udp");
        assert_eq!(
            (p.host_ip, p.host_port, p.container_port, p.proto.as_str()),
            (Ipv4Addr::LOCALHOST, 5353, 53, "udp")
        );
        assert_eq!(one("80").host_port, 0);
        assert_eq!(one("127.0.0.1::80").host_port, 0);
        for bad in ["0:80", "80/sctp", "x:80", "1:2:3:4", "70000", "1.2.3:80:80"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            exposed(&["80/tcp".into(), "53/udp".into()]).unwrap().len(),
            2
        );
    }

    #[test]
    fn ranges_map_port_by_port_and_lengths_must_match() {
        let maps = parse("8000-8002:80-82").unwrap();
        let pairs: Vec<(u16, u16)> = maps
            .iter()
            .map(|m| (m.host_port, m.container_port))
            .collect();
        assert_eq!(pairs, [(8000, 80), (8001, 81), (8002, 82)]);
        let maps = parse("127.0.0.1:8000-8001:80-81/udp").unwrap();
        assert!(maps
            .iter()
            .all(|m| m.host_ip == Ipv4Addr::LOCALHOST && m.proto == "udp"));
        assert_eq!(maps.len(), 2);
        let maps = parse("80-82").unwrap();
        assert_eq!(maps.len(), 3);
        assert!(maps.iter().all(|m| m.host_port == 0));
        let one_of = one("8000-8010:80");
        assert_eq!((one_of.host_port, one_of.host_port_end), (8000, 8010));
        assert_eq!(one_of.host_port_text(), "8000-8010");
        for (bad, says) in [
            (
                "8000-8001:80-82",
                "invalid ranges specified for container and host ports: 80-82 and 8000-8001",
            ),
            ("8000:80-82", "invalid ranges specified"),
            ("8002-8000:80-82", "a range goes from low to high"),
            ("8000-8002:80-8", "a range goes from low to high"),
            ("x-2:80", "invalid port"),
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
        // A host range: the first port of it nobody holds.
        let taken = vec![("web".to_string(), vec![one("18100:80")])];
        let chosen = resolve(&[one("18100-18102:80")], &taken).unwrap();
        assert_eq!((chosen[0].host_port, chosen[0].host_port_end), (18101, 0));
        let full = vec![("web".to_string(), parse("18100-18101:80-81").unwrap())];
        let err = resolve(&[one("18100-18101:90")], &full).unwrap_err();
        assert!(err.to_string().contains("no free tcp port"), "{err}");
    }

    #[test]
    fn a_port_published_elsewhere_or_twice_is_refused() {
        let taken = vec![("web".to_string(), vec![one("18080:80")])];
        let err = resolve(&[one("127.0.0.1:18080:81")], &taken).unwrap_err();
        assert!(
            err.to_string()
                .contains("already published by container web"),
            "{err}"
        );
        // Another protocol, or the same port twice in one run.
        assert!(resolve(&[one("18080:80/udp")], &taken).is_ok());
        assert!(resolve(&[one("18081:80"), one("18081:81")], &[]).is_err());
        let chosen = resolve(&[one("80")], &taken).unwrap();
        assert_ne!(chosen[0].host_port, 0);
    }
}
