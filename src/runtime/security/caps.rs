//! Capability sets: computed as bit masks in the parent, applied in the child with raw
//! prctl/capset calls so nothing allocates between clone and execve.

use std::str::FromStr;

use nix::errno::Errno;
use oci_spec::runtime::{Capabilities, LinuxCapabilities};

/// Where the kernel's highest capability number is published.
const CAP_LAST_CAP_PATH: &str = "/proc/sys/kernel/cap_last_cap";

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets split over two 32-bit words.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    #[error("cannot read {CAP_LAST_CAP_PATH}: {0}")]
    LastCap(String),
    #[error("unknown capability {0:?} in the container config: use a name such as CAP_NET_ADMIN")]
    Unknown(String),
    #[error("cannot read the runtime's own capabilities: {0}")]
    Current(String),
}

/// The five capability sets of the container's process, as bit masks (bit N = capability N),
/// already limited to what the running kernel knows.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CapMasks {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
    /// Highest capability number the kernel knows (from cap_last_cap).
    pub last_cap: u8,
}

/// Reads the kernel's highest capability number. Runs in the parent.
pub fn read_last_cap() -> Result<u8, CapsError> {
    let text = std::fs::read_to_string(CAP_LAST_CAP_PATH)
        .map_err(|e| CapsError::LastCap(e.to_string()))?;
    let last: u8 = text
        .trim()
        .parse()
        .map_err(|_| CapsError::LastCap(format!("unexpected content {:?}", text.trim())))?;
    // A u64 mask holds capabilities 0..=63; newer kernels would need a wider type.
    Ok(last.min(63))
}

/// The bit of one OCI capability, by way of the `caps` crate's numbering.
fn cap_bit(cap: &oci_spec::runtime::Capability) -> Result<u64, CapsError> {
    let name = format!("CAP_{cap}");
    caps::Capability::from_str(&name)
        .map(|c| c.bitmask())
        .map_err(|_| CapsError::Unknown(name))
}

fn mask_of(set: Option<&Capabilities>) -> Result<u64, CapsError> {
    let mut mask = 0u64;
    for cap in set.into_iter().flatten() {
        mask |= cap_bit(cap)?;
    }
    Ok(mask)
}

/// Bit mask of capability names ("CAP_CHOWN" or "CHOWN"); unknown names are an error.
pub fn mask_of_names<S: AsRef<str>>(names: &[S]) -> Result<u64, CapsError> {
    let mut mask = 0u64;
    for name in names {
        let upper = name.as_ref().to_uppercase();
        let full = if upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        };
        let cap = caps::Capability::from_str(&full)
            .map_err(|_| CapsError::Unknown(name.as_ref().into()))?;
        mask |= cap.bitmask();
    }
    Ok(mask)
}

impl CapMasks {
    /// Computes the masks from `process.capabilities`. A missing object or a missing set
    /// means the empty set (as runc does): nothing is granted that the config does not name.
    /// Capabilities newer than the running kernel are dropped silently, as runc does.
    pub fn from_spec(caps: Option<&LinuxCapabilities>, last_cap: u8) -> Result<Self, CapsError> {
        let known = if last_cap >= 63 {
            u64::MAX
        } else {
            (1u64 << (last_cap + 1)) - 1
        };
        let pick = |f: fn(&LinuxCapabilities) -> &Option<Capabilities>| -> Result<u64, CapsError> {
            Ok(mask_of(caps.and_then(|c| f(c).as_ref()))? & known)
        };
        Ok(Self {
            bounding: pick(LinuxCapabilities::bounding)?,
            effective: pick(LinuxCapabilities::effective)?,
            permitted: pick(LinuxCapabilities::permitted)?,
            inheritable: pick(LinuxCapabilities::inheritable)?,
            ambient: pick(LinuxCapabilities::ambient)?,
            last_cap,
        })
    }

    /// Limits the sets to what the calling process can hand on: its bounding set, its
    /// permitted set (capset cannot raise anything beyond it) and, for inheritable, its
    /// permitted and inheritable sets; ambient to the resulting permitted and inheritable.
    /// So `--privileged` (every capability the kernel knows) on a host whose root lacks
    /// some capability gets all the others instead of failing with EPERM at capset.
    pub fn clamp_to(self, current: &ProcessCaps) -> Self {
        let bounding = self.bounding & current.bounding;
        let permitted = self.permitted & current.permitted & bounding;
        let effective = self.effective & permitted;
        let inheritable =
            self.inheritable & (current.permitted | current.inheritable) & current.bounding;
        let ambient = self.ambient & permitted & inheritable;
        Self {
            bounding,
            effective,
            permitted,
            inheritable,
            ambient,
            last_cap: self.last_cap,
        }
    }

    /// Drops every capability not in the bounding set from the bounding set. Needs
    /// CAP_SETPCAP, so it runs before the uid switch. Async-signal-safe.
    pub fn drop_bounding(&self) -> Result<(), Errno> {
        for cap in 0..=self.last_cap {
            if self.bounding & (1u64 << cap) != 0 {
                continue;
            }
            // SAFETY: prctl with integer arguments only; no memory is passed.
            let rc =
                unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
            if rc != 0 {
                return Err(Errno::last());
            }
        }
        Ok(())
    }

    /// Sets the effective, permitted and inheritable sets with one raw capset.
    /// Async-signal-safe: the structures live on the stack.
    pub fn apply_sets(&self) -> Result<(), Errno> {
        let header = CapUserHeader {
            version: CAPABILITY_VERSION_3,
            pid: 0,
        };
        let low = |m: u64| m as u32;
        let high = |m: u64| (m >> 32) as u32;
        let data = [
            CapUserData {
                effective: low(self.effective),
                permitted: low(self.permitted),
                inheritable: low(self.inheritable),
            },
            CapUserData {
                effective: high(self.effective),
                permitted: high(self.permitted),
                inheritable: high(self.inheritable),
            },
        ];
        // SAFETY: header and data are valid, properly laid out (repr(C)) and outlive the
        // call; version 3 reads exactly two data elements.
        let rc = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
        if rc != 0 {
            return Err(Errno::last());
        }
        Ok(())
    }

    /// Clears the ambient set, then raises the capabilities listed in it (each must be
    /// permitted and inheritable by now). Async-signal-safe.
    pub fn apply_ambient(&self) -> Result<(), Errno> {
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                0,
                0,
                0,
            )
        };
        if rc != 0 {
            let err = Errno::last();
            // Kernels before 4.3 have no ambient set: nothing to clear if none is wanted.
            if err == Errno::EINVAL && self.ambient == 0 {
                return Ok(());
            }
            return Err(err);
        }
        for cap in 0..=self.last_cap {
            if self.ambient & (1u64 << cap) == 0 {
                continue;
            }
            // SAFETY: prctl with integer arguments only.
            let rc = unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                    libc::c_ulong::from(cap),
                    0,
                    0,
                )
            };
            if rc != 0 {
                return Err(Errno::last());
            }
        }
        Ok(())
    }
}

/// The calling process's own capability sets, as masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessCaps {
    pub bounding: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

impl ProcessCaps {
    /// Reads the calling thread's sets. Runs in the parent.
    pub fn current() -> Result<Self, CapsError> {
        let read = |set: caps::CapSet| -> Result<u64, CapsError> {
            caps::read(None, set)
                .map(|caps| caps.iter().fold(0u64, |mask, cap| mask | cap.bitmask()))
                .map_err(|e| CapsError::Current(e.to_string()))
        };
        Ok(Self {
            bounding: read(caps::CapSet::Bounding)?,
            permitted: read(caps::CapSet::Permitted)?,
            inheritable: read(caps::CapSet::Inheritable)?,
        })
    }
}

/// Keeps (or stops keeping) the permitted set across a change from uid 0 to another uid.
/// Async-signal-safe.
pub fn set_keep_caps(keep: bool) -> Result<(), Errno> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, libc::c_ulong::from(keep), 0, 0, 0) };
    if rc != 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// Whether CAP_SYS_ADMIN is in the calling thread's effective set right now.
/// Async-signal-safe (raw capget on the stack).
pub fn has_effective_sys_admin() -> bool {
    let header = CapUserHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapUserData::default(); 2];
    // SAFETY: header is valid; data has room for the two elements version 3 writes.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &header, data.as_mut_ptr()) };
    if rc != 0 {
        return false;
    }
    let effective = u64::from(data[0].effective) | (u64::from(data[1].effective) << 32);
    effective & caps::Capability::CAP_SYS_ADMIN.bitmask() != 0
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapUserHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapUserData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{Capability, LinuxCapabilitiesBuilder};

    fn set(caps: &[Capability]) -> Capabilities {
        caps.iter().copied().collect()
    }

    #[test]
    fn missing_capabilities_mean_empty_sets() {
        let masks = CapMasks::from_spec(None, 40).unwrap();
        assert_eq!((masks.bounding, masks.effective, masks.ambient), (0, 0, 0));
        // oci-spec's builder fills unset sets with its own defaults: clear them.
        let mut only_bounding = LinuxCapabilitiesBuilder::default()
            .bounding(set(&[Capability::Kill]))
            .build()
            .unwrap();
        only_bounding.set_effective(None);
        only_bounding.set_permitted(None);
        only_bounding.set_inheritable(None);
        only_bounding.set_ambient(None);
        let masks = CapMasks::from_spec(Some(&only_bounding), 40).unwrap();
        assert_eq!(masks.bounding, 1 << 5);
        assert_eq!(masks.effective, 0);
    }

    #[test]
    fn capabilities_newer_than_the_kernel_are_dropped() {
        let caps = LinuxCapabilitiesBuilder::default()
            .bounding(set(&[Capability::Chown, Capability::CheckpointRestore]))
            .build()
            .unwrap();
        // CAP_CHECKPOINT_RESTORE is 40: a kernel whose last cap is 39 does not know it.
        let masks = CapMasks::from_spec(Some(&caps), 39).unwrap();
        assert_eq!(masks.bounding, 1);
        let masks = CapMasks::from_spec(Some(&caps), 40).unwrap();
        assert_eq!(masks.bounding, 1 | (1 << 40));
    }

    #[test]
    fn clamping_keeps_only_what_the_runtime_holds() {
        let wanted = CapMasks {
            bounding: 0b1111,
            effective: 0b1111,
            permitted: 0b1111,
            inheritable: 0b1111,
            ambient: 0b1111,
            last_cap: 40,
        };
        let current = ProcessCaps {
            bounding: 0b0111,
            permitted: 0b0011,
            inheritable: 0b0100,
        };
        let clamped = wanted.clamp_to(&current);
        assert_eq!(clamped.bounding, 0b0111);
        assert_eq!(clamped.permitted, 0b0011);
        assert_eq!(clamped.effective, 0b0011);
        assert_eq!(clamped.inheritable, 0b0111);
        assert_eq!(clamped.ambient, 0b0011);
        // Nothing changes when the runtime holds everything.
        let all = ProcessCaps {
            bounding: u64::MAX,
            permitted: u64::MAX,
            inheritable: 0,
        };
        assert_eq!(wanted.clamp_to(&all), wanted);
    }

    #[test]
    fn names_with_or_without_prefix() {
        assert_eq!(
            mask_of_names(&["sys_admin", "CAP_KILL"]).unwrap(),
            (1 << 21) | (1 << 5)
        );
        let err = mask_of_names(&["CAP_FLY"]).unwrap_err();
        assert!(err.to_string().contains("CAP_FLY"), "{err}");
    }

    #[test]
    fn last_cap_is_readable() {
        let last = read_last_cap().unwrap();
        assert!(last >= 36, "kernel reports cap_last_cap {last}");
    }
}
