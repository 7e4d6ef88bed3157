//! The container's /etc/hosts: loopback names, its own address and hostname, its peers
//! on a user network (by name and alias, kept current as they join and leave: there is
//! no DNS daemon), and `--add-host` entries.

use std::net::Ipv4Addr;

/// One `--add-host NAME:IP`, checked.
pub fn parse_add_host(value: &str) -> anyhow::Result<(String, String)> {
    let bad =
        || anyhow::anyhow!("invalid --add-host {value:?}: use NAME:IP, as --add-host db:10.0.0.5");
    let (name, ip) = value
        .split_once(':')
        .or_else(|| value.split_once('='))
        .ok_or_else(bad)?;
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(bad());
    }
    let ip: std::net::IpAddr = ip.trim_matches(['[', ']']).parse().map_err(|_| bad())?;
    Ok((name.to_string(), ip.to_string()))
}

/// The hosts file: `own` is the container's address (bridge networks), `peers` the
/// other containers on its network with their names, `extra` the `--add-host` pairs.
pub fn render(
    hostname: &str,
    own: Option<Ipv4Addr>,
    peers: &[(Ipv4Addr, Vec<String>)],
    extra: &[(String, String)],
) -> String {
    let mut out = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    match own {
        Some(ip) => out.push_str(&format!("{ip}\t{hostname}\n")),
        None => out.push_str(&format!("127.0.1.1\t{hostname}\n")),
    }
    for (ip, names) in peers {
        if !names.is_empty() {
            out.push_str(&format!("{ip}\t{}\n", names.join(" ")));
        }
    }
    for (name, ip) in extra {
        out.push_str(&format!("{ip}\t{name}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_host_takes_name_and_address_and_refuses_the_rest() {
        assert_eq!(
            parse_add_host("db:10.0.0.5").unwrap(),
            ("db".to_string(), "10.0.0.5".to_string())
        );
        assert_eq!(parse_add_host("v6:[::1]").unwrap().1, "::1");
        assert!(parse_add_host("db").is_err());
        assert!(parse_add_host("db:nonsense").is_err());
    }

    #[test]
    fn peers_and_extra_hosts_follow_the_own_line() {
        let text = render(
            "me",
            Some("10.1.0.2".parse().unwrap()),
            &[(
                "10.1.0.3".parse().unwrap(),
                vec!["web".into(), "www".into()],
            )],
            &[("db".into(), "10.9.9.9".into())],
        );
        assert!(
            text.ends_with("10.1.0.2\tme\n10.1.0.3\tweb www\n10.9.9.9\tdb\n"),
            "{text}"
        );
    }
}
