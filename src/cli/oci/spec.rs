//! `spec` (a default bundle config.json, as runc's) and `features` (what this runtime
//! supports, in the runtime-spec features format).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{bail, Context};
use oci_spec::runtime::Spec;

use super::state::OCI_VERSION;
use super::SpecArgs;

/// runc's default: `sh` with a terminal in a read-only `rootfs`, new pid, network, ipc,
/// uts, mount and cgroup namespaces, the three default capabilities, /proc, /dev,
/// /sys... masked and read-only paths as runc masks them.
pub fn default_spec() -> anyhow::Result<serde_json::Value> {
    let mut spec = serde_json::to_value(Spec::default())?;
    spec["ociVersion"] = OCI_VERSION.into();
    spec["hostname"] = "mycontainer".into();
    let process = &mut spec["process"];
    process["terminal"] = true.into();
    let capabilities = &mut process["capabilities"];
    if let Some(sets) = capabilities.as_object_mut() {
        sets.remove("inheritable");
        sets.remove("ambient");
    }
    spec["linux"]["resources"]["devices"] = serde_json::json!([{"allow": false, "access": "rwm"}]);
    Ok(spec)
}

pub fn spec(args: &SpecArgs) -> anyhow::Result<()> {
    if args.rootless {
        bail!("--rootless is not supported: this runtime runs as root");
    }
    let path = args.bundle.join("config.json");
    let json = serde_json::to_vec_pretty(&default_spec()?)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                anyhow::anyhow!("{} exists already: remove it first", path.display())
            }
            _ => anyhow::anyhow!("cannot create {}: {e}", path.display()),
        })?;
    file.write_all(&json)
        .and_then(|()| file.write_all(b"\n"))
        .with_context(|| format!("cannot write {}", path.display()))
}

pub fn features() -> anyhow::Result<()> {
    let mut capabilities: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    capabilities.sort();
    let features = serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": [
            "prestart", "createRuntime", "createContainer", "startContainer", "poststart",
            "poststop"
        ],
        "mountOptions": [
            "ro", "rw", "bind", "rbind", "nosuid", "suid", "nodev", "dev", "noexec", "exec",
            "private", "rprivate", "shared", "rshared", "slave", "rslave",
            "relatime", "norelatime", "strictatime", "noatime", "nodiratime", "sync",
            "remount", "mode", "size", "uid", "gid", "newinstance", "ptmxmode"
        ],
        "linux": {
            "namespaces": ["mount", "pid", "network", "ipc", "uts", "cgroup", "user"],
            "capabilities": capabilities,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {
                "enabled": true,
                "actions": [
                    "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL",
                    "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
                    "SCMP_ACT_TRACE", "SCMP_ACT_LOG"
                ],
                "operators": [
                    "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ",
                    "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"
                ],
                "archs": ["SCMP_ARCH_X86_64"]
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false}
        },
        "annotations": {
            "org.opencontainers.runc.checkpoint.enabled": "false",
            "io.github.mycontainer.runtime": "mycontainer-runtime"
        }
    });
    println!("{}", serde_json::to_string_pretty(&features)?);
    Ok(())
}
