//! The OCI device rules (`linux.resources.devices`) in a checked form, and what they
//! become on cgroup v1: writes to `devices.allow` and `devices.deny`. On cgroup v2 (and
//! on the cgroup2 tree of hybrid hosts) the same rules become an eBPF program (bpf.rs).
//!
//! Semantics, as runc implements the OCI list: rules apply in order and a later rule
//! overrides an earlier one, for each access bit separately (`allow c 1:3 r` then
//! `allow c 1:3 w` allows `rw`). A non-empty list starts from "deny everything"; an
//! absent or empty list restricts nothing.

use std::fmt;

use anyhow::{bail, Result};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

/// Access bits, in the kernel's BPF_DEVCG_ACC_* encoding (the v1 letters are m, r, w).
pub const ACC_MKNOD: u8 = 1;
pub const ACC_READ: u8 = 2;
pub const ACC_WRITE: u8 = 4;
pub const ACC_ALL: u8 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// The largest major and minor a dev_t holds (12 and 20 bits).
const MAX_MAJOR: u32 = (1 << 12) - 1;
const MAX_MINOR: u32 = (1 << 20) - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    All,
    Char,
    Block,
}

/// One rule: `allow` or deny `access` to the devices of `kind` with that major and
/// minor (`None`: any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRule {
    pub allow: bool,
    pub kind: DeviceKind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: u8,
}

impl DeviceRule {
    /// Checks one OCI entry. A missing type is "a" (all), a missing or -1 major/minor is
    /// any, a missing access is "rwm" (as crun reads them).
    pub fn from_oci(entry: &LinuxDeviceCgroup) -> Result<DeviceRule> {
        let kind = match entry.typ() {
            None | Some(LinuxDeviceType::A) => DeviceKind::All,
            Some(LinuxDeviceType::C | LinuxDeviceType::U) => DeviceKind::Char,
            Some(LinuxDeviceType::B) => DeviceKind::Block,
            Some(LinuxDeviceType::P) => {
                bail!("invalid device rule {entry}: a fifo (type p) is not a device the cgroup controls")
            }
        };
        let number = |value: Option<i64>, max: u32, what: &str| -> Result<Option<u32>> {
            match value {
                None | Some(-1) => Ok(None),
                Some(n) if (0..=i64::from(max)).contains(&n) => Ok(Some(n as u32)),
                Some(n) => bail!("invalid device rule {entry}: {what} {n} is out of range (0 to {max}, or -1 for any)"),
            }
        };
        let major = number(entry.major(), MAX_MAJOR, "major")?;
        let minor = number(entry.minor(), MAX_MINOR, "minor")?;
        let access = match entry.access().as_deref() {
            None => ACC_ALL,
            Some(text) => parse_access(text).ok_or_else(|| {
                anyhow::anyhow!(
                    "invalid device rule {entry}: access {text:?} must be letters of rwm"
                )
            })?,
        };
        Ok(DeviceRule {
            allow: entry.allow(),
            kind,
            major,
            minor,
            access,
        })
    }

    /// `a *:* rwm`: every device, every access.
    fn is_everything(&self) -> bool {
        self.kind == DeviceKind::All
            && self.major.is_none()
            && self.minor.is_none()
            && self.access == ACC_ALL
    }

    /// Whether every device this rule matches is matched by `wider` too.
    fn within(&self, wider: &DeviceRule) -> bool {
        let number = |mine: Option<u32>, theirs: Option<u32>| theirs.is_none() || theirs == mine;
        (wider.kind == DeviceKind::All || wider.kind == self.kind)
            && number(self.major, wider.major)
            && number(self.minor, wider.minor)
    }

    /// Whether some device is matched by both rules (access aside).
    fn meets(&self, other: &DeviceRule) -> bool {
        let number = |a: Option<u32>, b: Option<u32>| a.is_none() || b.is_none() || a == b;
        (self.kind == DeviceKind::All || other.kind == DeviceKind::All || self.kind == other.kind)
            && number(self.major, other.major)
            && number(self.minor, other.minor)
    }
}

/// "r", "rw", "mrw"...: each letter at most once, at least one.
fn parse_access(text: &str) -> Option<u8> {
    let mut bits = 0;
    for c in text.chars() {
        let bit = match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => return None,
        };
        if bits & bit != 0 {
            return None;
        }
        bits |= bit;
    }
    (bits != 0).then_some(bits)
}

/// The v1 spelling: `c 1:3 rwm`, `b *:* m`, `a *:* rwm`.
impl fmt::Display for DeviceRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            DeviceKind::All => 'a',
            DeviceKind::Char => 'c',
            DeviceKind::Block => 'b',
        };
        let number = |n: Option<u32>| n.map_or_else(|| "*".to_string(), |n| n.to_string());
        let mut access = String::new();
        for (bit, letter) in [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')] {
            if self.access & bit != 0 {
                access.push(letter);
            }
        }
        write!(
            f,
            "{kind} {}:{} {access}",
            number(self.major),
            number(self.minor)
        )
    }
}

/// The checked rules of `linux.resources.devices`; `None` when the list is absent or
/// empty (nothing to restrict).
pub fn from_oci(entries: Option<&Vec<LinuxDeviceCgroup>>) -> Result<Option<Vec<DeviceRule>>> {
    let rules = entries
        .into_iter()
        .flatten()
        .map(DeviceRule::from_oci)
        .collect::<Result<Vec<_>>>()?;
    Ok((!rules.is_empty()).then_some(rules))
}

/// Whether the rules end up allowing everything (`--privileged`: Docker's single
/// `a *:* rwm`): then no filter is needed at all.
pub fn allows_everything(rules: &[DeviceRule]) -> bool {
    rules.last().is_some_and(|r| r.allow && r.is_everything())
}

/// The v1 controller file a rule is written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V1File {
    Allow,
    Deny,
}

impl V1File {
    pub fn name(self) -> &'static str {
        match self {
            V1File::Allow => "devices.allow",
            V1File::Deny => "devices.deny",
        }
    }

    fn of(allow: bool) -> V1File {
        if allow {
            V1File::Allow
        } else {
            V1File::Deny
        }
    }
}

/// What `v1_writes` plans.
#[derive(Debug)]
pub struct V1Plan {
    /// (file, line) to write, in order.
    pub writes: Vec<(V1File, String)>,
    /// What devices.list shows afterwards: the tests compare it with the kernel's.
    #[cfg_attr(not(test), allow(dead_code))]
    pub listed: Vec<DeviceRule>,
}

/// The writes, in order, that give a fresh v1 devices cgroup exactly `rules`.
///
/// The v1 controller keeps a default (allow or deny) and a list of exceptions to it;
/// writing "a" resets both, a rule against the default adds an exception (merged into
/// one of the same type, major and minor), and a rule for the default removes access
/// bits from exceptions of exactly that type, major and minor only. So a rule that
/// would narrow a wider earlier exception (`allow c *:* m`, then `deny c 1:3 m`) has no
/// v1 spelling: it is refused rather than silently ignored.
pub fn v1_writes(rules: &[DeviceRule]) -> Result<V1Plan> {
    // A non-empty list starts from "deny everything", as on v2.
    let mut writes = vec![(V1File::Deny, "a".to_string())];
    let mut default_allow = false;
    let mut exceptions: Vec<DeviceRule> = Vec::new();
    for rule in rules {
        if rule.is_everything() {
            writes.push((V1File::of(rule.allow), "a".to_string()));
            default_allow = rule.allow;
            exceptions.clear();
            continue;
        }
        // The kernel reads a leading "a" as a reset whatever follows: a partial rule on
        // all types is spelled once for char and once for block devices.
        let parts: Vec<DeviceRule> = match rule.kind {
            DeviceKind::All => [DeviceKind::Char, DeviceKind::Block]
                .map(|kind| DeviceRule { kind, ..*rule })
                .to_vec(),
            _ => vec![*rule],
        };
        for part in parts {
            if part.allow != default_allow {
                writes.push((V1File::of(part.allow), part.to_string()));
                match exceptions
                    .iter_mut()
                    .find(|e| (e.kind, e.major, e.minor) == (part.kind, part.major, part.minor))
                {
                    Some(existing) => existing.access |= part.access,
                    None => exceptions.push(part),
                }
                continue;
            }
            // Back to the default for these devices: take the bits off every exception
            // inside the rule; one reaching beyond it cannot be split on v1.
            for exception in exceptions.iter_mut() {
                let shared = exception.access & part.access;
                if shared == 0 || !exception.meets(&part) {
                    continue;
                }
                if !exception.within(&part) {
                    bail!(
                        "device rule \"{}\" cannot be applied on cgroup v1: it narrows the \
                         earlier rule \"{exception}\", and v1 only removes exact entries; \
                         reorder the rules or use cgroup v2",
                        rule_text(&part)
                    );
                }
                let removed = DeviceRule {
                    access: shared,
                    ..*exception
                };
                writes.push((V1File::of(part.allow), removed.to_string()));
                exception.access &= !shared;
            }
            exceptions.retain(|e| e.access != 0);
        }
    }
    // In default-allow mode devices.list shows only `a *:* rwm`.
    if default_allow {
        exceptions = vec![DeviceRule {
            allow: true,
            kind: DeviceKind::All,
            major: None,
            minor: None,
            access: ACC_ALL,
        }];
    }
    Ok(V1Plan {
        writes,
        listed: exceptions,
    })
}

/// "allow c 1:3 rwm" / "deny c 1:3 rwm", for messages.
fn rule_text(rule: &DeviceRule) -> String {
    let verb = if rule.allow { "allow" } else { "deny" };
    format!("{verb} {rule}")
}

/// Rules from their v1-like spelling: "+c 1:3 rwm" allows, "-a *:* rwm" denies.
#[cfg(test)]
pub fn parse_rules(spec: &[&str]) -> Vec<DeviceRule> {
    spec.iter()
        .map(|s| {
            let (allow, rest) = (s.starts_with('+'), &s[1..]);
            let mut words = rest.split(' ');
            let kind = match words.next().unwrap() {
                "a" => DeviceKind::All,
                "c" => DeviceKind::Char,
                _ => DeviceKind::Block,
            };
            let (major, minor) = words.next().unwrap().split_once(':').unwrap();
            let number = |n: &str| (n != "*").then(|| n.parse().unwrap());
            DeviceRule {
                allow,
                kind,
                major: number(major),
                minor: number(minor),
                access: parse_access(words.next().unwrap()).unwrap(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(spec: &[&str]) -> Vec<DeviceRule> {
        parse_rules(spec)
    }

    fn oci(
        allow: bool,
        typ: Option<LinuxDeviceType>,
        major: Option<i64>,
        minor: Option<i64>,
        access: Option<&str>,
    ) -> LinuxDeviceCgroup {
        let mut entry = LinuxDeviceCgroup::default();
        entry.set_allow(allow);
        entry.set_typ(typ);
        entry.set_major(major);
        entry.set_minor(minor);
        entry.set_access(access.map(String::from));
        entry
    }

    #[test]
    fn oci_entries_are_checked() {
        let rule = DeviceRule::from_oci(&oci(
            true,
            Some(LinuxDeviceType::C),
            Some(1),
            Some(3),
            Some("rw"),
        ))
        .unwrap();
        assert_eq!(rule.to_string(), "c 1:3 rw");
        assert!(rule.allow);
        let any = DeviceRule::from_oci(&oci(false, None, None, Some(-1), None)).unwrap();
        assert_eq!(any.to_string(), "a *:* rwm");
        assert!(any.is_everything());
        for bad in [
            oci(true, Some(LinuxDeviceType::C), Some(1), Some(3), Some("rx")),
            oci(true, Some(LinuxDeviceType::C), Some(1), Some(3), Some("rr")),
            oci(true, Some(LinuxDeviceType::C), Some(1), Some(3), Some("")),
            oci(true, Some(LinuxDeviceType::C), Some(4096), None, None),
            oci(true, Some(LinuxDeviceType::C), Some(-2), None, None),
            oci(true, Some(LinuxDeviceType::P), None, None, None),
        ] {
            assert!(DeviceRule::from_oci(&bad).is_err(), "{bad}");
        }
        assert_eq!(from_oci(Some(&Vec::new())).unwrap(), None);
        assert_eq!(from_oci(None).unwrap(), None);
    }

    #[test]
    fn only_a_final_allow_everything_lifts_the_filter() {
        assert!(allows_everything(&rules(&["+a *:* rwm"])));
        assert!(allows_everything(&rules(&["-c 1:3 rwm", "+a *:* rwm"])));
        assert!(!allows_everything(&rules(&["+a *:* rwm", "-c 1:3 rwm"])));
        assert!(!allows_everything(&rules(&["+a *:* rw"])));
    }

    #[test]
    fn v1_writes_for_dockers_default_list() {
        let docker = rules(&[
            "-a *:* rwm",
            "+c 1:5 rwm",
            "+c 1:3 rwm",
            "-c 10:229 rwm",
            "+c *:* m",
            "+b *:* m",
            "+c 136:* rwm",
        ]);
        let V1Plan {
            writes,
            listed: list,
        } = v1_writes(&docker).unwrap();
        let shown: Vec<String> = writes
            .iter()
            .map(|(file, line)| format!("{} {line}", file.name()))
            .collect();
        assert_eq!(
            shown,
            [
                "devices.deny a",
                "devices.deny a",
                "devices.allow c 1:5 rwm",
                "devices.allow c 1:3 rwm",
                // nothing to remove: 10:229 was never allowed
                "devices.allow c *:* m",
                "devices.allow b *:* m",
                "devices.allow c 136:* rwm",
            ]
        );
        let list: Vec<String> = list.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            list,
            [
                "c 1:5 rwm",
                "c 1:3 rwm",
                "c *:* m",
                "b *:* m",
                "c 136:* rwm"
            ]
        );
    }

    #[test]
    fn v1_later_rules_take_bits_off_exact_and_narrower_exceptions() {
        let V1Plan {
            writes,
            listed: list,
        } = v1_writes(&rules(&["+c 1:3 rwm", "+c 1:5 rw", "+a 7:* r", "-c 1:* w"])).unwrap();
        let lines: Vec<&str> = writes.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(
            lines,
            [
                "a",
                "c 1:3 rwm",
                "c 1:5 rw",
                "c 7:* r",
                "b 7:* r",
                "c 1:3 w",
                "c 1:5 w"
            ]
        );
        assert_eq!(writes[5].0, V1File::Deny);
        let list: Vec<String> = list.iter().map(|r| r.to_string()).collect();
        assert_eq!(list, ["c 1:3 rm", "c 1:5 r", "c 7:* r", "b 7:* r"]);
        // an exception losing its last bit disappears
        let list = v1_writes(&rules(&["+c 1:3 r", "-c 1:3 rwm"]))
            .unwrap()
            .listed;
        assert!(list.is_empty());
    }

    #[test]
    fn v1_refuses_what_it_cannot_spell_and_resets_on_everything() {
        let err = v1_writes(&rules(&["+c *:* m", "-c 1:3 m"])).unwrap_err();
        assert!(err.to_string().contains("narrows"), "{err}");
        // a deny of other bits than the wide exception holds is fine
        assert!(v1_writes(&rules(&["+c *:* m", "-c 1:3 rw"])).is_ok());
        let V1Plan {
            writes,
            listed: list,
        } = v1_writes(&rules(&["+c 1:3 rwm", "+a *:* rwm"])).unwrap();
        assert_eq!(writes.last().unwrap(), &(V1File::Allow, "a".to_string()));
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].to_string(), "a *:* rwm");
        // default allow: a deny adds an exception, an allow takes it off again
        let writes = v1_writes(&rules(&["+a *:* rwm", "-c 1:3 w", "+c 1:3 w"]))
            .unwrap()
            .writes;
        assert_eq!(
            writes[2..],
            [
                (V1File::Deny, "c 1:3 w".to_string()),
                (V1File::Allow, "c 1:3 w".to_string())
            ]
        );
    }
}
