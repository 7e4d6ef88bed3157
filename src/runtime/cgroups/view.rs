//! Which v1 hierarchies a container's /sys/fs/cgroup shows on v1 and hybrid hosts:
//! those the host mounted there that the container joined (its own cgroup), and those
//! it did not join whose inherited cgroup is not the hierarchy's root (its cgroup
//! namespace is rooted there, e.g. a systemd session scope: that subtree shows).
//! Nothing is migrated for the view. A hierarchy inherited at its root is left out: its
//! namespace root would be the host's root cgroup, showing the whole tree (every other
//! container's cgroup and stats). Docker joins every hierarchy instead; that costs a
//! mkdir and a cgroup.procs write per hierarchy on every start.

use std::sync::OnceLock;

use super::detect::{own_cgroups, selecting_options, unescape_octal, Listed, CGROUP_ROOT};

/// The v1 part of the view: what to mount and which names to link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V1View {
    /// (directory name under /sys/fs/cgroup, mount data selecting the hierarchy).
    pub mounts: Vec<(String, String)>,
    /// (link name, directory it points to): each controller of a co-mounted hierarchy
    /// (`cpu` -> `cpu,cpuacct`), as the host and runc have them.
    pub links: Vec<(String, String)>,
}

/// The host's v1 hierarchies under /sys/fs/cgroup (looked up once per process, from the
/// own cgroup file `detect` read; an unreadable mountinfo shows none).
pub fn host_v1_view() -> V1View {
    static VIEW: OnceLock<V1View> = OnceLock::new();
    VIEW.get_or_init(|| {
        let conventional = own_cgroups().listed.as_deref().and_then(conventional_view);
        conventional.unwrap_or_else(|| {
            std::fs::read_to_string("/proc/self/mountinfo")
                .map(|m| v1_view(&m))
                .unwrap_or_default()
        })
    })
    .clone()
}

/// The view from the process's own cgroup file: every v1 hierarchy it lists, at
/// /sys/fs/cgroup/CONTROLLERS (a named one at /sys/fs/cgroup/NAME). None when one of
/// them has no such place: mountinfo must say where it is.
pub(super) fn conventional_view(listed: &[Listed]) -> Option<V1View> {
    let mut mounts: Vec<(String, String)> = Vec::new();
    for l in listed {
        let name = l.place.as_deref()?;
        if !mounts.iter().any(|(n, _)| n == name) {
            mounts.push((name.to_string(), selecting_options(&l.listed)));
        }
    }
    Some(with_links(mounts))
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
    with_links(view.mounts)
}

/// `mounts` and a link for each controller of a co-mounted one (`cpu` -> `cpu,cpuacct`)
/// whose name no mount or earlier link takes.
fn with_links(mounts: Vec<(String, String)>) -> V1View {
    let mut view = V1View {
        mounts,
        links: Vec::new(),
    };
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

/// What a container shows of `view`: the hierarchies it joined (`joined`: their mount
/// data) and those whose cgroup in `self_cgroup` (the planning process's
/// /proc/self/cgroup, which the container inherits where it joins nothing) is not the
/// root `/`. One missing from `self_cgroup` is left out too.
pub fn shown(view: V1View, joined: &[String], self_cgroup: &str) -> V1View {
    let inherited = |data: &str| {
        self_cgroup.lines().find_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            same_hierarchy(controllers, data).then_some(path)
        })
    };
    let mounts = view
        .mounts
        .into_iter()
        .filter(|(_, data)| {
            joined.iter().any(|j| same_hierarchy(j, data))
                || inherited(data).is_some_and(|path| path != "/")
        })
        .collect();
    with_links(mounts)
}

/// Whether two comma-separated lists (mount data, /proc/self/cgroup's controllers)
/// name the same hierarchy: the same controllers and `name=`, in any order.
fn same_hierarchy(a: &str, b: &str) -> bool {
    fn sorted(s: &str) -> Vec<&str> {
        let mut items: Vec<&str> = s.split(',').filter(|i| !i.is_empty()).collect();
        items.sort_unstable();
        items
    }
    !a.is_empty() && sorted(a) == sorted(b)
}

#[cfg(test)]
mod tests {
    use super::super::detect::listed_hierarchies;
    use super::*;
    use std::path::Path;

    const SELF_CGROUP: &str = "\
12:rdma:/
9:name=systemd:/user.slice
7:net_cls,net_prio:/
4:memory:/user.slice
2:cpu,cpuacct:/
0::/user.slice
";

    #[test]
    fn the_view_from_the_own_cgroup_file_names_each_hierarchy_where_hosts_mount_it() {
        let root = Path::new(CGROUP_ROOT);
        let mounted = |p: &Path| p.starts_with(CGROUP_ROOT);
        let listed = |is_mount: &dyn Fn(&Path) -> bool| {
            listed_hierarchies(root, SELF_CGROUP, is_mount).unwrap()
        };
        let view = conventional_view(&listed(&mounted)).unwrap();
        let names: Vec<&str> = view.mounts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "rdma",
                "systemd",
                "net_cls,net_prio",
                "memory",
                "cpu,cpuacct"
            ]
        );
        assert_eq!(view.mounts[1].1, "name=systemd");
        assert!(view
            .links
            .contains(&("cpuacct".into(), "cpu,cpuacct".into())));
        // one hierarchy not where hosts mount it: mountinfo must say
        let not_memory = |p: &Path| mounted(p) && !p.ends_with("memory");
        assert_eq!(conventional_view(&listed(&not_memory)), None);
    }

    #[test]
    fn the_cheap_view_of_this_host_is_the_one_mountinfo_gives() {
        let Some(cheap) = own_cgroups().listed.as_deref().and_then(conventional_view) else {
            return;
        };
        let full = v1_view(&std::fs::read_to_string("/proc/self/mountinfo").unwrap());
        let sorted = |mut v: Vec<(String, String)>| {
            v.sort();
            v
        };
        assert_eq!(sorted(cheap.mounts), sorted(full.mounts));
        assert_eq!(sorted(cheap.links), sorted(full.links));
    }

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
    fn unjoined_hierarchies_inherited_at_their_root_are_left_out_with_their_links() {
        // Joined: memory. Inherited below the root: systemd (a session scope) and
        // freezer. At the root: cpu,cpuacct (its links go too). net_cls,net_prio is
        // missing from /proc/self/cgroup: left out.
        let self_cgroup = "\
12:freezer:/user.slice/session-3.scope
8:cpuacct,cpu:/
5:memory:/
1:name=systemd:/user.slice/user-0.slice/session-3.scope
0::/user.slice/user-0.slice/session-3.scope
";
        let view = shown(v1_view(HOST), &["memory".to_string()], self_cgroup);
        let names: Vec<&str> = view.mounts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["systemd", "freezer", "memory"]);
        assert!(view.links.is_empty(), "{:?}", view.links);

        // The same hierarchies inherited at the root everywhere (a root shell): only
        // the joined ones show; co-mounted and joined, its links stay.
        let at_root = "8:cpu,cpuacct:/\n5:memory:/\n4:freezer:/\n1:name=systemd:/\n";
        let joined = ["cpu,cpuacct".to_string(), "memory".to_string()];
        let view = shown(v1_view(HOST), &joined, at_root);
        let names: Vec<&str> = view.mounts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["cpu,cpuacct", "memory"]);
        assert_eq!(view.links.len(), 2);
        assert_eq!(
            view.links[0],
            ("cpu".to_string(), "cpu,cpuacct".to_string())
        );

        // Nothing readable about the inherited cgroups: only the joined ones.
        let view = shown(v1_view(HOST), &["memory".to_string()], "");
        assert_eq!(view.mounts, [("memory".to_string(), "memory".to_string())]);
    }

    #[test]
    fn a_unified_host_has_no_v1_view() {
        let unified = "26 25 0:24 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(v1_view(unified), V1View::default());
    }
}
