//! `stats`: what running containers use, from their cgroups (CPU, memory, pids, block
//! I/O) and their network namespaces (/proc/<pid>/net/dev). CPU % needs two readings:
//! the caller takes them as close together as it likes (100 ms for the first figure).

use std::time::Instant;

use super::record::Record;
use super::state::{State, Status};
use crate::runtime::cgroups::{Cgroup, Usage};

/// One reading of a container.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: Instant,
    pub usage: Usage,
    /// Bytes received and sent on the container's interfaces other than loopback.
    pub net: (u64, u64),
}

/// What one row of `stats` shows.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Figures {
    pub cpu_percent: f64,
    pub memory: u64,
    pub memory_limit: u64,
    pub memory_percent: f64,
    pub net: (u64, u64),
    pub block: (u64, u64),
    pub pids: u64,
}

/// Reads the container now; `None` when it does not run.
pub fn sample(record: &Record, state: &State) -> Option<Sample> {
    if state.status != Status::Running {
        return None;
    }
    let cgroup = Cgroup::open(&record.cgroup_name()).ok()?;
    let usage = cgroup.usage();
    let net = state.pid.map_or((0, 0), net_bytes);
    Some(Sample {
        at: Instant::now(),
        usage,
        net,
    })
}

/// The figures between two readings (`before` gives the CPU time's starting point).
pub fn figures(before: &Sample, now: &Sample) -> Figures {
    let elapsed = now.at.duration_since(before.at).as_micros() as f64;
    let cpu = match (before.usage.cpu_usec, now.usage.cpu_usec) {
        (Some(a), Some(b)) if elapsed > 0.0 => b.saturating_sub(a) as f64 / elapsed * 100.0,
        _ => 0.0,
    };
    let memory = now.usage.memory.unwrap_or(0);
    let limit = now.usage.memory_limit.unwrap_or_else(host_memory);
    Figures {
        cpu_percent: cpu,
        memory,
        memory_limit: limit,
        memory_percent: if limit > 0 {
            memory as f64 / limit as f64 * 100.0
        } else {
            0.0
        },
        net: now.net,
        block: (
            now.usage.block_read.unwrap_or(0),
            now.usage.block_write.unwrap_or(0),
        ),
        pids: now.usage.pids.unwrap_or(0),
    }
}

/// Sums the receive and transmit bytes of every interface but `lo` in the network
/// namespace of `pid`.
fn net_bytes(pid: i32) -> (u64, u64) {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/dev")) else {
        return (0, 0);
    };
    parse_net_dev(&text)
}

fn parse_net_dev(text: &str) -> (u64, u64) {
    let mut total = (0, 0);
    // Two header lines, then "  name: rx_bytes packets ... tx_bytes ...".
    for line in text.lines().skip(2) {
        let Some((name, fields)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let fields: Vec<u64> = fields
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        if fields.len() >= 9 {
            total.0 += fields[0];
            total.1 += fields[8];
        }
    }
    total
}

/// The host's memory (the limit of a container without one, as Docker shows it).
fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_sums_every_interface_but_loopback() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  \
eth0:    2000      10    0    0    0     0          0         0      300       3    0    0    0     0       0          0\n  \
eth1:      5       1    0    0    0     0          0         0        7       1    0    0    0     0       0          0\n";
        assert_eq!(parse_net_dev(text), (2005, 307));
    }

    #[test]
    fn cpu_percent_is_cpu_time_over_wall_time() {
        let at = Instant::now();
        let before = Sample {
            at,
            usage: Usage {
                cpu_usec: Some(1_000),
                memory: Some(10),
                memory_limit: Some(100),
                ..Default::default()
            },
            net: (0, 0),
        };
        let now = Sample {
            at: at + std::time::Duration::from_millis(100),
            usage: Usage {
                cpu_usec: Some(51_000),
                ..before.usage
            },
            net: (1, 2),
        };
        let f = figures(&before, &now);
        assert!((f.cpu_percent - 50.0).abs() < 1e-9, "{f:?}");
        assert!((f.memory_percent - 10.0).abs() < 1e-9, "{f:?}");
        assert_eq!(f.net, (1, 2));
    }
}
