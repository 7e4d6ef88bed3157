//! Which v1 hierarchies a container's /sys/fs/cgroup shows on v1 and hybrid hosts:
//! every one the host mounted there, as Docker (runc) shows them, whether or not the
//! container joined it. One it did not join shows the cgroup it inherited (its cgroup
//! namespace is rooted there): nothing is migrated for the view.

use std::sync::OnceLock;

use super::detect::{selecting_options, unescape_octal, CGROUP_ROOT};

/// The v1 part of the view: what to mount and which names to link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V1View {
    /// (directory name under /sys/fs/cgroup, mount data selecting the hierarchy).
    pub mounts: Vec<(String, String)>,
    /// (link name, directory it points to): each controller of a co-mounted hierarchy
    /// (`cpu` -> `cpu,cpuacct`), as the host and runc have them.
    pub links: Vec<(String, String)>,
}

/// The host's v1 hierarchies under /sys/fs/cgroup (looked up once per process; an
/// unreadable mountinfo shows none).
pub fn host_v1_view() -> V1View {
    static VIEW: OnceLock<V1View> = OnceLock::new();
    VIEW.get_or_init(|| {
        std::fs::read_to_string("/proc/self/mountinfo")
            .map(|m| v1_view(&m))
            .unwrap_or_default()
    })
    .clone()
}

/// The v1 mounts directly under /sys/fs/cgroup in `mountinfo`, the first of each name.
pub fn v1_view(mountinfo: &str) -> V1View {
    let mut view = V1View::default();
    for line in mountinfo.lines() {
        // id parent maj:min root mount-point options [optional...] - fstype source super-options
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut right = right.split(' ');
        if right.next() != Some("cgroup") {
            continue;
        }
        let data = selecting_options(right.nth(1).unwrap_or(""));
        let Some(point) = left.split(' ').nth(4).map(unescape_octal) else {
            continue;
        };
        let Some(name) = point
            .strip_prefix(CGROUP_ROOT)
            .and_then(|rest| rest.strip_prefix('/'))
            .filter(|name| !name.is_empty() && !name.contains('/'))
        else {
            continue;
        };
        if data.is_empty() || view.mounts.iter().any(|(n, _)| n == name) {
            continue;
        }
        view.mounts.push((name.to_string(), data));
    }
    for (name, _) in &view.mounts {
        for part in name.split(',').filter(|p| *p != name && !p.is_empty()) {
            let taken = view.mounts.iter().any(|(n, _)| n == part)
                || view.links.iter().any(|(l, _)| l == part);
            if !taken {
                view.links.push((part.to_string(), name.clone()));
            }
        }
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "\
26 25 0:24 / /sys/fs/cgroup ro,nosuid shared:8 - tmpfs tmpfs ro,mode=755
27 26 0:25 / /sys/fs/cgroup/unified rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate
28 26 0:26 / /sys/fs/cgroup/systemd rw shared:10 - cgroup cgroup rw,xattr,name=systemd
31 26 0:29 / /sys/fs/cgroup/cpu,cpuacct rw shared:13 - cgroup cgroup rw,cpu,cpuacct
32 26 0:30 / /sys/fs/cgroup/net_cls,net_prio rw shared:14 - cgroup cgroup rw,net_cls,net_prio
33 26 0:31 / /sys/fs/cgroup/freezer rw shared:15 - cgroup cgroup rw,freezer
34 26 0:32 / /sys/fs/cgroup/memory rw shared:16 - cgroup cgroup rw,memory,clone_children
90 80 0:30 / /mnt/again rw - cgroup cgroup rw,memory
91 34 0:30 /sub /sys/fs/cgroup/memory/sub rw - cgroup cgroup rw,memory
92 26 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
";

    #[test]
    fn every_hierarchy_under_the_root_is_shown_once_with_links_for_co_mounted_ones() {
        let view = v1_view(HOST);
        let names: Vec<&str> = view.mounts.iter().map(|(n, _)| n.as_str()).collect();
        // Not the cgroup2 mount (the caller adds it), nor mounts elsewhere or deeper.
        assert_eq!(
            names,
            [
                "systemd",
                "cpu,cpuacct",
                "net_cls,net_prio",
                "freezer",
                "memory"
            ]
        );
        assert_eq!(view.mounts[0].1, "name=systemd");
        assert_eq!(view.mounts[1].1, "cpu,cpuacct");
        assert_eq!(view.mounts[4].1, "memory");
        assert_eq!(
            view.links,
            [
                ("cpu".to_string(), "cpu,cpuacct".to_string()),
                ("cpuacct".to_string(), "cpu,cpuacct".to_string()),
                ("net_cls".to_string(), "net_cls,net_prio".to_string()),
                ("net_prio".to_string(), "net_cls,net_prio".to_string()),
            ]
        );
    }

    #[test]
    fn a_unified_host_has_no_v1_view() {
        let unified = "26 25 0:24 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(v1_view(unified), V1View::default());
    }
}
