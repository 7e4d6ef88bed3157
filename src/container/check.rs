//! `system check`, the container half: every record against reality (its process, its
//! cgroup, mounts left under its directory, half-written state files), after the
//! store's own check, then the networks (`network/check.rs`). With `repair`, what a
//! dead container left behind is removed.

use std::fs;
use std::path::Path;

use anyhow::Context;
use mycontainer_store::{Finding, Store};

use super::paths::{cgroup_name, containers_dir};
use super::record::list_ids;
use super::state::{State, Status};
use crate::runtime::cgroups::Cgroup;

/// Checks the store and the container records under `root`; one finding per problem.
pub fn check(root: &Path, repair: bool) -> anyhow::Result<Vec<Finding>> {
    let store = Store::open(root)?;
    let mut findings = store.check(repair)?;
    check_containers(root, repair, &mut findings)?;
    // A container runs while someone (its CLI or supervisor) holds its record's lock.
    let alive = |id: &str| {
        let dir = containers_dir(root).join(id);
        dir.is_dir() && matches!(super::record::lock_listed(&dir), Ok(None))
    };
    super::network::check::check(root, repair, &alive, &mut findings)?;
    Ok(findings)
}

fn check_containers(root: &Path, repair: bool, findings: &mut Vec<Finding>) -> anyhow::Result<()> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for id in list_ids(root)? {
        let dir = containers_dir(root).join(&id);
        let short = &id[..12];
        let leftover_tmp = dir.join("state.json.tmp");
        if leftover_tmp.exists() {
            let mut finding = problem(format!(
                "container {short}: a half-written {} (a full disk or a killed write)",
                leftover_tmp.display()
            ));
            if repair {
                fs::remove_file(&leftover_tmp)
                    .with_context(|| format!("cannot remove {}", leftover_tmp.display()))?;
                finding.repair = Some("removed it".into());
            }
            findings.push(finding);
        }
        let Ok(state) = State::load(&dir.join("state.json")) else {
            continue;
        };
        match state.status {
            Status::Running => {
                let alive = state
                    .pid
                    .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
                if !alive {
                    findings.push(problem(format!(
                        "container {short}: recorded as running but process {} is gone; `mycontainer gc` finishes its cleanup once its supervisor exits",
                        state.pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into())
                    )));
                }
            }
            Status::Exited | Status::Created => {
                if state.status == Status::Exited {
                    if let Ok(cgroup) = Cgroup::open(&cgroup_name(root, &id)) {
                        if cgroup.paths().iter().any(|p| p.exists()) {
                            let mut finding = problem(format!(
                                "container {short}: exited but its cgroup remains"
                            ));
                            if repair {
                                cgroup.destroy().with_context(|| {
                                    format!("cannot remove the cgroup of container {short}")
                                })?;
                                finding.repair = Some("removed it".into());
                            }
                            findings.push(finding);
                        }
                    }
                }
                let prefix = format!(" {}/", dir.display());
                for mount_point in mountinfo
                    .lines()
                    .filter_map(|l| l.split(' ').nth(4))
                    .filter(|m| format!(" {m}").starts_with(&prefix))
                {
                    let mut finding = problem(format!(
                        "container {short}: not running but {mount_point} is still mounted"
                    ));
                    if repair {
                        nix::mount::umount2(mount_point, nix::mount::MntFlags::MNT_DETACH)
                            .with_context(|| format!("cannot unmount {mount_point}"))?;
                        finding.repair = Some("unmounted it".into());
                    }
                    findings.push(finding);
                }
            }
        }
    }
    Ok(())
}

fn problem(problem: String) -> Finding {
    Finding {
        problem,
        repair: None,
    }
}
