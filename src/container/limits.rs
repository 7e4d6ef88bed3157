//! Parses the resource flags (`--memory 100M`, the seed's `--mem=100M`, `--cpus 0.5`,
//! the seed's `--cpu=25%`, ...) into OCI `LinuxResources`. Every value is checked here,
//! before anything is created, and errors name the flag.

use anyhow::{bail, Context};
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};

/// CFS period used for `--cpus` and `--cpu=P%` (the kernel's and Docker's default).
const CPU_PERIOD_US: u64 = 100_000;

/// The pids limit without `--pids-limit` (Podman's default): a fork bomb in a container
/// stops at 2048 processes and threads instead of using up the host's pid space
/// (kernel.pid_max is 32768 on many hosts).
pub const DEFAULT_PIDS_LIMIT: i64 = 2048;

/// The resource flags as typed by the user.
#[derive(Debug, Default, Clone)]
pub struct LimitFlags {
    pub memory: Option<String>,
    pub memory_swap: Option<String>,
    pub cpus: Option<String>,
    pub cpu_percent: Option<String>,
    pub cpu_shares: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub pids_limit: Option<i64>,
}

/// Parses "100M", "1g", "512k", "1024", "64mb" (binary multiples, as Docker).
pub fn parse_size(flag: &str, value: &str) -> anyhow::Result<i64> {
    let lower = value.trim().to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits_end);
    let unit = unit
        .strip_suffix('b')
        .filter(|u| !u.is_empty())
        .unwrap_or(unit);
    let multiplier: f64 = match unit {
        "" | "b" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => bail!("invalid value {value:?} for {flag}: use a size such as 100M, 1g or 1048576"),
    };
    let number: f64 = number
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n > 0.0)
        .with_context(|| {
            format!("invalid value {value:?} for {flag}: use a size such as 100M, 1g or 1048576")
        })?;
    let bytes = (number * multiplier) as i64;
    if bytes < 4096 {
        bail!("invalid value {value:?} for {flag}: the minimum is 4k");
    }
    Ok(bytes)
}

/// CFS quota (µs per period) for `--cpus N`, N from 0.01 to the host's online CPUs
/// (Docker's range).
fn quota_from_cpus(value: &str, online: u32) -> anyhow::Result<i64> {
    let cpus: f64 = value
        .trim()
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite())
        .with_context(|| {
            format!("invalid value {value:?} for --cpus: use a number of CPUs such as 0.5 or 2")
        })?;
    if !(0.01..=f64::from(online)).contains(&cpus) {
        bail!(
            "invalid value {value:?} for --cpus: the range of CPUs is from 0.01 to {online}.00, as there are only {online} CPUs available"
        );
    }
    Ok((cpus * CPU_PERIOD_US as f64).round() as i64)
}

/// The host's online CPUs (at least 1).
fn online_cpus() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    u32::try_from(n).unwrap_or(1).max(1)
}

/// CFS quota for the seed's `--cpu=P%` (percent of one CPU).
fn quota_from_percent(value: &str) -> anyhow::Result<i64> {
    let number = value.trim().strip_suffix('%').unwrap_or(value.trim());
    let percent: f64 = number
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n > 0.0 && *n <= 102_400.0)
        .with_context(|| {
            format!("invalid value {value:?} for --cpu: use a percentage of one CPU such as 25%")
        })?;
    Ok(((percent / 100.0 * CPU_PERIOD_US as f64).round() as i64).max(1000))
}

fn validate_cpuset(value: &str) -> anyhow::Result<()> {
    let ok = !value.is_empty()
        && value.split(',').all(|part| {
            let mut ends = part.splitn(2, '-');
            let first = ends.next().and_then(|n| n.parse::<u32>().ok());
            match (first, ends.next()) {
                (Some(_), None) => true,
                (Some(a), Some(b)) => b.parse::<u32>().is_ok_and(|b| b >= a),
                _ => false,
            }
        });
    if !ok {
        bail!("invalid value {value:?} for --cpuset-cpus: use a list such as 0-1 or 0,2");
    }
    Ok(())
}

/// The container's resource limits, parsed once from the flags ([`LimitFlags::parse`]).
#[derive(Debug, Clone)]
pub struct Limits(Option<LinuxResources>);

impl Default for Limits {
    /// No flags: only the default pids limit (which cannot fail to parse).
    fn default() -> Limits {
        Limits(LimitFlags::default().to_resources().ok().flatten())
    }
}

impl Limits {
    /// The OCI resources, or `None` when there is no limit at all.
    pub fn resources(&self) -> Option<&LinuxResources> {
        self.0.as_ref()
    }
}

impl LimitFlags {
    /// Checks every flag (errors name the flag) and returns the limits.
    pub fn parse(&self) -> anyhow::Result<Limits> {
        self.to_resources().map(Limits)
    }

    /// The OCI resources (with the default pids limit unless `--pids-limit` says
    /// otherwise), or `None` when there is no limit at all.
    pub fn to_resources(&self) -> anyhow::Result<Option<LinuxResources>> {
        let mut resources = LinuxResourcesBuilder::default();
        let mut any = false;

        let memory = self
            .memory
            .as_deref()
            .map(|v| parse_size("--memory", v))
            .transpose()?;
        let swap = match self.memory_swap.as_deref() {
            // As Docker: 0 means "not set".
            None | Some("0") => None,
            Some("-1") => Some(-1),
            Some(v) => Some(parse_size("--memory-swap", v)?),
        };
        if let (Some(swap), Some(memory)) = (swap, memory) {
            if swap != -1 && swap < memory {
                bail!("invalid value for --memory-swap: it must be at least --memory (it counts memory plus swap), or -1 for unlimited");
            }
        } else if swap.is_some() && memory.is_none() {
            bail!("--memory-swap needs --memory");
        }
        // Docker's default: memory and swap together may use twice --memory (when the
        // kernel accounts swap; otherwise no limit and no warning, as Docker).
        let swap = match (swap, memory) {
            (None, Some(memory))
                if memory > 0 && crate::runtime::cgroups::has_swap_accounting() =>
            {
                Some(memory.saturating_mul(2))
            }
            (swap, _) => swap,
        };
        if memory.is_some() {
            let mut builder = LinuxMemoryBuilder::default();
            if let Some(memory) = memory {
                builder = builder.limit(memory);
            }
            if let Some(swap) = swap {
                builder = builder.swap(swap);
            }
            resources = resources.memory(builder.build()?);
            any = true;
        }

        let quota = match (&self.cpus, &self.cpu_percent) {
            (Some(_), Some(_)) => bail!("--cpus and --cpu both set the CPU quota: give only one"),
            (Some(cpus), None) => Some(quota_from_cpus(cpus, online_cpus())?),
            (None, Some(percent)) => Some(quota_from_percent(percent)?),
            (None, None) => None,
        };
        if let Some(shares) = self.cpu_shares {
            if !(2..=262_144).contains(&shares) {
                bail!("invalid value {shares} for --cpu-shares: use 2 to 262144 (1024 is the default weight)");
            }
        }
        if let Some(cpuset) = &self.cpuset_cpus {
            validate_cpuset(cpuset)?;
        }
        if quota.is_some() || self.cpu_shares.is_some() || self.cpuset_cpus.is_some() {
            let mut cpu = LinuxCpuBuilder::default();
            if let Some(quota) = quota {
                cpu = cpu.quota(quota).period(CPU_PERIOD_US);
            }
            if let Some(shares) = self.cpu_shares {
                cpu = cpu.shares(shares);
            }
            if let Some(cpuset) = &self.cpuset_cpus {
                cpu = cpu.cpus(cpuset.clone());
            }
            resources = resources.cpu(cpu.build()?);
            any = true;
        }

        // -1 and 0 mean no limit (as Docker): then no pids cgroup is asked for at all,
        // which on a hybrid host also saves the v1 migration the pids controller costs.
        match self.pids_limit.unwrap_or(DEFAULT_PIDS_LIMIT) {
            -1 | 0 => {}
            pids if pids < -1 => {
                bail!("invalid value {pids} for --pids-limit: use a positive number, or -1 for unlimited")
            }
            pids => {
                resources = resources.pids(LinuxPidsBuilder::default().limit(pids).build()?);
                any = true;
            }
        }
        if !any {
            return Ok(None);
        }
        Ok(Some(resources.build()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(parse_size("-m", "100M").unwrap(), 100 << 20);
        assert_eq!(parse_size("-m", "1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("-m", "64mb").unwrap(), 64 << 20);
        assert_eq!(parse_size("-m", "1048576").unwrap(), 1 << 20);
        assert!(parse_size("-m", "12x")
            .unwrap_err()
            .to_string()
            .contains("-m"));
        assert!(parse_size("-m", "-5m").is_err());
        assert!(parse_size("-m", "1").is_err());
    }

    #[test]
    fn cpu_flags_become_a_quota() {
        let flags = LimitFlags {
            cpus: Some("0.5".into()),
            ..Default::default()
        };
        let res = flags.to_resources().unwrap().unwrap();
        assert_eq!(res.cpu().as_ref().unwrap().quota(), Some(50_000));
        let flags = LimitFlags {
            cpu_percent: Some("25%".into()),
            ..Default::default()
        };
        let res = flags.to_resources().unwrap().unwrap();
        assert_eq!(res.cpu().as_ref().unwrap().quota(), Some(25_000));
        assert_eq!(res.cpu().as_ref().unwrap().period(), Some(100_000));
    }

    #[test]
    fn cpus_range_from_a_hundredth_to_the_online_cpus() {
        assert_eq!(quota_from_cpus("2", 2).unwrap(), 200_000);
        assert_eq!(quota_from_cpus("0.01", 2).unwrap(), 1_000);
        for bad in ["1000", "2.01", "0.001", "0", "-1"] {
            let err = quota_from_cpus(bad, 2).unwrap_err().to_string();
            assert!(
                err.contains("the range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs"),
                "{bad}: {err}"
            );
        }
        let err = quota_from_cpus("inf", 2).unwrap_err().to_string();
        assert!(err.contains("use a number of CPUs"), "{err}");
    }

    #[test]
    fn bad_values_name_the_flag() {
        let err = |flags: LimitFlags| flags.to_resources().unwrap_err().to_string();
        assert!(err(LimitFlags {
            cpus: Some("lots".into()),
            ..Default::default()
        })
        .contains("--cpus"));
        assert!(err(LimitFlags {
            cpu_percent: Some("x%".into()),
            ..Default::default()
        })
        .contains("--cpu"));
        assert!(err(LimitFlags {
            pids_limit: Some(-2),
            ..Default::default()
        })
        .contains("--pids-limit"));
        assert!(err(LimitFlags {
            cpuset_cpus: Some("1-0".into()),
            ..Default::default()
        })
        .contains("--cpuset-cpus"));
        assert!(err(LimitFlags {
            memory: Some("10m".into()),
            memory_swap: Some("5m".into()),
            ..Default::default()
        })
        .contains("--memory-swap"));
    }

    #[test]
    fn pids_default_to_podmans_limit_and_minus_one_or_zero_lift_it() {
        let limit = |pids_limit: Option<i64>| {
            let flags = LimitFlags {
                pids_limit,
                ..Default::default()
            };
            let resources = flags.to_resources().unwrap();
            resources.and_then(|r| r.pids().as_ref().map(|p| p.limit()))
        };
        assert_eq!(limit(None), Some(DEFAULT_PIDS_LIMIT));
        assert_eq!(limit(Some(100)), Some(100));
        // no limit: no pids entry at all, so no pids cgroup is needed
        assert_eq!(limit(Some(-1)), None);
        assert_eq!(limit(Some(0)), None);
        let unlimited = LimitFlags {
            pids_limit: Some(-1),
            ..Default::default()
        };
        assert!(unlimited.to_resources().unwrap().is_none());
    }
}
