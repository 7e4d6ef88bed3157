//! `inspect`: a container as Docker-shaped JSON, from its state.json and config.json.

use oci_spec::runtime::Spec;
use serde_json::{json, Value};

use super::spec::{
    ANNOTATION_CAP_ADD, ANNOTATION_CAP_DROP, ANNOTATION_LABELS, ANNOTATION_NETWORK_MODE,
    ANNOTATION_PRIVILEGED, ANNOTATION_USER,
};
use super::state::{State, Status};
use super::Record;

/// Docker's zero time, for times that did not happen yet.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn time(secs: Option<u64>) -> String {
    secs.map_or_else(|| ZERO_TIME.to_string(), |s| crate::timefmt::rfc3339(s, 0))
}

fn status_word(state: &State) -> &'static str {
    match state.status {
        Status::Created => "created",
        Status::Running => "running",
        Status::Exited => "exited",
    }
}

/// The container's labels (an annotation holding a JSON object).
pub fn labels(annotation: Option<String>) -> Value {
    annotation
        .and_then(|a| serde_json::from_str(&a).ok())
        .unwrap_or_else(|| json!({}))
}

/// The labels of the container whose config.json is in `record`.
pub fn labels_of(record: &Record) -> std::collections::BTreeMap<String, String> {
    Spec::load(record.config_path())
        .ok()
        .and_then(|s| s.annotations().as_ref()?.get(ANNOTATION_LABELS).cloned())
        .and_then(|a| serde_json::from_str(&a).ok())
        .unwrap_or_default()
}

/// The volume whose `_data` is `source`, under the state root `root`.
fn volume_name(root: &std::path::Path, source: &std::path::Path) -> Option<String> {
    let rest = source
        .strip_prefix(super::volumes::volumes_dir(root))
        .ok()?;
    let mut parts = rest.components();
    let name = parts.next()?.as_os_str().to_str()?.to_string();
    (parts.next()?.as_os_str() == "_data" && parts.next().is_none()).then_some(name)
}

/// The JSON object for one container.
pub fn inspect(record: &Record, state: &State) -> Value {
    let spec = Spec::load(record.config_path()).ok();
    let annotation =
        |key: &str| -> Option<String> { spec.as_ref()?.annotations().as_ref()?.get(key).cloned() };
    let list = |key: &str| -> Vec<String> {
        annotation(key)
            .map(|v| v.split(',').map(str::to_string).collect())
            .unwrap_or_default()
    };
    let process = spec.as_ref().and_then(|s| s.process().as_ref());
    let args = process
        .and_then(|p| p.args().clone())
        .unwrap_or_else(|| state.command.clone());
    let env = process.and_then(|p| p.env().clone()).unwrap_or_default();
    let cwd = process
        .map(|p| p.cwd().display().to_string())
        .unwrap_or_default();
    let user = annotation(ANNOTATION_USER).unwrap_or_default();
    let hostname = spec
        .as_ref()
        .and_then(|s| s.hostname().clone())
        .unwrap_or_default();
    let mounts: Vec<Value> = spec
        .as_ref()
        .and_then(|s| s.mounts().clone())
        .unwrap_or_default()
        .iter()
        .filter(|m| m.typ().as_deref() == Some("bind"))
        .filter_map(|m| {
            let source = m.source().as_ref()?;
            // Our own files (hosts, resolv.conf, hostname) are not the user's mounts.
            if source.starts_with(&record.dir) || source.starts_with(record.run_dir()) {
                return None;
            }
            let options = m.options().clone().unwrap_or_default();
            let rw = !options.iter().any(|o| o == "ro");
            // A volume's directory: shown as the volume, as Docker does.
            let root = record.dir.parent().and_then(|d| d.parent());
            if let Some(name) = root.and_then(|r| volume_name(r, source)) {
                return Some(json!({
                    "Type": "volume",
                    "Name": name,
                    "Source": source,
                    "Destination": m.destination(),
                    "Driver": "local",
                    "Mode": if rw { "z" } else { "ro" },
                    "RW": rw,
                }));
            }
            Some(json!({
                "Type": "bind",
                "Source": source,
                "Destination": m.destination(),
                "Mode": if rw { "" } else { "ro" },
                "RW": rw,
            }))
        })
        .collect();
    let resources = spec
        .as_ref()
        .and_then(|s| s.linux().as_ref())
        .and_then(|l| l.resources().clone());
    let memory = resources
        .as_ref()
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.limit())
        .unwrap_or(0);
    let cpu = resources.as_ref().and_then(|r| r.cpu().clone());
    let nano_cpus = cpu
        .as_ref()
        .and_then(|c| Some((c.quota()?, c.period()?)))
        .filter(|(quota, period)| *quota > 0 && *period > 0)
        .map_or(0, |(quota, period)| {
            (quota as u128 * 1_000_000_000 / period as u128) as i64
        });
    let shares = cpu.as_ref().and_then(|c| c.shares()).unwrap_or(0);
    let cpuset = cpu
        .as_ref()
        .and_then(|c| c.cpus().clone())
        .unwrap_or_default();
    let pids_limit = resources
        .as_ref()
        .and_then(|r| r.pids().as_ref())
        .map(|p| p.limit());
    let readonly = spec
        .as_ref()
        .and_then(|s| s.root().as_ref())
        .and_then(|r| r.readonly())
        .unwrap_or(false);
    let running = state.status == Status::Running;
    let paused = super::pause::is_paused(record, state);
    let restarting = state.restarting && record.is_supervised();
    let network_mode = annotation(ANNOTATION_NETWORK_MODE).unwrap_or_default();
    let exposed = list(super::network::ANNOTATION_EXPOSED);
    let network_settings = record
        .dir
        .parent()
        .and_then(std::path::Path::parent)
        .map(|root| super::network::settings(root, &state.id, &network_mode, &exposed))
        .unwrap_or(Value::Null);
    // Docker's shapes: PortBindings keyed "80/tcp", HostIp "" for every address and
    // HostPort "" for a free one; ExtraHosts null when there are none; ExposedPorts
    // left out when there are none.
    let mut port_bindings = serde_json::Map::new();
    for p in super::network::ports::wanted(spec.as_ref().and_then(|s| s.annotations().as_ref())) {
        let binding = json!({
            "HostIp": if p.host_ip.is_unspecified() { String::new() } else { p.host_ip.to_string() },
            "HostPort": p.host_port_text(),
        });
        if let Some(list) = port_bindings
            .entry(p.key())
            .or_insert_with(|| json!([]))
            .as_array_mut()
        {
            list.push(binding);
        }
    }
    let extra_hosts: Vec<String> = list(super::network::ANNOTATION_EXTRA_HOSTS)
        .iter()
        .map(|pair| pair.replacen('=', ":", 1))
        .collect();
    let exposed_ports: serde_json::Map<String, Value> =
        exposed.iter().map(|k| (k.clone(), json!({}))).collect();
    let mut out = json!({
        "Id": state.id,
        "Created": time(Some(state.created_at)),
        "Path": args.first().cloned().unwrap_or_default(),
        "Args": args.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": if paused {
                "paused"
            } else if restarting {
                "restarting"
            } else {
                status_word(state)
            },
            "Running": running,
            "Paused": paused,
            "Restarting": restarting,
            "Pid": if running { state.pid.unwrap_or(0) } else { 0 },
            "ExitCode": state.exit_code.unwrap_or(0),
            "OOMKilled": state.oom_killed,
            "Error": state.error.clone().unwrap_or_default(),
            "Health": state.healthcheck.as_ref().map(|_| {
                let health = super::health::Health::load(&record.dir);
                json!({
                    "Status": health.as_ref().map_or("starting", |h| h.status.as_str()),
                    "FailingStreak": health.as_ref().map_or(0, |h| h.failing_streak),
                    "Log": health.as_ref().map_or(Vec::new(), |h| h.log.iter().map(|p| json!({
                        "Start": p.start,
                        "End": p.end,
                        "ExitCode": p.exit_code,
                        "Output": p.output,
                    })).collect()),
                })
            }),
            "StartedAt": time(state.started_at),
            "FinishedAt": time(state.finished_at),
        },
        "Image": state.image_id.clone().unwrap_or_else(|| state.image.clone()),
        "Name": format!("/{}", state.name.clone().unwrap_or_default()),
        "LogPath": record.log_path(),
        "RestartCount": state.restart_count,
        "Config": {
            "Healthcheck": state.healthcheck.as_ref().map(|h| json!({
                "Test": std::iter::once("CMD").chain(h.command.iter().map(String::as_str)).collect::<Vec<_>>(),
                "Interval": h.interval_ms * 1_000_000,
                "Timeout": h.timeout_ms * 1_000_000,
                "StartPeriod": h.start_period_ms * 1_000_000,
                "Retries": h.retries,
            })),
            "Hostname": hostname,
            "User": user,
            "Env": env,
            "Cmd": args,
            "Image": state.image,
            "WorkingDir": cwd,
            "StopSignal": super::signals::signal_name(state.stop_signal),
            "Labels": labels(annotation(ANNOTATION_LABELS)),
            "ExposedPorts": exposed_ports,
        },
        "Mounts": mounts,
        "NetworkSettings": network_settings,
        "HostConfig": {
            "NetworkMode": network_mode,
            "PortBindings": port_bindings,
            "Dns": list(super::network::ANNOTATION_DNS),
            "ExtraHosts": (!extra_hosts.is_empty()).then_some(extra_hosts),
            "Memory": memory,
            "NanoCpus": nano_cpus,
            "CpuShares": shares,
            "PidsLimit": pids_limit,
            "CpusetCpus": cpuset,
            "Privileged": annotation(ANNOTATION_PRIVILEGED).is_some(),
            "ReadonlyRootfs": readonly,
            "CapAdd": list(ANNOTATION_CAP_ADD),
            "CapDrop": list(ANNOTATION_CAP_DROP),
            "AutoRemove": state.auto_remove,
            "RestartPolicy": {
                "Name": state.restart_policy.name(),
                "MaximumRetryCount": state.restart_policy.max_retries(),
            },
        },
    });
    if let Some(config) = out["Config"].as_object_mut() {
        if exposed.is_empty() {
            config.remove("ExposedPorts");
        }
    }
    out
}
