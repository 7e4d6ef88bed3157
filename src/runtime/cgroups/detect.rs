//! Which cgroup layout the host has mounted. Looked up afresh by every process (nothing
//! is cached on disk): the same state root can outlive a reboot into another layout.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::sys::statfs::{statfs, FsType, CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC, TMPFS_MAGIC};

/// Where every distribution mounts cgroups.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The v1 controllers a container is placed under. freezer, blkio and the named
/// `systemd` hierarchy are left alone: we set no limits there, and the cgroup namespace
/// roots each hierarchy at the process's current cgroup anyway. devices is used on
/// legacy hosts only: v2 and hybrid hosts filter devices with eBPF on the cgroup2 tree.
pub const V1_CONTROLLERS: &[&str] = &["memory", "cpu", "cpuacct", "cpuset", "pids", "devices"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// cgroup2 at /sys/fs/cgroup: one tree, controllers in cgroup.controllers.
    Unified { root: PathBuf },
    /// v1 controllers plus a controller-less cgroup2 tree (systemd's "unified" mount).
    Hybrid {
        v1: Vec<Hierarchy>,
        unified: PathBuf,
    },
    /// v1 controllers only.
    Legacy { v1: Vec<Hierarchy> },
}

/// One mounted v1 hierarchy and the controllers bound to it (several when co-mounted,
/// e.g. `cpu,cpuacct`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub mount_point: PathBuf,
    /// The controllers of ours it carries.
    pub controllers: Vec<String>,
    /// The mount options that select this hierarchy (every controller it carries, ours
    /// or not, and its `name=`): what mount(2) needs to show the same hierarchy again.
    pub mount_data: String,
}

impl Hierarchy {
    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// Looks at what is mounted at /sys/fs/cgroup (filesystem magic, as youki and runc do)
/// and, for v1, where each controller's hierarchy is: /sys/fs/cgroup/CONTROLLERS when a
/// v1 mount is there for each one /proc/self/cgroup lists, else what mountinfo says.
pub fn detect() -> Result<Layout> {
    // One look per process: a command asks several times (create, open, parents), and
    // the layout does not change under a running process.
    static LAYOUT: std::sync::OnceLock<Layout> = std::sync::OnceLock::new();
    if let Some(layout) = LAYOUT.get() {
        return Ok(layout.clone());
    }
    let layout = look()?;
    Ok(LAYOUT.get_or_init(|| layout).clone())
}

fn look() -> Result<Layout> {
    let root = Path::new(CGROUP_ROOT);
    let fs = statfs(root)
        .with_context(|| format!("cannot statfs {CGROUP_ROOT}: is sysfs mounted?"))?
        .filesystem_type();
    if fs == CGROUP2_SUPER_MAGIC {
        return classify(root, fs, None, "");
    }
    // Only a tmpfs at the root can hold systemd's cgroup2 mount of a hybrid host.
    let unified_fs = if fs == TMPFS_MAGIC {
        statfs(&root.join("unified"))
            .ok()
            .map(|s| s.filesystem_type())
    } else {
        None
    };
    // The cheap look first (no walk of the mount table, which the kernel formats afresh
    // for every read); mountinfo when the host mounts a hierarchy elsewhere.
    let conventional = own_cgroups()
        .listed
        .as_deref()
        .and_then(|listed| conventional_v1(root, listed));
    if let Some(v1) = conventional {
        return classify_v1(root, fs, unified_fs, v1);
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .context("cannot read /proc/self/mountinfo: is /proc mounted?")?;
    classify(root, fs, unified_fs, &mountinfo)
}

/// Whether a v1 cgroup filesystem is mounted at `path`.
fn is_cgroup1_mount(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == CGROUP_SUPER_MAGIC)
}

/// The process's own cgroup file, read and looked at once per process: the layout
/// (`detect`), the container's /sys/fs/cgroup view and what it inherits all come from
/// this one read, and each hierarchy's conventional place is checked once.
#[derive(Debug, Default)]
pub(super) struct OwnCgroups {
    /// The file as read (`ID:CONTROLLERS:PATH`, one line per hierarchy); empty when
    /// unreadable.
    pub text: String,
    /// Its v1 hierarchies; None when a line does not parse.
    pub listed: Option<Vec<Listed>>,
}

/// One v1 hierarchy of the own cgroup file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Listed {
    /// As listed: its controllers and `name=`, e.g. `cpu,cpuacct` or `name=systemd`.
    pub listed: String,
    /// Its directory under the root where hosts mount it (`CONTROLLERS`, or NAME for a
    /// named one): None when it has no such place or no v1 mount is there.
    pub place: Option<String>,
}

/// This process's [`OwnCgroups`] under [`CGROUP_ROOT`] (read once).
pub(super) fn own_cgroups() -> &'static OwnCgroups {
    static OWN: std::sync::OnceLock<OwnCgroups> = std::sync::OnceLock::new();
    OWN.get_or_init(|| {
        let text = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let listed = listed_hierarchies(Path::new(CGROUP_ROOT), &text, is_cgroup1_mount);
        OwnCgroups { text, listed }
    })
}

/// The v1 hierarchies of `self_cgroup`, each with its place under `root` when `is_mount`
/// says a v1 mount is there. None when a line does not parse.
pub(super) fn listed_hierarchies(
    root: &Path,
    self_cgroup: &str,
    is_mount: impl Fn(&Path) -> bool,
) -> Option<Vec<Listed>> {
    let mut found = Vec::new();
    for line in self_cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (_id, listed) = (fields.next()?, fields.next()?);
        if listed.is_empty() {
            // the cgroup2 tree ("0::PATH")
            continue;
        }
        // A named hierarchy carrying controllers (`name=x,cpu`) has no conventional place.
        let name = match listed.strip_prefix("name=") {
            Some(named) if !named.contains(',') => named,
            Some(_) => listed,
            None => listed,
        };
        let conventional = !name.contains('=')
            && !name.contains('/')
            && !selecting_options(listed).is_empty()
            && is_mount(&root.join(name));
        found.push(Listed {
            listed: listed.to_string(),
            place: conventional.then(|| name.to_string()),
        });
    }
    Some(found)
}

/// The v1 hierarchies carrying [`V1_CONTROLLERS`] among `listed`, each at its
/// conventional place under `root` (the convention crun relies on). None when one of
/// them has no such place, or none is listed: mountinfo must say where they are.
pub(super) fn conventional_v1(root: &Path, listed: &[Listed]) -> Option<Vec<Hierarchy>> {
    let mut found = Vec::new();
    for l in listed {
        let controllers: Vec<String> = l
            .listed
            .split(',')
            .filter(|c| V1_CONTROLLERS.contains(c))
            .map(String::from)
            .collect();
        if controllers.is_empty() {
            continue;
        }
        found.push(Hierarchy {
            mount_point: root.join(l.place.as_deref()?),
            controllers,
            mount_data: selecting_options(&l.listed),
        });
    }
    (!found.is_empty()).then_some(found)
}

/// The layout from what is mounted: the filesystem at `root`, the one at `root/unified`
/// (looked at only when the root is a tmpfs) and the v1 mounts in `mountinfo` (read only
/// when the root is not cgroup2). Apart from `look` so a test can give any host's.
fn classify(
    root: &Path,
    root_fs: FsType,
    unified_fs: Option<FsType>,
    mountinfo: &str,
) -> Result<Layout> {
    if root_fs == CGROUP2_SUPER_MAGIC {
        return Ok(Layout::Unified { root: root.into() });
    }
    classify_v1(root, root_fs, unified_fs, v1_hierarchies(mountinfo))
}

/// The layout of a host whose root is not cgroup2, given its v1 hierarchies.
fn classify_v1(
    root: &Path,
    root_fs: FsType,
    unified_fs: Option<FsType>,
    v1: Vec<Hierarchy>,
) -> Result<Layout> {
    if v1.is_empty() {
        bail!(
            "no cgroup filesystem found: {} is neither cgroup2 nor holds v1 \
             controller mounts; mount cgroup2 at {}",
            root.display(),
            root.display()
        );
    }
    let is_hybrid = root_fs == TMPFS_MAGIC && unified_fs == Some(CGROUP2_SUPER_MAGIC);
    Ok(if is_hybrid {
        Layout::Hybrid {
            v1,
            unified: root.join("unified"),
        }
    } else {
        Layout::Legacy { v1 }
    })
}

/// The v1 hierarchies carrying [`V1_CONTROLLERS`], one per controller set (the first
/// mount of a hierarchy wins; later bind mounts of it are ignored).
pub fn v1_hierarchies(mountinfo: &str) -> Vec<Hierarchy> {
    let mut found: Vec<Hierarchy> = Vec::new();
    for line in mountinfo.lines() {
        // id parent maj:min root mount-point options [optional...] - fstype source super-options
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut right = right.split(' ');
        if right.next() != Some("cgroup") {
            continue;
        }
        let super_options = right.nth(1).unwrap_or("");
        let Some(mount_point) = left.split(' ').nth(4) else {
            continue;
        };
        let controllers: Vec<String> = super_options
            .split(',')
            .filter(|o| V1_CONTROLLERS.contains(o))
            .map(String::from)
            .collect();
        let seen = controllers.iter().any(|c| found.iter().any(|h| h.has(c)));
        if controllers.is_empty() || seen {
            continue;
        }
        found.push(Hierarchy {
            mount_point: PathBuf::from(unescape_octal(mount_point)),
            controllers,
            mount_data: selecting_options(super_options),
        });
    }
    found
}

/// The super options of a v1 mount that name its hierarchy: everything but the generic
/// and behaviour flags (cgroup1_parse_param's list), i.e. controllers and `name=`.
pub(super) fn selecting_options(super_options: &str) -> String {
    super_options
        .split(',')
        .filter(|o| {
            !matches!(
                *o,
                "rw" | "ro"
                    | "none"
                    | "noprefix"
                    | "clone_children"
                    | "cpuset_v2_mode"
                    | "xattr"
                    | "favordynmods"
                    | "nofavordynmods"
            ) && !o.starts_with("release_agent=")
                && !o.is_empty()
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
pub(super) fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 30 0:23 / /sys rw,nosuid shared:7 - sysfs sysfs rw
26 25 0:24 / /sys/fs/cgroup ro,nosuid shared:8 - tmpfs tmpfs ro,mode=755
27 26 0:25 / /sys/fs/cgroup/unified rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate
28 26 0:26 / /sys/fs/cgroup/systemd rw shared:10 - cgroup cgroup rw,xattr,name=systemd
31 26 0:29 / /sys/fs/cgroup/cpu,cpuacct rw shared:13 - cgroup cgroup rw,cpu,cpuacct
32 26 0:30 / /sys/fs/cgroup/memory rw shared:14 - cgroup cgroup rw,memory,hugetlb,clone_children
33 26 0:31 / /sys/fs/cgroup/pids rw shared:15 - cgroup cgroup rw,pids
34 26 0:32 / /sys/fs/cgroup/freezer rw shared:16 - cgroup cgroup rw,freezer
35 26 0:33 / /sys/fs/cgroup/cpuset rw shared:17 - cgroup cgroup rw,cpuset
90 80 0:30 / /mnt/again\\040here rw - cgroup cgroup rw,memory
";

    #[test]
    fn finds_co_mounted_controllers_once() {
        let h = v1_hierarchies(HYBRID);
        let points: Vec<_> = h.iter().map(|h| h.mount_point.clone()).collect();
        assert_eq!(
            points,
            [
                "/sys/fs/cgroup/cpu,cpuacct",
                "/sys/fs/cgroup/memory",
                "/sys/fs/cgroup/pids",
                "/sys/fs/cgroup/cpuset"
            ]
            .map(PathBuf::from)
        );
        assert_eq!(h[0].controllers, ["cpu", "cpuacct"]);
        assert!(h[0].has("cpuacct") && !h[0].has("memory"));
        // mounting a hierarchy again takes all its controllers, not only ours
        assert_eq!(h[0].mount_data, "cpu,cpuacct");
        assert_eq!(h[1].controllers, ["memory"]);
        assert_eq!(h[1].mount_data, "memory,hugetlb");
    }

    #[test]
    fn no_v1_mounts_on_a_unified_host() {
        let unified = "26 25 0:24 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        assert!(v1_hierarchies(unified).is_empty());
    }

    #[test]
    fn mount_points_are_unescaped() {
        assert_eq!(unescape_octal("/a\\040b\\134c"), "/a b\\c");
        assert_eq!(unescape_octal("/plain\\9"), "/plain\\9");
    }

    /// A legacy host: every controller in its own v1 mount on a tmpfs, no cgroup2.
    const LEGACY: &str = "\
25 30 0:23 / /sys rw,nosuid shared:7 - sysfs sysfs rw
26 25 0:24 / /sys/fs/cgroup ro,nosuid shared:8 - tmpfs tmpfs ro,mode=755
31 26 0:29 / /sys/fs/cgroup/cpu,cpuacct rw shared:13 - cgroup cgroup rw,cpu,cpuacct
32 26 0:30 / /sys/fs/cgroup/memory rw shared:14 - cgroup cgroup rw,memory
33 26 0:31 / /sys/fs/cgroup/pids rw shared:15 - cgroup cgroup rw,pids
36 26 0:34 / /sys/fs/cgroup/devices rw shared:18 - cgroup cgroup rw,devices
";

    #[test]
    fn the_layout_follows_what_is_mounted() {
        let root = Path::new("/fixture/cgroup");
        let unified = classify(root, CGROUP2_SUPER_MAGIC, None, "").unwrap();
        assert_eq!(unified, Layout::Unified { root: root.into() });

        let hybrid = classify(root, TMPFS_MAGIC, Some(CGROUP2_SUPER_MAGIC), HYBRID).unwrap();
        let Layout::Hybrid { v1, unified } = hybrid else {
            panic!("not hybrid: {hybrid:?}")
        };
        assert_eq!(unified, root.join("unified"));
        assert_eq!(v1, v1_hierarchies(HYBRID));

        // No cgroup2 at `unified` (or no mount there at all): legacy.
        let legacy = classify(root, TMPFS_MAGIC, Some(TMPFS_MAGIC), LEGACY).unwrap();
        assert!(
            matches!(&legacy, Layout::Legacy { v1 } if v1.len() == 4),
            "{legacy:?}"
        );
        let legacy = classify(root, TMPFS_MAGIC, None, LEGACY).unwrap();
        assert!(matches!(legacy, Layout::Legacy { .. }));
    }

    #[test]
    fn no_cgroup_mount_at_all_is_an_error_naming_the_root() {
        let sysfs_only = "25 30 0:23 / /sys rw,nosuid shared:7 - sysfs sysfs rw\n";
        let err = classify(Path::new("/fixture/cgroup"), TMPFS_MAGIC, None, sysfs_only)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no cgroup filesystem found: /fixture/cgroup"),
            "{err}"
        );
    }

    #[test]
    fn the_own_cgroup_file_gives_the_hierarchies_where_hosts_mount_them() {
        let root = Path::new("/fixture/cgroup");
        let own = "9:name=systemd:/\n7:memory,hugetlb:/a\n3:cpu,cpuacct:/\n2:pids:/\n0::/\n";
        let listed =
            |is_mount: &dyn Fn(&Path) -> bool| listed_hierarchies(root, own, is_mount).unwrap();
        let v1 = conventional_v1(root, &listed(&|_| true)).unwrap();
        let points: Vec<_> = v1.iter().map(|h| h.mount_point.clone()).collect();
        assert_eq!(
            points,
            ["memory,hugetlb", "cpu,cpuacct", "pids"].map(|d| root.join(d))
        );
        assert_eq!(v1[0].controllers, ["memory"]);
        assert_eq!(v1[0].mount_data, "memory,hugetlb");
        // a hierarchy mounted elsewhere (HYBRID mounts memory,hugetlb at memory)
        let elsewhere = |p: &Path| !p.ends_with("memory,hugetlb");
        assert_eq!(conventional_v1(root, &listed(&elsewhere)), None);
        // a named hierarchy mounted elsewhere is not ours: still found
        let no_systemd = |p: &Path| !p.ends_with("systemd");
        assert_eq!(conventional_v1(root, &listed(&no_systemd)), Some(v1));
        // nothing of ours listed (a unified host's "0::/")
        let unified = listed_hierarchies(root, "0::/\n", |_| true).unwrap();
        assert_eq!(conventional_v1(root, &unified), None);
        // a line that does not parse
        assert_eq!(listed_hierarchies(root, "garbage\n", |_| true), None);
    }

    #[test]
    fn the_cheap_look_at_this_host_finds_what_mountinfo_says() {
        let own = own_cgroups();
        assert_eq!(
            own.text,
            std::fs::read_to_string("/proc/self/cgroup").unwrap()
        );
        let listed = own.listed.as_deref().unwrap();
        let Some(mut cheap) = conventional_v1(Path::new(CGROUP_ROOT), listed) else {
            return;
        };
        let mut full = v1_hierarchies(&std::fs::read_to_string("/proc/self/mountinfo").unwrap());
        cheap.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
        full.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
        assert_eq!(cheap, full);
    }

    #[test]
    fn detects_this_host() {
        let layout = detect().unwrap();
        let unified = Path::new(CGROUP_ROOT).join("cgroup.controllers").exists();
        match layout {
            Layout::Unified { .. } => assert!(unified),
            Layout::Hybrid { v1, .. } | Layout::Legacy { v1 } => {
                assert!(!unified);
                assert!(v1.iter().any(|h| h.has("memory")), "{v1:?}");
            }
        }
    }
}
