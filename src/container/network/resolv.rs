//! The container's /etc/resolv.conf, as Docker makes it: the host's, without loopback
//! nameservers (they would be the container's own loopback); when the host runs
//! systemd-resolved's stub (127.0.0.53), its upstream file instead; when no nameserver
//! is left, Google's public ones (Docker's fallback).

use std::fs;

const HOST_FILE: &str = "/etc/resolv.conf";
const RESOLVED_UPSTREAM: &str = "/run/systemd/resolve/resolv.conf";

fn is_loopback_nameserver(line: &str) -> bool {
    let mut words = line.split_whitespace();
    words.next() == Some("nameserver")
        && words
            .next()
            .and_then(|a| a.parse::<std::net::IpAddr>().ok())
            .is_some_and(|a| a.is_loopback())
}

/// resolv.conf for a container with its own network namespace; `dns` (`--dns`), when
/// given, replaces the nameservers.
pub fn resolv_conf(dns: &[String]) -> String {
    let host = fs::read_to_string(HOST_FILE).unwrap_or_default();
    let text = if host.lines().any(|l| l.trim() == "nameserver 127.0.0.53") {
        fs::read_to_string(RESOLVED_UPSTREAM).unwrap_or(host)
    } else {
        host
    };
    if dns.is_empty() {
        return filter(&text);
    }
    let mut out: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("nameserver"))
        .map(|l| format!("{l}\n"))
        .collect();
    for server in dns {
        out.push_str(&format!("nameserver {server}\n"));
    }
    out
}

fn filter(text: &str) -> String {
    let mut out: String = text
        .lines()
        .filter(|l| !is_loopback_nameserver(l))
        .map(|l| format!("{l}\n"))
        .collect();
    if !out
        .lines()
        .any(|l| l.trim_start().starts_with("nameserver"))
    {
        out.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_nameservers_go_and_a_fallback_comes_when_none_is_left() {
        let text = "search lan\nnameserver 127.0.0.11\nnameserver 10.0.0.1\nnameserver ::1\n";
        assert_eq!(super::filter(text), "search lan\nnameserver 10.0.0.1\n");
        assert_eq!(
            super::filter("nameserver 127.0.0.53\noptions edns0\n"),
            "options edns0\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
    }
}
