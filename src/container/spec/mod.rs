//! Builds the OCI runtime-spec `config.json` of a container from the image config and the
//! `run` flags, as Docker does. This is the contract with `src/runtime/`: everything the
//! runtime needs is in the spec (the overlay of the image layers is its first mount, on "/").
//!
//! `process.rs` builds the process, `mounts.rs` the mounts, `linux.rs` the `linux`
//! section; [`build`] composes them.

mod linux;
mod mountflag;
mod mounts;
mod process;
mod ulimit;

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use mycontainer_store::RootMount;
use oci_spec::runtime::{RootBuilder, Spec, SpecBuilder};

use super::limits::Limits;
use super::policy::devices::Device;
use crate::runtime::ANNOTATION_INIT;

pub use mountflag::{parse_mount, MountFlag};
pub use mounts::ETC_FILES;
pub use process::entrypoint;
pub use ulimit::parse_ulimit;

/// `--network`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Network {
    /// A new network namespace with only `lo`, brought up.
    #[default]
    None,
    /// The host's network namespace.
    Host,
    /// A bridge network, by name (`bridge` is the default one): a namespace made at each
    /// start and bind-mounted at [`RunOptions::netns_path`].
    Bridge(String),
    /// `container:NAME|ID`: another running container's namespace, at
    /// [`RunOptions::netns_path`] (resolved by `run`); the value is the container's id.
    Container(String),
}

impl Network {
    /// `--network` as Docker spells it: `bridge` (the default network), `none`, `host`,
    /// `container:NAME|ID`, or a network's name.
    pub fn parse(value: &str) -> anyhow::Result<Network> {
        Ok(match value {
            "none" => Network::None,
            "host" => Network::Host,
            "" | "default" => Network::Bridge("bridge".into()),
            other => match other.strip_prefix("container:") {
                Some("") => {
                    bail!("invalid --network container: name the container, as container:NAME")
                }
                Some(target) => Network::Container(target.to_string()),
                None => Network::Bridge(other.to_string()),
            },
        })
    }

    /// How `inspect` and Docker name it (`HostConfig.NetworkMode`).
    pub fn mode_name(&self) -> String {
        match self {
            Network::None => "none".into(),
            Network::Host => "host".into(),
            Network::Bridge(name) => name.clone(),
            Network::Container(id) => format!("container:{id}"),
        }
    }
}

/// The image config fields that `run` applies (Docker's semantics).
#[derive(Debug, Default, Clone)]
pub struct ImageDefaults {
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    /// STOPSIGNAL: what `stop` sends first.
    pub stop_signal: Option<String>,
    /// The image's `VOLUME` paths: each gets an anonymous volume.
    pub volumes: Vec<String>,
    /// The image's `LABEL`s: the container's labels start from them.
    pub labels: std::collections::BTreeMap<String, String>,
    /// `ExposedPorts` keys ("80/tcp"), for `-P`.
    pub exposed_ports: Vec<String>,
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
            stop_signal: c.stop_signal().clone().filter(|s| !s.is_empty()),
            volumes: c.volumes().clone().unwrap_or_default(),
            labels: c.labels().clone().unwrap_or_default().into_iter().collect(),
            exposed_ports: c.exposed_ports().clone().unwrap_or_default(),
        }
    }
}

/// What a volume mount shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    /// The host directory in `host`.
    Bind,
    /// The named volume, created on first use (its `_data` goes to `host` when the
    /// container is created).
    Named(String),
    /// A new anonymous volume, made for this container.
    Anonymous,
}

/// `-v HOSTDIR:CTRDIR[:ro]`, `-v NAME:CTRDIR[:ro]`, `-v CTRDIR`, `--mount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// The directory bound (empty for a volume until the container is created).
    pub host: PathBuf,
    pub container: PathBuf,
    pub read_only: bool,
    pub source: VolumeSource,
    /// `nocopy`: a volume is never filled from the image.
    pub no_copy: bool,
}

impl Volume {
    pub fn parse(value: &str) -> anyhow::Result<Volume> {
        let parts: Vec<&str> = value.split(':').collect();
        let (host, container, mode) = match parts.as_slice() {
            [c] if c.starts_with('/') && *c != "/" => {
                return Ok(Volume {
                    host: PathBuf::new(),
                    container: PathBuf::from(c),
                    read_only: false,
                    source: VolumeSource::Anonymous,
                    no_copy: false,
                })
            }
            [h, c] => (*h, *c, ""),
            [h, c, m] => (*h, *c, *m),
            _ => bail!("invalid value {value:?} for -v: use HOSTDIR:CTRDIR, VOLUME:CTRDIR (either with :ro) or CTRDIR"),
        };
        let (mut read_only, mut no_copy) = (false, false);
        for option in mode.split(',').filter(|o| !o.is_empty()) {
            match option {
                "rw" => read_only = false,
                "ro" => read_only = true,
                "nocopy" => no_copy = true,
                _ => bail!("invalid mode {mode:?} in -v {value:?}: use ro, rw or nocopy"),
            }
        }
        if !container.starts_with('/') || container == "/" {
            bail!("invalid value {value:?} for -v: the container path must be absolute and not /");
        }
        // A name, not a path: a named volume, as Docker reads it.
        if !host.starts_with(['/', '.']) && super::volumes::validate_name(host).is_ok() {
            return Ok(Volume {
                host: PathBuf::new(),
                container: PathBuf::from(container),
                read_only,
                source: VolumeSource::Named(host.to_string()),
                no_copy,
            });
        }
        // A missing absolute host directory is created (root, 0755), as Docker does for
        // `-v` (not for `--mount type=bind`); a missing relative one is refused.
        if Path::new(host).is_absolute() && fs::symlink_metadata(host).is_err() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(host)
                .with_context(|| {
                    format!("cannot create the host directory {host:?} for -v {value:?}")
                })?;
        }
        let host = fs::canonicalize(host).with_context(|| {
            format!("invalid value {value:?} for -v: host path {host:?} does not exist")
        })?;
        Ok(Volume {
            host,
            container: PathBuf::from(container),
            read_only,
            source: VolumeSource::Bind,
            no_copy,
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
    /// The network namespace to join, for `Network::Bridge` and `Network::Container`
    /// (resolved by `run` before the spec is built).
    pub netns_path: Option<PathBuf>,
    /// `--network-alias`: more names peers on a user network know it by.
    pub network_aliases: Vec<String>,
    /// `--add-host NAME:IP`, checked.
    pub add_hosts: Vec<(String, String)>,
    /// `--dns`: nameservers replacing the host's.
    pub dns: Vec<String>,
    /// `-p` (and `-P`, expanded from the image's exposed ports).
    pub ports: Vec<crate::container::network::ports::PortMap>,
    pub tty: bool,
    pub init: bool,
    /// The resource flags, parsed.
    pub limits: Limits,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    /// `--device`, resolved against the host's nodes.
    pub devices: Vec<Device>,
    pub security_opts: Vec<String>,
    pub read_only: bool,
    pub tmpfs: Vec<String>,
    /// Size of /dev/shm in bytes (`--shm-size`; Docker's default is 64 MiB).
    pub shm_size: Option<u64>,
    /// `--ulimit`s: the process's rlimits (none given: the runtime's own, as Docker
    /// leaves the daemon's).
    pub ulimits: Vec<oci_spec::runtime::PosixRlimit>,
    /// `--label`s (over the image's).
    pub labels: std::collections::BTreeMap<String, String>,
}

/// Everything the container layer hands to the runtime.
/// `--cap-add` as given (comma-separated), for `inspect`.
pub const ANNOTATION_CAP_ADD: &str = "org.mycontainer.cap-add";
/// `--cap-drop` as given (comma-separated), for `inspect`.
pub const ANNOTATION_CAP_DROP: &str = "org.mycontainer.cap-drop";
/// "true" for `--privileged`, for `inspect`.
pub const ANNOTATION_PRIVILEGED: &str = "org.mycontainer.privileged";
/// `--network` as Docker names it (`HostConfig.NetworkMode`), for `inspect`.
pub const ANNOTATION_NETWORK_MODE: &str = "org.mycontainer.network-mode";
/// `-u` as given, for `inspect`.
pub const ANNOTATION_USER: &str = "org.mycontainer.user";
/// The container's labels (the image's, then `--label`) as a JSON object, for
/// `inspect` and `ps --filter label=`.
pub const ANNOTATION_LABELS: &str = "org.mycontainer.labels";

#[derive(Debug)]
pub struct Built {
    pub spec: Spec,
    /// The resolved command, for the state file and messages.
    pub args: Vec<String>,
}

/// The hostname of container `id`: `-h`, else as Docker gives it: the host's own with
/// `--network host` (the container shares its network identity), the short id otherwise.
fn hostname(id: &str, opts: &RunOptions) -> String {
    if let Some(name) = &opts.hostname {
        return name.clone();
    }
    if opts.network == Network::Host {
        if let Some(host) = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .filter(|h| !h.is_empty())
        {
            return host;
        }
    }
    id[..12].to_string()
}

/// Builds the spec for container `id` over `root`: a pure function of its inputs (it
/// reads only the image's user database, `--env-file`s and, with `--network host`, the
/// host's hostname). The etc files its mounts
/// name, in the run directory of the record directory `dir`, are the record's to write
/// (`Record::write_etc_files`).
pub fn build(
    id: &str,
    dir: &Path,
    image: &ImageDefaults,
    opts: &RunOptions,
    root: &RootMount,
) -> anyhow::Result<Built> {
    let hostname = hostname(id, opts);
    let (mut process, args) = process::process(image, opts, &hostname, root)?;
    // Docker's seccomp profile allows some syscalls only with a capability (mount with
    // SYS_ADMIN, say), so it is evaluated for the container's bounding set.
    let bounding: Vec<String> = process
        .capabilities()
        .as_ref()
        .and_then(|caps| caps.bounding().clone())
        .iter()
        .flatten()
        .filter_map(|c| serde_json::to_value(c).ok()?.as_str().map(String::from))
        .collect();
    let security = linux::security_opts(opts, &bounding)?;
    process.set_no_new_privileges(Some(security.no_new_privileges));
    let run_dir =
        crate::container::rundir::container_dir(crate::container::paths::root_of_record(dir), id);
    let mounts = mounts::mounts(opts, &run_dir, root)?;
    let cgroup =
        crate::container::paths::cgroup_name(crate::container::paths::root_of_record(dir), id);
    let linux = linux::linux(&cgroup, opts, security.seccomp)?;

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
    let mut labels = image.labels.clone();
    labels.extend(opts.labels.clone());
    if !labels.is_empty() {
        annotations.insert(
            ANNOTATION_LABELS.to_string(),
            serde_json::to_string(&labels)?,
        );
    }
    annotations.insert(
        ANNOTATION_NETWORK_MODE.to_string(),
        opts.network.mode_name(),
    );
    if let Network::Bridge(name) = &opts.network {
        annotations.insert(
            crate::container::network::ANNOTATION_NETWORK.to_string(),
            name.clone(),
        );
        if !opts.network_aliases.is_empty() {
            annotations.insert(
                crate::container::network::ANNOTATION_ALIASES.to_string(),
                opts.network_aliases.join(","),
            );
        }
    }
    if !opts.ports.is_empty() {
        if !matches!(opts.network, Network::Bridge(_)) {
            bail!(
                "-p needs a bridge network: ports cannot be published with --network {}",
                opts.network.mode_name()
            );
        }
        annotations.insert(
            crate::container::network::ports::ANNOTATION_PORTS.to_string(),
            serde_json::to_string(&opts.ports)?,
        );
    }
    if !opts.dns.is_empty() {
        // Also what a start after a reboot writes resolv.conf from (rundir::restore).
        annotations.insert(
            crate::container::network::ANNOTATION_DNS.to_string(),
            opts.dns.join(","),
        );
    }
    // Exposed: the image's, and every container port -p publishes (as Docker).
    let mut exposed: Vec<String> = image
        .exposed_ports
        .iter()
        .map(|k| crate::container::network::ports::exposed_key(k))
        .chain(opts.ports.iter().map(|p| p.key()))
        .collect();
    exposed.sort();
    exposed.dedup();
    if !exposed.is_empty() {
        annotations.insert(
            crate::container::network::ANNOTATION_EXPOSED.to_string(),
            exposed.join(","),
        );
    }
    if !opts.add_hosts.is_empty() {
        let pairs: Vec<String> = opts
            .add_hosts
            .iter()
            .map(|(name, ip)| format!("{name}={ip}"))
            .collect();
        annotations.insert(
            crate::container::network::ANNOTATION_EXTRA_HOSTS.to_string(),
            pairs.join(","),
        );
    }

    let spec = SpecBuilder::default()
        .version("1.2.0")
        .root(
            RootBuilder::default()
                .path(super::paths::MERGED_DIR)
                .readonly(opts.read_only)
                .build()?,
        )
        .hostname(hostname)
        .process(process)
        .mounts(mounts)
        .linux(linux)
        .annotations(annotations)
        .build()?;
    Ok(Built { spec, args })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn build_with(image: &ImageDefaults, opts: &RunOptions) -> anyhow::Result<Built> {
        let dir = tempfile::tempdir().unwrap();
        let layers = RootMount {
            lowerdirs: vec![dir.path().join("l")],
            upperdir: dir.path().join("u"),
            workdir: dir.path().join("w"),
        };
        build(&"a".repeat(64), dir.path(), image, opts, &layers)
    }

    #[test]
    fn more_layers_than_one_mount_takes_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let root = PathBuf::from("/var/lib/mycontainer/layers");
        let layers = |count: usize| RootMount {
            lowerdirs: (0..count).map(|i| root.join(format!("{i:064x}"))).collect(),
            upperdir: dir.path().join("u"),
            workdir: dir.path().join("w"),
        };
        let build_layers = |count: usize| {
            build(
                &"a".repeat(64),
                dir.path(),
                &ImageDefaults::default(),
                &RunOptions {
                    command: vec!["true".into()],
                    ..Default::default()
                },
                &layers(count),
            )
        };
        // 40 layers (a tall image) fit under the default root; 50 do not.
        build_layers(40).unwrap();
        let err = build_layers(50).err().unwrap().to_string();
        assert!(
            err.contains("50 layers") && err.contains("flatten the image"),
            "{err}"
        );
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
            crate::container::policy::DEFAULT_CAPS.len()
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
    fn volumes_need_an_absolute_target_and_create_a_missing_absolute_host_dir() {
        assert!(Volume::parse("/tmp:/data:ro").unwrap().read_only);
        assert!(Volume::parse("/tmp:data").is_err());
        assert!(Volume::parse("does/not/exist:/data").is_err());
        assert!(Volume::parse("/tmp:/data:rx").is_err());
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("a/b");
        let volume = Volume::parse(&format!("{}:/data", missing.display())).unwrap();
        assert_eq!(volume.host, missing);
        let mode = fs::metadata(&missing).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode & !0o022, 0o755 & !0o022, "{mode:o}");
    }
}
