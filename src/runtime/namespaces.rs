//! Which namespaces the container gets, read from the spec, as clone(2) flags.

use std::path::PathBuf;

use anyhow::bail;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// A namespace the container joins (a `path` in the spec) instead of creating it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub path: PathBuf,
    pub nstype: libc::c_int,
    pub kind: &'static str,
}

/// The namespaces of one container.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Namespaces {
    pub pid: bool,
    pub mount: bool,
    pub uts: bool,
    pub ipc: bool,
    pub net: bool,
    /// Entered after the parent moved the child into its cgroup (so the container's
    /// cgroup becomes its `/`), hence not a clone flag.
    pub cgroup: bool,
}

impl Namespaces {
    pub fn from_spec(spec: &Spec) -> anyhow::Result<Namespaces> {
        let mut ns = Namespaces::default();
        let list = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default();
        for entry in list {
            if entry.path().is_some() {
                // Checked and collected by `joined`.
                continue;
            }
            match entry.typ() {
                LinuxNamespaceType::Pid => ns.pid = true,
                LinuxNamespaceType::Mount => ns.mount = true,
                LinuxNamespaceType::Uts => ns.uts = true,
                LinuxNamespaceType::Ipc => ns.ipc = true,
                LinuxNamespaceType::Network => ns.net = true,
                LinuxNamespaceType::Cgroup => ns.cgroup = true,
                other => bail!("the {other} namespace is not supported yet"),
            }
        }
        if !ns.mount {
            // Without it pivot_root and every mount would change the host.
            bail!("the spec must ask for a mount namespace");
        }
        Ok(ns)
    }

    /// The namespaces the spec names by path: network, ipc and uts can be joined (the
    /// child's first steps); the others cannot (yet).
    pub fn joined(spec: &Spec) -> anyhow::Result<Vec<Joined>> {
        let list = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default();
        let mut joined = Vec::new();
        for entry in list {
            let Some(path) = entry.path() else { continue };
            let (nstype, kind) = match entry.typ() {
                LinuxNamespaceType::Network => (libc::CLONE_NEWNET, "network"),
                LinuxNamespaceType::Ipc => (libc::CLONE_NEWIPC, "ipc"),
                LinuxNamespaceType::Uts => (libc::CLONE_NEWUTS, "uts"),
                other => bail!(
                    "joining an existing {other} namespace is not supported: only network, \
                     ipc and uts namespaces may have a path"
                ),
            };
            joined.push(Joined {
                path: path.clone(),
                nstype,
                kind,
            });
        }
        Ok(joined)
    }

    /// The flags for the one clone that creates the container's init.
    pub fn clone_flags(&self) -> libc::c_int {
        let mut flags = libc::CLONE_NEWNS;
        for (on, flag) in [
            (self.pid, libc::CLONE_NEWPID),
            (self.uts, libc::CLONE_NEWUTS),
            (self.ipc, libc::CLONE_NEWIPC),
            (self.net, libc::CLONE_NEWNET),
        ] {
            if on {
                flags |= flag;
            }
        }
        flags
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxBuilder, LinuxNamespaceBuilder, SpecBuilder};

    fn spec_with(types: &[LinuxNamespaceType]) -> Spec {
        let namespaces = types
            .iter()
            .map(|t| LinuxNamespaceBuilder::default().typ(*t).build().unwrap())
            .collect::<Vec<_>>();
        SpecBuilder::default()
            .linux(
                LinuxBuilder::default()
                    .namespaces(namespaces)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    #[test]
    fn flags_follow_the_spec_and_cgroup_is_deferred() {
        let ns = Namespaces::from_spec(&spec_with(&[
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Cgroup,
        ]))
        .unwrap();
        assert!(ns.cgroup);
        assert_eq!(ns.clone_flags(), libc::CLONE_NEWNS | libc::CLONE_NEWPID);
    }

    #[test]
    fn a_network_namespace_with_a_path_is_joined_not_created_and_others_are_refused() {
        let joined = |typ| {
            LinuxNamespaceBuilder::default()
                .typ(typ)
                .path("/run/x")
                .build()
                .unwrap()
        };
        let with = |extra| {
            let mut spec = spec_with(&[LinuxNamespaceType::Mount]);
            let mut list = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
            list.push(extra);
            let mut linux = spec.linux().clone().unwrap();
            linux.set_namespaces(Some(list));
            spec.set_linux(Some(linux));
            spec
        };
        let spec = with(joined(LinuxNamespaceType::Network));
        let ns = Namespaces::from_spec(&spec).unwrap();
        assert_eq!(ns.clone_flags() & libc::CLONE_NEWNET, 0);
        let joined_list = Namespaces::joined(&spec).unwrap();
        assert_eq!(joined_list[0].path, PathBuf::from("/run/x"));
        assert_eq!(joined_list[0].nstype, libc::CLONE_NEWNET);
        assert!(Namespaces::joined(&with(joined(LinuxNamespaceType::Pid))).is_err());
    }

    #[test]
    fn a_spec_without_mount_namespace_is_refused() {
        assert!(Namespaces::from_spec(&spec_with(&[LinuxNamespaceType::Pid])).is_err());
    }
}
