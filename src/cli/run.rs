//! `mycontainer run`: flags -> container record -> runtime.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgAction, Args};

use super::Ctx;
use crate::container::health::{HealthFlags, ImageHealthcheck};
use crate::container::limits::LimitFlags;
use crate::container::policy::devices::Device;
use crate::container::restart::RestartPolicy;
use crate::container::run::{RootSource, RunInput};
use crate::container::spec::{parse_mount, ImageDefaults, MountFlag, Network, RunOptions, Volume};
use crate::container::state::LogOpts;

#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Print help
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,

    /// Name the container (for logs, rm)
    #[arg(long)]
    pub name: Option<String>,
    /// Remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Run in the background and print the container id
    #[arg(short, long)]
    pub detach: bool,
    /// Keep stdin attached to the container
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the container a terminal (a pty; window size passed on)
    #[arg(short, long)]
    pub tty: bool,
    /// Set an environment variable (KEY=VALUE, or KEY to pass ours)
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read environment variables from a file (KEY=VALUE lines)
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User to run as: NAME, UID, NAME:GROUP or UID:GID
    #[arg(short, long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Container hostname (default: the short id)
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Bind-mount a host directory or a named volume (made on first use, filled from
    /// the image): HOSTDIR:CTRDIR[:ro], NAME:CTRDIR[:ro]; CTRDIR alone for an anonymous
    /// volume
    #[arg(short, long = "volume", value_name = "SOURCE:CTRDIR[:ro]")]
    pub volume: Vec<String>,
    /// type=bind|volume|tmpfs,source=...,target=...[,readonly]
    #[arg(long, value_name = "SPEC")]
    pub mount: Vec<String>,
    /// Set a label on the container (KEY=VALUE)
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Override the image's entrypoint ("" clears it)
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Network: bridge (the default network), none (loopback only), host,
    /// container:NAME|ID (another container's), or a network's name
    #[arg(long, alias = "net", default_value = "bridge", value_name = "NETWORK")]
    pub network: String,
    /// Another name for the container on its user network
    #[arg(long = "network-alias", alias = "net-alias", value_name = "ALIAS")]
    pub network_alias: Vec<String>,
    /// Add a line to /etc/hosts: NAME:IP
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_host: Vec<String>,
    /// Publish a container port: [IP:][HOSTPORT:]CTRPORT[/tcp|udp] (no HOSTPORT: a free one)
    #[arg(short = 'p', long = "publish", value_name = "[IP:][HOSTPORT:]CTRPORT")]
    pub publish: Vec<String>,
    /// Publish every port the image exposes, each on a free host port
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Expose a container port (or range) without publishing it: PORT[-END][/tcp|udp]
    #[arg(long, value_name = "PORT")]
    pub expose: Vec<String>,
    /// A nameserver for /etc/resolv.conf (replaces the host's)
    #[arg(long, value_name = "IP")]
    pub dns: Vec<String>,
    /// Signal `stop` sends first (default: the image's STOPSIGNAL, else SIGTERM)
    #[arg(long, value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Seconds to wait after SIGTERM/SIGINT before killing the container
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub stop_timeout: u64,
    /// Restart policy, carried out by the detached supervisor: no, on-failure[:MAX],
    /// always, unless-stopped
    #[arg(long, default_value = "no", value_name = "POLICY")]
    pub restart: String,
    /// Healthcheck command, run in the container with sh -c
    #[arg(long, value_name = "COMMAND")]
    pub health_cmd: Option<String>,
    /// Time between healthchecks (default 30s)
    #[arg(long, value_name = "DURATION")]
    pub health_interval: Option<String>,
    /// Time a healthcheck may take (default 30s)
    #[arg(long, value_name = "DURATION")]
    pub health_timeout: Option<String>,
    /// Failures in a row that make the container unhealthy (default 3)
    #[arg(long, value_name = "N")]
    pub health_retries: Option<u32>,
    /// Time after the start during which failures do not count (default 0s)
    #[arg(long, value_name = "DURATION")]
    pub health_start_period: Option<String>,
    /// Log option: max-size=SIZE (default 10m), max-file=N (default 3)
    #[arg(long, value_name = "KEY=VALUE")]
    pub log_opt: Vec<String>,
    /// Disable the image's HEALTHCHECK
    #[arg(long)]
    pub no_healthcheck: bool,
    /// What to do when the container turns unhealthy: none, kill, restart
    #[arg(long, value_name = "ACTION")]
    pub health_on_failure: Option<String>,
    /// Run a tiny init as PID 1 that forwards signals and reaps zombies
    #[arg(long)]
    pub init: bool,
    /// Use this directory as the image (no image config) instead of a stored image
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,

    /// Memory limit (100M, 1g, bytes); --mem is the same
    #[arg(short = 'm', long, alias = "mem", value_name = "SIZE")]
    pub memory: Option<String>,
    /// Memory plus swap limit (-1: unlimited swap)
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// CPU quota in CPUs (0.5 = half a core)
    #[arg(long, value_name = "N")]
    pub cpus: Option<String>,
    /// CPU quota as a percentage of one core (25%)
    #[arg(long = "cpu", value_name = "PERCENT")]
    pub cpu_percent: Option<String>,
    /// Relative CPU weight (1024 is the default)
    #[arg(long)]
    pub cpu_shares: Option<u64>,
    /// CPUs the container may use (0-1, 0,2)
    #[arg(long, value_name = "LIST")]
    pub cpuset_cpus: Option<String>,
    /// Maximum number of processes and threads (default 2048; -1 or 0: unlimited)
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,

    /// Add a capability (or ALL)
    #[arg(long, value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a capability (or ALL)
    #[arg(long, value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// All capabilities and devices, no seccomp, no masked paths
    #[arg(long)]
    pub privileged: bool,
    /// Give the container a host device: HOST[:CONTAINER][:PERMISSIONS] (rwm)
    #[arg(long, value_name = "HOST[:CTR][:rwm]")]
    pub device: Vec<String>,
    /// no-new-privileges, seccomp=unconfined or seccomp=PROFILE.json
    #[arg(long, value_name = "OPT")]
    pub security_opt: Vec<String>,
    /// Mount the container's root read-only
    #[arg(long)]
    pub read_only: bool,
    /// Mount a tmpfs at PATH[:OPTIONS]
    #[arg(long, value_name = "PATH")]
    pub tmpfs: Vec<String>,
    /// When to pull the image from its registry: missing (default), always, never
    #[arg(long, value_enum, default_value = "missing")]
    pub pull: PullPolicy,
    /// A process limit: TYPE=SOFT[:HARD] (nofile=1024:2048, core=-1)
    #[arg(long, value_name = "TYPE=SOFT[:HARD]")]
    pub ulimit: Vec<String>,
    /// Size of /dev/shm (64m by default)
    #[arg(long, value_name = "SIZE")]
    pub shm_size: Option<String>,

    /// The image, then the command and its arguments (default: the image's); with
    /// --rootfs only the command. One positional, so everything after its first word
    /// belongs to the container (`run --rootfs D id -u` passes -u to id), as in Docker.
    #[arg(
        value_name = "IMAGE [COMMAND [ARG...]]",
        required = true,
        trailing_var_arg = true
    )]
    pub words: Vec<String>,
}

/// `--pull`: whether `run` may fetch its image from a registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PullPolicy {
    /// Pull only when the image is not in the store (built-in recipes are built)
    Missing,
    /// Pull before every run, even when the image is in the store
    Always,
    /// Never pull: the image must be in the store
    Never,
}

/// The flags that say how to run, as opposed to what the container is ([`RunOptions`]).
struct Launch {
    /// The image reference (empty with --rootfs, where there is none).
    image: String,
    rootfs: Option<PathBuf>,
    detach: bool,
    interactive: bool,
    rm: bool,
    stop_timeout: Duration,
    /// `--stop-signal`, checked; None leaves it to the image.
    stop_signal: Option<i32>,
    pull: PullPolicy,
    restart: RestartPolicy,
    health: HealthFlags,
    log_opts: LogOpts,
    /// `-P`: resolved once the image (and its exposed ports) is known.
    publish_all: bool,
    /// `--expose`, as "80/tcp" keys: added to the image's exposed ports.
    expose: Vec<String>,
}

impl RunArgs {
    /// Checks and converts every flag, once and before anything is created.
    fn into_parts(self) -> anyhow::Result<(Launch, RunOptions)> {
        if let Some(name) = &self.name {
            crate::container::validate_name(name)?;
        }
        let restart = RestartPolicy::parse(&self.restart)?;
        if self.rm && restart != RestartPolicy::No {
            anyhow::bail!(
                "conflicting options: --restart and --rm (a removed container cannot be restarted)"
            );
        }
        // With --rootfs every word is the command; else the first names the image.
        let (image, command) = match self.rootfs {
            Some(_) => (String::new(), self.words),
            None => {
                let mut words = self.words.into_iter();
                (words.next().unwrap_or_default(), words.collect())
            }
        };
        let mut volumes = self
            .volume
            .iter()
            .map(|v| Volume::parse(v))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut tmpfs = self.tmpfs;
        for value in &self.mount {
            match parse_mount(value)? {
                MountFlag::Volume(v) => volumes.push(v),
                MountFlag::Tmpfs(t) => tmpfs.push(t),
            }
        }
        let devices = self
            .device
            .iter()
            .map(|d| Device::parse(d))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let limits = LimitFlags {
            memory: self.memory,
            memory_swap: self.memory_swap,
            cpus: self.cpus,
            cpu_percent: self.cpu_percent,
            cpu_shares: self.cpu_shares,
            cpuset_cpus: self.cpuset_cpus,
            pids_limit: self.pids_limit,
        }
        .parse()?;
        let launch = Launch {
            image,
            rootfs: self.rootfs,
            detach: self.detach,
            interactive: self.interactive,
            rm: self.rm,
            stop_timeout: Duration::from_secs(self.stop_timeout),
            pull: self.pull,
            stop_signal: self
                .stop_signal
                .as_deref()
                .map(crate::container::signals::parse_signal)
                .transpose()
                .context("in --stop-signal")?,
            restart,
            log_opts: LogOpts::parse(&self.log_opt)?,
            health: HealthFlags {
                cmd: self.health_cmd,
                interval: self.health_interval,
                timeout: self.health_timeout,
                start_period: self.health_start_period,
                retries: self.health_retries,
                none: self.no_healthcheck,
                on_failure: self.health_on_failure,
            },
            publish_all: self.publish_all,
            expose: expose_keys(&self.expose)?,
        };
        // Checked once before anything is created (the image may add its own later).
        launch.health.resolve(None)?;
        let options = RunOptions {
            name: self.name,
            command,
            entrypoint: self.entrypoint,
            env: self.env,
            env_files: self.env_file,
            workdir: self.workdir,
            user: self.user,
            hostname: self.hostname,
            volumes,
            network: Network::parse(&self.network)?,
            netns_path: None,
            ports: self
                .publish
                .iter()
                .map(|p| crate::container::network::ports::parse(p))
                .collect::<anyhow::Result<Vec<_>>>()?
                .into_iter()
                .flatten()
                .collect(),
            network_aliases: self.network_alias,
            add_hosts: self
                .add_host
                .iter()
                .map(|h| crate::container::network::hosts::parse_add_host(h))
                .collect::<anyhow::Result<Vec<_>>>()?,
            dns: self
                .dns
                .iter()
                .map(|d| {
                    d.parse::<std::net::IpAddr>()
                        .map(|ip| ip.to_string())
                        .map_err(|_| anyhow::anyhow!("invalid --dns {d:?}: give an IP address"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
            tty: self.tty,
            init: self.init,
            limits,
            cap_add: self.cap_add,
            cap_drop: self.cap_drop,
            privileged: self.privileged,
            devices,
            security_opts: self.security_opt,
            read_only: self.read_only,
            tmpfs,
            labels: super::volume::parse_labels(&self.label),
            ulimits: self
                .ulimit
                .iter()
                .map(|u| crate::container::spec::parse_ulimit(u))
                .collect::<anyhow::Result<Vec<_>>>()?,
            shm_size: self
                .shm_size
                .as_deref()
                .map(|v| crate::container::limits::parse_size("--shm-size", v))
                .transpose()?
                .map(|bytes| bytes.max(0) as u64)
                .filter(|bytes| *bytes > 0),
        };
        Ok((launch, options))
    }
}

/// `--expose PORT[-END][/tcp|udp]` values as "80/tcp" keys, one per port.
fn expose_keys(values: &[String]) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::new();
    for value in values {
        if value.contains(':') {
            anyhow::bail!("invalid --expose {value:?}: give PORT[-END][/tcp|udp], no host part");
        }
        for map in crate::container::network::ports::parse(value)
            .with_context(|| format!("invalid --expose {value:?}"))?
        {
            keys.push(map.key());
        }
    }
    Ok(keys)
}

pub fn main(ctx: &Ctx, args: RunArgs) -> anyhow::Result<i32> {
    // -d -i and -d -t: the supervisor holds the stdin pipe or the pty, and `attach`
    // reaches them through its socket.
    let (launch, mut options) = args.into_parts()?;
    let rootfs = match &launch.rootfs {
        Some(dir) => Some(
            std::fs::canonicalize(dir)
                .with_context(|| format!("--rootfs {} does not exist", dir.display()))?,
        ),
        None => None,
    };
    // The one store of this command: it holds the layers, and the record goes through
    // it when it is removed.
    let store = ctx.store()?;
    let mut image_healthcheck = None;
    let (image, image_id, defaults, root) = match rootfs {
        Some(dir) => (
            dir.display().to_string(),
            None,
            ImageDefaults::default(),
            RootSource::Dir(dir),
        ),
        None => {
            let image = image_for_run(ctx, &store, &launch.image, launch.pull)?;
            // The image's HEALTHCHECK is in its config blob (OCI's config type has no
            // field for it).
            image_healthcheck = store
                .read_blob(&image.id)
                .ok()
                .and_then(|bytes| ImageHealthcheck::from_config_json(&bytes));
            (
                launch.image.clone(),
                Some(image.id.to_string()),
                ImageDefaults::from_image_config(&image.config),
                RootSource::Image(Box::new(image)),
            )
        }
    };
    let mut defaults = defaults;
    defaults.exposed_ports.extend(launch.expose.iter().cloned());
    let stop_signal = match (launch.stop_signal, &defaults.stop_signal) {
        (Some(signal), _) => signal,
        (None, Some(text)) => crate::container::signals::parse_signal(text)
            .with_context(|| format!("the image {image}'s STOPSIGNAL"))?,
        (None, None) => libc::SIGTERM,
    };
    if launch.publish_all {
        options
            .ports
            .extend(crate::container::network::ports::exposed(
                &defaults.exposed_ports,
            )?);
    }
    let input = RunInput {
        image,
        image_id,
        defaults,
        root,
        options,
        auto_remove: launch.rm,
        interactive: launch.interactive,
        stop_timeout: launch.stop_timeout,
        stop_signal,
        restart: launch.restart,
        healthcheck: launch.health.resolve(image_healthcheck.as_ref())?,
        log_opts: launch.log_opts,
    };
    if !launch.detach {
        return crate::container::run::run(&store, input);
    }
    match crate::container::run::run_detached(&store, input)? {
        Ok(id) => {
            println!("{id}");
            Ok(0)
        }
        Err(code) => Ok(code),
    }
}

/// The image `run` uses, as Docker finds it: from the store, else built from a built-in
/// recipe or pulled from its registry (`--pull` decides).
fn image_for_run(
    ctx: &Ctx,
    store: &mycontainer_store::Store,
    name: &str,
    policy: PullPolicy,
) -> anyhow::Result<mycontainer_store::Image> {
    use mycontainer_store::Error as StoreError;
    let local = match policy {
        PullPolicy::Always => None,
        PullPolicy::Missing => match super::image::ensure_image(ctx, store, name) {
            Err(err) if matches!(err.downcast_ref(), Some(StoreError::ImageNotFound(_))) => None,
            found => Some(found),
        },
        PullPolicy::Never => Some(store.image(name).map_err(|err| match err {
            StoreError::ImageNotFound(_) => anyhow::anyhow!(
                "image {name:?} is not in the store and --pull never forbids fetching it: pull, build or load it first"
            ),
            other => other.into(),
        })),
    };
    if let Some(found) = local {
        return found;
    }
    let reference = crate::registry::RegistryRef::parse(name)?;
    if policy == PullPolicy::Missing {
        eprintln!("Unable to find image '{reference}' locally");
    }
    let reporter = super::registry::TerminalReporter::new(ctx.quiet);
    let image = crate::registry::pull::pull(
        store,
        &reference,
        &crate::registry::pull::PullOptions { insecure: false },
        &reporter,
    )
    .with_context(|| format!("image {name:?} is not in the store and pulling it failed"))?;
    reporter.done();
    Ok(image)
}
