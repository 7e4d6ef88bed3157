//! linux.cgroupsPath as runc reads it, turned into one path below the hierarchy roots
//! (what the runtime's cgroups take):
//!
//! - absolute (`/default/web`, containerd's `/<namespace>/<id>`): below each root;
//! - relative (`a/b`): below the cgroup of the runtime itself, on a v2 host below its
//!   parent (runc's rule: a cgroup holding processes cannot have controllers enabled
//!   for children); on hybrid hosts below its cgroup2 cgroup, on legacy hosts below
//!   its memory cgroup. runc resolves each v1 hierarchy against the runtime's own
//!   cgroup in that hierarchy; we use one path in every hierarchy, so a container has
//!   the same cgroup everywhere;
//! - with `--systemd-cgroup`, `slice:prefix:name`: there is no systemd D-Bus here, so
//!   it maps to the path runc's systemd driver would have systemd make:
//!   `<slice, expanded>/<prefix>-<name>.scope` (`system.slice` when the slice is
//!   empty; `-.slice` is the root);
//! - empty: our own `mycontainer/rt-<id>`.

use anyhow::{bail, Context};

/// The cgroup of container `id` for the spec's `cgroups_path`, below the roots.
pub fn resolve(cgroups_path: Option<&str>, systemd: bool, id: &str) -> anyhow::Result<String> {
    let path = cgroups_path.unwrap_or("");
    if path.is_empty() {
        return Ok(format!("{}/rt-{id}", crate::runtime::cgroups::PARENT));
    }
    if systemd {
        return systemd_path(path);
    }
    let resolved = if path.starts_with('/') {
        path.to_string()
    } else {
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .context("cannot read /proc/self/cgroup to place a relative cgroupsPath")?;
        let unified = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        format!("{}/{path}", own_base(&own, unified)?)
    };
    clean(&resolved, path)
}

/// Where a relative path starts, from /proc/self/cgroup (see the module comment).
fn own_base(proc_self_cgroup: &str, unified_host: bool) -> anyhow::Result<String> {
    let mut unified = None;
    let mut memory = None;
    for line in proc_self_cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if controllers.is_empty() {
            unified = Some(path);
        } else if controllers.split(',').any(|c| c == "memory") {
            memory = Some(path);
        }
    }
    match (unified, unified_host) {
        (Some(path), true) => Ok(std::path::Path::new(path)
            .parent()
            .map_or("/".into(), |p| p.to_string_lossy().into_owned())),
        (Some(path), false) => Ok(path.to_string()),
        (None, _) => memory.map(str::to_string).context(
            "cannot place a relative cgroupsPath: the runtime's own cgroup is not in \
             /proc/self/cgroup: use an absolute cgroupsPath",
        ),
    }
}

/// `slice:prefix:name` as the path systemd would give the unit.
fn systemd_path(path: &str) -> anyhow::Result<String> {
    let parts: Vec<&str> = path.split(':').collect();
    let [slice, prefix, name] = parts[..] else {
        bail!(
            "invalid cgroupsPath {path:?} for --systemd-cgroup: expected \
             \"slice:prefix:name\" (e.g. system.slice:runc:ID)"
        );
    };
    if name.is_empty() {
        bail!("invalid cgroupsPath {path:?} for --systemd-cgroup: the name is empty");
    }
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    let unit = if name.ends_with(".slice") {
        name.to_string()
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    let resolved = format!("{}/{unit}", expand_slice(slice, path)?);
    clean(&resolved, path)
}

/// systemd's slice nesting: `a-b.slice` is `a.slice/a-b.slice`; `-.slice` is the root.
fn expand_slice(slice: &str, original: &str) -> anyhow::Result<String> {
    let invalid = || {
        anyhow::anyhow!(
            "invalid slice in cgroupsPath {original:?}: expected a name like \
             system.slice or my-app.slice"
        )
    };
    if slice == "-.slice" {
        return Ok(String::new());
    }
    let stem = slice.strip_suffix(".slice").ok_or_else(invalid)?;
    if stem.is_empty()
        || stem.contains('/')
        || stem.starts_with('-')
        || stem.ends_with('-')
        || stem.contains("--")
    {
        return Err(invalid());
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for part in stem.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push('/');
        path.push_str(&prefix);
        path.push_str(".slice");
    }
    Ok(path)
}

/// `resolved` without its leading `/`, refused when it has `.`, `..` or empty parts.
fn clean(resolved: &str, original: &str) -> anyhow::Result<String> {
    let parts: Vec<&str> = resolved.split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty()
        || parts
            .iter()
            .any(|p| *p == "." || *p == ".." || p.contains('\n'))
    {
        bail!(
            "invalid cgroupsPath {original:?}: use a path below the cgroup root without \
             `.` or `..`"
        );
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_paths_are_below_the_roots_and_empty_is_ours() {
        assert_eq!(
            resolve(Some("/default/web"), false, "web").unwrap(),
            "default/web"
        );
        assert_eq!(resolve(None, false, "x").unwrap(), "mycontainer/rt-x");
        assert_eq!(resolve(Some(""), true, "x").unwrap(), "mycontainer/rt-x");
        for bad in ["/", "/a/../b", "/a/./b"] {
            assert!(resolve(Some(bad), false, "x").is_err(), "{bad}");
        }
    }

    #[test]
    fn relative_paths_start_at_the_runtimes_own_cgroup() {
        let hybrid =
            "12:memory:/mem/own\n1:name=systemd:/user.slice/s.scope\n0::/user.slice/s.scope\n";
        assert_eq!(own_base(hybrid, false).unwrap(), "/user.slice/s.scope");
        // v2: the parent, which holds no processes
        assert_eq!(own_base("0::/a/b\n", true).unwrap(), "/a");
        assert_eq!(own_base("0::/\n", true).unwrap(), "/");
        let legacy = "4:memory:/mem/own\n3:cpu,cpuacct:/other\n";
        assert_eq!(own_base(legacy, false).unwrap(), "/mem/own");
        assert!(own_base("3:cpu:/x\n", false).is_err());
    }

    #[test]
    fn systemd_form_maps_to_the_units_path() {
        let resolve = |p| resolve(Some(p), true, "x");
        assert_eq!(
            resolve("system.slice:cri-containerd:abc").unwrap(),
            "system.slice/cri-containerd-abc.scope"
        );
        assert_eq!(
            resolve("my-app-web.slice:runc:abc").unwrap(),
            "my.slice/my-app.slice/my-app-web.slice/runc-abc.scope"
        );
        assert_eq!(resolve(":runc:abc").unwrap(), "system.slice/runc-abc.scope");
        assert_eq!(resolve("-.slice:p:abc").unwrap(), "p-abc.scope");
        for bad in [
            "/a/b",
            "a.slice:p",
            "nope:p:x",
            "a--b.slice:p:x",
            "a.slice:p:",
        ] {
            assert!(resolve(bad).is_err(), "{bad}");
        }
    }
}
