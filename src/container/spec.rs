//! Builds the OCI runtime-spec `config.json` of a container from the image config and the
//! `run` flags, as Docker does. This is the contract with `src/runtime/`: everything the
//! runtime needs is in the spec (the overlay of the image layers is its first mount, on "/").

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    Mount, MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use super::limits::LimitFlags;
use super::policy;
use super::policy::devices::{self, Device};
use super::user;
use crate::runtime::ANNOTATION_INIT;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's masked paths: hidden behind /dev/null (files) or an empty read-only tmpfs.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Network modes available before bridge networking lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// A new network namespace with only `lo`, brought up.
    #[default]
    None,
    /// The host's network namespace.
    Host,
}

/// The image config fields that `run` applies (Docker's semantics).
#[derive(Debug, Default, Clone)]
pub struct ImageDefaults {
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

impl ImageDefaults {
    pub fn from_image_config(config: &oci_spec::image::ImageConfiguration) -> ImageDefaults {
        let Some(c) = config.config() else {
            return ImageDefaults::default();
        };
        ImageDefaults {
            env: c.env().clone().unwrap_or_default(),
            entrypoint: c.entrypoint().clone().unwrap_or_default(),
            cmd: c.cmd().clone().unwrap_or_default(),
            working_dir: c.working_dir().clone().filter(|w| !w.is_empty()),
            user: c.user().clone().filter(|u| !u.is_empty()),
        }
    }
}

/// The container's root as the spec's first mount: an overlay on "/" of the image layers
/// under the container's upper dir. The runtime mounts it on `root.path` inside the
/// container's mount namespace, so the host never sees it. `volatile` skips the syncs
/// overlayfs would do on unmount: a container's writes need not survive a host crash,
/// and the sync of the upper filesystem is the slowest part of a short run.
fn overlay_root(layers: &RootLayers) -> anyhow::Result<Mount> {
    let path = |d: &PathBuf| -> anyhow::Result<String> {
        let s = d
            .to_str()
            .with_context(|| format!("layer path {} is not UTF-8", d.display()))?;
        if s.contains([':', ',']) {
            bail!("layer path {s} contains ':' or ',', which overlayfs cannot take: use another --root");
        }
        Ok(s.to_string())
    };
    let lower = layers
        .lowerdirs
        .iter()
        .map(path)
        .collect::<anyhow::Result<Vec<_>>>()?;
    if lower.is_empty() {
        bail!("the image has no layers");
    }
    Ok(MountBuilder::default()
        .destination("/")
        .typ("overlay")
        .source("overlay")
        .options(vec![
            format!("lowerdir={}", lower.join(":")),
            format!("upperdir={}", path(&layers.upperdir)?),
            format!("workdir={}", path(&layers.workdir)?),
            "volatile".to_string(),
        ])
        .build()?)
}

/// `-v HOSTDIR:CTRDIR[:ro]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub host: PathBuf,
    pub container: PathBuf,
    pub read_only: bool,
}

impl Volume {
    pub fn parse(value: &str) -> anyhow::Result<Volume> {
        let parts: Vec<&str> = value.split(':').collect();
        let (host, container, mode) = match parts.as_slice() {
            [h, c] => (*h, *c, ""),
            [h, c, m] => (*h, *c, *m),
            _ => bail!("invalid value {value:?} for -v: use HOSTDIR:CTRDIR or HOSTDIR:CTRDIR:ro"),
        };
        let read_only = match mode {
            "" | "rw" => false,
            "ro" => true,
            _ => bail!("invalid mode {mode:?} in -v {value:?}: use ro or rw"),
        };
        if !container.starts_with('/') || container == "/" {
            bail!("invalid value {value:?} for -v: the container path must be absolute and not /");
        }
        let host = fs::canonicalize(host).with_context(|| {
            format!("invalid value {value:?} for -v: host path {host:?} does not exist")
        })?;
        Ok(Volume {
            host,
            container: PathBuf::from(container),
            read_only,
        })
    }
}

/// Everything `run` was asked for, validated (the CLI only parses).
#[derive(Debug, Default, Clone)]
pub struct RunOptions {
    pub name: Option<String>,
    pub command: Vec<String>,
    pub entrypoint: Option<String>,
    pub env: Vec<String>,
    pub env_files: Vec<PathBuf>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub volumes: Vec<Volume>,
    pub network: Network,
    pub tty: bool,
    pub init: bool,
    pub limits: LimitFlags,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    /// `--device`, resolved against the host's nodes.
    pub devices: Vec<Device>,
    pub security_opts: Vec<String>,
    pub read_only: bool,
    pub tmpfs: Vec<String>,
}

/// Where the container's root comes from: image layers (nearest first) under a
/// per-container upper dir.
#[derive(Debug, Clone)]
pub struct RootLayers {
    pub lowerdirs: Vec<PathBuf>,
    pub upperdir: PathBuf,
    pub workdir: PathBuf,
}

/// Files written into the container dir and bind-mounted over /etc/{hostname,hosts,resolv.conf}.
fn write_etc_files(dir: &Path, hostname: &str, network: Network) -> anyhow::Result<Vec<Mount>> {
    let hosts = match network {
        Network::Host => fs::read_to_string("/etc/hosts").unwrap_or_default(),
        Network::None => format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
        ),
    };
    let resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let files = [
        ("hostname", format!("{hostname}\n")),
        ("hosts", hosts),
        ("resolv.conf", resolv),
    ];
    let mut mounts = Vec::new();
    for (name, content) in files {
        let path = dir.join(name);
        fs::write(&path, content).with_context(|| format!("cannot write {}", path.display()))?;
        mounts.push(bind_mount(
            &path,
            Path::new("/etc").join(name).as_path(),
            false,
        )?);
    }
    Ok(mounts)
}

fn bind_mount(source: &Path, destination: &Path, read_only: bool) -> anyhow::Result<Mount> {
    let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
    if read_only {
        options.push("ro".into());
    }
    Ok(MountBuilder::default()
        .destination(destination)
        .typ("bind")
        .source(source)
        .options(options)
        .build()?)
}

fn mount(destination: &str, typ: &str, options: &[&str]) -> anyhow::Result<Mount> {
    Ok(MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(typ)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()?)
}

/// The runc/Docker default mounts: /proc, /dev (tmpfs), /dev/pts, /dev/shm, /dev/mqueue,
/// /sys and the container's cgroups at /sys/fs/cgroup (read-only).
fn default_mounts() -> anyhow::Result<Vec<Mount>> {
    Ok(vec![
        mount("/proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount("/dev/mqueue", "mqueue", &["nosuid", "noexec", "nodev"])?,
        mount("/sys", "sysfs", &["nosuid", "noexec", "nodev", "ro"])?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        )?,
    ])
}

/// Docker's env merge: image env, then `--env-file` lines, then `-e` (later wins by key).
/// `-e KEY` without a value takes the caller's value, or is dropped when unset.
fn merge_env(image: &[String], opts: &RunOptions, hostname: &str) -> anyhow::Result<Vec<String>> {
    let mut order: Vec<String> = Vec::new();
    let mut values: HashMap<String, String> = HashMap::new();
    let mut set = |entry: &str, origin: &str| -> anyhow::Result<()> {
        let (key, value) = match entry.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (entry.to_string(), std::env::var(entry).ok()),
        };
        if key.is_empty() || key.contains(char::is_whitespace) {
            bail!("invalid environment variable {entry:?} in {origin}: use KEY=VALUE");
        }
        if let Some(value) = value {
            if !values.contains_key(&key) {
                order.push(key.clone());
            }
            values.insert(key, value);
        }
        Ok(())
    };
    set(&format!("PATH={DEFAULT_PATH}"), "the defaults")?;
    set(&format!("HOSTNAME={hostname}"), "the defaults")?;
    if opts.tty {
        set("TERM=xterm", "the defaults")?;
    }
    for entry in image {
        set(entry, "the image config")?;
    }
    for file in &opts.env_files {
        let text = fs::read_to_string(file)
            .with_context(|| format!("cannot read --env-file {}", file.display()))?;
        for line in text.lines().map(str::trim) {
            if !line.is_empty() && !line.starts_with('#') {
                set(line, &format!("--env-file {}", file.display()))?;
            }
        }
    }
    for entry in &opts.env {
        set(entry, "-e")?;
    }
    Ok(order
        .into_iter()
        .map(|key| {
            let value = &values[&key];
            format!("{key}={value}")
        })
        .collect())
}

fn parse_capability(name: &str, flag: &str) -> anyhow::Result<Capability> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    serde_json::from_value(serde_json::Value::String(full.clone()))
        .with_context(|| format!("invalid value {name:?} for {flag}: unknown capability {full}"))
}

fn all_capabilities() -> HashSet<Capability> {
    // The kernel's capabilities, by number, as the caps crate knows them.
    caps::all()
        .into_iter()
        .filter_map(|c| serde_json::from_value(serde_json::Value::String(c.to_string())).ok())
        .collect()
}

/// The supplementary groups to set: the primary group first, then the groups listing
/// the user, so `id` shows what it shows under Docker and a dropped primary group cannot
/// linger from the parent.
fn groups_with_primary(user: &user::ResolvedUser) -> Vec<u32> {
    let mut groups = vec![user.gid];
    groups.extend(user.additional_gids.iter().filter(|g| **g != user.gid));
    groups
}

/// Docker's capability rules: the default set, `--cap-drop` (ALL too), `--cap-add` (ALL
/// too), everything for `--privileged`; a non-root user keeps only the bounding set.
fn capabilities(
    opts: &RunOptions,
    uid: u32,
) -> anyhow::Result<oci_spec::runtime::LinuxCapabilities> {
    let mut set: HashSet<Capability> = if opts.privileged {
        all_capabilities()
    } else {
        policy::DEFAULT_CAPS
            .iter()
            .map(|name| parse_capability(name, "the default set"))
            .collect::<anyhow::Result<_>>()?
    };
    for drop in &opts.cap_drop {
        if drop.eq_ignore_ascii_case("all") {
            set.clear();
        } else {
            set.remove(&parse_capability(drop, "--cap-drop")?);
        }
    }
    for add in &opts.cap_add {
        if add.eq_ignore_ascii_case("all") {
            set = all_capabilities();
        } else {
            set.insert(parse_capability(add, "--cap-add")?);
        }
    }
    let for_user = if uid == 0 {
        set.clone()
    } else {
        HashSet::new()
    };
    Ok(LinuxCapabilitiesBuilder::default()
        .bounding(set)
        .effective(for_user.clone())
        .permitted(for_user.clone())
        .inheritable(for_user)
        .ambient(HashSet::new())
        .build()?)
}

/// `--security-opt` values: `no-new-privileges[:true]`, `seccomp=unconfined|PROFILE.json`.
struct SecurityOpts {
    no_new_privileges: bool,
    seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
}

/// `bounding` is the container's bounding set: Docker's profile allows some syscalls
/// only with a capability (mount with SYS_ADMIN, say), so it is evaluated for that set.
fn security_opts(opts: &RunOptions, bounding: &[String]) -> anyhow::Result<SecurityOpts> {
    let mut no_new_privileges = false;
    let mut seccomp = if opts.privileged {
        None
    } else {
        Some(policy::default_seccomp_for_caps(bounding)?)
    };
    for opt in &opts.security_opts {
        let (key, value) = opt
            .split_once(['=', ':'])
            .map(|(k, v)| (k, Some(v)))
            .unwrap_or((opt.as_str(), None));
        match (key, value) {
            ("no-new-privileges", None | Some("true")) => no_new_privileges = true,
            ("no-new-privileges", Some("false")) => no_new_privileges = false,
            ("seccomp", Some("unconfined")) => seccomp = None,
            ("seccomp", Some(path)) => {
                let json = fs::read_to_string(path)
                    .with_context(|| format!("cannot read seccomp profile {path} (--security-opt)"))?;
                seccomp = Some(policy::seccomp_from_docker_profile_for_caps(&json, bounding).with_context(|| {
                    format!("invalid seccomp profile {path} (--security-opt)")
                })?);
            }
            _ => bail!("unsupported --security-opt {opt:?}: use no-new-privileges, seccomp=unconfined or seccomp=PROFILE.json"),
        }
    }
    Ok(SecurityOpts {
        no_new_privileges,
        seccomp,
    })
}

fn tmpfs_mount(value: &str) -> anyhow::Result<Mount> {
    let (path, extra) = value.split_once(':').unwrap_or((value, ""));
    if !path.starts_with('/') || path == "/" {
        bail!("invalid value {value:?} for --tmpfs: use an absolute container path, optionally with :OPTIONS");
    }
    let mut options: Vec<String> = vec!["nosuid".into(), "nodev".into(), "noexec".into()];
    options.extend(extra.split(',').filter(|o| !o.is_empty()).map(String::from));
    Ok(MountBuilder::default()
        .destination(path)
        .typ("tmpfs")
        .source("tmpfs")
        .options(options)
        .build()?)
}

/// Everything the container layer hands to the runtime.
/// `--cap-add` as given (comma-separated), for `inspect`.
pub const ANNOTATION_CAP_ADD: &str = "org.mycontainer.cap-add";
/// `--cap-drop` as given (comma-separated), for `inspect`.
pub const ANNOTATION_CAP_DROP: &str = "org.mycontainer.cap-drop";
/// "true" for `--privileged`, for `inspect`.
pub const ANNOTATION_PRIVILEGED: &str = "org.mycontainer.privileged";
/// `-u` as given, for `inspect`.
pub const ANNOTATION_USER: &str = "org.mycontainer.user";

#[derive(Debug)]
pub struct Built {
    pub spec: Spec,
    /// The resolved command, for the state file and messages.
    pub args: Vec<String>,
}

/// Builds the spec for a container whose record directory is `dir`; `-u NAME` is looked
/// up in the image's layers (`layers.lowerdirs`).
pub fn build(
    id: &str,
    dir: &Path,
    image: &ImageDefaults,
    opts: &RunOptions,
    layers: &RootLayers,
) -> anyhow::Result<Built> {
    let hostname = opts
        .hostname
        .clone()
        .unwrap_or_else(|| id[..12].to_string());
    let mut args: Vec<String> = match &opts.entrypoint {
        Some(entrypoint) if entrypoint.is_empty() => Vec::new(),
        Some(entrypoint) => vec![entrypoint.clone()],
        None => image.entrypoint.clone(),
    };
    if !opts.command.is_empty() {
        args.extend(opts.command.iter().cloned());
    } else if opts.entrypoint.is_none() {
        args.extend(image.cmd.iter().cloned());
    }
    if args.is_empty() {
        bail!("no command given and the image has no Cmd or Entrypoint: add a command after the image name");
    }

    let cwd = opts
        .workdir
        .clone()
        .or_else(|| image.working_dir.clone())
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        bail!("invalid working directory {cwd:?}: it must be an absolute path (-w)");
    }

    let user_spec = opts
        .user
        .clone()
        .or_else(|| image.user.clone())
        .unwrap_or_default();
    let resolved = user::resolve_in_layers(&layers.lowerdirs, &user_spec)
        .with_context(|| format!("cannot resolve user {user_spec:?} (-u) in the image"))?;
    let mut env = merge_env(&image.env, opts, &hostname)?;
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        let home = resolved.home.clone().unwrap_or_else(|| {
            if resolved.uid == 0 {
                "/root".into()
            } else {
                "/".into()
            }
        });
        env.push(format!("HOME={home}"));
    }

    let caps = capabilities(opts, resolved.uid)?;
    let bounding: Vec<String> = caps
        .bounding()
        .iter()
        .flatten()
        .filter_map(|c| serde_json::to_value(c).ok()?.as_str().map(String::from))
        .collect();
    let security = security_opts(opts, &bounding)?;
    let process = ProcessBuilder::default()
        .terminal(opts.tty)
        .user(
            UserBuilder::default()
                .uid(resolved.uid)
                .gid(resolved.gid)
                .additional_gids(groups_with_primary(&resolved))
                .build()?,
        )
        .args(args.clone())
        .env(env)
        .cwd(cwd)
        .capabilities(caps)
        .no_new_privileges(security.no_new_privileges)
        .build()?;

    let mut mounts = default_mounts()?;
    mounts.extend(write_etc_files(dir, &hostname, opts.network)?);
    for volume in &opts.volumes {
        mounts.push(bind_mount(
            &volume.host,
            &volume.container,
            volume.read_only,
        )?);
    }
    for tmpfs in &opts.tmpfs {
        mounts.push(tmpfs_mount(tmpfs)?);
    }

    let mut namespaces = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Cgroup,
    ];
    if opts.network == Network::None {
        namespaces.push(LinuxNamespaceType::Network);
    }
    let namespaces = namespaces
        .into_iter()
        .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build())
        .collect::<Result<Vec<_>, _>>()?;

    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(PathBuf::from(super::cgroup_name(id)))
        .masked_paths(if opts.privileged {
            vec![]
        } else {
            MASKED_PATHS.iter().map(|p| p.to_string()).collect()
        })
        .readonly_paths(if opts.privileged {
            vec![]
        } else {
            READONLY_PATHS.iter().map(|p| p.to_string()).collect()
        });
    // Docker's device policy: which nodes the container may use, and its --device nodes.
    let (device_nodes, device_rules) = devices::config(opts.privileged, &opts.devices)?;
    let mut resources = opts.limits.to_resources()?.unwrap_or_default();
    resources.set_devices(Some(device_rules));
    linux = linux.resources(resources);
    if !device_nodes.is_empty() {
        linux = linux.devices(device_nodes);
    }
    if let Some(seccomp) = security.seccomp {
        linux = linux.seccomp(seccomp);
    }

    let mut annotations = HashMap::new();
    if opts.init {
        annotations.insert(ANNOTATION_INIT.to_string(), "true".into());
    }
    // The flags `inspect` shows that the spec only holds in resolved form.
    if !opts.cap_add.is_empty() {
        annotations.insert(ANNOTATION_CAP_ADD.to_string(), opts.cap_add.join(","));
    }
    if !opts.cap_drop.is_empty() {
        annotations.insert(ANNOTATION_CAP_DROP.to_string(), opts.cap_drop.join(","));
    }
    if opts.privileged {
        annotations.insert(ANNOTATION_PRIVILEGED.to_string(), "true".into());
    }
    if let Some(user) = &opts.user {
        annotations.insert(ANNOTATION_USER.to_string(), user.clone());
    }
    mounts.insert(0, overlay_root(layers)?);

    let spec = SpecBuilder::default()
        .version("1.2.0")
        .root(
            RootBuilder::default()
                .path(super::MERGED_DIR)
                .readonly(opts.read_only)
                .build()?,
        )
        .hostname(hostname)
        .process(process)
        .mounts(mounts)
        .linux(linux.build()?)
        .annotations(annotations)
        .build()?;
    Ok(Built { spec, args })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build_with(image: &ImageDefaults, opts: &RunOptions) -> anyhow::Result<Built> {
        let dir = tempfile::tempdir().unwrap();
        let layers = RootLayers {
            lowerdirs: vec![dir.path().join("l")],
            upperdir: dir.path().join("u"),
            workdir: dir.path().join("w"),
        };
        build(&"a".repeat(64), dir.path(), image, opts, &layers)
    }

    #[test]
    fn command_follows_docker_entrypoint_and_cmd_rules() {
        let image = ImageDefaults {
            entrypoint: vec!["/ep".into()],
            cmd: vec!["default".into()],
            ..Default::default()
        };
        let args = |opts: RunOptions| build_with(&image, &opts).unwrap().args;
        assert_eq!(args(RunOptions::default()), ["/ep", "default"]);
        assert_eq!(
            args(RunOptions {
                command: vec!["x".into()],
                ..Default::default()
            }),
            ["/ep", "x"]
        );
        assert_eq!(
            args(RunOptions {
                entrypoint: Some("sh".into()),
                ..Default::default()
            }),
            ["sh"]
        );
        let none = build_with(&ImageDefaults::default(), &RunOptions::default());
        assert!(none.is_err());
    }

    #[test]
    fn env_merges_image_file_and_flags_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("env");
        fs::write(&file, "# comment\nB=file\nC=file\n").unwrap();
        let image = ImageDefaults {
            env: vec!["A=image".into(), "B=image".into(), "PATH=/bin".into()],
            cmd: vec!["sh".into()],
            ..Default::default()
        };
        let opts = RunOptions {
            env: vec!["C=flag".into()],
            env_files: vec![file],
            hostname: Some("box".into()),
            ..Default::default()
        };
        let built = build_with(&image, &opts).unwrap();
        let env = built
            .spec
            .process()
            .as_ref()
            .unwrap()
            .env()
            .clone()
            .unwrap();
        for expected in [
            "PATH=/bin",
            "HOSTNAME=box",
            "A=image",
            "B=file",
            "C=flag",
            // No /etc/passwd in this image: HOME is "/", as Docker and runc give.
            "HOME=/",
        ] {
            assert!(
                env.contains(&expected.to_string()),
                "{expected} missing in {env:?}"
            );
        }
    }

    #[test]
    fn default_capabilities_are_dockers_and_drop_all_empties_them() {
        let image = ImageDefaults {
            cmd: vec!["sh".into()],
            ..Default::default()
        };
        let built = build_with(&image, &RunOptions::default()).unwrap();
        let caps = built
            .spec
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .clone()
            .unwrap();
        assert_eq!(
            caps.effective().as_ref().unwrap().len(),
            policy::DEFAULT_CAPS.len()
        );
        let opts = RunOptions {
            cap_drop: vec!["ALL".into()],
            cap_add: vec!["net_admin".into()],
            ..Default::default()
        };
        let built = build_with(&image, &opts).unwrap();
        let caps = built
            .spec
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .clone()
            .unwrap();
        assert_eq!(caps.bounding().as_ref().unwrap().len(), 1);
        let bad = RunOptions {
            cap_add: vec!["NOPE".into()],
            ..Default::default()
        };
        assert!(build_with(&image, &bad)
            .unwrap_err()
            .to_string()
            .contains("--cap-add"));
    }

    #[test]
    fn volumes_need_an_existing_host_path_and_absolute_target() {
        assert!(Volume::parse("/tmp:/data:ro").unwrap().read_only);
        assert!(Volume::parse("/tmp:data").is_err());
        assert!(Volume::parse("/does/not/exist:/data").is_err());
        assert!(Volume::parse("/tmp:/data:rx").is_err());
    }
}
