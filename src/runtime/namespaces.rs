//! Which namespaces the container gets, read from the spec, as clone(2) flags.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
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
    /// The container has a user namespace of its own: a new one, created first by the
    /// clone so that it owns the others (the parent writes its uid and gid maps,
    /// `IdMaps`, before the child goes on), or one joined by path (`user_joined`).
    pub user: bool,
    /// The user namespace is joined by path: the child enters it before any other
    /// namespace is created, so that it owns those (see `JoinUser`), and no map is
    /// written (it has its own).
    pub user_joined: bool,
    /// Entered after the parent moved the child into its cgroup (so the container's
    /// cgroup becomes its `/`), hence not a clone flag.
    pub cgroup: bool,
    /// The mount namespace is joined by path (no new one): the child enters it first
    /// and sets the root up in it.
    pub mount_joined: bool,
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
                ns.mount_joined |= entry.typ() == LinuxNamespaceType::Mount;
                if entry.typ() == LinuxNamespaceType::User {
                    ns.user = true;
                    ns.user_joined = true;
                }
                continue;
            }
            match entry.typ() {
                LinuxNamespaceType::Pid => ns.pid = true,
                LinuxNamespaceType::Mount => ns.mount = true,
                LinuxNamespaceType::Uts => ns.uts = true,
                LinuxNamespaceType::Ipc => ns.ipc = true,
                LinuxNamespaceType::Network => ns.net = true,
                LinuxNamespaceType::Cgroup => ns.cgroup = true,
                LinuxNamespaceType::User => ns.user = true,
                other => bail!("the {other} namespace is not supported yet"),
            }
        }
        if !ns.mount && !ns.mount_joined {
            // Without it pivot_root and every mount would change the host.
            bail!("the spec must ask for a mount namespace");
        }
        Ok(ns)
    }

    /// The namespaces the spec names by path: network, ipc, uts and mount are joined by
    /// the child's first steps, pid by the clone itself (the pid namespace applies to
    /// children only: see launch.rs), user before everything else (see `JoinUser`);
    /// cgroup cannot be joined (yet).
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
                LinuxNamespaceType::Mount => (libc::CLONE_NEWNS, "mount"),
                LinuxNamespaceType::Pid => (libc::CLONE_NEWPID, "pid"),
                LinuxNamespaceType::User => (libc::CLONE_NEWUSER, "user"),
                other => bail!(
                    "joining an existing {other} namespace is not supported: only network, \
                     ipc, uts, mount, pid and user namespaces may have a path"
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

    /// The flags of the runtime's own clone: none when a user namespace is joined (its
    /// child joins it, then makes the clone with `clone_flags`, see userns_join.rs).
    pub fn spawn_flags(&self) -> libc::c_int {
        if self.user_joined {
            0
        } else {
            self.clone_flags()
        }
    }

    /// Whether the runtime's own clone may create the cgroup namespace (not when a user
    /// namespace is joined: it must own the new one; the plan's step creates it).
    pub fn cgroup_by_spawn(&self) -> bool {
        self.cgroup && !self.user_joined
    }

    /// The flags for the one clone that creates the container's init (with a joined user
    /// namespace: the clone the child makes once it has joined it).
    pub fn clone_flags(&self) -> libc::c_int {
        let mut flags = 0;
        for (on, flag) in [
            (self.mount, libc::CLONE_NEWNS),
            (self.pid, libc::CLONE_NEWPID),
            (self.uts, libc::CLONE_NEWUTS),
            (self.ipc, libc::CLONE_NEWIPC),
            (self.net, libc::CLONE_NEWNET),
            (self.user && !self.user_joined, libc::CLONE_NEWUSER),
        ] {
            if on {
                flags |= flag;
            }
        }
        flags
    }
}

/// A new user namespace's uid and gid maps, as written to /proc/PID/uid_map and
/// gid_map ("inside outside count" lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMaps {
    pub uid_map: String,
    pub gid_map: String,
    /// process.oomScoreAdj, written by the parent with the maps: in the user namespace
    /// the child may not lower it.
    pub oom_score_adj: Option<String>,
}

impl IdMaps {
    /// The spec's linux.uidMappings and gidMappings: required with a new user namespace,
    /// refused without one.
    pub fn from_spec(spec: &Spec, ns: &Namespaces) -> anyhow::Result<Option<IdMaps>> {
        let linux = spec.linux().as_ref();
        let uids = linux
            .and_then(|l| l.uid_mappings().clone())
            .unwrap_or_default();
        let gids = linux
            .and_then(|l| l.gid_mappings().clone())
            .unwrap_or_default();
        if ns.user_joined {
            // A joined namespace keeps its own maps; given ones are compared with them
            // (`JoinUser::expected_maps`).
            return Ok(None);
        }
        if !ns.user {
            if !uids.is_empty() || !gids.is_empty() {
                bail!(
                    "linux.uidMappings and gidMappings need a user namespace: add \
                     {{\"type\": \"user\"}} to linux.namespaces"
                );
            }
            return Ok(None);
        }
        if uids.is_empty() || gids.is_empty() {
            bail!(
                "a user namespace needs linux.uidMappings and linux.gidMappings: map the \
                 container's ids (root at least) to host ids"
            );
        }
        let text = |maps: &[oci_spec::runtime::LinuxIdMapping]| -> anyhow::Result<String> {
            let mut text = String::new();
            for m in maps {
                if m.size() == 0 {
                    bail!("an id mapping has size 0: give the number of ids it maps");
                }
                text.push_str(&format!(
                    "{} {} {}\n",
                    m.container_id(),
                    m.host_id(),
                    m.size()
                ));
            }
            Ok(text)
        };
        Ok(Some(IdMaps {
            uid_map: text(&uids)?,
            gid_map: text(&gids)?,
            oom_score_adj: None,
        }))
    }

    /// Writes the maps of the user namespace of process `pid` (which waits for us).
    pub fn write(&self, pid: libc::pid_t) -> anyhow::Result<()> {
        for (file, text) in [("uid_map", &self.uid_map), ("gid_map", &self.gid_map)] {
            let path = format!("/proc/{pid}/{file}");
            std::fs::write(&path, text.as_bytes()).with_context(|| {
                format!(
                    "cannot write the container's {file} ({}): check linux.uidMappings and \
                     gidMappings (ranges that exist and do not overlap)",
                    text.trim().replace('\n', ", ")
                )
            })?;
        }
        if let Some(value) = &self.oom_score_adj {
            std::fs::write(format!("/proc/{pid}/oom_score_adj"), value.as_bytes())
                .context("cannot set the container's oom_score_adj (process.oomScoreAdj)")?;
        }
        Ok(())
    }
}

impl Joined {
    /// Opens the namespace and checks that it is one of the kind the spec says (as the
    /// spec requires): a file that is no namespace, or one of another kind, is refused.
    pub fn open(&self) -> anyhow::Result<OwnedFd> {
        let fd: OwnedFd = std::fs::File::open(&self.path)
            .with_context(|| {
                format!(
                    "cannot open the {} namespace {}",
                    self.kind,
                    self.path.display()
                )
            })?
            .into();
        check_type(&fd, self.nstype, self.kind, &self.path)?;
        Ok(fd)
    }
}

/// NS_GET_NSTYPE (linux/nsfs.h): the CLONE_NEW* type of a namespace descriptor.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

fn check_type(fd: &OwnedFd, nstype: libc::c_int, kind: &str, path: &Path) -> anyhow::Result<()> {
    // SAFETY: an argument-less ioctl on a descriptor we own.
    let found = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE as _) };
    if found != nstype {
        let what = if found < 0 {
            "not a namespace".to_string()
        } else {
            "a namespace of another type".to_string()
        };
        bail!(
            "cannot join the {kind} namespace {}: it is {what}: give a {kind} namespace \
             (such as /proc/PID/ns/{})",
            path.display(),
            proc_name(nstype)
        );
    }
    Ok(())
}

/// The name of a namespace type under /proc/PID/ns.
fn proc_name(nstype: libc::c_int) -> &'static str {
    match nstype {
        libc::CLONE_NEWNET => "net",
        libc::CLONE_NEWIPC => "ipc",
        libc::CLONE_NEWUTS => "uts",
        libc::CLONE_NEWNS => "mnt",
        libc::CLONE_NEWPID => "pid",
        libc::CLONE_NEWUSER => "user",
        _ => "...",
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
    fn namespaces_with_a_path_are_joined_not_created_and_cgroup_is_refused() {
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
        assert!(Namespaces::joined(&with(joined(LinuxNamespaceType::Cgroup))).is_err());
        // A joined user namespace: no clone flag of the runtime's, none for a new one in
        // the child's clone, and no cgroup namespace by the runtime's clone.
        let mut spec = with(joined(LinuxNamespaceType::User));
        let mut list = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
        list.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Cgroup)
                .build()
                .unwrap(),
        );
        let mut linux = spec.linux().clone().unwrap();
        linux.set_namespaces(Some(list));
        spec.set_linux(Some(linux));
        let user = Namespaces::from_spec(&spec).unwrap();
        assert!(user.user && user.user_joined);
        assert_eq!(user.spawn_flags(), 0);
        assert_eq!(user.clone_flags(), libc::CLONE_NEWNS);
        assert!(user.cgroup && !user.cgroup_by_spawn());
        assert_eq!(
            Namespaces::joined(&spec).unwrap()[0].nstype,
            libc::CLONE_NEWUSER
        );
        let pid = Namespaces::joined(&with(joined(LinuxNamespaceType::Pid))).unwrap();
        assert_eq!(pid[0].nstype, libc::CLONE_NEWPID);
    }

    #[test]
    fn a_spec_without_mount_namespace_is_refused() {
        assert!(Namespaces::from_spec(&spec_with(&[LinuxNamespaceType::Pid])).is_err());
    }
}

#[cfg(test)]
mod type_tests {
    use super::*;

    #[test]
    fn a_namespace_of_the_wrong_type_or_no_namespace_is_refused() {
        let joined = |path: &str, nstype, kind| Joined {
            path: PathBuf::from(path),
            nstype,
            kind,
        };
        assert!(joined("/proc/self/ns/net", libc::CLONE_NEWNET, "network")
            .open()
            .is_ok());
        let err = joined("/proc/self/ns/net", libc::CLONE_NEWPID, "pid")
            .open()
            .unwrap_err();
        assert!(format!("{err:#}").contains("another type"), "{err:#}");
        let err = joined("/proc/self/stat", libc::CLONE_NEWNS, "mount")
            .open()
            .unwrap_err();
        assert!(format!("{err:#}").contains("not a namespace"), "{err:#}");
    }
}
