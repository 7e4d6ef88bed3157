//! OCI `LinuxResources` turned into checked, backend-neutral limits, and the few
//! conversions that differ between cgroup v1 and v2 (kept here so they are unit-tested
//! without root).

use anyhow::{bail, Result};
use oci_spec::runtime::LinuxResources;

use super::devices::{self, DeviceRule};

/// The CFS period the kernel and Docker use when only a quota is given (100 ms).
pub const DEFAULT_CPU_PERIOD_US: u64 = 100_000;

/// A value that is either a number or "no limit".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Max,
    Value(u64),
}

impl Limit {
    /// OCI encodes "no limit" as -1 (and for pids also 0).
    fn from_oci(value: i64, zero_is_max: bool) -> Limit {
        if value < 0 || (zero_is_max && value == 0) {
            Limit::Max
        } else {
            Limit::Value(value as u64)
        }
    }

    /// The v2 spelling: "max" or the number.
    pub fn v2(self) -> String {
        match self {
            Limit::Max => "max".into(),
            Limit::Value(n) => n.to_string(),
        }
    }

    /// The v1 spelling of memory and cpu files: "-1" or the number.
    pub fn v1(self) -> String {
        match self {
            Limit::Max => "-1".into(),
            Limit::Value(n) => n.to_string(),
        }
    }
}

/// CFS bandwidth: `quota` microseconds of CPU time per `period` microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuMax {
    pub quota: Limit,
    pub period: u64,
}

/// Everything the backends write. `None` leaves the kernel default (unlimited).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory: Option<Limit>,
    /// Docker's `--memory-swap`: memory plus swap together (what v1's memsw limits).
    pub memory_and_swap: Option<Limit>,
    pub cpu_max: Option<CpuMax>,
    /// v1 `cpu.shares` (2..262144); v2 uses [`shares_to_weight`].
    pub cpu_shares: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub pids: Option<Limit>,
    /// The device rules, in order (`None`: no restriction). Not a controller limit: v2
    /// and hybrid hosts apply them with an eBPF program on the cgroup2 directory, so
    /// they never need a v1 hierarchy there.
    pub devices: Option<Vec<DeviceRule>>,
}

impl Limits {
    /// Checks and converts the OCI resources. Fails with a message naming the value
    /// before anything is created.
    pub fn from_oci(resources: Option<&LinuxResources>) -> Result<Limits> {
        let mut limits = Limits::default();
        let Some(resources) = resources else {
            return Ok(limits);
        };
        if let Some(memory) = resources.memory() {
            limits.memory = memory.limit().map(|v| Limit::from_oci(v, false));
            limits.memory_and_swap = memory.swap().map(|v| Limit::from_oci(v, false));
        }
        if let Some(cpu) = resources.cpu() {
            let period = cpu.period().filter(|p| *p > 0);
            match (cpu.quota(), period) {
                (Some(quota), period) => {
                    limits.cpu_max = Some(CpuMax {
                        quota: Limit::from_oci(quota, true),
                        period: period.unwrap_or(DEFAULT_CPU_PERIOD_US),
                    })
                }
                (None, Some(period)) => {
                    limits.cpu_max = Some(CpuMax {
                        quota: Limit::Max,
                        period,
                    })
                }
                (None, None) => {}
            }
            limits.cpu_shares = cpu.shares().filter(|s| *s > 0);
            limits.cpuset_cpus = cpu.cpus().clone().filter(|s| !s.is_empty());
            limits.cpuset_mems = cpu.mems().clone().filter(|s| !s.is_empty());
        }
        if let Some(pids) = resources.pids() {
            limits.pids = Some(Limit::from_oci(pids.limit(), true));
        }
        limits.devices = devices::from_oci(resources.devices().as_ref())?;
        limits.validate()?;
        Ok(limits)
    }

    fn validate(&self) -> Result<()> {
        if let Some(Limit::Value(0)) = self.memory {
            bail!("memory limit 0 is not allowed: give a size such as 64M, or -1 for no limit");
        }
        match (self.memory, self.memory_and_swap) {
            (None | Some(Limit::Max), Some(Limit::Value(total))) => {
                bail!("memory+swap limit {total} needs a memory limit too: set --memory as well")
            }
            (Some(Limit::Value(memory)), Some(Limit::Value(total))) if total < memory => bail!(
                "memory+swap limit {total} is smaller than the memory limit {memory}: \
                 --memory-swap counts memory plus swap, so it must be at least --memory"
            ),
            _ => {}
        }
        if let Some(cpu) = self.cpu_max {
            if !(1_000..=1_000_000).contains(&cpu.period) {
                bail!(
                    "cpu period {} us is out of range: it must be between 1000 and 1000000",
                    cpu.period
                );
            }
            if let Limit::Value(quota) = cpu.quota {
                if quota < 1_000 {
                    bail!("cpu quota {quota} us is too small: it must be at least 1000 (1 ms)");
                }
            }
        }
        if let Some(shares) = self.cpu_shares {
            if !(2..=262_144).contains(&shares) {
                bail!("cpu shares {shares} is out of range: it must be between 2 and 262144");
            }
        }
        for (what, list) in [
            ("cpuset cpus", &self.cpuset_cpus),
            ("cpuset mems", &self.cpuset_mems),
        ] {
            if let Some(list) = list {
                if !is_cpu_list(list) {
                    bail!("{what} {list:?} is not a list such as 0-2,4");
                }
            }
        }
        Ok(())
    }

    /// The v2 controllers these limits need (v1 hierarchies are named the same).
    pub fn required_controllers(&self) -> Vec<&'static str> {
        let mut needed = Vec::new();
        if self.memory.is_some() || self.memory_and_swap.is_some() {
            needed.push("memory");
        }
        if self.cpu_max.is_some() || self.cpu_shares.is_some() {
            needed.push("cpu");
        }
        if self.cpuset_cpus.is_some() || self.cpuset_mems.is_some() {
            needed.push("cpuset");
        }
        if self.pids.is_some() {
            needed.push("pids");
        }
        needed
    }

    /// v2 `memory.swap.max`: swap alone, i.e. Docker's memory+swap minus memory.
    /// `None` when no swap limit was asked.
    pub fn v2_swap_max(&self) -> Option<Limit> {
        match (self.memory, self.memory_and_swap?) {
            (_, Limit::Max) => Some(Limit::Max),
            (Some(Limit::Value(memory)), Limit::Value(total)) => {
                Some(Limit::Value(total.saturating_sub(memory)))
            }
            // validate() rejects a swap limit without a memory limit
            _ => None,
        }
    }
}

/// v2 `cpu.max`: "quota period" or "max period".
pub fn v2_cpu_max(cpu: CpuMax) -> String {
    format!("{} {}", cpu.quota.v2(), cpu.period)
}

/// Converts v1 shares (2..262144, default 1024) to a v2 weight (1..10000, default 100)
/// with the same linear map as runc and crun, so a container gets the same weight
/// whichever runtime started it.
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9_999) / 262_142
}

/// A cpuset list: "0", "0-3", "0,2,4-7".
fn is_cpu_list(list: &str) -> bool {
    list.split(',').all(|part| {
        let mut bounds = part.splitn(2, '-');
        let first = bounds.next().unwrap_or("");
        let valid = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        valid(first) && bounds.next().is_none_or(valid)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
    };

    fn resources(
        memory: Option<(i64, Option<i64>)>,
        cpu: Option<(Option<i64>, Option<u64>, Option<u64>)>,
        pids: Option<i64>,
    ) -> LinuxResources {
        let mut builder = LinuxResourcesBuilder::default();
        if let Some((limit, swap)) = memory {
            let mut m = LinuxMemoryBuilder::default().limit(limit);
            if let Some(swap) = swap {
                m = m.swap(swap);
            }
            builder = builder.memory(m.build().unwrap());
        }
        if let Some((quota, period, shares)) = cpu {
            let mut c = LinuxCpuBuilder::default();
            if let Some(q) = quota {
                c = c.quota(q);
            }
            if let Some(p) = period {
                c = c.period(p);
            }
            if let Some(s) = shares {
                c = c.shares(s);
            }
            builder = builder.cpu(c.build().unwrap());
        }
        if let Some(limit) = pids {
            builder = builder.pids(LinuxPidsBuilder::default().limit(limit).build().unwrap());
        }
        builder.build().unwrap()
    }

    #[test]
    fn no_resources_means_no_limits() {
        assert_eq!(Limits::from_oci(None).unwrap(), Limits::default());
        assert!(Limits::default().required_controllers().is_empty());
    }

    #[test]
    fn shares_map_to_weight_like_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(512), 20);
        // out of range values are clamped, not wrapped
        assert_eq!(shares_to_weight(0), 1);
        assert_eq!(shares_to_weight(1_000_000), 10_000);
    }

    #[test]
    fn memory_swap_is_total_and_v2_gets_the_difference() {
        let r = resources(Some((100 << 20, Some(300 << 20))), None, None);
        let l = Limits::from_oci(Some(&r)).unwrap();
        assert_eq!(l.memory, Some(Limit::Value(100 << 20)));
        assert_eq!(l.memory_and_swap, Some(Limit::Value(300 << 20)));
        assert_eq!(l.v2_swap_max(), Some(Limit::Value(200 << 20)));

        let r = resources(Some((100 << 20, Some(-1))), None, None);
        let l = Limits::from_oci(Some(&r)).unwrap();
        assert_eq!(l.v2_swap_max(), Some(Limit::Max));
        assert_eq!(l.memory_and_swap.unwrap().v1(), "-1");

        let r = resources(Some((100 << 20, None)), None, None);
        assert_eq!(Limits::from_oci(Some(&r)).unwrap().v2_swap_max(), None);
        assert_eq!(
            Limits::from_oci(Some(&r)).unwrap().required_controllers(),
            ["memory"]
        );
    }

    #[test]
    fn swap_below_memory_or_without_memory_is_rejected() {
        let r = resources(Some((100 << 20, Some(50 << 20))), None, None);
        let err = Limits::from_oci(Some(&r)).unwrap_err().to_string();
        assert!(err.contains("smaller than the memory limit"), "{err}");
        let r = resources(Some((-1, Some(50 << 20))), None, None);
        let err = Limits::from_oci(Some(&r)).unwrap_err().to_string();
        assert!(err.contains("needs a memory limit"), "{err}");
        let r = resources(Some((0, None)), None, None);
        assert!(Limits::from_oci(Some(&r)).is_err());
    }

    #[test]
    fn cpu_quota_and_period() {
        let r = resources(None, Some((Some(25_000), None, Some(512))), None);
        let l = Limits::from_oci(Some(&r)).unwrap();
        let cpu = l.cpu_max.unwrap();
        assert_eq!(v2_cpu_max(cpu), "25000 100000");
        assert_eq!(cpu.quota.v1(), "25000");
        assert_eq!(l.cpu_shares, Some(512));
        assert_eq!(l.required_controllers(), ["cpu"]);

        let r = resources(None, Some((Some(-1), Some(50_000), None)), None);
        let cpu = Limits::from_oci(Some(&r)).unwrap().cpu_max.unwrap();
        assert_eq!(v2_cpu_max(cpu), "max 50000");
        assert_eq!(cpu.quota.v1(), "-1");

        let r = resources(None, Some((Some(500), None, None)), None);
        assert!(Limits::from_oci(Some(&r)).is_err());
        let r = resources(None, Some((Some(50_000), Some(10), None)), None);
        assert!(Limits::from_oci(Some(&r)).is_err());
        let r = resources(None, Some((None, None, Some(1))), None);
        assert!(Limits::from_oci(Some(&r)).is_err());
    }

    #[test]
    fn pids_zero_or_negative_is_unlimited() {
        for (oci, expected) in [(100, Limit::Value(100)), (0, Limit::Max), (-1, Limit::Max)] {
            let r = resources(None, None, Some(oci));
            assert_eq!(Limits::from_oci(Some(&r)).unwrap().pids, Some(expected));
        }
        assert_eq!(Limit::Max.v2(), "max");
        assert_eq!(Limit::Value(7).v2(), "7");
    }

    #[test]
    fn cpuset_lists_are_checked() {
        for good in ["0", "0-1", "0,2,4-7"] {
            assert!(is_cpu_list(good), "{good}");
        }
        for bad in ["", "a", "0-", "-1", "0,,1", "1-2-3", "0 1"] {
            assert!(!is_cpu_list(bad), "{bad}");
        }
    }
}
